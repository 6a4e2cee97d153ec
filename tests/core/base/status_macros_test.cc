#include "core/base/status_macros.h"

#include <memory>
#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

absl::Status Fail(absl::string_view msg) { return absl::NotFoundError(msg); }
absl::StatusOr<int> Value(int v) { return v; }
absl::StatusOr<int> NoValue() { return absl::DataLossError("no value"); }
absl::StatusOr<std::unique_ptr<int>> MoveOnly(int v) { return std::make_unique<int>(v); }

absl::Status ReturnIfError(absl::Status s, int* reached) {
  HC_RETURN_IF_ERROR(s);
  ++*reached;
  return absl::OkStatus();
}

absl::Status ReturnIfErrorAnnotated(absl::Status s, int* reached) {
  HC_RETURN_IF_ERROR(s, Annotate(_, "while testing"));
  ++*reached;
  return absl::OkStatus();
}

absl::Status ReturnIfErrorReplaced(absl::Status s) {
  HC_RETURN_IF_ERROR(s, absl::InternalError(absl::StrCat("replaced ", _.message())));
  return absl::OkStatus();
}

TEST(StatusMacros, ReturnIfError) {
  int reached = 0;
  EXPECT_THAT(ReturnIfError(absl::OkStatus(), &reached), IsOk());
  EXPECT_EQ(reached, 1);
  EXPECT_THAT(ReturnIfError(Fail("gone"), &reached),
              StatusIs(absl::StatusCode::kNotFound, "gone"));
  EXPECT_EQ(reached, 1);
}

TEST(StatusMacros, ReturnIfErrorWithErrorExpression) {
  int reached = 0;
  EXPECT_THAT(ReturnIfErrorAnnotated(absl::OkStatus(), &reached), IsOk());
  EXPECT_EQ(reached, 1);
  EXPECT_THAT(ReturnIfErrorAnnotated(Fail("gone"), &reached),
              StatusIs(absl::StatusCode::kNotFound, "while testing: gone"));
  EXPECT_EQ(reached, 1);
  EXPECT_THAT(ReturnIfErrorReplaced(Fail("x")), StatusIs(absl::StatusCode::kInternal, "replaced x"));
  EXPECT_THAT(ReturnIfErrorReplaced(absl::OkStatus()), IsOk());
}

TEST(StatusMacros, ReturnIfErrorEvaluatesOnce) {
  int calls = 0;
  auto f = [&]() -> absl::Status {
    HC_RETURN_IF_ERROR((++calls, Fail("x")));
    return absl::OkStatus();
  };
  EXPECT_FALSE(f().ok());
  EXPECT_EQ(calls, 1);
  auto g = [&]() -> absl::Status {
    HC_RETURN_IF_ERROR((++calls, Fail("x")), Annotate(_, "ctx"));
    return absl::OkStatus();
  };
  EXPECT_FALSE(g().ok());
  EXPECT_EQ(calls, 2);
}

absl::StatusOr<int> AssignDeclare(absl::StatusOr<int> in) {
  HC_ASSIGN_OR_RETURN(int v, in);
  return v * 2;
}

absl::Status AssignExisting(absl::StatusOr<int> in, int* out) {
  HC_ASSIGN_OR_RETURN(*out, in);
  return absl::OkStatus();
}

absl::StatusOr<int> AssignAnnotated(absl::StatusOr<int> in) {
  HC_ASSIGN_OR_RETURN(int v, in, Annotate(_, "reading v"));
  return v + 1;
}

absl::StatusOr<std::string> AssignReplaced(absl::StatusOr<int> in) {
  HC_ASSIGN_OR_RETURN(int v, in,
                      absl::InvalidArgumentError(absl::StrCat("bad (", _.message(), ")")));
  return std::to_string(v);
}

absl::StatusOr<int> AssignMoveOnly(absl::StatusOr<std::unique_ptr<int>> in) {
  HC_ASSIGN_OR_RETURN(std::unique_ptr<int> p, std::move(in));
  HC_ASSIGN_OR_RETURN(auto q, MoveOnly(*p + 1));  // two uses in one function
  return *q;
}

TEST(StatusMacros, AssignOrReturn) {
  EXPECT_THAT(AssignDeclare(Value(21)), IsOk());
  EXPECT_EQ(*AssignDeclare(Value(21)), 42);
  EXPECT_THAT(AssignDeclare(NoValue()), StatusIs(absl::StatusCode::kDataLoss, "no value"));

  int out = -1;
  EXPECT_THAT(AssignExisting(Value(7), &out), IsOk());
  EXPECT_EQ(out, 7);
  out = -1;
  EXPECT_THAT(AssignExisting(NoValue(), &out), StatusIs(absl::StatusCode::kDataLoss, "no value"));
  EXPECT_EQ(out, -1);  // untouched on error

  EXPECT_EQ(*AssignMoveOnly(MoveOnly(4)), 5);
  EXPECT_THAT(AssignMoveOnly(absl::UnknownError("u")), StatusIs(absl::StatusCode::kUnknown, "u"));
}

TEST(StatusMacros, AssignOrReturnWithErrorExpression) {
  EXPECT_EQ(*AssignAnnotated(Value(1)), 2);
  EXPECT_THAT(AssignAnnotated(NoValue()),
              StatusIs(absl::StatusCode::kDataLoss, "reading v: no value"));
  EXPECT_EQ(*AssignReplaced(Value(3)), "3");
  EXPECT_THAT(AssignReplaced(NoValue()),
              StatusIs(absl::StatusCode::kInvalidArgument, "bad (no value)"));
}

TEST(StatusMacros, AssignOrReturnEvaluatesOnce) {
  int calls = 0;
  auto f = [&]() -> absl::StatusOr<int> {
    HC_ASSIGN_OR_RETURN(int v, (++calls, Value(5)));
    return v;
  };
  EXPECT_EQ(*f(), 5);
  EXPECT_EQ(calls, 1);
}

TEST(StatusMacros, Annotate) {
  EXPECT_THAT(Annotate(absl::OkStatus(), "ctx"), IsOk());
  const absl::Status s = Annotate(absl::ResourceExhaustedError("full"), "writing x");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted, "writing x: full"));
  EXPECT_THAT(Annotate(s, "outer"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("outer: writing x: full")));
}

}  // namespace
}  // namespace hc
