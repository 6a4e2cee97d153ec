// An Executor on a oneTBB task arena: the only place core/ touches TBB.
#ifndef HC_CORE_PIPELINE_TBB_EXECUTOR_H_
#define HC_CORE_PIPELINE_TBB_EXECUTOR_H_

#include <functional>
#include <memory>

#include "core/base/parallel.h"

namespace hc {

/// Runs work on `threads` threads (0 = one per core) in two private TBB arenas.
///
/// Submit() runs a task asynchronously in the task arena, whose `threads` slots are all for
/// workers: no slot is reserved for the submitting thread, so a thread may submit and then
/// block (e.g. on a condition variable) while `threads` workers run up to `threads` tasks at
/// once. ParallelFor calls made inside a submitted task (or inside a body of such a loop) run
/// in that same arena, so a pipeline that runs tensors concurrently and a codec that splits a
/// tensor into chunks share one pool.
///
/// A ParallelFor called from any other thread (e.g. the GEMV kernels' caller) runs in the loop
/// arena, which reserves one slot for that thread: the caller runs bodies itself, next to up to
/// `threads` - 1 workers, and the loop never waits behind submitted tasks (with every worker
/// busy, the caller runs it alone). So `threads` threads run such a loop, not `threads` + 1
/// sharing `threads` cores (docs/perf-gemv-cpu.md, session 8: with the caller outside the arena,
/// short GEMV calls often ran on one core). The two arenas share the process's TBB workers.
/// Bodies take one index per TBB task (simple partitioner), which balances uneven units.
class TbbExecutor final : public Executor {
 public:
  explicit TbbExecutor(int threads = 0);
  ~TbbExecutor() override;  // waits for submitted tasks
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> body) override;
  /// Runs `task` asynchronously in the arena.
  void Submit(std::function<void()> task);
  /// Waits until every submitted task has finished.
  void WaitAll();
  /// The arena's concurrency.
  int threads() const;
  /// Submitted tasks running right now (at most threads()).
  int busy() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hc

#endif  // HC_CORE_PIPELINE_TBB_EXECUTOR_H_
