// hc2: our own hyperfunction codec. Each block of 128 consecutive weights is rotated by a fixed
// random-sign Walsh-Hadamard transform (which makes any block close to Gaussian), then every
// rotated coefficient is mapped to an integer position on a lattice or on a trellis path and
// decoded by a closed-form function:
//
//  - mode "ec" (default, entropy-coded): one step per tensor, each coefficient an integer on the
//    lattice step * Z, coded with interleaved rANS under one of 32 Gaussian class models chosen
//    per block. The encoder searches the step that meets `bpw` (bits per weight, every stored
//    byte counted). Equal steps everywhere are the MSE-optimal allocation within a tensor.
//  - mode "fixed" (fixed rate, for inference kernels): an F16 scale per block and `bits` bits
//    per coefficient, a symbol of a bitshift trellis: each coefficient decodes to the scale
//    times a constant codebook entry indexed by the last 12 bits of the block's symbol stream,
//    chosen by a Viterbi search (hc2_fixed.h): bits + 16/128 bits per weight.
//
// In mode "ec", tensors of rank >= 2 may also carry a byte per row (shape[0]) of each of two
// kinds: a multiplier (option `relative`) and a correction of the row's mean error (option
// `dc`), both charged to `bpw`.
//
// Blocks run along the flattened tensor, so with a row length that is a multiple of 128 (every
// linear layer of a transformer) no block straddles two rows. core/format/spec-hc2.md is the
// normative description: parts, params, token model, stream layout, decoding formula.
#ifndef HC_CORE_CODEC_HC2_H_
#define HC_CORE_CODEC_HC2_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/codec/codec.h"

namespace hc {

/// hc2 options. Keys: mode, bpw, bits, relative, tcq, dc.
struct Hc2Options {
  /// "ec" (entropy-coded, default) or "fixed".
  std::string mode = "ec";
  /// ec: the most bits per weight to spend on the tensor, stored bytes counted. [0.25, 32].
  /// Default: 4.25.
  double bpw = 4.25;
  /// fixed: bits per weight of the codes, 2..4 (plus 0.125 for the scales). Default: 4.
  int bits = 4;
  /// ec, tensors of rank >= 2: rows (the first dimension: output channels in PyTorch, ONNX and
  /// Hugging Face layouts) are scaled by m_r ~ rms_r^relative before coding, so that each
  /// row's error follows its own size. 0 gives one absolute step (MSE-optimal within the
  /// tensor); 1 gives every output channel the same relative precision, which protects small
  /// channels whose errors a following normalisation amplifies. One byte per row (rows under 64
  /// weights, e.g. depthwise convolutions, get it only where it gains more than it costs).
  /// Default: 1.
  double relative = 1.0;
  /// ec: trellis-coded quantisation (two interleaved quantisers chosen by a 4-state machine,
  /// searched by Viterbi), about 0.8 dB better than plain rounding at equal rate. Default: true.
  bool tcq = true;
  /// ec, tensors of rank >= 2 with rows of >= 8 weights: stores one signed byte per row (the
  /// first dimension, as for `relative`), a correction the decoder adds to every weight of the
  /// row so that the row's mean error (the sum of its errors, which a layer multiplies by the
  /// mean of its inputs) is cancelled to within 1/256 of a step. The byte is charged to `bpw`
  /// (8 / row length bits per weight). Ignored in mode "fixed". false gives the artifacts of
  /// encoders before this option, byte for byte. Default: false: on PP-OCRv4 it lowers the mean
  /// CER over ten rate settings from 0.029 to 0.016, but it costs 0.1-0.2 dB of SNR and raised
  /// the byte LM's bits per byte at 4.25 bpw from 1.6330 to 1.6364 (docs/hc2-cer.md), so it is
  /// a choice for convolutional models, not a default.
  bool dc = false;

  absl::Status Validate() const;
  static absl::StatusOr<Hc2Options> FromCodecOptions(const CodecOptions& options);
};

/// Tensors under this many elements are kept raw.
inline constexpr uint64_t kHc2MinNumel = 64;

/// Creates an hc2 codec. Errors: InvalidArgument for unknown keys or out-of-range values.
absl::StatusOr<std::unique_ptr<Codec>> CreateHc2Codec(const CodecOptions& options);
/// Name, summary and options for listings.
CodecDescription DescribeHc2Codec();

}  // namespace hc

#endif  // HC_CORE_CODEC_HC2_H_
