// Error statistics of a reconstructed tensor against its original.
//
// Definitions (all over the tensor's elements, in double precision):
//   var        = population variance of the original values
//   MSE        = mean (x - x')^2,  MAE = mean |x - x'|
//   rel_mse    = MSE / var
//   snr_db     = 10 log10(var / MSE)
//   R          = bits per weight, counting every stored byte of the tensor
//   D(R)       = var * 2^(-2R), the rate-distortion bound of a Gaussian source
//   db_above_rd = 10 log10(MSE / D(R)) = 6.0206 R - snr_db   (0 = on the bound; lower is better)
// Degenerate cases: MSE == 0 gives snr_db = kLosslessSnrDb and db_above_rd = -kLosslessSnrDb;
// var == 0 with MSE > 0 gives rel_mse = +inf reported as kLosslessSnrDb and snr_db = -kLosslessSnrDb.
#ifndef HC_CORE_QUALITY_STATS_H_
#define HC_CORE_QUALITY_STATS_H_

#include <cstdint>

#include "absl/types/span.h"

namespace hc {

/// SNR reported for an exact reconstruction (MSE == 0), in dB.
inline constexpr double kLosslessSnrDb = 200.0;

/// Per-tensor quality and size figures, as recorded in the artifact.
struct TensorStats {
  uint64_t numel = 0;
  /// Bytes the tensor occupies in the artifact (every stored part).
  uint64_t stored_bytes = 0;
  double bits_per_weight = 0;
  double mae = 0;
  double max_abs_err = 0;
  double rel_mse = 0;
  double snr_db = kLosslessSnrDb;
  double db_above_rd = 0;
  /// Variance of the original values.
  double variance = 0;
};

/// Accumulates error sums over chunks. Merge chunks in a fixed order for deterministic results.
class ErrorAccumulator {
 public:
  /// Adds elements: `orig[i]` against `recon[i]`. Spans must have equal sizes.
  void Add(absl::Span<const float> orig, absl::Span<const float> recon);
  /// Folds `other` (the chunk that follows this one) into this accumulator.
  void Merge(const ErrorAccumulator& other);
  /// Final statistics for a tensor that occupies `stored_bytes`.
  TensorStats Finish(uint64_t stored_bytes) const;

  uint64_t count() const { return n_; }

 private:
  uint64_t n_ = 0;
  double mean_ = 0;  // running mean of the original
  double m2_ = 0;    // sum of squared deviations from the mean
  double sum_abs_ = 0;
  double sum_sq_ = 0;
  double max_abs_ = 0;
};

/// Statistics of a tensor stored exactly (raw): zero error at its own bits per weight.
TensorStats LosslessStats(uint64_t numel, uint64_t stored_bytes);

}  // namespace hc

#endif  // HC_CORE_QUALITY_STATS_H_
