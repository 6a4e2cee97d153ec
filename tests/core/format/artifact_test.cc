// The artifact decoder's rejections (core/format/SPEC.md section 9), one test each, plus the
// round trip of the metadata.
#include "core/format/artifact.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/io/safetensors_file.h"
#include "core/io/safetensors_writer.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

struct Stored {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

class ArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    good_ = dir_ + "/good.hyc";
    CompressOptions o;
    o.sync = false;
    ASSERT_THAT(CompressModel(testing::ModelPath("fmnist-cnn-f32.safetensors"), good_, o), IsOk());
  }

  // Rewrites the good artifact through `mutate`; `reseal` recomputes the metadata checksum so
  // that the rule under test, not the checksum, is what fails.
  std::string Rewrite(const std::function<void(StringMap&, std::vector<Stored>&)>& mutate,
                      bool reseal = true) {
    auto in = SafetensorsFile::Open(good_);
    EXPECT_THAT(in, IsOk());
    StringMap meta = (*in)->header().metadata;
    std::vector<Stored> tensors;
    for (size_t i = 0; i < (*in)->header().tensors.size(); ++i) {
      const TensorInfo& t = (*in)->header().tensors[i];
      auto d = (*in)->TensorData(i);
      tensors.push_back({t.name, t.dtype, t.shape, {d.begin(), d.end()}});
    }
    mutate(meta, tensors);
    if (reseal) {
      for (auto& [k, v] : meta) {
        if (k == kChecksumKey) v = absl::StrCat(ArtifactMetadataChecksum(meta));
      }
    }
    const std::string path = absl::StrCat(dir_, "/bad", n_++, ".hyc");
    auto w = SafetensorsWriter::Create(path);
    EXPECT_THAT(w, IsOk());
    for (const Stored& s : tensors) EXPECT_THAT((*w)->Add(s.name, s.dtype, s.shape, s.bytes), IsOk());
    EXPECT_THAT((*w)->Finish(meta), IsOk());
    return path;
  }

  static void SetMeta(StringMap& meta, absl::string_view key, std::string value) {
    for (auto& [k, v] : meta) {
      if (k == key) v = std::move(value);
    }
  }
  static std::string& Records(StringMap& meta) {
    for (auto& [k, v] : meta) {
      if (k == kTensorsKey) return v;
    }
    static std::string none;
    return none;
  }

  // Decodes every tensor of `path`; returns the first error.
  absl::Status DecodeAll(const std::string& path) {
    auto r = ArtifactReader::Open(path);
    if (!r.ok()) return r.status();
    InlineExecutor ex;
    for (size_t i = 0; i < (*r)->metadata().tensors.size(); ++i) {
      const TensorRecord& rec = (*r)->metadata().tensors[i];
      std::vector<uint8_t> out(rec.numel * DTypeSize(rec.dtype));
      if (absl::Status s = (*r)->DecodeTensor(i, absl::MakeSpan(out), ex); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  std::string dir_, good_;
  int n_ = 0;
};

TEST_F(ArtifactTest, RoundTrip) {
  EXPECT_THAT(DecodeAll(good_), IsOk());
  // Rewriting without changes keeps it valid (the test harness itself is sound).
  EXPECT_THAT(DecodeAll(Rewrite([](StringMap&, std::vector<Stored>&) {})), IsOk());
  HC_ASSERT_OK_AND_ASSIGN(auto r, ArtifactReader::Open(good_));
  EXPECT_EQ(r->metadata().tensors.size(), 8u);
  EXPECT_EQ(r->metadata().version, 1);
  EXPECT_EQ(r->metadata().tensors[0].codec, "rtn");
}

TEST_F(ArtifactTest, NotAnArtifact) {
  EXPECT_THAT(ArtifactReader::Open(testing::ModelPath("fmnist-cnn-f32.safetensors")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a hyperc artifact")));
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) { SetMeta(m, kFormatKey, "other"); });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a hyperc artifact")));
}

TEST_F(ArtifactTest, InvalidVersion) {
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) { SetMeta(m, kVersionKey, "2"); });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                HasSubstr("format version 2 is not supported")));
}

TEST_F(ArtifactTest, CorruptMetadataChecksum) {
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) {
    std::string& r = Records(m);
    r = absl::StrReplaceAll(r, {{"\"bits\":4", "\"bits\":5"}});
  }, /*reseal=*/false);
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("fails its checksum")));
}

