// hc1 unit tests: numpy-exact means, the codebook, the O(1) nearest search against brute force,
// option validation, F16/BF16 inputs, executor independence, random-access decoding and the
// decoder's validation.
#include "core/codec/hc1.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/base/dtype.h"
#include "core/codec/codec.h"
#include "core/codec/hc1_geometry.h"
#include "core/io/bit_pack.h"
#include "core/io/safetensors_file.h"
#include "core/pipeline/tbb_executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// numpy's float32 mean

std::vector<float> MeanInput(int64_t n) {
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = (static_cast<uint64_t>(i) * 2654435761u) % (uint64_t{1} << 32);
    const double v = static_cast<double>(h) / 4294967296.0 - 0.5;
    x[i] = static_cast<float>(v * (i % 97 == 0 ? 300.0 : 1.0) + 0.25);
  }
  return x;
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(Hc1NumpyMean, MatchesNumpy124) {
  // np.mean(x), np.mean(x[0::2]), np.mean(x[1::2]) from numpy 1.24.2 on MeanInput(n).
  struct Case {
    int64_t n;
    uint32_t all, even, odd;
  };
  const Case cases[] = {
      {1, 0xc315c000, 0xc315c000, 0},
      {7, 0xc1a973f2, 0xc2151566, 0x3e8aa22f},
      {8, 0xc19431f0, 0xc2151566, 0x3e63779a},
      {100, 0x3dba87e4, 0xc03067c8, 0x403c1048},
      {129, 0x3dff425b, 0xc003abd7, 0x4015ce93},
      {1000, 0x3f42fc35, 0x3f090c35, 0x3f7cec37},
      {8191, 0x3e9bd72c, 0x3ea2c82e, 0x3e94e5ba},
      {8192, 0x3e9bd35d, 0x3ea2c82e, 0x3e94de8c},
      {8193, 0x3e9bd971, 0x3ea2d3e7, 0x3e94de8c},
      {20000, 0x3e8b1d3d, 0x3e8d2dcc, 0x3e890caf},
      {50001, 0x3e802a70, 0x3e8065f3, 0x3e7fddd9},
  };
  for (const Case& c : cases) {
    const std::vector<float> x = MeanInput(c.n);
    EXPECT_EQ(Bits(hc1::NumpyMeanF32(x.data(), c.n, 1)), c.all) << c.n;
    EXPECT_EQ(Bits(hc1::NumpyMeanF32(x.data(), (c.n + 1) / 2, 2)), c.even) << c.n;
    if (c.n > 1) {
      EXPECT_EQ(Bits(hc1::NumpyMeanF32(x.data() + 1, c.n / 2, 2)), c.odd) << c.n;
    }
  }
}

TEST(Hc1NumpyMean, CeilSqrt) {
  for (int64_t n = 1; n < 100000; ++n) {
    const int64_t m = hc1::CeilSqrt(n);
    ASSERT_GE(m * m, n);
    ASSERT_LT((m - 1) * (m - 1), n);
  }
}

// ---------------------------------------------------------------------------------------------
// Golden data helpers

struct GoldenCase {
  std::string file;
  double L = 0;
  int64_t n = 0;
  float cx = 0, cy = 0;
  std::vector<float> input;
  std::vector<double> codebook;
};

