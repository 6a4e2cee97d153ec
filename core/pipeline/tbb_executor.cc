#include "core/pipeline/tbb_executor.h"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

namespace hc {

struct TbbExecutor::Impl {
  explicit Impl(int threads)
      : arena(threads > 0 ? threads : tbb::task_arena::automatic) {}
  tbb::task_arena arena;
};

TbbExecutor::TbbExecutor(int threads) : impl_(std::make_unique<Impl>(threads)) {}
TbbExecutor::~TbbExecutor() = default;

int TbbExecutor::threads() const { return impl_->arena.max_concurrency(); }

void TbbExecutor::ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> body) {
  if (n <= 0) return;
  if (n == 1) {
    body(0);
    return;
  }
  auto run = [&] {
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, n, 1),
        [&](const tbb::blocked_range<int64_t>& r) {
          for (int64_t i = r.begin(); i != r.end(); ++i) body(i);
        },
        tbb::simple_partitioner());
  };
  // execute() from a thread already in this arena (a nested call) just runs `run`.
  impl_->arena.execute(run);
}

}  // namespace hc
