// rtn: group-wise asymmetric integer rounding, the baseline every report compares against.
//
// The flattened tensor is cut into groups of `group_size` consecutive elements (the last one may
// be shorter). Per group: scale s = (max - min) / (2^bits - 1) and zero m = min, both stored as
// F16; each weight becomes q = clamp(round((x - m) / s), 0, 2^bits - 1) using the F16-rounded s
// and m, and decodes to q * s + m. Codes are packed LSB-first at `bits` bits.
//
// Stored parts: "codes" U8 [ceil(numel * bits / 8)], "scales" F16 [groups, 2] (s, m).
// Bits per weight: bits + 32 / group_size (4.25 at 4 bits, group 128).
#ifndef HC_CORE_CODEC_RTN_H_
#define HC_CORE_CODEC_RTN_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/codec/codec.h"

namespace hc {

/// rtn options.
struct RtnOptions {
  /// Bits per code, 2..8. Default: 4.
  int bits = 4;
  /// Elements per group, 1..1048576. Default: 128.
  int64_t group_size = 128;

  absl::Status Validate() const;
  static absl::StatusOr<RtnOptions> FromCodecOptions(const CodecOptions& options);
};

/// Creates an rtn codec. Errors: InvalidArgument for unknown keys or out-of-range values.
absl::StatusOr<std::unique_ptr<Codec>> CreateRtnCodec(const CodecOptions& options);
/// Name, summary and options for listings.
CodecDescription DescribeRtnCodec();

}  // namespace hc

#endif  // HC_CORE_CODEC_RTN_H_
