// hc2 on the real shared models: --target-bpw budgets, round trips, quality against rtn 4/128,
// determinism, and the --override planner.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "re2/re2.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::ModelPath;
using ::hc::testing::ReadAll;
using ::hc::testing::ScratchDir;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

CompressOptions Rtn4() {
  CompressOptions o;
  o.codec = "rtn";
  o.codec_options = {{"bits", "4"}, {"group_size", "128"}};
  o.sync = false;
  return o;
}
CompressOptions Hc2Target(double bpw, int threads = 0) {
  CompressOptions o;
  o.codec = "hc2";
  o.target_bpw = bpw;
  o.threads = threads;
  o.sync = false;
  return o;
}
CompressOptions Hc2Fixed(int bits) {
  CompressOptions o;
  o.codec = "hc2";
  o.codec_options = {{"mode", "fixed"}, {"bits", absl::StrCat(bits)}};
  o.sync = false;
  return o;
}

std::string ShortName(const std::string& model) {
  std::string n = IsShardIndexPath(model)
                      ? BaseName(std::filesystem::path(model).parent_path().string())
                      : BaseName(model);
  std::string out;
  for (char c : n) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

// Artifact and output paths of `model` in `dir`.
std::string ArtifactPath(const std::string& dir, const std::string& model, const std::string& tag) {
  return absl::StrCat(dir, "/", tag, IsShardIndexPath(model) ? ".hycdir" : ".hyc");
}

std::vector<std::string> FilesOf(const std::string& model) {
  if (!IsShardIndexPath(model)) return {model};
  auto idx = ReadShardIndex(model);
  EXPECT_THAT(idx, IsOk());
  std::vector<std::string> out;
  if (!idx.ok()) return out;
  for (size_t i = 0; i < idx->shards.size(); ++i) out.push_back(idx->ShardPath(i));
  return out;
}

// Every file of an artifact (one file, or a directory's files in name order), concatenated with
// their names.
std::string ArtifactBytes(const std::string& art) {
  if (!std::filesystem::is_directory(art)) return ReadAll(art);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(art)) names.push_back(e.path().string());
  std::sort(names.begin(), names.end());
  std::string all;
  for (const std::string& n : names) all += BaseName(n) + "\n" + ReadAll(n);
  return all;
}

// `restored` holds `original`'s tensors: names, dtypes, shapes, order and metadata; non-float
// tensors bit for bit; float tensors of >= 1024 weights above `min_snr_db`.
void ExpectRestored(const std::string& original, const std::string& restored, double min_snr_db) {
  HC_ASSERT_OK_AND_ASSIGN(auto a, SafetensorsFile::Open(original));
  HC_ASSERT_OK_AND_ASSIGN(auto b, SafetensorsFile::Open(restored));
  EXPECT_EQ(a->header().metadata, b->header().metadata);
  const auto& ta = a->header().tensors;
  const auto& tb = b->header().tensors;
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    SCOPED_TRACE(ta[i].name);
    ASSERT_EQ(ta[i].name, tb[i].name);
    ASSERT_EQ(ta[i].dtype, tb[i].dtype);
    ASSERT_EQ(ta[i].shape, tb[i].shape);
    auto da = a->TensorData(i), db = b->TensorData(i);
    ASSERT_EQ(da.size(), db.size());
    if (!IsCompressibleFloat(ta[i].dtype)) {
      EXPECT_TRUE(std::equal(da.begin(), da.end(), db.begin())) << "non-float tensor changed";
      continue;
    }
    std::vector<float> x(ta[i].numel), y(ta[i].numel);
    WidenToF32(ta[i].dtype, da.data(), x.size(), x.data());
    WidenToF32(tb[i].dtype, db.data(), y.size(), y.data());
    long double mean = 0, var = 0, se = 0;
    for (float v : x) mean += v;
    mean /= std::max<size_t>(x.size(), 1);
    for (size_t k = 0; k < x.size(); ++k) {
      ASSERT_TRUE(std::isfinite(y[k])) << k;
      var += (x[k] - mean) * (x[k] - mean);
      se += (static_cast<long double>(x[k]) - y[k]) * (static_cast<long double>(x[k]) - y[k]);
    }
    if (x.size() >= 1024 && var > 0) {
      EXPECT_GT(static_cast<double>(10 * std::log10(var / std::max(se, 1e-300L))), min_snr_db);
    }
  }
}

