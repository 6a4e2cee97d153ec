// Every vector kernel outside the codecs' own SIMD tests against its scalar reference, through
// the public functions, with ScopedScalarOnly selecting the reference: F16 widening, narrowing
// and round trips (core/base/dtype), 4- and 8-bit packing (core/io/bit_pack), rtn's group
// quantiser and decoder (core/codec/rtn) and the error statistics (core/quality/stats). Inputs:
// random values and the edges (every binary16, NaN, infinities, signed zeros, subnormals,
// overflow, halfway cases, partial groups).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/base/parallel.h"
#include "core/base/simd.h"
#include "core/codec/codec.h"
#include "core/io/bit_pack.h"
#include "core/quality/stats.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"

namespace hc {
namespace {

std::vector<uint32_t> Bits(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  if (!v.empty()) std::memcpy(b.data(), v.data(), 4 * v.size());  // empty: data() may be null
  return b;
}

// Floats around every binary16 edge: all halfway points and their neighbours, subnormals,
// overflow, NaNs with payloads, infinities, zeros; then random values of many magnitudes.
std::vector<float> EdgeFloats() {
  std::vector<float> v;
  for (uint32_t h = 0; h < 65536; h += 7) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    const float g = HalfToFloat(static_cast<uint16_t>(h + 1));
    v.push_back(f);
    if (std::isfinite(f) && std::isfinite(g)) {
      const float mid = 0.5f * (f + g);
      v.push_back(mid);
      v.push_back(std::nextafter(mid, 0.0f));
      v.push_back(std::nextafter(mid, 1e30f));
    }
  }
  const float specials[] = {0.0f, -0.0f, 65504.0f, 65519.0f, 65520.0f, 1e30f, -1e30f,
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 5.9604645e-8f, 2.98e-8f,
                            2.99e-8f, 1e-45f, 6.1035156e-5f};
  for (float f : specials) v.push_back(f);
  uint32_t nan_bits = 0x7fc01234u;
  float payload;
  std::memcpy(&payload, &nan_bits, 4);
  v.push_back(payload);
  nan_bits = 0xff800001u;  // signalling, negative
  std::memcpy(&payload, &nan_bits, 4);
  v.push_back(payload);
  std::mt19937 g(3);
  std::uniform_real_distribution<float> e(-30.0f, 18.0f);
  for (int i = 0; i < 20000; ++i) v.push_back((g() & 1 ? -1.0f : 1.0f) * std::exp2(e(g)));
  return v;
}

TEST(SimdPathsTest, F16WideningEqualsTheTable) {
  std::vector<uint8_t> all(2 * 65536 + 6);  // odd tails too
  for (uint32_t h = 0; h < 65536; ++h) {
    all[2 * h] = static_cast<uint8_t>(h);
    all[2 * h + 1] = static_cast<uint8_t>(h >> 8);
  }
  for (size_t n : {size_t{65539}, size_t{7}, size_t{8}, size_t{9}, size_t{0}}) {
    for (size_t off : {size_t{0}, size_t{1}}) {  // unaligned too
      if (n + off > all.size() / 2) continue;
      std::vector<float> a(n), b(n);
      WidenToF32(DType::kF16, all.data() + 2 * off, n, a.data());
      {
        ScopedScalarOnly scalar;
        WidenToF32(DType::kF16, all.data() + 2 * off, n, b.data());
      }
      ASSERT_EQ(Bits(a), Bits(b)) << "n " << n << " offset " << off;
    }
  }
}

// WidenToF32Checked: the same values, and the flag is set exactly when a NaN or an infinity
// is among the elements, wherever it sits (vector body or scalar tail), on both paths.
TEST(SimdPathsTest, CheckedWideningFlagsExactlyNonFinite) {
  const uint16_t specials[] = {0x7c00, 0xfc00, 0x7c01, 0xfe00, 0x7fff};
  const uint16_t finite[] = {0x0000, 0x8000, 0x7bff, 0xfbff, 0x0001, 0x3c00};
  for (bool scalar_only : {false, true}) {
    std::optional<ScopedScalarOnly> scalar;
    if (scalar_only) scalar.emplace();
    for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{17}, size_t{64}}) {
      for (size_t at = 0; at <= n; ++at) {  // at == n: clean
        for (uint16_t sp : specials) {
          std::vector<uint8_t> src(2 * n);
          for (size_t i = 0; i < n; ++i) {
            const uint16_t h = i == at ? sp : finite[i % 6];
            src[2 * i] = static_cast<uint8_t>(h);
            src[2 * i + 1] = static_cast<uint8_t>(h >> 8);
          }
          std::vector<float> a(n), b(n);
          const bool flag = WidenToF32Checked(DType::kF16, src.data(), n, a.data());
          WidenToF32(DType::kF16, src.data(), n, b.data());
          ASSERT_EQ(Bits(a), Bits(b));
          ASSERT_EQ(flag, at < n) << "n " << n << " at " << at << " special " << sp
                                  << " scalar " << scalar_only;
          std::vector<uint8_t> f32(4 * n);
          std::memcpy(f32.data(), a.data(), 4 * n);
          ASSERT_EQ(WidenToF32Checked(DType::kF32, f32.data(), n, b.data()), at < n);
        }
      }
    }
  }
}

