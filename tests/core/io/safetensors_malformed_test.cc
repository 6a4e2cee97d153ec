// Malformed safetensors files: each kind is written to a scratch file and must be rejected by
// SafetensorsFile::Open and by SafetensorsStreamParser (one chunk, and byte by byte) with
// InvalidArgument naming the source and, where there is one, the tensor and the broken rule.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_file.h"
#include "core/io/safetensors_stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/io/st_test_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::MakeSafetensors;
using ::hc::testing::LengthPrefix;
using ::hc::testing::PatternBytes;
using ::hc::testing::StatusIs;
using ::testing::AllOfArray;
using ::testing::HasSubstr;
using ::testing::Matcher;

using Strings = std::vector<std::string>;

std::string Entry(absl::string_view name, absl::string_view dtype, absl::string_view shape,
                  absl::string_view offsets) {
  return absl::StrCat("\"", name, "\":{\"dtype\":", dtype, ",\"shape\":", shape,
                      ",\"data_offsets\":", offsets, "}");
}
// A well-formed F32 entry of `n` elements at [begin, begin + 4n).
std::string F32(absl::string_view name, int n, int begin) {
  return Entry(name, "\"F32\"", absl::StrCat("[", n, "]"),
               absl::StrCat("[", begin, ",", begin + 4 * n, "]"));
}
std::string Obj(const Strings& members) {
  std::string out = "{";
  for (size_t i = 0; i < members.size(); ++i) absl::StrAppend(&out, i ? "," : "", members[i]);
  return out + "}";
}

class Malformed : public ::testing::Test {
 protected:
  // Checks the three readers reject `bytes`. `common` must be in every message, `file_only` in
  // Open's, `stream_only` in the stream parser's.
  void ExpectRejected(const std::string& bytes, const Strings& common,
                      const Strings& file_only = {}, const Strings& stream_only = {}) {
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    const std::string variant = absl::StrCat(test, "_", count_++);
    const std::string path = absl::StrCat(hc::testing::ScratchDir("malformed/" + variant), "/",
                                          variant, ".safetensors");
    hc::testing::WriteFile(path, bytes);

    std::vector<Matcher<std::string>> file_m = {HasSubstr(path)};
    for (const auto& s : common) file_m.push_back(HasSubstr(s));
    for (const auto& s : file_only) file_m.push_back(HasSubstr(s));
    auto opened = SafetensorsFile::Open(path);
    EXPECT_THAT(opened, StatusIs(absl::StatusCode::kInvalidArgument, AllOfArray(file_m)))
        << "SafetensorsFile::Open, " << variant;

    const std::string source = absl::StrCat("upload:", variant);
    std::vector<Matcher<std::string>> stream_m = {HasSubstr(source)};
    for (const auto& s : common) stream_m.push_back(HasSubstr(s));
    for (const auto& s : stream_only) stream_m.push_back(HasSubstr(s));
    EXPECT_THAT(hc::testing::StreamParse(bytes, source, {}),
                StatusIs(absl::StatusCode::kInvalidArgument, AllOfArray(stream_m)))
        << "stream, one chunk, " << variant;
    EXPECT_THAT(hc::testing::StreamParse(bytes, source, hc::testing::ByteByByte(bytes.size())),
                StatusIs(absl::StatusCode::kInvalidArgument, AllOfArray(stream_m)))
        << "stream, byte by byte, " << variant;
  }

  int count_ = 0;
};

// ---- The length prefix ----

TEST_F(Malformed, FileShorterThan8Bytes) {
  ExpectRejected(std::string("\x02\0\0\0\0", 5), {}, {"5 bytes", "fewer than the 8-byte"},
                 {"truncated", "inside the header"});
}

TEST_F(Malformed, EmptyFile) {
  ExpectRejected("", {}, {"0 bytes", "fewer than the 8-byte"},
                 {"truncated after 0 bytes", "inside the header"});
}

TEST_F(Malformed, HeaderLengthOver100MB) {
  ExpectRejected(LengthPrefix(100'000'001) + "{}", {"header length 100000001", "exceeds"});
  ExpectRejected(LengthPrefix(~uint64_t{0}) + "{}", {"18446744073709551615", "exceeds"});
}

