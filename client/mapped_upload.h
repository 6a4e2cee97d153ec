// Upload messages built without copying the model: a file is mapped, and each Chunk message is
// a grpc::ByteBuffer whose data slice points into the mapping (gRPC hands it to the socket as
// is). The bytes on the wire are exactly those of the CompressRequest the typed stub would send.
#ifndef HC_CLIENT_MAPPED_UPLOAD_H_
#define HC_CLIENT_MAPPED_UPLOAD_H_

#include <cstdint>
#include <memory>
#include <string>

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>

#include "absl/status/statusor.h"

namespace hc::client {

/// A whole file mapped read-only for sequential reading. Thread-safe (immutable once open).
/// Shared by the messages that point into it: the mapping lives until the last is destroyed.
class MappedFile {
 public:
  /// Maps `path` (an empty file maps nothing). Errors: NotFound if it cannot be opened,
  /// Unavailable if it cannot be mapped.
  static absl::StatusOr<std::shared_ptr<const MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  /// Faults in the page-table entries of [offset, offset + n) in one call (the pages come from
  /// the page cache), so that sending them does not fault page by page. Best effort.
  void Prefault(uint64_t offset, uint64_t n) const;
  /// Drops the pages wholly inside [offset, offset + n) from this process (they stay in the
  /// page cache and come back on demand), so a sent file does not add to the client's RSS.
  void Drop(uint64_t offset, uint64_t n) const;

 private:
  MappedFile() = default;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

/// A CompressRequest whose `chunk` holds bytes [offset, offset + n) of `file`, serialised as
/// a 2-to-11-byte field header and a slice over the mapping (no copy). Once gRPC has sent it,
/// the range is dropped (MappedFile::Drop). The range must lie within the file.
grpc::ByteBuffer ChunkMessage(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t n);

/// `message` serialised into a ByteBuffer (a copy: for the small Start, FileHeader and End).
grpc::ByteBuffer MessageBuffer(const google::protobuf::MessageLite& message);

}  // namespace hc::client

#endif  // HC_CLIENT_MAPPED_UPLOAD_H_
