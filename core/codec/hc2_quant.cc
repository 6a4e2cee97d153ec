#include "core/codec/hc2_quant.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hc::hc2 {

// Tokens of the block's indices qb.q, the cheapest class that codes them all and the block's
// bits under it (class field, tokens, extra bits, signs): a token histogram, so pricing a class
// costs one product per distinct token.
void PriceBlock(int n, const ClassTables& t, QuantBlock& qb) {
  uint16_t hist[kTokens] = {};
  double sumsq = 0;
  int raw_bits = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t q = qb.q[i];
    sumsq += static_cast<double>(q) * q;
    const TokenSplit sp = SplitMagnitude(static_cast<uint32_t>(std::abs(q)));
    qb.tok[i] = static_cast<uint8_t>(sp.token);
    ++hist[sp.token];
    raw_bits += sp.nextra + (q != 0);
  }
  int used[kTokens], nu = 0;
  for (int k = 0; k < kTokens; ++k) {
    if (hist[k]) used[nu++] = k;
  }
  int c0 = 0;
  if (sumsq > 0) {
    c0 = static_cast<int>(std::lround(std::log2(sumsq / n) + 8.0));  // 2 log2(rms) + 8
    c0 = std::clamp(c0, 0, kClasses - 1);
  }
  int best = -1;
  float best_cost = std::numeric_limits<float>::infinity();
  for (int c = std::max(0, c0 - 1); c < kClasses; ++c) {
    float cost = 0;
    for (int k = 0; k < nu; ++k) cost += static_cast<float>(hist[used[k]]) * t.cost[c][used[k]];
    if (cost < best_cost) {
      best_cost = cost;
      best = c;
    }
    if (c >= c0 + 1 && best >= 0) break;
  }
  qb.cls = best;
  qb.bits = 5.0 + best_cost + raw_bits;
}

// Plain rounding of one block (option tcq false), then PriceBlock.
void Quantise(const float* z, int n, float step, const ClassTables& t, QuantBlock& qb) {
  // Round to nearest even by the 1.5 * 2^23 trick (exact for |v| <= 2^22, which the clamp
  // keeps), then a token histogram: pricing a class costs one product per distinct token.
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  const float inv = 1.0f / step, lim = static_cast<float>(kMaxQ);
  float fq[kBlock];
  for (int i = 0; i < n; ++i) {
    const float v = std::clamp(z[i] * inv, -lim, lim);
    fq[i] = (v + kMagic) - kMagic;
  }
  for (int i = 0; i < n; ++i) qb.q[i] = static_cast<int32_t>(fq[i]);
  PriceBlock(n, t, qb);
}