TEST_F(Malformed, HeaderLengthPastEndOfFile) {
  ExpectRejected(LengthPrefix(64) + "{}      ", {}, {"header length 64", "past the end of the file"},
                 {"truncated after 16 bytes", "inside the header"});
  // One byte short.
  ExpectRejected(LengthPrefix(9) + "{}      ", {}, {"past the end of the file"}, {"inside the header"});
}

TEST_F(Malformed, HeaderLengthTooSmall) {
  ExpectRejected(LengthPrefix(0) + "{}", {"header length 0", "too small"});
  ExpectRejected(LengthPrefix(1) + "{", {"header length 1", "too small"});
}

// ---- The JSON header ----

TEST_F(Malformed, HeaderNotJson) {
  ExpectRejected(MakeSafetensors("{\"w\": nope}"), {"header", "invalid JSON"});
  ExpectRejected(MakeSafetensors("{\"w\":{\"dtype\":\"F32\""), {"invalid JSON"});  // truncated
  ExpectRejected(MakeSafetensors("hello, world"), {"does not start with '{'"});
}

TEST_F(Malformed, HeaderJsonNotAnObject) {
  ExpectRejected(MakeSafetensors(R"([{"dtype":"F32","shape":[],"data_offsets":[0,4]}])",
                                 PatternBytes(4)),
                 {"'{'"});
  ExpectRejected(MakeSafetensors("\"{}\""), {"'{'"});
  ExpectRejected(MakeSafetensors("12"), {"'{'"});
}

TEST_F(Malformed, TrailingGarbageAfterJsonObject) {
  ExpectRejected(MakeSafetensors("{}x      "), {"unexpected data after the JSON value"});
  ExpectRejected(MakeSafetensors(Obj({F32("w", 2, 0)}) + "  }", PatternBytes(8)),
                 {"unexpected data after the JSON value"});
  // NUL padding is not space padding.
  ExpectRejected(MakeSafetensors(std::string("{}\0\0\0\0\0\0", 8)), {"after the JSON value"});
}

TEST_F(Malformed, DuplicateTensorNames) {
  ExpectRejected(MakeSafetensors(Obj({F32("w", 2, 0), F32("w", 2, 8)}), PatternBytes(16)),
                 {"duplicate key \"w\""});
}

TEST_F(Malformed, DuplicateMetadataAndEntryKeys) {
  ExpectRejected(MakeSafetensors(R"({"__metadata__":{},"__metadata__":{}})"),
                 {"duplicate key \"__metadata__\""});
  ExpectRejected(MakeSafetensors(R"({"__metadata__":{"k":"a","k":"b"}})"), {"duplicate key \"k\""});
  ExpectRejected(
      MakeSafetensors(R"({"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                      PatternBytes(4)),
      {"duplicate key \"dtype\""});
}

TEST_F(Malformed, HeaderNestingTooDeep) {
  std::string deep = "{\"__metadata__\":{\"k\":";
  for (int i = 0; i < 80; ++i) deep += "[";
  for (int i = 0; i < 80; ++i) deep += "]";
  deep += "}}";
  ExpectRejected(MakeSafetensors(deep), {"nesting too deep"});
}

TEST_F(Malformed, InvalidUtf8InHeader) {
  ExpectRejected(MakeSafetensors(Obj({F32("w\xff", 1, 0)}), PatternBytes(4)), {"invalid UTF-8"});
  ExpectRejected(MakeSafetensors("{\"__metadata__\":{\"k\":\"\xc0\xaf\"}}"), {"invalid UTF-8"});
  ExpectRejected(MakeSafetensors(Obj({F32("\xed\xa0\x80", 1, 0)}), PatternBytes(4)),
                 {"invalid UTF-8"});
  ExpectRejected(MakeSafetensors(Obj({F32("w\xe2\x82", 1, 0)}), PatternBytes(4)), {"UTF-8"});
}

// ---- Tensor entries ----

TEST_F(Malformed, TensorEntryNotAnObject) {
  ExpectRejected(MakeSafetensors(R"({"w":[0,4]})"), {"tensor \"w\"", "not a JSON object"});
  ExpectRejected(MakeSafetensors(R"({"w":"F32"})"), {"tensor \"w\"", "not a JSON object"});
}

TEST_F(Malformed, EmptyTensorName) {
  ExpectRejected(MakeSafetensors(Obj({F32("", 1, 0)}), PatternBytes(4)), {"empty name"});
}