std::vector<GoldenCase> LoadGoldenHc() {
  std::vector<GoldenCase> out;
  const std::string dir = hc::testing::SharedDir() + "/golden/reference-hc";
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) {
    auto file = SafetensorsFile::Open(f);
    EXPECT_TRUE(file.ok()) << file.status();
    if (!file.ok()) continue;
    std::map<std::string, std::string> md((*file)->header().metadata.begin(),
                                          (*file)->header().metadata.end());
    if (md["hc_stream"] != "1") continue;
    GoldenCase c;
    c.file = f;
    c.L = std::stod(md["L"]);
    EXPECT_TRUE(absl::SimpleAtoi(md["n"], &c.n));
    std::vector<uint32_t> hex;
    for (absl::string_view s : absl::StrSplit(md["centre_f32_hex"], ',')) {
      uint32_t v = 0;
      EXPECT_TRUE(absl::SimpleHexAtoi(s, &v));
      hex.push_back(v);
    }
    std::memcpy(&c.cx, &hex[0], 4);
    std::memcpy(&c.cy, &hex[1], 4);
    const auto& tensors = (*file)->header().tensors;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto bytes = (*file)->TensorData(i);
      if (absl::EndsWith(tensors[i].name, ".input")) {
        c.input.resize(bytes.size() / 4);
        std::memcpy(c.input.data(), bytes.data(), bytes.size());
      } else if (absl::EndsWith(tensors[i].name, ".codebook")) {
        c.codebook.resize(bytes.size() / 8);
        std::memcpy(c.codebook.data(), bytes.data(), bytes.size());
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

TEST(Hc1Codebook, MatchesGoldenCodebooksBitForBit) {
  const auto cases = LoadGoldenHc();
  ASSERT_GE(cases.size(), 27u);
  for (const GoldenCase& c : cases) {
    const hc1::Codebook cb(hc1::Layout::Get(c.L, c.n), c.cx, c.cy);
    ASSERT_EQ(static_cast<size_t>(2 * cb.size()), c.codebook.size()) << c.file;
    int bad = 0;
    for (int64_t j = 0; j < cb.size(); ++j) {
      bad += cb.x(j) != c.codebook[2 * j] || cb.y(j) != c.codebook[2 * j + 1];
    }
    EXPECT_EQ(bad, 0) << c.file;
  }
}

// ---------------------------------------------------------------------------------------------
// O(1) nearest search vs brute force

int CheckNearest(const hc1::Codebook& cb, double qx, double qy) {
  const uint32_t fast = cb.Nearest(qx, qy);
  const uint32_t slow = cb.NearestBruteForce(qx, qy);
  EXPECT_EQ(fast, slow) << "query (" << qx << ", " << qy << ") L " << cb.layout().L() << " n "
                        << cb.layout().n() << " centre (" << cb.cx() << ", " << cb.cy() << ")";
  return fast != slow;
}

TEST(Hc1Nearest, GoldenQueriesMatchBruteForce) {
  // Every lookup the encoder makes on the golden inputs: p itself, and p pulled in by rings of
  // several radii, f = (L/2) / r.
  const auto cases = LoadGoldenHc();
  ASSERT_GE(cases.size(), 27u);
  int64_t queries = 0, bad = 0;
  for (const GoldenCase& c : cases) {
    const hc1::Codebook cb(hc1::Layout::Get(c.L, c.n), c.cx, c.cy);
    std::vector<float> x = c.input;
    if (x.size() % 2) x.push_back(c.cx);
    for (size_t i = 0; i + 1 < x.size(); i += 2) {
      const float dx = x[i] - c.cx, dy = x[i + 1] - c.cy;
      const float d = std::sqrt(dx * dx + dy * dy);
      bad += CheckNearest(cb, x[i], x[i + 1]);
      ++queries;
      for (double r : {static_cast<double>(d), d * 1.5, c.L / 2 + 1e-3}) {
        const double f = (c.L / 2) / std::max(r, c.L / 2);
        bad += CheckNearest(cb, dx * f + cb.cx(), dy * f + cb.cy());
        ++queries;
      }
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_GT(queries, 500000);
}

TEST(Hc1Nearest, RandomEdgeAndOutsideQueriesMatchBruteForce) {
  std::mt19937_64 rng(7);
  struct Config {
    double L;
    int64_t n;
    float cx, cy;
  };
  const Config configs[] = {
      {0.1, 1600, 0.0f, 0.0f},     {0.1, 225, -0.013f, 0.021f}, {0.8, 1600, 0.5f, -0.25f},
      {0.1, 1, 0.0f, 0.0f},        {0.1, 2, 0.1f, 0.1f},        {0.1, 10, -3.0f, 2.0f},
      {0.3, 1000, 0.0f, 1.0f},     {0.001, 50, 1e-4f, 0.0f},    {2.5, 4097, 10.0f, -10.0f},
      {0.1, 1600, 1234.5f, -99.f}, {0.1, 1600, 3e6f, 0.0f},     {0.05, 65536, 0.0f, 0.0f},
  };
  int bad = 0;
  for (const Config& cfg : configs) {
    const auto layout = hc1::Layout::Get(cfg.L, cfg.n);
    EXPECT_LT(layout->mean_candidates(), 12.0) << cfg.n;
    const hc1::Codebook cb(layout, cfg.cx, cfg.cy);
    const double ox = cb.cx() - cfg.L / 2, oy = cb.cy() - cfg.L / 2;
    const double cell = layout->cell();
    std::uniform_real_distribution<double> in(0.0, cfg.L), wide(-cfg.L, 2 * cfg.L),
        far(-100 * cfg.L, 100 * cfg.L);
    std::uniform_int_distribution<int> edge(-2, layout->cells_per_axis());
    const int rounds = cfg.n > 5000 ? 600 : 20000;
    for (int k = 0; k < rounds; ++k) {
      bad += CheckNearest(cb, ox + in(rng), oy + in(rng));      // inside the square
      bad += CheckNearest(cb, ox + wide(rng), oy + wide(rng));  // around and outside it
      bad += CheckNearest(cb, ox + far(rng), oy + far(rng));    // far outside
      // On grid-cell edges and corners, exactly and one ulp either side.
      const double ex = ox + edge(rng) * cell, ey = oy + edge(rng) * cell;
      bad += CheckNearest(cb, ex, oy + in(rng));
      bad += CheckNearest(cb, ox + in(rng), ey);
      bad += CheckNearest(cb, std::nextafter(ex, -1e300), std::nextafter(ey, 1e300));
      // On the square's edges and corners.
      bad += CheckNearest(cb, ox, oy + in(rng));
      bad += CheckNearest(cb, ox + cfg.L, oy + in(rng));
      bad += CheckNearest(cb, ox + in(rng), oy + cfg.L);
      bad += CheckNearest(cb, ox + cfg.L, oy + cfg.L);
    }
    // On every codeword, and halfway between codewords (Voronoi edges, near-ties).
    std::uniform_int_distribution<int64_t> row(0, cb.size() - 1);
    for (int64_t j = 0; j < std::min<int64_t>(cb.size(), 5000); ++j) {
      bad += CheckNearest(cb, cb.x(j), cb.y(j));
      const int64_t k = row(rng);
      bad += CheckNearest(cb, (cb.x(j) + cb.x(k)) / 2, (cb.y(j) + cb.y(k)) / 2);
      const int64_t nb = std::min<int64_t>(cb.size() - 1, j + 1);
      bad += CheckNearest(cb, (cb.x(j) + cb.x(nb)) / 2, (cb.y(j) + cb.y(nb)) / 2);
    }
    // Non-finite queries take the brute-force path and do not crash.
    EXPECT_EQ(cb.Nearest(NAN, 0.0), cb.NearestBruteForce(NAN, 0.0));
  }
  EXPECT_EQ(bad, 0);
}

TEST(Hc1Nearest, StableLookupsHoldWithinTheirRadius) {
  // PickStable's certificate: when it says stable, every point within the radius has the same
  // nearest row. Probed at random points, on Voronoi edges (midpoints of codewords) and with
  // radii from rounding-error size up to large.
  std::mt19937_64 rng(11);
  int64_t stable_count = 0, checked = 0, bad = 0;
  for (const auto& [L, n, c] : {std::tuple<double, int64_t, float>{0.1, 1600, 0.003f},
                                {0.1, 225, -0.02f},
                                {0.8, 1600, 0.4f},
                                {0.3, 1000, 0.0f}}) {
    const hc1::Codebook cb(hc1::Layout::Get(L, n), c, -c);
    const double ox = cb.cx() - L / 2, oy = cb.cy() - L / 2;
    std::uniform_real_distribution<double> in(0.0, L), unit(-1.0, 1.0);
    std::uniform_int_distribution<int64_t> row(1, cb.size() - 1);
    for (int k = 0; k < 40000; ++k) {
      double qx = ox + in(rng), qy = oy + in(rng);
      if (k % 2) {  // near a Voronoi edge
        const int64_t a = row(rng), b = std::min<int64_t>(cb.size() - 1, a + 1 + k % 3);
        qx = (cb.x(a) + cb.x(b)) / 2 + unit(rng) * 1e-9;
        qy = (cb.y(a) + cb.y(b)) / 2 + unit(rng) * 1e-9;
      }
      const double radius = std::ldexp(1.0, -20 - static_cast<int>(rng() % 25));
      bool stable;
      const uint32_t j = cb.PickStable(cb.Cell(qx, qy), qx, qy, radius, &stable);
      ASSERT_EQ(j, cb.NearestBruteForce(qx, qy));
      if (!stable) continue;
      ++stable_count;
      for (int t = 0; t < 4; ++t) {
        // A point at distance <= radius (|dx| + |dy| <= radius).
        const double ax = unit(rng) * radius / 2, ay = unit(rng) * radius / 2;
        bad += cb.NearestBruteForce(qx + ax, qy + ay) != j;
        ++checked;
      }
    }
  }
  EXPECT_EQ(bad, 0);
  EXPECT_GT(stable_count, 50000);
  EXPECT_GT(checked, 200000);
}

TEST(Hc1Nearest, WrappedCodewordsSitOnTheTopEdge) {
  // Float64 rounding puts t*v_y just below a multiple of L for some t = a*m, so (t*v) mod L is
  // ~L instead of 0 (golden codebooks show it): the grid is built from the actual values.
  const auto layout = hc1::Layout::Get(0.1, 225);
  const auto& off = layout->offsets();
  int top = 0;
  for (size_t t = 0; t < off.size() / 2; ++t) top += off[2 * t + 1] > 0.1 * 0.999;
  EXPECT_GT(top, 0);
  const hc1::Codebook cb(layout, 0.0f, 0.0f);
  for (size_t t = 0; t < off.size() / 2; ++t) {
    if (off[2 * t + 1] > 0.1 * 0.999) {
      EXPECT_EQ(cb.Nearest(cb.x(t + 1), cb.y(t + 1)), t + 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Options

TEST(Hc1Options, PresetsAndOverrides) {
  HC_ASSERT_OK_AND_ASSIGN(Hc1Options llm, Hc1Options::FromCodecOptions({}));
  EXPECT_EQ(llm.preset, "llm");
  EXPECT_EQ(llm.L, 0.1);
  EXPECT_EQ(llm.n, std::vector<int64_t>{1600});
  EXPECT_EQ(llm.class_max, 3);
  EXPECT_EQ(llm.loss_max, 0.001);
  EXPECT_EQ(llm.loss_threshold, 0.001);
  EXPECT_EQ(llm.fallback_mae, 0.006);
  HC_ASSERT_OK_AND_ASSIGN(Hc1Options unet, Hc1Options::FromCodecOptions({{"preset", "unet"}}));
  EXPECT_EQ(unet.L, 0.1);
  EXPECT_EQ(unet.n, std::vector<int64_t>{225});
  EXPECT_EQ(unet.class_max, 3);
  EXPECT_EQ(unet.fallback_mae, 0.0);
  HC_ASSERT_OK_AND_ASSIGN(Hc1Options mob, Hc1Options::FromCodecOptions({{"preset", "mobilenet"}}));
  EXPECT_EQ(mob.L, 0.8);
  EXPECT_EQ(mob.n, std::vector<int64_t>{1600});
  EXPECT_EQ(mob.class_max, 4);
  EXPECT_EQ(mob.fallback_mae, 0.0);
  HC_ASSERT_OK_AND_ASSIGN(Hc1Options o, Hc1Options::FromCodecOptions({{"preset", "unet"},
                                                                      {"L", "0.25"},
                                                                      {"n", "225, 1600"},
                                                                      {"class_max", "5"},
                                                                      {"loss_max", "0.01"},
                                                                      {"loss_threshold", "0.002"},
                                                                      {"fallback_mae", "0.5"}}));
  EXPECT_EQ(o.L, 0.25);
  EXPECT_EQ(o.n, (std::vector<int64_t>{225, 1600}));
  EXPECT_EQ(o.class_max, 5);
  EXPECT_EQ(o.loss_max, 0.01);
  EXPECT_EQ(o.loss_threshold, 0.002);
  EXPECT_EQ(o.fallback_mae, 0.5);
  HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateCodec("hc1", {{"preset", "mobilenet"}}));
  EXPECT_EQ(codec->name(), "hc1");
  EXPECT_EQ(codec->OptionsJson().Dump(),
            "{\"preset\":\"mobilenet\",\"L\":0.8,\"n\":[1600],\"class_max\":4,\"loss_max\":0.001,"
            "\"loss_threshold\":0.001,\"fallback_mae\":0}");
}

TEST(Hc1Options, InvalidValuesNameTheOption) {
  const struct {
    const char* key;
    const char* value;
  } bad[] = {
      {"preset", "resnet"},
      {"L", "0"},
      {"L", "-0.1"},
      {"L", "abc"},
      {"L", "inf"},
      {"n", ""},
      {"n", "0"},
      {"n", "1600,x"},
      {"n", "65537"},
      {"n", "-5"},
      {"class_max", "0"},
      {"class_max", "33"},
      {"class_max", "1.5"},
      {"loss_max", "-1"},
      {"loss_max", "nan"},
      {"loss_threshold", "-0.1"},
      {"loss_threshold", "x"},
      {"fallback_mae", "-0.006"},
      {"fallback_mae", "big"},
  };
  for (const auto& b : bad) {
    auto r = CreateCodec("hc1", {{b.key, b.value}});
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(b.key)))
        << b.key << "=" << b.value;
    EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hc1")));
  }
  EXPECT_THAT(CreateCodec("hc1", {{"bits", "4"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"bits\"")));
  EXPECT_THAT(CreateCodec("hc1", {{"n", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("n")));
  Hc1Options o;
  o.class_max = 0;
  EXPECT_THAT(o.Validate(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("class_max")));
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers

std::vector<uint8_t> F32Bytes(const std::vector<float>& x) {
  std::vector<uint8_t> b(x.size() * 4);
  std::memcpy(b.data(), x.data(), b.size());
  return b;
}

using ::hc::testing::FlatTensorInfo;

std::vector<PartView> Views(const EncodedTensor& enc) {
  std::vector<PartView> v;
  for (const EncodedPart& p : enc.parts) v.push_back({p.suffix, p.dtype, p.shape, p.bytes});
  return v;
}

std::vector<float> DecodeAll(const TensorInfo& info, const EncodedTensor& enc) {
  auto codec = CreateCodec("hc1", {});
  EXPECT_TRUE(codec.ok());
  auto dec = (*codec)->PrepareDecoder(info, enc.params, Views(enc));
  EXPECT_THAT(dec, IsOk());
  std::vector<float> out(info.numel);
  if (dec.ok()) (*dec)->DecodeRange(0, absl::MakeSpan(out));
  return out;
}

// LLM-like weights with a few outliers.
std::vector<float> Weights(int64_t n, uint64_t seed, double scale = 0.02) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.001, scale);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 1013 == 5 ? g(rng) * 40 : g(rng));
  return x;
}

bool SameEncoding(const EncodedTensor& a, const EncodedTensor& b) {
  if (a.raw != b.raw || a.raw_reason != b.raw_reason || a.params.Dump() != b.params.Dump() ||
      a.parts.size() != b.parts.size()) {
    return false;
  }
  for (size_t i = 0; i < a.parts.size(); ++i) {
    if (a.parts[i].suffix != b.parts[i].suffix || a.parts[i].bytes != b.parts[i].bytes ||
        a.parts[i].shape != b.parts[i].shape || a.parts[i].dtype != b.parts[i].dtype) {
      return false;
    }
  }
  return true;
}

TEST(Hc1Encode, SameBytesOnEveryExecutor) {
  // Sizes spanning many parallel units, odd lengths (padding) and z > 0; several settings.
  InlineExecutor inline_ex;
  TbbExecutor tbb2(2), tbb4(4);
  for (const char* preset : {"llm", "unet", "mobilenet"}) {
    for (int64_t numel : {int64_t{10}, int64_t{4097}, int64_t{100001}, int64_t{300000}}) {
      const std::vector<float> x = Weights(numel, numel, preset[0] == 'm' ? 0.3 : 0.02);
      const auto bytes = F32Bytes(x);
      const TensorInfo info = FlatTensorInfo(DType::kF32, numel);
      HC_ASSERT_OK_AND_ASSIGN(auto codec,
                              CreateCodec("hc1", {{"preset", preset}, {"fallback_mae", "0"}}));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, codec->Encode(info, bytes, inline_ex));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b, codec->Encode(info, bytes, tbb2));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor c, codec->Encode(info, bytes, tbb4));
      EXPECT_TRUE(SameEncoding(a, b)) << preset << " " << numel;
      EXPECT_TRUE(SameEncoding(a, c)) << preset << " " << numel;
      ASSERT_FALSE(a.raw);
      // Error bound of the decoded tensor: within the stated mean error.
      const std::vector<float> y = DecodeAll(info, a);
      double sum = 0;
      for (int64_t i = 0; i < numel; ++i) sum += std::abs(static_cast<double>(y[i]) - x[i]);
      EXPECT_NEAR(sum / numel, a.params.Find("mae")->number(), 1e-6) << preset << " " << numel;
    }
  }
}

TEST(Hc1Encode, RandomAccessDecodeMatchesWholeDecode) {
  const int64_t numel = 54321;
  const std::vector<float> x = Weights(numel, 3);
  const TensorInfo info = FlatTensorInfo(DType::kF32, numel);
  HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateCodec("hc1", {{"fallback_mae", "0"}}));
  InlineExecutor ex;
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, F32Bytes(x), ex));
  ASSERT_FALSE(enc.raw);
  EXPECT_NE(enc.params.Find("z")->as_int64(), 0);
  const std::vector<float> all = DecodeAll(info, enc);
  HC_ASSERT_OK_AND_ASSIGN(auto dec, codec->PrepareDecoder(info, enc.params, Views(enc)));
  std::mt19937_64 rng(1);
  for (int k = 0; k < 2000; ++k) {
    const uint64_t b = rng() % numel;
    const uint64_t len = 1 + rng() % std::min<uint64_t>(numel - b, 300);
    std::vector<float> part(len);
    dec->DecodeRange(b, absl::MakeSpan(part));
    for (uint64_t i = 0; i < len; ++i) ASSERT_EQ(Bits(part[i]), Bits(all[b + i])) << b + i;
  }
  // Many threads decoding overlapping ranges of one decoder at once.
  TbbExecutor tbb(4);
  std::vector<int> bad(400, 0);
  tbb.ParallelFor(400, [&](int64_t k) {
    const uint64_t b = (static_cast<uint64_t>(k) * 7919) % numel;
    const uint64_t len = std::min<uint64_t>(numel - b, 1 + (k * 131) % 5000);
    std::vector<float> part(len);
    dec->DecodeRange(b, absl::MakeSpan(part));
    for (uint64_t i = 0; i < len; ++i) bad[k] += Bits(part[i]) != Bits(all[b + i]);
  });
  EXPECT_EQ(std::count(bad.begin(), bad.end(), 0), 400);
}

