// hc2's per-row dc correction (core/format/spec-hc2.md 5.6): decoded row means match the
// original's to within the unit's rounding (and do not without the part), the correction never
// raises the error, random access and every thread count agree, malformed parts are data loss,
// and dc=false keeps the previous encoder's stream.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/codec/codec.h"
#include "core/codec/hc2.h"
#include "core/codec/hc2_rows.h"
#include "core/io/safetensors_file.h"
#include "core/pipeline/tbb_executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

// hc2 with the option on unless `o` says otherwise (its default is off).
std::unique_ptr<Codec> MakeHc2(CodecOptions o) {
  if (!o.Get("dc")) o.Set("dc", "true");
  auto c = CreateCodec("hc2", o);
  EXPECT_THAT(c, IsOk());
  return c.ok() ? std::move(c).value() : nullptr;
}

std::vector<PartView> Views(const EncodedTensor& enc, bool with_dc = true) {
  std::vector<PartView> v = PartViews(enc);
  if (!with_dc) std::erase_if(v, [](const PartView& p) { return p.suffix == "dc"; });
  return v;
}

const EncodedPart* Part(const EncodedTensor& enc, const std::string& suffix) {
  for (const EncodedPart& p : enc.parts) {
    if (p.suffix == suffix) return &p;
  }
  return nullptr;
}

TensorInfo Info(DType dtype, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  TensorInfo info = testing::FlatTensorInfo(dtype, n);
  info.shape = std::move(shape);
  return info;
}

// Rows of Gaussian weights with a per-row mean and spread (like trained layers: rows of
// different sizes, some far from zero mean).
std::vector<float> RowsOfWeights(int64_t rows, int64_t len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<float> x(rows * len);
  for (int64_t r = 0; r < rows; ++r) {
    const double scale = 0.02 * std::exp2(static_cast<double>(r % 5) - 2.0);
    const double mean = scale * 0.3 * g(rng);
    for (int64_t j = 0; j < len; ++j) x[r * len + j] = static_cast<float>(mean + scale * g(rng));
  }
  return x;
}

std::vector<float> Decode(const Codec& codec, const TensorInfo& info, const EncodedTensor& enc,
                          bool with_dc = true) {
  std::vector<float> y(info.numel, std::nanf(""));
  auto dec = codec.PrepareDecoder(info, enc.params, Views(enc, with_dc));
  EXPECT_THAT(dec, IsOk());
  if (dec.ok()) (*dec)->DecodeRange(0, absl::MakeSpan(y));
  return y;
}

double Mse(const std::vector<float>& x, const std::vector<float>& y) {
  long double s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    s += (static_cast<long double>(y[i]) - x[i]) * (static_cast<long double>(y[i]) - x[i]);
  }
  return static_cast<double>(s / x.size());
}

// The unit of row r (spec-hc2.md 5.6), from the record.
float Unit(const EncodedTensor& enc, int64_t r, int64_t len) {
  const EncodedPart* rows = Part(enc, "rows");
  const float m = rows != nullptr ? hc2::RowMultiplier(rows->bytes[r]) : 1.0f;
  return hc2::DcUnit(static_cast<float>(enc.params.Find("step")->number()), m, len);
}

struct Shape {
  int64_t rows, len;
  std::vector<int64_t> dims;
};
// Depthwise 3x3 and 5x5, rows that straddle blocks, block-aligned rows, and one tensor over
// several chunks.
const Shape kShapes[] = {{64, 9, {64, 1, 3, 3}},      {240, 25, {240, 1, 5, 5}},
                         {270, 1000, {270, 1000}},   {512, 256, {512, 256}},
                         {96, 72, {96, 8, 3, 3}},    {40, 9000, {40, 9000}}};

// The byte's values (V of 5.6) and the encoder's choice of the nearest one.
TEST(Hc2DcTest, BytesAreCompandedAndChosenNearest) {
  EXPECT_EQ(hc2::DcUnits(0), 0);
  EXPECT_EQ(hc2::DcUnits(64), 64);
  EXPECT_EQ(hc2::DcUnits(65), 72);
  EXPECT_EQ(hc2::DcUnits(127), 568);
  EXPECT_EQ(hc2::DcUnits(-127), -568);
  EXPECT_EQ(hc2::DcUnits(-3), -3);
  for (int c = -126; c <= 127; ++c) EXPECT_GT(hc2::DcUnits(c), hc2::DcUnits(c - 1)) << c;
  for (double q = -700; q <= 700; q += 0.37) {
    const int c = hc2::DcByte(q);
    ASSERT_GE(c, -127);
    ASSERT_LE(c, 127);
    double best = 1e9;
    for (int k = -127; k <= 127; ++k) best = std::min(best, std::abs(q - hc2::DcUnits(k)));
    ASSERT_LE(std::abs(q - hc2::DcUnits(c)), best + 1e-9) << q;
  }
  EXPECT_EQ(hc2::DcByte(1e30), 127);
  EXPECT_EQ(hc2::DcByte(-1e30), -127);
}

