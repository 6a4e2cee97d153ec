// The real models in shared/models: every file opens, its tensors are what the header and the
// README say, and the stream parser agrees with the mmap reader byte for byte.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/crc32c.h"
#include "core/base/json.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/io/st_test_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::ModelPath;

struct ModelFacts {
  std::string file;
  size_t tensors;
  uint64_t params;
  std::map<std::string, size_t> dtype_counts;
};

// From shared/models/README.md.
const std::vector<ModelFacts>& SingleFileModels() {
  static const auto* m = new std::vector<ModelFacts>{
      {"ppocrv4-rec-f32.safetensors", 309, 2690296, {{"F32", 309}}},
      {"faceres-f16.safetensors", 128, 3489405, {{"F16", 127}, {"I32", 1}}},
      {"movenet-thunder-f16.safetensors", 180, 6238450, {{"F16", 149}, {"I32", 31}}},
      {"fmnist-cnn-f32.safetensors", 8, 824458, {{"F32", 8}}},
  };
  return *m;
}

// Checks the parsed header against an independent reading of the JSON header text.
void ExpectHeaderMatchesJson(const std::string& path, const SafetensorsFile& f) {
  const std::string bytes = hc::testing::ReadFile(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(f.header().header_bytes, n);
  EXPECT_EQ(f.header().file_size(), bytes.size());
  HC_ASSERT_OK_AND_ASSIGN(JsonValue root, ParseJson(absl::string_view(bytes).substr(8, n)));
  size_t entries = 0;
  std::set<std::string> names;
  for (const auto& [name, v] : root.members()) {
    if (name == "__metadata__") {
      EXPECT_EQ(f.header().metadata.size(), v.members().size());
      continue;
    }
    ++entries;
    names.insert(name);
  }
  ASSERT_EQ(f.header().tensors.size(), entries);
  uint64_t prev_end = 0;
  for (size_t i = 0; i < f.header().tensors.size(); ++i) {
    const TensorInfo& t = f.header().tensors[i];
    EXPECT_TRUE(names.count(t.name)) << t.name;
    const JsonValue* e = root.Find(t.name);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(DTypeName(t.dtype), e->Find("dtype")->string_value());
    const auto& dims = e->Find("shape")->items();
    ASSERT_EQ(t.shape.size(), dims.size()) << t.name;
    uint64_t numel = 1;
    for (size_t k = 0; k < dims.size(); ++k) {
      EXPECT_EQ(static_cast<uint64_t>(t.shape[k]), *dims[k].as_uint64());
      numel *= *dims[k].as_uint64();
    }
    EXPECT_EQ(t.numel, numel);
    EXPECT_EQ(t.begin, *e->Find("data_offsets")->items()[0].as_uint64());
    EXPECT_EQ(t.end, *e->Find("data_offsets")->items()[1].as_uint64());
    EXPECT_EQ(t.begin, prev_end) << "tensors in data order, contiguous";
    prev_end = t.end;
    // TensorData points at the right bytes of the file.
    auto d = f.TensorData(i);
    ASSERT_EQ(d.size(), t.nbytes());
    EXPECT_EQ(0, std::memcmp(d.data(), bytes.data() + f.header().data_start() + t.begin, d.size()));
  }
  EXPECT_EQ(prev_end, f.header().data_bytes);
}

void ExpectStreamMatches(const std::string& path, const SafetensorsFile& f, uint32_t seed) {
  const std::string bytes = hc::testing::ReadFile(path);
  for (uint32_t s = seed; s < seed + 3; ++s) {
    SafetensorsStreamParser p(path);
    size_t next = 0;
    auto cb = [&](const TensorInfo& t, absl::Span<const uint8_t> d) -> absl::Status {
      if (next >= f.header().tensors.size()) return absl::InternalError("too many tensors");
      const TensorInfo& want = f.header().tensors[next];
      auto wd = f.TensorData(next);
      ++next;
      if (t.name != want.name || t.shape != want.shape || t.dtype != want.dtype) {
        return absl::InternalError(absl::StrCat("tensor ", next - 1, " is ", t.name, " not ", want.name));
      }
      if (d.size() != wd.size() || Crc32c(0, d) != Crc32c(0, wd) ||
          std::memcmp(d.data(), wd.data(), d.size()) != 0) {
        return absl::InternalError(absl::StrCat("bytes of ", t.name, " differ"));
      }
      return absl::OkStatus();
    };
    size_t pos = 0;
    for (size_t c : hc::testing::RandomChunks(bytes.size(), s)) {
      c = std::min(c, bytes.size() - pos);
      ASSERT_THAT(p.Feed(hc::testing::AsBytes(absl::string_view(bytes).substr(pos, c)), cb), IsOk());
      pos += c;
      if (pos == bytes.size()) break;
    }
    ASSERT_THAT(p.Finish(), IsOk());
    EXPECT_EQ(next, f.header().tensors.size());
    EXPECT_EQ(p.bytes_consumed(), bytes.size());
  }
}

TEST(RealModels, SingleFilesOpen) {
  for (const ModelFacts& m : SingleFileModels()) {
    SCOPED_TRACE(m.file);
    const std::string path = ModelPath(m.file);
    HC_ASSERT_OK_AND_ASSIGN(auto f, SafetensorsFile::Open(path));
    EXPECT_EQ(f->header().tensors.size(), m.tensors);
    uint64_t params = 0;
    std::map<std::string, size_t> counts;
    for (const TensorInfo& t : f->header().tensors) {
      params += t.numel;
      ++counts[std::string(DTypeName(t.dtype))];
    }
    EXPECT_EQ(params, m.params);
    EXPECT_EQ(counts, m.dtype_counts);
    EXPECT_FALSE(f->header().metadata.empty());
    ExpectHeaderMatchesJson(path, *f);
  }
}

TEST(RealModels, KnownTensors) {
  HC_ASSERT_OK_AND_ASSIGN(auto ocr, SafetensorsFile::Open(ModelPath("ppocrv4-rec-f32.safetensors")));
  bool found = false;
  for (const TensorInfo& t : ocr->header().tensors) {
    if (t.name == "linear_85.w_0") {
      found = true;
      EXPECT_EQ(t.shape, (std::vector<int64_t>{120, 6625}));
      EXPECT_EQ(t.dtype, DType::kF32);
    }
  }
  EXPECT_TRUE(found);
  HC_ASSERT_OK_AND_ASSIGN(auto cnn, SafetensorsFile::Open(ModelPath("fmnist-cnn-f32.safetensors")));
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorInfo& t : cnn->header().tensors) shapes[t.name] = t.shape;
  EXPECT_EQ(shapes["c1.weight"], (std::vector<int64_t>{32, 1, 3, 3}));
  EXPECT_THAT(cnn->header().metadata,
              ::testing::Contains(::testing::Pair("epochs", "2")));
}

