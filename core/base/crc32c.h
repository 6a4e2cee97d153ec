// CRC-32C (Castagnoli), the checksum of every stored part of an artifact (frozen in SPEC.md).
#ifndef HC_CORE_BASE_CRC32C_H_
#define HC_CORE_BASE_CRC32C_H_

#include <cstdint>

#include "absl/types/span.h"

namespace hc {

/// Extends `crc` (0 for a fresh checksum) over `data`. CRC-32C with the usual pre- and
/// post-inversion: Crc32c(0, "123456789") == 0xE3069283. Uses the SSE4.2 instruction when the
/// CPU has it, a slicing-by-8 table otherwise; both give the same value.
uint32_t Crc32c(uint32_t crc, absl::Span<const uint8_t> data);

/// The portable table implementation (the reference the hardware path is tested against).
uint32_t Crc32cPortable(uint32_t crc, absl::Span<const uint8_t> data);

}  // namespace hc

#endif  // HC_CORE_BASE_CRC32C_H_