TEST(SimdPathsTest, F16NarrowingAndRoundTripEqualScalar) {
  const std::vector<float> v = EdgeFloats();
  std::vector<uint8_t> a(2 * v.size()), b(2 * v.size());
  NarrowFromF32(DType::kF16, v.data(), v.size(), a.data());
  std::vector<float> ra = v, rb = v;
  RoundTripThroughDType(DType::kF16, absl::MakeSpan(ra));
  {
    ScopedScalarOnly scalar;
    NarrowFromF32(DType::kF16, v.data(), v.size(), b.data());
    RoundTripThroughDType(DType::kF16, absl::MakeSpan(rb));
  }
  ASSERT_EQ(a, b);
  ASSERT_EQ(Bits(ra), Bits(rb));
}

// The bit-by-bit definition of LSB-first packing.
std::vector<uint8_t> PackReference(const std::vector<uint32_t>& c, int width) {
  std::vector<uint8_t> out(PackedBytes(c.size(), width), 0);
  for (size_t i = 0; i < c.size(); ++i) {
    for (int k = 0; k < width; ++k) {
      const uint64_t bit = i * width + k;
      if ((c[i] >> k) & 1u) out[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
    }
  }
  return out;
}

// Both paths (the AVX2 width-4 kernels take 64 codes per packing step and 32 per unpacking
// step; the sizes straddle those).
class BytePacking : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(SimdPathsTest, BytePacking, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? "scalar" : "simd"; });

TEST_P(BytePacking, EqualsTheBitDefinition) {
  std::optional<ScopedScalarOnly> scalar;
  if (GetParam()) scalar.emplace();
  std::mt19937 g(9);
  for (int width : {4, 8, 3}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{15}, size_t{16}, size_t{31},
                     size_t{32}, size_t{33}, size_t{63}, size_t{64}, size_t{65}, size_t{1001},
                     size_t{4099}}) {
      std::vector<uint32_t> c(n);
      for (uint32_t& x : c) x = g() & ((1u << width) - 1);
      const std::vector<uint8_t> ref = PackReference(c, width);
      std::vector<uint8_t> out(ref.size(), 0xAB);
      PackLsbFirst(c, width, absl::MakeSpan(out));
      ASSERT_EQ(out, ref) << "width " << width << " n " << n;
      for (size_t first : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{34}}) {
        if (first > n) continue;
        std::vector<uint32_t> back(n - first);
        UnpackLsbFirst(ref, width, first, absl::MakeSpan(back));
        for (size_t i = 0; i < back.size(); ++i) {
          ASSERT_EQ(back[i], c[first + i]) << "width " << width << " first " << first << " i " << i;
        }
      }
    }
  }
}

// rtn on inputs that exercise every branch of the vector group quantiser: random groups,
// constant groups, groups whose range touches +-0 (either order), NaN in the first and in a
// later position, infinities, huge values (F16 overflow), partial last groups.
std::vector<std::vector<float>> RtnInputs() {
  std::mt19937 g(5);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<std::vector<float>> in;
  for (size_t n : {size_t{5}, size_t{128}, size_t{1000}, size_t{128 * 40 + 77}}) {
    std::vector<float> v(n);
    for (float& x : v) x = nd(g);
    in.push_back(v);
    std::vector<float> c(n, 0.25f);
    in.push_back(c);
  }
  std::vector<float> zeros(512);
  for (size_t i = 0; i < zeros.size(); ++i) zeros[i] = (i * 7919 % 5 == 0) ? -0.0f : 0.0f;
  zeros[200] = 0.5f;  // one group with a positive max, zeros for min
  zeros[300] = -0.5f;  // one with zeros for max
  in.push_back(zeros);
  // Groups built so that a lane-wise range without the scalar fallbacks would differ (for
  // group sizes 32, 100 and 128): a NaN as the first element of a lane that also holds the
  // minimum and maximum; a +0 reaching the fold before an earlier -0 (minimum), and the mirror
  // for the maximum.
  std::vector<float> edge(384);
  for (int i = 0; i < 128; ++i) edge[i] = 0.1f + 0.001f * i;
  edge[0] = 0.5f;
  edge[3] = std::numeric_limits<float>::quiet_NaN();
  edge[11] = -5.0f;
  edge[19] = 7.0f;
  for (int i = 128; i < 256; ++i) edge[i] = 0.2f + 0.001f * i;
  edge[128] = 0.5f;
  edge[130] = -0.0f;
  edge[137] = 0.0f;
  for (int i = 256; i < 384; ++i) edge[i] = -0.2f - 0.001f * i;
  edge[256] = -0.5f;
  edge[258] = 0.0f;
  edge[265] = -0.0f;
  in.push_back(edge);
  std::vector<float> nan = in[6];  // 5197 random values
  nan[0] = std::numeric_limits<float>::quiet_NaN();
  nan[131] = std::numeric_limits<float>::quiet_NaN();
  nan[300] = -std::numeric_limits<float>::quiet_NaN();
  nan[517] = std::numeric_limits<float>::infinity();
  nan[700] = 3e38f;
  in.push_back(nan);
  return in;
}

