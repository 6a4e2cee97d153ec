// hc2's per-row side information: row multipliers (spec-hc2.md 5.4) and dc corrections (5.6).
#include "core/codec/hc2_rows.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace hc::hc2 {
namespace {

// m = 2^(k / 4) as ldexp(2^((k mod 4) / 4), floor(k / 4)) from these float32 constants.
constexpr float kQuarter[4] = {1.0f, 1.18920711f, 1.41421356f, 1.68179283f};
// dc bytes: unit steps up to kDcLinear, then steps of kDcCoarse.
constexpr int kDcLinear = 64, kDcCoarse = 8;
constexpr float kDcScale = 1.0f / 256.0f;

}  // namespace

float RowMultiplier(uint8_t stored) {
  const int k = static_cast<int>(stored) - 32;
  return std::ldexp(kQuarter[k & 3], k >> 2);
}

const float* RowMultiplierTable() {
  static const float* table = [] {
    auto* t = new float[256];
    for (int i = 0; i < 256; ++i) t[i] = RowMultiplier(static_cast<uint8_t>(i));
    return t;
  }();
  return table;
}

int64_t RowCount(const TensorInfo& info) {
  if (info.shape.size() < 2 || info.shape[0] <= 1) return 0;
  return static_cast<int64_t>(info.numel) / info.shape[0] >= kMinRowLen ? info.shape[0] : 0;
}

// Under the high-rate model, at equal rate, coding row r scaled by m_r instead of with one step
// divides the mean relative error over rows, mean_r(D_r / m_r^2), by AM(m^-2) / GM(m^-2) (>= 1);
// the byte per row costs 8 / row_len bits per weight, 6.02 dB per bit.
bool ShortRowsPay(absl::Span<const uint8_t> rows, int64_t row_len) {
  if (row_len >= kCheapRowLen) return true;
  double inv = 0, log2_sq = 0;
  for (uint8_t b : rows) {
    const double m = RowMultiplier(b);
    inv += 1.0 / (m * m);
    log2_sq += 2.0 * std::log2(m);
  }
  const double n = static_cast<double>(rows.size());
  const double gain_db = 10.0 * std::log10(inv / n) + 10.0 * std::log10(2.0) * log2_sq / n;
  const double cost_db = 20.0 * std::log10(2.0) * 8.0 / static_cast<double>(row_len);
  return gain_db > cost_db;
}

void ApplyRows(absl::Span<const uint8_t> rows, uint64_t row_len, uint64_t begin,
               absl::Span<float> out) {
  if (rows.empty()) return;
  uint64_t e = begin;
  size_t i = 0;
  while (i < out.size()) {
    const uint64_t r = e / row_len;
    const float m = RowMultiplier(rows[r]);
    const size_t n = static_cast<size_t>(std::min<uint64_t>((r + 1) * row_len - e, out.size() - i));
    float* const o = out.data() + i;  // a plain pointer loop: it vectorises
    for (size_t k = 0; k < n; ++k) o[k] *= m;
    i += n;
    e += n;
  }
}

void AddRowOffsets(absl::Span<const float> d, uint64_t row_len, uint64_t begin,
                   absl::Span<float> out) {
  if (d.empty()) return;
  for (size_t i = 0; i < out.size();) {
    const uint64_t e = begin + i, r = e / row_len;
    const size_t n = static_cast<size_t>(std::min<uint64_t>((r + 1) * row_len - e, out.size() - i));
    const float v = d[r];
    for (size_t k = i; k < i + n; ++k) out[k] += v;
    i += n;
  }
}

float DcUnit(float step, float m, uint64_t row_len) {
  return step * kDcScale * m / std::sqrt(static_cast<float>(row_len));
}

int DcUnits(int c) {
  const int a = std::abs(c);
  const int v = a <= kDcLinear ? a : kDcCoarse * a - (kDcCoarse - 1) * kDcLinear;
  return c < 0 ? -v : v;
}

int8_t DcByte(double q) {
  const double a = std::min(std::abs(q), 1e6);
  long c = 0;
  if (a <= kDcLinear + 0.5 * kDcCoarse) {
    c = std::min<long>(std::lround(a), kDcLinear);
  } else {
    c = std::min<long>(127, std::lround((a + (kDcCoarse - 1) * kDcLinear) / kDcCoarse));
  }
  return static_cast<int8_t>(q < 0 ? -c : c);
}

}  // namespace hc::hc2