TEST(Hc2DcTest, RowMeansMatchTheOriginalOnlyWithThePart) {
  InlineExecutor ex;
  for (const char* bpw : {"4.25", "2.5"}) {
    auto codec = MakeHc2({{"bpw", bpw}});
    ASSERT_NE(codec, nullptr);
    for (const Shape& s : kShapes) {
      SCOPED_TRACE(absl::StrCat(s.rows, "x", s.len, " bpw ", bpw));
      const TensorInfo info = Info(DType::kF32, s.dims);
      const std::vector<float> x = RowsOfWeights(s.rows, s.len, s.rows + s.len);
      const std::vector<uint8_t> bytes(reinterpret_cast<const uint8_t*>(x.data()),
                                       reinterpret_cast<const uint8_t*>(x.data() + x.size()));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, bytes, ex));
      ASSERT_FALSE(enc.raw);
      const EncodedPart* dc = Part(enc, "dc");
      ASSERT_NE(dc, nullptr);
      EXPECT_EQ(dc->dtype, DType::kI8);
      EXPECT_EQ(dc->shape, std::vector<int64_t>{s.rows});
      EXPECT_LE(8.0 * [&] {
        uint64_t b = 0;
        for (const EncodedPart& p : enc.parts) b += p.bytes.size();
        return b;
      }() / info.numel, std::stod(bpw));
      const std::vector<float> y = Decode(*codec, info, enc), y0 = Decode(*codec, info, enc, false);
      int64_t off_without = 0, nonzero = 0, coarse = 0;
      for (int64_t r = 0; r < s.rows; ++r) {
        long double e = 0, e0 = 0, big = 0;
        for (int64_t j = r * s.len; j < (r + 1) * s.len; ++j) {
          e += static_cast<long double>(y[j]) - x[j];
          e0 += static_cast<long double>(y0[j]) - x[j];
          big = std::max<long double>(big, std::abs(y[j]));
        }
        const double u = Unit(enc, r, s.len);
        // Within half a unit (half of 8 units from 64 on), plus the rounding of each addition.
        const int c = static_cast<int8_t>(dc->bytes[r]);
        ASSERT_LT(std::abs(c), 127) << "row " << r;  // never clamped here
        const double tol =
            (std::abs(c) >= 64 ? 4.0 : 0.5) * u + static_cast<double>(big) * 0x1p-24 + 1e-3 * u;
        coarse += std::abs(c) > 64;
        ASSERT_LE(std::abs(static_cast<double>(e / s.len)), tol)
            << "row " << r << " c " << c << " u " << u << " without " << e0 / s.len / u;
        off_without += std::abs(static_cast<double>(e0 / s.len)) > 2 * u;
        nonzero += static_cast<int8_t>(dc->bytes[r]) != 0;
      }
      std::printf("%ldx%ld at %s bpw: %ld of %ld rows past 64 units\n", static_cast<long>(s.rows),
                  static_cast<long>(s.len), bpw, static_cast<long>(coarse),
                  static_cast<long>(s.rows));
      // The rows' mean errors are a dozen units without the part: most rows are off.
      EXPECT_GT(off_without, s.rows / 2);
      EXPECT_GT(nonzero, s.rows / 2);
      EXPECT_LE(Mse(x, y), Mse(x, y0));
    }
  }
}

// On real tensors (every coded tensor of the OCR model with rows): the correction lowers each
// tensor's MSE at the same stream, and the rows' mean errors fall by an order of magnitude.
TEST(Hc2DcTest, RealTensorsMseNeverRises) {
  const std::string path = testing::ModelPath("ppocrv4-rec-f32.safetensors");
  HC_ASSERT_OK_AND_ASSIGN(auto file, SafetensorsFile::Open(path));
  TbbExecutor ex(2);
  auto codec = MakeHc2({{"bpw", "3.5"}});
  ASSERT_NE(codec, nullptr);
  int tested = 0;
  double mean_err_with = 0, mean_err_without = 0;
  int64_t rows = 0;
  for (size_t i = 0; i < file->header().tensors.size(); ++i) {
    const TensorInfo& info = file->header().tensors[i];
    if (info.shape.size() < 2 || info.numel < 2048 || info.dtype != DType::kF32) continue;
    SCOPED_TRACE(info.name);
    HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, file->TensorData(i), ex));
    if (enc.raw) continue;
    ASSERT_NE(Part(enc, "dc"), nullptr);
    std::vector<float> x(info.numel);
    WidenToF32(info.dtype, file->TensorData(i).data(), x.size(), x.data());
    const std::vector<float> y = Decode(*codec, info, enc), y0 = Decode(*codec, info, enc, false);
    EXPECT_LE(Mse(x, y), Mse(x, y0));
    const int64_t R = info.shape[0], L = static_cast<int64_t>(info.numel) / R;
    rows += R;
    for (int64_t r = 0; r < R; ++r) {
      long double e = 0, e0 = 0;
      for (int64_t j = r * L; j < (r + 1) * L; ++j) e += y[j] - x[j], e0 += y0[j] - x[j];
      mean_err_with += std::abs(static_cast<double>(e)) / L / Unit(enc, r, L);
      mean_err_without += std::abs(static_cast<double>(e0)) / L / Unit(enc, r, L);
    }
    ++tested;
  }
  EXPECT_GE(tested, 30);
  std::printf("mean |row error| in units: %.3f with dc, %.3f without\n", mean_err_with / rows,
              mean_err_without / rows);
  EXPECT_LT(mean_err_with / rows, 0.5);
  EXPECT_LT(mean_err_with * 10, mean_err_without);
}

