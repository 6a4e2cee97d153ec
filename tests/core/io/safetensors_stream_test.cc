// Stream-specific behaviour of SafetensorsStreamParser: truncation, excess bytes, limits,
// callbacks.
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors_stream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/io/st_test_util.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::AsBytes;
using ::hc::testing::ByteByByte;
using ::hc::testing::IsOk;
using ::hc::testing::MakeSafetensors;
using ::hc::testing::PatternBytes;
using ::hc::testing::StatusIs;
using ::hc::testing::StreamedTensor;
using ::hc::testing::StreamParse;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Two tensors "a" (8 bytes) and "b" (12 bytes).
std::string TwoTensors() {
  return MakeSafetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F16","shape":[6],"data_offsets":[8,20]}})",
                         PatternBytes(20));
}

absl::Status NoOp(const TensorInfo&, absl::Span<const uint8_t>) { return absl::OkStatus(); }

TEST(StreamParser, TruncatedInsideATensorNamesIt) {
  const std::string full = TwoTensors();
  const std::string cut = full.substr(0, full.size() - 3);
  for (const auto& chunks : {std::vector<size_t>{}, ByteByByte(cut.size())}) {
    std::vector<StreamedTensor> got;
    EXPECT_THAT(StreamParse(cut, "up", chunks, &got),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("up: stream truncated after "),
                               HasSubstr(absl::StrCat(cut.size(), " of ", full.size(), " bytes")),
                               HasSubstr("inside tensor \"b\""))));
    ASSERT_EQ(got.size(), 1u);  // "a" was complete and delivered
    EXPECT_EQ(got[0].info.name, "a");
  }
}

TEST(StreamParser, TruncatedBetweenTensorsNamesTheNextOne) {
  const std::string full = TwoTensors();
  const std::string cut = full.substr(0, full.size() - 12);  // ends right after "a"
  EXPECT_THAT(StreamParse(cut, "up", {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inside tensor \"b\"")));
}

TEST(StreamParser, TruncatedInsideTheHeader) {
  const std::string full = TwoTensors();
  for (size_t n : {size_t{0}, size_t{3}, size_t{8}, size_t{20}}) {
    EXPECT_THAT(StreamParse(full.substr(0, n), "up", {}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(absl::StrCat("up: stream truncated after ", n, " bytes")),
                               HasSubstr("inside the header"))))
        << n;
  }
}