// Decompresses `art` and checks it against `model`.
void ExpectDecompresses(const std::string& model, const std::string& art, const std::string& out,
                        double min_snr_db) {
  const bool sharded = IsShardIndexPath(model);
  const std::string restored = sharded ? out : out + ".safetensors";
  HC_ASSERT_OK_AND_ASSIGN(RunSummary d, DecompressModel(art, restored, 2));
  const std::vector<std::string> originals = FilesOf(model);
  const std::vector<std::string> back = sharded ? FilesOf(absl::StrCat(out, "/", BaseName(model)))
                                                : std::vector<std::string>{restored};
  ASSERT_EQ(originals.size(), back.size());
  for (size_t f = 0; f < originals.size(); ++f) {
    if (sharded) {
      EXPECT_EQ(BaseName(originals[f]), BaseName(back[f]));
    }
    ExpectRestored(originals[f], back[f], min_snr_db);
  }
}

class Hc2ModelsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = GetParam();
    if (!std::filesystem::exists(model_)) GTEST_SKIP() << model_ << " is missing";
    dir_ = ScratchDir(absl::StrCat(
        "hc2_models_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
  }
  std::string model_, dir_;
};

TEST_P(Hc2ModelsTest, TargetBpw425MeetsTheBudgetAndRoundTrips) {
  const std::string art = ArtifactPath(dir_, model_, "a");
  HC_ASSERT_OK_AND_ASSIGN(RunSummary s, CompressModel(model_, art, Hc2Target(4.25)));
  const ModelTotals t = Summarize(s.tensors);
  std::printf(
      "%s: hc2 --target-bpw 4.25: %.4f bpw over all tensors, %.4f over coded ones, "
      "SNR %.2f dB, %lu of %lu tensors coded\n",
      ShortName(model_).c_str(), t.bits_per_weight, t.coded_bits_per_weight, t.snr_db,
      static_cast<unsigned long>(t.coded_tensors), static_cast<unsigned long>(t.tensors));
  EXPECT_LE(t.bits_per_weight, 4.25);
  EXPECT_GT(t.bits_per_weight, 3.0) << "the budget is far from used";
  EXPECT_GT(t.coded_tensors, 0u);
  EXPECT_EQ(t.stored_bytes, s.totals.stored_bytes);
  // Every coded tensor is hc2 ec within its own planned rate; rank <= 1 tensors are raw; the
  // large tensors share one rate.
  double shared_rate = -1;
  for (const TensorRecord& r : s.tensors) {
    SCOPED_TRACE(r.name);
    if (r.codec == "raw") {
      if (IsCompressibleFloat(r.dtype) && r.numel >= 64) {
        EXPECT_LE(r.shape.size(), 1u) << r.raw_reason;
        EXPECT_EQ(r.raw_reason, "rank <= 1 under --target-bpw");
      }
      continue;
    }
    ASSERT_EQ(r.codec, "hc2");
    EXPECT_GE(r.shape.size(), 2u);
    ASSERT_NE(r.params.Find("mode"), nullptr);
    EXPECT_EQ(r.params.Find("mode")->string_value(), "ec");
    ASSERT_NE(r.params.Find("target_bpw"), nullptr);
    const double rate = r.params.Find("target_bpw")->number();
    EXPECT_LE(r.stats.bits_per_weight, rate + 1e-12);
    if (r.numel >= kSensitiveNumel) {
      if (shared_rate < 0) shared_rate = rate;
      EXPECT_EQ(rate, shared_rate);
    } else {
      EXPECT_TRUE(rate == kSensitiveBpw || rate == shared_rate) << rate;
    }
  }
  EXPECT_GT(shared_rate, 0.25);
  HC_ASSERT_OK_AND_ASSIGN(RunSummary inspected, InspectArtifact(art));
  ASSERT_EQ(inspected.tensors.size(), s.tensors.size());
  EXPECT_NEAR(Summarize(inspected.tensors).bits_per_weight, t.bits_per_weight, 1e-12);
  ExpectDecompresses(model_, art, dir_ + "/out", 10.0);
}

