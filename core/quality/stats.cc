#include "core/quality/stats.h"

#include <algorithm>
#include <cmath>

namespace hc {

void ErrorAccumulator::Add(absl::Span<const float> orig, absl::Span<const float> recon) {
  // One pass: chunk-local mean and M2 (Welford), then Chan's merge into the running totals.
  ErrorAccumulator c;
  double mean = 0, m2 = 0, sa = 0, ss = 0, mx = 0;
  for (size_t i = 0; i < orig.size(); ++i) {
    const double x = orig[i];
    const double e = x - static_cast<double>(recon[i]);
    const double d = x - mean;
    mean += d / static_cast<double>(i + 1);
    m2 += d * (x - mean);
    const double ae = std::fabs(e);
    sa += ae;
    ss += e * e;
    mx = std::max(mx, ae);
  }
  c.n_ = orig.size();
  c.mean_ = mean;
  c.m2_ = m2;
  c.sum_abs_ = sa;
  c.sum_sq_ = ss;
  c.max_abs_ = mx;
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
