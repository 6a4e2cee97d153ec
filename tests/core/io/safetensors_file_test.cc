// Well-formed synthetic safetensors files: SafetensorsFile, the header helpers, and agreement
// with the stream parser.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/io/st_test_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::MakeSafetensors;
using ::hc::testing::PatternBytes;
using ::hc::testing::StatusIs;
using ::hc::testing::StreamedTensor;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

std::string AsString(absl::Span<const uint8_t> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenBytes(const std::string& name,
                                                            const std::string& bytes) {
  const std::string path = hc::testing::ScratchDir("st_file/" + name) + "/f.safetensors";
  hc::testing::WriteFile(path, bytes);
  return SafetensorsFile::Open(path);
}

// Checks that the stream parser, in one chunk, byte by byte and in random chunks, yields the
// file's tensors and bytes in the file's order.
void ExpectStreamMatchesFile(const std::string& bytes, const SafetensorsFile& f) {
  std::vector<std::vector<size_t>> chunkings = {{}, hc::testing::ByteByByte(bytes.size())};
  for (uint32_t seed = 1; seed <= 5; ++seed) chunkings.push_back(hc::testing::RandomChunks(bytes.size(), seed));
  for (const auto& chunks : chunkings) {
    std::vector<StreamedTensor> got;
    ASSERT_THAT(hc::testing::StreamParse(bytes, "s", chunks, &got), IsOk());
    ASSERT_EQ(got.size(), f.header().tensors.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const TensorInfo& t = f.header().tensors[i];
      EXPECT_EQ(got[i].info.name, t.name);
      EXPECT_EQ(got[i].info.dtype, t.dtype);
      EXPECT_EQ(got[i].info.shape, t.shape);
      EXPECT_EQ(got[i].info.begin, t.begin);
      EXPECT_EQ(got[i].info.end, t.end);
      EXPECT_EQ(got[i].data, AsString(f.TensorData(i))) << t.name;
    }
  }
}

TEST(SafetensorsFile, OpensSimpleFile) {
  const std::string data = PatternBytes(8 + 12 + 2);
  const std::string header =
      R"({"__metadata__":{"format":"pt","b":"2"},)"
      R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("h":{"dtype":"F16","shape":[2,3],"data_offsets":[8,20]},)"
      R"("u":{"dtype":"U8","shape":[2],"data_offsets":[20,22]}})";
  const std::string bytes = MakeSafetensors(header, data);
  HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes("simple", bytes));
  const SafetensorsHeader& h = f->header();
  EXPECT_EQ(h.header_bytes, header.size());
  EXPECT_EQ(h.data_bytes, 22u);
  EXPECT_EQ(h.data_start(), 8 + header.size());
  EXPECT_EQ(h.file_size(), bytes.size());
  EXPECT_THAT(h.metadata, ElementsAre(Pair("format", "pt"), Pair("b", "2")));
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "w");
  EXPECT_EQ(h.tensors[0].dtype, DType::kF32);
  EXPECT_EQ(h.tensors[0].shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(h.tensors[0].numel, 2u);
  EXPECT_EQ(h.tensors[1].name, "h");
  EXPECT_EQ(h.tensors[1].dtype, DType::kF16);
  EXPECT_EQ(h.tensors[1].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h.tensors[1].numel, 6u);
  EXPECT_EQ(h.tensors[1].nbytes(), 12u);
  EXPECT_EQ(h.tensors[2].dtype, DType::kU8);
  EXPECT_EQ(AsString(f->TensorData(0)), data.substr(0, 8));
  EXPECT_EQ(AsString(f->TensorData(1)), data.substr(8, 12));
  EXPECT_EQ(AsString(f->TensorData(2)), data.substr(20, 2));
  // Advice never changes what is read.
  for (size_t i = 0; i < 3; ++i) {
    f->Prefetch(i);
    f->Release(i);
  }
  EXPECT_EQ(AsString(f->TensorData(1)), data.substr(8, 12));
  ExpectStreamMatchesFile(bytes, *f);
}

