// Element types of safetensors tensors, and exact conversions between the float types.
#ifndef HC_CORE_BASE_DTYPE_H_
#define HC_CORE_BASE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include "absl/strings/string_view.h"

#include "absl/types/span.h"
#include "core/base/parallel.h"

namespace hc {

/// The safetensors dtypes hyperc knows. Values are internal (never serialised as numbers; the
/// artifact stores the safetensors name).
enum class DType : uint8_t {
  kBool, kU8, kI8, kF8E5M2, kF8E4M3, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64,
};

/// The safetensors spelling ("F32", "BF16", ...).
absl::string_view DTypeName(DType d);
/// Parses a safetensors dtype name; nullopt for anything unknown.
std::optional<DType> ParseDType(absl::string_view name);
/// Bytes per element.
size_t DTypeSize(DType d);
/// True for F32, F16 and BF16: the dtypes codecs compress. Everything else passes through raw.
inline bool IsCompressibleFloat(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16;
}

/// IEEE binary16 -> binary32, exact (subnormals, infinities and NaN payloads kept).
float HalfToFloat(uint16_t h);
/// binary32 -> binary16, round to nearest even; overflow gives infinity, NaN stays NaN.
uint16_t FloatToHalf(float f);
/// bfloat16 -> binary32, exact.
inline float BFloat16ToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
/// binary32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
uint16_t FloatToBFloat16(float f);

/// Widens `n` elements of `dtype` (F32, F16 or BF16; little-endian, any alignment) at `src`
/// into `dst`. Exact.
void WidenToF32(DType dtype, const uint8_t* src, size_t n, float* dst);
/// WidenToF32() that also tells whether any element is a NaN or an infinity (for F16 at no
/// extra cost: the conversion looks at every exponent anyway).
bool WidenToF32Checked(DType dtype, const uint8_t* src, size_t n, float* dst);
/// Narrows `n` floats into `dtype` (F32, F16 or BF16) at `dst`, rounding to nearest even.
void NarrowFromF32(DType dtype, const float* src, size_t n, uint8_t* dst);
/// True if any of the `n` elements of `dtype` (F32, F16 or BF16; little-endian, any alignment)
/// at `src` is a NaN or an infinity (its exponent bits all ones). Reads every element.
bool HasNonFiniteValues(DType dtype, const uint8_t* src, size_t n);
/// The same over all of `data` (whole elements of `dtype`), in parallel chunks of 2^20
/// elements on `executor` (the answer does not depend on the chunking).
bool HasNonFiniteValues(DType dtype, absl::Span<const uint8_t> data, Executor& executor);
/// Rounds each value in place to the nearest value representable in `dtype` (identity for F32).
void RoundTripThroughDType(DType dtype, absl::Span<float> values);

}  // namespace hc

#endif  // HC_CORE_BASE_DTYPE_H_
