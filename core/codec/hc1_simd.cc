#include "core/codec/hc1_simd.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/base/dtype.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hc::hc1 {

Rings::Rings(double D, double L, int k_) : k(k_) {
  const double h = L / 2;
  const double each = (D - h) / k;
  for (int i = 0; i <= k; ++i) r[i] = static_cast<double>(i) * each + h;
  r[k] = D;
  for (int i = 0; i <= k; ++i) {
    f[i] = h / r[i];
    inv_f[i] = 1.0 / f[i];
    if (i > 0 && r[i] < r[i - 1]) increasing = false;
  }
}

void OuterTrialScalar(const Codebook& cb, const OuterBlock& b, const Rings& R, uint32_t stride,
                      uint32_t* code, double* ex, double* ey) {
  const double cx = cb.cx(), cy = cb.cy();
  const Codebook::Locator loc = cb.locator();
  for (int k = 0; k < b.cnt; ++k) {
    const int cls = R.Class(b.d[k]);
    const double qx = b.dx[k] * R.f[cls] + cx;
    const double qy = b.dy[k] * R.f[cls] + cy;
    const uint32_t j = cb.Pick(loc.Cell(qx, qy), qx, qy);
    code[k] = j + stride * static_cast<uint32_t>(cls);
    const double inv = R.inv_f[cls];
    ex[k] = std::abs((cb.x(j) - cx) * inv + cx - b.px[k]);
    ey[k] = std::abs((cb.y(j) - cy) * inv + cy - b.py[k]);
  }
}

void InnerScalar(const Codebook& cb, const float* px, const float* py, int cnt, float cx,
                 float cy, const InnerOut& out) {
  const double cxd = cb.cx(), cyd = cb.cy();
  const Codebook::Locator loc = cb.locator();
  for (int k = 0; k < cnt; ++k) {
    const double qx = px[k], qy = py[k];
    const double bx = static_cast<double>(px[k] - cx) + cxd;
    const double by = static_cast<double>(py[k] - cy) + cyd;
    bool stable;
    const uint32_t j =
        cb.PickStable(loc.Cell(qx, qy), qx, qy, std::abs(bx - qx) + std::abs(by - qy), &stable);
    uint32_t jb = j;
    if (!stable && (bx != qx || by != qy)) [[unlikely]] {
      jb = cb.Nearest(bx, by);
    }
    out.j[k] = j;
    out.jb[k] = jb;
    out.ex0[k] = std::abs(cb.x(j) - qx);
    out.ey0[k] = std::abs(cb.y(j) - qy);
    out.ex1[k] = std::abs((cb.x(jb) - cxd) / 1.0 + cxd - qx);
    out.ey1[k] = std::abs((cb.y(jb) - cyd) / 1.0 + cyd - qy);
  }
}

int64_t SplitScalar(const float* x, int64_t n, const Square& sq, const SplitOut& out) {
  int64_t ni = 0, no = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float px = x[2 * i], py = x[2 * i + 1];
    if ((sq.lox <= px) & (px <= sq.hix) & (sq.loy <= py) & (py <= sq.hiy)) {
      out.ix[ni] = px;
      out.iy[ni] = py;
      out.ii[ni++] = static_cast<uint16_t>(i);
    } else {
      out.ox[no] = px;
      out.oy[no] = py;
      out.oi[no++] = static_cast<uint16_t>(i);
    }
  }
  return ni;
}

void ScanScalar(const float* x, int64_t n, float cx, float cy, const Square& sq, float* smax,
                int64_t* inner) {
  float m = -1;
  int64_t ni = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float px = x[2 * i], py = x[2 * i + 1];
    const float dx = px - cx, dy = py - cy;
    m = std::max(m, dx * dx + dy * dy);
    ni += (sq.lox <= px) & (px <= sq.hix) & (sq.loy <= py) & (py <= sq.hiy);
  }
  *smax = m;
  *inner = ni;
}

#if defined(__x86_64__)

#define HC1_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq")))