TEST(SafetensorsFile, TensorsComeInDataOrderNotHeaderOrder) {
  const std::string header =
      R"({"c":{"dtype":"U8","shape":[3],"data_offsets":[5,8]},)"
      R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("b":{"dtype":"I32","shape":[1],"data_offsets":[1,5]}})";
  const std::string bytes = MakeSafetensors(header, PatternBytes(8));
  HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes("order", bytes));
  ASSERT_EQ(f->header().tensors.size(), 3u);
  EXPECT_EQ(f->header().tensors[0].name, "a");
  EXPECT_EQ(f->header().tensors[1].name, "b");
  EXPECT_EQ(f->header().tensors[2].name, "c");
  ExpectStreamMatchesFile(bytes, *f);
}

TEST(SafetensorsFile, ZeroSizeTensors) {
  // Empty tensors at the start, in the middle and at the end; also a scalar (shape []).
  const std::string header =
      R"({"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
      R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
      R"("e1":{"dtype":"BF16","shape":[3,0,2],"data_offsets":[4,4]},)"
      R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
      R"("e2":{"dtype":"I64","shape":[0,0],"data_offsets":[6,6]}})";
  const std::string bytes = MakeSafetensors(header, PatternBytes(6));
  HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes("zero", bytes));
  const auto& ts = f->header().tensors;
  ASSERT_EQ(ts.size(), 5u);
  std::vector<std::string> names;
  for (const auto& t : ts) names.push_back(t.name);
  EXPECT_THAT(names, ElementsAre("e0", "a", "e1", "b", "e2"));
  EXPECT_EQ(ts[0].numel, 0u);
  EXPECT_EQ(ts[1].numel, 1u);
  EXPECT_TRUE(ts[1].shape.empty());
  EXPECT_EQ(ts[2].numel, 0u);
  EXPECT_EQ(f->TensorData(0).size(), 0u);
  EXPECT_EQ(f->TensorData(2).size(), 0u);
  EXPECT_EQ(f->TensorData(4).size(), 0u);
  f->Prefetch(0);
  f->Release(0);
  ExpectStreamMatchesFile(bytes, *f);
}

TEST(SafetensorsFile, OnlyZeroSizeTensorsAndNoData) {
  const std::string bytes = MakeSafetensors(
      R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"y":{"dtype":"F16","shape":[0,5],"data_offsets":[0,0]}})");
  HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes("only_zero", bytes));
  EXPECT_EQ(f->header().tensors.size(), 2u);
  EXPECT_EQ(f->header().data_bytes, 0u);
  ExpectStreamMatchesFile(bytes, *f);
}

TEST(SafetensorsFile, EmptyHeaderAndMetadataOnly) {
  HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes("empty", MakeSafetensors("{}")));
  EXPECT_TRUE(f->header().tensors.empty());
  EXPECT_EQ(f->header().data_bytes, 0u);
  HC_ASSERT_OK_AND_ASSIGN(auto g, OpenBytes("meta", MakeSafetensors(R"({"__metadata__":{"k":"v"}})")));
  EXPECT_THAT(g->header().metadata, ElementsAre(Pair("k", "v")));
  EXPECT_THAT(hc::testing::StreamParse(MakeSafetensors("{}"), "s", {}), IsOk());
}

TEST(SafetensorsFile, HeaderPaddedWithSpaces) {
  const std::string json = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  for (size_t pad : {1, 5, 100, 4096}) {
    const std::string bytes = MakeSafetensors(json + std::string(pad, ' '), PatternBytes(8));
    HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes(absl::StrCat("padded", pad), bytes));
    EXPECT_EQ(f->header().header_bytes, json.size() + pad);
    ASSERT_EQ(f->header().tensors.size(), 1u);
    EXPECT_EQ(AsString(f->TensorData(0)), PatternBytes(8));
    ExpectStreamMatchesFile(bytes, *f);
  }
  // Whitespace between JSON tokens is fine too.
  const std::string spaced =
      "{ \"w\" : { \"dtype\" : \"F32\" , \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 , 8 ] } }   ";
  HC_ASSERT_OK_AND_ASSIGN(auto g, OpenBytes("spaced", MakeSafetensors(spaced, PatternBytes(8))));
  EXPECT_EQ(g->header().tensors.size(), 1u);
}

