#include "core/io/bit_pack.h"

#include <algorithm>
#include <cstring>

#include "core/base/simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hc {
namespace {

#if defined(__x86_64__)
// Width 4, 64 codes (each < 16) to 32 bytes per step: the codes narrowed to ordered bytes
// (two saturating packs, then a lane fix), each byte pair joined as lo + 16 * hi by one
// multiply-add, and narrowed again. Returns the codes done (a multiple of 64).
__attribute__((target("avx2"))) size_t Pack4Avx2(const uint32_t* c, size_t n, uint8_t* out) {
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i join = _mm256_set1_epi16(0x1001);  // bytes (1, 16): lo * 1 + hi * 16
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m256i b[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i* p = reinterpret_cast<const __m256i*>(c + i + 32 * h);
      const __m256i w01 = _mm256_packus_epi32(_mm256_loadu_si256(p), _mm256_loadu_si256(p + 1));
      const __m256i w23 =
          _mm256_packus_epi32(_mm256_loadu_si256(p + 2), _mm256_loadu_si256(p + 3));
      b[h] = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), order);
    }
    const __m256i j = _mm256_packus_epi16(_mm256_maddubs_epi16(b[0], join),
                                          _mm256_maddubs_epi16(b[1], join));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i / 2),
                        _mm256_permute4x64_epi64(j, 0xD8));
  }
  return i;
}

// Width 4 from a byte-aligned start, 32 codes per step: low and high nibbles interleaved
// back into code order, then widened to 32 bits. Returns the codes done (a multiple of 32).
__attribute__((target("avx2"))) size_t Unpack4Avx2(const uint8_t* in, size_t n, uint32_t* out) {
  const __m128i nib = _mm_set1_epi8(0x0f);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i / 2));
    const __m128i lo = _mm_and_si128(x, nib), hi = _mm_and_si128(_mm_srli_epi16(x, 4), nib);
    const __m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi);
    __m256i* o = reinterpret_cast<__m256i*>(out + i);
    _mm256_storeu_si256(o, _mm256_cvtepu8_epi32(a));
    _mm256_storeu_si256(o + 1, _mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)));
    _mm256_storeu_si256(o + 2, _mm256_cvtepu8_epi32(b));
    _mm256_storeu_si256(o + 3, _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
  }
  return i;
}
#endif

bool UseAvx2() {
#if defined(__x86_64__)
  return CpuHasAvx2() && SimdAllowed();
#else
  return false;
#endif
}

}  // namespace

// LSB-first packing: accumulate codes into a 64-bit register and flush whole bytes. Widths up
// to 32 keep at most 39 pending bits, so the register never overflows.
void PackLsbFirst(absl::Span<const uint32_t> codes, int width, absl::Span<uint8_t> out) {
  std::fill(out.begin(), out.end(), 0);
  size_t start = 0, o = 0;
  // Widths 4 and 8 (rtn's usual codes): whole bytes at a time, a loop the compiler vectorises.
  if (width == 4) {
    const size_t pairs = codes.size() / 2;
    size_t j = 0;
#if defined(__x86_64__)
    if (UseAvx2()) j = Pack4Avx2(codes.data(), codes.size(), out.data()) / 2;
#endif
    for (; j < pairs; ++j) {
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
    size_t j = 0;
#if defined(__x86_64__)
    if (UseAvx2()) j = Unpack4Avx2(p, out.size(), out.data()) / 2;
#endif
    for (; j < pairs; ++j) {
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
