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
const bool kHasAvx512 = CpuHasAvx512();

// The same transform on AVX-512, the 128 floats in 8 registers. Stages h = 1, 2, 4, 8 inside a
// register: w is v with the pairs (j, j + h) swapped; every lane gets w + (v with the sign of
// the pairs' upper elements flipped), i.e. b + a in the lower element (= a + b) and a + (-b) in
// the upper one (= a - b: IEEE 754 defines x - y as x + (-y)), one addition where a blended
// add and subtract would take two; stages h = 16, 32, 64 pair whole registers. The same results
// as FwhtScalar bit for bit (any NaN stays a NaN; its payload may come from the other operand,
// as the compiler may also swap FwhtScalar's operands).
// GCC 12 warns inside its own permute intrinsics (_mm512_undefined_ps): a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define HC_AVX512_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))
HC_AVX512_TARGET inline __attribute__((always_inline)) __m512 UpperSigns(__mmask16 upper) {
  return _mm512_castsi512_ps(
      _mm512_maskz_mov_epi32(upper, _mm512_set1_epi32(static_cast<int>(0x80000000u))));
}
// (a, b) <- (a + b, a - b).
HC_AVX512_TARGET inline __attribute__((always_inline)) void Butterfly(__m512& a, __m512& b) {
  const __m512 s = _mm512_add_ps(a, b), d = _mm512_sub_ps(a, b);
  a = s;
  b = d;
}
HC_AVX512_TARGET inline __attribute__((always_inline)) void Fwht128Regs(__m512 (&r)[8]) {
  const __m512 s1 = UpperSigns(0xAAAA), s2 = UpperSigns(0xCCCC), s4 = UpperSigns(0xF0F0),
               s8 = UpperSigns(0xFF00);
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_add_ps(_mm512_permute_ps(r[i], 0xB1), _mm512_xor_ps(r[i], s1));
    r[i] = _mm512_add_ps(_mm512_permute_ps(r[i], 0x4E), _mm512_xor_ps(r[i], s2));
    r[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r[i], r[i], 0xB1), _mm512_xor_ps(r[i], s4));
    r[i] = _mm512_add_ps(_mm512_shuffle_f32x4(r[i], r[i], 0x4E), _mm512_xor_ps(r[i], s8));
  }
  // Written out: as loops, GCC keeps r in memory.
  Butterfly(r[0], r[1]), Butterfly(r[2], r[3]), Butterfly(r[4], r[5]), Butterfly(r[6], r[7]);
  Butterfly(r[0], r[2]), Butterfly(r[1], r[3]), Butterfly(r[4], r[6]), Butterfly(r[5], r[7]);
  Butterfly(r[0], r[4]), Butterfly(r[1], r[5]), Butterfly(r[2], r[6]), Butterfly(r[3], r[7]);
}

HC_AVX512_TARGET void Fwht128Avx512(float* v) {
  __m512 r[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm512_loadu_ps(v + 16 * i);
  Fwht128Regs(r);
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) _mm512_storeu_ps(v + 16 * i, r[i]);
}

// Unrotate for n = 128 in one pass: the transform in registers, then one multiply by
// Sign(i) / 128 per element (and with kScaled one by m, with kOffset one add of d). That
// equals UnrotateScalar's (Sign(i) * z) * (1 / 128) bit for bit: Sign(i) * z is exact and
// round-to-nearest is symmetric, so (-z) * c == z * (-c).
template <bool kScaled, bool kOffset = false>
HC_AVX512_TARGET void Unrotate128Avx512(const float* z, int r, const float* scaled_signs, float m,
                                        float* out, float d = 0.0f) {
  __m512 v[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) v[i] = _mm512_loadu_ps(z + 16 * i);
  Fwht128Regs(v);
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    __m512 o = _mm512_mul_ps(v[i], _mm512_loadu_ps(scaled_signs + 16 * i));
    if (kScaled) o = _mm512_mul_ps(o, _mm512_set1_ps(m));
    if (kOffset) o = _mm512_add_ps(o, _mm512_set1_ps(d));
    const int left = r - 16 * i;
    if (left >= 16) {
      _mm512_storeu_ps(out + 16 * i, o);
    } else if (left > 0) {
      _mm512_mask_storeu_ps(out + 16 * i, static_cast<__mmask16>((1u << left) - 1), o);
    }
  }
}
#undef HC_AVX512_TARGET
#pragma GCC diagnostic pop
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
  if (n == 128 && SimdAllowed()) {
    if (kHasAvx512) {
      Fwht128Avx512(v);
      return;
    }
    if (kHasAvx2) {
      Fwht128Avx2(v);
      return;
    }
  }
#endif
  FwhtScalar(v, n);
}

namespace {
// Sign(i) for every position, as a table the element loops below load (they vectorise; the
// products are the same as with Sign(i)).
struct SignTable {
  float v[kBlock];
  float scaled[kBlock];  // Sign(i) / kBlock
  constexpr SignTable() : v(), scaled() {
    for (int i = 0; i < kBlock; ++i) {
      v[i] = Sign(i);
      scaled[i] = Sign(i) / static_cast<float>(kBlock);
    }
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
#if defined(__x86_64__)
  if (n == kBlock && kHasAvx512 && SimdAllowed()) {
    Unrotate128Avx512<false>(z, r, kSigns.scaled, 1.0f, out);
    return;
  }
#endif
  UnrotateScalar(z, r, n, out);
}

void UnrotateScaled(float* z, int r, int n, float m, float* out) {
#if defined(__x86_64__)
  if (n == kBlock && kHasAvx512 && SimdAllowed()) {
    Unrotate128Avx512<true>(z, r, kSigns.scaled, m, out);
    return;
  }
#endif
  UnrotateScalar(z, r, n, out);
  for (int i = 0; i < r; ++i) out[i] *= m;
}

void UnrotateScaledOffset(float* z, int r, int n, float m, float d, float* out) {
#if defined(__x86_64__)
  if (n == kBlock && kHasAvx512 && SimdAllowed()) {
    Unrotate128Avx512<true, true>(z, r, kSigns.scaled, m, out, d);
    return;
  }
#endif
  UnrotateScalar(z, r, n, out);
  for (int i = 0; i < r; ++i) out[i] = out[i] * m + d;  // two roundings: no contraction here
}

void UnrotateScalar(float* z, int r, int n, float* out) {
  Fwht(z, n);
  const float inv = 1.0f / static_cast<float>(n);  // a power of two: exact
  for (int i = 0; i < r; ++i) out[i] = kSigns.v[i] * z[i] * inv;
}

}  // namespace hc::hc2
