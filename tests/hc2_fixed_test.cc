// hc2's fixed-rate trellis (core/codec/hc2_fixed.h): the vectorised search against the scalar
// reference, the search against brute force, the decoding formula and the codebooks' quality.
#include "core/codec/hc2_fixed.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/base/simd.h"
#include "core/codec/hc2_transform.h"
#include "core/io/bit_pack.h"
#include "core/base/parallel.h"
#include "gtest/gtest.h"

namespace hc::hc2 {
namespace {

std::vector<float> Normal(int n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = nd(g);
  return v;
}

// The squared error of `sym` under the decoding formula, summed in order in float32.
float ErrorOf(const float* u, const uint8_t* sym, int n, int bits, const float* cb) {
  std::vector<float> c(n);
  TrellisValues(sym, n, bits, cb, c.data());
  float e = 0;
  for (int i = 0; i < n; ++i) e += (u[i] - c[i]) * (u[i] - c[i]);
  return e;
}

TEST(Hc2FixedTest, ValuesFollowTheTwelveBitWindow) {
  const std::vector<float> cb = Normal(kTrellisCodebook, 1);
  for (int bits = 2; bits <= 4; ++bits) {
    std::mt19937 g(bits);
    std::vector<uint8_t> sym(128);
    for (uint8_t& s : sym) s = static_cast<uint8_t>(g() % (1u << bits));
    std::vector<float> c(128);
    TrellisValues(sym.data(), 128, bits, cb.data(), c.data());
    for (int i = 0; i < 128; ++i) {
      // The window: bits [k i - (12 - k), k i + k) of the LSB-first symbol stream, zeros
      // before the block.
      uint32_t w = 0;
      for (int bit = 0; bit < kTrellisWindow; ++bit) {
        const int pos = bits * i - (kTrellisWindow - bits) + bit;  // in the stream
        if (pos < 0) continue;
        w |= ((sym[pos / bits] >> (pos % bits)) & 1u) << bit;
      }
      ASSERT_EQ(c[i], cb[w]) << "bits " << bits << " i " << i;
    }
  }
}

TEST(Hc2FixedTest, SearchIsOptimalOnShortBlocks) {
  // Every symbol sequence of n = 3 (4^3 .. 16^3 of them): the search's error is the minimum
  // (summed in the same order, so exactly), and its own symbols reach it.
  for (int bits = 2; bits <= 4; ++bits) {
    const std::vector<float> cb = Normal(kTrellisCodebook, 10 + bits);
    std::vector<float> search(kTrellisCodebook), back(kTrellisCodebook);
    ToSearchOrder(cb.data(), bits, search.data());
    ToSearchOrder(search.data(), bits, back.data());
    ASSERT_EQ(back, cb) << "the reordering is its own inverse";
    for (int trial = 0; trial < 20; ++trial) {
      const std::vector<float> u = Normal(3, 100 * bits + trial, 1.3f);
      for (bool simd : {false, true}) {
        uint8_t sym[3];
        const float e = TrellisSearch(u.data(), 3, bits, search.data(), sym, simd);
        const int T = 1 << bits;
        float best = INFINITY;
        for (int a = 0; a < T; ++a) {
          for (int b = 0; b < T; ++b) {
            for (int c = 0; c < T; ++c) {
              const uint8_t s[3] = {static_cast<uint8_t>(a), static_cast<uint8_t>(b),
                                    static_cast<uint8_t>(c)};
              best = std::min(best, ErrorOf(u.data(), s, 3, bits, cb.data()));
            }
          }
        }
        EXPECT_EQ(e, best) << "bits " << bits << " trial " << trial << " simd " << simd;
        EXPECT_EQ(ErrorOf(u.data(), sym, 3, bits, cb.data()), best);
      }
    }
  }
}

TEST(Hc2FixedTest, VectorSearchEqualsScalarSearch) {
  // Random blocks of every padded length, ties (a codebook of few distinct values, constant
  // and zero inputs) and extreme values.
  std::vector<std::vector<float>> books = {Normal(kTrellisCodebook, 7)};
  std::vector<float> coarse(kTrellisCodebook);
  for (int w = 0; w < kTrellisCodebook; ++w) coarse[w] = static_cast<float>(w % 5) - 2.0f;
  books.push_back(coarse);
  for (int bits = 2; bits <= 4; ++bits) {
    for (int c : {kCodebookTrained, kCodebookStructured}) {
      books.emplace_back(TrellisSearchCodebook(bits, c),
                         TrellisSearchCodebook(bits, c) + kTrellisCodebook);
    }
  }
  int cases = 0, vector_runs = 0;
  for (size_t k = 0; k < books.size(); ++k) {
    for (int bits = 2; bits <= 4; ++bits) {
      for (int n : {2, 4, 8, 16, 32, 64, 128}) {
        std::vector<std::vector<float>> inputs = {Normal(n, n * 7 + bits, 1.0f),
                                                  Normal(n, n * 11 + bits, 30.0f),
                                                  std::vector<float>(n, 0.0f),
                                                  std::vector<float>(n, 1.0f)};
        std::vector<float> extreme = Normal(n, n + 5);
        extreme[0] = 1e18f;
        extreme[n - 1] = -3e-30f;
        inputs.push_back(extreme);
        for (const std::vector<float>& u : inputs) {
          SCOPED_TRACE(absl::StrCat("book ", k, " bits ", bits, " n ", n, " case ", cases));
          std::vector<uint8_t> a(n), b(n);
          float ea = 0, eb = 0;
          ASSERT_TRUE(TrellisSearchOn(SearchPath::kScalar, u.data(), n, bits, books[k].data(),
                                      a.data(), &ea));
          for (SearchPath p : {SearchPath::kAvx2, SearchPath::kAvx512}) {
            if (!TrellisSearchOn(p, u.data(), n, bits, books[k].data(), b.data(), &eb)) continue;
            ASSERT_EQ(a, b) << "path " << static_cast<int>(p);
            ASSERT_EQ(ea, eb) << "path " << static_cast<int>(p);
            ++vector_runs;
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 8 * 3 * 7 * 5);
  std::printf("%d vector searches compared with the scalar one\n", vector_runs);
  if (!CpuHasAvx2()) GTEST_SKIP() << "no AVX2 here: only the scalar path ran";
}

TEST(Hc2FixedTest, CodebooksReachTheirDesignSnrOnGaussianBlocks) {
  // Unit-rms Gaussian blocks (as the encoder feeds them), 512 blocks not used in training.
  // Codebook 1 measured 11.23 / 17.02 / 22.83 dB for 2 / 3 / 4 bits (Gaussian bound 12.04 /
  // 18.06 / 24.08; the previous winding codebook: 9.5 / 15.3 / 21.4); codebook 2 is better still
  // (CodebookTwoIsAtLeastCodebookOne).
  const double floor_db[5] = {0, 0, 11.0, 16.8, 22.6};
  for (int c : {kCodebookTrained, kCodebookStructured}) {
  for (int bits = 2; bits <= 4; ++bits) {
    double se = 0, ss = 0;
    for (int b = 0; b < 512; ++b) {
      std::vector<float> u = Normal(128, 5000 + b);
      double rms = 0;
      for (float v : u) rms += static_cast<double>(v) * v;
      rms = std::sqrt(rms / 128);
      for (float& v : u) v = static_cast<float>(v / rms);
      uint8_t sym[128];
      const float e = TrellisSearch(u.data(), 128, bits, TrellisSearchCodebook(bits, c), sym);
      ASSERT_FLOAT_EQ(e, ErrorOf(u.data(), sym, 128, bits, TrellisCodebook(bits, c)));
      se += e;
      ss += 128;
    }
    const double snr = 10 * std::log10(ss / se);
    std::printf("codebook %d bits %d: %.2f dB on unit Gaussian blocks\n", c, bits, snr);
    EXPECT_GE(snr, floor_db[bits]) << "codebook " << c << " bits " << bits;
  }
  }
}

// Codebook 2 is its formula (G[beta(w)] * 2^-5, spec-hc2.md 4), and no worse than codebook 1
// on the same held-out Gaussian blocks (the reason to write it).
TEST(Hc2FixedTest, CodebookTwoIsItsFormulaAndAtLeastCodebookOne) {
  for (int bits = 2; bits <= 4; ++bits) {
    const StructuredCodebook st = TrellisStructure(bits);
    const float* cb = TrellisCodebook(bits, kCodebookStructured);
    std::vector<int> used(256, 0);
    for (uint32_t w = 0; w < kTrellisCodebook; ++w) {
      // beta by its definition: the high byte of the window XOR the GF(2) image of the 8 bits
      // just below the newest symbol.
      const uint32_t o = (w >> (4 - bits)) & 0xFF;
      uint32_t dith = 0;
      for (int j = 0; j < 8; ++j) dith ^= ((o >> j) & 1) ? st.d[j] : 0;
      const uint32_t beta = ((w >> 4) ^ dith) & 0xFF;
      ASSERT_EQ(cb[w], std::ldexp(static_cast<float>(st.g[beta]), -5))
          << "bits " << bits << " w " << w;
      ++used[beta];
    }
    // Each symbol value reaches 2^bits distinct coarse levels from every state.
    for (uint32_t state = 0; state < (1u << (12 - bits)); ++state) {
      std::vector<uint32_t> hi;
      for (uint32_t t = 0; t < (1u << bits); ++t) {
        hi.push_back(StructuredByte(state | t << (12 - bits), bits, st.d) >> (8 - bits));
      }
      std::sort(hi.begin(), hi.end());
      ASSERT_EQ(std::unique(hi.begin(), hi.end()), hi.end())
          << "bits " << bits << " state " << state;
    }
    double e[3] = {0, 0, 0};
    for (int b = 0; b < 256; ++b) {
      std::vector<float> u = Normal(128, 9000 + b);
      double rms = 0;
      for (float v : u) rms += static_cast<double>(v) * v;
      rms = std::sqrt(rms / 128);
      for (float& v : u) v = static_cast<float>(v / rms);
      uint8_t sym[128];
      for (int c : {kCodebookTrained, kCodebookStructured}) {
        e[c] += TrellisSearch(u.data(), 128, bits, TrellisSearchCodebook(bits, c), sym);
      }
    }
    std::printf("bits %d: codebook 2 / codebook 1 error %.4f\n", bits, e[2] / e[1]);
    EXPECT_LE(e[2], e[1]) << "bits " << bits;
  }
}


// The tensor decoder (per-block byte unpacking and independent windows) against the decoding
// formula applied to the packed stream: every k, full and short last blocks, any range.
TEST(Hc2FixedTest, DecoderEqualsTheFormulaOnEveryRange) {
  InlineExecutor ex;
  for (int cbv : {kCodebookTrained, kCodebookStructured}) {
  for (int bits = 2; bits <= 4; ++bits) {
    for (int64_t numel : {int64_t{64}, int64_t{130}, int64_t{128 * 5}, int64_t{128 * 7 + 3},
                          int64_t{1000}, int64_t{128 * 9 + 100}}) {
      SCOPED_TRACE(absl::StrCat("codebook ", cbv, " bits ", bits, " numel ", numel));
      const std::vector<float> x = Normal(static_cast<int>(numel), 7 + bits, 0.02f);
      const EncodedTensor enc = EncodeFixedTensor(x.data(), numel, bits, ex, cbv);
      ASSERT_FALSE(enc.raw);
      const std::vector<PartView> views = PartViews(enc);
      auto dec = PrepareFixedDecoder(numel, enc.params, views);
      ASSERT_TRUE(dec.ok()) << dec.status();
      // Codebook 1 records are version 4's: no param, the part "codes".
      EXPECT_EQ(enc.params.Find("codebook") != nullptr, cbv == kCodebookStructured);
      const PartView* codes = FindPart(views, cbv == kCodebookTrained ? "codes" : "symbols");
      ASSERT_NE(codes, nullptr);
      const PartView* scales = FindPart(views, "scales");
      // The formula: symbols from the LSB-first stream, TrellisValues, times the F16 scale, then
      // the inverse rotation.
      const Blocks plan(numel);
      std::vector<float> ref(numel);
      for (int64_t b = 0; b < plan.blocks; ++b) {
        const int n = plan.n(b), r = plan.r(b);
        std::vector<uint32_t> s32(n);
        UnpackLsbFirst(codes->bytes, bits, static_cast<uint64_t>(b) * kBlock, absl::MakeSpan(s32));
        std::vector<uint8_t> sym(s32.begin(), s32.end());
        float z[kBlock];
        TrellisValues(sym.data(), n, bits, TrellisCodebook(bits, cbv), z);
        const uint16_t h = static_cast<uint16_t>(scales->bytes[2 * b] | scales->bytes[2 * b + 1] << 8);
        for (int i = 0; i < n; ++i) z[i] *= HalfToFloat(h);
        Unrotate(z, r, n, ref.data() + b * kBlock);
      }
      for (auto [begin, len] : {std::pair<int64_t, int64_t>{0, numel}, {1, numel - 1},
                                {127, std::min<int64_t>(numel - 127, 130)}, {numel - 1, 1}}) {
        if (begin < 0 || len <= 0 || begin + len > numel) continue;
        std::vector<float> got(len);
        (*dec)->DecodeRange(begin, absl::MakeSpan(got));
        for (int64_t i = 0; i < len; ++i) {
          ASSERT_EQ(got[i], ref[begin + i]) << "element " << begin + i;
        }
      }
    }
  }
  }
}

}  // namespace
}  // namespace hc::hc2
