#include "core/codec/hc2_transform.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/codec/hc2_tables.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hc::hc2 {

namespace {

#if defined(__x86_64__)
// Fwht for n = 128 on AVX2: the same stages in the same order, every output the same single
// float32 add or subtract as the scalar loop (stages h = 1, 2, 4 inside a register: lane j takes
// v + w where it is the lower element of its pair, w - v where it is the upper one, w being v
// with the pairs swapped), so the bits are identical.
__attribute__((target("avx2"))) void Fwht128Avx2(float* v) {
  __m256 r[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm256_loadu_ps(v + 8 * i);
  for (int i = 0; i < 16; ++i) {
    __m256 w = _mm256_permute_ps(r[i], 0xB1);
    r[i] = _mm256_blend_ps(_mm256_add_ps(r[i], w), _mm256_sub_ps(w, r[i]), 0xAA);
    w = _mm256_permute_ps(r[i], 0x4E);
    r[i] = _mm256_blend_ps(_mm256_add_ps(r[i], w), _mm256_sub_ps(w, r[i]), 0xCC);
    w = _mm256_permute2f128_ps(r[i], r[i], 0x01);
    r[i] = _mm256_blend_ps(_mm256_add_ps(r[i], w), _mm256_sub_ps(w, r[i]), 0xF0);
  }
  for (int hv = 1; hv < 16; hv *= 2) {
    for (int i = 0; i < 16; i += 2 * hv) {
      for (int j = i; j < i + hv; ++j) {
        const __m256 a = r[j], b = r[j + hv];
        r[j] = _mm256_add_ps(a, b);
        r[j + hv] = _mm256_sub_ps(a, b);
      }
    }
  }
  for (int i = 0; i < 16; ++i) _mm256_storeu_ps(v + 8 * i, r[i]);
}
const bool kHasAvx2 = __builtin_cpu_supports("avx2");
#endif

}  // namespace

void FwhtScalar(float* v, int n) {
  for (int h = 1; h < n; h *= 2) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
}

// Butterflies stage by stage; each output is one float32 add or subtract, so any vectorisation
// gives the same bits.
void Fwht(float* v, int n) {
#if defined(__x86_64__)
  if (n == 128 && kHasAvx2) {
    Fwht128Avx2(v);
    return;
  }
#endif
  FwhtScalar(v, n);
}

void Rotate(const float* x, int r, int n, float* v) {
  for (int i = 0; i < r; ++i) v[i] = Sign(i) * x[i];
  for (int i = r; i < n; ++i) v[i] = 0.0f;
  Fwht(v, n);
}

void Unrotate(float* z, int r, int n, float* out) {
  Fwht(z, n);
  const float inv = 1.0f / static_cast<float>(n);  // a power of two: exact
  for (int i = 0; i < r; ++i) out[i] = Sign(i) * z[i] * inv;
}

namespace {
float Dist2(const float* p, float x, float y) {
  const float dx = x - p[0], dy = y - p[1];
  return dx * dx + dy * dy;
}
}  // namespace

const WindingSearch& WindingSearch::Get(int bits) {
  static const WindingSearch* s[3] = {new WindingSearch(2), new WindingSearch(3),
                                      new WindingSearch(4)};
  return *s[bits - 2];
}

WindingSearch::WindingSearch(int bits) : pts_(Winding(bits)), n_(1 << (2 * bits)) {
  float extent = 0;
  for (int j = 0; j < n_; ++j) {
    extent = std::max({extent, std::abs(pts_[2 * j]), std::abs(pts_[2 * j + 1])});
  }
  cells_ = 2 * static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n_)))) + 2;
  const double side = 2.0 * (extent * 1.02 + 1e-3) / cells_;
  lo_ = static_cast<float>(-side * cells_ / 2);
  inv_cell_ = static_cast<float>(1.0 / side);
  // A point is a candidate of a cell if its smallest distance to the cell (grown by a margin
  // covering float rounding of the cell index) is at most the smallest largest distance of any
  // point to it.
  const double margin = side * 1e-3;
  start_.assign(static_cast<size_t>(cells_) * cells_ + 1, 0);
  for (int cy = 0; cy < cells_; ++cy) {
    for (int cx = 0; cx < cells_; ++cx) {
      const double x0 = lo_ + cx * side - margin, x1 = lo_ + (cx + 1) * side + margin;
      const double y0 = lo_ + cy * side - margin, y1 = lo_ + (cy + 1) * side + margin;
      double bound = std::numeric_limits<double>::infinity();
      for (int j = 0; j < n_; ++j) {
        const double px = pts_[2 * j], py = pts_[2 * j + 1];
        const double fx = std::max(std::abs(px - x0), std::abs(px - x1));
        const double fy = std::max(std::abs(py - y0), std::abs(py - y1));
        bound = std::min(bound, fx * fx + fy * fy);
      }
      for (int j = 0; j < n_; ++j) {
        const double px = pts_[2 * j], py = pts_[2 * j + 1];
        const double nx = std::max({x0 - px, 0.0, px - x1});
        const double ny = std::max({y0 - py, 0.0, py - y1});
        if (nx * nx + ny * ny <= bound * (1 + 1e-6)) cand_.push_back(static_cast<uint16_t>(j));
      }
      start_[static_cast<size_t>(cy) * cells_ + cx + 1] = static_cast<uint32_t>(cand_.size());
    }
  }
}

uint32_t WindingSearch::NearestBruteForce(float x, float y) const {
  uint32_t best = 0;
  float bd = Dist2(pts_, x, y);
  for (int j = 1; j < n_; ++j) {
    const float d = Dist2(pts_ + 2 * j, x, y);
    if (d < bd) {
      bd = d;
      best = static_cast<uint32_t>(j);
    }
  }
  return best;
}

uint32_t WindingSearch::Nearest(float x, float y) const {
  const float fx = (x - lo_) * inv_cell_, fy = (y - lo_) * inv_cell_;
  if (!(fx >= 0.0f && fy >= 0.0f && fx < static_cast<float>(cells_) &&
        fy < static_cast<float>(cells_))) {
    return NearestBruteForce(x, y);
  }
  const size_t c = static_cast<size_t>(static_cast<int>(fy)) * cells_ + static_cast<int>(fx);
  uint32_t best = cand_[start_[c]];
  float bd = Dist2(pts_ + 2 * best, x, y);
  for (uint32_t k = start_[c] + 1; k < start_[c + 1]; ++k) {
    const uint32_t j = cand_[k];
    const float d = Dist2(pts_ + 2 * j, x, y);
    if (d < bd || (d == bd && j < best)) {
      bd = d;
      best = j;
    }
  }
  return best;
}

}  // namespace hc::hc2
