// Fixed-width bit packing of unsigned codes.
//
// Two layouts, both frozen in core/format/SPEC.md:
//  - LSB-first (rtn, and later codecs): code i occupies bits [i*w, (i+1)*w) of the stream, bit k
//    of the stream being bit (k % 8) of byte k / 8, least significant first.
//  - MSB-first with a zero-bit prefix (hc1, as the paper's reference writes it): `z` zero bits,
//    then each code as w bits, most significant bit first, bytes filled from their top bit.
#ifndef HC_CORE_IO_BIT_PACK_H_
#define HC_CORE_IO_BIT_PACK_H_

#include <cstdint>

#include "absl/types/span.h"

namespace hc {

/// Bytes needed for `count` codes of `width` bits (plus `prefix_bits`).
inline uint64_t PackedBytes(uint64_t count, int width, uint64_t prefix_bits = 0) {
  return (count * static_cast<uint64_t>(width) + prefix_bits + 7) / 8;
}

/// Packs codes LSB-first. `width` in [1, 32]; every code must be < 2^width; `out` must hold
/// PackedBytes(codes.size(), width) bytes and is fully overwritten.
void PackLsbFirst(absl::Span<const uint32_t> codes, int width, absl::Span<uint8_t> out);
/// Unpacks `out.size()` codes starting at code index `first` from an LSB-first stream.
/// `in` must hold at least PackedBytes(first + out.size(), width) bytes.
void UnpackLsbFirst(absl::Span<const uint8_t> in, int width, uint64_t first,
                    absl::Span<uint32_t> out);

/// Packs codes MSB-first after `prefix_bits` zero bits. `width` in [1, 32]. `out` must hold
/// PackedBytes(codes.size(), width, prefix_bits) bytes and is fully overwritten.
void PackMsbFirst(absl::Span<const uint32_t> codes, int width, uint64_t prefix_bits,
                  absl::Span<uint8_t> out);
/// Unpacks `out.size()` codes starting at code index `first` from an MSB-first stream with a
/// `prefix_bits` prefix.
void UnpackMsbFirst(absl::Span<const uint8_t> in, int width, uint64_t prefix_bits, uint64_t first,
                    absl::Span<uint32_t> out);

}  // namespace hc

#endif  // HC_CORE_IO_BIT_PACK_H_
