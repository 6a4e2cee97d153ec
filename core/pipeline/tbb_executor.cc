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
  // Inside the arena already (a nested call): run directly, else enter it.
  if (tbb::this_task_arena::current_thread_index() != tbb::task_arena::not_initialized &&
      tbb::this_task_arena::max_concurrency() == impl_->arena.max_concurrency()) {
    run();
  } else {
    impl_->arena.execute(run);
  }
}

}  // namespace hc
