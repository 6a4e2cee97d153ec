#include "core/base/crc32c.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace hc {
namespace {

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// Bit-at-a-time reference, independent of both implementations.
uint32_t Crc32cBitwise(uint32_t crc, absl::Span<const uint8_t> data) {
  crc = ~crc;
  for (uint8_t b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ ((crc & 1) ? 0x82f63b78u : 0u);
  }
  return ~crc;
}

TEST(Crc32c, KnownVectors) {
  const std::string check = "123456789";
  const std::string zeros(32, '\0');
  const std::string ones(32, '\xff');
  std::string inc(32, '\0'), dec(32, '\0');
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<char>(i);
    dec[i] = static_cast<char>(31 - i);
  }
  for (auto f : {&Crc32c, &Crc32cPortable, &Crc32cBitwise}) {
    EXPECT_EQ(f(0, Bytes(check)), 0xE3069283u);
    EXPECT_EQ(f(0, Bytes(zeros)), 0x8A9136AAu);
    EXPECT_EQ(f(0, Bytes(ones)), 0x62A8AB43u);
    // RFC 3720 B.4: incrementing and decrementing bytes.
    EXPECT_EQ(f(0, Bytes(inc)), 0x46DD794Eu);
    EXPECT_EQ(f(0, Bytes(dec)), 0x113FDB5Cu);
    EXPECT_EQ(f(0, {}), 0u);
    EXPECT_EQ(f(0x12345678u, {}), 0x12345678u);
  }
}

TEST(Crc32c, HardwareMatchesPortableForEveryLengthAndOffset) {
  std::mt19937 rng(42);
  std::vector<uint8_t> buf(300 + 16);
  for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t len = 0; len <= 300; ++len) {
    for (size_t off = 0; off < 8; ++off) {  // unaligned starts
      absl::Span<const uint8_t> d(buf.data() + off, len);
      const uint32_t ref = Crc32cPortable(0, d);
      ASSERT_EQ(Crc32c(0, d), ref) << "len " << len << " off " << off;
      if (off == 0) {
        ASSERT_EQ(Crc32cBitwise(0, d), ref) << "len " << len;
      }
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(Crc32c(seed, d), Crc32cPortable(seed, d)) << "len " << len;
    }
  }
}

TEST(Crc32c, IncrementalAtRandomSplitPoints) {
  std::mt19937 rng(99);
  for (size_t len = 0; len <= 300; ++len) {
    std::vector<uint8_t> buf(len);
    for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
    const uint32_t whole = Crc32cPortable(0, buf);
    for (int trial = 0; trial < 4; ++trial) {
      // Up to 3 random split points.
      std::vector<size_t> cuts = {0, len};
      for (int k = 0; k < 3; ++k) cuts.push_back(len == 0 ? 0 : rng() % (len + 1));
      std::sort(cuts.begin(), cuts.end());
      uint32_t hw = 0, sw = 0;
      for (size_t k = 0; k + 1 < cuts.size(); ++k) {
        absl::Span<const uint8_t> part(buf.data() + cuts[k], cuts[k + 1] - cuts[k]);
        hw = Crc32c(hw, part);
        sw = Crc32cPortable(sw, part);
      }
      ASSERT_EQ(hw, whole) << "len " << len;
      ASSERT_EQ(sw, whole) << "len " << len;
    }
  }
}

TEST(Crc32c, LargeBuffer) {
  std::mt19937 rng(5);
  std::vector<uint8_t> buf((1 << 20) + 3);
  for (uint8_t& b : buf) b = static_cast<uint8_t>(rng());
  const uint32_t a = Crc32c(0, buf);
  EXPECT_EQ(a, Crc32cPortable(0, buf));
  EXPECT_EQ(a, Crc32cBitwise(0, buf));
}

}  // namespace
}  // namespace hc
