// The parallel-loop interface codecs use. core/pipeline implements it on TBB; codecs see only
// this header, so they never depend on a thread library.
#ifndef HC_CORE_BASE_PARALLEL_H_
#define HC_CORE_BASE_PARALLEL_H_

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace hc {

/// Runs independent loop bodies, possibly concurrently.
///
/// Determinism contract: callers split work into a number of units that depends only on the
/// input (never on the thread count), each body writes only its own unit's output, and results
/// are combined afterwards in unit order. Then output bytes do not depend on the executor.
class Executor {
 public:
  virtual ~Executor() = default;
  /// Calls `body(i)` once for every i in [0, n), in any order and on any thread, and returns
  /// when all calls have finished. Bodies must not throw.
  virtual void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> body) = 0;
};

/// Runs every body on the calling thread, in order. Useful in tests and for tiny inputs.
class InlineExecutor final : public Executor {
 public:
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> body) override {
    for (int64_t i = 0; i < n; ++i) body(i);
  }
};

}  // namespace hc

#endif  // HC_CORE_BASE_PARALLEL_H_
