// hc1's hot kernels, one class trial over a block of outer pairs and the lookups of a block of
// inner pairs, each in a scalar reference and an AVX-512 version picked at run time. Both
// versions do exactly the same float64 operations in the same order (no FMA), so they give
// bit-identical codes and errors; tests/core/codec/hc1_simd_test.cc checks that. Used by core/codec/hc1_grid.cc; spec: core/format/spec-hc1.md, section 5.6.
#ifndef HC_CORE_CODEC_HC1_SIMD_H_
#define HC_CORE_CODEC_HC1_SIMD_H_

#include <cstdint>

#include "core/codec/hc1_geometry.h"

namespace hc::hc1 {

/// Most rings (class_max) the encoder supports.
constexpr int kMaxRings = 32;

/// One class trial's rings: radii r_i = i * each + L/2 (i = 0..k), r_k = D; an outer pair goes
/// to the first ring i >= 1 with d <= r_i and is looked up at float32(p - c) * f_i + c,
/// f_i = (L/2) / r_i.
struct Rings {
  int k = 0;
  bool increasing = true;
  double r[kMaxRings + 1] = {}, f[kMaxRings + 1] = {}, inv_f[kMaxRings + 1] = {};
  Rings() = default;
  Rings(double D, double L, int k_);
  /// The first ring i >= 1 with d <= r_i (r_k = D >= d). With increasing radii that is one plus
  /// the number of inner radii below d, counted without branches.
  int Class(double d) const {
    if (increasing) {
      int i = 1;
      for (int m = 1; m < k; ++m) i += d > r[m];
      return i;
    }
    int i = 1;
    while (i < k && !(d <= r[i])) ++i;
    return i;
  }
};

/// A block of outer pairs, as float64 copies of float32 values: dx, dy = float32(p - c),
/// d = float32 |p - c|, px, py = p. `cnt` pairs.
struct OuterBlock {
  const double *dx, *dy, *d, *px, *py;
  int cnt;
};

/// One trial over a block: for pair k, cls = R.Class(d), the query q = dx * f_cls + c (per
/// component), j = cb.Pick(cell of q, q), code[k] = j + stride * cls, and the reconstruction
/// errors ex[k] = |(CB_x[j] - c_x) * inv_f_cls + c_x - px|, ey[k] likewise.
using OuterTrialFn = void (*)(const Codebook& cb, const OuterBlock& b, const Rings& R,
                              uint32_t stride, uint32_t* code, double* ex, double* ey);

/// The scalar reference.
void OuterTrialScalar(const Codebook& cb, const OuterBlock& b, const Rings& R, uint32_t stride,
                      uint32_t* code, double* ex, double* ey);
/// Whether the CPU runs the AVX-512 kernel (AVX512F, VL, DQ).
bool HaveAvx512();
/// The AVX-512 kernel, 8 pairs at a time; call only when HaveAvx512(). Falls back to the scalar
/// Pick for lanes off the grid or in overflowing cells, and to the scalar kernel for rings that
/// do not increase.
void OuterTrialAvx512(const Codebook& cb, const OuterBlock& b, const Rings& R, uint32_t stride,
                      uint32_t* code, double* ex, double* ey);
/// The best kernel for this CPU.
OuterTrialFn BestOuterTrial();

/// Where the inner-pair kernel writes its per-pair results (arrays of the block's length).
struct InnerOut {
  /// j: the row nearest to p (the class trials' code, K = 0); jb: the row nearest to
  /// float32(p - c) + c (the code when K > 0).
  uint32_t *j, *jb;
  /// |CB[j] - p| per component, and |(CB[jb] - c) / 1 + c - p| per component.
  double *ex0, *ey0, *ex1, *ey1;
};

/// The inner-pair kernel over `cnt` pairs p = (px[k], py[k]) of a tensor whose float32 centre
/// is (cx, cy): j = Pick at p; jb = j when PickStable certifies that the point float32(p - c) + c
/// (a rounding error away) has the same nearest row or when it equals p, else Nearest there;
/// then the errors of InnerOut. Both kernels do the same float64 operations in the same order.
using InnerFn = void (*)(const Codebook& cb, const float* px, const float* py, int cnt, float cx,
                         float cy, const InnerOut& out);
/// The scalar reference.
void InnerScalar(const Codebook& cb, const float* px, const float* py, int cnt, float cx,
                 float cy, const InnerOut& out);
/// The AVX-512 kernel, 8 pairs at a time; call only when HaveAvx512(). Lanes off the grid, in
/// overflowing cells or not certified stable take the scalar path.
void InnerAvx512(const Codebook& cb, const float* px, const float* py, int cnt, float cx,
                 float cy, const InnerOut& out);
/// The best inner kernel for this CPU.
InnerFn BestInner();

/// The inner square in float32: a pair is inner when lox <= px <= hix and loy <= py <= hiy.
struct Square {
  float lox = 0, hix = 0, loy = 0, hiy = 0;
};

/// Where the split kernel writes a block's inner and outer pairs (structure of arrays), each
/// array with room for all the block's pairs.
struct SplitOut {
  float *ix, *iy, *ox, *oy;
  uint16_t *ii, *oi;
};

/// Splits the `n` pairs of `x` (2n floats, interleaved; n <= 65536): the inner pairs' x, y and
/// offset (0..n-1), ascending, to ix, iy, ii; the outer ones to ox, oy, oi. Returns the inner
/// count. Exact (comparisons and copies only): both kernels give identical output.
using SplitFn = int64_t (*)(const float* x, int64_t n, const Square& sq, const SplitOut& out);
/// The scalar reference.
int64_t SplitScalar(const float* x, int64_t n, const Square& sq, const SplitOut& out);
/// The AVX-512 kernel, 16 pairs at a time; call only when HaveAvx512().
int64_t SplitAvx512(const float* x, int64_t n, const Square& sq, const SplitOut& out);
/// The best split kernel for this CPU.
SplitFn BestSplit();
/// SplitAvx512 reading the pairs as F16 bits (2n values, each finite: widened exactly
/// in-register); call only when HaveAvx512(). Same output as SplitScalar on the widened values.
int64_t SplitF16Avx512(const uint16_t* h, int64_t n, const Square& sq, const SplitOut& out);

/// Over the `n` pairs of `x` (2n finite floats): the largest float32 squared distance
/// (px - cx)^2 + (py - cy)^2 (each product and the sum rounded to float32; -1 when n is 0) and
/// the number of inner pairs. Exact: both kernels give identical output.
using ScanFn = void (*)(const float* x, int64_t n, float cx, float cy, const Square& sq,
                        float* smax, int64_t* inner);
/// The scalar reference.
void ScanScalar(const float* x, int64_t n, float cx, float cy, const Square& sq, float* smax,
                int64_t* inner);
/// The AVX-512 kernel, 16 pairs at a time; call only when HaveAvx512().
void ScanAvx512(const float* x, int64_t n, float cx, float cy, const Square& sq, float* smax,
                int64_t* inner);
/// The best scan kernel for this CPU.
ScanFn BestScan();
/// ScanAvx512 reading the pairs as F16 bits (2n finite values); call only when HaveAvx512().
void ScanF16Avx512(const uint16_t* h, int64_t n, float cx, float cy, const Square& sq,
                   float* smax, int64_t* inner);

/// The centre pass over `n` pairs given as F16 bits (2n values, read in place and widened
/// in-register); call only when HaveAvx512(). Sets *sx and *sy to exactly PairwiseSumF32 (hc1_geometry.h)
/// of the widened x lane and y lane (stride 2), and returns whether every value is finite.
/// When some value is not finite the sums are unspecified.
bool PairSumsF16Avx512(const uint16_t* h, int64_t n, float* sx, float* sy);

}  // namespace hc::hc1

#endif  // HC_CORE_CODEC_HC1_SIMD_H_
