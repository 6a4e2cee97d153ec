#include "core/codec/hc1_simd.h"


#include <algorithm>
#include <cmath>

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

#if defined(__x86_64__)

bool HaveAvx512() {
  static const bool have = __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512dq");
  return have;
}

__attribute__((target("avx512f,avx512vl,avx512dq"))) void OuterTrialAvx512(
    const Codebook& cb, const OuterBlock& b, const Rings& R, uint32_t stride, uint32_t* code,
    double* ex, double* ey) {
  if (!R.increasing) {
    OuterTrialScalar(cb, b, R, stride, code, ex, ey);
    return;
  }
  const Codebook::Locator loc = cb.locator();
  const double* xy = cb.xy();
  const __m512d cx = _mm512_set1_pd(cb.cx()), cy = _mm512_set1_pd(cb.cy());
  const __m512d ox = _mm512_set1_pd(loc.ox), oy = _mm512_set1_pd(loc.oy);
  const __m512d inv_cell = _mm512_set1_pd(loc.inv_cell), one = _mm512_set1_pd(1.0);
  const __m512d cells_d = _mm512_set1_pd(loc.cells_d), zero = _mm512_setzero_pd();
  const __m256i cells = _mm256_set1_epi32(loc.cells), five = _mm256_set1_epi32(Layout::kSlots);
  const __m256i overflow = _mm256_set1_epi32(static_cast<int>(Layout::kOverflow));
  const __m256i vstride = _mm256_set1_epi32(static_cast<int>(stride));
  const __m256i zero_i = _mm256_setzero_si256(), one_i = _mm256_set1_epi32(1);
  const int* slots = reinterpret_cast<const int*>(loc.slots);
  const bool small = R.k < 8;  // f and inv_f fit one register (entries 0..k)
  const __m512d ftab = _mm512_loadu_pd(R.f), itab = _mm512_loadu_pd(R.inv_f);
  const __mmask8 grid_ok = loc.ok ? 0xff : 0;
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
      // Cell: as Codebook::Locator::Cell.
      const __m512d rx = _mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(qx, ox), inv_cell), one);
      const __m512d ry = _mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(qy, oy), inv_cell), one);
      const __mmask8 on_grid = grid_ok & live & _mm512_cmp_pd_mask(rx, zero, _CMP_GE_OQ) &
                               _mm512_cmp_pd_mask(ry, zero, _CMP_GE_OQ) &
                               _mm512_cmp_pd_mask(rx, cells_d, _CMP_LT_OQ) &
                               _mm512_cmp_pd_mask(ry, cells_d, _CMP_LT_OQ);
      const __m256i ix = _mm512_maskz_cvttpd_epi32(on_grid, rx);
      const __m256i iy = _mm512_maskz_cvttpd_epi32(on_grid, ry);
      const __m256i cell =
          _mm256_mullo_epi32(_mm256_add_epi32(_mm256_mullo_epi32(iy, cells), ix), five);
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
      // Slots 0-1 and 2-3 as one 64-bit element each (little-endian: the lower slot in the low
      // half), slot 4 alone.
      static_assert(Layout::kSlots == 5);
      __m256i s[Layout::kSlots];
      const __m512i s01 = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), on_grid, cell,
                                                      slots, 4);
      const __m512i s23 = _mm512_mask_i32gather_epi64(
          _mm512_setzero_si512(), on_grid, _mm256_add_epi32(cell, _mm256_set1_epi32(2)), slots, 4);
      s[0] = _mm512_maskz_cvtepi64_epi32(0xff, s01);
      s[1] = _mm512_maskz_cvtepi64_epi32(0xff, _mm512_maskz_srli_epi64(0xff, s01, 32));
      s[2] = _mm512_maskz_cvtepi64_epi32(0xff, s23);
      s[3] = _mm512_maskz_cvtepi64_epi32(0xff, _mm512_maskz_srli_epi64(0xff, s23, 32));
      s[4] = _mm256_mmask_i32gather_epi32(zero_i, on_grid,
                                          _mm256_add_epi32(cell, _mm256_set1_epi32(4)), slots, 4);
      const __mmask8 good = on_grid & ~_mm256_test_epi32_mask(s[Layout::kSlots - 1], overflow);
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

OuterTrialFn BestOuterTrial() { return HaveAvx512() ? OuterTrialAvx512 : OuterTrialScalar; }

#else  // not x86-64: the scalar kernel only

bool HaveAvx512() { return false; }
void OuterTrialAvx512(const Codebook& cb, const OuterBlock& b, const Rings& R, uint32_t stride,
                      uint32_t* code, double* ex, double* ey) {
  OuterTrialScalar(cb, b, R, stride, code, ex, ey);
}
OuterTrialFn BestOuterTrial() { return OuterTrialScalar; }

#endif

}  // namespace hc::hc1
