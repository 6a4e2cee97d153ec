// rtn unit tests: round-trip error bound, bits-per-weight arithmetic, option errors, executor
// independence.
#include "core/codec/rtn.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/base/dtype.h"
#include "core/codec/codec.h"
#include "core/pipeline/tbb_executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

using ::hc::testing::FlatTensorInfo;

std::vector<float> Values(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 0.05);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 777 == 3 ? g(rng) * 30 : g(rng));
  return x;
}

std::vector<uint8_t> Bytes(const std::vector<float>& x) {
  std::vector<uint8_t> b(x.size() * 4);
  std::memcpy(b.data(), x.data(), b.size());
  return b;
}

std::vector<PartView> Views(const EncodedTensor& enc) {
  std::vector<PartView> v;
  for (const EncodedPart& p : enc.parts) v.push_back({p.suffix, p.dtype, p.shape, p.bytes});
  return v;
}

float Half(uint16_t h) { return HalfToFloat(h); }

TEST(Rtn, RoundTripWithinHalfAStep) {
  // |x - x'| <= s/2 plus the F16 rounding of the zero m and the float arithmetic.
  InlineExecutor ex;
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t group : {1, 7, 128, 1000}) {
      const int64_t n = 12345;
      const std::vector<float> x = Values(n, bits * 1000 + group);
      HC_ASSERT_OK_AND_ASSIGN(auto codec,
                              CreateCodec("rtn", {{"bits", std::to_string(bits)},
                                                  {"group_size", std::to_string(group)}}));
      const TensorInfo info = FlatTensorInfo(DType::kF32, n);
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, Bytes(x), ex));
      ASSERT_FALSE(enc.raw);
      HC_ASSERT_OK_AND_ASSIGN(auto dec, codec->PrepareDecoder(info, enc.params, Views(enc)));
      std::vector<float> y(n);
      dec->DecodeRange(0, absl::MakeSpan(y));
      const uint8_t* sc = enc.parts[1].bytes.data();
      const uint32_t qmax = (1u << bits) - 1;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t g = i / group;
        const float s = Half(static_cast<uint16_t>(sc[4 * g] | sc[4 * g + 1] << 8));
        const float m = Half(static_cast<uint16_t>(sc[4 * g + 2] | sc[4 * g + 3] << 8));
        // Inside [m, m + qmax * s] the error is at most s/2; the F16 rounding of s and m
        // (2^-11 relative each) can leave the group's ends up to that much outside.
        const double f16 = std::ldexp(1.0, -10) * (std::abs(m) + qmax * std::abs(s)) + 1e-6;
        ASSERT_LE(std::abs(static_cast<double>(y[i]) - x[i]), s / 2 + f16)
            << "bits " << bits << " group " << group << " i " << i;
      }
      // Random access agrees with the whole decode.
      for (uint64_t b : {uint64_t{1}, uint64_t{129}, uint64_t{n - 5}}) {
        std::vector<float> part(5);
        dec->DecodeRange(b, absl::MakeSpan(part));
        for (int k = 0; k < 5; ++k) ASSERT_EQ(part[k], y[b + k]);
      }
    }
  }
}

