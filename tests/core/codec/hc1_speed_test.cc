// hc1 encoder shortcuts: the early stop of the fallback (spec-hc1.md 5.8) decides exactly as the
// full encode does, and the same way for every thread count.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/codec/codec.h"
#include "core/codec/hc1.h"
#include "core/pipeline/tbb_executor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TensorInfo Info(int64_t numel) {
  TensorInfo info;
  info.name = std::string(1, 't');
  info.dtype = DType::kF32;
  info.shape = {numel};
  info.numel = static_cast<uint64_t>(numel);
  info.begin = 0;
  info.end = info.numel * 4;
  return info;
}

std::vector<uint8_t> Bytes(const std::vector<float>& x) {
  std::vector<uint8_t> b(x.size() * 4);
  std::memcpy(b.data(), x.data(), b.size());
  return b;
}

// Weights whose spread changes along the tensor (like per-channel scales), so that the error of
// the first units says little about the rest.
std::vector<float> Weights(int64_t n, uint64_t seed, double scale, double drift) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const double s = scale * (1.0 + drift * static_cast<double>(i) / static_cast<double>(n));
    x[i] = static_cast<float>(i % 997 == 3 ? g(rng) * s * 30 : g(rng) * s);
  }
  return x;
}

TEST(Hc1EarlyStop, SameDecisionsAsTheFullEncodeOnEveryExecutor) {
  InlineExecutor inline_ex;
  TbbExecutor tbb2(2), tbb3(3);
  int early = 0, late = 0, coded = 0;
  for (const auto& [opts_name, extra] :
       std::vector<std::pair<std::string, CodecOptions>>{
           {"llm", {}},
           {"llm n list", {{"n", "400,1600"}, {"loss_max", "0.001"}}},
           {"llm class_max 4", {{"class_max", "4"}}},
           {"llm class_max 6 (no early stop)", {{"class_max", "6"}}}}) {
    CodecOptions on = extra, off = extra;
    off.Set("fallback_mae", "0");
    HC_ASSERT_OK_AND_ASSIGN(auto codec_on, CreateCodec("hc1", on));
    HC_ASSERT_OK_AND_ASSIGN(auto codec_off, CreateCodec("hc1", off));
    uint64_t seed = 1;
    for (int64_t numel : {int64_t{20001}, int64_t{70000}, int64_t{400001}}) {
      // Scales from clearly coded through borderline to clearly raw.
      for (double scale : {0.004, 0.0075, 0.009, 0.011, 0.02, 0.05}) {
        for (double drift : {0.0, 3.0}) {
          const std::vector<float> x = Weights(numel, ++seed, scale, drift);
          const auto bytes = Bytes(x);
          HC_ASSERT_OK_AND_ASSIGN(EncodedTensor full, codec_off->Encode(Info(numel), bytes,
                                                                        inline_ex));
          ASSERT_FALSE(full.raw);
          const double mae = full.params.Find("mae")->number();
          HC_ASSERT_OK_AND_ASSIGN(EncodedTensor a, codec_on->Encode(Info(numel), bytes, inline_ex));
          HC_ASSERT_OK_AND_ASSIGN(EncodedTensor b, codec_on->Encode(Info(numel), bytes, tbb2));
          HC_ASSERT_OK_AND_ASSIGN(EncodedTensor c, codec_on->Encode(Info(numel), bytes, tbb3));
          const std::string what =
              absl::StrCat(opts_name, " numel ", numel, " scale ", scale, " drift ", drift);
          EXPECT_EQ(a.raw, b.raw) << what;
          EXPECT_EQ(a.raw_reason, b.raw_reason) << what;
          EXPECT_EQ(a.raw_reason, c.raw_reason) << what;
          // The full encode's decision (with the n list: that of the n it picks).
          EXPECT_EQ(a.raw, mae > 0.006) << what << " mae " << mae;
          if (!a.raw) {
            ++coded;
            if (extra.empty()) {
              EXPECT_EQ(a.params.Dump(), full.params.Dump()) << what;
              ASSERT_EQ(a.parts.size(), full.parts.size());
              EXPECT_EQ(a.parts[0].bytes, full.parts[0].bytes) << what;
            }
            continue;
          }
          EXPECT_THAT(a.raw_reason, StartsWith("mean error ")) << what;
          EXPECT_THAT(a.raw_reason, HasSubstr("> fallback_mae 0.006")) << what;
          if (absl::StrContains(a.raw_reason, "lower bound")) {
            ++early;
            EXPECT_THAT(opts_name, ::testing::Not(HasSubstr("no early stop")));
          } else {
            ++late;
            EXPECT_EQ(a.raw_reason, absl::StrCat("mean error ", mae, " > fallback_mae 0.006"))
                << what;
          }
        }
      }
    }
  }
  EXPECT_GT(early, 10);
  EXPECT_GT(late, 0);
  EXPECT_GT(coded, 10);
}

}  // namespace
}  // namespace hc