TEST(SafetensorsFile, AllDtypes) {
  const char* names[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                         "BF16", "I32", "U32", "F32", "F64",     "I64",     "U64"};
  std::string header = "{";
  uint64_t off = 0;
  for (size_t i = 0; i < std::size(names); ++i) {
    const size_t sz = DTypeSize(*ParseDType(names[i])) * 3;
    absl::StrAppend(&header, i ? "," : "", "\"t", i, "\":{\"dtype\":\"", names[i],
                    "\",\"shape\":[3],\"data_offsets\":[", off, ",", off + sz, "]}");
    off += sz;
  }
  header += "}";
  const std::string bytes = MakeSafetensors(header, PatternBytes(off));
  HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes("dtypes", bytes));
  ASSERT_EQ(f->header().tensors.size(), std::size(names));
  for (size_t i = 0; i < std::size(names); ++i) {
    EXPECT_EQ(DTypeName(f->header().tensors[i].dtype), names[i]);
  }
  ExpectStreamMatchesFile(bytes, *f);
}

TEST(SafetensorsFile, UnicodeNames) {
  const std::string header =
      "{\"caf\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}";
  HC_ASSERT_OK_AND_ASSIGN(auto f, OpenBytes("unicode", MakeSafetensors(header, "ab")));
  ASSERT_EQ(f->header().tensors.size(), 2u);
  EXPECT_EQ(f->header().tensors[0].name, "caf\xc3\xa9");
  EXPECT_EQ(f->header().tensors[1].name, "\xf0\x9f\x98\x80");
}

TEST(SafetensorsFile, OsErrors) {
  EXPECT_THAT(SafetensorsFile::Open("/nonexistent/dir/x.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/dir/x.safetensors")));
  const std::string dir = hc::testing::ScratchDir("st_file/dir");
  EXPECT_THAT(SafetensorsFile::Open(dir),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
}

// ---- Header helpers ----

