// Small parsing helpers shared by the command-line front ends.
#ifndef HC_CORE_BASE_STRINGS_H_
#define HC_CORE_BASE_STRINGS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hc {

/// Parses a byte size: "4096", "64K", "64M", "2G" (binary multiples; a trailing "B" and lower
/// case allowed). Errors: InvalidArgument naming the text, also on overflow.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

}  // namespace hc

#endif  // HC_CORE_BASE_STRINGS_H_
