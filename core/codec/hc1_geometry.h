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
#include <memory>
#include <vector>

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

  /// Side of a grid cell and cells per axis (the square's 2m plus a margin cell on each side).
  double cell() const { return cell_; }
  int cells_per_axis() const { return cells_; }
  /// Margin by which each cell is grown when its candidate list is built (relative units).
  double margin() const { return margin_; }
  /// The candidate codebook rows of cell (cx, cy), ascending. Cell (1, 1) starts at the corner.
  const uint32_t* candidates(int cx, int cy, uint32_t* count) const {
    const size_t c = static_cast<size_t>(cy) * cells_ + cx;
    *count = start_[c + 1] - start_[c];
    return cand_.data() + start_[c];
  }
  /// Set in slot 3 of a cell whose list is longer than kSlots.
  static constexpr uint32_t kOverflow = uint32_t{1} << 31;
  /// Candidates kept inline per cell: the list, padded with its last row (harmless: ties keep
  /// the earlier row), so a lookup evaluates exactly kSlots rows without a data-dependent loop.
  static constexpr int kSlots = 5;
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
  int64_t size() const { return static_cast<int64_t>(xy_.size() / 2); }
  double x(int64_t j) const { return xy_[2 * j]; }
  double y(int64_t j) const { return xy_[2 * j + 1]; }
  double cx() const { return xy_[0]; }
  double cy() const { return xy_[1]; }
  const Layout& layout() const { return *layout_; }

  /// The row nearest to (qx, qy): the smallest (qx - x)^2 + (qy - y)^2 evaluated in float64,
  /// exact ties going to the lowest row. O(1) through the layout's grid for queries inside the
  /// square or its margin cell; elsewhere (never the case for hc1's own queries) it falls back to
  /// NearestBruteForce. Same result as NearestBruteForce for every query.
  uint32_t Nearest(double qx, double qy) const {
    double x, y;
    return Nearest(qx, qy, &x, &y);
  }
  /// Nearest() that also returns the row's coordinates (saves a dependent load in hot loops).
  uint32_t Nearest(double qx, double qy, double* x, double* y) const {
    if (grid_ok_) {
      const double rx = (qx - ox_) * inv_cell_ + 1.0;
      const double ry = (qy - oy_) * inv_cell_ + 1.0;
      if (rx >= 0.0 && ry >= 0.0 && rx < cells_d_ && ry < cells_d_) [[likely]] {
        const int cx = static_cast<int>(rx), cy = static_cast<int>(ry);
        const uint32_t* s = layout_->slots(cx, cy);
        if (!(s[Layout::kSlots - 1] & Layout::kOverflow)) [[likely]] {
          // All kSlots distances first (independent), then a branch-free selection.
          double d[Layout::kSlots];
          for (int i = 0; i < Layout::kSlots; ++i) d[i] = Dist2(s[i], qx, qy);
          uint32_t best = s[0];
          double bd = d[0];
          for (int i = 1; i < Layout::kSlots; ++i) {
            best = d[i] < bd ? s[i] : best;
            bd = std::min(d[i], bd);
          }
          *x = xy_[2 * best];
          *y = xy_[2 * best + 1];
          return best;
        }
        const uint32_t j = NearestInCell(cx, cy, qx, qy);
        *x = xy_[2 * j];
        *y = xy_[2 * j + 1];
        return j;
      }
    }
    const uint32_t j = NearestBruteForce(qx, qy);
    *x = xy_[2 * j];
    *y = xy_[2 * j + 1];
    return j;
  }

  /// The test oracle: every row, same distance formula and tie rule as Nearest().
  uint32_t NearestBruteForce(double qx, double qy) const;

 private:
  uint32_t NearestInCell(int cx, int cy, double qx, double qy) const;
  double Dist2(uint32_t j, double qx, double qy) const {
    const double dx = qx - xy_[2 * j];
    const double dy = qy - xy_[2 * j + 1];
    return dx * dx + dy * dy;
  }

  std::shared_ptr<const Layout> layout_;
  std::vector<double> xy_;
  double ox_ = 0, oy_ = 0, inv_cell_ = 0, cells_d_ = 0;
  bool grid_ok_ = false;
};

}  // namespace hc::hc1

#endif  // HC_CORE_CODEC_HC1_GEOMETRY_H_
