// hc1's vector kernels against their scalar references (core/codec/hc1_simd.h): bit-identical
// codes and errors on random queries, cell edges, the centre's overflowing cells, queries off the
// grid, every ring count, and the exact F16 widening; the split and scan kernels; and the
// encoder's per-unit helpers (core/codec/hc1_grid.h): code packing against core/io's
// PackMsbFirst, the code-buffer pool, the per-range input reader.
#include "core/codec/hc1_simd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "core/base/dtype.h"
#include "core/base/parallel.h"
#include "core/codec/hc1_grid.h"
#include "core/io/bit_pack.h"
#include "core/codec/hc1_geometry.h"
#include "gtest/gtest.h"

namespace hc::hc1 {
namespace {

uint64_t Bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, 8);
  return b;
}

// A block of outer pairs around centre (cx, cy), as hc1_grid.cc builds it.
struct Block {
  std::vector<double> dx, dy, d, px, py;
  void Add(float cx, float cy, float x, float y) {
    const float fx = x - cx, fy = y - cy;
    dx.push_back(fx);
    dy.push_back(fy);
    d.push_back(std::sqrt(fx * fx + fy * fy));
    px.push_back(x);
    py.push_back(y);
  }
  OuterBlock View(int cnt) const {
    return {dx.data(), dy.data(), d.data(), px.data(), py.data(), cnt};
  }
};

struct Case {
  double L;
  int64_t n;
  float cx, cy;
};

// Random pairs within distance D of the centre, pairs on the grid's cell lines (with rings of
// f = 1 when D = L/2), pairs near the centre (the overflowing cells), and pairs beyond D (their
// queries leave the grid).
Block MakeBlock(const Codebook& cb, const Case& c, double D, std::mt19937_64& rng) {
  Block b;
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const Layout& l = cb.layout();
  for (int i = 0; i < 400; ++i) {
    const double r = D * std::sqrt(std::abs(u(rng))), a = 3.14159265358979 * u(rng);
    b.Add(c.cx, c.cy, static_cast<float>(c.cx + r * std::cos(a)),
          static_cast<float>(c.cy + r * std::sin(a)));
  }
  const double ox = static_cast<double>(c.cx) - c.L / 2, oy = static_cast<double>(c.cy) - c.L / 2;
  for (int i = 0; i < 200; ++i) {  // cell lines and corners
    const int gx = static_cast<int>(rng() % (l.cells_per_axis() + 1)) - 1;
    const int gy = static_cast<int>(rng() % (l.cells_per_axis() + 1)) - 1;
    const double x = ox + (gx - 1) * l.cell(), y = oy + (gy - 1) * l.cell();
    b.Add(c.cx, c.cy, static_cast<float>(i % 3 == 0 ? x : ox + u(rng) * c.L),
          static_cast<float>(i % 3 == 1 ? oy + u(rng) * c.L : y));
  }
  for (int i = 0; i < 100; ++i) {  // around the centre
    b.Add(c.cx, c.cy, static_cast<float>(c.cx + u(rng) * l.cell() * 2),
          static_cast<float>(c.cy + u(rng) * l.cell() * 2));
  }
  for (int i = 0; i < 60; ++i) {  // far beyond D: off the grid
    b.Add(c.cx, c.cy, static_cast<float>(c.cx + u(rng) * D * 50),
          static_cast<float>(c.cy + u(rng) * D * 50));
  }
  // Interleave the kinds so every vector mixes them.
  Block m;
  const size_t n = b.dx.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (k * 7919) % n;
    m.dx.push_back(b.dx[i]);
    m.dy.push_back(b.dy[i]);
    m.d.push_back(b.d[i]);
    m.px.push_back(b.px[i]);
    m.py.push_back(b.py[i]);
  }
  return m;
}