// Model-level SNR (numel-weighted mean over coded tensors) against rtn 4 bits, groups of 128
// (4.25 bpw), measured here on the same model.
TEST_P(Hc2ModelsTest, EcTarget425BeatsRtn4By3p5Db) {
  HC_ASSERT_OK_AND_ASSIGN(RunSummary rtn,
                          CompressModel(model_, ArtifactPath(dir_, model_, "rtn"), Rtn4()));
  HC_ASSERT_OK_AND_ASSIGN(RunSummary ec,
                          CompressModel(model_, ArtifactPath(dir_, model_, "ec"), Hc2Target(4.25)));
  const ModelTotals r = Summarize(rtn.tensors), e = Summarize(ec.tensors);
  std::printf(
      "%s: rtn 4/128 SNR %.2f dB (%.4f bpw); hc2 ec --target-bpw 4.25 SNR %.2f dB (%.4f bpw): "
      "%+.2f dB\n",
      ShortName(model_).c_str(), r.snr_db, r.bits_per_weight, e.snr_db, e.bits_per_weight,
      e.snr_db - r.snr_db);
  RecordProperty("rtn_snr_db", absl::StrCat(r.snr_db));
  RecordProperty("hc2_ec_snr_db", absl::StrCat(e.snr_db));
  EXPECT_LE(e.bits_per_weight, 4.25);
  EXPECT_GE(e.snr_db, r.snr_db + 3.5);
}

TEST_P(Hc2ModelsTest, Fixed4BeatsRtn4By2Db) {
  HC_ASSERT_OK_AND_ASSIGN(RunSummary rtn,
                          CompressModel(model_, ArtifactPath(dir_, model_, "rtn"), Rtn4()));
  const std::string art = ArtifactPath(dir_, model_, "fixed");
  HC_ASSERT_OK_AND_ASSIGN(RunSummary fx, CompressModel(model_, art, Hc2Fixed(4)));
  const ModelTotals r = Summarize(rtn.tensors), f = Summarize(fx.tensors);
  std::printf("%s: rtn 4/128 SNR %.2f dB; hc2 fixed 4 SNR %.2f dB (%.4f coded bpw): %+.2f dB\n",
              ShortName(model_).c_str(), r.snr_db, f.snr_db, f.coded_bits_per_weight,
              f.snr_db - r.snr_db);
  RecordProperty("rtn_snr_db", absl::StrCat(r.snr_db));
  RecordProperty("hc2_fixed4_snr_db", absl::StrCat(f.snr_db));
  // bits + 16/128 per weight, plus the short last blocks' padding.
  EXPECT_GE(f.coded_bits_per_weight, 4.125);
  EXPECT_LE(f.coded_bits_per_weight, 4.125 + 0.2);
  for (const TensorRecord& t : fx.tensors) {
    if (t.codec != "hc2") continue;
    EXPECT_EQ(t.params.Find("mode")->string_value(), "fixed") << t.name;
    if (t.numel % 128 == 0) {
      EXPECT_DOUBLE_EQ(t.stats.bits_per_weight, 4.125) << t.name;
    }
  }
  // Issue 6: >= rtn + 2.0 dB on every model. Measured with the trellis (2026-11-30): +2.29 dB
  // on the byte LM (whose light-tailed weights suit rtn's min/max groups), +3.6 to +4.8 dB on
  // the others.
  EXPECT_GE(f.snr_db, r.snr_db + 2.0);
  ExpectDecompresses(model_, art, dir_ + "/out", 5.0);
}

TEST_P(Hc2ModelsTest, SameBytesWithOneAndTwoThreadsUnderTargetBpw) {
  const std::string a = ArtifactPath(dir_, model_, "t1"), b = ArtifactPath(dir_, model_, "t2");
  HC_ASSERT_OK(CompressModel(model_, a, Hc2Target(4.25, 1)).status());
  HC_ASSERT_OK(CompressModel(model_, b, Hc2Target(4.25, 2)).status());
  const std::string x = ArtifactBytes(a);
  EXPECT_FALSE(x.empty());
  EXPECT_TRUE(x == ArtifactBytes(b)) << "threads 1 vs 2 differ";
}

INSTANTIATE_TEST_SUITE_P(Shared, Hc2ModelsTest, ::testing::ValuesIn(testing::SharedModels()),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return ShortName(p.param);
                         });

// ---------------------------------------------------------------------------------------------
// --override and --target-bpw options (the sharded byte-level LM: LLaMA tensor names).