TEST(Rtn, BitsPerWeightArithmetic) {
  InlineExecutor ex;
  const struct {
    int bits;
    int64_t group, numel;
  } cases[] = {{4, 128, 128 * 1000}, {4, 128, 1001}, {3, 64, 999}, {8, 1, 17}, {2, 1000, 5}};
  for (const auto& c : cases) {
    HC_ASSERT_OK_AND_ASSIGN(auto codec,
                            CreateCodec("rtn", {{"bits", std::to_string(c.bits)},
                                                {"group_size", std::to_string(c.group)}}));
    HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(FlatTensorInfo(DType::kF32, c.numel),
                                                             Bytes(Values(c.numel, 1)), ex));
    ASSERT_EQ(enc.parts.size(), 2u);
    const int64_t groups = (c.numel + c.group - 1) / c.group;
    EXPECT_EQ(enc.parts[0].suffix, "codes");
    EXPECT_EQ(enc.parts[0].bytes.size(), static_cast<size_t>((c.numel * c.bits + 7) / 8));
    EXPECT_EQ(enc.parts[1].suffix, "scales");
    EXPECT_EQ(enc.parts[1].dtype, DType::kF16);
    EXPECT_EQ(enc.parts[1].shape, (std::vector<int64_t>{groups, 2}));
    EXPECT_EQ(enc.parts[1].bytes.size(), static_cast<size_t>(groups * 4));
    const double bpw =
        8.0 * static_cast<double>(enc.parts[0].bytes.size() + enc.parts[1].bytes.size()) / c.numel;
    if (c.numel % (8 * c.group) == 0) {
      EXPECT_DOUBLE_EQ(bpw, c.bits + 32.0 / c.group);
    }
    EXPECT_LE(bpw, c.bits + 32.0 / c.group + 8.0 / c.numel + 32.0 / c.numel + 1e-12);
  }
}

TEST(Rtn, OptionErrors) {
  EXPECT_THAT(CreateCodec("rtn", {{"bits", "1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bits")));
  EXPECT_THAT(CreateCodec("rtn", {{"bits", "9"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bits")));
  EXPECT_THAT(CreateCodec("rtn", {{"bits", "four"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bits")));
  EXPECT_THAT(CreateCodec("rtn", {{"group_size", "0"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group_size")));
  EXPECT_THAT(CreateCodec("rtn", {{"group_size", "2000000"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("group_size")));
  EXPECT_THAT(CreateCodec("rtn", {{"L", "0.1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"L\"")));
  EXPECT_THAT(CreateCodec("nope", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rtn")));
  HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateCodec("rtn", {}));
  EXPECT_EQ(codec->OptionsJson().Dump(), "{\"bits\":4,\"group_size\":128}");
  // The decoder checks what it is given.
  InlineExecutor ex;
  const TensorInfo info = FlatTensorInfo(DType::kF32, 1000);
  HC_ASSERT_OK_AND_ASSIGN(EncodedTensor enc, codec->Encode(info, Bytes(Values(1000, 2)), ex));
  EXPECT_THAT(codec->PrepareDecoder(info, enc.params, Views(enc)), IsOk());
  EXPECT_THAT(codec->PrepareDecoder(info, JsonValue::Object(), Views(enc)),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
  auto views = Views(enc);
  views[0].bytes = views[0].bytes.subspan(1);
  EXPECT_THAT(codec->PrepareDecoder(info, enc.params, views),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("codes")));
}

TEST(Rtn, SameBytesOnEveryExecutor) {
  InlineExecutor inline_ex;
  TbbExecutor tbb2(2), tbb4(4);
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t n : {int64_t{1}, int64_t{1000}, int64_t{1 << 20}, int64_t{(1 << 20) + 77}}) {
      const std::vector<float> x = Values(n, n);
      std::vector<uint8_t> bytes(n * DTypeSize(dt));
      NarrowFromF32(dt, x.data(), n, bytes.data());
      HC_ASSERT_OK_AND_ASSIGN(auto codec, CreateCodec("rtn", {}));
      const TensorInfo info = FlatTensorInfo(dt, n);
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, codec->Encode(info, bytes, inline_ex));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b, codec->Encode(info, bytes, tbb2));
      HC_ASSERT_OK_AND_ASSIGN(EncodedTensor c, codec->Encode(info, bytes, tbb4));
      ASSERT_EQ(a.parts.size(), b.parts.size());
      ASSERT_EQ(a.parts.size(), c.parts.size());
      EXPECT_EQ(a.params.Dump(), b.params.Dump());
      for (size_t i = 0; i < a.parts.size(); ++i) {
        EXPECT_EQ(a.parts[i].bytes, b.parts[i].bytes) << DTypeName(dt) << " " << n;
        EXPECT_EQ(a.parts[i].bytes, c.parts[i].bytes) << DTypeName(dt) << " " << n;
      }
    }
  }
}

}  // namespace
}  // namespace hc