TEST(Hc1Simd, OuterTrialMatchesScalarBitForBit) {
  if (!HaveAvx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const std::vector<Case> cases = {{0.1, 1600, 0.001f, -0.002f},
                                   {0.1, 225, -0.03f, 0.5f},
                                   {0.8, 1600, 0.0f, 0.0f},
                                   {0.3, 7, 1.5f, -2.0f},
                                   {0.1, 50, 3e9f, 1.0f},  // centre too far: grid off
                                   {0.05, 65536, 0.01f, 0.01f}};
  std::mt19937_64 rng(7);
  int checked = 0, off_grid = 0;
  for (const Case& c : cases) {
    const Codebook cb(Layout::Get(c.L, c.n), c.cx, c.cy);
    const uint32_t stride = static_cast<uint32_t>(c.n + 1);
    const double h = c.L / 2;
    for (double D : {h, h * 1.0000001, h * 1.7, h * 40, h * 0.5 /* rings shrink */}) {
      const Block b = MakeBlock(cb, c, D, rng);
      for (int k : {1, 2, 3, 4, 7, 8, 9, 32}) {
        const Rings R(static_cast<float>(D), c.L, k);
        for (int cnt : {0, 1, 7, 8, 9, 127, 128, 129, static_cast<int>(b.dx.size())}) {
          std::vector<uint32_t> code_s(cnt + 1, 7), code_v(cnt + 1, 7);
          std::vector<double> ex_s(cnt + 1, -1), ey_s(cnt + 1, -1), ex_v(cnt + 1, -1),
              ey_v(cnt + 1, -1);
          OuterTrialScalar(cb, b.View(cnt), R, stride, code_s.data(), ex_s.data(), ey_s.data());
          OuterTrialAvx512(cb, b.View(cnt), R, stride, code_v.data(), ex_v.data(), ey_v.data());
          for (int i = 0; i <= cnt; ++i) {  // [cnt]: untouched
            ASSERT_EQ(code_s[i], code_v[i]) << c.n << " D " << D << " k " << k << " i " << i;
            ASSERT_EQ(Bits(ex_s[i]), Bits(ex_v[i])) << c.n << " k " << k << " i " << i;
            ASSERT_EQ(Bits(ey_s[i]), Bits(ey_v[i])) << c.n << " k " << k << " i " << i;
          }
          checked += cnt;
        }
        // Off-grid queries really occur (pairs beyond D).
        const Codebook::Locator loc = cb.locator();
        for (size_t i = 0; i < b.dx.size(); ++i) {
          const int cls = R.Class(b.d[i]);
          off_grid += loc.Cell(b.dx[i] * R.f[cls] + cb.cx(), b.dy[i] * R.f[cls] + cb.cy()) ==
                      nullptr;
        }
      }
    }
  }
  EXPECT_GT(checked, 100000);
  EXPECT_GT(off_grid, 100);
}

TEST(Hc1Simd, ScalarOuterTrialFindsTheNearestRow) {
  const Case c{0.1, 1600, 0.004f, -0.001f};
  const Codebook cb(Layout::Get(c.L, c.n), c.cx, c.cy);
  std::mt19937_64 rng(3);
  const double D = 0.4;
  const Block b = MakeBlock(cb, c, D, rng);
  const Rings R(D, c.L, 3);
  const int cnt = static_cast<int>(b.dx.size());
  std::vector<uint32_t> code(cnt);
  std::vector<double> ex(cnt), ey(cnt);
  OuterTrialScalar(cb, b.View(cnt), R, 1601, code.data(), ex.data(), ey.data());
  for (int i = 0; i < cnt; ++i) {
    const int cls = R.Class(b.d[i]);
    const double qx = b.dx[i] * R.f[cls] + cb.cx(), qy = b.dy[i] * R.f[cls] + cb.cy();
    const uint32_t j = cb.NearestBruteForce(qx, qy);
    ASSERT_EQ(code[i], j + 1601u * cls) << i;
    ASSERT_EQ(Bits(ex[i]), Bits(std::abs((cb.x(j) - cb.cx()) * R.inv_f[cls] + cb.cx() - b.px[i])));
  }
}


// Inner pairs: inside the square, on its cell lines, at the centre's overflowing cells, near
// ties between rows (where the certificate fails), and a few off the grid; float32 values whose
// p - c rounds (large centres) and whose p - c is exact (centre 0).
struct InnerPoints {
  std::vector<float> px, py;
};
InnerPoints MakeInner(const Codebook& cb, const Case& c, std::mt19937_64& rng) {
  InnerPoints p;
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  const Layout& l = cb.layout();
  const double h = c.L / 2;
  auto add = [&](double x, double y) {
    p.px.push_back(static_cast<float>(x));
    p.py.push_back(static_cast<float>(y));
  };
  for (int i = 0; i < 500; ++i) add(c.cx + h * u(rng), c.cy + h * u(rng));
  const double ox = static_cast<double>(c.cx) - h, oy = static_cast<double>(c.cy) - h;
  for (int i = 0; i < 150; ++i) {  // cell lines and corners
    const int gx = static_cast<int>(rng() % (l.cells_per_axis() - 1));
    const int gy = static_cast<int>(rng() % (l.cells_per_axis() - 1));
    add(i % 3 == 0 ? ox + gx * l.cell() : c.cx + h * u(rng),
        i % 3 == 1 ? c.cy + h * u(rng) : oy + gy * l.cell());
  }
  for (int i = 0; i < 100; ++i) add(c.cx + u(rng) * l.cell() * 2, c.cy + u(rng) * l.cell() * 2);
  for (int i = 0; i < 150; ++i) {  // midpoints of two rows: near-ties
    const int64_t a = 1 + static_cast<int64_t>(rng() % c.n), b = 1 + static_cast<int64_t>(rng() % c.n);
    add(0.5 * (cb.x(a) + cb.x(b)) + 1e-9 * u(rng), 0.5 * (cb.y(a) + cb.y(b)));
  }
  for (int i = 0; i < 20; ++i) add(c.cx + u(rng) * c.L * 50, c.cy + u(rng) * c.L * 50);
  InnerPoints m;  // interleave the kinds
  const size_t n = p.px.size();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (k * 7919) % n;
    m.px.push_back(p.px[i]);
    m.py.push_back(p.py[i]);
  }
  return m;
}