std::string Sotu() { return ModelPath("sotu-bytelm-14m-f16/model.safetensors.index.json"); }

TEST(Hc2OverrideTest, RawOverrideKeepsTensorsRaw) {
  const std::string dir = ScratchDir("hc2_override_raw");
  for (double target : {0.0, 4.25}) {
    SCOPED_TRACE(absl::StrCat("target ", target));
    CompressOptions o = Hc2Target(target);
    o.overrides = {"self_attn\\.q_proj=raw", "lm_head=raw"};
    HC_ASSERT_OK_AND_ASSIGN(RunSummary s,
                            CompressModel(Sotu(), absl::StrCat(dir, "/a", target), o));
    int raw = 0, coded = 0;
    for (const TensorRecord& r : s.tensors) {
      const bool match = RE2::PartialMatch(r.name, "self_attn\\.q_proj|lm_head");
      if (match) {
        ++raw;
        EXPECT_EQ(r.codec, "raw") << r.name;
        EXPECT_EQ(r.raw_reason, "matched --override raw") << r.name;
        EXPECT_EQ(r.stats.bits_per_weight, 16.0) << r.name;
      } else if (r.shape.size() >= 2) {
        ++coded;
        EXPECT_EQ(r.codec, "hc2") << r.name;
      }
    }
    EXPECT_EQ(raw, 9);
    EXPECT_GT(coded, 40);
    if (target > 0) {
      EXPECT_LE(Summarize(s.tensors).bits_per_weight, target);
    }
  }
}

TEST(Hc2OverrideTest, BpwOverrideGivesThoseTensorsThatRate) {
  const std::string dir = ScratchDir("hc2_override_bpw");
  for (double target : {0.0, 4.25}) {
    SCOPED_TRACE(absl::StrCat("target ", target));
    CompressOptions o = Hc2Target(target);
    o.overrides = {"mlp\\.down_proj=bpw=8", "lm_head=mode=fixed,bits=3"};
    HC_ASSERT_OK_AND_ASSIGN(RunSummary s,
                            CompressModel(Sotu(), absl::StrCat(dir, "/a", target), o));
    int eight = 0, fixed = 0;
    double other_rate = -1;
    for (const TensorRecord& r : s.tensors) {
      SCOPED_TRACE(r.name);
      if (r.codec != "hc2") continue;
      if (RE2::PartialMatch(r.name, "mlp\\.down_proj")) {
        ++eight;
        EXPECT_EQ(r.params.Find("target_bpw")->number(), 8.0);
        EXPECT_LE(r.stats.bits_per_weight, 8.0);
        EXPECT_GE(r.stats.bits_per_weight, 7.95);
      } else if (r.name == "lm_head.weight") {
        ++fixed;
        EXPECT_EQ(r.params.Find("mode")->string_value(), "fixed");
        EXPECT_EQ(r.params.Find("bits")->as_int64(), 3);
        EXPECT_DOUBLE_EQ(r.stats.bits_per_weight, 3.125);
      } else {
        const double rate = r.params.Find("target_bpw")->number();
        if (other_rate < 0) other_rate = rate;
        EXPECT_EQ(rate, other_rate);
        EXPECT_LE(r.stats.bits_per_weight, rate);
      }
    }
    EXPECT_EQ(eight, 8);
    EXPECT_EQ(fixed, 1);
    if (target > 0) {
      // The rest pays for the 8-bit tensors.
      EXPECT_LT(other_rate, 4.25);
      EXPECT_GT(other_rate, 2.0);
      EXPECT_LE(Summarize(s.tensors).bits_per_weight, target);
    } else {
      EXPECT_EQ(other_rate, 4.25);  // the codec's default
    }
  }
}