namespace {

constexpr int kSmall = 64;  // rate table entries: |k| < 64
constexpr float kInf = std::numeric_limits<float>::infinity();

// mu * bits of index magnitude m under class cg (token, extra bits and sign).
float RateOf(const ClassTables& t, int cg, float mu, uint32_t m) {
  const TokenSplit sp = SplitMagnitude(m);
  const float c = t.cost[cg][sp.token];
  return mu * ((std::isinf(c) ? 40.0f : c) + static_cast<float>(sp.nextra + (m != 0)));
}

// The trellis's inputs for one block: values in steps (clamped), the class guessed from their
// rms, the rate table under it.
struct TrellisIn {
  float v[kBlock];
  int cg = 0;
  float rate[kSmall];
};
void PrepareTrellis(const float* z, int n, float step, float mu, const ClassTables& t,
                    TrellisIn& in) {
  const float inv = 1.0f / step, lim = static_cast<float>(kMaxQ);
  double ss = 0;
  for (int i = 0; i < n; ++i) {
    in.v[i] = std::clamp(z[i] * inv, -lim, lim);
    ss += 0.25 * static_cast<double>(in.v[i]) * in.v[i];
  }
  in.cg = ss > 0 ? std::clamp(static_cast<int>(std::lround(std::log2(ss / n) + 8.0)), 0,
                              kClasses - 1)
                 : 0;
  // The default rate weight's tables are built once (they depend on the class only).
  static const auto* cached = [] {
    auto* r = new std::array<std::array<float, kSmall>, kClasses>;
    const ClassTables& ct = ClassTables::Get();
    for (int c = 0; c < kClasses; ++c) {
      for (int m = 0; m < kSmall; ++m) (*r)[c][m] = RateOf(ct, c, kDefaultMu, static_cast<uint32_t>(m));
    }
    return r;
  }();
  if (mu == kDefaultMu && &t == &ClassTables::Get()) {
    std::copy((*cached)[in.cg].begin(), (*cached)[in.cg].end(), in.rate);
    return;
  }
  for (int m = 0; m < kSmall; ++m) in.rate[m] = RateOf(t, in.cg, mu, static_cast<uint32_t>(m));
}

// Per coefficient the index on the best even/odd branch of each quantiser, and per new state
// whether its second predecessor won (bit s of dec).
struct TrellisOut {
  int32_t e0[kBlock], o0[kBlock], e1[kBlock], o1[kBlock];
  uint8_t dec[kBlock];
  float J[4];
};

// Follows the decisions back from the cheapest final state.
void Traceback(int n, const TrellisOut& o, QuantBlock& qb) {
  int s = static_cast<int>(std::min_element(o.J, o.J + 4) - o.J);
  for (int i = n - 1; i >= 0; --i) {
    const bool second = (o.dec[i] >> s) & 1;
    int prev;
    int32_t k;
    switch (s) {
      case 0: prev = second ? 1 : 0, k = second ? o.o0[i] : o.e0[i]; break;
      case 2: prev = second ? 1 : 0, k = second ? o.e0[i] : o.o0[i]; break;
      case 1: prev = second ? 3 : 2, k = second ? o.o1[i] : o.e1[i]; break;
      default: prev = second ? 3 : 2, k = second ? o.e1[i] : o.o1[i]; break;
    }
    qb.q[i] = k;
    s = prev;
  }
}

// floor and ceil of |x| <= 2^22 without libm calls (the build targets baseline x86-64).
int32_t IFloor(float x) {
  const int32_t t = static_cast<int32_t>(x);
  return t - (static_cast<float>(t) > x);
}
int32_t ICeil(float x) {
  const int32_t t = static_cast<int32_t>(x);
  return t + (static_cast<float>(t) < x);
}

// The scalar trellis (the reference of the AVX2 one). Overview of the hot loop: per
// coefficient, Q0's two nearest indices (one even, one odd) and Q1's (zero, and the odd/even
// pair around the value) give the best even and odd branch of each quantiser; the 4-state
// update is then 8 adds and 4 minima.
void TrellisScalar(const TrellisIn& in, int n, const ClassTables& t, float mu, TrellisOut& o) {
  auto cost = [&](float x, float level, int32_t k) {
    const uint32_t m = static_cast<uint32_t>(std::abs(k));
    const float d = x - level;
    return d * d + (m < kSmall ? in.rate[m] : RateOf(t, in.cg, mu, m));
  };
  float J0 = 0, J1 = kInf, J2 = kInf, J3 = kInf;
  for (int i = 0; i < n; ++i) {
    const float x = in.v[i];
    const int32_t a0 = IFloor(x * 0.5f);
    const int32_t ev0 = (a0 & 1) ? a0 + 1 : a0, od0 = (a0 & 1) ? a0 : a0 + 1;
    const float ce0 = cost(x, 2.0f * static_cast<float>(ev0), ev0);
    const float co0 = cost(x, 2.0f * static_cast<float>(od0), od0);
    const int32_t ap = std::max<int32_t>(1, IFloor((x + 1) * 0.5f));
    const int32_t an = std::min<int32_t>(-1, ICeil((x - 1) * 0.5f));
    const int32_t a = x >= 0 ? ap : an, b = x >= 0 ? ap + 1 : an - 1;
    const int32_t ev1 = (a & 1) ? b : a, od1 = (a & 1) ? a : b;
    const float cz = x * x + in.rate[0];
    const float cev = cost(x, TcqLevel(2, ev1), ev1);
    const bool zero = cz <= cev;
    const float ce1 = zero ? cz : cev, co1 = cost(x, TcqLevel(2, od1), od1);
    o.e0[i] = ev0, o.o0[i] = od0, o.e1[i] = zero ? 0 : ev1, o.o1[i] = od1;
    // Transitions: 0 -even-> 0, 0 -odd-> 2, 1 -even-> 2, 1 -odd-> 0,
    //              2 -even-> 1, 2 -odd-> 3, 3 -even-> 3, 3 -odd-> 1.
    const float n0a = J0 + ce0, n0b = J1 + co0;
    const float n2a = J0 + co0, n2b = J1 + ce0;
    const float n1a = J2 + ce1, n1b = J3 + co1;
    const float n3a = J2 + co1, n3b = J3 + ce1;
    o.dec[i] = static_cast<uint8_t>((n0b < n0a) | ((n1b < n1a) << 1) | ((n2b < n2a) << 2) |
                                    ((n3b < n3a) << 3));
    J0 = std::min(n0a, n0b), J1 = std::min(n1a, n1b);
    J2 = std::min(n2a, n2b), J3 = std::min(n3a, n3b);
  }
  o.J[0] = J0, o.J[1] = J1, o.J[2] = J2, o.J[3] = J3;
}

#if defined(__x86_64__)
#define HC_AVX2 __attribute__((target("avx2")))
HC_AVX2 inline __m256i IFloor8(__m256 x) {
  const __m256i ti = _mm256_cvttps_epi32(x);
  const __m256 gt = _mm256_cmp_ps(_mm256_cvtepi32_ps(ti), x, _CMP_GT_OQ);
  return _mm256_add_epi32(ti, _mm256_castps_si256(gt));
}
HC_AVX2 inline __m256i ICeil8(__m256 x) {
  const __m256i ti = _mm256_cvttps_epi32(x);
  const __m256 lt = _mm256_cmp_ps(_mm256_cvtepi32_ps(ti), x, _CMP_LT_OQ);
  return _mm256_sub_epi32(ti, _mm256_castps_si256(lt));
}
HC_AVX2 inline __m256 Odd8(__m256i a) {
  const __m256i one = _mm256_set1_epi32(1);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(a, one), one));
}
HC_AVX2 inline __m256 Pick8(__m256i a, __m256i b, __m256 mask) {  // mask ? b : a, as floats
  return _mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), mask);
}
// Q1 levels 2k - sgn(k) for k != 0.
HC_AVX2 inline __m256 Level1_8(__m256i k) {
  const __m256 sg = _mm256_blendv_ps(
      _mm256_set1_ps(-1.0f), _mm256_set1_ps(1.0f),
      _mm256_castsi256_ps(_mm256_cmpgt_epi32(k, _mm256_setzero_si256())));
  return _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), _mm256_cvtepi32_ps(k)), sg);
}
// (x - level)^2 + rate of |k|, per lane; |k| >= 64 patched in with the scalar RateOf.
HC_AVX2 inline __m256 Cost8(__m256 x, __m256 level, __m256i k, const float* rt, const TrellisIn* in,
                            const ClassTables& t, float mu) {
  const __m256i base = _mm256_setr_epi32(0, kSmall, 2 * kSmall, 3 * kSmall, 4 * kSmall,
                                         5 * kSmall, 6 * kSmall, 7 * kSmall);
  const __m256i cap = _mm256_set1_epi32(kSmall - 1);
  const __m256i m = _mm256_abs_epi32(k);
  const __m256 r = _mm256_i32gather_ps(rt, _mm256_add_epi32(base, _mm256_min_epi32(m, cap)), 4);
  const __m256 d = _mm256_sub_ps(x, level);
  __m256 c = _mm256_add_ps(_mm256_mul_ps(d, d), r);
  const int big = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(m, cap)));
  if (big) [[unlikely]] {
    alignas(32) float cs[8], ds[8];
    alignas(32) int32_t ms[8];
    _mm256_store_ps(cs, c);
    _mm256_store_ps(ds, d);
    _mm256_store_si256(reinterpret_cast<__m256i*>(ms), m);
    for (int l = 0; l < 8; ++l) {
      if ((big >> l) & 1) {
        cs[l] = ds[l] * ds[l] + RateOf(t, in[l].cg, mu, static_cast<uint32_t>(ms[l]));
      }
    }
    c = _mm256_load_ps(cs);
  }
  return c;
}

