#include "core/io/shard_index.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/io/st_test_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::string WriteIndex(const std::string& name, const std::string& text) {
  const std::string path = hc::testing::ScratchDir("shard_index/" + name) + "/model.safetensors.index.json";
  hc::testing::WriteFile(path, text);
  return path;
}

TEST(ShardIndex, Valid) {
  const std::string path = WriteIndex("valid", R"({
    "metadata": {"total_size": 123},
    "weight_map": {
      "z.weight": "model-00002-of-00002.safetensors",
      "a.weight": "model-00001-of-00002.safetensors",
      "m.bias": "model-00002-of-00002.safetensors"
    }
  })");
  HC_ASSERT_OK_AND_ASSIGN(ShardIndex idx, ReadShardIndex(path));
  EXPECT_EQ(idx.path, path);
  EXPECT_EQ(idx.dir, DirName(path));
  EXPECT_THAT(idx.shards, ElementsAre("model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors"));
  EXPECT_THAT(idx.weight_map, ElementsAre(Pair("z.weight", "model-00002-of-00002.safetensors"),
                                          Pair("a.weight", "model-00001-of-00002.safetensors"),
                                          Pair("m.bias", "model-00002-of-00002.safetensors")));
  ASSERT_TRUE(idx.metadata.is_object());
  EXPECT_EQ(idx.metadata.Find("total_size")->as_uint64(), 123u);
  EXPECT_EQ(idx.ShardPath(1), idx.dir + "/model-00002-of-00002.safetensors");
}

TEST(ShardIndex, MetadataIsOptional) {
  HC_ASSERT_OK_AND_ASSIGN(ShardIndex idx,
                          ReadShardIndex(WriteIndex("nometa", R"({"weight_map":{"t":"s.safetensors"}})")));
  EXPECT_TRUE(idx.metadata.is_null());
  EXPECT_THAT(idx.shards, ElementsAre("s.safetensors"));
}

TEST(ShardIndex, MissingWeightMap) {
  const std::string path = WriteIndex("missing", R"({"metadata":{}})");
  EXPECT_THAT(ReadShardIndex(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("missing \"weight_map\" object"))));
  EXPECT_THAT(ReadShardIndex(WriteIndex("notobj", R"({"weight_map":["a"]})")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"weight_map\"")));
  EXPECT_THAT(ReadShardIndex(WriteIndex("empty", R"({"weight_map":{}})")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"weight_map\" is empty")));
}

TEST(ShardIndex, NonStringValues) {
  for (const char* v : {"1", "null", "[\"a.safetensors\"]", "{}", "true"}) {
    const std::string path = WriteIndex("nonstring", absl::StrCat(R"({"weight_map":{"ok":"a.st","t":)", v, "}}"));
    EXPECT_THAT(ReadShardIndex(path),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(path), HasSubstr("weight_map[\"t\"] is not a string"))))
        << v;
  }
}

TEST(ShardIndex, ShardNameMustBePlainFileName) {
  for (const char* f : {"../evil.safetensors", "..", ".", "", "sub/x.safetensors", "/etc/passwd",
                        "a/../b"}) {
    const std::string path =
        WriteIndex("plain", absl::StrCat(R"({"weight_map":{"t":")", f, R"("}})"));
    EXPECT_THAT(ReadShardIndex(path),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(path), HasSubstr("weight_map[\"t\"]"),
                               HasSubstr("is not a plain file name"))))
        << f;
  }
  // Dots inside a name are fine.
  EXPECT_THAT(ReadShardIndex(WriteIndex("dots", R"({"weight_map":{"t":"..a.safetensors"}})")), IsOk());
}

TEST(ShardIndex, NotJsonOrNotAnObject) {
  const std::string path = WriteIndex("notjson", "{\"weight_map\": ");
  EXPECT_THAT(ReadShardIndex(path),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(path), HasSubstr("invalid JSON"))));
  EXPECT_THAT(ReadShardIndex(WriteIndex("array", "[]")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(ReadShardIndex(WriteIndex("dup", R"({"weight_map":{"t":"a","t":"b"}})")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key \"t\"")));
  EXPECT_THAT(ReadShardIndex("/nonexistent/model.safetensors.index.json"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/model.safetensors.index.json")));
}

TEST(ShardIndex, EncodeRoundTrip) {
  JsonValue meta = JsonValue::Object();
  meta.Add("total_size", JsonValue::Int(28717824)).Add("note", JsonValue::String("q\"uote"));
  const std::vector<std::pair<std::string, std::string>> wm = {
      {"lm_head.weight", "model-00002-of-00002.safetensors"},
      {"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
      {"caf\xc3\xa9", "model-00001-of-00002.safetensors"}};
  const std::string text = EncodeShardIndex(meta, wm);
  HC_ASSERT_OK_AND_ASSIGN(ShardIndex idx, ReadShardIndex(WriteIndex("encode", text)));
  EXPECT_EQ(idx.weight_map, wm);
  EXPECT_EQ(idx.metadata.Dump(), meta.Dump());
  EXPECT_THAT(idx.shards, ElementsAre("model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors"));
  // Deterministic, and null metadata becomes {}.
  EXPECT_EQ(EncodeShardIndex(meta, wm), text);
  const std::string no_meta = EncodeShardIndex(JsonValue(), {{"t", "s"}});
  EXPECT_EQ(no_meta, "{\"metadata\":{},\"weight_map\":{\"t\":\"s\"}}\n");
}

TEST(ShardIndex, PathHelpers) {
  EXPECT_TRUE(IsShardIndexPath("a/model.safetensors.index.json"));
  EXPECT_FALSE(IsShardIndexPath("a/model.safetensors"));
  EXPECT_EQ(DirName("a/b/c.json"), "a/b");
  EXPECT_EQ(DirName("c.json"), ".");
  EXPECT_EQ(DirName("/c.json"), "/");
  EXPECT_EQ(BaseName("a/b/c.json"), "c.json");
  EXPECT_EQ(BaseName("c.json"), "c.json");
}

}  // namespace
}  // namespace hc