TEST(RealModels, StreamParserAgreesWithFile) {
  uint32_t seed = 100;
  for (const ModelFacts& m : SingleFileModels()) {
    SCOPED_TRACE(m.file);
    HC_ASSERT_OK_AND_ASSIGN(auto f, SafetensorsFile::Open(ModelPath(m.file)));
    ExpectStreamMatches(ModelPath(m.file), *f, seed);
    seed += 10;
  }
}

TEST(RealModels, ShardedModel) {
  const std::string index_path = ModelPath("sotu-bytelm-14m-f16/model.safetensors.index.json");
  ASSERT_TRUE(IsShardIndexPath(index_path));
  HC_ASSERT_OK_AND_ASSIGN(ShardIndex idx, ReadShardIndex(index_path));
  EXPECT_THAT(idx.shards, ::testing::ElementsAre("model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors"));
  EXPECT_EQ(idx.weight_map.size(), 75u);
  std::map<std::string, std::string> where(idx.weight_map.begin(), idx.weight_map.end());
  size_t tensors = 0;
  uint64_t params = 0, bytes = 0;
  for (size_t i = 0; i < idx.shards.size(); ++i) {
    SCOPED_TRACE(idx.shards[i]);
    HC_ASSERT_OK_AND_ASSIGN(auto f, SafetensorsFile::Open(idx.ShardPath(i)));
    ExpectHeaderMatchesJson(idx.ShardPath(i), *f);
    for (const TensorInfo& t : f->header().tensors) {
      EXPECT_EQ(where[t.name], idx.shards[i]) << t.name << " is in the shard the index names";
      EXPECT_EQ(t.dtype, DType::kF16);
      ++tensors;
      params += t.numel;
      bytes += t.nbytes();
    }
    ExpectStreamMatches(idx.ShardPath(i), *f, 200 + 10 * static_cast<uint32_t>(i));
  }
  EXPECT_EQ(tensors, 75u);
  EXPECT_EQ(params, 14358912u);
  ASSERT_NE(idx.metadata.Find("total_size"), nullptr);
  EXPECT_EQ(idx.metadata.Find("total_size")->as_uint64(), bytes);
}

}  // namespace
}  // namespace hc
