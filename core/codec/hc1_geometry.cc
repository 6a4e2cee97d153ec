#include "core/codec/hc1_geometry.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

namespace hc::hc1 {

float PairwiseSumF32(const float* x, int64_t n, int64_t stride) {
  if (n < 8) {
    float res = 0.0f;
    for (int64_t i = 0; i < n; ++i) res += x[i * stride];
    return res;
  }
  if (n <= 128) {
    float r[8];
    for (int j = 0; j < 8; ++j) r[j] = x[j * stride];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += x[(i + j) * stride];
    }
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += x[i * stride];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return PairwiseSumF32(x, n2, stride) + PairwiseSumF32(x + n2 * stride, n - n2, stride);
}

float NumpyMeanF32(const float* x, int64_t n, int64_t stride) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n; b += kNumpyChunk) {
    sum += PairwiseSumF32(x + b * stride, std::min(kNumpyChunk, n - b), stride);
  }
  return static_cast<float>(static_cast<double>(sum) / static_cast<double>(n));
}

int64_t CeilSqrt(int64_t n) {
  int64_t m = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (m * m < n) ++m;
  while (m > 1 && (m - 1) * (m - 1) >= n) --m;
  return m;
}

namespace {

// Distance from a point to an axis-aligned rectangle: smallest and largest.
double MinDist(double x0, double y0, double x1, double y1, double px, double py) {
  const double dx = px < x0 ? x0 - px : (px > x1 ? px - x1 : 0.0);
  const double dy = py < y0 ? y0 - py : (py > y1 ? py - y1 : 0.0);
  return std::sqrt(dx * dx + dy * dy);
}
double MaxDist(double x0, double y0, double x1, double y1, double px, double py) {
  const double dx = std::max(std::abs(px - x0), std::abs(px - x1));
  const double dy = std::max(std::abs(py - y0), std::abs(py - y1));
  return std::sqrt(dx * dx + dy * dy);
}

}  // namespace

Layout::Layout(double L, int64_t n) : L_(L), n_(n) {
  // Offsets, with the reference's operation order (golden codebooks match it bit for bit).
  const int64_t m = CeilSqrt(n);
  const double md = static_cast<double>(m);
  const double ux = L / md, uy = L;
  const double norm = std::sqrt(ux * ux + uy * uy);
  const double sin_a = L / std::sqrt(L * L + (L / md) * (L / md));
  const double scale = (L / sin_a) / md;
  const double vx = (ux / norm) * scale, vy = (uy / norm) * scale;
  offsets_.resize(2 * n);
  for (int64_t t = 0; t < n; ++t) {
    const double td = static_cast<double>(t);
    offsets_[2 * t] = std::fmod(td * vx, L);
    offsets_[2 * t + 1] = std::fmod(td * vy, L);
  }

  // The grid, in coordinates relative to the square's corner. Points: row 0 (centre) at
  // (L/2, L/2), row 1 + t at offset t. Every point lies in [0, L]^2.
  cells_ = static_cast<int>(2 * m + 2);
  cell_ = L / static_cast<double>(2 * m);
  inv_cell_ = 1.0 / cell_;
  margin_ = cell_ * 1e-4;
  const int T = cells_;
  const size_t rows = static_cast<size_t>(n) + 1;
  std::vector<double> px(rows), py(rows);
  px[0] = L / 2;
  py[0] = L / 2;
  for (int64_t t = 0; t < n; ++t) {
    px[t + 1] = offsets_[2 * t];
    py[t + 1] = offsets_[2 * t + 1];
  }
  auto cell_of = [&](double v) {
    return std::clamp(static_cast<int>(std::floor(v * inv_cell_)) + 1, 0, T - 1);
  };
  // Points bucketed by cell (counting sort, rows ascending within a bucket).
  std::vector<uint32_t> bstart(static_cast<size_t>(T) * T + 1, 0), bucket(rows);
  std::vector<int> pc(rows);
  for (size_t j = 0; j < rows; ++j) {
    pc[j] = cell_of(py[j]) * T + cell_of(px[j]);
    ++bstart[pc[j] + 1];
  }
  for (size_t c = 0; c < static_cast<size_t>(T) * T; ++c) bstart[c + 1] += bstart[c];
  {
    std::vector<uint32_t> fill(bstart.begin(), bstart.end() - 1);
    for (size_t j = 0; j < rows; ++j) bucket[fill[pc[j]]++] = static_cast<uint32_t>(j);
  }

  // Per cell: U = the smallest largest-distance from the grown cell to a nearby point (an upper
  // bound on the nearest distance of any query in it); candidates = every point whose smallest
  // distance to the grown cell is <= U (+ margins for the rounding of absolute coordinates).
  start_.assign(static_cast<size_t>(T) * T + 1, 0);
  std::vector<uint32_t> list;
  for (int cy = 0; cy < T; ++cy) {
    for (int cx = 0; cx < T; ++cx) {
      const double x0 = (cx - 1) * cell_ - margin_, x1 = cx * cell_ + margin_;
      const double y0 = (cy - 1) * cell_ - margin_, y1 = cy * cell_ + margin_;
      double U = INFINITY;
      int found_ring = -1;
      for (int r = 0; r < 2 * T && (found_ring < 0 || r <= found_ring + 1); ++r) {
        for (int by = cy - r; by <= cy + r; ++by) {
          for (int bx = cx - r; bx <= cx + r; ++bx) {
            if (std::max(std::abs(by - cy), std::abs(bx - cx)) != r) continue;
            if (bx < 0 || by < 0 || bx >= T || by >= T) continue;
            const size_t b = static_cast<size_t>(by) * T + bx;
            for (uint32_t k = bstart[b]; k < bstart[b + 1]; ++k) {
              const uint32_t j = bucket[k];
              U = std::min(U, MaxDist(x0, y0, x1, y1, px[j], py[j]));
              if (found_ring < 0) found_ring = r;
            }
          }
        }
      }
      const double limit = U + 2 * margin_ + 1e-12 * L;
      const int R = static_cast<int>(std::ceil(limit * inv_cell_)) + 1;
      list.clear();
      for (int by = std::max(0, cy - R); by <= std::min(T - 1, cy + R); ++by) {
        for (int bx = std::max(0, cx - R); bx <= std::min(T - 1, cx + R); ++bx) {
          const size_t b = static_cast<size_t>(by) * T + bx;
          for (uint32_t k = bstart[b]; k < bstart[b + 1]; ++k) {
            const uint32_t j = bucket[k];
            if (MinDist(x0, y0, x1, y1, px[j], py[j]) <= limit) list.push_back(j);
          }
        }
      }
      std::sort(list.begin(), list.end());
      cand_.insert(cand_.end(), list.begin(), list.end());
      start_[static_cast<size_t>(cy) * T + cx + 1] = static_cast<uint32_t>(cand_.size());
      for (int k = 0; k < kSlots; ++k) {
        slots_.push_back(k < static_cast<int>(list.size()) ? list[k]
                                                           : static_cast<uint32_t>(n + 1));
      }
      for (size_t a = 0; a < list.size(); ++a) {
        for (size_t b = a + 1; b < list.size(); ++b) {
          const double dx = px[list[a]] - px[list[b]], dy = py[list[a]] - py[list[b]];
          spread_ = std::max(spread_, std::sqrt(dx * dx + dy * dy));
        }
      }
      if (list.size() > kSlots) slots_.back() = static_cast<uint32_t>(n + 1) | kOverflow;
    }
  }
}

