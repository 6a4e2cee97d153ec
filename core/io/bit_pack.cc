#include "core/io/bit_pack.h"

#include <algorithm>
#include <cstring>

namespace hc {

// LSB-first packing: accumulate codes into a 64-bit register and flush whole bytes. Widths up
// to 32 keep at most 39 pending bits, so the register never overflows.
void PackLsbFirst(absl::Span<const uint32_t> codes, int width, absl::Span<uint8_t> out) {
  std::fill(out.begin(), out.end(), 0);
  size_t start = 0, o = 0;
  // Widths 4 and 8 (rtn's usual codes): whole bytes at a time, a loop the compiler vectorises.
  if (width == 4) {
    const size_t pairs = codes.size() / 2;
    for (size_t j = 0; j < pairs; ++j) {
      out[j] = static_cast<uint8_t>((codes[2 * j] & 15u) | (codes[2 * j + 1] << 4));
    }
    start = 2 * pairs;
    o = pairs;
  } else if (width == 8) {
    for (size_t j = 0; j < codes.size(); ++j) out[j] = static_cast<uint8_t>(codes[j]);
    return;
  }
  uint64_t acc = 0;
  int nbits = 0;
  for (uint32_t c : codes.subspan(start)) {
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
  size_t start = 0;
  // Byte-aligned widths 4 and 8: whole bytes at a time, a loop the compiler vectorises.
  if (width == 4 && bit % 8 == 0) {
    const uint8_t* p = in.data() + bit / 8;
    const size_t pairs = out.size() / 2;
    for (size_t j = 0; j < pairs; ++j) {
      out[2 * j] = p[j] & 15u;
      out[2 * j + 1] = p[j] >> 4;
    }
    start = 2 * pairs;
  } else if (width == 8) {
    const uint8_t* p = in.data() + first;
    for (size_t j = 0; j < out.size(); ++j) out[j] = p[j];
    return;
  }
  bit += start * static_cast<uint64_t>(width);
  for (uint32_t& c : out.subspan(start)) {
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
