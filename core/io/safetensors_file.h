// Random access to a local safetensors file through mmap, tensor by tensor.
#ifndef HC_CORE_IO_SAFETENSORS_FILE_H_
#define HC_CORE_IO_SAFETENSORS_FILE_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/io/safetensors.h"

namespace hc {

/// An open, validated safetensors file. The file is mapped read-only; nothing is read until a
/// tensor's bytes are touched, and Release() hands a finished tensor's pages back to the kernel,
/// so resident memory stays near the tensors in use rather than the whole file.
/// Thread-safe for concurrent const use.
class SafetensorsFile {
 public:
  /// Opens and validates `path`. Errors: NotFound / PermissionDenied if it cannot be opened,
  /// InvalidArgument (naming the file, tensor and rule) if it is not a valid safetensors file.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  /// The bytes of tensor `i` (index into header().tensors), valid while the file is open.
  absl::Span<const uint8_t> TensorData(size_t i) const;
  /// Asks the kernel to read tensor `i` ahead (MADV_WILLNEED).
  void Prefetch(size_t i) const;
  /// Drops tensor `i`'s fully-covered pages from this process's resident set (MADV_DONTNEED on
  /// a read-only mapping: the data stays valid and is re-read on the next touch).
  void Release(size_t i) const;

 private:
  SafetensorsFile() = default;
  void Advise(size_t i, int advice) const;

  std::string path_;
  SafetensorsHeader header_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
};

/// Writes `text` to `path` atomically: a temporary file beside it, fsync when `sync`, rename.
/// On error nothing is left at `path` or beside it.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view text, bool sync);

/// Reads a whole small file into a string (used for JSON index files). Errors name the path.
absl::StatusOr<std::string> ReadFileToString(const std::string& path, uint64_t max_bytes);

/// Turns O_DIRECT on or off for the open file `fd` (fcntl). Returns false, changing nothing,
/// where the file system refuses it.
bool SetDirectIo(int fd, bool on);

/// Calls `fn(path, st)` for every regular file under the directory `root`, at any depth, with its
/// lstat. Symbolic links are not followed. Made for trees that other threads or processes change
/// during the walk (a job spool): an entry or directory that vanishes, or cannot be read, is
/// skipped rather than ending the walk. Order is unspecified. A missing `root` visits nothing.
void ForEachRegularFile(const std::string& root,
                        absl::FunctionRef<void(const std::string& path, const struct stat& st)> fn);

}  // namespace hc

#endif  // HC_CORE_IO_SAFETENSORS_FILE_H_
