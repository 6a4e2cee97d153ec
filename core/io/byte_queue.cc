#include "core/io/byte_queue.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace hc {

void ByteQueue::Append(std::string piece) {
  if (piece.empty()) return;
  end_ += piece.size();
  pieces_.push_back(std::move(piece));
}

absl::Status ByteQueue::CopyOut(uint64_t offset, absl::Span<uint8_t> out) const {
  if (offset < begin_ || offset > end_ || out.size() > end_ - offset) {
    return absl::OutOfRangeError(absl::StrCat("bytes [", offset, ", ", offset + out.size(),
                                              ") are not held (held: [", begin_, ", ", end_, "))"));
  }
  // Skip whole pieces before `offset`, then copy piece by piece.
  uint64_t pos = begin_;
  size_t i = 0;
  while (i < pieces_.size() && pos + pieces_[i].size() <= offset) pos += pieces_[i++].size();
  size_t done = 0;
  while (done < out.size()) {
    const std::string& p = pieces_[i++];
    const uint64_t skip = offset + done - pos;
    const size_t n = std::min<uint64_t>(p.size() - skip, out.size() - done);
    std::memcpy(out.data() + done, p.data() + skip, n);
    done += n;
    pos += p.size();
  }
  return absl::OkStatus();
}

void ByteQueue::DropBefore(uint64_t offset) {
  while (!pieces_.empty() && begin_ + pieces_.front().size() <= offset) {
    begin_ += pieces_.front().size();
    pieces_.pop_front();
  }
}

}  // namespace hc
