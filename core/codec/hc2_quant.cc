#include "core/codec/hc2_quant.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/base/simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hc::hc2 {

// Tokens of the block's indices qb.q, the cheapest class that codes them all and the block's
// bits under it (class field, tokens, extra bits, signs): a token histogram, so pricing a class
// costs one product per distinct token.
void PriceBlock(int n, const ClassTables& t, QuantBlock& qb) {
  // Overview: tokens into 4 interleaved histograms (no store-to-load chain on runs of one
  // token), the sum of squares in integers where exact (|q| <= 2^22: every partial sum stays
  // below 2^53, so the double sum of the reference order is this integer), raw bits.
  uint16_t h4[4][kTokens] = {};
  uint64_t isum = 0;
  uint32_t qmax = 0;
  int raw_bits = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t q = qb.q[i];
    const uint32_t v = static_cast<uint32_t>(std::abs(q));
    qmax = std::max(qmax, v);
    isum += uint64_t{v} * v;
    const TokenSplit sp = SplitMagnitude(v);
    qb.tok[i] = static_cast<uint8_t>(sp.token);
    ++h4[i & 3][sp.token];
    raw_bits += sp.nextra + (q != 0);
  }
  double sumsq = static_cast<double>(isum);
  if (qmax > (uint32_t{1} << 22)) {  // beyond the encoder's range: the reference order
    sumsq = 0;
    for (int i = 0; i < n; ++i) sumsq += static_cast<double>(qb.q[i]) * qb.q[i];
  }
  uint16_t hist[kTokens];
  for (int k = 0; k < kTokens; ++k) hist[k] = h4[0][k] + h4[1][k] + h4[2][k] + h4[3][k];
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

// The class guessed from a block's sum of 0.25 v^2 over n values.
int GuessClass(double ss, int n) {
  return ss > 0 ? std::clamp(static_cast<int>(std::lround(std::log2(ss / n) + 8.0)), 0,
                             kClasses - 1)
                : 0;
}

// The rate table of class cg: mu * bits of |k| for |k| < kSmall.
void RateTable(const ClassTables& t, float mu, int cg, float* rate) {
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
    std::copy((*cached)[cg].begin(), (*cached)[cg].end(), rate);
    return;
  }
  for (int m = 0; m < kSmall; ++m) rate[m] = RateOf(t, cg, mu, static_cast<uint32_t>(m));
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
  in.cg = GuessClass(ss, n);
  RateTable(t, mu, in.cg, in.rate);
}

// Per coefficient and new state s: the index of the branch into s (k[s]), and whether its
// second predecessor won (bit s of dec).
struct TrellisOut {
  int32_t k[4][kBlock];
  uint8_t dec[kBlock];
  float J[4];
};

// Follows the decisions back from the cheapest final state: the predecessor of state s is
// 2 (s & 1) + (its decision bit).
void Traceback(int n, const TrellisOut& o, QuantBlock& qb) {
  int s = static_cast<int>(std::min_element(o.J, o.J + 4) - o.J);
  for (int i = n - 1; i >= 0; --i) {
    qb.q[i] = o.k[s][i];
    s = ((s & 1) << 1) | ((o.dec[i] >> s) & 1);
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
    const int32_t e1 = zero ? 0 : ev1;
    // Transitions: 0 -even-> 0, 0 -odd-> 2, 1 -even-> 2, 1 -odd-> 0,
    //              2 -even-> 1, 2 -odd-> 3, 3 -even-> 3, 3 -odd-> 1.
    const float n0a = J0 + ce0, n0b = J1 + co0;
    const float n2a = J0 + co0, n2b = J1 + ce0;
    const float n1a = J2 + ce1, n1b = J3 + co1;
    const float n3a = J2 + co1, n3b = J3 + ce1;
    const bool b0 = n0b < n0a, b1 = n1b < n1a, b2 = n2b < n2a, b3 = n3b < n3a;
    o.k[0][i] = b0 ? od0 : ev0, o.k[2][i] = b2 ? ev0 : od0;
    o.k[1][i] = b1 ? od1 : e1, o.k[3][i] = b3 ? e1 : od1;
    o.dec[i] = static_cast<uint8_t>(b0 | (b1 << 1) | (b2 << 2) | (b3 << 3));
    J0 = std::min(n0a, n0b), J1 = std::min(n1a, n1b);
    J2 = std::min(n2a, n2b), J3 = std::min(n3a, n3b);
  }
  o.J[0] = J0, o.J[1] = J1, o.J[2] = J2, o.J[3] = J3;
}