// The same trellis for 8 blocks at once, one per AVX2 lane: every lane performs exactly the
// scalar operations (no FMA), so the results are bit-identical. Rates of |k| >= 64 (rare) are
// patched in per lane with the scalar RateOf.
HC_AVX2 void TrellisAvx2(const TrellisIn* in, const ClassTables& t,
                                                 float mu, TrellisOut* out) {
  alignas(32) float rt[8 * kSmall];
  for (int l = 0; l < 8; ++l) std::copy(in[l].rate, in[l].rate + kSmall, rt + l * kSmall);
  const __m256i base = _mm256_setr_epi32(0, kSmall, 2 * kSmall, 3 * kSmall, 4 * kSmall,
                                         5 * kSmall, 6 * kSmall, 7 * kSmall);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256 half = _mm256_set1_ps(0.5f), two = _mm256_set1_ps(2.0f),
               onef = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 rate0 = _mm256_i32gather_ps(rt, base, 4);
  __m256 J0 = zero, J1 = _mm256_set1_ps(kInf), J2 = J1, J3 = J1;
  for (int i = 0; i < kBlock; ++i) {
    const __m256 x = _mm256_setr_ps(in[0].v[i], in[1].v[i], in[2].v[i], in[3].v[i], in[4].v[i],
                                    in[5].v[i], in[6].v[i], in[7].v[i]);
    const __m256i a0 = IFloor8(_mm256_mul_ps(x, half));
    const __m256 a0odd = Odd8(a0);
    const __m256i a0p = _mm256_add_epi32(a0, one);
    const __m256i ev0 = _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_castsi256_ps(a0), _mm256_castsi256_ps(a0p), a0odd));
    const __m256i od0 = _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_castsi256_ps(a0p), _mm256_castsi256_ps(a0), a0odd));
    const __m256 ce0 = Cost8(x, _mm256_mul_ps(two, _mm256_cvtepi32_ps(ev0)), ev0, rt, in, t, mu);
    const __m256 co0 = Cost8(x, _mm256_mul_ps(two, _mm256_cvtepi32_ps(od0)), od0, rt, in, t, mu);
    const __m256i ap = _mm256_max_epi32(one, IFloor8(_mm256_mul_ps(_mm256_add_ps(x, onef), half)));
    const __m256i an = _mm256_min_epi32(_mm256_set1_epi32(-1),
                                        ICeil8(_mm256_mul_ps(_mm256_sub_ps(x, onef), half)));
    const __m256 pos = _mm256_cmp_ps(x, zero, _CMP_GE_OQ);
    const __m256i a = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(an), _mm256_castsi256_ps(ap), pos));
    const __m256i b = _mm256_castps_si256(_mm256_blendv_ps(
        _mm256_castsi256_ps(_mm256_sub_epi32(an, one)),
        _mm256_castsi256_ps(_mm256_add_epi32(ap, one)), pos));
    const __m256 aodd = Odd8(a);
    const __m256i ev1 = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), aodd));
    const __m256i od1 = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), aodd));
    const __m256 cz = _mm256_add_ps(_mm256_mul_ps(x, x), rate0);
    const __m256 cev = Cost8(x, Level1_8(ev1), ev1, rt, in, t, mu);
    const __m256 zm = _mm256_cmp_ps(cz, cev, _CMP_LE_OQ);
    const __m256 ce1 = _mm256_blendv_ps(cev, cz, zm);
    const __m256 co1 = Cost8(x, Level1_8(od1), od1, rt, in, t, mu);
    const __m256i e1 = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(ev1), _mm256_setzero_ps(), zm));
    alignas(32) int32_t s0[8], s1[8], s2[8], s3[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(s0), ev0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(s1), od0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(s2), e1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(s3), od1);
    const __m256 n0a = _mm256_add_ps(J0, ce0), n0b = _mm256_add_ps(J1, co0);
    const __m256 n2a = _mm256_add_ps(J0, co0), n2b = _mm256_add_ps(J1, ce0);
    const __m256 n1a = _mm256_add_ps(J2, ce1), n1b = _mm256_add_ps(J3, co1);
    const __m256 n3a = _mm256_add_ps(J2, co1), n3b = _mm256_add_ps(J3, ce1);
    const int m0 = _mm256_movemask_ps(_mm256_cmp_ps(n0b, n0a, _CMP_LT_OQ));
    const int m1 = _mm256_movemask_ps(_mm256_cmp_ps(n1b, n1a, _CMP_LT_OQ));
    const int m2 = _mm256_movemask_ps(_mm256_cmp_ps(n2b, n2a, _CMP_LT_OQ));
    const int m3 = _mm256_movemask_ps(_mm256_cmp_ps(n3b, n3a, _CMP_LT_OQ));
    for (int l = 0; l < 8; ++l) {
      TrellisOut& o = out[l];
      o.e0[i] = s0[l], o.o0[i] = s1[l], o.e1[i] = s2[l], o.o1[i] = s3[l];
      o.dec[i] = static_cast<uint8_t>(((m0 >> l) & 1) | (((m1 >> l) & 1) << 1) |
                                      (((m2 >> l) & 1) << 2) | (((m3 >> l) & 1) << 3));
    }
    // Minima as the scalar std::min(a, b) = b < a ? b : a.
    J0 = _mm256_blendv_ps(n0a, n0b, _mm256_cmp_ps(n0b, n0a, _CMP_LT_OQ));
    J1 = _mm256_blendv_ps(n1a, n1b, _mm256_cmp_ps(n1b, n1a, _CMP_LT_OQ));
    J2 = _mm256_blendv_ps(n2a, n2b, _mm256_cmp_ps(n2b, n2a, _CMP_LT_OQ));
    J3 = _mm256_blendv_ps(n3a, n3b, _mm256_cmp_ps(n3b, n3a, _CMP_LT_OQ));
  }
  alignas(32) float j[4][8];
  _mm256_store_ps(j[0], J0);
  _mm256_store_ps(j[1], J1);
  _mm256_store_ps(j[2], J2);
  _mm256_store_ps(j[3], J3);
  for (int l = 0; l < 8; ++l) {
    for (int s = 0; s < 4; ++s) out[l].J[s] = j[s][l];
  }
}
const bool kHasAvx2 = __builtin_cpu_supports("avx2");
#endif

}  // namespace

void QuantiseTcq(const float* z, int n, float step, float mu, const ClassTables& t,
                 QuantBlock& qb) {
  TrellisIn in;
  TrellisOut out;
  PrepareTrellis(z, n, step, mu, t, in);
  TrellisScalar(in, n, t, mu, out);
  Traceback(n, out, qb);
  PriceBlock(n, t, qb);
}

void QuantiseTcq8(const float* const z[8], float step, float mu, const ClassTables& t,
                  QuantBlock* qb, bool allow_simd) {
  TrellisIn in[8];
  TrellisOut out[8];
  for (int l = 0; l < 8; ++l) PrepareTrellis(z[l], kBlock, step, mu, t, in[l]);
#if defined(__x86_64__)
  if (allow_simd && kHasAvx2) {
    TrellisAvx2(in, t, mu, out);
  } else
#endif
  {
    for (int l = 0; l < 8; ++l) TrellisScalar(in[l], kBlock, t, mu, out[l]);
  }
  for (int l = 0; l < 8; ++l) {
    Traceback(kBlock, out[l], qb[l]);
    PriceBlock(kBlock, t, qb[l]);
  }
}

}  // namespace hc::hc2
