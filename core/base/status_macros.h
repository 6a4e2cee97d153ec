// Status propagation macros (Abseil 20220623 ships none).
//
//   HC_RETURN_IF_ERROR(expr);               returns the status of `expr` if it is not OK.
//   HC_ASSIGN_OR_RETURN(lhs, expr);         evaluates a StatusOr, returns its status on error,
//                                           otherwise assigns (or declares) `lhs` from its value.
//
// Both accept an optional last argument, an expression evaluated on error in which `_` names the
// failing absl::Status; its value is returned instead, e.g.
//   HC_RETURN_IF_ERROR(Parse(x), Annotate(_, "while parsing x"));
#ifndef HC_CORE_BASE_STATUS_MACROS_H_
#define HC_CORE_BASE_STATUS_MACROS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace hc {

/// Returns `s` with `context` prepended to its message ("context: message"); OK stays OK.
inline absl::Status Annotate(const absl::Status& s, absl::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(context, ": ", s.message()));
}

}  // namespace hc

#define HC_STATUS_CONCAT_INNER_(a, b) a##b
#define HC_STATUS_CONCAT_(a, b) HC_STATUS_CONCAT_INNER_(a, b)

#define HC_RETURN_IF_ERROR(...) \
  HC_RETURN_IF_ERROR_SELECT_(__VA_ARGS__, HC_RETURN_IF_ERROR_2_, HC_RETURN_IF_ERROR_1_)(__VA_ARGS__)
#define HC_RETURN_IF_ERROR_SELECT_(_1, _2, NAME, ...) NAME
#define HC_RETURN_IF_ERROR_1_(expr)                               \
  do {                                                            \
    if (absl::Status hc_status_ = (expr); !hc_status_.ok()) {     \
      return hc_status_;                                          \
    }                                                             \
  } while (0)
#define HC_RETURN_IF_ERROR_2_(expr, error_expr)                   \
  do {                                                            \
    if (absl::Status _ = (expr); !_.ok()) {                       \
      return (error_expr);                                        \
    }                                                             \
  } while (0)

#define HC_ASSIGN_OR_RETURN(...)                                              \
  HC_ASSIGN_OR_RETURN_SELECT_(__VA_ARGS__, HC_ASSIGN_OR_RETURN_3_,            \
                              HC_ASSIGN_OR_RETURN_2_)(__VA_ARGS__)
#define HC_ASSIGN_OR_RETURN_SELECT_(_1, _2, _3, NAME, ...) NAME
#define HC_ASSIGN_OR_RETURN_2_(lhs, expr) \
  HC_ASSIGN_OR_RETURN_IMPL_(HC_STATUS_CONCAT_(hc_statusor_, __LINE__), lhs, expr, _)
#define HC_ASSIGN_OR_RETURN_3_(lhs, expr, error_expr) \
  HC_ASSIGN_OR_RETURN_IMPL_(HC_STATUS_CONCAT_(hc_statusor_, __LINE__), lhs, expr, error_expr)
#define HC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr, error_expr) \
  auto tmp = (expr);                                          \
  if (!tmp.ok()) {                                            \
    [[maybe_unused]] const absl::Status& _ = tmp.status();    \
    return (error_expr);                                      \
  }                                                           \
  lhs = std::move(tmp).value()

#endif  // HC_CORE_BASE_STATUS_MACROS_H_
