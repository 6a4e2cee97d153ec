#include "core/quality/stats.h"

#include <algorithm>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/base/simd.h"

namespace hc {

namespace {

constexpr size_t kLanes = 8;

// The sums of one chunk, kept in kLanes independent lanes: element i goes to lane i mod kLanes
// (the tail after the last whole group of kLanes to lane 0).
struct LaneSums {
  double sum[kLanes] = {}, m2[kLanes] = {}, sa[kLanes] = {}, ss[kLanes] = {}, mx[kLanes] = {};
};

void Pass1Scalar(const float* x, size_t body, LaneSums& s) {
  for (size_t i = 0; i < body; i += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) s.sum[l] += static_cast<double>(x[i + l]);
  }
}

inline void Step(const float* x, const float* y, double mean, size_t l, size_t i, LaneSums& s) {
  const double v = x[i];
  const double d = v - mean;
  const double e = v - static_cast<double>(y[i]);
  const double ae = std::fabs(e);
  s.m2[l] += d * d;
  s.sa[l] += ae;
  s.ss[l] += e * e;
  s.mx[l] = s.mx[l] < ae ? ae : s.mx[l];
}

void Pass2Scalar(const float* x, const float* y, size_t body, double mean, LaneSums& s) {
  for (size_t i = 0; i < body; i += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) Step(x, y, mean, l, i + l, s);
  }
}

#if defined(__x86_64__)
#define HC_STATS_AVX2 __attribute__((target("avx2")))
// The same lane operations, four lanes per register (two registers per group of eight):
// max_pd(ae, mx) is (mx < ae ? ae : mx), NaN included.
HC_STATS_AVX2 void Pass1Avx2(const float* x, size_t body, LaneSums& s) {
  __m256d a0 = _mm256_setzero_pd(), a1 = a0;
  for (size_t i = 0; i < body; i += kLanes) {
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
  }
  _mm256_storeu_pd(s.sum, a0);
  _mm256_storeu_pd(s.sum + 4, a1);
}

HC_STATS_AVX2 void Pass2Avx2(const float* x, const float* y, size_t body, double mean,
                             LaneSums& s) {
  const __m256d mv = _mm256_set1_pd(mean), sign = _mm256_set1_pd(-0.0);
  __m256d m2[2], sa[2], ss[2], mx[2];
  for (int h = 0; h < 2; ++h) m2[h] = sa[h] = ss[h] = mx[h] = _mm256_setzero_pd();
  for (size_t i = 0; i < body; i += kLanes) {
    for (int h = 0; h < 2; ++h) {
      const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * h));
      const __m256d d = _mm256_sub_pd(v, mv);
      const __m256d e = _mm256_sub_pd(v, _mm256_cvtps_pd(_mm_loadu_ps(y + i + 4 * h)));
      const __m256d ae = _mm256_andnot_pd(sign, e);
      m2[h] = _mm256_add_pd(m2[h], _mm256_mul_pd(d, d));
      sa[h] = _mm256_add_pd(sa[h], ae);
      ss[h] = _mm256_add_pd(ss[h], _mm256_mul_pd(e, e));
      mx[h] = _mm256_max_pd(ae, mx[h]);
    }
  }
  for (int h = 0; h < 2; ++h) {
    _mm256_storeu_pd(s.m2 + 4 * h, m2[h]);
    _mm256_storeu_pd(s.sa + 4 * h, sa[h]);
    _mm256_storeu_pd(s.ss + 4 * h, ss[h]);
    _mm256_storeu_pd(s.mx + 4 * h, mx[h]);
  }
}

#define HC_STATS_AVX512 __attribute__((target("avx512f,avx512dq")))
// kLanes is 8: one register holds all the lanes, the same operations in the same order.
static_assert(kLanes == 8);
HC_STATS_AVX512 void Pass1Avx512(const float* x, size_t body, LaneSums& s) {
  __m512d a = _mm512_setzero_pd();
  for (size_t i = 0; i < body; i += kLanes) {
    a = _mm512_add_pd(a, _mm512_maskz_cvtps_pd(0xff, _mm256_loadu_ps(x + i)));
  }
  _mm512_storeu_pd(s.sum, a);
}

HC_STATS_AVX512 void Pass2Avx512(const float* x, const float* y, size_t body, double mean,
                                 LaneSums& s) {
  const __m512d mv = _mm512_set1_pd(mean);
  __m512d m2 = _mm512_setzero_pd(), sa = m2, ss = m2, mx = m2;
  for (size_t i = 0; i < body; i += kLanes) {
    const __m512d v = _mm512_maskz_cvtps_pd(0xff, _mm256_loadu_ps(x + i));
    const __m512d d = _mm512_sub_pd(v, mv);
    const __m512d e = _mm512_sub_pd(v, _mm512_maskz_cvtps_pd(0xff, _mm256_loadu_ps(y + i)));
    const __m512d ae = _mm512_abs_pd(e);
    m2 = _mm512_add_pd(m2, _mm512_mul_pd(d, d));
    sa = _mm512_add_pd(sa, ae);
    ss = _mm512_add_pd(ss, _mm512_mul_pd(e, e));
    mx = _mm512_mask_max_pd(mx, 0xff, ae, mx);  // (no undefined source lanes: -Werror)
  }
  _mm512_storeu_pd(s.m2, m2);
  _mm512_storeu_pd(s.sa, sa);
  _mm512_storeu_pd(s.ss, ss);
  _mm512_storeu_pd(s.mx, mx);
}

