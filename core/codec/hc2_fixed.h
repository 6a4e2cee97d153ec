// hc2's fixed-rate mode: a bitshift trellis over rotated blocks (core/format/spec-hc2.md,
// section 4). Each rotated coefficient costs exactly `bits` (k) bits: the k-bit symbol t_i.
// Coefficient i decodes to s * C_k[w_i], where w_i, the 12-bit window, holds the block's last
// 12/k symbols with the newest in the high bits,
//
//   w_i = floor(w_{i-1} / 2^k) + t_i * 2^(12-k),   w_{-1} = 0,
//
// i.e. bits [k i - (12 - k), k i + k) of the block's LSB-first symbol stream (zeros before the
// block): a kernel reads a window with one unaligned load, a shift and a mask. C_k is a
// constant codebook of 4096 float32 values trained for unit-rms Gaussian blocks: codebook 2
// (written since format version 5) is structured so that kernels compute entries instead of
// looking them up (StructuredCodebook below); codebook 1 is a free table, still decoded.
// Consecutive windows overlap, so the encoder picks the whole sequence at once: a Viterbi search
// over the 2^(12-k) states, which gets within about 1.0 dB of the Gaussian rate-distortion bound
// at 4 bits and fixed rate, while decoding stays one table lookup (or, with codebook 2, a few
// byte shuffles) per weight.
#ifndef HC_CORE_CODEC_HC2_FIXED_H_
#define HC_CORE_CODEC_HC2_FIXED_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/json.h"
#include "core/base/parallel.h"
#include "core/codec/codec.h"

namespace hc::hc2 {

/// Bits of the window that indexes the codebook.
inline constexpr int kTrellisWindow = 12;
/// Entries of each codebook.
inline constexpr int kTrellisCodebook = 1 << kTrellisWindow;

/// Codebook 1 (format versions 2 to 4) for `bits` (2..4): kTrellisCodebook float32 values indexed
/// by the window above, trained freely (hc2_fixed_tables.cc). Still decoded, no longer written.
const float* TrainedCodebook(int bits);

/// Codebook 2 (format version 5, written by the encoder): C[w] = G[beta(w)] * 2^-5 with G 256
/// signed bytes and beta(w) = ((w >> 4) XOR D((w >> (4 - bits)) mod 256)) mod 256, D the GF(2)
/// linear map whose column j (the image of bit j) is d[j]. The newest symbol of the window picks
/// the high bits of beta (the coarse level) and the older 8 bits a dither of the low bits, so a
/// kernel computes C[w] with byte shuffles, one GF(2) affine instruction and a 256-entry byte
/// table instead of a 4096-entry float gather. Trained like codebook 1 (hc2_fixed_gen.cc
/// struct), it is 0.04 / 0.15 / 0.19 dB better at 2 / 3 / 4 bits on Gaussian blocks
/// (spec-hc2.md 4.1).
struct StructuredCodebook {
  const int8_t* g;   // [256]
  const uint8_t* d;  // [8]
};
/// Codebook 2's constants for `bits` (hc2_fixed_struct.cc).
StructuredCodebook TrellisStructure(int bits);

/// beta(w) of codebook 2 (see StructuredCodebook).
inline uint32_t StructuredByte(uint32_t w, int bits, const uint8_t* d) {
  const uint32_t o = (w >> (4 - bits)) & 0xFFu;
  uint32_t x = 0;
  for (int j = 0; j < 8; ++j) {
    if ((o >> j) & 1u) x ^= d[j];
  }
  return ((w >> 4) ^ x) & 0xFFu;
}

/// The codebook versions a record may name (params `codebook`; absent means 1).
inline constexpr int kCodebookTrained = 1;
inline constexpr int kCodebookStructured = 2;

/// The normative codebook `codebook` (1 or 2) for `bits` (2..4) as kTrellisCodebook float32
/// values indexed by the window (codebook 2 expanded once per process).
const float* TrellisCodebook(int bits, int codebook);

/// The search works on windows with the newest symbol in the LOW bits, v_i = (v_{i-1} * 2^k +
/// t_i) mod 2^12 (its states then have contiguous successors). v_i is w_i with the order of its
/// 12/k fields of k bits reversed, so a codebook in search order is search[v] = cb[reverse(v)]
/// (and back: the map is an involution). Writes kTrellisCodebook values to `out`.
void ToSearchOrder(const float* cb, int bits, float* out);
/// ToSearchOrder(TrellisCodebook(bits, codebook)), made once.
const float* TrellisSearchCodebook(int bits, int codebook);

/// The Viterbi search: the symbols sym[0..n) (each < 2^bits), starting from window 0, whose
/// decoded values minimise sum_i (u[i] - value_i)^2, with `search_cb` a codebook in search order;
/// ties go to the lower predecessor, then to the lower final state. n <= 128. With `allow_simd`
/// on a CPU with AVX-512 (16 states per vector) or AVX2 (8) the search is vectorised, with
/// results bit-identical to the scalar path (float32 subtract, multiply, add and compare only).
/// Returns the squared error, summed in symbol order.
float TrellisSearch(const float* u, int n, int bits, const float* search_cb, uint8_t* sym,
                    bool allow_simd = true);

/// The code paths of TrellisSearch, for tests and benchmarks.
enum class SearchPath { kScalar, kAvx2, kAvx512 };
/// TrellisSearch on one path; false (nothing written) where the CPU lacks it.
bool TrellisSearchOn(SearchPath path, const float* u, int n, int bits, const float* search_cb,
                     uint8_t* sym, float* error);

/// Decodes symbols with the normative window: c[i] = cb[w_i] for i < n.
void TrellisValues(const uint8_t* sym, int n, int bits, const float* cb, float* c);

/// The fixed mode of a whole tensor x[0..numel) (finite, numel >= 64) with codebook 2: per block
/// of 128, the rotation, the search on z / rms and the least-squares scale <z, c> / <c, c> in
/// F16. Returns the parts "symbols" and "scales" with params mode, bits, window and codebook, or
/// raw ("a block scale beyond the F16 range") when a block's rms exceeds 32768. Parallel over
/// blocks; the bytes do not depend on the executor.
/// `codebook` kCodebookTrained writes a version 4 record instead ("codes", no `codebook` param),
/// for readers that predate codebook 2 (and for tests of the old path).
EncodedTensor EncodeFixedTensor(const float* x, int64_t numel, int bits, Executor& ex,
                                int codebook = kCodebookStructured);

/// Checks a fixed-mode record of `numel` elements (params bits, window and codebook, parts
/// "codes" (codebook 1) or "symbols" (codebook 2) and "scales", their sizes) and returns its
/// decoder. Errors: DataLoss naming what is wrong.
absl::StatusOr<std::unique_ptr<TensorDecoder>> PrepareFixedDecoder(
    int64_t numel, const JsonValue& params, absl::Span<const PartView> parts);

/// What PrepareFixedDecoder validated, for kernels that read the parts themselves.
struct FixedRecord {
  int bits = 4;
  int codebook = kCodebookStructured;
  absl::Span<const uint8_t> symbols;  // the part "codes" or "symbols"
  absl::Span<const uint8_t> scales;
};
/// Validates like PrepareFixedDecoder and returns the record's fields. Errors: as there.
absl::StatusOr<FixedRecord> ParseFixedRecord(int64_t numel, const JsonValue& params,
                                             absl::Span<const PartView> parts);

}  // namespace hc::hc2

#endif  // HC_CORE_CODEC_HC2_FIXED_H_
