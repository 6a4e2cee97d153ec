// Streaming safetensors writer: tensors are appended in call order, the header is written last.
#ifndef HC_CORE_IO_SAFETENSORS_WRITER_H_
#define HC_CORE_IO_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/io/safetensors.h"

namespace hc {

/// Options for SafetensorsWriter.
struct SafetensorsWriterOptions {
  /// Data is kept in memory up to this many bytes; past it, data goes to disk as it comes.
  /// Default: 8 MiB.
  uint64_t memory_limit = uint64_t{8} << 20;
  /// Header space reserved on disk once data spills; a larger header triggers one in-kernel
  /// copy of the data at Finish(). Default: 1 MiB.
  uint64_t reserve_header_bytes = uint64_t{1} << 20;
  /// fsync the file before it is renamed into place. Default: true.
  bool sync = true;
  /// Once data spills, write it with O_DIRECT in aligned blocks of kDirectBlock bytes, staged
  /// in one aligned buffer, where the file system accepts it (otherwise, or after any direct
  /// write fails with EINVAL, plain buffered writes). Large outputs then bypass the page
  /// cache, whose fresh pages are slow to get on virtual machines (measured here: 1.0 GB/s
  /// direct against 0.25 GB/s buffered) and which a one-pass output gains nothing from.
  /// The bytes written are the same either way. Default: true.
  bool direct_io = true;

  absl::Status Validate() const;
};

/// Writes one safetensors file at `path`, atomically: data goes to a temporary file in the same
/// directory, renamed to `path` only by a successful Finish(). A writer destroyed without
/// Finish() removes its temporary file, so a failed run leaves no partial output.
///
/// Output is deterministic: tensors in Add() order, offsets contiguous, the header compact JSON
/// ("__metadata__" first) padded with spaces so the data region starts 8-byte aligned.
class SafetensorsWriter {
 public:
  /// Bytes of the direct-I/O stage, and the alignment of its file offsets and lengths.
  static constexpr size_t kDirectBlock = size_t{8} << 20;
  static constexpr size_t kDirectAlign = 4096;

  /// Errors: InvalidArgument for bad options, an OS error status if the file cannot be created.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      std::string path, SafetensorsWriterOptions options = {});
  ~SafetensorsWriter();

  /// Appends a tensor. Errors: InvalidArgument for a duplicate or empty name or a size that does
  /// not match shape x dtype; an OS error status if writing fails.
  absl::Status Add(absl::string_view name, DType dtype, const std::vector<int64_t>& shape,
                   absl::Span<const uint8_t> data);
  /// Writes the header with `metadata` and renames the file into place.
  absl::Status Finish(const StringMap& metadata);

  /// Bytes of tensor data added so far.
  uint64_t data_bytes() const { return data_bytes_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsWriter() = default;
  absl::Status Spill();
  absl::Status WriteAll(int fd, const uint8_t* p, size_t n, uint64_t offset);
  // Appends spilled data: through the direct stage, or buffered at its file offset.
  absl::Status AppendSpilled(const uint8_t* p, size_t n);
  // Writes the stage's first `n` bytes (a multiple of kDirectAlign) at stage_offset_; falls
  // back to buffered writes for good when the kernel refuses a direct write.
  absl::Status WriteStage(size_t n);
  // Turns O_DIRECT off on fd_ (before the header, the copy and the final truncate).
  void EndDirect();

  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  bool direct_ = false;
  std::unique_ptr<uint8_t, FreeDeleter> stage_;
  size_t stage_len_ = 0;
  uint64_t stage_offset_ = 0;

  std::string path_;
  std::string tmp_path_;
  SafetensorsWriterOptions options_;
  int fd_ = -1;
  bool spilled_ = false;
  bool finished_ = false;
  std::vector<uint8_t> buffer_;
  std::vector<TensorInfo> tensors_;
  std::vector<std::string> names_sorted_;
  uint64_t data_bytes_ = 0;
};

}  // namespace hc

#endif  // HC_CORE_IO_SAFETENSORS_WRITER_H_
