// hc1 geometry: numpy-exact float32 means, the sheared-grid codebook and its O(1) nearest search.
//
// These are the numeric building blocks of the hc1 codec (core/codec/hc1.h), exposed so that
// tests can check them against brute force and against numpy. Everything here reproduces the
// Hyper-Compression reference implementation bit for bit where the golden files pin it down;
// core/format/spec-hc1.md states the rules.
#ifndef HC_CORE_CODEC_HC1_GEOMETRY_H_
#define HC_CORE_CODEC_HC1_GEOMETRY_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace hc::hc1 {

/// Elements per inner-loop call of a numpy 1.24 reduction (its buffer size). np.mean adds the
/// pairwise sums of consecutive chunks of this many elements into one float32 accumulator.
inline constexpr int64_t kNumpyChunk = 8192;

/// The sum of x[0], x[stride], ..., x[(n-1)*stride] in float32, in numpy 1.24's pairwise order
/// (FLOAT_pairwise_sum): below 8 elements a plain loop from 0; up to 128 elements eight running
/// partial sums combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) plus the remainder; above that
/// the range is split in two at n/2 rounded down to a multiple of 8.
float PairwiseSumF32(const float* x, int64_t n, int64_t stride);

/// np.mean of a float32 array of `n` >= 1 elements (strided), as numpy 1.24 computes it: a float32
/// accumulator starting at 0 adds PairwiseSumF32 of each kNumpyChunk chunk in order, then
/// float32(double(sum) / double(n)). Sequential; the codec computes the chunk sums in parallel.
float NumpyMeanF32(const float* x, int64_t n, int64_t stride);

/// m = ceil(sqrt(n)), computed exactly on integers. n >= 1.
int64_t CeilSqrt(int64_t n);

/// The centre-independent part of an hc1 codebook for one (L, n), plus a search grid.
///
/// Codeword t (0 <= t < n, codebook row j = t + 1) lies at offset ((t * v) mod L) from the square's
/// corner c - L/2, with v = (L/m, L) / |(L/m, L)| * ((L / sin a) / m), sin a = L / sqrt(L^2 +
/// (L/m)^2), m = ceil(sqrt(n)), all float64 and Python floor-mod (fmod here, every value is >= 0).
/// Ideally this is the sheared lattice (a*L/m + b*L/m^2, b*L/m) for t = a*m + b, but float64
/// rounding moves some codewords with b = 0 to y ~ L instead of 0; the grid below is built from the
/// actual values, so such points are found too.
///
/// The search grid covers the square plus one cell on each side with square cells of side
/// L / (2m). Each cell lists every codeword (the centre, row 0, included) that can be the nearest
/// one to some point of the cell grown by a small margin, so a query looks at a handful of
/// candidates. Immutable after construction; thread-safe.
class Layout {
 public:
  /// Builds the layout. L > 0 finite, n >= 1.
  Layout(double L, int64_t n);
  /// A process-wide cached layout for (L, n) (built once; thread-safe).
  static std::shared_ptr<const Layout> Get(double L, int64_t n);

  double L() const { return L_; }
  int64_t n() const { return n_; }
  /// (t * v) mod L for codeword t: x at [2t], y at [2t + 1].
  const std::vector<double>& offsets() const { return offsets_; }

