#include "client/artifact_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"

namespace hc::client {
ArtifactSink::~ArtifactSink() {
  for (auto& [name, f] : files_) {
    if (f.pending.valid()) f.pending.wait();
    if (f.fd >= 0) ::close(f.fd);
    if (!committed_) ::unlink(f.part.c_str());
  }
}

absl::Status ArtifactSink::WriteAt(File& f, const uint8_t* p, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(f.fd, p, n, static_cast<off_t>(offset));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EINVAL && f.direct) {
      // The file system refused a direct write: everything from here on is buffered.
      SetDirectIo(f.fd, false);
      f.direct = false;
      continue;
    }
    if (w <= 0) return absl::UnavailableError(absl::StrCat(f.part, ": write failed: ", std::strerror(errno)));
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

absl::Status ArtifactSink::FlushStage(File& f, bool all) {
  if (f.pending.valid()) HC_RETURN_IF_ERROR(f.pending.get());
  if (!all) {
    // The stage is full (a whole number of blocks): write it on another thread.
    if (f.spare == nullptr) f.spare.reset(static_cast<uint8_t*>(std::aligned_alloc(kAlign, kStageBytes)));
    if (f.spare == nullptr) return absl::ResourceExhaustedError("no memory for the artifact stage");
    std::swap(f.stage, f.spare);
    f.pending = std::async(std::launch::async, [&f, p = f.spare.get(), n = f.staged, at = f.stage_offset] {
      return WriteAt(f, p, n, at);
    });
    f.stage_offset += f.staged;
    f.staged = 0;
    return absl::OkStatus();
  }
  if (f.direct) {
    SetDirectIo(f.fd, false);  // the tail is not a whole block
    f.direct = false;
  }
  HC_RETURN_IF_ERROR(WriteAt(f, f.stage.get(), f.staged, f.stage_offset));
  f.stage_offset += f.staged;
  f.staged = 0;
  return absl::OkStatus();
}

absl::Status ArtifactSink::Write(const hyperc::v1::ArtifactChunk& c) {
  auto it = files_.find(c.file());
  if (it == files_.end()) {
    if (c.file().empty() || absl::StrContains(c.file(), "/")) return absl::DataLossError("bad artifact file name");
    if (!dir_ && !files_.empty()) return absl::DataLossError("several artifact files for a single-file model");
    if (dir_) std::filesystem::create_directories(output_);
    File f;
    f.final_path = dir_ ? output_ + "/" + c.file() : output_;
    f.part = f.final_path + ".part";
    f.fd = ::open(f.part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd < 0) return absl::UnavailableError(absl::StrCat(f.part, ": ", std::strerror(errno)));
    f.size = c.file_size();
    // Direct writes only pay off for files larger than the stage.
    if (f.size > kStageBytes) {
      f.stage.reset(static_cast<uint8_t*>(std::aligned_alloc(kAlign, kStageBytes)));
      f.direct = f.stage != nullptr && SetDirectIo(f.fd, true);
    }
    it = files_.emplace(c.file(), std::move(f)).first;
  }
  File& f = it->second;
  if (c.offset() != f.written) return absl::DataLossError("artifact chunks out of order");
  const auto* p = reinterpret_cast<const uint8_t*>(c.data().data());
  size_t n = c.data().size();
  if (n > f.size - f.written) return absl::DataLossError(absl::StrCat("artifact ", c.file(), " is longer than announced"));
  if (f.stage == nullptr) {
    HC_RETURN_IF_ERROR(WriteAt(f, p, n, f.written));
    f.written += n;
    return absl::OkStatus();
  }
  // Staged: fill the stage, write its whole blocks each time it is full.
  while (n > 0) {
    const size_t take = std::min(n, kStageBytes - f.staged);
    std::memcpy(f.stage.get() + f.staged, p, take);
    f.staged += take;
    f.written += take;
    p += take;
    n -= take;
    if (f.staged == kStageBytes) HC_RETURN_IF_ERROR(FlushStage(f, /*all=*/false));
  }
  if (f.written == f.size) {
    HC_RETURN_IF_ERROR(FlushStage(f, /*all=*/true));
    f.stage.reset();
    f.spare.reset();
  }
  return absl::OkStatus();
}

absl::Status ArtifactSink::Commit(const hyperc::v1::Summary& summary) {
  if (static_cast<size_t>(summary.files_size()) != files_.size()) {
    return absl::DataLossError(absl::StrCat("the server announced ", summary.files_size(),
                                            " artifact files and sent ", files_.size()));
  }
  for (const auto& sf : summary.files()) {
    auto it = files_.find(sf.name());
    if (it == files_.end() || it->second.written != sf.size()) {
      return absl::DataLossError(absl::StrCat("artifact file ", sf.name(), " is missing or incomplete"));
    }
  }
  for (auto& [name, f] : files_) {
    if (f.written != f.size) return absl::DataLossError(absl::StrCat("artifact ", name, " is incomplete"));
    if (f.stage != nullptr) HC_RETURN_IF_ERROR(FlushStage(f, /*all=*/true));
    if (::fsync(f.fd) != 0) return absl::UnavailableError(absl::StrCat(f.part, ": fsync failed: ", std::strerror(errno)));
    ::close(f.fd);
    f.fd = -1;
  }
  for (auto& [name, f] : files_) {
    if (::rename(f.part.c_str(), f.final_path.c_str()) != 0) {
      return absl::UnavailableError(absl::StrCat(f.final_path, ": rename failed"));
    }
  }
  committed_ = true;
  return absl::OkStatus();
}

}  // namespace hc::client