TEST_F(ArtifactTest, CorruptRecords) {
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) { Records(m) = "{\"not\": \"a list\"}"; });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("is not a list")));
  p = Rewrite([](StringMap& m, std::vector<Stored>&) { Records(m).resize(Records(m).size() / 2); });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("invalid JSON")));
}

TEST_F(ArtifactTest, DuplicateRecord) {
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) {
    auto j = ParseJson(Records(m));
    JsonValue a = *j;
    a.Push(a.items()[0]);
    Records(m) = a.Dump();
  });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("recorded twice")));
}

TEST_F(ArtifactTest, MissingPart) {
  auto p = Rewrite([](StringMap&, std::vector<Stored>& t) { t.erase(t.begin() + 1); });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("is missing")));
}

TEST_F(ArtifactTest, PartShapeMismatch) {
  auto p = Rewrite([](StringMap&, std::vector<Stored>& t) {
    t[0].shape = {t[0].shape[0] / 2, 2};  // same bytes, other shape
  });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("metadata says")));
}

TEST_F(ArtifactTest, OrphanTensor) {
  auto p = Rewrite([](StringMap&, std::vector<Stored>& t) {
    t.push_back({"stowaway", DType::kU8, {3}, {1, 2, 3}});
  });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("\"stowaway\" belongs to no record")));
}

TEST_F(ArtifactTest, BadRawRecord) {
  // Claim the codes part of tensor 0 is a raw tensor of the record's own dtype and shape.
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) {
    Records(m) = absl::StrReplaceAll(Records(m), {{"\"codec\":\"rtn\"", "\"codec\":\"raw\""}});
  });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("a raw tensor must be one part")));
}

TEST_F(ArtifactTest, CodedIntegerTensor) {
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) {
    Records(m) = absl::StrReplaceAll(Records(m), {{"\"dtype\":\"F32\"", "\"dtype\":\"I32\""}});
  });
  EXPECT_THAT(ArtifactReader::Open(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("codec rtn on dtype I32")));
}

TEST_F(ArtifactTest, CorruptPartChecksum) {
  auto p = Rewrite([](StringMap&, std::vector<Stored>& t) { t[0].bytes[3] ^= 0x10; });
  HC_EXPECT_OK(ArtifactReader::Open(p));  // opening reads no tensor data
  EXPECT_THAT(DecodeAll(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("fails its checksum")));
}

TEST_F(ArtifactTest, UnknownCodec) {
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) {
    Records(m) = absl::StrReplaceAll(Records(m), {{"\"codec\":\"rtn\"", "\"codec\":\"zz9\""}});
  });
  EXPECT_THAT(DecodeAll(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("unknown codec \"zz9\"")));
}

TEST_F(ArtifactTest, RtnPartsInconsistent) {
  // group_size 64 instead of 128: the scales part no longer has the right number of groups.
  auto p = Rewrite([](StringMap& m, std::vector<Stored>&) {
    Records(m) = absl::StrReplaceAll(Records(m), {{"\"group_size\":128", "\"group_size\":64"}});
  });
  EXPECT_THAT(DecodeAll(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("\"scales\" must be F16")));
  p = Rewrite([](StringMap& m, std::vector<Stored>&) {
    Records(m) = absl::StrReplaceAll(Records(m), {{"\"bits\":4", "\"bits\":3"}});
  });
  EXPECT_THAT(DecodeAll(p), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("\"codes\" must be U8")));
}

TEST_F(ArtifactTest, BadArtifactIndex) {
  const std::string idx = dir_ + "/hyperc.index.json";
  FILE* f = std::fopen(idx.c_str(), "w");
  std::fputs("{\"metadata\":{},\"weight_map\":{\"a\":\"b\"}}", f);
  std::fclose(f);
  EXPECT_THAT(InspectArtifact(idx), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a hyperc artifact index")));
  f = std::fopen(idx.c_str(), "w");
  std::fputs("{\"metadata\":{\"hyperc.format\":\"hyperc-artifact-index\"},\"weight_map\":{},"
             "\"shards\":[{\"artifact\":\"../etc/passwd\",\"source\":\"x\"}]}", f);
  std::fclose(f);
  EXPECT_THAT(InspectArtifact(dir_), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("plain")));
}

}  // namespace
}  // namespace hc