bool StatsAvx2() { return CpuHasAvx2() && SimdAllowed(); }
bool StatsAvx512() { return CpuHasAvx512() && SimdAllowed(); }
#else
bool StatsAvx2() { return false; }
bool StatsAvx512() { return false; }
void Pass1Avx512(const float* x, size_t body, LaneSums& s) { Pass1Scalar(x, body, s); }
void Pass2Avx512(const float* x, const float* y, size_t body, double mean, LaneSums& s) {
  Pass2Scalar(x, y, body, mean, s);
}
void Pass1Avx2(const float* x, size_t body, LaneSums& s) { Pass1Scalar(x, body, s); }
void Pass2Avx2(const float* x, const float* y, size_t body, double mean, LaneSums& s) {
  Pass2Scalar(x, y, body, mean, s);
}
#endif

}  // namespace

void ErrorAccumulator::Add(absl::Span<const float> orig, absl::Span<const float> recon) {
  // Two passes over the chunk (a pipeline chunk sits in cache): its mean, then the squared
  // deviations and the error sums, in kLanes independent lanes folded in lane order (no
  // division, vectorised where the CPU has AVX2 with the same result), so the outcome depends
  // only on the chunk's values. The chunk then joins the running totals by Chan's merge.
  const size_t n = orig.size();
  if (n == 0) return;
  const size_t body = n - n % kLanes;
  const bool simd = StatsAvx2(), wide = StatsAvx512();
  LaneSums s;
  (wide ? Pass1Avx512 : simd ? Pass1Avx2 : Pass1Scalar)(orig.data(), body, s);
  double total = 0;
  for (size_t l = 0; l < kLanes; ++l) total += s.sum[l];
  for (size_t i = body; i < n; ++i) total += static_cast<double>(orig[i]);
  const double mean = total / static_cast<double>(n);
  (wide ? Pass2Avx512 : simd ? Pass2Avx2 : Pass2Scalar)(orig.data(), recon.data(), body, mean, s);
  for (size_t i = body; i < n; ++i) Step(orig.data(), recon.data(), mean, 0, i, s);
  ErrorAccumulator c;
  c.n_ = n;
  c.mean_ = mean;
  for (size_t l = 0; l < kLanes; ++l) {
    c.m2_ += s.m2[l];
    c.sum_abs_ += s.sa[l];
    c.sum_sq_ += s.ss[l];
    c.max_abs_ = std::max(c.max_abs_, s.mx[l]);
  }
  Merge(c);
}

void ErrorAccumulator::Merge(const ErrorAccumulator& o) {
  if (o.n_ == 0) return;
  if (n_ == 0) {
    *this = o;
    return;
  }
  const double na = static_cast<double>(n_), nb = static_cast<double>(o.n_);
  const double delta = o.mean_ - mean_;
  const double n = na + nb;
  mean_ += delta * nb / n;
  m2_ += o.m2_ + delta * delta * na * nb / n;
  n_ += o.n_;
  sum_abs_ += o.sum_abs_;
  sum_sq_ += o.sum_sq_;
  max_abs_ = std::max(max_abs_, o.max_abs_);
}

TensorStats ErrorAccumulator::Finish(uint64_t stored_bytes) const {
  TensorStats s;
  s.numel = n_;
  s.stored_bytes = stored_bytes;
  if (n_ == 0) return s;
  const double n = static_cast<double>(n_);
  s.bits_per_weight = 8.0 * static_cast<double>(stored_bytes) / n;
  s.variance = m2_ / n;
  const double mse = sum_sq_ / n;
  s.mae = sum_abs_ / n;
  s.max_abs_err = max_abs_;
  if (mse == 0) {
    s.rel_mse = 0;
    s.snr_db = kLosslessSnrDb;
  } else if (s.variance == 0) {
    s.rel_mse = kLosslessSnrDb;
    s.snr_db = -kLosslessSnrDb;
  } else {
    s.rel_mse = mse / s.variance;
    s.snr_db = 10.0 * std::log10(s.variance / mse);
  }
  s.db_above_rd = 20.0 * std::log10(2.0) * s.bits_per_weight - s.snr_db;
  return s;
}

TensorStats LosslessStats(uint64_t numel, uint64_t stored_bytes) {
  TensorStats s;
  s.numel = numel;
  s.stored_bytes = stored_bytes;
  s.bits_per_weight = numel ? 8.0 * static_cast<double>(stored_bytes) / static_cast<double>(numel) : 0;
  s.snr_db = kLosslessSnrDb;
  s.db_above_rd = 20.0 * std::log10(2.0) * s.bits_per_weight - s.snr_db;
  return s;
}

}  // namespace hc