// Shared by the two AVX-512 kernels: each lane's grid cell (as Codebook::Locator::Cell; the
// index of the cell's first slot), with the lanes on the grid in *on_grid.
HC1_AVX512 inline __m256i LocateCells(const Codebook::Locator& loc, __m512d qx, __m512d qy,
                                      __mmask8 live, __mmask8* on_grid) {
  const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd();
  const __m512d inv_cell = _mm512_set1_pd(loc.inv_cell), cells_d = _mm512_set1_pd(loc.cells_d);
  const __m512d rx =
      _mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(qx, _mm512_set1_pd(loc.ox)), inv_cell), one);
  const __m512d ry =
      _mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(qy, _mm512_set1_pd(loc.oy)), inv_cell), one);
  const __mmask8 ok = (loc.ok ? live : 0) & _mm512_cmp_pd_mask(rx, zero, _CMP_GE_OQ) &
                      _mm512_cmp_pd_mask(ry, zero, _CMP_GE_OQ) &
                      _mm512_cmp_pd_mask(rx, cells_d, _CMP_LT_OQ) &
                      _mm512_cmp_pd_mask(ry, cells_d, _CMP_LT_OQ);
  const __m256i ix = _mm512_maskz_cvttpd_epi32(ok, rx);
  const __m256i iy = _mm512_maskz_cvttpd_epi32(ok, ry);
  *on_grid = ok;
  return _mm256_mullo_epi32(
      _mm256_add_epi32(_mm256_mullo_epi32(iy, _mm256_set1_epi32(loc.cells)), ix),
      _mm256_set1_epi32(Layout::kSlots));
}

// The kSlots candidates of each lane's cell: slots 0-1 and 2-3 gathered as one 64-bit element
// each (little-endian: the lower slot in the low half). Returns the lanes whose cell does not
// overflow (the others take the scalar way).
HC1_AVX512 inline __mmask8 GatherSlots(const int* slots, __m256i cell, __mmask8 on_grid,
                                       __m256i* s) {
  static_assert(Layout::kSlots == 4);
  const __m512i s01 =
      _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), on_grid, cell, slots, 4);
  const __m512i s23 = _mm512_mask_i32gather_epi64(
      _mm512_setzero_si512(), on_grid, _mm256_add_epi32(cell, _mm256_set1_epi32(2)), slots, 4);
  s[0] = _mm512_maskz_cvtepi64_epi32(0xff, s01);
  s[1] = _mm512_maskz_cvtepi64_epi32(0xff, _mm512_maskz_srli_epi64(0xff, s01, 32));
  s[2] = _mm512_maskz_cvtepi64_epi32(0xff, s23);
  s[3] = _mm512_maskz_cvtepi64_epi32(0xff, _mm512_maskz_srli_epi64(0xff, s23, 32));
  const __m256i overflow = _mm256_set1_epi32(static_cast<int>(Layout::kOverflow));
  return on_grid & ~_mm256_test_epi32_mask(s[Layout::kSlots - 1], overflow);
}

bool HaveAvx512() {
  static const bool have = __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512dq");
  return have;
}