TEST(StreamParser, BytesAfterTheEnd) {
  const std::string full = TwoTensors();
  EXPECT_THAT(StreamParse(full + "xyz", "up", {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("up: 3 bytes after the end of the data region"),
                             HasSubstr(absl::StrCat("(", full.size(), " bytes)")))));
  // In a separate Feed after a complete stream.
  SafetensorsStreamParser p("up");
  ASSERT_THAT(p.Feed(AsBytes(full), NoOp), IsOk());
  EXPECT_THAT(p.Feed(AsBytes("!"), NoOp),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1 bytes after the end")));
  EXPECT_FALSE(p.Finish().ok());  // the error sticks
  // An empty Feed after the end is harmless.
  SafetensorsStreamParser q("up");
  ASSERT_THAT(q.Feed(AsBytes(full), NoOp), IsOk());
  EXPECT_THAT(q.Feed({}, NoOp), IsOk());
  EXPECT_THAT(q.Finish(), IsOk());
}

TEST(StreamParser, MaxTotalBytes) {
  const std::string full = TwoTensors();
  StreamParserOptions o;
  o.max_total_bytes = full.size();
  EXPECT_THAT(StreamParse(full, "up", {}, nullptr, o), IsOk());
  EXPECT_THAT(StreamParse(full, "up", ByteByByte(full.size()), nullptr, o), IsOk());
  o.max_total_bytes = full.size() - 1;
  // The header declares more than the limit: rejected as soon as the header is known.
  for (const auto& chunks : {std::vector<size_t>{}, ByteByByte(full.size())}) {
    EXPECT_THAT(StreamParse(full, "up", chunks, nullptr, o),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("up:"), HasSubstr(absl::StrCat("limit of ", full.size() - 1)))));
  }
  // A limit smaller than the header: rejected on the raw byte count.
  o.max_total_bytes = 12;
  EXPECT_THAT(StreamParse(full, "up", {}, nullptr, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("stream exceeds the limit of 12")));
  EXPECT_THAT(StreamParse(full, "up", ByteByByte(full.size()), nullptr, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit of 12")));
  // Garbage after the end is also caught by the total limit when it is exact.
  o.max_total_bytes = full.size();
  EXPECT_THAT(StreamParse(full + "x", "up", {}, nullptr, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
}

TEST(StreamParser, MaxTensorBytes) {
  const std::string full = TwoTensors();
  StreamParserOptions o;
  o.max_tensor_bytes = 12;
  EXPECT_THAT(StreamParse(full, "up", {}, nullptr, o), IsOk());
  o.max_tensor_bytes = 11;
  std::vector<StreamedTensor> got;
  EXPECT_THAT(StreamParse(full, "up", ByteByByte(full.size()), &got, o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("up: tensor \"b\" has 12 bytes"),
                             HasSubstr("per-tensor limit of 11"))));
  EXPECT_TRUE(got.empty());  // rejected before any tensor is delivered
}

// The declared size is 8 + header + data region. With two tensors whose sizes add up to nearly
// 2^64 that sum must not wrap around and slip under max_total_bytes.
TEST(StreamParser, DeclaredSizeDoesNotWrapPastTheTotalLimit) {
  const std::string header = absl::StrCat(
      R"({"a":{"dtype":"U8","shape":[9223372036854775807],"data_offsets":[0,9223372036854775807]},)",
      R"("b":{"dtype":"U8","shape":[9223372036854775807],)",
      R"("data_offsets":[9223372036854775807,18446744073709551614]}})");
  const std::string bytes = MakeSafetensors(header);  // header only: no data is ever sent
  StreamParserOptions o;
  o.max_tensor_bytes = UINT64_MAX;
  o.max_total_bytes = 1 << 20;
  SafetensorsStreamParser p("up", o);
  EXPECT_THAT(p.Feed(AsBytes(bytes), NoOp),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AnyOf(HasSubstr("limit of 1048576"), HasSubstr("overflows"))))
      << "declared file_size() = " << p.header().file_size();
}

// A peer can declare a tensor as large as max_tensor_bytes and then send one byte. The parser
// must not allocate the whole declared size up front (std::vector::reserve of 1 TiB throws
// std::bad_alloc, which terminates the process). Run in a child so a crash fails only this test.
TEST(StreamParserDeathTest, HugeDeclaredTensorDoesNotCrashOnFirstByte) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const uint64_t big = uint64_t{1} << 40;
  const std::string bytes =
      MakeSafetensors(absl::StrCat(R"({"big":{"dtype":"U8","shape":[)", big,
                                   R"(],"data_offsets":[0,)", big, "]}}"),
                      "x");
  StreamParserOptions o;
  o.max_tensor_bytes = big;
  EXPECT_EXIT(
      {
        SafetensorsStreamParser p("up", o);
        absl::Status s = p.Feed(AsBytes(bytes), NoOp);
        std::exit(s.ok() || s.code() == absl::StatusCode::kInvalidArgument ||
                          s.code() == absl::StatusCode::kResourceExhausted
                      ? 0
                      : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(StreamParser, OptionsValidate) {
  EXPECT_THAT(StreamParserOptions{}.Validate(), IsOk());
  StreamParserOptions o;
  o.max_tensor_bytes = 0;
  EXPECT_THAT(o.Validate(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tensor_bytes")));
  o = {};
  o.max_total_bytes = 7;
  EXPECT_THAT(o.Validate(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_total_bytes")));
}

TEST(StreamParser, CallbackErrorAbortsAndSticks) {
  const std::string full = TwoTensors();
  SafetensorsStreamParser p("up");
  int calls = 0;
  auto cb = [&](const TensorInfo& t, absl::Span<const uint8_t>) -> absl::Status {
    ++calls;
    return absl::CancelledError(absl::StrCat("stop at ", t.name));
  };
  EXPECT_THAT(p.Feed(AsBytes(full), cb), StatusIs(absl::StatusCode::kCancelled, "stop at a"));
  EXPECT_EQ(calls, 1);
  EXPECT_THAT(p.Feed(AsBytes("x"), cb), StatusIs(absl::StatusCode::kCancelled, "stop at a"));
  EXPECT_THAT(p.Finish(), StatusIs(absl::StatusCode::kCancelled, "stop at a"));
  EXPECT_EQ(calls, 1);
}

TEST(StreamParser, HeaderCallback) {
  const std::string full = TwoTensors();
  SafetensorsStreamParser p("up");
  std::vector<std::string> events;
  p.OnHeader([&](const SafetensorsHeader& h) {
    events.push_back(absl::StrCat("header ", h.tensors.size()));
    return absl::OkStatus();
  });
  auto cb = [&](const TensorInfo& t, absl::Span<const uint8_t> d) {
    events.push_back(absl::StrCat(t.name, " ", d.size()));
    return absl::OkStatus();
  };
  EXPECT_FALSE(p.has_header());
  for (char c : full) {
    ASSERT_THAT(p.Feed(AsBytes(std::string(1, c)), cb), IsOk());
  }
  EXPECT_TRUE(p.has_header());
  EXPECT_EQ(p.bytes_consumed(), full.size());
  EXPECT_EQ(p.header().tensors.size(), 2u);
  EXPECT_THAT(p.Finish(), IsOk());
  EXPECT_THAT(events, ::testing::ElementsAre("header 2", "a 8", "b 12"));

  SafetensorsStreamParser q("up");
  q.OnHeader([](const SafetensorsHeader&) { return absl::PermissionDeniedError("no"); });
  int calls = 0;
  auto count = [&](const TensorInfo&, absl::Span<const uint8_t>) {
    ++calls;
    return absl::OkStatus();
  };
  EXPECT_THAT(q.Feed(AsBytes(full), count), StatusIs(absl::StatusCode::kPermissionDenied, "no"));
  EXPECT_EQ(calls, 0);
}

TEST(StreamParser, ZeroSizeTensorsDeliveredInOrder) {
  const std::string bytes = MakeSafetensors(
      R"({"e0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
      R"("a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("e1":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
      R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},)"
      R"("e2":{"dtype":"F32","shape":[0],"data_offsets":[3,3]}})",
      "xyz");
  for (const auto& chunks : {std::vector<size_t>{}, ByteByByte(bytes.size())}) {
    std::vector<StreamedTensor> got;
    ASSERT_THAT(StreamParse(bytes, "up", chunks, &got), IsOk());
    std::vector<std::string> seen;
    for (const auto& t : got) seen.push_back(absl::StrCat(t.info.name, "=", t.data));
    EXPECT_THAT(seen, ::testing::ElementsAre("e0=", "a=xy", "e1=", "b=z", "e2="));
  }
  // A stream that ends right after the header still delivers trailing empty tensors when every
  // tensor is empty.
  const std::string empty_only =
      MakeSafetensors(R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})");
  std::vector<StreamedTensor> got;
  ASSERT_THAT(StreamParse(empty_only, "up", {}, &got), IsOk());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].info.name, "e");
}

}  // namespace
}  // namespace hc
