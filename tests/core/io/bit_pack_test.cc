#include "core/io/bit_pack.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

std::vector<uint32_t> RandomCodes(size_t n, int width, std::mt19937& rng) {
  std::vector<uint32_t> codes(n);
  const uint64_t mask = (uint64_t{1} << width) - 1;
  for (auto& c : codes) c = static_cast<uint32_t>(rng() & mask);
  // Make sure the extremes appear.
  if (n > 0) codes[0] = static_cast<uint32_t>(mask);
  if (n > 1) codes[n - 1] = 0;
  if (n > 2) codes[n / 2] = static_cast<uint32_t>(mask);
  return codes;
}

// Bit k of a stream in each layout (independent of the implementation).
int LsbBit(const std::vector<uint8_t>& b, uint64_t k) { return (b[k / 8] >> (k % 8)) & 1; }
int MsbBit(const std::vector<uint8_t>& b, uint64_t k) { return (b[k / 8] >> (7 - k % 8)) & 1; }

TEST(PackedBytes, Sizes) {
  EXPECT_EQ(PackedBytes(0, 5), 0u);
  EXPECT_EQ(PackedBytes(1, 1), 1u);
  EXPECT_EQ(PackedBytes(8, 1), 1u);
  EXPECT_EQ(PackedBytes(9, 1), 2u);
  EXPECT_EQ(PackedBytes(3, 3), 2u);
  EXPECT_EQ(PackedBytes(2, 32), 8u);
  EXPECT_EQ(PackedBytes(2, 3, 2), 1u);
  EXPECT_EQ(PackedBytes(2, 3, 3), 2u);
  EXPECT_EQ(PackedBytes(0, 7, 9), 2u);
}

TEST(BitPackLsbFirst, RoundTripEveryWidth) {
  std::mt19937 rng(1);
  for (int width = 1; width <= 32; ++width) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{7}, size_t{8}, size_t{9}, size_t{63},
                     size_t{64}, size_t{65}, size_t{257}}) {
      const auto codes = RandomCodes(n, width, rng);
      std::vector<uint8_t> packed(PackedBytes(n, width), 0xCD);  // garbage: must be overwritten
      PackLsbFirst(codes, width, absl::MakeSpan(packed));
      // Layout: code i is bits [i*w, (i+1)*w), least significant first.
      for (size_t i = 0; i < n; ++i) {
        for (int k = 0; k < width; ++k) {
          ASSERT_EQ(LsbBit(packed, i * width + k), (codes[i] >> k) & 1)
              << "width " << width << " code " << i << " bit " << k;
        }
      }
      // Padding bits of the last byte are zero.
      for (uint64_t k = n * width; k < packed.size() * 8; ++k) ASSERT_EQ(LsbBit(packed, k), 0);
      std::vector<uint32_t> back(n, 0xFFFFFFFFu);
      UnpackLsbFirst(packed, width, 0, absl::MakeSpan(back));
      ASSERT_EQ(back, codes) << "width " << width << " n " << n;
      // From every starting code, any count.
      for (size_t first = 0; first < n; first += 1 + n / 17) {
        const size_t count = (n - first + 1) / 2 + (first % 2);
        std::vector<uint32_t> part(std::min(count, n - first));
        UnpackLsbFirst(packed, width, first, absl::MakeSpan(part));
        ASSERT_THAT(part, ElementsAreArray(codes.begin() + first, codes.begin() + first + part.size()))
            << "width " << width << " first " << first;
      }
    }
  }
}

TEST(BitPackLsbFirst, UnpackFromExactlySizedBufferTail) {
  // The last code of an exactly sized buffer (no slack after it) unpacks correctly.
  std::mt19937 rng(2);
  for (int width = 1; width <= 32; ++width) {
    for (size_t n = 1; n <= 20; ++n) {
      const auto codes = RandomCodes(n, width, rng);
      std::vector<uint8_t> packed(PackedBytes(n, width));
      PackLsbFirst(codes, width, absl::MakeSpan(packed));
      std::vector<uint8_t> exact(packed);  // its own allocation of exactly this size
      uint32_t last = 0;
      UnpackLsbFirst(exact, width, n - 1, absl::MakeSpan(&last, 1));
      ASSERT_EQ(last, codes[n - 1]) << "width " << width << " n " << n;
    }
  }
}