TEST_F(Malformed, UnknownKeyInTensorEntry) {
  ExpectRejected(
      MakeSafetensors(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})",
                      PatternBytes(4)),
      {"tensor \"w\"", "unknown key \"extra\""});
}

TEST_F(Malformed, MissingDtype) {
  ExpectRejected(MakeSafetensors(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", PatternBytes(4)),
                 {"tensor \"w\"", "missing \"dtype\""});
}

TEST_F(Malformed, MissingShape) {
  ExpectRejected(MakeSafetensors(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", PatternBytes(4)),
                 {"tensor \"w\"", "missing \"shape\""});
}

TEST_F(Malformed, MissingDataOffsets) {
  ExpectRejected(MakeSafetensors(R"({"w":{"dtype":"F32","shape":[1]}})", PatternBytes(4)),
                 {"tensor \"w\"", "missing \"data_offsets\""});
}

TEST_F(Malformed, UnknownDtype) {
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F17\"", "[1]", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "unknown dtype \"F17\""});
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"f32\"", "[1]", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "unknown dtype \"f32\""});
}

TEST_F(Malformed, DtypeNotAString) {
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "4", "[1]", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "\"dtype\" is not a string"});
}

TEST_F(Malformed, ShapeNotAList) {
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "1", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "\"shape\" is not a list"});
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "{}", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "\"shape\" is not a list"});
}

TEST_F(Malformed, ShapeNegativeDim) {
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[-1]", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "\"shape\" must hold non-negative integers"});
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[-2,-2]", "[0,16]")}), PatternBytes(16)),
                 {"tensor \"w\"", "non-negative integers"});
}

TEST_F(Malformed, ShapeNonIntegerDims) {
  for (const char* shape : {"[1.0]", "[1e0]", "[0.5]", "[\"1\"]", "[null]", "[true]", "[[1]]"}) {
    ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", shape, "[0,4]")}), PatternBytes(4)),
                   {"tensor \"w\"", "non-negative integers"});
  }
}

TEST_F(Malformed, ShapeDimAboveInt64Max) {
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"U8\"", "[9223372036854775808]",
                                            "[0,9223372036854775808]")})),
                 {"tensor \"w\"", "non-negative integers"});
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"U8\"", "[18446744073709551616]", "[0,4]")})),
                 {"tensor \"w\"", "non-negative integers"});
}

TEST_F(Malformed, ShapeTimesDtypeSizeOverflows64Bits) {
  // 2^62 elements of 4 bytes = 2^64 bytes.
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[4611686018427387904]", "[0,0]")})),
                 {"tensor \"w\"", "[4611686018427387904] x F32 overflows 64 bits"});
  ExpectRejected(
      MakeSafetensors(Obj({Entry("w", "\"U8\"", "[4294967296,4294967296]", "[0,0]")})),
      {"tensor \"w\"", "overflows 64 bits"});
  // 2^62 x 8 one-byte elements.
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"U8\"", "[4611686018427387904,8]", "[0,0]")})),
                 {"tensor \"w\"", "overflows 64 bits"});
}

TEST_F(Malformed, DataOffsetsWrongArity) {
  for (const char* off : {"[0]", "[]", "[0,4,4]", "0", "\"0,4\"", "{\"0\":4}"}) {
    ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[1]", off)}), PatternBytes(4)),
                   {"tensor \"w\"", "\"data_offsets\" must be a list of two integers"});
  }
}

TEST_F(Malformed, DataOffsetsNotIntegers) {
  for (const char* off : {"[0,\"4\"]", "[0.0,4]", "[0,4.0]", "[0,4e0]", "[-0,4]", "[null,4]",
                          "[0,-4]", "[0,18446744073709551616]"}) {
    ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[1]", off)}), PatternBytes(4)),
                   {"tensor \"w\"", "\"data_offsets\" must be non-negative integers"});
  }
}

TEST_F(Malformed, DataOffsetsBeginAfterEnd) {
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[1]", "[8,4]")}), PatternBytes(8)),
                 {"tensor \"w\"", "data_offsets [8, 4] run backwards"});
}

