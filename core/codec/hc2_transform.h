// hc2's transform: the random-sign Walsh-Hadamard rotation of a block (core/format/spec-hc2.md,
// section 3). Used by core/codec/hc2.cc; exposed for tests.
#ifndef HC_CORE_CODEC_HC2_TRANSFORM_H_
#define HC_CORE_CODEC_HC2_TRANSFORM_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace hc::hc2 {

/// Weights per block.
inline constexpr int kBlock = 128;

/// The sign of position i (0..127) of every block: -1 where bit i of the 128-bit pattern
/// (0x9E3779B97F4A7C15 for i < 64, 0xBF58476D1CE4E5B9 for the rest, bit i mod 64) is set.
constexpr float Sign(int i) {
  constexpr uint64_t kPattern[2] = {0x9E3779B97F4A7C15ull, 0xBF58476D1CE4E5B9ull};
  return (kPattern[i >> 6] >> (i & 63)) & 1 ? -1.0f : 1.0f;
}

/// Block length used for `r` weights (the last block may be short): the smallest power of two
/// >= max(r, 2).
inline int PaddedLength(int r) {
  int n = 2;
  while (n < r) n *= 2;
  return n;
}

/// The blocks of a flattened tensor of `numel` (>= 1) elements (spec-hc2.md, section 2):
/// `blocks` blocks of kBlock, the last one holding last_r elements padded to last_n.
struct Blocks {
  int64_t numel = 0;
  int64_t blocks = 0;
  int last_r = 0, last_n = 0;
  explicit Blocks(int64_t ne)
      : numel(ne),
        blocks((ne + kBlock - 1) / kBlock),
        last_r(static_cast<int>(ne - (blocks - 1) * kBlock)),
        last_n(PaddedLength(last_r)) {}
  /// Elements of block b, and its padded length.
  int r(int64_t b) const { return b + 1 == blocks ? last_r : kBlock; }
  int n(int64_t b) const { return b + 1 == blocks ? last_n : kBlock; }
  /// Coefficients of all blocks: full blocks, then the last one's padded length.
  uint64_t padded() const { return static_cast<uint64_t>(blocks - 1) * kBlock + last_n; }
};

/// The unnormalised Walsh-Hadamard transform of v[0..n), n a power of two <= 128, in place, in
/// float32: for h = 1, 2, 4, ... < n, for every pair (j, j + h) with j mod 2h < h:
/// (v[j], v[j + h]) <- (v[j] + v[j + h], v[j] - v[j + h]). Applying it twice multiplies by n.
/// Uses an AVX-512 (else AVX2) kernel for n = 128 where the CPU has it and SimdAllowed() (same
/// bits as FwhtScalar).
void Fwht(float* v, int n);
/// The portable reference of Fwht (the test oracle of the SIMD kernel).
void FwhtScalar(float* v, int n);

/// Forward rotation of one block: v[i] = Sign(i) * x[i] for i < r, 0 for r <= i < n, then Fwht.
void Rotate(const float* x, int r, int n, float* v);
/// Inverse rotation: Fwht(z), then out[i] = Sign(i) * z[i] * (1 / n) for i < r (evaluated
/// left to right in float32). z is scratch: its contents afterwards are unspecified. For
/// n = 128 on an AVX-512 CPU (and SimdAllowed()) one fused kernel does both passes in registers,
/// with the same bits as UnrotateScalar.
void Unrotate(float* z, int r, int n, float* out);
/// Unrotate, then out[i] *= m for i < r (the same float32 operations; one pass for n = 128 on
/// AVX-512). The ec decoder applies a row's multiplier this way (spec-hc2.md 5.4).
void UnrotateScaled(float* z, int r, int n, float m, float* out);
/// UnrotateScaled, then out[i] += d for i < r (one rounding each: (unrotated * m) + d; one pass
/// for n = 128 on AVX-512). The ec decoder applies a row's multiplier and its `dc` correction
/// this way (spec-hc2.md 5.4, 5.6); m = 1 gives the same bits as Unrotate then the add.
void UnrotateScaledOffset(float* z, int r, int n, float m, float d, float* out);
/// The reference of Unrotate: Fwht(z) in place (which may still use a SIMD Fwht, bit-identical),
/// then the sign-and-scale loop.
void UnrotateScalar(float* z, int r, int n, float* out);

}  // namespace hc::hc2

#endif  // HC_CORE_CODEC_HC2_TRANSFORM_H_
