#include "core/pipeline/tbb_executor.h"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace hc {
namespace {

// TBB caps worker threads at max_allowed_parallelism - 1 (it counts on the calling thread to
// help). The task arenas here reserve no slot for callers, so raise the cap to cover every such
// arena's workers. The control object must stay alive; it is replaced only by a larger one.
void EnsureWorkers(int threads) {
  static std::mutex mu;
  static std::unique_ptr<tbb::global_control> control;
  static int current = 0;
  std::lock_guard<std::mutex> lock(mu);
  const int want = threads + 1;
  if (want <= current) return;
  control = std::make_unique<tbb::global_control>(
      tbb::global_control::max_allowed_parallelism, static_cast<size_t>(want));
  current = want;
}

// The arena whose loop body or submitted task this thread is running (null outside both).
thread_local const tbb::task_arena* current_arena = nullptr;

// Runs body(i) for i in [0, n) in `arena` (directly when the thread is already in it), one
// index per TBB task so that uneven bodies balance; marks the thread as inside `arena` while it
// runs bodies, so that a nested call stays in the same arena.
void RunLoop(tbb::task_arena& arena, int64_t n, absl::FunctionRef<void(int64_t)> body) {
  arena.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, n, 1),
        [&](const tbb::blocked_range<int64_t>& r) {
          const tbb::task_arena* outer = current_arena;
          current_arena = &arena;
          for (int64_t i = r.begin(); i != r.end(); ++i) body(i);
          current_arena = outer;
        },
        tbb::simple_partitioner());
  });
}

}  // namespace

struct TbbExecutor::Impl {
  explicit Impl(int threads)
      : arena(threads, /*reserved_for_masters=*/0), loops(threads, /*reserved_for_masters=*/1) {}
  tbb::task_arena arena;  // submitted tasks, and loops called from inside them
  tbb::task_arena loops;  // loops called from any other thread: that thread takes slot 0
  std::mutex mu;
  std::condition_variable idle;
  int64_t pending = 0;  // submitted tasks not yet finished
  std::atomic<int> active{0};  // submitted tasks running now
};

TbbExecutor::TbbExecutor(int threads) {
  const int n = threads > 0 ? threads : tbb::info::default_concurrency();
  EnsureWorkers(n);
  impl_ = std::make_unique<Impl>(n);
}

TbbExecutor::~TbbExecutor() { WaitAll(); }

int TbbExecutor::threads() const { return impl_->arena.max_concurrency(); }
int TbbExecutor::busy() const { return impl_->active.load(std::memory_order_relaxed); }

void TbbExecutor::ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> body) {
  if (n <= 0) return;
  if (n == 1) {
    body(0);
    return;
  }
  // A call from inside a submitted task (or from a body of such a loop) stays in the tasks'
  // arena, where the thread already holds a slot. Any other caller runs the loop in `loops`,
  // whose reserved slot it takes: it runs bodies itself next to threads() - 1 workers, instead
  // of handing the loop to the workers and sleeping until they finish (which left one of the
  // threads()+1 threads waking up, or waiting for a core, on every call).
  RunLoop(current_arena == &impl_->arena ? impl_->arena : impl_->loops, n, body);
}

void TbbExecutor::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    ++impl_->pending;
  }
  impl_->arena.enqueue([impl = impl_.get(), task = std::move(task)] {
    impl->active.fetch_add(1, std::memory_order_relaxed);
    const tbb::task_arena* outer = current_arena;  // a task may start inside a wait
    current_arena = &impl->arena;
    task();
    current_arena = outer;
    impl->active.fetch_sub(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(impl->mu);
    if (--impl->pending == 0) impl->idle.notify_all();
  });
}

void TbbExecutor::WaitAll() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->idle.wait(lock, [this] { return impl_->pending == 0; });
}

}  // namespace hc