  /// Side of a grid cell (L / 2m).
  double cell() const { return cell_; }
  /// Cells per axis: the square's 2m plus a margin cell on each side.
  int cells_per_axis() const { return cells_; }
  /// Margin by which each cell is grown when its candidate list is built (relative units).
  double margin() const { return margin_; }
  /// The largest distance between two candidates of one cell.
  double spread() const { return spread_; }
  /// The candidate codebook rows of cell (cx, cy), ascending. Cell (1, 1) starts at the corner.
  const uint32_t* candidates(int cx, int cy, uint32_t* count) const {
    const size_t c = static_cast<size_t>(cy) * cells_ + cx;
    *count = start_[c + 1] - start_[c];
    return cand_.data() + start_[c];
  }
  /// Set in the last slot of a cell whose list is longer than kSlots.
  static constexpr uint32_t kOverflow = uint32_t{1} << 31;
  /// Candidates kept inline per cell: the list, padded with row n + 1, a dummy at infinity that
  /// never wins, so a lookup evaluates exactly kSlots rows without a data-dependent loop.
  /// Four: for every codebook size the presets use (n = 225, 1600) the lists hold 2 to 4 rows
  /// in all but a handful of cells, so a fifth slot would almost always hold the dummy.
  static constexpr int kSlots = 4;
  /// The kSlots inline candidates of cell (cx, cy).
  const uint32_t* slots(int cx, int cy) const {
    return slots_.data() + (static_cast<size_t>(cy) * cells_ + cx) * kSlots;
  }
  /// Mean candidate-list length (for tests and tuning).
  double mean_candidates() const;

 private:
  double L_;
  int64_t n_;
  std::vector<double> offsets_;
  double cell_ = 0;
  double inv_cell_ = 0;
  int cells_ = 0;
  double margin_ = 0;
  double spread_ = 0;
  std::vector<uint32_t> start_;
  std::vector<uint32_t> cand_;
  std::vector<uint32_t> slots_;
  friend class Codebook;
};

/// One tensor's codebook: row 0 is the centre c, row 1 + t is (c - L/2) + offset_t, float64.
/// Thread-safe for concurrent const use.
class Codebook {
 public:
  /// `cx`, `cy`: the float32 centre.
  Codebook(std::shared_ptr<const Layout> layout, float cx, float cy);

  /// Rows: n + 1.
  int64_t size() const { return static_cast<int64_t>(xy_.size() / 2) - 1; }
  /// Coordinates of row j (0 <= j <= n).
  double x(int64_t j) const { return xy_[2 * j]; }
  double y(int64_t j) const { return xy_[2 * j + 1]; }
  /// Rows 0..n + 1 as x, y pairs (row n + 1: the dummy at infinity), for vector kernels.
  const double* xy() const { return xy_.data(); }
  /// The centre (row 0) as float64.
  double cx() const { return xy_[0]; }
  double cy() const { return xy_[1]; }
  /// The centre-independent layout this codebook was built from.
  const Layout& layout() const { return *layout_; }

  /// The row nearest to (qx, qy): the smallest (qx - x)^2 + (qy - y)^2 evaluated in float64,
  /// exact ties going to the lowest row. O(1) through the layout's grid for queries inside the
  /// square or its margin cell; elsewhere (never the case for hc1's own queries) it falls back to
  /// NearestBruteForce. Same result as NearestBruteForce for every query.
  uint32_t Nearest(double qx, double qy) const { return Pick(Cell(qx, qy), qx, qy); }

  /// The first half of Nearest(): the inline candidates of q's grid cell (a pointer to kSlots
  /// rows), or nullptr when q lies off the grid. Hot loops locate a block of queries first and
  /// pick afterwards, so that the cells' cache misses overlap.
  const uint32_t* Cell(double qx, double qy) const { return locator().Cell(qx, qy); }

  /// Cell() as a small value type: hot loops copy it into locals, so the grid's parameters stay
  /// in registers while the loop stores to its own arrays.
  struct Locator {
    double ox, oy, inv_cell, cells_d;
    const uint32_t* slots;
    int cells;
    bool ok;
    const uint32_t* Cell(double qx, double qy) const {
      const double rx = (qx - ox) * inv_cell + 1.0;
      const double ry = (qy - oy) * inv_cell + 1.0;
      if (ok && rx >= 0.0 && ry >= 0.0 && rx < cells_d && ry < cells_d) [[likely]] {
        return slots + (static_cast<size_t>(static_cast<int>(ry)) * cells + static_cast<int>(rx)) *
                           Layout::kSlots;
      }
      return nullptr;
    }
  };
  /// This codebook's locator.
  Locator locator() const {
    return {ox_, oy_, inv_cell_, cells_d_, layout_->slots_.data(), layout_->cells_, grid_ok_};
  }

