// The byte layout codec_decode_fuzz reads (and make_fuzz_seeds writes): one tensor's decoder
// inputs, as an artifact record would hand them to a codec.
//
//   u8 codec index (kFuzzCodecs[i % size]), u8 dtype (kFuzzFloatTypes[i % 3]),
//   u8 rank (% 5), rank x u32 dims,
//   params JSON text, '\0',
//   u8 part count (% 5), per part: suffix, '\0', u8 dtype (any DType, % count),
//                                  u32 byte length (clamped to what is left, rounded down to
//                                  whole elements), the bytes,
//   then u64 words steering the DecodeRange calls.
#ifndef HC_TESTS_FUZZ_CODEC_FUZZ_FORMAT_H_
#define HC_TESTS_FUZZ_CODEC_FUZZ_FORMAT_H_

#include <array>

#include "absl/strings/string_view.h"
#include "core/base/dtype.h"

namespace hc::fuzz {

/// The codecs the targets reach, by index byte (% size). rtn and hc1 keep indices 0 and 1, so
/// seeds written before hc2 joined keep their meaning (inputs whose index byte is >= 2 changed).
inline constexpr std::array<absl::string_view, 3> kFuzzCodecs = {"rtn", "hc1", "hc2"};
inline constexpr std::array<DType, 3> kFuzzFloatTypes = {DType::kF32, DType::kF16, DType::kBF16};
/// Number of DType values (the enum runs from kBool to the last entry).
inline constexpr int kFuzzDTypeCount = static_cast<int>(DType::kU64) + 1;

}  // namespace hc::fuzz

#endif  // HC_TESTS_FUZZ_CODEC_FUZZ_FORMAT_H_