HC1_AVX512 void OuterTrialAvx512(
    const Codebook& cb, const OuterBlock& b, const Rings& R, uint32_t stride, uint32_t* code,
    double* ex, double* ey) {
  if (!R.increasing) {
    OuterTrialScalar(cb, b, R, stride, code, ex, ey);
    return;
  }
  const Codebook::Locator loc = cb.locator();
  const double* xy = cb.xy();
  const __m512d cx = _mm512_set1_pd(cb.cx()), cy = _mm512_set1_pd(cb.cy());
  const __m512d zero = _mm512_setzero_pd();
  const __m256i vstride = _mm256_set1_epi32(static_cast<int>(stride));
  const __m256i zero_i = _mm256_setzero_si256(), one_i = _mm256_set1_epi32(1);
  const int* slots = reinterpret_cast<const int*>(loc.slots);
  const bool small = R.k < 8;  // f and inv_f fit one register (entries 0..k)
  const __m512d ftab = _mm512_loadu_pd(R.f), itab = _mm512_loadu_pd(R.inv_f);
  // Chunks of kChunk pairs: first every pair's class, query and cell (cells prefetched), then
  // the candidates, so that the cells' cache misses overlap.
  constexpr int kChunk = 128;
  alignas(64) double aqx[kChunk], aqy[kChunk];
  alignas(64) int acell[kChunk], acls[kChunk];
  alignas(64) uint8_t aok[kChunk / 8];
  for (int c0 = 0; c0 < b.cnt; c0 += kChunk) {
    const int n = std::min(kChunk, b.cnt - c0);
    for (int k0 = 0; k0 < n; k0 += 8) {
      const int left = n - k0;
      const __mmask8 live = left >= 8 ? 0xff : static_cast<__mmask8>((1u << left) - 1);
      const __m512d d = _mm512_maskz_loadu_pd(live, b.d + c0 + k0);
      const __m512d dx = _mm512_maskz_loadu_pd(live, b.dx + c0 + k0);
      const __m512d dy = _mm512_maskz_loadu_pd(live, b.dy + c0 + k0);
      // Class: 1 + the number of inner radii below d.
      __m256i cls = one_i;
      for (int m = 1; m < R.k; ++m) {
        const __mmask8 gt = _mm512_cmp_pd_mask(d, _mm512_set1_pd(R.r[m]), _CMP_GT_OQ);
        cls = _mm256_mask_add_epi32(cls, gt, cls, one_i);
      }
      const __m512d f =
          small ? _mm512_maskz_permutexvar_pd(0xff, _mm512_maskz_cvtepu32_epi64(0xff, cls), ftab)
                : _mm512_mask_i32gather_pd(zero, 0xff, cls, R.f, 8);
      const __m512d qx = _mm512_add_pd(_mm512_mul_pd(dx, f), cx);
      const __m512d qy = _mm512_add_pd(_mm512_mul_pd(dy, f), cy);
      __mmask8 on_grid;
      const __m256i cell = LocateCells(loc, qx, qy, live, &on_grid);
      _mm512_store_pd(aqx + k0, qx);
      _mm512_store_pd(aqy + k0, qy);
      _mm256_store_si256(reinterpret_cast<__m256i*>(acell + k0), cell);
      _mm256_store_si256(reinterpret_cast<__m256i*>(acls + k0), cls);
      aok[k0 / 8] = on_grid;
    }
    for (int k = 0; k < n; ++k) __builtin_prefetch(slots + acell[k]);
    for (int k0 = 0; k0 < n; k0 += 8) {
      const int left = n - k0;
      const __mmask8 live = left >= 8 ? 0xff : static_cast<__mmask8>((1u << left) - 1);
      const __mmask8 on_grid = aok[k0 / 8];
      const __m512d qx = _mm512_load_pd(aqx + k0), qy = _mm512_load_pd(aqy + k0);
      const __m256i cell = _mm256_load_si256(reinterpret_cast<const __m256i*>(acell + k0));
      const __m256i cls = _mm256_load_si256(reinterpret_cast<const __m256i*>(acls + k0));
      // The kSlots candidates; lanes in overflowing cells (or off the grid) go the scalar way.
      __m256i s[Layout::kSlots];
      const __mmask8 good = GatherSlots(slots, cell, on_grid, s);
      __m256i best = zero_i;
      __m512d bx = zero, by = zero, bd = zero;
      for (int i = 0; i < Layout::kSlots; ++i) {
        const __m256i s2 = _mm256_slli_epi32(s[i], 1);
        const __m512d x = _mm512_mask_i32gather_pd(zero, good, s2, xy, 8);
        const __m512d y = _mm512_mask_i32gather_pd(zero, good, s2, xy + 1, 8);
        const __m512d ddx = _mm512_sub_pd(qx, x), ddy = _mm512_sub_pd(qy, y);
        const __m512d dist = _mm512_add_pd(_mm512_mul_pd(ddx, ddx), _mm512_mul_pd(ddy, ddy));
        if (i == 0) {
          best = s[0];
          bx = x;
          by = y;
          bd = dist;
        } else {  // strictly smaller: ties stay with the lower slot
          const __mmask8 lt = _mm512_cmp_pd_mask(dist, bd, _CMP_LT_OQ);
          best = _mm256_mask_mov_epi32(best, lt, s[i]);
          bx = _mm512_mask_mov_pd(bx, lt, x);
          by = _mm512_mask_mov_pd(by, lt, y);
          bd = _mm512_mask_mov_pd(bd, lt, dist);
        }
      }
      if (const __mmask8 bad = live & ~good; bad != 0) [[unlikely]] {
        alignas(64) double tbx[8], tby[8];
        alignas(32) uint32_t tj[8];
        _mm512_store_pd(tbx, bx);
        _mm512_store_pd(tby, by);
        _mm256_store_si256(reinterpret_cast<__m256i*>(tj), best);
        for (int l = 0; l < 8; ++l) {
          if (!((bad >> l) & 1)) continue;
          const double qxl = aqx[k0 + l], qyl = aqy[k0 + l];
          const uint32_t j = cb.Pick(loc.Cell(qxl, qyl), qxl, qyl);
          tj[l] = j;
          tbx[l] = cb.x(j);
          tby[l] = cb.y(j);
        }
        bx = _mm512_load_pd(tbx);
        by = _mm512_load_pd(tby);
        best = _mm256_load_si256(reinterpret_cast<const __m256i*>(tj));
      }
      const __m256i c = _mm256_add_epi32(best, _mm256_mullo_epi32(vstride, cls));
      _mm256_mask_storeu_epi32(code + c0 + k0, live, c);
      const __m512d inv =
          small ? _mm512_maskz_permutexvar_pd(0xff, _mm512_maskz_cvtepu32_epi64(0xff, cls), itab)
                : _mm512_mask_i32gather_pd(zero, 0xff, cls, R.inv_f, 8);
      const __m512d px = _mm512_maskz_loadu_pd(live, b.px + c0 + k0);
      const __m512d py = _mm512_maskz_loadu_pd(live, b.py + c0 + k0);
      const __m512d ex_ = _mm512_abs_pd(
          _mm512_sub_pd(_mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(bx, cx), inv), cx), px));
      const __m512d ey_ = _mm512_abs_pd(
          _mm512_sub_pd(_mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(by, cy), inv), cy), py));
      _mm512_mask_storeu_pd(ex + c0 + k0, live, ex_);
      _mm512_mask_storeu_pd(ey + c0 + k0, live, ey_);
    }
  }
}


