#include "core/io/byte_queue.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::StatusIs;
using ::testing::_;

std::string Bytes(uint64_t from, size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((from + i) * 131 % 251);
  return s;
}

std::string Copy(const ByteQueue& q, uint64_t off, size_t n) {
  std::vector<uint8_t> out(n);
  absl::Status s = q.CopyOut(off, absl::MakeSpan(out));
  EXPECT_TRUE(s.ok()) << s;
  return std::string(out.begin(), out.end());
}

TEST(ByteQueueTest, CopiesAcrossPiecesAndDropsWholePiecesOnly) {
  ByteQueue q(100);  // the stream's bytes from offset 100 on
  uint64_t end = 100;
  for (size_t n : {7u, 1u, 0u, 300u, 5u, 64u}) {
    q.Append(Bytes(end, n));
    end += n;
  }
  EXPECT_EQ(q.begin(), 100u);
  EXPECT_EQ(q.end(), end);
  EXPECT_EQ(q.held(), end - 100);
  // Every range within [100, end), including empty ones and ones spanning several pieces.
  for (uint64_t off = 100; off <= end; off += 3) {
    for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{6}, uint64_t{9}, end - off}) {
      if (off + n > end) continue;
      ASSERT_EQ(Copy(q, off, n), Bytes(off, n)) << off << "+" << n;
    }
  }
  q.DropBefore(110);  // frees the 7- and 1-byte pieces; the 300-byte one straddles 110
  EXPECT_EQ(q.begin(), 108u);
  EXPECT_EQ(Copy(q, 110, 20), Bytes(110, 20));
  q.DropBefore(end);
  EXPECT_EQ(q.held(), 0u);
  EXPECT_EQ(q.begin(), end);
  q.Append(Bytes(end, 10));
  EXPECT_EQ(Copy(q, end, 10), Bytes(end, 10));
}

TEST(ByteQueueTest, RangesNotHeldAreOutOfRange) {
  ByteQueue q(8);
  q.Append(Bytes(8, 16));
  std::vector<uint8_t> out(4);
  EXPECT_THAT(q.CopyOut(6, absl::MakeSpan(out)), StatusIs(absl::StatusCode::kOutOfRange, _));   // before
  EXPECT_THAT(q.CopyOut(21, absl::MakeSpan(out)), StatusIs(absl::StatusCode::kOutOfRange, _));  // past the end
  EXPECT_THAT(q.CopyOut(40, absl::MakeSpan(out)), StatusIs(absl::StatusCode::kOutOfRange, _));
  q.DropBefore(24);
  EXPECT_THAT(q.CopyOut(8, absl::MakeSpan(out)), StatusIs(absl::StatusCode::kOutOfRange, _));  // dropped
  ByteQueue empty;
  EXPECT_TRUE(empty.CopyOut(0, absl::Span<uint8_t>()).ok());
}

}  // namespace
}  // namespace hc
