// hc1's encoder core: one tensor, one codebook size. The inner pairs' lookups, the class-count
// search over the outer pairs (several ring counts per pass over the data) and the final
// indices. Used by core/codec/hc1.cc; spec: core/format/spec-hc1.md, section 5.
#ifndef HC_CORE_CODEC_HC1_GRID_H_
#define HC_CORE_CODEC_HC1_GRID_H_

#include <cstdint>
#include <vector>

#include "core/base/parallel.h"
#include "core/codec/hc1.h"
#include "core/codec/hc1_simd.h"

namespace hc::hc1 {

/// Pairs per parallel unit. Fixed, so output never depends on the thread count; the centre pass
/// uses numpy's own chunk (hc1::kNumpyChunk pairs) instead.
constexpr int64_t kUnitPairs = 4096;
static_assert(kUnitPairs <= 65536, "pair offsets are uint16");

/// The tensor as float32 pairs plus everything that does not depend on n (filled by the codec).
struct Geometry {
  /// 2 * M values: the tensor, padded to an even length.
  const float* x = nullptr;
  /// Elements of the tensor (without padding) and pairs.
  int64_t numel = 0;
  int64_t M = 0;
  /// The centre c.
  float cx = 0, cy = 0;
  /// The inner square's bounds, float32.
  float lox = 0, hix = 0, loy = 0, hiy = 0;
  /// The farthest distance D and the first pair at that distance.
  float D = 0;
  int64_t far = 0;
  /// Pairs inside and outside the square.
  int64_t inner = 0, outer = 0;
  /// Side of the square.
  double L = 0;
  /// Per unit u: order[u * kUnitPairs ...] lists the unit's inner pairs, then its outer pairs,
  /// as offsets from the unit's first pair; unit_inner[u] counts the inner ones.
  std::vector<uint16_t> order;
  std::vector<uint32_t> unit_inner;

  /// Parallel units: ceil(M / kUnitPairs).
  int64_t units() const { return (M + kUnitPairs - 1) / kUnitPairs; }
  /// The inner test, in float32.
  bool Inner(float px, float py) const {
    return (lox <= px) & (px <= hix) & (loy <= py) & (py <= hiy);
  }
  /// Whether element 2i+1 is real (not the padding).
  bool YReal(int64_t i) const { return 2 * i + 1 < numel; }
};

/// What one codebook size gives.
struct GridResult {
  /// Codebook size and ring count.
  int64_t n = 0;
  int K = 0;
  /// Mean |x^ - x| over the real elements (the encoder's reconstruction).
  double mae = 0;
  /// The largest index and the index I of every pair.
  uint32_t max_index = 0;
  std::vector<uint32_t> codes;
  /// Set when the encoder stopped early because the mean error provably exceeds `raw_above`
  /// (EncodeGrid): then only `bound` (a lower bound on the mean error, > raw_above) and
  /// `pairs_seen` are meaningful.
  bool above = false;
  double bound = 0;
  int64_t pairs_seen = 0;
};

/// Encodes the tensor of `g` with codebook size `n`: K, the indices, their maximum and the mean
/// error. Output does not depend on the executor's threads.
///
/// With `raw_above` > 0 the caller only needs the result if the mean error is <= raw_above: the
/// first pass then runs in rounds of units (kRounds, fixed by the tensor's size alone) and stops
/// as soon as the errors summed so far prove, for every ring count the search may pick, a mean
/// error above raw_above (with a 1e-9 relative margin); the result is then `above`. Early stops
/// need every trial in the first pass (class_max <= 4, or no outer pairs); otherwise the full
/// result comes back.
GridResult EncodeGrid(const Geometry& g, int64_t n, const Hc1Options& o, double raw_above,
                      Executor& ex);

/// Rounds of the early-stopping first pass: round r (1-based) ends at unit
/// ceil(r * units / min(units, kRounds)).
constexpr int64_t kRounds = 16;

}  // namespace hc::hc1

#endif  // HC_CORE_CODEC_HC1_GRID_H_