// Inner pairs, in chunks of 64: first every pair's grid cell (prefetched, so that the cells'
// cache misses overlap), then per 8 lanes the query p and the point b = float32(p - c) + c, the
// kSlots candidates (gathered), every squared distance, and PickStable's branch-free choice of
// the best row, the runner-up and the certificate. Lanes off the grid, in overflowing cells, or
// not certified with b != p are redone by the scalar reference, one pair each.
HC1_AVX512 void InnerAvx512(
    const Codebook& cb, const float* px, const float* py, int cnt, float cx, float cy,
    const InnerOut& out) {
  const Codebook::Locator loc = cb.locator();
  const double* xy = cb.xy();
  const __m512d cxd = _mm512_set1_pd(cb.cx()), cyd = _mm512_set1_pd(cb.cy());
  const __m256 cxf = _mm256_set1_ps(cx), cyf = _mm256_set1_ps(cy);
  const __m512d zero = _mm512_setzero_pd();
  const __m512d half_margin = _mm512_set1_pd(0.5 * cb.layout().margin());
  const __m512d spread = _mm512_set1_pd(cb.layout().spread());
  const __m512d two = _mm512_set1_pd(2.0), tiny = _mm512_set1_pd(1e-12);
  const __m512d inf = _mm512_set1_pd(std::numeric_limits<double>::infinity());
  const __m512d sign = _mm512_set1_pd(-0.0);
  const __m256i zero_i = _mm256_setzero_si256();
  const int* slots = reinterpret_cast<const int*>(loc.slots);
  constexpr int kChunk = 64;
  alignas(64) int acell[kChunk];
  alignas(64) uint8_t aok[kChunk / 8];
  for (int c0 = 0; c0 < cnt; c0 += kChunk) {
    const int cend = std::min(cnt, c0 + kChunk);
    for (int k0 = c0; k0 < cend; k0 += 8) {
      const int left = cend - k0;
      const __mmask8 live = left >= 8 ? 0xff : static_cast<__mmask8>((1u << left) - 1);
      const __m512d qx = _mm512_maskz_cvtps_pd(0xff, _mm256_maskz_loadu_ps(live, px + k0));
      const __m512d qy = _mm512_maskz_cvtps_pd(0xff, _mm256_maskz_loadu_ps(live, py + k0));
      __mmask8 on_grid;
      const __m256i cell = LocateCells(loc, qx, qy, live, &on_grid);
      _mm256_store_si256(reinterpret_cast<__m256i*>(acell + (k0 - c0)), cell);
      aok[(k0 - c0) / 8] = on_grid;
    }
    for (int k = 0; k < cend - c0; ++k) __builtin_prefetch(slots + acell[k]);
    for (int k0 = c0; k0 < cend; k0 += 8) {
      const int left = cend - k0;
      const __mmask8 live = left >= 8 ? 0xff : static_cast<__mmask8>((1u << left) - 1);
      const __m256 pxf = _mm256_maskz_loadu_ps(live, px + k0);
      const __m256 pyf = _mm256_maskz_loadu_ps(live, py + k0);
      const __m512d qx = _mm512_maskz_cvtps_pd(0xff, pxf), qy = _mm512_maskz_cvtps_pd(0xff, pyf);
      const __m512d bx = _mm512_add_pd(_mm512_maskz_cvtps_pd(0xff, _mm256_sub_ps(pxf, cxf)), cxd);
      const __m512d by = _mm512_add_pd(_mm512_maskz_cvtps_pd(0xff, _mm256_sub_ps(pyf, cyf)), cyd);
      const __m512d radius = _mm512_add_pd(_mm512_andnot_pd(sign, _mm512_sub_pd(bx, qx)),
                                           _mm512_andnot_pd(sign, _mm512_sub_pd(by, qy)));
      const __mmask8 on_grid = aok[(k0 - c0) / 8];
      const __m256i cell = _mm256_load_si256(reinterpret_cast<const __m256i*>(acell + (k0 - c0)));
      __m256i s[Layout::kSlots];
      const __mmask8 good = GatherSlots(slots, cell, on_grid, s);
      // PickStable: best = d < b1 ? s : best; b2 = min(b2, max(b1, d)); b1 = min(b1, d), with
      // std::min / std::max's operand order (no NaN occurs: distances are finite or +inf).
      __m256i best = zero_i;
      __m512d bxv = zero, byv = zero, b1 = zero, b2 = inf;
      for (int i = 0; i < Layout::kSlots; ++i) {
        const __m256i s2 = _mm256_slli_epi32(s[i], 1);
        const __m512d x = _mm512_mask_i32gather_pd(zero, good, s2, xy, 8);
        const __m512d y = _mm512_mask_i32gather_pd(zero, good, s2, xy + 1, 8);
        const __m512d ddx = _mm512_sub_pd(qx, x), ddy = _mm512_sub_pd(qy, y);
        const __m512d d = _mm512_add_pd(_mm512_mul_pd(ddx, ddx), _mm512_mul_pd(ddy, ddy));
        if (i == 0) {
          best = s[0];
          bxv = x;
          byv = y;
          b1 = d;
        } else {
          const __mmask8 lt = _mm512_cmp_pd_mask(d, b1, _CMP_LT_OQ);
          best = _mm256_mask_mov_epi32(best, lt, s[i]);
          bxv = _mm512_mask_mov_pd(bxv, lt, x);
          byv = _mm512_mask_mov_pd(byv, lt, y);
          // max(b1, d) = b1 < d ? d : b1; min(b2, m) = m < b2 ? m : b2; min(b1, d) = d < b1 ? d : b1.
          const __m512d mx = _mm512_mask_mov_pd(b1, _mm512_cmp_pd_mask(b1, d, _CMP_LT_OQ), d);
          b2 = _mm512_mask_mov_pd(b2, _mm512_cmp_pd_mask(mx, b2, _CMP_LT_OQ), mx);
          b1 = _mm512_mask_mov_pd(b1, lt, d);
        }
      }
      // The certificate: radius <= margin / 2 and b2 - b1 > 2 radius spread + 1e-12 (b2 + b1).
      const __m512d rhs = _mm512_add_pd(_mm512_mul_pd(_mm512_mul_pd(two, radius), spread),
                                        _mm512_mul_pd(tiny, _mm512_add_pd(b2, b1)));
      const __mmask8 stable = good & _mm512_cmp_pd_mask(radius, half_margin, _CMP_LE_OQ) &
                              _mm512_cmp_pd_mask(_mm512_sub_pd(b2, b1), rhs, _CMP_GT_OQ);
      const __mmask8 same_point =
          _mm512_cmp_pd_mask(bx, qx, _CMP_EQ_OQ) & _mm512_cmp_pd_mask(by, qy, _CMP_EQ_OQ);
      // jb = j on the lanes kept: the errors at jb use j's row ((x - c) / 1 + c: / 1 is exact).
      const __m512d ex0 = _mm512_andnot_pd(sign, _mm512_sub_pd(bxv, qx));
      const __m512d ey0 = _mm512_andnot_pd(sign, _mm512_sub_pd(byv, qy));
      const __m512d ex1 = _mm512_andnot_pd(
          sign, _mm512_sub_pd(_mm512_add_pd(_mm512_sub_pd(bxv, cxd), cxd), qx));
      const __m512d ey1 = _mm512_andnot_pd(
          sign, _mm512_sub_pd(_mm512_add_pd(_mm512_sub_pd(byv, cyd), cyd), qy));
      _mm256_mask_storeu_epi32(out.j + k0, live, best);
      _mm256_mask_storeu_epi32(out.jb + k0, live, best);
      _mm512_mask_storeu_pd(out.ex0 + k0, live, ex0);
      _mm512_mask_storeu_pd(out.ey0 + k0, live, ey0);
      _mm512_mask_storeu_pd(out.ex1 + k0, live, ex1);
      _mm512_mask_storeu_pd(out.ey1 + k0, live, ey1);
      if (const __mmask8 redo = live & ~(good & (stable | same_point)); redo != 0) [[unlikely]] {
        for (int l = 0; l < 8; ++l) {
          if ((redo >> l) & 1) {
            const int k = k0 + l;
            const InnerOut o{out.j + k,   out.jb + k,  out.ex0 + k,
                             out.ey0 + k, out.ex1 + k, out.ey1 + k};
            InnerScalar(cb, px + k, py + k, 1, cx, cy, o);
          }
        }
      }
    }
  }
}

