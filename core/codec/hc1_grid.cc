#include "core/codec/hc1_grid.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/codec/hc1_geometry.h"
#include "core/codec/hc1_simd.h"

namespace hc::hc1 {
namespace {

// Outer pairs handled per block in the class trials (their geometry stays in L1).
constexpr int kBlock = 128;
// Inner pairs gathered and looked up per block.
constexpr int kLookahead = 64;

// Compensated float64 sum (Fast2Sum) of the per-block error sums: the mean errors come out within
// a few ulps of numpy's pairwise mean, so decisions match it except within ~1e-14 relative of a
// tie (core/format/spec-hc1.md, 5.6).
struct CSum {
  double s = 0, c = 0;
  // Every value added is >= 0 (absolute errors), so the larger magnitude is the larger value:
  // Fast2Sum on (max, min), without branches.
  void Add(double v) {
    const double a = std::max(s, v), b = std::min(s, v);
    const double t = a + b;
    c += b - (t - a);
    s = t;
  }
  void Add(const CSum& o) {
    Add(o.s);
    c += o.c;
  }
  double value() const { return s + c; }
};

struct InnerStats {
  CSum fin0;        // |CB[j] - p| over real elements (class trials, final error when K = 0)
  double pad0 = 0;  // the same for the padding element, if it is in an inner pair
  CSum fin1;        // final error when K > 0: query at float32(p - c) + c, (CB[j] - c) / 1 + c
  uint32_t max0 = 0, max1 = 0;
  std::vector<std::pair<int64_t, uint32_t>> patches;  // pairs whose K > 0 code differs
};

struct TrialStats {
  CSum fin;        // over real elements of outer pairs
  double pad = 0;  // the padding element, if it is in an outer pair
  uint32_t max = 0;
};

// Class trials computed per pass over the data (the presets need one pass).
constexpr int kBatch = 4;

// One unit's working arrays (112 KiB), one set per thread, kept for the thread's life (a pass
// body runs no other pass body on its thread, so one is never used twice at once): the widened
// values, then the inner and outer pairs as arrays with their offsets.
struct UnitScratch {
  alignas(64) float x[2 * kUnitPairs];
  alignas(64) float ix[kUnitPairs];
  alignas(64) float iy[kUnitPairs];
  alignas(64) float ox[kUnitPairs];
  alignas(64) float oy[kUnitPairs];
  alignas(64) uint16_t ii[kUnitPairs];
  alignas(64) uint16_t oi[kUnitPairs];

  static UnitScratch& Get() {
    thread_local std::unique_ptr<UnitScratch> s(new UnitScratch);
    return *s;
  }
};

// Encodes the tensor with one codebook size: the inner pairs, the class-count search over the
// outer pairs, the final codes.
class GridEncoder {
 public:
  GridEncoder(const Geometry& g, int64_t n, const Hc1Options& o, double raw_above, Executor& ex)
      : g_(g),
        o_(o),
        raw_above_(raw_above),
        ex_(ex),
        cb_(Layout::Get(g.L, n), g.cx, g.cy),
        stride_(static_cast<uint32_t>(n + 1)),
        units_(g.units()),
        trial_(BestOuterTrial()),
        inner_(BestInner()),
        split_(BestSplit()) {}

  GridResult Run();

 private:
  // The n inner pairs (xs[k], ys[k]) at offsets idx[k] from pair b.
  void InnerPairs(int64_t b, const float* xs, const float* ys, const uint16_t* idx, int64_t n,
                  InnerStats& s);
  // Runs trials rings[0..nr) on the n outer pairs (xs[k], ys[k]) at offsets idx[k] from pair b;
  // writes the codes of trial `write` (-1: none).
  void OuterPairs(int64_t b, const float* xs, const float* ys, const uint16_t* idx, int64_t n,
                  const Rings* rings, int nr, int write, TrialStats* s);
  // One pass over units [u0, u1): inner pairs too if `inner` is set, then trials rings[0..nr).
  void Pass(int64_t u0, int64_t u1, bool inner, const Rings* rings, int nr, int write,
            std::vector<InnerStats>* in, std::vector<TrialStats>* ts);

