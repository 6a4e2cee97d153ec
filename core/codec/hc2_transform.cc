#include "core/codec/hc2_transform.h"

#include "core/base/simd.h"

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
const bool kHasAvx2 = CpuHasAvx2();
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

namespace {
// Sign(i) for every position, as a table the element loops below load (they vectorise; the
// products are the same as with Sign(i)).
struct SignTable {
  float v[kBlock];
  constexpr SignTable() : v() {
    for (int i = 0; i < kBlock; ++i) v[i] = Sign(i);
  }
};
constexpr SignTable kSigns;
}  // namespace

void Rotate(const float* x, int r, int n, float* v) {
  for (int i = 0; i < r; ++i) v[i] = kSigns.v[i] * x[i];
  for (int i = r; i < n; ++i) v[i] = 0.0f;
  Fwht(v, n);
}

void Unrotate(float* z, int r, int n, float* out) {
  Fwht(z, n);
  const float inv = 1.0f / static_cast<float>(n);  // a power of two: exact
  for (int i = 0; i < r; ++i) out[i] = kSigns.v[i] * z[i] * inv;
}

}  // namespace hc::hc2