TEST_F(Malformed, DataOffsetsLengthDoesNotMatchShape) {
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[2]", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "hold 4 bytes", "[2] x F32 needs 8"});
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F16\"", "[2,3]", "[0,16]")}), PatternBytes(16)),
                 {"tensor \"w\"", "hold 16 bytes", "[2, 3] x F16 needs 12"});
  // A zero-size shape with a non-empty range.
  ExpectRejected(MakeSafetensors(Obj({Entry("w", "\"F32\"", "[0]", "[0,4]")}), PatternBytes(4)),
                 {"tensor \"w\"", "needs 0"});
}

TEST_F(Malformed, DataOffsetsPastDataRegion) {
  // The header promises 8 bytes; 4 arrive.
  ExpectRejected(MakeSafetensors(Obj({F32("w", 2, 0)}), PatternBytes(4)), {"tensor \"w\""},
                 {"data_offsets end at 8", "past the data region of 4 bytes"},
                 {"truncated", "inside tensor \"w\""});
  // The second tensor runs past the end.
  ExpectRejected(MakeSafetensors(Obj({F32("a", 1, 0), F32("b", 4, 4)}), PatternBytes(12)),
                 {"tensor \"b\""}, {"past the data region of 12 bytes"},
                 {"inside tensor \"b\""});
}

TEST_F(Malformed, OverlappingTensors) {
  ExpectRejected(MakeSafetensors(Obj({F32("a", 2, 0), F32("b", 2, 4)}), PatternBytes(12)),
                 {"tensor \"b\"", "overlap tensor \"a\""});
  // Header order does not matter.
  ExpectRejected(MakeSafetensors(Obj({F32("b", 2, 4), F32("a", 2, 0)}), PatternBytes(12)),
                 {"tensor \"b\"", "overlap tensor \"a\""});
}

TEST_F(Malformed, IdenticalRanges) {
  ExpectRejected(MakeSafetensors(Obj({F32("a", 2, 0), F32("b", 2, 0)}), PatternBytes(8)),
                 {"tensor \"b\"", "overlap tensor \"a\""});
}

TEST_F(Malformed, ZeroSizeTensorInsideAnother) {
  ExpectRejected(MakeSafetensors(Obj({F32("a", 2, 0), Entry("z", "\"F32\"", "[0]", "[4,4]")}),
                                 PatternBytes(8)),
                 {"tensor \"z\"", "overlap tensor \"a\""});
}

TEST_F(Malformed, GapBetweenTensors) {
  ExpectRejected(MakeSafetensors(Obj({F32("a", 1, 0), F32("b", 1, 8)}), PatternBytes(12)),
                 {"tensor \"b\"", "data_offsets start at 8 leaving a gap at 4"});
}

TEST_F(Malformed, GapBeforeFirstTensor) {
  ExpectRejected(MakeSafetensors(Obj({F32("a", 1, 4)}), PatternBytes(8)),
                 {"tensor \"a\"", "gap at 0"});
  // A lone zero-size tensor placed past the (empty) data region.
  ExpectRejected(MakeSafetensors(Obj({Entry("z", "\"F32\"", "[0]", "[100,100]")})),
                 {"tensor \"z\"", "gap at 0"});
}

TEST_F(Malformed, TrailingBytesAfterLastTensor) {
  ExpectRejected(MakeSafetensors(Obj({F32("a", 2, 0)}), PatternBytes(12)), {},
                 {"data region has 4 trailing bytes no tensor covers"},
                 {"after the end of the data region"});
  ExpectRejected(MakeSafetensors("{}", "abc"), {}, {"3 trailing bytes"},
                 {"after the end of the data region"});
}

TEST_F(Malformed, MetadataNotAnObject) {
  ExpectRejected(MakeSafetensors(R"({"__metadata__":"x"})"), {"\"__metadata__\" is not an object"});
  ExpectRejected(MakeSafetensors(R"({"__metadata__":["k","v"]})"),
                 {"\"__metadata__\" is not an object"});
}

TEST_F(Malformed, MetadataNonStringValue) {
  for (const char* v : {"1", "null", "true", "{\"x\":\"y\"}", "[\"v\"]"}) {
    ExpectRejected(MakeSafetensors(absl::StrCat("{\"__metadata__\":{\"ok\":\"v\",\"k\":", v, "}}")),
                   {"\"__metadata__\" value for \"k\" is not a string"});
  }
}

}  // namespace
}  // namespace hc
