// gMock matchers for absl::Status / StatusOr (Abseil 20220623 ships none).
//   EXPECT_THAT(s, IsOk());
//   EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dtype")));
//   HC_ASSERT_OK_AND_ASSIGN(auto v, MakeThing());
#ifndef HC_TESTS_TESTUTIL_STATUS_MATCHERS_H_
#define HC_TESTS_TESTUTIL_STATUS_MATCHERS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace hc::testing {

inline const absl::Status& ToStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ToStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.ok();
}

MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = ToStatus(arg);
  *result_listener << "status is " << s.ToString();
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

}  // namespace hc::testing

#define HC_TESTING_CONCAT_INNER_(a, b) a##b
#define HC_TESTING_CONCAT_(a, b) HC_TESTING_CONCAT_INNER_(a, b)
#define HC_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  HC_ASSERT_OK_AND_ASSIGN_IMPL_(HC_TESTING_CONCAT_(hc_sor_, __LINE__), lhs, expr)
#define HC_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)   \
  auto tmp = (expr);                                    \
  ASSERT_TRUE(tmp.ok()) << tmp.status().ToString();     \
  lhs = std::move(tmp).value()
#define HC_ASSERT_OK(expr)                                   \
  do {                                                       \
    const absl::Status hc_s_ = ::hc::testing::ToStatus(expr); \
    ASSERT_TRUE(hc_s_.ok()) << hc_s_.ToString();             \
  } while (0)
#define HC_EXPECT_OK(expr) EXPECT_TRUE(::hc::testing::ToStatus(expr).ok()) << ::hc::testing::ToStatus(expr).ToString()

#endif  // HC_TESTS_TESTUTIL_STATUS_MATCHERS_H_