// A small most-recently-used cache: a model uses one or two (L, n) pairs, and a long-running
// server must not keep one layout per value a client ever sent (each can be ~11 MiB).
std::shared_ptr<const Layout> Layout::Get(double L, int64_t n) {
  constexpr size_t kCapacity = 8;
  struct Entry {
    uint64_t bits;
    int64_t n;
    std::shared_ptr<const Layout> layout;
  };
  static std::mutex* mu = new std::mutex;
  static auto* cache = new std::vector<Entry>;  // most recently used last
  uint64_t bits;
  std::memcpy(&bits, &L, 8);
  std::lock_guard<std::mutex> lock(*mu);
  for (size_t i = 0; i < cache->size(); ++i) {
    if ((*cache)[i].bits == bits && (*cache)[i].n == n) {
      Entry e = std::move((*cache)[i]);
      cache->erase(cache->begin() + static_cast<std::ptrdiff_t>(i));
      cache->push_back(std::move(e));
      return cache->back().layout;
    }
  }
  if (cache->size() == kCapacity) cache->erase(cache->begin());
  cache->push_back({bits, n, std::make_shared<const Layout>(L, n)});
  return cache->back().layout;
}

double Layout::mean_candidates() const {
  return static_cast<double>(cand_.size()) / static_cast<double>(start_.size() - 1);
}

Codebook::Codebook(std::shared_ptr<const Layout> layout, float cx, float cy)
    : layout_(std::move(layout)) {
  const Layout& l = *layout_;
  const double h = l.L() / 2;
  ox_ = static_cast<double>(cx) - h;
  oy_ = static_cast<double>(cy) - h;
  const int64_t n = l.n();
  xy_.resize(2 * (n + 2));
  xy_[2 * (n + 1)] = xy_[2 * (n + 1) + 1] = std::numeric_limits<double>::infinity();
  xy_[0] = cx;
  xy_[1] = cy;
  for (int64_t t = 0; t < n; ++t) {
    xy_[2 * (t + 1)] = ox_ + l.offsets_[2 * t];
    xy_[2 * (t + 1) + 1] = oy_ + l.offsets_[2 * t + 1];
  }
  inv_cell_ = l.inv_cell_;
  cells_d_ = static_cast<double>(l.cells_);
  // The grid is exact while rounding of absolute coordinates (a few ulps of |c| + L) stays well
  // inside the cells' margin; only centres beyond ~1e5 * L could break that.
  const double scale = std::max(std::abs(ox_), std::abs(oy_)) + 2 * l.L();
  grid_ok_ = std::isfinite(scale) && scale * std::ldexp(1.0, -49) <= l.margin_;
}

uint32_t Codebook::PickSlow(const uint32_t* s, double qx, double qy) const {
  if (s == nullptr) return NearestBruteForce(qx, qy);
  const size_t cell = static_cast<size_t>(s - layout_->slots_.data()) / Layout::kSlots;
  uint32_t count;
  const uint32_t* c = layout_->candidates(static_cast<int>(cell % layout_->cells_),
                                          static_cast<int>(cell / layout_->cells_), &count);
  uint32_t best = c[0];
  double bd = Dist2(best, qx, qy);
  for (uint32_t i = 1; i < count; ++i) {
    const double d = Dist2(c[i], qx, qy);
    if (d < bd) {
      bd = d;
      best = c[i];
    }
  }
  return best;
}

uint32_t Codebook::NearestBruteForce(double qx, double qy) const {
  uint32_t best = 0;
  double bd = Dist2(0, qx, qy);
  const uint32_t rows = static_cast<uint32_t>(size());
  for (uint32_t j = 1; j < rows; ++j) {
    const double d = Dist2(j, qx, qy);
    if (d < bd) {
      bd = d;
      best = j;
    }
  }
  return best;
}

}  // namespace hc::hc1