// The inner test of 16 pairs: x in pairs k..k+7 from `a`, k+8..k+15 from `b` (interleaved),
// deinterleaved into xs and ys (lane l: pair l).
HC1_AVX512 inline __mmask16 InnerMask(__m512 a, __m512 b, const Square& sq, __m512* xs,
                                      __m512* ys) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  *xs = _mm512_permutex2var_ps(a, even, b);
  *ys = _mm512_permutex2var_ps(a, odd, b);
  return _mm512_cmp_ps_mask(*xs, _mm512_set1_ps(sq.lox), _CMP_GE_OQ) &
         _mm512_cmp_ps_mask(*xs, _mm512_set1_ps(sq.hix), _CMP_LE_OQ) &
         _mm512_cmp_ps_mask(*ys, _mm512_set1_ps(sq.loy), _CMP_GE_OQ) &
         _mm512_cmp_ps_mask(*ys, _mm512_set1_ps(sq.hiy), _CMP_LE_OQ);
}

// Where the AVX-512 split and scan read 16 values (8 pairs) at element i: float32 as is, or
// F16 widened in-register (exact for the finite values these kernels are given).
struct F32Values {
  const float* x;
  HC1_AVX512 __m512 Load(int64_t i) const { return _mm512_loadu_ps(x + i); }
  const float* Tail(int64_t i, int64_t count, float* tmp) const { return x + i; }
};
struct F16Values {
  const uint16_t* h;
  HC1_AVX512 __m512 Load(int64_t i) const {
    return _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i)));
  }
  const float* Tail(int64_t i, int64_t count, float* tmp) const {
    WidenToF32(DType::kF16, reinterpret_cast<const uint8_t*>(h + i), static_cast<size_t>(count),
               tmp);
    return tmp;
  }
};