// A rated override that takes a large share of the budget (PP-OCRv4's CTC head is 30% of its
// weights) must not take the 8-bit protection away from the small tensors: it did, and the first
// convolutions fell to 3.5 bits per weight (11.7 dB; CER 1.0).
TEST(Hc2OverrideTest, RatedOverrideKeepsSmallTensorsAtTheSensitiveRate) {
  const std::string model = ModelPath("ppocrv4-rec-f32.safetensors");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " is missing";
  const std::string dir = ScratchDir("hc2_override_sensitive");
  CompressOptions o = Hc2Target(4.25);
  o.overrides = {"linear_85=bpw=5"};
  HC_ASSERT_OK_AND_ASSIGN(RunSummary s, CompressModel(model, dir + "/a.hyc", o));
  int small = 0, head = 0;
  for (const TensorRecord& r : s.tensors) {
    SCOPED_TRACE(r.name);
    if (r.codec != "hc2") continue;
    const double rate = r.params.Find("target_bpw")->number();
    if (r.name == "linear_85.w_0") {
      ++head;
      EXPECT_EQ(rate, 5.0);
    } else if (r.numel < kSensitiveNumel) {
      ++small;
      EXPECT_EQ(rate, kSensitiveBpw);
      EXPECT_GE(r.stats.bits_per_weight, 7.0);
    } else {
      EXPECT_LT(rate, 4.25);
    }
  }
  EXPECT_EQ(head, 1);
  EXPECT_GE(small, 5);
  EXPECT_LE(Summarize(s.tensors).bits_per_weight, 4.25);
}

TEST(Hc2OverrideTest, BadRulesAreInvalidArgument) {
  const std::string dir = ScratchDir("hc2_override_bad");
  for (const char* rule : {"(=raw", "abc", "=raw", "x=", "x=bpw", "x=,", "x=nokey=1", "x=bpw=100",
                           "x=mode=foo", "x==3"}) {
    SCOPED_TRACE(rule);
    for (double target : {0.0, 4.25}) {
      CompressOptions o = Hc2Target(target);
      o.overrides = {rule};
      EXPECT_THAT(CompressModel(ModelPath("fmnist-cnn-f32.safetensors"), dir + "/a.hyc", o),
                  StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--override")));
      EXPECT_FALSE(std::filesystem::exists(dir + "/a.hyc"));
    }
  }
}

TEST(Hc2OverrideTest, TargetBpwNeedsHc2InEcMode) {
  const std::string dir = ScratchDir("hc2_target_errors");
  const std::string model = ModelPath("fmnist-cnn-f32.safetensors");
  CompressOptions o = Rtn4();
  o.target_bpw = 4.25;
  EXPECT_THAT(CompressModel(model, dir + "/a.hyc", o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hc2")));
  o = Hc2Fixed(4);
  o.target_bpw = 4.25;
  EXPECT_THAT(CompressModel(model, dir + "/a.hyc", o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mode ec")));
  for (double bad : {0.1, 40.0, -1.0}) {
    EXPECT_THAT(CompressModel(model, dir + "/a.hyc", Hc2Target(bad)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("target bits per weight")))
        << bad;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.hyc"));
  // hc2 in ec mode spelled out is fine.
  o = Hc2Target(4.25);
  o.codec_options = {{"mode", "ec"}};
  EXPECT_THAT(CompressModel(model, dir + "/b.hyc", o), IsOk());
}

TEST(Hc2OverrideTest, UnmeetableTargetIsInvalidArgument) {
  const std::string dir = ScratchDir("hc2_target_unmeetable");
  // Everything but lm_head raw (16 bpw) under a 1 bpw target.
  CompressOptions o = Hc2Target(1.0);
  o.overrides = {"^model\\.=raw"};
  EXPECT_THAT(CompressModel(Sotu(), dir + "/a.hycdir", o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot be met")));
  EXPECT_FALSE(std::filesystem::exists(dir + "/a.hycdir"));
}

// Regression, fixed (planner): when overrides leave no tensor to share the rate, TensorCompressor::Plan
// accepts any target (shared_weights == 0 skips the "cannot be met" check), so
// --target-bpw 1 --override ".=raw" writes a 16 bpw artifact without an error, although
// Plan() documents "InvalidArgument if the target cannot be met".
TEST(Hc2OverrideTest, AllRawUnderATargetIsInvalidArgument) {
  const std::string dir = ScratchDir("hc2_target_all_raw");
  CompressOptions o = Hc2Target(1.0);
  o.overrides = {".=raw"};
  auto s = CompressModel(Sotu(), dir + "/a.hycdir", o);
  if (s.ok()) {
    ADD_FAILURE() << "accepted: " << Summarize(s->tensors).bits_per_weight
                  << " bpw under a target of 1";
  }
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot be met")));
}

}  // namespace
}  // namespace hc