#if defined(__x86_64__)
#define HC_AVX2 __attribute__((target("avx2")))

// The 8-lane trellis's state: per coefficient i, lane l (block l) in x[i][l] (transposed),
// the decisions and branch indices in the same layout.
struct Lanes8 {
  alignas(32) float x[kBlock][8];
  alignas(32) float rt[8 * kSmall];  // lane l's rate table at rt + l * kSmall
  alignas(32) int32_t n[8];          // lane l's length (a power of two <= kBlock)
  int cg[8];
  alignas(32) int32_t k[kBlock][4][8];
  alignas(32) int32_t dec[kBlock][8];
  alignas(32) int32_t q[kBlock][8];  // the traceback's indices
};

// Transposes the 8x8 tile of floats rows r[0..8) in place (bits moved only).
HC_AVX2 inline void Transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// PrepareTrellis for 8 lanes: lane l is z[l][0..n[l]) zero-padded to kBlock (zeros add +0 to
// the sum of squares, so each lane's class is the scalar one). Values are scaled and clamped
// as in the scalar code (clamp: v < lo ? lo : hi < v ? hi : v), transposed 8x8 tile by tile;
// each lane's double sum runs in coefficient order as in the scalar code.
HC_AVX2 void PrepareAvx2(const float* const z[8], const int n[8], float step, float mu,
                         const ClassTables& t, Lanes8& L) {
  alignas(32) float pad[8][kBlock];
  const float* src[8];
  for (int l = 0; l < 8; ++l) {
    L.n[l] = n[l];
    if (n[l] == kBlock) {
      src[l] = z[l];
    } else {
      std::copy(z[l], z[l] + n[l], pad[l]);
      std::fill(pad[l] + n[l], pad[l] + kBlock, 0.0f);
      src[l] = pad[l];
    }
  }
  const __m256 inv = _mm256_set1_ps(1.0f / step), lim = _mm256_set1_ps(static_cast<float>(kMaxQ));
  const __m256 nlim = _mm256_set1_ps(-static_cast<float>(kMaxQ));
  const __m256d quarter = _mm256_set1_pd(0.25);
  __m256d ss_lo = _mm256_setzero_pd(), ss_hi = _mm256_setzero_pd();
  for (int j = 0; j < kBlock; j += 8) {
    __m256 r[8];
    for (int l = 0; l < 8; ++l) r[l] = _mm256_loadu_ps(src[l] + j);
    Transpose8(r);
    for (int i = 0; i < 8; ++i) {
      const __m256 v0 = _mm256_mul_ps(r[i], inv);
      const __m256 v1 = _mm256_blendv_ps(v0, lim, _mm256_cmp_ps(lim, v0, _CMP_LT_OQ));
      const __m256 v = _mm256_blendv_ps(v1, nlim, _mm256_cmp_ps(v0, nlim, _CMP_LT_OQ));
      _mm256_store_ps(L.x[j + i], v);
      const __m256d d_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
      const __m256d d_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
      ss_lo = _mm256_add_pd(ss_lo, _mm256_mul_pd(_mm256_mul_pd(quarter, d_lo), d_lo));
      ss_hi = _mm256_add_pd(ss_hi, _mm256_mul_pd(_mm256_mul_pd(quarter, d_hi), d_hi));
    }
  }
  alignas(32) double ss[8];
  _mm256_store_pd(ss, ss_lo);
  _mm256_store_pd(ss + 4, ss_hi);
  for (int l = 0; l < 8; ++l) {
    L.cg[l] = GuessClass(ss[l], n[l]);
    RateTable(t, mu, L.cg[l], L.rt + l * kSmall);
  }
}

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
// mask ? b : a, on integer lanes.
HC_AVX2 inline __m256i PickI8(__m256i a, __m256i b, __m256 mask) {
  return _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), mask));
}
// Q1 levels 2k - sgn(k) for k != 0.
HC_AVX2 inline __m256 Level1_8(__m256i k) {
  const __m256 sg = _mm256_blendv_ps(
      _mm256_set1_ps(-1.0f), _mm256_set1_ps(1.0f),
      _mm256_castsi256_ps(_mm256_cmpgt_epi32(k, _mm256_setzero_si256())));
  return _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), _mm256_cvtepi32_ps(k)), sg);
}
// The rate tables' first 16 entries as vectors when the lanes use at most two classes (a and
// b; use_b marks b's lanes): indices below 16 are then looked up with permutes instead of a
// gather (the same table values).
struct RateVecs {
  bool perm = false, two = false;
  __m256 a0, a1, b0, b1, use_b;
};
HC_AVX2 inline void MakeRateVecs(const Lanes8& L, RateVecs& rv) {
  rv.a0 = rv.a1 = rv.b0 = rv.b1 = rv.use_b = _mm256_setzero_ps();
  int lb = -1;
  for (int l = 1; l < 8; ++l) {
    if (L.cg[l] == L.cg[0]) continue;
    if (lb >= 0 && L.cg[l] != L.cg[lb]) return;  // three classes: gathers
    if (lb < 0) lb = l;
  }
  alignas(32) int32_t use_b[8];
  for (int l = 0; l < 8; ++l) use_b[l] = lb >= 0 && L.cg[l] == L.cg[lb] ? -1 : 0;
  const float* a = L.rt;
  const float* b = L.rt + (lb >= 0 ? lb : 0) * kSmall;
  rv.perm = true;
  rv.two = lb >= 0;
  rv.a0 = _mm256_load_ps(a), rv.a1 = _mm256_load_ps(a + 8);
  rv.b0 = _mm256_load_ps(b), rv.b1 = _mm256_load_ps(b + 8);
  rv.use_b = _mm256_load_ps(reinterpret_cast<const float*>(use_b));
}
// (x - level)^2 + rate of |k|, per lane; |k| >= 64 patched in with the scalar RateOf.
HC_AVX2 inline __m256 Cost8(__m256 x, __m256 level, __m256i k, const Lanes8& L,
                            const RateVecs& rv, const ClassTables& t, float mu) {
  const __m256i base = _mm256_setr_epi32(0, kSmall, 2 * kSmall, 3 * kSmall, 4 * kSmall,
                                         5 * kSmall, 6 * kSmall, 7 * kSmall);
  const __m256i cap = _mm256_set1_epi32(kSmall - 1);
  const __m256i m = _mm256_abs_epi32(k);
  const __m256i mc = _mm256_min_epi32(m, cap);
  __m256 r;
  if (rv.perm && _mm256_movemask_ps(_mm256_castsi256_ps(
                     _mm256_cmpgt_epi32(mc, _mm256_set1_epi32(15)))) == 0) {
    const __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(mc, 28));  // bit 3 of the index
    r = _mm256_blendv_ps(_mm256_permutevar8x32_ps(rv.a0, mc),
                         _mm256_permutevar8x32_ps(rv.a1, mc), hi);
    if (rv.two) {
      const __m256 rb = _mm256_blendv_ps(_mm256_permutevar8x32_ps(rv.b0, mc),
                                         _mm256_permutevar8x32_ps(rv.b1, mc), hi);
      r = _mm256_blendv_ps(r, rb, rv.use_b);
    }
  } else {
    r = _mm256_i32gather_ps(L.rt, _mm256_add_epi32(base, mc), 4);
  }
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
        cs[l] = ds[l] * ds[l] + RateOf(t, L.cg[l], mu, static_cast<uint32_t>(ms[l]));
      }
    }
    c = _mm256_load_ps(cs);
  }
  return c;
}