struct InnerResult {
  std::vector<uint32_t> j, jb;
  std::vector<double> ex0, ey0, ex1, ey1;
  explicit InnerResult(int n) : j(n, 7), jb(n, 7), ex0(n, -1), ey0(n, -1), ex1(n, -1), ey1(n, -1) {}
  InnerOut Out() { return {j.data(), jb.data(), ex0.data(), ey0.data(), ex1.data(), ey1.data()}; }
};

TEST(Hc1Simd, InnerMatchesScalarBitForBit) {
  if (!HaveAvx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const std::vector<Case> cases = {{0.1, 1600, 0.001f, -0.002f}, {0.1, 225, -0.03f, 0.5f},
                                   {0.8, 1600, 0.0f, 0.0f},      {0.3, 7, 1.5f, -2.0f},
                                   {0.1, 50, 3e9f, 1.0f},  // centre too far: grid off
                                   {0.05, 65536, 0.01f, 0.01f},  {0.02, 4096, 1000.0f, -777.0f}};
  std::mt19937_64 rng(11);
  int checked = 0, patched = 0;
  for (const Case& c : cases) {
    const Codebook cb(Layout::Get(c.L, c.n), c.cx, c.cy);
    const InnerPoints p = MakeInner(cb, c, rng);
    for (int cnt : {0, 1, 7, 8, 9, 63, 64, static_cast<int>(p.px.size())}) {
      InnerResult s(cnt + 1), v(cnt + 1);
      InnerScalar(cb, p.px.data(), p.py.data(), cnt, c.cx, c.cy, s.Out());
      InnerAvx512(cb, p.px.data(), p.py.data(), cnt, c.cx, c.cy, v.Out());
      for (int i = 0; i <= cnt; ++i) {  // [cnt]: untouched
        ASSERT_EQ(s.j[i], v.j[i]) << c.n << " i " << i;
        ASSERT_EQ(s.jb[i], v.jb[i]) << c.n << " i " << i;
        ASSERT_EQ(Bits(s.ex0[i]), Bits(v.ex0[i])) << c.n << " i " << i;
        ASSERT_EQ(Bits(s.ey0[i]), Bits(v.ey0[i])) << c.n << " i " << i;
        ASSERT_EQ(Bits(s.ex1[i]), Bits(v.ex1[i])) << c.n << " i " << i;
        ASSERT_EQ(Bits(s.ey1[i]), Bits(v.ey1[i])) << c.n << " i " << i;
        if (i < cnt) patched += s.j[i] != s.jb[i];
      }
      checked += cnt;
    }
  }
  EXPECT_GT(checked, 5000);
  EXPECT_GT(patched, 0) << "no pair had a different row at float32(p - c) + c";
}

TEST(Hc1Simd, ScalarInnerFindsTheNearestRows) {
  const Case c{0.02, 4096, 1000.0f, -777.0f};  // p - c rounds: b differs from p
  const Codebook cb(Layout::Get(c.L, c.n), c.cx, c.cy);
  std::mt19937_64 rng(5);
  const InnerPoints p = MakeInner(cb, c, rng);
  const int cnt = static_cast<int>(p.px.size());
  InnerResult r(cnt);
  InnerScalar(cb, p.px.data(), p.py.data(), cnt, c.cx, c.cy, r.Out());
  for (int i = 0; i < cnt; ++i) {
    const double qx = p.px[i], qy = p.py[i];
    const double bx = static_cast<double>(p.px[i] - c.cx) + cb.cx();
    const double by = static_cast<double>(p.py[i] - c.cy) + cb.cy();
    ASSERT_EQ(r.j[i], cb.NearestBruteForce(qx, qy)) << i;
    ASSERT_EQ(r.jb[i], cb.NearestBruteForce(bx, by)) << i;
    ASSERT_EQ(Bits(r.ex0[i]), Bits(std::abs(cb.x(r.j[i]) - qx))) << i;
    ASSERT_EQ(Bits(r.ey1[i]), Bits(std::abs((cb.y(r.jb[i]) - cb.cy()) + cb.cy() - qy))) << i;
  }
}

// Pairs for the split and scan kernels: random values around the square, values exactly on
// its four edges, and the square's float32 bounds' neighbours.
std::vector<float> SplitInput(int64_t n, const Square& sq, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(sq.lox - 0.05f, sq.hix + 0.05f);
  std::vector<float> x(2 * n);
  const float edges[] = {sq.lox, sq.hix, sq.loy, sq.hiy,
                         std::nextafter(sq.lox, -1.0f), std::nextafter(sq.hix, 1.0f),
                         std::nextafter(sq.loy, -1.0f), std::nextafter(sq.hiy, 1.0f)};
  for (int64_t i = 0; i < 2 * n; ++i) {
    x[i] = rng() % 4 == 0 ? edges[rng() % 8] : u(rng);
  }
  return x;
}

// One split's outputs, filled with sentinels first (-7 and 9999) so that untouched slots show.
struct SplitResult {
  std::vector<float> f[4];       // ix, iy, ox, oy
  std::vector<uint16_t> idx[2];  // ii, oi
  int64_t inner = 0;
};
template <typename Split>
SplitResult RunSplit(int64_t n, Split split) {
  SplitResult r;
  for (auto& v : r.f) v.assign(n, -7.0f);
  for (auto& v : r.idx) v.assign(n, 9999);
  const SplitOut out{r.f[0].data(), r.f[1].data(), r.f[2].data(),
                     r.f[3].data(), r.idx[0].data(), r.idx[1].data()};
  r.inner = split(out);
  return r;
}
// The same inner count, the same values bit for bit and the same offsets in every written slot.
void ExpectSameSplit(const SplitResult& a, const SplitResult& b, int64_t n) {
  ASSERT_EQ(a.inner, b.inner) << n;
  for (int k = 0; k < 4; ++k) {
    const int64_t len = k < 2 ? a.inner : n - a.inner;
    for (int64_t i = 0; i < len; ++i) ASSERT_EQ(Bits(a.f[k][i]), Bits(b.f[k][i])) << n << " " << k;
  }
  for (int64_t i = 0; i < a.inner; ++i) ASSERT_EQ(a.idx[0][i], b.idx[0][i]);
  for (int64_t i = 0; i < n - a.inner; ++i) ASSERT_EQ(a.idx[1][i], b.idx[1][i]);
}

TEST(Hc1Simd, SplitMatchesScalar) {
  if (!HaveAvx512()) GTEST_SKIP() << "no AVX-512";
  const Square sq{-0.05f, 0.05f, -0.04f, 0.06f};
  for (int64_t n : {0, 1, 15, 16, 17, 100, 4096}) {
    const std::vector<float> x = SplitInput(n, sq, static_cast<uint32_t>(n) + 7);
    const SplitResult ref =
        RunSplit(n, [&](const SplitOut& o) { return SplitScalar(x.data(), n, sq, o); });
    const SplitResult vec =
        RunSplit(n, [&](const SplitOut& o) { return SplitAvx512(x.data(), n, sq, o); });
    ASSERT_NO_FATAL_FAILURE(ExpectSameSplit(ref, vec, n));
    // The reference itself: every offset once, inner ones first, each list ascending.
    const int64_t ni = ref.inner;
    std::vector<int> seen(n, 0);
    for (int64_t i = 0; i < ni; ++i) {
      const uint16_t o = ref.idx[0][i];
      ++seen[o];
      EXPECT_TRUE(sq.lox <= x[2 * o] && x[2 * o] <= sq.hix && sq.loy <= x[2 * o + 1] &&
                  x[2 * o + 1] <= sq.hiy);
      if (i > 0) {
        EXPECT_LT(ref.idx[0][i - 1], o);
      }
    }
    for (int64_t i = 0; i < n - ni; ++i) ++seen[ref.idx[1][i]];
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), n);
  }
}