// 16 pairs per step: deinterleave, the inner mask, then each list's lanes compressed in a
// register and stored whole at the list's end (a list never holds more than the pairs done, so
// the 16 lanes stay inside the block's room); offsets compressed as int32 and narrowed to
// uint16. The tail (under 16 pairs) goes through the scalar reference.
template <typename V>
HC1_AVX512 int64_t SplitImpl(V v, int64_t n, const Square& sq, const SplitOut& out) {
  int64_t ni = 0, no = 0, i = 0;
  __m512i off = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  for (; i + 16 <= n; i += 16) {
    __m512 xs, ys;
    const __mmask16 in = InnerMask(v.Load(2 * i), v.Load(2 * i + 16), sq, &xs, &ys);
    const __mmask16 out_m = static_cast<__mmask16>(~in);
    _mm512_storeu_ps(out.ix + ni, _mm512_maskz_compress_ps(in, xs));
    _mm512_storeu_ps(out.iy + ni, _mm512_maskz_compress_ps(in, ys));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out.ii + ni),
                        _mm512_maskz_cvtepi32_epi16(0xffff, _mm512_maskz_compress_epi32(in, off)));
    _mm512_storeu_ps(out.ox + no, _mm512_maskz_compress_ps(out_m, xs));
    _mm512_storeu_ps(out.oy + no, _mm512_maskz_compress_ps(out_m, ys));
    _mm256_storeu_si256(
        reinterpret_cast<__m256i*>(out.oi + no),
        _mm512_maskz_cvtepi32_epi16(0xffff, _mm512_maskz_compress_epi32(out_m, off)));
    const int c = __builtin_popcount(in);
    ni += c;
    no += 16 - c;
    off = _mm512_add_epi32(off, step);
  }
  if (i < n) {
    float tmp[32];
    const float* x = v.Tail(2 * i, 2 * (n - i), tmp);
    const SplitOut rest{out.ix + ni, out.iy + ni, out.ox + no, out.oy + no, out.ii + ni,
                        out.oi + no};
    const int64_t tail_inner = SplitScalar(x, n - i, sq, rest);
    for (int64_t k = 0; k < tail_inner; ++k) rest.ii[k] = static_cast<uint16_t>(rest.ii[k] + i);
    for (int64_t k = 0; k < n - i - tail_inner; ++k) {
      rest.oi[k] = static_cast<uint16_t>(rest.oi[k] + i);
    }
    ni += tail_inner;
  }
  return ni;
}