  /// The second half of Nearest(): the nearest row to q given Cell(qx, qy).
  uint32_t Pick(const uint32_t* s, double qx, double qy) const {
    if (s != nullptr && !(s[Layout::kSlots - 1] & Layout::kOverflow)) [[likely]] {
      // All kSlots distances first (independent), then a branch-free selection.
      double d[Layout::kSlots];
#if defined(__SSE2__)
      // dx^2 + dy^2 on one packed register: the same two products and one sum as Dist2.
      const __m128d q = _mm_set_pd(qy, qx);
      for (int i = 0; i < Layout::kSlots; ++i) {
        const __m128d v = _mm_sub_pd(q, _mm_loadu_pd(xy_.data() + 2 * s[i]));
        const __m128d sq = _mm_mul_pd(v, v);
        d[i] = _mm_cvtsd_f64(_mm_add_sd(sq, _mm_unpackhi_pd(sq, sq)));
      }
#else
      for (int i = 0; i < Layout::kSlots; ++i) d[i] = Dist2(s[i], qx, qy);
#endif
      uint32_t best = s[0];
      double bd = d[0];
      for (int i = 1; i < Layout::kSlots; ++i) {
        best = d[i] < bd ? s[i] : best;
        bd = std::min(d[i], bd);
      }
      return best;
    }
    return PickSlow(s, qx, qy);
  }

  /// Pick() at q, and in `*stable` whether every point at distance <= `radius` from q provably
  /// has the same nearest row: q's cell list covers that point, and the runner-up's squared
  /// distance exceeds the best one's by more than such a move can change their difference
  /// (2 * radius * spread, plus rounding slack). Used to skip a second lookup at a point a
  /// rounding error away from q. `*stable` false says nothing.
  uint32_t PickStable(const uint32_t* s, double qx, double qy, double radius, bool* stable) const {
    *stable = false;
    if (s == nullptr || (s[Layout::kSlots - 1] & Layout::kOverflow)) [[unlikely]] {
      return PickSlow(s, qx, qy);
    }
    double d[Layout::kSlots];
    for (int i = 0; i < Layout::kSlots; ++i) d[i] = Dist2(s[i], qx, qy);
    uint32_t best = s[0];
    double b1 = d[0], b2 = std::numeric_limits<double>::infinity();
    for (int i = 1; i < Layout::kSlots; ++i) {
      best = d[i] < b1 ? s[i] : best;
      b2 = std::min(b2, std::max(b1, d[i]));
      b1 = std::min(b1, d[i]);
    }
    *stable = radius <= 0.5 * layout_->margin_ &&
              b2 - b1 > 2.0 * radius * layout_->spread_ + 1e-12 * (b2 + b1);
    return best;
  }

  /// The test oracle: every row, same distance formula and tie rule as Nearest().
  uint32_t NearestBruteForce(double qx, double qy) const;

 private:
  // Overflowing cells (their full list) and queries off the grid (brute force).
  uint32_t PickSlow(const uint32_t* s, double qx, double qy) const;
  double Dist2(uint32_t j, double qx, double qy) const {
    const double dx = qx - xy_[2 * j];
    const double dy = qy - xy_[2 * j + 1];
    return dx * dx + dy * dy;
  }

  std::shared_ptr<const Layout> layout_;
  std::vector<double> xy_;  // rows 0..n, then the dummy row n + 1 at infinity
  double ox_ = 0, oy_ = 0, inv_cell_ = 0, cells_d_ = 0;
  bool grid_ok_ = false;
};

}  // namespace hc::hc1

#endif  // HC_CORE_CODEC_HC1_GEOMETRY_H_