TEST(Hc1Simd, ScanMatchesScalar) {
  if (!HaveAvx512()) GTEST_SKIP() << "no AVX-512";
  const Square sq{-0.05f, 0.05f, -0.04f, 0.06f};
  for (int64_t n : {0, 1, 15, 16, 33, 4096}) {
    std::vector<float> x = SplitInput(n, sq, static_cast<uint32_t>(n) + 11);
    if (n > 20) x[37] = 3e19f;  // its squared distance overflows to infinity
    float m0 = 0, m1 = 0;
    int64_t i0 = 0, i1 = 0;
    ScanScalar(x.data(), n, 0.001f, -0.002f, sq, &m0, &i0);
    ScanAvx512(x.data(), n, 0.001f, -0.002f, sq, &m1, &i1);
    EXPECT_EQ(Bits(m0), Bits(m1)) << n;
    EXPECT_EQ(i0, i1) << n;
    if (n == 0) {
      EXPECT_EQ(m0, -1.0f);
    }
    if (n > 20) {
      EXPECT_TRUE(std::isinf(m0));
    }
  }
}

TEST(Hc1Simd, F16SplitAndScanMatchScalarOnTheWidenedValues) {
  if (!HaveAvx512()) GTEST_SKIP() << "no AVX-512";
  // Bounds that are F16 values, so that pairs land exactly on the edges too; subnormals and the
  // largest finite half included.
  const Square sq{-0.0500488f, 0.0500488f, -0.0400085f, 0.0599976f};
  for (int64_t n : {0, 1, 15, 16, 17, 100, 4096}) {
    std::vector<float> x = SplitInput(n, sq, static_cast<uint32_t>(n) + 3);
    if (n > 20) {
      x[3] = 65504.0f;
      x[5] = 5.96e-8f;
      x[6] = -6.1e-5f;
    }
    std::vector<uint8_t> h(2 * x.size());
    NarrowFromF32(DType::kF16, x.data(), x.size(), h.data());
    WidenToF32(DType::kF16, h.data(), x.size(), x.data());
    const uint16_t* hp = reinterpret_cast<const uint16_t*>(h.data());
    const SplitResult ref =
        RunSplit(n, [&](const SplitOut& o) { return SplitScalar(x.data(), n, sq, o); });
    const SplitResult vec =
        RunSplit(n, [&](const SplitOut& o) { return SplitF16Avx512(hp, n, sq, o); });
    ASSERT_NO_FATAL_FAILURE(ExpectSameSplit(ref, vec, n));
    float m0 = 0, m1 = 0;
    int64_t i0 = 0, i1 = 0;
    ScanScalar(x.data(), n, 0.001f, -0.002f, sq, &m0, &i0);
    ScanF16Avx512(hp, n, 0.001f, -0.002f, sq, &m1, &i1);
    EXPECT_EQ(Bits(m0), Bits(m1)) << n;
    EXPECT_EQ(i0, i1) << n;
  }
}

