#include "core/io/bit_pack.h"

#include <algorithm>
#include <cstring>

namespace hc {

// LSB-first packing: accumulate codes into a 64-bit register and flush whole bytes. Widths up
// to 32 keep at most 39 pending bits, so the register never overflows.
void PackLsbFirst(absl::Span<const uint32_t> codes, int width, absl::Span<uint8_t> out) {
  std::fill(out.begin(), out.end(), 0);
  uint64_t acc = 0;
  int nbits = 0;
  size_t o = 0;
  for (uint32_t c : codes) {
    acc |= static_cast<uint64_t>(c) << nbits;
    nbits += width;
    while (nbits >= 8) {
      out[o++] = static_cast<uint8_t>(acc);
      acc >>= 8;
      nbits -= 8;
    }
  }
  if (nbits > 0) out[o] = static_cast<uint8_t>(acc);
}

void UnpackLsbFirst(absl::Span<const uint8_t> in, int width, uint64_t first,
                    absl::Span<uint32_t> out) {
  const uint64_t mask = (uint64_t{1} << width) - 1;
  uint64_t bit = first * static_cast<uint64_t>(width);
  for (uint32_t& c : out) {
    const uint64_t byte = bit >> 3;
    const int shift = static_cast<int>(bit & 7);
    uint64_t v = 0;
    const size_t avail = static_cast<size_t>(std::min<uint64_t>(8, in.size() - byte));
    std::memcpy(&v, in.data() + byte, avail);  // little-endian host assumed (x86-64, arm64)
    c = static_cast<uint32_t>((v >> shift) & mask);
    bit += width;
  }
}

void PackMsbFirst(absl::Span<const uint32_t> codes, int width, uint64_t prefix_bits,
                  absl::Span<uint8_t> out) {
  std::fill(out.begin(), out.end(), 0);
  uint64_t bit = prefix_bits;
  for (uint32_t c : codes) {
    for (int k = width - 1; k >= 0; --k, ++bit) {
      if ((c >> k) & 1u) out[bit >> 3] |= static_cast<uint8_t>(0x80u >> (bit & 7));
    }
  }
}

void UnpackMsbFirst(absl::Span<const uint8_t> in, int width, uint64_t prefix_bits, uint64_t first,
                    absl::Span<uint32_t> out) {
  uint64_t bit = prefix_bits + first * static_cast<uint64_t>(width);
  for (uint32_t& c : out) {
    uint32_t v = 0;
    for (int k = 0; k < width; ++k, ++bit) {
      v = (v << 1) | ((in[bit >> 3] >> (7 - (bit & 7))) & 1u);
    }
    c = v;
  }
}

}  // namespace hc