TEST(BitPackLsbFirst, HandComputedBytes) {
  {
    std::vector<uint8_t> out(3);
    PackLsbFirst(std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 0}, 3, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0xD1, 0x58, 0x1F));
  }
  {
    std::vector<uint8_t> out(2);
    PackLsbFirst(std::vector<uint32_t>{1, 0, 1, 1, 0, 0, 0, 0, 1}, 1, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0x0D, 0x01));
  }
  {
    std::vector<uint8_t> out(3);
    PackLsbFirst(std::vector<uint32_t>{0xABC, 0x123}, 12, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0xBC, 0x3A, 0x12));
  }
  {
    std::vector<uint8_t> out(5);
    PackLsbFirst(std::vector<uint32_t>{0x1FFFF, 0x0AAAA}, 17, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0xFF, 0xFF, 0x55, 0x55, 0x01));
  }
  {
    std::vector<uint8_t> out(4);
    PackLsbFirst(std::vector<uint32_t>{0xDEADBEEF}, 32, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0xEF, 0xBE, 0xAD, 0xDE));
    uint32_t back = 0;
    UnpackLsbFirst(out, 32, 0, absl::MakeSpan(&back, 1));
    EXPECT_EQ(back, 0xDEADBEEFu);
  }
}

TEST(BitPackMsbFirst, RoundTripEveryWidthAndPrefix) {
  std::mt19937 rng(3);
  for (int width = 1; width <= 32; ++width) {
    for (uint64_t prefix : {0, 1, 3, 7, 8, 9, 13, 64}) {
      for (size_t n : {size_t{0}, size_t{1}, size_t{5}, size_t{8}, size_t{33}, size_t{100}}) {
        const auto codes = RandomCodes(n, width, rng);
        std::vector<uint8_t> packed(PackedBytes(n, width, prefix), 0xCD);
        PackMsbFirst(codes, width, prefix, absl::MakeSpan(packed));
        for (uint64_t k = 0; k < prefix; ++k) ASSERT_EQ(MsbBit(packed, k), 0) << "prefix bit " << k;
        for (size_t i = 0; i < n; ++i) {
          for (int k = 0; k < width; ++k) {
            // Most significant bit first.
            ASSERT_EQ(MsbBit(packed, prefix + i * width + k), (codes[i] >> (width - 1 - k)) & 1)
                << "width " << width << " prefix " << prefix << " code " << i << " bit " << k;
          }
        }
        for (uint64_t k = prefix + n * width; k < packed.size() * 8; ++k) {
          ASSERT_EQ(MsbBit(packed, k), 0);
        }
        std::vector<uint32_t> back(n, 0xFFFFFFFFu);
        UnpackMsbFirst(packed, width, prefix, 0, absl::MakeSpan(back));
        ASSERT_EQ(back, codes) << "width " << width << " prefix " << prefix;
        for (size_t first = 0; first < n; first += 1 + n / 11) {
          std::vector<uint32_t> part(n - first);
          UnpackMsbFirst(packed, width, prefix, first, absl::MakeSpan(part));
          ASSERT_THAT(part, ElementsAreArray(codes.begin() + first, codes.end()))
              << "width " << width << " prefix " << prefix << " first " << first;
        }
      }
    }
  }
}

TEST(BitPackMsbFirst, HandComputedBytes) {
  {
    std::vector<uint8_t> out(1);
    PackMsbFirst(std::vector<uint32_t>{5, 3}, 3, 2, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0x2B));
  }
  {
    std::vector<uint8_t> out(2);
    PackMsbFirst(std::vector<uint32_t>{7, 7, 7}, 3, 1, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0x7F, 0xC0));
  }
  {
    std::vector<uint8_t> out(2);
    PackMsbFirst(std::vector<uint32_t>{1, 0, 1, 1, 0, 0, 0, 0, 1}, 1, 0, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0xB0, 0x80));
  }
  {
    std::vector<uint8_t> out(4);
    PackMsbFirst(std::vector<uint32_t>{0xABC, 0x123}, 12, 4, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0x0A, 0xBC, 0x12, 0x30));
  }
  {
    std::vector<uint8_t> out(5);
    PackMsbFirst(std::vector<uint32_t>{0x1FFFF, 0x0AAAA}, 17, 3, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0x1F, 0xFF, 0xF5, 0x55, 0x50));
  }
  {
    std::vector<uint8_t> out(4);
    PackMsbFirst(std::vector<uint32_t>{0xDEADBEEF}, 32, 0, absl::MakeSpan(out));
    EXPECT_THAT(out, ElementsAre(0xDE, 0xAD, 0xBE, 0xEF));
    uint32_t back = 0;
    UnpackMsbFirst(out, 32, 0, 0, absl::MakeSpan(&back, 1));
    EXPECT_EQ(back, 0xDEADBEEFu);
  }
  {
    // Unpack from the middle of a hand-built stream: prefix 2, width 3: 00 101 011 -> first=1 -> 3.
    const std::vector<uint8_t> in = {0x2B};
    uint32_t c = 0;
    UnpackMsbFirst(in, 3, 2, 1, absl::MakeSpan(&c, 1));
    EXPECT_EQ(c, 3u);
  }
}

}  // namespace
}  // namespace hc