TEST(Hc2DcTest, DecodeRangeEqualsTheWholeDecode) {
  InlineExecutor ex;
  auto codec = MakeHc2({});
  ASSERT_NE(codec, nullptr);
  std::mt19937_64 rng(3);
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(absl::StrCat(s.rows, "x", s.len));
    const TensorInfo info = Info(DType::kF16, s.dims);
    const std::vector<float> x = RowsOfWeights(s.rows, s.len, 11 * s.rows);
    std::vector<uint8_t> bytes(2 * x.size());
    NarrowFromF32(DType::kF16, x.data(), x.size(), bytes.data());
    HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, bytes, ex));
    ASSERT_NE(Part(enc, "dc"), nullptr);
    const std::vector<float> full = Decode(*codec, info, enc);
    HC_ASSERT_OK_AND_ASSIGN(auto dec, codec->PrepareDecoder(info, enc.params, Views(enc)));
    const uint64_t n = info.numel;
    for (int k = 0; k < 40; ++k) {
      const uint64_t b = k == 0 ? 0 : rng() % n, e = k == 0 ? n : b + 1 + rng() % (n - b);
      std::vector<float> part(e - b);
      dec->DecodeRange(b, absl::MakeSpan(part));
      ASSERT_TRUE(std::equal(part.begin(), part.end(), full.begin() + b)) << b << ".." << e;
    }
  }
}

TEST(Hc2DcTest, SameBytesWithOneAndTwoThreads) {
  TbbExecutor one(1), two(2);
  InlineExecutor inl;
  auto codec = MakeHc2({});
  ASSERT_NE(codec, nullptr);
  for (const Shape& s : kShapes) {
    SCOPED_TRACE(absl::StrCat(s.rows, "x", s.len));
    const TensorInfo info = Info(DType::kF32, s.dims);
    const std::vector<float> x = RowsOfWeights(s.rows, s.len, 5);
    const std::vector<uint8_t> bytes(reinterpret_cast<const uint8_t*>(x.data()),
                                     reinterpret_cast<const uint8_t*>(x.data() + x.size()));
    HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, codec->Encode(info, bytes, one));
    HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b, codec->Encode(info, bytes, two));
    HC_ASSERT_OK_AND_ASSIGN(EncodedTensor c, codec->Encode(info, bytes, inl));
    EXPECT_EQ(a.params.Dump(), b.params.Dump());
    ASSERT_EQ(a.parts.size(), b.parts.size());
    ASSERT_EQ(a.parts.size(), c.parts.size());
    for (size_t i = 0; i < a.parts.size(); ++i) {
      EXPECT_EQ(a.parts[i].suffix, b.parts[i].suffix);
      EXPECT_TRUE(a.parts[i].bytes == b.parts[i].bytes) << a.parts[i].suffix;
      EXPECT_TRUE(a.parts[i].bytes == c.parts[i].bytes) << a.parts[i].suffix;
    }
  }
}