// 16 pairs per step: the same float32 products and sum per lane as the scalar reference, a
// running lane-wise max (exact, any order) and the inner count by popcount.
template <typename V>
HC1_AVX512 void ScanImpl(V v, int64_t n, float cx, float cy, const Square& sq, float* smax,
                         int64_t* inner) {
  __m512 m = _mm512_set1_ps(-1.0f);
  const __m512 vcx = _mm512_set1_ps(cx), vcy = _mm512_set1_ps(cy);
  int64_t ni = 0, i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 xs, ys;
    const __mmask16 in = InnerMask(v.Load(2 * i), v.Load(2 * i + 16), sq, &xs, &ys);
    const __m512 dx = _mm512_sub_ps(xs, vcx), dy = _mm512_sub_ps(ys, vcy);
    m = _mm512_maskz_max_ps(0xffff, m,
                            _mm512_add_ps(_mm512_mul_ps(dx, dx), _mm512_mul_ps(dy, dy)));
    ni += __builtin_popcount(in);
  }
  float tail_max = -1;
  int64_t tail_inner = 0;
  float tmp[32];
  ScanScalar(v.Tail(2 * i, 2 * (n - i), tmp), n - i, cx, cy, sq, &tail_max, &tail_inner);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, m);
  for (float l : lanes) tail_max = std::max(tail_max, l);
  *smax = tail_max;
  *inner = ni + tail_inner;
}

HC1_AVX512 int64_t SplitAvx512(const float* x, int64_t n, const Square& sq, const SplitOut& out) {
  return SplitImpl(F32Values{x}, n, sq, out);
}
HC1_AVX512 int64_t SplitF16Avx512(const uint16_t* h, int64_t n, const Square& sq,
                                  const SplitOut& out) {
  return SplitImpl(F16Values{h}, n, sq, out);
}
HC1_AVX512 void ScanAvx512(const float* x, int64_t n, float cx, float cy, const Square& sq,
                           float* smax, int64_t* inner) {
  ScanImpl(F32Values{x}, n, cx, cy, sq, smax, inner);
}
HC1_AVX512 void ScanF16Avx512(const uint16_t* h, int64_t n, float cx, float cy, const Square& sq,
                              float* smax, int64_t* inner) {
  ScanImpl(F16Values{h}, n, cx, cy, sq, smax, inner);
}

