// An Executor on a oneTBB task arena: the only place core/ touches TBB (with pipeline.cc).
#ifndef HC_CORE_PIPELINE_TBB_EXECUTOR_H_
#define HC_CORE_PIPELINE_TBB_EXECUTOR_H_

#include <memory>

#include "core/base/parallel.h"

namespace hc {

/// Runs ParallelFor bodies on a private TBB arena of `threads` workers (0 = all cores).
/// Nested ParallelFor calls (from inside a body) run in the same arena, so a pipeline that runs
/// tensors in parallel and a codec that runs chunks in parallel share one pool.
class TbbExecutor final : public Executor {
 public:
  explicit TbbExecutor(int threads = 0);
  ~TbbExecutor() override;
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> body) override;
  /// The arena's concurrency.
  int threads() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hc

#endif  // HC_CORE_PIPELINE_TBB_EXECUTOR_H_