TEST(Hc1Encode, TinyNonFiniteAndFallbackStayRaw) {
  InlineExecutor ex;
  HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateCodec("hc1", {}));
  for (int64_t numel : {1, 2, 9}) {
    const std::vector<float> x(numel, 0.5f);
    HC_ASSERT_OK_AND_ASSIGN(EncodedTensor e,
                            codec->Encode(FlatTensorInfo(DType::kF32, numel), F32Bytes(x), ex));
    EXPECT_TRUE(e.raw);
    EXPECT_EQ(e.raw_reason, "numel<10");
    EXPECT_TRUE(e.parts.empty());
  }
  std::vector<float> x = Weights(100, 1);
  x[17] = INFINITY;
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor e, codec->Encode(FlatTensorInfo(DType::kF32, 100), F32Bytes(x), ex));
  EXPECT_TRUE(e.raw);
  EXPECT_EQ(e.raw_reason, "non-finite values");
  // Wide weights: mean error far above 0.006 with the llm preset, fine with it off.
  const std::vector<float> wide = Weights(1000, 2, 1.0);
  HC_ASSERT_OK_AND_ASSIGN(e, codec->Encode(FlatTensorInfo(DType::kF32, 1000), F32Bytes(wide), ex));
  EXPECT_TRUE(e.raw);
  EXPECT_THAT(e.raw_reason, HasSubstr("> fallback_mae 0.006"));
  HC_ASSERT_OK_AND_ASSIGN(auto off, CreateCodec("hc1", {{"fallback_mae", "0"}}));
  HC_ASSERT_OK_AND_ASSIGN(e, off->Encode(FlatTensorInfo(DType::kF32, 1000), F32Bytes(wide), ex));
  EXPECT_FALSE(e.raw);
  // Integer dtypes are not for codecs.
  EXPECT_THAT(codec->Encode(FlatTensorInfo(DType::kI32, 100), std::vector<uint8_t>(400), ex),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("I32")));
}

