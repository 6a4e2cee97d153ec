// An Executor on a oneTBB task arena: the only place core/ touches TBB.
#ifndef HC_CORE_PIPELINE_TBB_EXECUTOR_H_
#define HC_CORE_PIPELINE_TBB_EXECUTOR_H_

#include <functional>
#include <memory>

#include "core/base/parallel.h"

namespace hc {

/// Runs work on a private TBB arena of `threads` worker threads (0 = one per core).
///
/// ParallelFor bodies run in the arena; nested ParallelFor calls (from inside a body or a
/// submitted task) run in the same arena, so a pipeline that runs tensors concurrently and a
/// codec that splits a tensor into chunks share one pool. Submit() runs a task asynchronously;
/// no slot is reserved for the submitting thread, so a thread may submit and then block
/// (e.g. on a condition variable) while the workers run the task.
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