// dc=false writes what encoders before the option wrote: no part, no option listed, and the
// stream the dc=true encoder codes when given the part's bytes on top of its budget.
TEST(Hc2DcTest, DcFalseIsThePreviousEncoder) {
  InlineExecutor ex;
  const Shape s = kShapes[2];
  const TensorInfo info = Info(DType::kF32, s.dims);
  const std::vector<float> x = RowsOfWeights(s.rows, s.len, 9);
  const std::vector<uint8_t> bytes(reinterpret_cast<const uint8_t*>(x.data()),
                                   reinterpret_cast<const uint8_t*>(x.data() + x.size()));
  auto off = MakeHc2({{"bpw", "4"}, {"dc", "false"}});
  ASSERT_NE(off, nullptr);
  EXPECT_EQ(off->OptionsJson().Find("dc"), nullptr);
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, off->Encode(info, bytes, ex));
  EXPECT_EQ(Part(a, "dc"), nullptr);
  ASSERT_NE(Part(a, "rows"), nullptr);
  EXPECT_EQ(a.parts.size(), 3u);
  // 4 + 8 R / N bits per weight, exactly representable: the same budget for the stream.
  const double more = 4.0 + 8.0 * s.rows / static_cast<double>(info.numel);
  auto on = MakeHc2({{"bpw", absl::StrCat(more)}});
  ASSERT_NE(on, nullptr);
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b, on->Encode(info, bytes, ex));
  ASSERT_NE(Part(b, "dc"), nullptr);
  EXPECT_EQ(a.params.Find("step")->number(), b.params.Find("step")->number());
  for (const char* p : {"stream", "index", "rows"}) {
    EXPECT_TRUE(Part(a, p)->bytes == Part(b, p)->bytes) << p;
  }
  // Fixed mode ignores the option.
  auto fixed = MakeHc2({{"mode", "fixed"}, {"dc", "true"}});
  ASSERT_NE(fixed, nullptr);
  EXPECT_EQ(fixed->OptionsJson().Find("dc"), nullptr);
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor f, fixed->Encode(info, bytes, ex));
  EXPECT_EQ(Part(f, "dc"), nullptr);
  EXPECT_THAT(CreateCodec("hc2", {{"dc", "maybe"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dc")));
}

TEST(Hc2DcTest, MalformedPartsAreDataLoss) {
  InlineExecutor ex;
  auto codec = MakeHc2({});
  ASSERT_NE(codec, nullptr);
  const Shape s = kShapes[1];
  const TensorInfo info = Info(DType::kF32, s.dims);
  const std::vector<float> x = RowsOfWeights(s.rows, s.len, 2);
  const std::vector<uint8_t> bytes(reinterpret_cast<const uint8_t*>(x.data()),
                                   reinterpret_cast<const uint8_t*>(x.data() + x.size()));
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, bytes, ex));
  const std::vector<PartView> good = Views(enc);
  ASSERT_THAT(codec->PrepareDecoder(info, enc.params, good), IsOk());
  auto prepare = [&](const TensorInfo& i, const std::vector<PartView>& parts) {
    return codec->PrepareDecoder(i, enc.params, parts).status();
  };
  const auto kDataLoss = absl::StatusCode::kDataLoss;
  auto with_dc = [&](PartView dc) {
    std::vector<PartView> v = Views(enc, false);
    v.push_back(dc);
    return v;
  };
  const PartView dc = *std::find_if(good.begin(), good.end(),
                                    [](const PartView& p) { return p.suffix == "dc"; });
  // Wrong dtype, short, long.
  PartView bad = dc;
  bad.dtype = DType::kU8;
  EXPECT_THAT(prepare(info, with_dc(bad)), StatusIs(kDataLoss, HasSubstr("\"dc\" must be I8")));
  const std::vector<uint8_t> longer = [&] {
    std::vector<uint8_t> v(dc.bytes.begin(), dc.bytes.end());
    v.push_back(0);
    return v;
  }();
  bad = dc;
  bad.bytes = longer;
  EXPECT_THAT(prepare(info, with_dc(bad)), StatusIs(kDataLoss, HasSubstr("\"dc\" must be I8")));
  bad.bytes = dc.bytes.subspan(0, dc.bytes.size() - 1);
  EXPECT_THAT(prepare(info, with_dc(bad)), StatusIs(kDataLoss, HasSubstr("\"dc\" must be I8")));
  // -128 is not a correction.
  std::vector<uint8_t> neg(dc.bytes.begin(), dc.bytes.end());
  neg[7] = 0x80;
  bad = dc;
  bad.bytes = neg;
  EXPECT_THAT(prepare(info, with_dc(bad)), StatusIs(kDataLoss, HasSubstr("-127")));
  // Twice.
  std::vector<PartView> twice = good;
  twice.push_back(dc);
  EXPECT_THAT(prepare(info, twice), StatusIs(kDataLoss, HasSubstr("parts")));
  // On a tensor without rows: flat, one row, rows of 4 weights.
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{6000}, std::vector<int64_t>{1, 6000}, std::vector<int64_t>{1500, 4}}) {
    const TensorInfo flat = Info(DType::kF32, shape);
    std::vector<PartView> v;
    for (const PartView& p : good) {
      if (p.suffix != "rows") v.push_back(p);
    }
    EXPECT_THAT(prepare(flat, v), StatusIs(kDataLoss, HasSubstr("\"dc\" on a tensor")))
        << shape.size() << " " << shape[0];
  }
}

}  // namespace
}  // namespace hc