TEST(Hc1Encode, HalfAndBFloat16AreWidenedExactly) {
  // An F16 (BF16) tensor encodes exactly like the F32 tensor of its widened values.
  InlineExecutor ex;
  TbbExecutor tbb(2);
  HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateCodec("hc1", {{"fallback_mae", "0"}}));
  for (DType dt : {DType::kF16, DType::kBF16}) {
    for (int64_t numel : {int64_t{11}, int64_t{20000}, int64_t{65537}}) {
      const std::vector<float> x = Weights(numel, 9);
      std::vector<uint8_t> narrow(numel * 2);
      NarrowFromF32(dt, x.data(), numel, narrow.data());
      std::vector<float> wide(numel);
      WidenToF32(dt, narrow.data(), numel, wide.data());
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, codec->Encode(FlatTensorInfo(dt, numel), narrow, ex));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b,
                              codec->Encode(FlatTensorInfo(DType::kF32, numel), F32Bytes(wide), ex));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor c, codec->Encode(FlatTensorInfo(dt, numel), narrow, tbb));
      EXPECT_TRUE(SameEncoding(a, b)) << DTypeName(dt) << " " << numel;
      EXPECT_TRUE(SameEncoding(a, c)) << DTypeName(dt) << " " << numel;
      const std::vector<float> y = DecodeAll(FlatTensorInfo(dt, numel), a);
      double sum = 0;
      for (int64_t i = 0; i < numel; ++i) sum += std::abs(static_cast<double>(y[i]) - wide[i]);
      EXPECT_LT(sum / numel, 0.01);
    }
  }
}