  const Geometry& g_;
  const Hc1Options& o_;
  const double raw_above_;
  Executor& ex_;
  const Codebook cb_;
  const uint32_t stride_;
  const int64_t units_;
  const OuterTrialFn trial_;
  const InnerFn inner_;
  const SplitFn split_;
  PairCodes codes_;
};

// Inner pairs, in blocks of kLookahead: the kernel (hc1_simd.h)
// looks each pair up at p itself (class trials, K = 0) and at float32(p - c) + c (K > 0), then
// the errors are summed per pair (x + y), plainly within a block and in pair order.
void GridEncoder::InnerPairs(int64_t b, const float* xs, const float* ys, const uint16_t* idx,
                             int64_t n, InnerStats& s) {
  CSum fin0, fin1;
  uint32_t max0 = 0, max1 = 0;
  alignas(64) uint32_t j[kLookahead], jb[kLookahead];
  alignas(64) double ex0[kLookahead], ey0[kLookahead], ex1[kLookahead], ey1[kLookahead];
  const InnerOut out{j, jb, ex0, ey0, ex1, ey1};
  for (int64_t k0 = 0; k0 < n; k0 += kLookahead) {
    const int cnt = static_cast<int>(std::min<int64_t>(kLookahead, n - k0));
    inner_(cb_, xs + k0, ys + k0, cnt, g_.cx, g_.cy, out);
    double acc0 = 0, acc1 = 0;  // plain sums per block, compensated across blocks
    for (int k = 0; k < cnt; ++k) {
      const int64_t i = b + idx[k0 + k];
      codes_.Set(i, j[k]);
      max0 = std::max(max0, j[k]);
      if (jb[k] != j[k]) [[unlikely]] {
        s.patches.emplace_back(i, jb[k]);
      }
      max1 = std::max(max1, jb[k]);
      if (g_.YReal(i)) [[likely]] {
        acc0 += ex0[k] + ey0[k];
        acc1 += ex1[k] + ey1[k];
      } else {
        acc0 += ex0[k];
        acc1 += ex1[k];
        s.pad0 = ey0[k];
      }
    }
    fin0.Add(acc0);
    fin1.Add(acc1);
  }
  s.fin0 = fin0;
  s.fin1 = fin1;
  s.max0 = max0;
  s.max1 = max1;
}

// Outer pairs, in blocks: the float32 distance once per pair, then per trial the kernel
// (hc1_simd.h: ring, pulled-in point, lookup, reconstruction (CB[j] - c) * (1 / f) + c, within an
// ulp of the reference's division; they only feed the mean error), then the errors of every
// trial summed plainly within the block, in pair order.
void GridEncoder::OuterPairs(int64_t b, const float* xs, const float* ys, const uint16_t* idx,
                             int64_t n, const Rings* rings, int nr, int write, TrialStats* s) {
  CSum fin[kBatch];
  uint32_t mx[kBatch] = {};
  double bdx[kBlock], bdy[kBlock], bd[kBlock], bpx[kBlock], bpy[kBlock];
  double ex[kBatch][kBlock], ey[kBatch][kBlock];
  uint32_t code[kBatch][kBlock];
  int64_t bi[kBlock];
  for (int64_t k0 = 0; k0 < n; k0 += kBlock) {
    const int cnt = static_cast<int>(std::min<int64_t>(kBlock, n - k0));
    int pad = -1;  // the block position of the pair holding the padding element, if here
    for (int k = 0; k < cnt; ++k) {
      const int64_t i = b + idx[k0 + k];
      const float px = xs[k0 + k], py = ys[k0 + k];
      const float dx = px - g_.cx, dy = py - g_.cy;
      bi[k] = i;
      bdx[k] = dx;
      bdy[k] = dy;
      bd[k] = std::sqrt(dx * dx + dy * dy);
      bpx[k] = px;
      bpy[k] = py;
      if (!g_.YReal(i)) pad = k;
    }
    const OuterBlock ob{bdx, bdy, bd, bpx, bpy, cnt};
    for (int t = 0; t < nr; ++t) trial_(cb_, ob, rings[t], stride_, code[t], ex[t], ey[t]);
    for (int t = 0; t < nr; ++t) {
      double acc = 0;  // a plain sum per block, compensated across blocks
      uint32_t m = mx[t];
      const double* ext = ex[t];
      const double* eyt = ey[t];
      const uint32_t* ct = code[t];
      for (int k = 0; k < cnt; ++k) {
        acc += k != pad ? ext[k] + eyt[k] : ext[k];
        m = std::max(m, ct[k]);
      }
      if (pad >= 0) s[t].pad = eyt[pad];
      fin[t].Add(acc);
      mx[t] = m;
      if (t == write) {
        for (int k = 0; k < cnt; ++k) codes_.Set(bi[k], ct[k]);
      }
    }
  }
  for (int t = 0; t < nr; ++t) {
    s[t].fin = fin[t];
    s[t].max = mx[t];
  }
}

void GridEncoder::Pass(int64_t u0, int64_t u1, bool inner, const Rings* rings, int nr, int write,
                       std::vector<InnerStats>* in, std::vector<TrialStats>* ts) {
  // Per unit: its values (widened into a unit-sized scratch unless read in place), split into
  // inner and outer pairs (hc1_simd.h), then each kind.
  ex_.ParallelFor(u1 - u0, [&](int64_t v) {
    const int64_t u = u0 + v;
    const int64_t b = u * kUnitPairs, e = std::min(g_.M, b + kUnitPairs);
    UnitScratch& sc = UnitScratch::Get();
    const SplitOut so{sc.ix, sc.iy, sc.ox, sc.oy, sc.ii, sc.oi};
    const uint16_t* h = g_.src.F16(b, e);
    const int64_t ni = h != nullptr ? SplitF16Avx512(h, e - b, g_.square(), so)
                                    : split_(g_.src.Read(b, e, sc.x), e - b, g_.square(), so);
    if (inner) InnerPairs(b, sc.ix, sc.iy, sc.ii, ni, (*in)[u]);
    if (nr > 0) {
      OuterPairs(b, sc.ox, sc.oy, sc.oi, e - b - ni, rings, nr, write, ts->data() + u * kBatch);
    }
  });
}

GridResult GridEncoder::Run() {
  GridResult res;
  res.n = static_cast<int64_t>(stride_) - 1;
  codes_ = PairCodes(g_.M, WideCodes(o_));  // every pair's code is written below
  const double numel = static_cast<double>(g_.numel);
  std::vector<InnerStats> in(units_);
  std::vector<TrialStats> ts(units_ * kBatch);

  // The class-count search: keep the k with MAE <= best (ties to the later k); stop at the first
  // k with MAE <= loss_threshold. Trials run kBatch at a time; the first pass also does the inner
  // pairs and writes the codes of its last trial.
  double best = std::numeric_limits<double>::infinity();
  int K = 0, written = 0;
  TrialStats best_stats;
  CSum inner_trial;
  bool stop = g_.outer == 0;
  // Early stops (EncodeGrid): only when the first pass runs every trial the search can keep.
  const bool early = raw_above_ > 0 && (g_.outer == 0 || o_.class_max <= kBatch);
  for (int k0 = 1; k0 == 1 || (!stop && k0 <= o_.class_max); k0 += kBatch) {
    const int nr = stop ? 0 : std::min(kBatch, o_.class_max - k0 + 1);
    std::vector<Rings> rings(nr);
    for (int t = 0; t < nr; ++t) rings[t] = Rings(g_.D, g_.L, k0 + t);
    std::fill(ts.begin(), ts.end(), TrialStats{});
    if (k0 == 1 && early) {
      // Rounds of units; after each (but the last) a lower bound on the final mean error of
      // every ring count 1..nr (K = 0 without outer pairs): the non-negative per-unit error sums
      // of the units done, as the final mean error adds them (real elements only).
      const int64_t rounds = std::min<int64_t>(units_, kRounds);
      CSum in_done;
      std::vector<CSum> out_done(nr);
      int64_t u0 = 0;
      for (int64_t r = 1; r <= rounds; ++r) {
        const int64_t u1 = (r * units_ + rounds - 1) / rounds;
        Pass(u0, u1, true, rings.data(), nr, nr - 1, &in, &ts);
        if (u1 == units_) break;
        for (int64_t u = u0; u < u1; ++u) {
          in_done.Add(g_.outer == 0 ? in[u].fin0 : in[u].fin1);
          for (int t = 0; t < nr; ++t) out_done[t].Add(ts[u * kBatch + t].fin);
        }
        u0 = u1;
        double lb = std::numeric_limits<double>::infinity();
        if (nr == 0) lb = in_done.value() / numel;
        for (int t = 0; t < nr; ++t) {
          CSum s = in_done;
          s.Add(out_done[t]);
          lb = std::min(lb, s.value() / numel);
        }
        if (lb > raw_above_ * (1 + 1e-9)) {
          res.above = true;
          res.bound = lb;
          res.pairs_seen = std::min(g_.M, u1 * kUnitPairs);
          return res;
        }
      }
    } else {
      Pass(0, units_, k0 == 1, rings.data(), nr, nr - 1, &in, &ts);
    }
    written = k0 + nr - 1;
    if (k0 == 1) {
      for (const InnerStats& s : in) inner_trial.Add(s.fin0);
      for (const InnerStats& s : in) inner_trial.Add(s.pad0);
    }
    for (int t = 0; t < nr && !stop; ++t) {
      TrialStats sum;
      for (int64_t u = 0; u < units_; ++u) {
        const TrialStats& s = ts[u * kBatch + t];
        sum.fin.Add(s.fin);
        sum.pad += s.pad;
        sum.max = std::max(sum.max, s.max);
      }
      CSum total = inner_trial;
      total.Add(sum.fin);
      total.Add(sum.pad);
      const double mae = total.value() / static_cast<double>(2 * g_.M);
      if (mae <= best) {
        best = mae;
        K = k0 + t;
        best_stats = sum;
      }
      stop = mae <= o_.loss_threshold;
    }
    if (nr == 0) break;
  }

  uint32_t max0 = 0, max1 = 0;
  CSum fin0, fin1;
  for (const InnerStats& s : in) {
    fin0.Add(s.fin0);
    fin1.Add(s.fin1);
    max0 = std::max(max0, s.max0);
    max1 = std::max(max1, s.max1);
  }
  if (g_.outer == 0) {
    res.K = 0;
    res.mae = fin0.value() / numel;
    res.max_index = max0;
    res.codes = std::move(codes_);
    return res;
  }
  if (K == 0) K = written;  // only with NaN errors, which finite inputs cannot produce
  if (K != written) {       // the codes of trial K are the final outer codes
    const Rings rings(g_.D, g_.L, K);
    std::fill(ts.begin(), ts.end(), TrialStats{});
    Pass(0, units_, false, &rings, 1, 0, nullptr, &ts);
  }
  for (const InnerStats& s : in) {
    for (const auto& [i, jb] : s.patches) codes_.Set(i, jb);
  }
  res.K = K;
  fin1.Add(best_stats.fin);
  res.mae = fin1.value() / numel;
  res.max_index = std::max(max1, best_stats.max);
  res.codes = std::move(codes_);
  return res;
}

}  // namespace

const float* PairSource::Read(int64_t b, int64_t e, float* scratch) const {
  const int64_t e0 = 2 * b, e1 = std::min(2 * e, numel);  // real elements [e0, e1)
  if (dtype == DType::kF32 && e1 == 2 * e && reinterpret_cast<uintptr_t>(data) % 4 == 0) {
    return reinterpret_cast<const float*>(data) + e0;
  }
  const size_t esize = DTypeSize(dtype);
  WidenToF32(dtype, data + e0 * esize, static_cast<size_t>(e1 - e0), scratch);
  if (e1 < 2 * e) scratch[e1 - e0] = pad;
  return scratch;
}

namespace {

// The idle buffers of PairCodes, largest kept first when over the limits.
struct CodePool {
  std::mutex mu;
  std::vector<std::pair<uint8_t*, size_t>> idle;  // buffer, capacity
  size_t bytes = 0;
};

CodePool& Pool() {
  static CodePool* pool = new CodePool;
  return *pool;
}

}  // namespace

PairCodes::PairCodes(int64_t size, bool wide) : size_(size), wide_(wide) {
  const size_t need = static_cast<size_t>(size) * (wide ? 4 : 2);
  CodePool& pool = Pool();
  {
    // The smallest idle buffer that fits.
    std::lock_guard<std::mutex> lock(pool.mu);
    size_t pick = pool.idle.size();
    for (size_t k = 0; k < pool.idle.size(); ++k) {
      if (pool.idle[k].second >= need &&
          (pick == pool.idle.size() || pool.idle[k].second < pool.idle[pick].second)) {
        pick = k;
      }
    }
    if (pick < pool.idle.size()) {
      data_ = pool.idle[pick].first;
      capacity_ = pool.idle[pick].second;
      pool.bytes -= capacity_;
      pool.idle.erase(pool.idle.begin() + static_cast<std::ptrdiff_t>(pick));
      return;
    }
  }
  // Raw storage (the codes are created in it as uint16 or uint32); no zero fill: every code
  // is written before it is read.
  data_ = static_cast<uint8_t*>(::operator new(need));
  capacity_ = need;
}

PairCodes& PairCodes::operator=(PairCodes&& o) noexcept {
  if (this != &o) {
    Release();
    data_ = std::exchange(o.data_, nullptr);
    capacity_ = std::exchange(o.capacity_, 0);
    size_ = std::exchange(o.size_, 0);
    wide_ = o.wide_;
  }
  return *this;
}

PairCodes::~PairCodes() { Release(); }

// Back to the pool; the smallest idle buffers are freed while the pool is over its limits.
void PairCodes::Release() {
  if (data_ == nullptr) return;
  std::vector<uint8_t*> drop;
  if (capacity_ > kPoolBytes) {
    drop.push_back(data_);
  } else {
    CodePool& pool = Pool();
    std::lock_guard<std::mutex> lock(pool.mu);
    pool.idle.emplace_back(data_, capacity_);
    pool.bytes += capacity_;
    while (pool.bytes > kPoolBytes || pool.idle.size() > kPoolBuffers) {
      auto smallest = std::min_element(pool.idle.begin(), pool.idle.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
      drop.push_back(smallest->first);
      pool.bytes -= smallest->second;
      pool.idle.erase(smallest);
    }
  }
  for (uint8_t* p : drop) ::operator delete(p);  // outside the lock
  data_ = nullptr;
  capacity_ = 0;
  size_ = 0;
}

size_t PairCodes::PoolIdleBytes() {
  CodePool& pool = Pool();
  std::lock_guard<std::mutex> lock(pool.mu);
  return pool.bytes;
}

bool WideCodes(const Hc1Options& o) {
  int64_t n_max = 1;
  for (int64_t n : o.n) n_max = std::max(n_max, n);
  return (n_max + 1) * (o.class_max + 1) - 1 > 65535;
}

namespace {

// One unit of PackCodes: codes c[0..n) from bit bit0. The unit's first byte goes to
// *first_byte (the caller's side slot when that byte is shared with the previous unit); then
// whole bytes one by one until the accumulator holds under 8 bits, then 4 bytes at a time
// (big-endian stores of a 64-bit accumulator's top bits), then the rest.
template <typename T>
void PackUnit(const T* c, int64_t n, int w, uint64_t bit0, uint8_t* out, uint8_t* first_byte) {
  uint64_t byte = bit0 >> 3;
  int nb = static_cast<int>(bit0 & 7);
  uint64_t acc = 0;  // nb pending bits
  int64_t i = 0;
  bool first = true;
  while (i < n && first) {
    acc = (acc << w) | c[i++];
    nb += w;
    if (nb >= 8) {
      nb -= 8;
      *first_byte = static_cast<uint8_t>(acc >> nb);
      ++byte;
      first = false;
      while (nb >= 8) {
        nb -= 8;
        out[byte++] = static_cast<uint8_t>(acc >> nb);
      }
      acc &= (uint64_t{1} << nb) - 1;
    }
  }
  if (w <= 15) {
    // Groups of 8 codes: exactly w whole bytes each (8w bits above the nb < 8 pending ones), so
    // a fixed, branch-free step: 8 codes into a 128-bit accumulator (nb + 8w <= 127 bits), the
    // top 8w bits out big-endian. A 16-byte store while it stays inside the unit's bytes (the
    // last partial byte included), else exactly w bytes.
    const uint64_t end_byte = (bit0 + static_cast<uint64_t>(n) * w + 7) >> 3;  // past the unit
    const int w2 = 2 * w, w3 = 3 * w, w4 = 4 * w, w8 = 8 * w;
    const uint64_t mask = (uint64_t{1} << nb) - 1;  // nb is the same after every group
    for (; i + 8 <= n; i += 8) {
      // Two halves of 4 codes (4w <= 60 bits each), shifts independent of each other.
      const T* g = c + i;
      const uint64_t hi = (uint64_t{g[0]} << w3) | (uint64_t{g[1]} << w2) |
                          (uint64_t{g[2]} << w) | uint64_t{g[3]};
      const uint64_t lo = (uint64_t{g[4]} << w3) | (uint64_t{g[5]} << w2) |
                          (uint64_t{g[6]} << w) | uint64_t{g[7]};
      const unsigned __int128 v = (static_cast<unsigned __int128>(acc) << w8) |
                                  (static_cast<unsigned __int128>(hi) << w4) | lo;
      // The group's first bit to bit 127; the nb bits left below the w bytes stored are kept.
      // (Two 64-bit swaps: clang 14, used by the fuzz build, has no __builtin_bswap128.)
      const unsigned __int128 t = v << (128 - nb - w8);
      const unsigned __int128 be =  // little-endian
          (static_cast<unsigned __int128>(__builtin_bswap64(static_cast<uint64_t>(t))) << 64) |
          __builtin_bswap64(static_cast<uint64_t>(t >> 64));
      if (byte + 16 <= end_byte) {
        std::memcpy(out + byte, &be, 16);
      } else {
        std::memcpy(out + byte, &be, static_cast<size_t>(w));
      }
      byte += static_cast<uint64_t>(w);
      acc = static_cast<uint64_t>(v) & mask;
    }
  }
  for (; i < n; ++i) {  // nb < 32 here, so nb + w <= 63
    acc = (acc << w) | c[i];
    nb += w;
    if (nb >= 32) {
      nb -= 32;
      const uint32_t v = __builtin_bswap32(static_cast<uint32_t>(acc >> nb));  // little-endian
      std::memcpy(out + byte, &v, 4);
      byte += 4;
      acc &= (uint64_t{1} << nb) - 1;
    }
  }
  while (nb >= 8) {
    nb -= 8;
    out[byte++] = static_cast<uint8_t>(acc >> nb);
  }
  if (nb > 0) {
    const uint8_t v = static_cast<uint8_t>(acc << (8 - nb));
    if (first) {
      *first_byte = v;
    } else {
      out[byte] = v;
    }
  }
}

// Units whose first byte is shared with the previous unit keep that byte aside; it is ORed in
// afterwards, in unit order.
template <typename T>
void PackAll(const T* codes, int64_t M, int w, int z, absl::Span<uint8_t> out, Executor& ex) {
  const int64_t units = (M + kUnitPairs - 1) / kUnitPairs;
  std::vector<uint8_t> shared(units, 0);
  ex.ParallelFor(units, [&](int64_t u) {
    const int64_t b = u * kUnitPairs, e = std::min(M, b + kUnitPairs);
    const uint64_t bit0 = static_cast<uint64_t>(z) + static_cast<uint64_t>(b) * w;
    const bool first_shared = u > 0 && (bit0 & 7) != 0;
    PackUnit(codes + b, e - b, w, bit0, out.data(),
             first_shared ? &shared[u] : out.data() + (bit0 >> 3));
  });
  for (int64_t u = 1; u < units; ++u) {
    const uint64_t bit0 = static_cast<uint64_t>(z) + static_cast<uint64_t>(u * kUnitPairs) * w;
    if (bit0 & 7) out[bit0 >> 3] |= shared[u];
  }
}

}  // namespace

void PackCodes(const uint16_t* codes, int64_t M, int w, int z, absl::Span<uint8_t> out,
               Executor& ex) {
  PackAll(codes, M, w, z, out, ex);
}
void PackCodes(const uint32_t* codes, int64_t M, int w, int z, absl::Span<uint8_t> out,
               Executor& ex) {
  PackAll(codes, M, w, z, out, ex);
}

GridResult EncodeGrid(const Geometry& g, int64_t n, const Hc1Options& o, double raw_above,
                      Executor& ex) {
  return GridEncoder(g, n, o, raw_above, ex).Run();
}

}  // namespace hc::hc1
