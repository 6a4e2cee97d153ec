// An in-memory window on a byte stream that arrives in pieces: bytes are appended at the end,
// read back by absolute offset, and dropped from the front once consumed.
#ifndef HC_CORE_IO_BYTE_QUEUE_H_
#define HC_CORE_IO_BYTE_QUEUE_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace hc {

/// Holds bytes [begin(), end()) of a stream, as the pieces they arrived in (no copy on Append).
/// Not thread-safe: the owner locks.
class ByteQueue {
 public:
  ByteQueue() = default;
  /// Starts the stream at offset `start` (bytes before it are never held).
  explicit ByteQueue(uint64_t start) : begin_(start), end_(start) {}

  /// Appends the next bytes of the stream (taken over without copying). Empty pieces are ignored.
  void Append(std::string piece);
  /// Copies bytes [offset, offset + out.size()) into `out`. Errors: OutOfRange unless the range
  /// lies within [begin(), end()).
  absl::Status CopyOut(uint64_t offset, absl::Span<uint8_t> out) const;
  /// Frees every piece that lies wholly before `offset` (a piece straddling it is kept).
  void DropBefore(uint64_t offset);

  /// Offset of the first byte still held, and one past the last byte appended.
  uint64_t begin() const { return begin_; }
  uint64_t end() const { return end_; }
  /// Bytes held in memory.
  uint64_t held() const { return end_ - begin_; }

 private:
  std::deque<std::string> pieces_;  // pieces_[0] starts at begin_
  uint64_t begin_ = 0, end_ = 0;
};

}  // namespace hc

#endif  // HC_CORE_IO_BYTE_QUEUE_H_