TEST(Hc1Encode, SeveralCodebookSizes) {
  // n list: the first size within loss_max wins; none within it: the smallest error.
  InlineExecutor ex;
  const std::vector<float> x = Weights(20000, 4);
  const TensorInfo info = FlatTensorInfo(DType::kF32, 20000);
  HC_ASSERT_OK_AND_ASSIGN(auto loose, CreateCodec("hc1", {{"n", "225,1600"}, {"loss_max", "1"}}));
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, loose->Encode(info, F32Bytes(x), ex));
  EXPECT_EQ(*a.params.Find("n")->as_int64(), 225);
  EXPECT_EQ(*a.params.Find("num_inner_index")->as_int64(), 0);
  HC_ASSERT_OK_AND_ASSIGN(auto tight,
                          CreateCodec("hc1", {{"n", "225,1600,400"}, {"loss_max", "0"}}));
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b, tight->Encode(info, F32Bytes(x), ex));
  EXPECT_EQ(*b.params.Find("n")->as_int64(), 1600);
  EXPECT_EQ(*b.params.Find("num_inner_index")->as_int64(), 1);
  const std::vector<float> y = DecodeAll(info, b);
  EXPECT_EQ(y.size(), x.size());
}

TEST(Hc1Decode, RejectsInconsistentParamsAndParts) {
  InlineExecutor ex;
  const std::vector<float> x = Weights(1000, 5);
  const TensorInfo info = FlatTensorInfo(DType::kF32, 1000);
  HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateCodec("hc1", {}));
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, F32Bytes(x), ex));
  ASSERT_FALSE(enc.raw);
  EXPECT_THAT(codec->PrepareDecoder(info, enc.params, Views(enc)), IsOk());
  auto with = [&](const std::string& key, JsonValue v) {
    JsonValue p = JsonValue::Object();
    for (const auto& [k, old] : enc.params.members()) p.Add(k, k == key ? v : old);
    return p;
  };
  const auto loss = absl::StatusCode::kDataLoss;
  EXPECT_THAT(codec->PrepareDecoder(info, with("L", JsonValue::Number(-1)), Views(enc)),
              StatusIs(loss, HasSubstr("L")));
  EXPECT_THAT(codec->PrepareDecoder(info, with("n", JsonValue::Int(0)), Views(enc)),
              StatusIs(loss, HasSubstr("n")));
  EXPECT_THAT(codec->PrepareDecoder(info, with("K", JsonValue::String("3")), Views(enc)),
              StatusIs(loss, HasSubstr("K")));
  EXPECT_THAT(codec->PrepareDecoder(info, with("uint_i", JsonValue::Int(31)), Views(enc)),
              StatusIs(loss, HasSubstr("uint_i")));
  EXPECT_THAT(codec->PrepareDecoder(info, with("z", JsonValue::Int(8)), Views(enc)),
              StatusIs(loss, HasSubstr("z")));
  auto views = Views(enc);
  views[0].bytes = views[0].bytes.subspan(1);
  EXPECT_THAT(codec->PrepareDecoder(info, enc.params, views), StatusIs(loss, HasSubstr("codes")));
  views = Views(enc);
  views[1].dtype = DType::kF16;
  EXPECT_THAT(codec->PrepareDecoder(info, enc.params, views), StatusIs(loss, HasSubstr("side")));
  views = Views(enc);
  views.pop_back();
  EXPECT_THAT(codec->PrepareDecoder(info, enc.params, views), StatusIs(loss, ::testing::_));
}

}  // namespace
}  // namespace hc