TEST(Hc1Simd, F16PairSumsMatchPairwiseSumBitForBit) {
  if (!HaveAvx512()) GTEST_SKIP() << "no AVX-512";
  std::mt19937 rng(9);
  std::normal_distribution<float> gauss(0.001f, 0.03f);
  for (int64_t n : {1, 7, 8, 9, 15, 127, 128, 129, 136, 1000, 4099, 8192}) {
    std::vector<float> x(2 * n);
    for (float& f : x) f = gauss(rng);
    std::vector<uint8_t> h(2 * x.size());
    NarrowFromF32(DType::kF16, x.data(), x.size(), h.data());
    WidenToF32(DType::kF16, h.data(), x.size(), x.data());
    const uint16_t* hp = reinterpret_cast<uint16_t*>(h.data());
    float sx = 0, sy = 0;
    EXPECT_TRUE(PairSumsF16Avx512(hp, n, &sx, &sy));
    EXPECT_EQ(Bits(sx), Bits(PairwiseSumF32(x.data(), n, 2))) << n;
    EXPECT_EQ(Bits(sy), Bits(PairwiseSumF32(x.data() + 1, n, 2))) << n;
    // An infinity or a NaN anywhere (vector body or remainder) is reported.
    for (int64_t at : {int64_t{0}, n - 1, 2 * n - 1}) {
      for (uint16_t bad : {uint16_t{0x7c00}, uint16_t{0xfe01}}) {
        std::vector<uint16_t> hb(hp, hp + 2 * n);
        hb[at] = bad;
        EXPECT_FALSE(PairSumsF16Avx512(hb.data(), n, &sx, &sy)) << n << " " << at;
      }
    }
  }
}