// PairwiseSumF32 of the x and the y lane at once: in its 8-accumulator case the accumulators
// r[0..7] of both lanes are the 16 lanes of one register (x_j at lane 2j, y_j at 2j + 1), so
// each step of 8 pairs is one vector add, in the same order as the scalar code; the final
// combination and the remainder follow it exactly. `special` collects the lanes holding an
// infinity or NaN (an all-ones float32 exponent).
HC1_AVX512 void PairSumsRec(const uint16_t* h, int64_t n, float* sx, float* sy,
                            __mmask16* special) {
  const F16Values v{h};
  const __m512i exp_mask = _mm512_set1_epi32(0x7f800000);
  auto check = [&](__m512 a) HC1_AVX512 {
    *special |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(a), exp_mask),
                                        exp_mask);
  };
  if (n < 8) {
    float tmp[16];
    const float* x = v.Tail(0, 2 * n, tmp);
    float rx = 0.0f, ry = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      rx += x[2 * i];
      ry += x[2 * i + 1];
    }
    for (int64_t i = 0; i < 2 * n; ++i) {
      *special |= static_cast<__mmask16>(!std::isfinite(x[i]));
    }
    *sx = rx;
    *sy = ry;
    return;
  }
  if (n <= 128) {
    __m512 r = v.Load(0);
    check(r);
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      const __m512 a = v.Load(2 * i);
      check(a);
      r = _mm512_add_ps(r, a);
    }
    alignas(64) float l[16];
    _mm512_store_ps(l, r);
    float rx = ((l[0] + l[2]) + (l[4] + l[6])) + ((l[8] + l[10]) + (l[12] + l[14]));
    float ry = ((l[1] + l[3]) + (l[5] + l[7])) + ((l[9] + l[11]) + (l[13] + l[15]));
    float tmp[16];
    const float* x = v.Tail(2 * i, 2 * (n - i), tmp);
    for (int64_t k = 0; k < n - i; ++k) {
      rx += x[2 * k];
      ry += x[2 * k + 1];
    }
    for (int64_t k = 0; k < 2 * (n - i); ++k) {
      *special |= static_cast<__mmask16>(!std::isfinite(x[k]));
    }
    *sx = rx;
    *sy = ry;
    return;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  float ax = 0, ay = 0, bx = 0, by = 0;
  PairSumsRec(h, n2, &ax, &ay, special);
  PairSumsRec(h + 2 * n2, n - n2, &bx, &by, special);
  *sx = ax + bx;
  *sy = ay + by;
}

HC1_AVX512 bool PairSumsF16Avx512(const uint16_t* h, int64_t n, float* sx, float* sy) {
  __mmask16 special = 0;
  PairSumsRec(h, n, sx, sy, &special);
  return special == 0;
}

OuterTrialFn BestOuterTrial() { return HaveAvx512() ? OuterTrialAvx512 : OuterTrialScalar; }
InnerFn BestInner() { return HaveAvx512() ? InnerAvx512 : InnerScalar; }
SplitFn BestSplit() { return HaveAvx512() ? SplitAvx512 : SplitScalar; }
ScanFn BestScan() { return HaveAvx512() ? ScanAvx512 : ScanScalar; }

#else  // not x86-64: the scalar kernel only

bool HaveAvx512() { return false; }
void OuterTrialAvx512(const Codebook& cb, const OuterBlock& b, const Rings& R, uint32_t stride,
                      uint32_t* code, double* ex, double* ey) {
  OuterTrialScalar(cb, b, R, stride, code, ex, ey);
}
OuterTrialFn BestOuterTrial() { return OuterTrialScalar; }
void InnerAvx512(const Codebook& cb, const float* px, const float* py, int cnt, float cx,
                 float cy, const InnerOut& out) {
  InnerScalar(cb, px, py, cnt, cx, cy, out);
}
InnerFn BestInner() { return InnerScalar; }
int64_t SplitAvx512(const float* x, int64_t n, const Square& sq, const SplitOut& out) {
  return SplitScalar(x, n, sq, out);
}
SplitFn BestSplit() { return SplitScalar; }
void ScanAvx512(const float* x, int64_t n, float cx, float cy, const Square& sq, float* smax,
                int64_t* inner) {
  ScanScalar(x, n, cx, cy, sq, smax, inner);
}
ScanFn BestScan() { return ScanScalar; }
bool PairSumsF16Avx512(const uint16_t* h, int64_t n, float* sx, float* sy) {
  std::vector<float> x(2 * n);
  WidenToF32(DType::kF16, reinterpret_cast<const uint8_t*>(h), x.size(), x.data());
  *sx = PairwiseSumF32(x.data(), n, 2);
  *sy = PairwiseSumF32(x.data() + 1, n, 2);
  for (float f : x) {
    if (!std::isfinite(f)) return false;
  }
  return true;
}
int64_t SplitF16Avx512(const uint16_t* h, int64_t n, const Square& sq, const SplitOut& out) {
  std::vector<float> x(2 * n);
  WidenToF32(DType::kF16, reinterpret_cast<const uint8_t*>(h), x.size(), x.data());
  return SplitScalar(x.data(), n, sq, out);
}
void ScanF16Avx512(const uint16_t* h, int64_t n, float cx, float cy, const Square& sq,
                   float* smax, int64_t* inner) {
  std::vector<float> x(2 * n);
  WidenToF32(DType::kF16, reinterpret_cast<const uint8_t*>(h), x.size(), x.data());
  ScanScalar(x.data(), n, cx, cy, sq, smax, inner);
}

#endif

}  // namespace hc::hc1
