// The kernels behind core/infer/linear.h (internal to hc_infer; tests reach them through
// Linear with and without ScopedScalarOnly). Each computes, for one batch chunk of width `nb`,
// the partial products of rows [r0, r1) over columns [c0, c1) of W: `x` points at column c0 of
// the chunk's first X row (row stride ldx), and y[b * ldy + r] receives the partial sum (added
// to it when `add`). Callers check the layout rules of linear.h first and pick c0, c1 on the
// codec's group boundaries.
#ifndef HC_CORE_INFER_LINEAR_KERNELS_H_
#define HC_CORE_INFER_LINEAR_KERNELS_H_

#include <cmath>
#include <cstdint>

namespace hc::infer {

/// Dense row-major weights (F16 when `f16`, else F32).
struct DenseArgs {
  const uint8_t* w;
  int64_t cols;
  bool f16;
  const float* x;
  int64_t ldx;
  int64_t r0, r1;
  int64_t c0, c1;
  bool add;
  float* y;
  int64_t ldy;
};

/// hc2 fixed mode: `codes` (LSB-first symbols of `bits` bits), `scales` (F16 per block), `cb`
/// the 4096-entry codebook, `xr` the rotated X / 128.
struct Hc2Args {
  const uint8_t* codes;
  uint64_t codes_size;
  const uint8_t* scales;
  const float* cb;
  /// Hc2PairTable(bits), or null: then the AVX-512 kernel looks up one window at a time.
  const float* pairs;
  int bits;
  int64_t cols;
  const float* xr;
  int64_t ldx;
  int64_t r0, r1;
  int64_t c0, c1;
  bool add;
  float* y;
  int64_t ldy;
  /// The integer path (Hc2Int*: codebook 2, 4 bits): X by QuantizeX16 per block of 128, stored
  /// block-major so that a block's batch rows are contiguous: block j of batch row b (counted
  /// from the chunk's first) at xb + j * xb_block + 256 b (natural order); xc[j * xc_block +
  /// 16 b + l] = -128 * its lane sum l, the correction for the codes' +128 bias; its scale at
  /// xs[j * xs_block + b].
  const int8_t* xb = nullptr;
  int64_t xb_block = 0;
  const int32_t* xc = nullptr;
  int64_t xc_block = 0;
  const float* xs = nullptr;
  int64_t xs_block = 0;
  const int8_t* g = nullptr;
  const uint8_t* d = nullptr;
};

/// rtn: `codes` (LSB-first, `bits` bits), `scales` (F16 pairs s, m per group), `xsum` the sums
/// of X per group, [NB, cols / group].
struct RtnArgs {
  const uint8_t* codes;
  uint64_t codes_size;
  const uint8_t* scales;
  int bits;
  int64_t group;
  int64_t cols;
  const float* x;
  int64_t ldx;
  const float* xsum;
  int64_t r0, r1;
  int64_t c0, c1;
  bool add;
  float* y;
  int64_t ldy;
  /// The integer path (RtnInt*: 4 bits, group % 64 == 0): X by QuantizeX16 (even_odd) per
  /// group, group-major: group j of batch row b (counted from the chunk's first) at xb + j *
  /// xb_block + 2 * group * b; xc[j * xc_block + b] = the sum of its rounded values (the kernels
  /// centre the codes on the group's zero point, q - RtnZero(s, m), so that X's rounding errors
  /// are weighted like the weights); its scale at xs[j * xs_block + b].
  const int8_t* xb = nullptr;
  int64_t xb_block = 0;
  const int32_t* xc = nullptr;
  int64_t xc_block = 0;
  const float* xs = nullptr;
  int64_t xs_block = 0;
};

/// hc1: MSB-first indices of `width` bits after `prefix` bits; `table` holds entries + 1 pairs
/// (the last one NaN, for indices >= entries).
struct Hc1Args {
  const uint8_t* codes;
  uint64_t codes_size;
  const float* table;
  uint64_t entries;
  int width;
  int prefix;
  int64_t cols;
  const float* x;
  int64_t ldx;
  int64_t r0, r1;
  int64_t c0, c1;
  bool add;
  float* y;
  int64_t ldy;
};

/// X for the integer kernels: v[0..n) (n a multiple of 64) rounded to integers q in
/// [-32639, 32639] with one scale for all, max|v| / 32639 (returned; NaN, with every q 0, when v
/// holds inf or NaN), each as two signed bytes q = 256 qh + ql (32639 = 127 * 256 + 127 keeps qh
/// a byte), per chunk of 64 values: the 64 qh, then the 64 ql, value i of the chunk at position i
/// or, with `even_odd`, at i / 2 (even i) and 32 + i / 2 (odd i). `lane_sums` (16 values, or
/// null): the sums of q over the positions 4l..4l+3 of every chunk (vpdpbusd's lane l).
float QuantizeX16(const float* v, int n, bool even_odd, int8_t* out, int32_t* lane_sums);

/// The pair table of hc2's fixed mode for `bits` and `codebook` (1 or 2): entry v (a 12 +
/// bits-bit window holding two consecutive 12-bit windows, w_i = v mod 4096 and w_{i+1} = v >>
/// bits) is the two floats C[w_i], C[w_{i+1}]. 2^(12 + bits) * 8 bytes (512 KB at 4 bits), made
/// on first use, once per process (thread-safe).
const float* Hc2PairTable(int bits, int codebook);

void DenseScalar(const DenseArgs& a, int nb);
void Hc2Scalar(const Hc2Args& a, int nb);
/// hc2's integer path: per block, sum_i G[beta(w_i)] * q_i in int32 (exact), times
/// s * xs * 2^-5. The reference of Hc2IntAvx512.
void Hc2IntScalar(const Hc2Args& a, int nb);
void RtnScalar(const RtnArgs& a, int nb);
/// The code nearest to weight 0 of an rtn group (w = q s + m), in [0, 15]; 0 where s <= 0 or
/// -m / s is not a number.
inline int32_t RtnZero(float s, float m) {
  const float z = s > 0 ? std::nearbyint(-m / s) : 0.0f;
  return z >= 0 ? (z <= 15 ? static_cast<int32_t>(z) : 15) : 0;
}
/// rtn's integer path: per group, with z = RtnZero(s, m), sum_i (q_i - z) * x_i in int32
/// (exact) times s * xs, plus (m + z s) * sum(x). The reference of RtnIntAvx512, which sums
/// q_i * x_i in int32 and subtracts z * xc * s * xs in float (the same up to rounding).
void RtnIntScalar(const RtnArgs& a, int nb);
void Hc1Scalar(const Hc1Args& a, int nb);

/// AVX-512 (F, BW, VL, VBMI, FMA, F16C) kernels; nb in {1, 2, 4, 8, 16}. Call only where
/// LinearHasAvx512().
void DenseAvx512(const DenseArgs& a, int nb);
void Hc2Avx512(const Hc2Args& a, int nb);
void RtnAvx512(const RtnArgs& a, int nb);
void Hc1Avx512(const Hc1Args& a, int nb);

/// Whether Hc2IntAvx512 can run here: the AVX-512 set above plus GFNI and AVX512-VNNI.
bool Hc2IntAvailable();
/// rtn's integer path, 4-bit codes, groups of multiples of 64: 32 code bytes give 64 nibbles
/// (low ones = even weights first, then the odd ones: X is stored in that order), and per batch
/// row two vpdpbusd with X's high and low bytes. Same CPU needs as Hc2IntAvx512.
void RtnIntAvx512(const RtnArgs& a, int nb);
/// hc2's integer path with 4-bit symbols, 64 weights per step: VBMI byte permute and two
/// multishifts give each lane its window's bytes, one GF(2) affine instruction and an XOR make
/// beta, two 128-entry byte permutes and a blend look G + 128 up (no gather), and VNNI's
/// vpdpbusd multiplies the 64 unsigned codes by X's 64 high bytes, then by its 64 low bytes:
/// 256 sum(cu qh) + sum(cu ql) + xc = sum(c q), exact in int32. nb in {1, 2, 4, 8, 16}.
void Hc2IntAvx512(const Hc2Args& a, int nb);

}  // namespace hc::infer

#endif  // HC_CORE_INFER_LINEAR_KERNELS_H_
