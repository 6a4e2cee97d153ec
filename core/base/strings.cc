#include "core/base/strings.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace hc {

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  std::string t = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  if (!t.empty() && t.back() == 'B') t.pop_back();
  int shift = 0;
  if (!t.empty() && (t.back() == 'K' || t.back() == 'M' || t.back() == 'G' || t.back() == 'T')) {
    shift = t.back() == 'K' ? 10 : t.back() == 'M' ? 20 : t.back() == 'G' ? 30 : 40;
    t.pop_back();
  }
  uint64_t v;
  if (!absl::SimpleAtoi(t, &v) || (shift > 0 && v > (UINT64_MAX >> shift))) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a size (e.g. 4096, 64M, 2G)"));
  }
  return v << shift;
}

}  // namespace hc