TEST(Hc1Grid, PackCodesMatchesPackMsbFirst) {
  std::mt19937 rng(5);
  InlineExecutor ex;
  for (int w = 1; w <= 32; ++w) {
    for (int64_t M : {int64_t{1}, int64_t{7}, int64_t{9}, kUnitPairs - 3, 3 * kUnitPairs + 5}) {
      const int z = static_cast<int>((8 - (static_cast<uint64_t>(M) * w) % 8) % 8);
      std::vector<uint32_t> c32(M);
      for (auto& c : c32) c = static_cast<uint32_t>(rng() >> (32 - w));
      std::vector<uint8_t> want(PackedBytes(M, w, z)), got(want.size(), 0xa5);
      PackMsbFirst(c32, w, z, absl::MakeSpan(want));
      PackCodes(c32.data(), M, w, z, absl::MakeSpan(got), ex);
      ASSERT_EQ(got, want) << "uint32 w " << w << " M " << M;
      if (w <= 16) {
        std::vector<uint16_t> c16(c32.begin(), c32.end());
        std::fill(got.begin(), got.end(), 0x5a);
        PackCodes(c16.data(), M, w, z, absl::MakeSpan(got), ex);
        ASSERT_EQ(got, want) << "uint16 w " << w << " M " << M;
      }
    }
  }
}

TEST(Hc1Grid, PairCodesReuseIdleBuffersWithinTheBound) {
  {
    PairCodes warm(1000, false);  // reaches the pool when it goes
  }
  const size_t idle0 = PairCodes::PoolIdleBytes();
  EXPECT_LE(idle0, PairCodes::kPoolBytes);
  {
    PairCodes a(500, false);  // the idle buffer of >= 2000 bytes serves it: it leaves the pool
    EXPECT_LE(PairCodes::PoolIdleBytes() + 2000, idle0);
    a.Set(499, 65535);
    EXPECT_EQ(a.Get(499), 65535u);
    PairCodes b(10, true);
    b.Set(9, 0xfffffffeu);
    EXPECT_EQ(b.Get(9), 0xfffffffeu);
    PairCodes c = std::move(b);
    EXPECT_EQ(c.Get(9), 0xfffffffeu);
    EXPECT_EQ(b.size(), 0);
  }
  EXPECT_LE(PairCodes::PoolIdleBytes(), PairCodes::kPoolBytes);
  {
    // Larger than the bound: freed, never kept.
    PairCodes big(static_cast<int64_t>(PairCodes::kPoolBytes / 2) + 1, false);
  }
  EXPECT_LE(PairCodes::PoolIdleBytes(), PairCodes::kPoolBytes);
}

TEST(Hc1Grid, PairSourceReadsEveryDtypeAndThePadding) {
  std::vector<float> v(11);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 0.25f * static_cast<float>(i) - 1.0f;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    std::vector<uint8_t> raw(v.size() * DTypeSize(t) + 4);
    uint8_t* data = raw.data() + (t == DType::kF32 ? 2 : 0);  // F32 unaligned: widened copy
    NarrowFromF32(t, v.data(), v.size(), data);
    const PairSource src{data, t, static_cast<int64_t>(v.size()), 42.0f};
    float scratch[12];
    const float* x = src.Read(1, 6, scratch);  // pairs 1..5: elements 2..10, then the pad
    for (int i = 0; i < 9; ++i) EXPECT_EQ(x[i], v[2 + i]) << DTypeName(t);
    EXPECT_EQ(x[9], 42.0f);
  }
  // Aligned F32 without the padding is read in place.
  const PairSource src{reinterpret_cast<const uint8_t*>(v.data()), DType::kF32, 11, 0.0f};
  float scratch[4];
  EXPECT_EQ(src.Read(2, 4, scratch), v.data() + 4);
}

}  // namespace
}  // namespace hc::hc1