namespace hc {
namespace {

// ---------------------------------------------------------------------------------------------
// A plain, slow re-statement of the encoder (spec-hc1.md section 5) as an oracle: brute-force
// lookups, long double error sums, one trial at a time. The codec must produce the same stream
// for any options, including several n, class_max above the codec's trial batch and early
// stops at every k.

struct OracleResult {
  bool raw = false;
  int64_t n = 0;
  int K = 0;
  std::vector<uint8_t> codes;
};

OracleResult Oracle(std::vector<float> x, const Hc1Options& o) {
  const int64_t numel = static_cast<int64_t>(x.size());
  if (numel % 2) x.push_back(hc1::NumpyMeanF32(x.data(), numel, 1));
  const int64_t M = static_cast<int64_t>(x.size()) / 2;
  const float cx = hc1::NumpyMeanF32(x.data(), M, 2), cy = hc1::NumpyMeanF32(x.data() + 1, M, 2);
  const double h = o.L / 2;
  const float lox = static_cast<float>(cx - h), hix = static_cast<float>(cx + h);
  const float loy = static_cast<float>(cy - h), hiy = static_cast<float>(cy + h);
  std::vector<float> d(M);
  std::vector<bool> inner(M);
  float D = -1;
  for (int64_t i = 0; i < M; ++i) {
    const float dx = x[2 * i] - cx, dy = x[2 * i + 1] - cy;
    d[i] = std::sqrt(dx * dx + dy * dy);
    D = std::max(D, d[i]);
    inner[i] = lox <= x[2 * i] && x[2 * i] <= hix && loy <= x[2 * i + 1] && x[2 * i + 1] <= hiy;
  }
  const bool any_outer = std::find(inner.begin(), inner.end(), false) != inner.end();
  OracleResult best_result;
  long double best_n_mae = 0;
  for (size_t ni = 0; ni < o.n.size(); ++ni) {
    const int64_t n = o.n[ni];
    const hc1::Codebook cb(hc1::Layout::Get(o.L, n), cx, cy);
    auto ring_radii = [&](int k) {
      std::vector<double> r(k + 1);
      const double each = (static_cast<double>(D) - h) / k;
      for (int i = 0; i <= k; ++i) r[i] = static_cast<double>(i) * each + h;
      r[k] = D;
      return r;
    };
    auto cls_of = [&](const std::vector<double>& r, int k, int64_t i) {
      int c = 1;
      while (c < k && !(static_cast<double>(d[i]) <= r[c])) ++c;
      return c;
    };
    int K = 0;
    if (any_outer) {
      long double best = INFINITY;
      for (int k = 1; k <= o.class_max; ++k) {
        const std::vector<double> r = ring_radii(k);
        long double sum = 0;
        for (int64_t i = 0; i < M; ++i) {
          const double px = x[2 * i], py = x[2 * i + 1];
          if (inner[i]) {
            const uint32_t j = cb.NearestBruteForce(px, py);
            sum += std::abs(cb.x(j) - px) + std::abs(cb.y(j) - py);
            continue;
          }
          const int c = cls_of(r, k, i);
          const double f = h / r[c];
          const uint32_t j =
              cb.NearestBruteForce(static_cast<float>(x[2 * i] - cx) * f + cb.cx(),
                                   static_cast<float>(x[2 * i + 1] - cy) * f + cb.cy());
          sum += std::abs((cb.x(j) - cb.cx()) / f + cb.cx() - px) +
                 std::abs((cb.y(j) - cb.cy()) / f + cb.cy() - py);
        }
        const long double mae = sum / (2 * M);
        if (mae <= best) {
          best = mae;
          K = k;
        }
        if (mae <= o.loss_threshold) break;
      }
    }
    std::vector<uint32_t> codes(M);
    long double err = 0;
    const std::vector<double> r = ring_radii(std::max(K, 1));
    for (int64_t i = 0; i < M; ++i) {
      const double px = x[2 * i], py = x[2 * i + 1];
      uint32_t j;
      int c = 0;
      double f = 1;
      if (K == 0) {
        j = cb.NearestBruteForce(px, py);
      } else {
        if (!inner[i]) {
          c = cls_of(r, K, i);
          f = h / r[c];
        }
        j = cb.NearestBruteForce(static_cast<float>(x[2 * i] - cx) * f + cb.cx(),
                                 static_cast<float>(x[2 * i + 1] - cy) * f + cb.cy());
      }
      codes[i] = j + static_cast<uint32_t>((n + 1) * c);
      const double rx = K == 0 ? cb.x(j) : (cb.x(j) - cb.cx()) / f + cb.cx();
      const double ry = K == 0 ? cb.y(j) : (cb.y(j) - cb.cy()) / f + cb.cy();
      err += std::abs(rx - px);
      if (2 * i + 1 < numel) err += std::abs(ry - py);
    }
    const long double mae = err / numel;
    if (ni == 0 || mae <= o.loss_max || mae < best_n_mae) {
      const uint32_t mx = *std::max_element(codes.begin(), codes.end());
      const int w = mx == 0 ? 1 : 32 - __builtin_clz(mx);
      const int z = static_cast<int>((8 - (M * w) % 8) % 8);
      best_result.codes.assign(PackedBytes(M, w, z), 0);
      PackMsbFirst(codes, w, z, absl::MakeSpan(best_result.codes));
      best_result.n = n;
      best_result.K = K;
      best_result.raw = o.fallback_mae > 0 && mae > o.fallback_mae;
      best_n_mae = mae;
    }
    if (mae <= o.loss_max) break;
  }
  return best_result;
}

TEST(Hc1Oracle, RandomTensorsAndOptionsMatchAPlainReimplementation) {
  std::mt19937_64 rng(2024);
  InlineExecutor inline_ex;
  TbbExecutor tbb(2);
  const std::vector<CodecOptions> option_sets = {
      {},
      {{"preset", "unet"}},
      {{"preset", "mobilenet"}},
      {{"class_max", "9"}, {"fallback_mae", "0"}},
      {{"class_max", "6"}, {"loss_threshold", "0.02"}, {"fallback_mae", "0"}},
      {{"n", "100,400,30"}, {"loss_max", "0.004"}, {"class_max", "2"}, {"fallback_mae", "0"}},
      {{"n", "50,7"}, {"loss_max", "0"}, {"L", "0.3"}, {"fallback_mae", "0"}},
  };
  int cases = 0, raw = 0;
  for (int round = 0; round < 6; ++round) {
    for (const CodecOptions& opts : option_sets) {
      const int64_t numel = 10 + static_cast<int64_t>(rng() % (round < 3 ? 300 : 20000));
      const double scale = std::ldexp(1.0, -7 + static_cast<int>(rng() % 8));
      std::vector<float> x = Weights(numel, rng(), scale);
      HC_ASSERT_OK_AND_ASSIGN(Hc1Options o, Hc1Options::FromCodecOptions(opts));
      HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateHc1Codec(opts));
      const TensorInfo info = FlatTensorInfo(DType::kF32, numel);
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, codec->Encode(info, F32Bytes(x), inline_ex));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b, codec->Encode(info, F32Bytes(x), tbb));
      EXPECT_TRUE(SameEncoding(a, b));
      const OracleResult want = Oracle(x, o);
      ASSERT_EQ(a.raw, want.raw) << "numel " << numel << " scale " << scale << " round " << round;
      raw += a.raw;
      ++cases;
      if (a.raw) continue;
      EXPECT_EQ(*a.params.Find("n")->as_int64(), want.n) << numel;
      EXPECT_EQ(*a.params.Find("K")->as_int64(), want.K) << numel;
      EXPECT_EQ(a.parts[0].bytes, want.codes) << "numel " << numel << " scale " << scale;
    }
  }
  EXPECT_EQ(cases, 42);
  EXPECT_GT(raw, 0);
  EXPECT_LT(raw, cases);
}

}  // namespace
}  // namespace hc
