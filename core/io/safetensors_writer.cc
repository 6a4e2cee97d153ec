#include "core/io/safetensors_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/json.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"

namespace hc {
namespace {

absl::Status OsError(absl::string_view what, absl::string_view path) {
  const int err = errno;
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOENT) return absl::NotFoundError(msg);
  return absl::UnavailableError(msg);
}

}  // namespace

absl::Status SafetensorsWriterOptions::Validate() const {
  if (reserve_header_bytes < 8 || reserve_header_bytes % 8 != 0 ||
      reserve_header_bytes > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(
        "reserve_header_bytes must be a multiple of 8 in [8, 100000000]");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    std::string path, SafetensorsWriterOptions options) {
  HC_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = std::move(path);
  w->options_ = options;
  std::string tmpl = absl::StrCat(w->path_, ".tmp-XXXXXX");
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) return OsError("cannot create a temporary file next to it", w->path_);
  ::fchmod(fd, 0644);
  w->fd_ = fd;
  w->tmp_path_ = tmpl;
  return w;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

absl::Status SafetensorsWriter::WriteAll(int fd, const uint8_t* p, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t r = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return OsError("write failed", path_);
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return absl::OkStatus();
}

// Direct I/O: the stage holds the file range [stage_offset_, stage_offset_ + kDirectBlock),
// starting at offset 0 with zeros where the header goes (Finish() writes it, buffered). Full
// stages are written as they fill; the last one is padded to kDirectAlign and the file is
// truncated to its size at Finish().
absl::Status SafetensorsWriter::Spill() {
  spilled_ = true;
  if (options_.direct_io) {
    void* mem = std::aligned_alloc(kDirectAlign, kDirectBlock);
    if (mem != nullptr && SetDirectIo(fd_, true)) {
      direct_ = true;
      stage_.reset(static_cast<uint8_t*>(mem));
      stage_offset_ = 0;
      stage_len_ = 0;
      const uint64_t head = 8 + options_.reserve_header_bytes;
      for (uint64_t done = 0; done < head;) {  // the header's place (it may exceed a stage)
        const size_t n = static_cast<size_t>(std::min<uint64_t>(head - done, kDirectBlock));
        std::memset(stage_.get(), 0, n);
        stage_len_ = n;
        done += n;
        if (stage_len_ == kDirectBlock) {
          HC_RETURN_IF_ERROR(WriteStage(kDirectBlock));
          stage_offset_ += kDirectBlock;
          stage_len_ = 0;
        }
      }
    } else {
      std::free(mem);
    }
  }
  if (direct_) {
    HC_RETURN_IF_ERROR(AppendSpilled(buffer_.data(), buffer_.size()));
  } else {
    HC_RETURN_IF_ERROR(WriteAll(fd_, buffer_.data(), buffer_.size(),
                                8 + options_.reserve_header_bytes));
  }
  buffer_.clear();
  buffer_.shrink_to_fit();
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::AppendSpilled(const uint8_t* p, size_t n) {
  if (!direct_) {
    const uint64_t at = 8 + options_.reserve_header_bytes + data_bytes_;
    return WriteAll(fd_, p, n, at);
  }
  while (n > 0) {
    const size_t k = std::min(n, kDirectBlock - stage_len_);
    std::memcpy(stage_.get() + stage_len_, p, k);
    stage_len_ += k;
    p += k;
    n -= k;
    if (stage_len_ == kDirectBlock) {
      HC_RETURN_IF_ERROR(WriteStage(kDirectBlock));
      stage_offset_ += kDirectBlock;
      stage_len_ = 0;
    }
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::WriteStage(size_t n) {
  if (!direct_) return WriteAll(fd_, stage_.get(), n, stage_offset_);
  const uint8_t* p = stage_.get();
  size_t left = n;
  uint64_t off = stage_offset_;
  while (left > 0) {
    const ssize_t r = ::pwrite(fd_, p, left, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno != EINVAL) return OsError("write failed", path_);
    if (r > 0) {
      p += r;
      left -= static_cast<size_t>(r);
      off += static_cast<uint64_t>(r);
    }
    if (r <= 0 || static_cast<size_t>(r) % kDirectAlign != 0) {
      // Refused (EINVAL) or a short write off the alignment: the rest goes buffered.
      EndDirect();
      return WriteAll(fd_, p, left, off);
    }
  }
  return absl::OkStatus();
}

void SafetensorsWriter::EndDirect() {
  if (!direct_) return;
  SetDirectIo(fd_, false);
  direct_ = false;
}

absl::Status SafetensorsWriter::Add(absl::string_view name, DType dtype,
                                    const std::vector<int64_t>& shape,
                                    absl::Span<const uint8_t> data) {
  if (finished_) return absl::FailedPreconditionError("writer already finished");
  if (name.empty() || name == "__metadata__" || !IsValidUtf8(name)) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": invalid tensor name \"", name, "\""));
  }
  auto pos = std::lower_bound(names_sorted_.begin(), names_sorted_.end(), name);
  if (pos != names_sorted_.end() && *pos == name) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": duplicate tensor name \"", name, "\""));
  }
  auto bytes = CheckedByteSize(shape, DTypeSize(dtype));
  if (!bytes || *bytes != data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor \"", name, "\" has ",
                                                   data.size(), " bytes, shape ",
                                                   ShapeString(shape), " x ", DTypeName(dtype),
                                                   " needs ", bytes.value_or(0)));
  }
  names_sorted_.insert(pos, std::string(name));
  TensorInfo t;
  t.name = std::string(name);
  t.dtype = dtype;
  t.shape = shape;
  t.numel = data.size() / DTypeSize(dtype);
  t.begin = data_bytes_;
  t.end = data_bytes_ + data.size();
  // Past the memory limit the buffer goes to disk first and the data after it, without being
  // copied into the buffer (a large first tensor would otherwise be held twice).
  if (!spilled_ && buffer_.size() + data.size() > options_.memory_limit) {
    HC_RETURN_IF_ERROR(Spill());
  }
  if (spilled_) {
    HC_RETURN_IF_ERROR(AppendSpilled(data.data(), data.size()));
  } else {
    buffer_.insert(buffer_.end(), data.begin(), data.end());
  }
  data_bytes_ = t.end;
  tensors_.push_back(std::move(t));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish(const StringMap& metadata) {
  if (finished_) return absl::FailedPreconditionError("writer already finished");
  std::vector<absl::string_view> keys;
  for (const auto& [k, v] : metadata) {
    if (!IsValidUtf8(k) || !IsValidUtf8(v)) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": metadata \"", k, "\" is not valid UTF-8"));
    }
    keys.push_back(k);
  }
  std::sort(keys.begin(), keys.end());
  if (std::adjacent_find(keys.begin(), keys.end()) != keys.end()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": duplicate metadata key \"",
                                                   *std::adjacent_find(keys.begin(), keys.end()), "\""));
  }
  std::string header;
  if (spilled_ && stage_ != nullptr) {
    // The last, partial stage: padded to the alignment (truncated away below).
    if (stage_len_ > 0) {
      const size_t n = (stage_len_ + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
      std::memset(stage_.get() + stage_len_, 0, n - stage_len_);
      HC_RETURN_IF_ERROR(WriteStage(direct_ ? n : stage_len_));
    }
    EndDirect();
    stage_.reset();
    stage_len_ = 0;
  }
  if (spilled_) {
    header = EncodeSafetensorsHeader(tensors_, metadata, options_.reserve_header_bytes);
    if (header.size() != options_.reserve_header_bytes) {
      // The header outgrew its reservation: move the data up with an in-kernel copy.
      const uint64_t old_start = 8 + options_.reserve_header_bytes;
      const uint64_t new_start = 8 + header.size();
      std::string tmpl = absl::StrCat(path_, ".tmp-XXXXXX");
      int fd2 = ::mkstemp(tmpl.data());
      if (fd2 < 0) return OsError("cannot create a temporary file next to it", path_);
      ::fchmod(fd2, 0644);
      loff_t in_off = static_cast<loff_t>(old_start), out_off = static_cast<loff_t>(new_start);
      uint64_t left = data_bytes_;
      while (left > 0) {
        ssize_t r = ::copy_file_range(fd_, &in_off, fd2, &out_off, left, 0);
        if (r <= 0) {
          absl::Status s = OsError("copy failed", path_);
          ::close(fd2);
          ::unlink(tmpl.c_str());
          return s;
        }
        left -= static_cast<uint64_t>(r);
      }
      ::close(fd_);
      ::unlink(tmp_path_.c_str());
      fd_ = fd2;
      tmp_path_ = tmpl;
    }
  } else {
    header = EncodeSafetensorsHeader(tensors_, metadata);
    HC_RETURN_IF_ERROR(WriteAll(fd_, buffer_.data(), buffer_.size(), 8 + header.size()));
    buffer_.clear();
    buffer_.shrink_to_fit();
  }
  if (header.size() > kMaxHeaderBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(path_, ": header of ", header.size(),
                                                     " bytes exceeds the safetensors limit"));
  }
  uint8_t prefix[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<uint8_t>(n >> (8 * i));
  HC_RETURN_IF_ERROR(WriteAll(fd_, prefix, 8, 0));
  HC_RETURN_IF_ERROR(
      WriteAll(fd_, reinterpret_cast<const uint8_t*>(header.data()), header.size(), 8));
  if (::ftruncate(fd_, static_cast<off_t>(8 + header.size() + data_bytes_)) != 0) {
    return OsError("truncate failed", path_);
  }
  if (options_.sync && ::fsync(fd_) != 0) return OsError("fsync failed", path_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    return OsError("close failed", path_);
  }
  fd_ = -1;
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) return OsError("rename failed", path_);
  finished_ = true;
  return absl::OkStatus();
}

}  // namespace hc
