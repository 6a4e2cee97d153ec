// hc2's per-row side information of the entropy-coded mode (core/format/spec-hc2.md): the row
// multipliers of section 5.4 (part `rows`) and the dc corrections of section 5.6 (part `dc`).
// Rows are the first dimension (output channels in PyTorch, ONNX Conv and Hugging Face layouts).
// Used by core/codec/hc2.cc; exposed for tests.
#ifndef HC_CORE_CODEC_HC2_ROWS_H_
#define HC_CORE_CODEC_HC2_ROWS_H_

#include <cstdint>

#include "absl/types/span.h"
#include "core/io/safetensors.h"

namespace hc::hc2 {

/// Rows shorter than this never get side information (a byte each would cost over 1 bit per
/// weight).
inline constexpr int64_t kMinRowLen = 8;
/// Rows of at least this many weights always get their multiplier byte (at most 1/8 bit per
/// weight); shorter ones only where it pays for itself (ShortRowsPay).
inline constexpr int64_t kCheapRowLen = 64;

/// The row multiplier of a stored byte k + 32: m = 2^(k / 4) for k in [-32, 31] (5.4), as
/// ldexp(Q[k mod 4], floor(k / 4)) with the spec's float32 constants Q.
float RowMultiplier(uint8_t stored);
/// RowMultiplier of every byte 0..255, computed once.
const float* RowMultiplierTable();

/// Rows of a tensor for side information: shape[0], or 0 when the tensor has rank < 2,
/// shape[0] < 2 or rows under kMinRowLen weights.
int64_t RowCount(const TensorInfo& info);

/// Whether row multipliers `rows` for rows of `row_len` weights gain more than their bytes cost
/// (always for rows of >= kCheapRowLen), under the high-rate model.
bool ShortRowsPay(absl::Span<const uint8_t> rows, int64_t row_len);

/// Multiplies decoded elements [begin, begin + out.size()) by their rows' multipliers (rows of
/// row_len elements); nothing without multipliers.
void ApplyRows(absl::Span<const uint8_t> rows, uint64_t row_len, uint64_t begin,
               absl::Span<float> out);
/// Adds d[r] to every decoded element of [begin, begin + out.size()) in row r (rows of row_len
/// elements), one float32 addition each; nothing when d is empty.
void AddRowOffsets(absl::Span<const float> d, uint64_t row_len, uint64_t begin,
                   absl::Span<float> out);

/// The unit of a row's dc byte (5.6): ((step * 2^-8) * m) / sqrtf(row_len), left to right in
/// float32, m the row's multiplier (or 1). One weight's error has a standard deviation of about
/// step * m / sqrt(12 * 128) (more with tcq), so a row's mean error is about 6.5 units of noise.
float DcUnit(float step, float m, uint64_t row_len);
/// The units of dc byte c in [-127, 127] (V of 5.6): c up to 64 in magnitude, then steps of 8
/// up to 568, for the rows whose mean error is a bias (the quantiser's shrinkage times a large
/// row mean) rather than noise. An exact integer.
int DcUnits(int c);
/// The byte in [-127, 127] whose DcUnits is nearest to q (a mean error in units, negated).
int8_t DcByte(double q);

}  // namespace hc::hc2

#endif  // HC_CORE_CODEC_HC2_ROWS_H_