TEST(SafetensorsHeader, ParseHeaderLength) {
  const uint8_t ok[8] = {0x10, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(*ParseHeaderLength(ok, std::nullopt, "s"), 16u);
  EXPECT_EQ(*ParseHeaderLength(ok, 24, "s"), 16u);
  EXPECT_THAT(ParseHeaderLength(ok, 23, "src"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("src: header length 16")));
  const uint8_t le[8] = {0x00, 0xe1, 0xf5, 0x05, 0, 0, 0, 0};  // 100,000,000 exactly: allowed
  EXPECT_EQ(*ParseHeaderLength(le, std::nullopt, "s"), kMaxHeaderBytes);
  const uint8_t over[8] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0};
  EXPECT_THAT(ParseHeaderLength(over, std::nullopt, "s"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
  const uint8_t high[8] = {2, 0, 0, 0, 0, 0, 0, 0x80};  // a high byte set: not 2
  EXPECT_THAT(ParseHeaderLength(high, std::nullopt, "s"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exceeds")));
}

// A file size below 8 cannot hold the prefix itself; the check must not wrap around.
TEST(SafetensorsHeader, ParseHeaderLengthWithFileSizeBelow8) {
  const uint8_t two[8] = {2, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_THAT(ParseHeaderLength(two, 4, "src"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("src")));
}

TEST(SafetensorsHeader, CheckedByteSizeAndShapeString) {
  EXPECT_EQ(CheckedByteSize({}, 4), 4u);
  EXPECT_EQ(CheckedByteSize({2, 3}, 2), 12u);
  EXPECT_EQ(CheckedByteSize({0, int64_t{1} << 62}, 8), 0u);
  EXPECT_EQ(CheckedByteSize({int64_t{1} << 61}, 8), std::nullopt);
  EXPECT_EQ(CheckedByteSize({int64_t{1} << 60}, 8), uint64_t{1} << 63);
  EXPECT_EQ(CheckedByteSize({-1}, 1), std::nullopt);
  EXPECT_EQ(ShapeString({}), "[]");
  EXPECT_EQ(ShapeString({2, 3, 4}), "[2, 3, 4]");
}

TEST(SafetensorsHeader, EncodeRoundTripsThroughValidate) {
  std::vector<TensorInfo> ts(3);
  ts[0] = {"a", DType::kF32, {2, 2}, 4, 0, 16};
  ts[1] = {"quote\"back\\slash", DType::kBF16, {3}, 3, 16, 22};
  ts[2] = {"empty", DType::kU8, {0}, 0, 22, 22};
  const StringMap meta = {{"z", "1"}, {"a", "tab\there"}};
  const std::string h = EncodeSafetensorsHeader(ts, meta);
  EXPECT_EQ(h.size() % 8, 0u);  // data region 8-byte aligned (8 + h.size())
  EXPECT_EQ(h.rfind("__metadata__", 5), 2u);  // metadata first
  HC_ASSERT_OK_AND_ASSIGN(SafetensorsHeader v, ValidateSafetensorsHeader(h, 22, "enc"));
  ASSERT_EQ(v.tensors.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(v.tensors[i].name, ts[i].name);
    EXPECT_EQ(v.tensors[i].dtype, ts[i].dtype);
    EXPECT_EQ(v.tensors[i].shape, ts[i].shape);
    EXPECT_EQ(v.tensors[i].begin, ts[i].begin);
    EXPECT_EQ(v.tensors[i].end, ts[i].end);
  }
  EXPECT_EQ(v.metadata, meta);
  // pad_to: exactly that size when it fits, otherwise the usual 8-byte padding.
  EXPECT_EQ(EncodeSafetensorsHeader(ts, meta, 4096).size(), 4096u);
  EXPECT_EQ(EncodeSafetensorsHeader(ts, meta, 8), h);
  EXPECT_EQ(EncodeSafetensorsHeader({}, {}), "{}      ");
  // No metadata: no "__metadata__" key at all.
  EXPECT_EQ(EncodeSafetensorsHeader(ts, {}).find("__metadata__"), std::string::npos);
}

TEST(SafetensorsHeader, ValidateStreamModeTakesRegionFromTensors) {
  const std::string h = R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})";
  HC_ASSERT_OK_AND_ASSIGN(SafetensorsHeader v, ValidateSafetensorsHeader(h, std::nullopt, "s"));
  EXPECT_EQ(v.data_bytes, 3u);
  EXPECT_EQ(v.header_bytes, h.size());
  EXPECT_THAT(ValidateSafetensorsHeader(h, 4, "s"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 trailing bytes")));
  EXPECT_THAT(ValidateSafetensorsHeader("", std::nullopt, "s"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'{'")));
}

TEST(ForEachRegularFile, VisitsNestedFilesNotLinksAndToleratesVanishingEntries) {
  namespace fs = std::filesystem;
  const std::string root = testing::ScratchDir("for_each_regular_file");
  fs::create_directories(root + "/a/b");
  fs::create_directories(root + "/c");
  for (const char* f : {"/x", "/a/y", "/a/b/z", "/c/w"}) std::ofstream(root + f) << "12345";
  fs::create_symlink(root + "/x", root + "/link");
  fs::create_directory_symlink(root + "/a", root + "/dirlink");
  std::vector<std::string> seen;
  uint64_t bytes = 0;
  ForEachRegularFile(root, [&](const std::string& p, const struct stat& st) {
    seen.push_back(p.substr(root.size()));
    bytes += st.st_size;
  });
  std::sort(seen.begin(), seen.end());
  EXPECT_THAT(seen, ElementsAre("/a/b/z", "/a/y", "/c/w", "/x"));
  EXPECT_EQ(bytes, 20u);
  // The first file seen deletes every other subtree (a job finishing during a spool walk): the
  // walk goes on to the end, and never reports a file after it was deleted.
  seen.clear();
  ForEachRegularFile(root, [&](const std::string& p, const struct stat&) {
    EXPECT_TRUE(fs::exists(p)) << p;
    if (seen.empty()) {
      for (const char* d : {"/a", "/c"}) {
        if (p.rfind(root + d, 0) != 0) fs::remove_all(root + d);
      }
    }
    seen.push_back(p);
  });
  EXPECT_GE(seen.size(), 1u);
  int visited = 0;
  ForEachRegularFile(root + "/missing", [&](const std::string&, const struct stat&) { ++visited; });
  EXPECT_EQ(visited, 0);
}

}  // namespace
}  // namespace hc
