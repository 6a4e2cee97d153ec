#include "client/mapped_upload.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace hc::client {
namespace {

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

// Field 3 (`chunk`) of CompressRequest, wire type 2 (length-delimited).
constexpr uint8_t kChunkTag = (3 << 3) | 2;

// What a chunk's data slice keeps alive, and what it drops once gRPC has let go of it.
struct ChunkRef {
  std::shared_ptr<const MappedFile> file;
  uint64_t offset = 0, size = 0;
};

void ReleaseChunk(void* p) {
  auto* ref = static_cast<ChunkRef*>(p);
  ref->file->Drop(ref->offset, ref->size);
  delete ref;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const MappedFile>> MappedFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st = {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(path, ": cannot stat: ", std::strerror(e)));
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat(path, ": cannot map: ", std::strerror(e)));
    }
    f->data_ = static_cast<uint8_t*>(p);
    ::madvise(p, f->size_, MADV_SEQUENTIAL);
  }
  ::close(fd);  // the mapping keeps the file
  return std::shared_ptr<const MappedFile>(std::move(f));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

void MappedFile::Prefault(uint64_t offset, uint64_t n) const {
#ifdef MADV_POPULATE_READ
  const uint64_t page = PageSize();
  const uint64_t begin = offset / page * page;
  if (n == 0 || begin >= size_) return;
  ::madvise(data_ + begin, std::min(size_, offset + n) - begin, MADV_POPULATE_READ);
#else
  (void)offset;
  (void)n;
#endif
}

void MappedFile::Drop(uint64_t offset, uint64_t n) const {
  // Only whole pages inside the range: a page shared with a neighbouring chunk may still be
  // in use (it is dropped with the last chunk touching it, or with the mapping).
  const uint64_t page = PageSize();
  const uint64_t begin = (offset + page - 1) / page * page;
  uint64_t end = std::min(size_, offset + n);
  if (end != size_) end = end / page * page;
  if (end > begin) ::madvise(data_ + begin, end - begin, MADV_DONTNEED);
}

grpc::ByteBuffer ChunkMessage(std::shared_ptr<const MappedFile> file, uint64_t offset, uint64_t n) {
  uint8_t header[11] = {kChunkTag};
  size_t h = 1;
  for (uint64_t v = n; ; v >>= 7) {
    header[h++] = static_cast<uint8_t>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    if (v < 0x80) break;
  }
  grpc::Slice head(header, h);  // copied
  if (n == 0) return grpc::ByteBuffer(&head, 1);
  uint8_t* data = const_cast<uint8_t*>(file->data()) + offset;  // gRPC only reads it
  grpc::Slice slices[2] = {head, grpc::Slice(data, n, ReleaseChunk, new ChunkRef{std::move(file), offset, n})};
  return grpc::ByteBuffer(slices, 2);
}

grpc::ByteBuffer MessageBuffer(const google::protobuf::MessageLite& message) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes.data(), bytes.size());
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace hc::client