// The trellis for 8 blocks at once, one per AVX2 lane: every lane performs exactly the
// scalar operations (no FMA), so the results are bit-identical. Overview of the hot loop: the
// scalar candidate indices and costs as vectors, the 4-state update as 8 vector adds and 4
// compares, the branch indices and decision bits stored as whole vectors; a lane shorter than
// kBlock keeps its costs at its last coefficient (Jf) and ignores the rest. Then the
// traceback of all lanes at once from their cheapest final states.
HC_AVX2 void TrellisAvx2(Lanes8& L, const ClassTables& t, float mu) {
  const __m256i base = _mm256_setr_epi32(0, kSmall, 2 * kSmall, 3 * kSmall, 4 * kSmall,
                                         5 * kSmall, 6 * kSmall, 7 * kSmall);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256 half = _mm256_set1_ps(0.5f), two = _mm256_set1_ps(2.0f),
               onef = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 rate0 = _mm256_i32gather_ps(L.rt, base, 4);
  const __m256i n8 = _mm256_load_si256(reinterpret_cast<const __m256i*>(L.n));
  __m256 J0 = zero, J1 = _mm256_set1_ps(kInf), J2 = J1, J3 = J1;
  __m256 F0 = J0, F1 = J1, F2 = J2, F3 = J3;  // costs at each lane's last coefficient
  RateVecs rv;
  MakeRateVecs(L, rv);
  for (int i = 0; i < kBlock; ++i) {
    const __m256 x = _mm256_load_ps(L.x[i]);
    const __m256i a0 = IFloor8(_mm256_mul_ps(x, half));
    const __m256 a0odd = Odd8(a0);
    const __m256i a0p = _mm256_add_epi32(a0, one);
    const __m256i ev0 = PickI8(a0, a0p, a0odd);
    const __m256i od0 = PickI8(a0p, a0, a0odd);
    const __m256 ce0 = Cost8(x, _mm256_mul_ps(two, _mm256_cvtepi32_ps(ev0)), ev0, L, rv, t, mu);
    const __m256 co0 = Cost8(x, _mm256_mul_ps(two, _mm256_cvtepi32_ps(od0)), od0, L, rv, t, mu);
    const __m256i ap = _mm256_max_epi32(one, IFloor8(_mm256_mul_ps(_mm256_add_ps(x, onef), half)));
    const __m256i an = _mm256_min_epi32(_mm256_set1_epi32(-1),
                                        ICeil8(_mm256_mul_ps(_mm256_sub_ps(x, onef), half)));
    const __m256 pos = _mm256_cmp_ps(x, zero, _CMP_GE_OQ);
    const __m256i a = PickI8(an, ap, pos);
    const __m256i b = PickI8(_mm256_sub_epi32(an, one), _mm256_add_epi32(ap, one), pos);
    const __m256 aodd = Odd8(a);
    const __m256i ev1 = PickI8(a, b, aodd);
    const __m256i od1 = PickI8(b, a, aodd);
    const __m256 cz = _mm256_add_ps(_mm256_mul_ps(x, x), rate0);
    const __m256 cev = Cost8(x, Level1_8(ev1), ev1, L, rv, t, mu);
    const __m256 zm = _mm256_cmp_ps(cz, cev, _CMP_LE_OQ);
    const __m256 ce1 = _mm256_blendv_ps(cev, cz, zm);
    const __m256 co1 = Cost8(x, Level1_8(od1), od1, L, rv, t, mu);
    const __m256i e1 = PickI8(ev1, _mm256_setzero_si256(), zm);
    const __m256 n0a = _mm256_add_ps(J0, ce0), n0b = _mm256_add_ps(J1, co0);
    const __m256 n2a = _mm256_add_ps(J0, co0), n2b = _mm256_add_ps(J1, ce0);
    const __m256 n1a = _mm256_add_ps(J2, ce1), n1b = _mm256_add_ps(J3, co1);
    const __m256 n3a = _mm256_add_ps(J2, co1), n3b = _mm256_add_ps(J3, ce1);
    const __m256 b0 = _mm256_cmp_ps(n0b, n0a, _CMP_LT_OQ);
    const __m256 b1 = _mm256_cmp_ps(n1b, n1a, _CMP_LT_OQ);
    const __m256 b2 = _mm256_cmp_ps(n2b, n2a, _CMP_LT_OQ);
    const __m256 b3 = _mm256_cmp_ps(n3b, n3a, _CMP_LT_OQ);
    __m256i* kv = reinterpret_cast<__m256i*>(L.k[i]);
    _mm256_store_si256(kv + 0, PickI8(ev0, od0, b0));
    _mm256_store_si256(kv + 1, PickI8(e1, od1, b1));
    _mm256_store_si256(kv + 2, PickI8(od0, ev0, b2));
    _mm256_store_si256(kv + 3, PickI8(od1, e1, b3));
    const __m256i d = _mm256_or_si256(
        _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(b0), one),
                        _mm256_and_si256(_mm256_castps_si256(b1), _mm256_set1_epi32(2))),
        _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(b2), _mm256_set1_epi32(4)),
                        _mm256_and_si256(_mm256_castps_si256(b3), _mm256_set1_epi32(8))));
    _mm256_store_si256(reinterpret_cast<__m256i*>(L.dec[i]), d);
    // Minima as the scalar std::min(a, b) = b < a ? b : a.
    J0 = _mm256_blendv_ps(n0a, n0b, b0);
    J1 = _mm256_blendv_ps(n1a, n1b, b1);
    J2 = _mm256_blendv_ps(n2a, n2b, b2);
    J3 = _mm256_blendv_ps(n3a, n3b, b3);
    if (((i + 1) & i) == 0) {  // i + 1 a power of two: lanes of that length end here
      const __m256 end = _mm256_castsi256_ps(_mm256_cmpeq_epi32(n8, _mm256_set1_epi32(i + 1)));
      F0 = _mm256_blendv_ps(F0, J0, end), F1 = _mm256_blendv_ps(F1, J1, end);
      F2 = _mm256_blendv_ps(F2, J2, end), F3 = _mm256_blendv_ps(F3, J3, end);
    }
  }
  // The first cheapest final state (std::min_element), then the traceback.
  __m256 best = F0;
  __m256i s = _mm256_setzero_si256();
  const __m256 F[3] = {F1, F2, F3};
  for (int j = 0; j < 3; ++j) {
    const __m256 lt = _mm256_cmp_ps(F[j], best, _CMP_LT_OQ);
    best = _mm256_blendv_ps(best, F[j], lt);
    s = PickI8(s, _mm256_set1_epi32(j + 1), lt);
  }
  for (int i = kBlock - 1; i >= 0; --i) {
    const __m256i* kv = reinterpret_cast<const __m256i*>(L.k[i]);
    const __m256 lo = _mm256_castsi256_ps(_mm256_slli_epi32(s, 31));  // s & 1 as a sign mask
    const __m256 hi = _mm256_castsi256_ps(_mm256_slli_epi32(s, 30));  // s & 2
    const __m256i k = PickI8(PickI8(_mm256_load_si256(kv + 0), _mm256_load_si256(kv + 1), lo),
                             PickI8(_mm256_load_si256(kv + 2), _mm256_load_si256(kv + 3), lo),
                             hi);
    _mm256_store_si256(reinterpret_cast<__m256i*>(L.q[i]), k);
    const __m256i d = _mm256_load_si256(reinterpret_cast<const __m256i*>(L.dec[i]));
    const __m256i prev = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(s, one), 1),
                                         _mm256_and_si256(_mm256_srlv_epi32(d, s), one));
    const __m256 active = _mm256_castsi256_ps(_mm256_cmpgt_epi32(n8, _mm256_set1_epi32(i)));
    s = PickI8(s, prev, active);
  }
}

