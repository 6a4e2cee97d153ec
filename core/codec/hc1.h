// hc1: Hyper-Compression exactly as the paper's reference implementation runs it.
//
// The flattened tensor (F16/BF16 widened exactly to F32; an odd length padded with its float32
// mean) is read as pairs p_i = (x[2i], x[2i+1]). Each pair is mapped to the nearest point of a
// sheared-grid "winding" codebook of n + 1 points in an L x L square around the tensor's centre
// c; pairs outside the square are first pulled in along the ray from c by one of K radial rings
// (K <= class_max, searched with an early stop). The stored index I = j + (n + 1) k (codeword j,
// ring k) is packed MSB-first at bit_length(max I) bits after z zero bits, z making the stream a
// whole number of bytes. Tensors under 10 elements, and (if enabled) tensors whose mean error
// exceeds `fallback_mae`, stay raw. core/format/spec-hc1.md is the normative description: stored
// parts, params, decoding formula, tie rule.
//
// Stored parts: "codes" U8 [ceil((z + M * uint_i) / 8)] (byte-identical to the reference's .bin
// file) and "side" F32 [4] = (c.x, c.y, p_far.x, p_far.y). Params: L, n, K, uint_i, z (decoder),
// num_inner_index, mae, inner_pairs, outer_pairs (informative).
#ifndef HC_CORE_CODEC_HC1_H_
#define HC_CORE_CODEC_HC1_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/codec/codec.h"

namespace hc {

/// hc1 options. Option keys: preset, L, n (comma list), class_max, loss_max, loss_threshold,
/// fallback_mae. A preset sets every value; keys given alongside it override single values.
struct Hc1Options {
  /// "llm" (default), "unet" or "mobilenet": the reference's three driver scripts.
  std::string preset = "llm";
  /// Side of the codebook square. Finite, > 0. llm/unet 0.1, mobilenet 0.8.
  double L = 0.1;
  /// Candidate codebook sizes (the reference's num_inner_list), each in [1, 65536]; 1 to 16 of
  /// them. With several, the first whose mean error is <= loss_max is used, else the one with the
  /// smallest mean error (the earliest on ties). llm/mobilenet [1600], unet [225].
  std::vector<int64_t> n = {1600};
  /// Most radial rings for pairs outside the square, in [1, 32]. llm/unet 3, mobilenet 4.
  int class_max = 3;
  /// Mean error accepted when choosing among several n. Finite, >= 0. Default 0.001.
  double loss_max = 0.001;
  /// The ring search stops at the first ring count whose mean error is <= this. Default 0.001.
  double loss_threshold = 0.001;
  /// Keep the tensor raw when its mean error exceeds this; 0 turns it off. Finite, >= 0.
  /// llm 0.006, unet/mobilenet 0.
  double fallback_mae = 0.006;

  /// The values of preset `name`. Errors: InvalidArgument naming the option for unknown names.
  static absl::StatusOr<Hc1Options> Preset(absl::string_view name);
  /// Checks every range. Errors: InvalidArgument naming the option and the value.
  absl::Status Validate() const;
  /// Parses and validates text options. Errors: InvalidArgument for unknown keys, unparsable or
  /// out-of-range values (each names the option).
  static absl::StatusOr<Hc1Options> FromCodecOptions(const CodecOptions& options);
};

/// What an hc1 decoder needs, validated: `table` holds 2 float32 per index (the decoded pair
/// of index I at 2I, 2I+1; indices >= table.size() / 2 decode to NaN), `codes` the stored
/// stream (pair i's index is bits [prefix_bits + i * width, + width), MSB-first).
struct Hc1DecodeTable {
  std::vector<float> table;
  absl::Span<const uint8_t> codes;
  int width = 0;
  int prefix_bits = 0;
};

/// Checks an hc1 record (as Codec::PrepareDecoder does) and builds its table. Used by the
/// decoder and by the fused kernels (core/infer). Errors: DataLoss naming what is wrong.
absl::StatusOr<Hc1DecodeTable> PrepareHc1DecodeTable(const TensorInfo& info,
                                                     const JsonValue& params,
                                                     absl::Span<const PartView> parts);

/// Creates an hc1 codec. Errors: as Hc1Options::FromCodecOptions.
absl::StatusOr<std::unique_ptr<Codec>> CreateHc1Codec(const CodecOptions& options);
/// Name, summary and options for listings.
CodecDescription DescribeHc1Codec();

}  // namespace hc

#endif  // HC_CORE_CODEC_HC1_H_