TEST(SimdPathsTest, RtnEncodeAndDecodeEqualScalar) {
  InlineExecutor ex;
  for (int bits : {2, 3, 4, 8}) {
    for (int group : {32, 128, 100}) {
      auto codec = CreateCodec("rtn", {{"bits", absl::StrCat(bits)},
                                       {"group_size", absl::StrCat(group)}});
      ASSERT_TRUE(codec.ok()) << codec.status();
      int k = 0;
      for (const std::vector<float>& x : RtnInputs()) {
        SCOPED_TRACE(absl::StrCat("bits ", bits, " group ", group, " input ", k++));
        const TensorInfo info = testing::FlatTensorInfo(DType::kF32, static_cast<int64_t>(x.size()));
        const absl::Span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(x.data()),
                                              4 * x.size());
        auto a = (*codec)->Encode(info, bytes, ex);
        ASSERT_TRUE(a.ok()) << a.status();
        absl::StatusOr<EncodedTensor> b;
        {
          ScopedScalarOnly scalar;
          b = (*codec)->Encode(info, bytes, ex);
        }
        ASSERT_TRUE(b.ok()) << b.status();
        ASSERT_EQ(a->raw, b->raw);
        ASSERT_EQ(a->parts.size(), b->parts.size());
        for (size_t p = 0; p < a->parts.size(); ++p) ASSERT_EQ(a->parts[p].bytes, b->parts[p].bytes);
        if (a->raw) continue;
        std::vector<PartView> views;
        for (const EncodedPart& p : a->parts) views.push_back({p.suffix, p.dtype, p.shape, p.bytes});
        auto dec = (*codec)->PrepareDecoder(info, a->params, views);
        ASSERT_TRUE(dec.ok()) << dec.status();
        std::vector<float> ya(x.size()), yb(x.size());
        (*dec)->DecodeRange(0, absl::MakeSpan(ya));
        {
          ScopedScalarOnly scalar;
          (*dec)->DecodeRange(0, absl::MakeSpan(yb));
        }
        ASSERT_EQ(Bits(ya), Bits(yb));
      }
    }
  }
}

TEST(SimdPathsTest, ErrorStatisticsEqualScalar) {
  std::mt19937 g(11);
  std::normal_distribution<float> nd(0.3f, 2.0f);
  for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{9}, size_t{4096}, size_t{65536 + 5}}) {
    std::vector<float> x(n), y(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = nd(g);
      y[i] = x[i] + 0.01f * nd(g);
    }
    if (n > 8) {
      y[3] = std::numeric_limits<float>::quiet_NaN();  // a NaN error: max ignores it
      x[5] = -0.0f;
    }
    ErrorAccumulator a, b;
    a.Add(x, y);
    a.Add(y, x);
    {
      ScopedScalarOnly scalar;
      b.Add(x, y);
      b.Add(y, x);
    }
    const TensorStats sa = a.Finish(100), sb = b.Finish(100);
    auto same = [](double p, double q) { return std::memcmp(&p, &q, sizeof p) == 0; };
    EXPECT_TRUE(same(sa.variance, sb.variance)) << n;
    EXPECT_TRUE(same(sa.mae, sb.mae)) << n;
    EXPECT_TRUE(same(sa.rel_mse, sb.rel_mse)) << n;
    EXPECT_TRUE(same(sa.max_abs_err, sb.max_abs_err)) << n;
    EXPECT_TRUE(same(sa.snr_db, sb.snr_db)) << n;
  }
}

TEST(SimdPathsTest, ErrorStatisticsAreAccurate) {
  // Against long double sums: the two-pass variance and the error sums.
  std::mt19937 g(12);
  std::normal_distribution<float> nd(1000.0f, 0.5f);  // a large mean: a one-pass formula fails
  const size_t n = 100003;
  std::vector<float> x(n), y(n);
  long double s = 0;
  for (size_t i = 0; i < n; ++i) {
    x[i] = nd(g);
    y[i] = x[i] + 0.001f;
    s += x[i];
  }
  const long double mean = s / n;
  long double m2 = 0, se = 0;
  for (size_t i = 0; i < n; ++i) {
    m2 += (x[i] - mean) * (x[i] - mean);
    se += (static_cast<long double>(x[i]) - y[i]) * (static_cast<long double>(x[i]) - y[i]);
  }
  ErrorAccumulator a;
  for (size_t b = 0; b < n; b += 65536) {
    const size_t e = std::min(n, b + 65536);
    a.Add(absl::MakeConstSpan(x).subspan(b, e - b), absl::MakeConstSpan(y).subspan(b, e - b));
  }
  const TensorStats st = a.Finish(0);
  EXPECT_NEAR(st.variance, static_cast<double>(m2 / n), 1e-12 * static_cast<double>(m2 / n) + 1e-9);
  EXPECT_NEAR(st.rel_mse, static_cast<double>(se / m2), 1e-9 * static_cast<double>(se / m2));
}

}  // namespace
}  // namespace hc