// Lane l's indices from the transposed traceback, 8x8 tile by tile.
HC_AVX2 void StoreLanes(const Lanes8& L, QuantBlock* qb, int lanes) {
  for (int j = 0; j < kBlock; j += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_load_ps(reinterpret_cast<const float*>(L.q[j + i]));
    Transpose8(r);
    for (int l = 0; l < lanes; ++l) {
      if (j < L.n[l]) {
        alignas(32) int32_t row[8];
        _mm256_store_ps(reinterpret_cast<float*>(row), r[l]);
        std::copy(row, row + std::min(8, L.n[l] - j), qb[l].q + j);
      }
    }
  }
}

// The 8-lane quantiser: unused lanes repeat lane 0 and are dropped.
HC_AVX2 void QuantiseLanesAvx2(const float* const z[], const int n[], int lanes, float step,
                               float mu, const ClassTables& t, QuantBlock* qb) {
  const float* zl[8];
  int nl[8];
  for (int l = 0; l < 8; ++l) {
    zl[l] = l < lanes ? z[l] : z[0];
    nl[l] = l < lanes ? n[l] : n[0];
  }
  Lanes8 L;  // about 30 KiB
  PrepareAvx2(zl, nl, step, mu, t, L);
  TrellisAvx2(L, t, mu);
  StoreLanes(L, qb, lanes);
}
const bool kHasAvx2 = CpuHasAvx2();
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

void QuantiseTcqLanes(const float* const z[], const int n[], int lanes, float step, float mu,
                      const ClassTables& t, QuantBlock* qb, bool allow_simd) {
#if defined(__x86_64__)
  if (allow_simd && kHasAvx2) {
    QuantiseLanesAvx2(z, n, lanes, step, mu, t, qb);
    for (int l = 0; l < lanes; ++l) PriceBlock(n[l], t, qb[l]);
    return;
  }
#endif
  for (int l = 0; l < lanes; ++l) QuantiseTcq(z[l], n[l], step, mu, t, qb[l]);
}

void QuantiseTcq8(const float* const z[8], float step, float mu, const ClassTables& t,
                  QuantBlock* qb, bool allow_simd) {
  const int n[8] = {kBlock, kBlock, kBlock, kBlock, kBlock, kBlock, kBlock, kBlock};
  QuantiseTcqLanes(z, n, 8, step, mu, t, qb, allow_simd);
}

namespace {
// The table behind GaussianIndexBits: log2(rho) from -12 to 28 in 1/8 steps.
class GaussEntropyTable {
 public:
  static const GaussEntropyTable& Get() {
    static const GaussEntropyTable* g = new GaussEntropyTable;
    return *g;
  }
  double operator()(double log2rho) const {
    const double t = std::clamp((log2rho + 12.0) * 8.0, 0.0, kN - 1.001);
    const int i = static_cast<int>(t);
    return h_[i] + (h_[i + 1] - h_[i]) * (t - i);
  }

 private:
  static constexpr int kN = 40 * 8 + 1;
  GaussEntropyTable() {
    for (int i = 0; i < kN; ++i) {
      const double rho = std::exp2(i / 8.0 - 12.0);
      if (rho > 64) {
        h_[i] = std::log2(rho * std::sqrt(2 * M_PI * M_E));
        continue;
      }
      double h = 0;
      const int kmax = static_cast<int>(rho * 12) + 2;
      for (int k = -kmax; k <= kmax; ++k) {
        const double p = 0.5 * (std::erfc((k - 0.5) / (rho * M_SQRT2)) -
                                std::erfc((k + 0.5) / (rho * M_SQRT2)));
        if (p > 0) h -= p * std::log2(p);
      }
      h_[i] = h;
    }
  }
  double h_[kN];
};
}  // namespace

double GaussianIndexBits(double log2rho) { return GaussEntropyTable::Get()(log2rho); }

}  // namespace hc::hc2
