// The receiving end of uploads (Upload) and the held-upload backpressure of JobManager: what a
// Compress or SubmitJob stream feeds into a job (see job_manager.h).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "server/job_internal.h"
#include "server/job_manager.h"

namespace hc::server {
namespace fs = std::filesystem;
using internal::NowUnix;

namespace {

bool IsPlainName(const std::string& n) {
  return !n.empty() && n.size() <= 255 && n != "." && n != ".." && n.find('/') == std::string::npos &&
         n.find('\0') == std::string::npos;
}

}  // namespace


Upload::~Upload() {
  if (fd_ >= 0) ::close(fd_);
  if (auto job = manager_->Find(id_)) {
    std::lock_guard<std::mutex> lock(job->mu);
    job->resume = nullptr;
  }
  if (!ended_) {
    if (auto job = manager_->Find(id_)) {
      {
        std::lock_guard<std::mutex> lock(job->mu);
        job->upload_failed = true;
      }
      job->cv.notify_all();
    }
    manager_->Delete(id_).IgnoreError();
  }
}

absl::Status Upload::BeginFile(const std::string& name, uint64_t size) {
  auto job = manager_->Find(id_);
  if (!job) return absl::CancelledError("job was deleted");
  if (!job->snap.request.server_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("this job reads server_path \"", job->snap.request.server_path,
                     "\"; it takes no uploaded file (send End after Start)"));
  }
  if (!IsPlainName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("file name \"", name, "\" is not a plain file name"));
  }
  if (!absl::EndsWith(name, ".safetensors") && !absl::EndsWith(name, ".json")) {
    return absl::InvalidArgumentError(
        absl::StrCat("file \"", name, "\": only .safetensors files and a shard index .json can be uploaded"));
  }
  std::lock_guard<std::mutex> lock(job->mu);
  uint64_t total = size;
  for (const auto& f : job->files) {
    if (f.name == name) return absl::InvalidArgumentError(absl::StrCat("file \"", name, "\" uploaded twice"));
    total += f.size;
  }
  if (!job->files.empty() && job->files.back().received != job->files.back().size) {
    const auto& f = job->files.back();
    return absl::InvalidArgumentError(absl::StrCat("file \"", f.name, "\" ended after ", f.received,
                                                   " of its ", f.size, " bytes"));
  }
  if (total > manager_->options_.max_upload_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("upload of ", total, " bytes exceeds the server limit of ",
                                                     manager_->options_.max_upload_bytes, " bytes"));
  }
  if (fd_ >= 0) ::close(fd_);
  const std::string path = absl::StrCat(job->dir, "/upload/", name);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return absl::UnavailableError(absl::StrCat("spool: ", path, ": ", std::strerror(errno)));
  JobManager::Job::File f;
  f.name = name;
  f.size = size;
  if (job->held) {
    // The data part stays a hole: the file has its full size for readers of the header.
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return absl::UnavailableError(absl::StrCat("spool: ", path, ": ", std::strerror(errno)));
    }
    f.spool_end = absl::EndsWith(name, ".json") ? size : std::min<uint64_t>(size, 8);
  }
  job->files.push_back(std::move(f));
  job->snap.progress.bytes_total = total;
  job->cv.notify_all();
  return absl::OkStatus();
}

absl::Status Upload::Append(std::string bytes) {
  auto job = manager_->Find(id_);
  if (job == nullptr || !job->held) {
    return Append(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  if (fd_ < 0) return absl::InvalidArgumentError("data before any file header");
  return manager_->AppendHeld(*job, fd_, std::move(bytes));
}

bool Upload::ReadyForMore(std::function<void()> resume) {
  auto job = manager_->Find(id_);
  if (!job) return true;
  std::lock_guard<std::mutex> lock(job->mu);
  if (!job->held || manager_->HasRoom(*job)) return true;
  job->resume = std::move(resume);
  return false;
}

absl::Status Upload::Append(absl::Span<const uint8_t> bytes) {
  auto job = manager_->Find(id_);
  if (!job) return absl::CancelledError("job was deleted");
  if (job->held) return Append(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  if (fd_ < 0) return absl::InvalidArgumentError("data before any file header");
  std::string name;
  {
    std::lock_guard<std::mutex> lock(job->mu);
    auto& f = job->files.back();
    if (bytes.size() > f.size - f.received) {
      return absl::InvalidArgumentError(absl::StrCat("file \"", f.name, "\": data beyond its declared ",
                                                     f.size, " bytes"));
    }
    name = f.name;
  }
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      std::string msg = absl::StrCat("spool: writing ", name, ": ", std::strerror(errno));
      return errno == ENOSPC ? absl::ResourceExhaustedError(msg) : absl::UnavailableError(msg);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  {
    std::lock_guard<std::mutex> lock(job->mu);
    job->files.back().received += bytes.size();
    job->snap.progress.bytes_received += bytes.size();
  }
  job->cv.notify_all();
  return absl::OkStatus();
}

absl::Status Upload::End() {
  auto job = manager_->Find(id_);
  if (!job) return absl::CancelledError("job was deleted");
  if (!job->snap.request.server_path.empty()) {
    // A server_path job: its files were validated when it was created.
    ended_ = true;
    return absl::OkStatus();
  }
  // Every file complete; every safetensors header valid; one model (a file, or an index and
  // exactly its shards).
  absl::Status st;
  std::vector<std::pair<std::string, std::string>> files;
  {
    std::lock_guard<std::mutex> lock(job->mu);
    for (const auto& f : job->files) {
      if (f.received != f.size) {
        st = absl::InvalidArgumentError(absl::StrCat("file \"", f.name, "\" ended after ",
                                                     f.received, " of its ", f.size, " bytes"));
        break;
      }
      files.emplace_back(f.name, absl::StrCat(job->dir, "/upload/", f.name));
    }
  }
  if (st.ok()) st = manager_->CheckModelFiles(files);
  if (!st.ok()) {
    // The job fails with the same error the caller returns; the Upload's destructor deletes it.
    {
      std::lock_guard<std::mutex> lock(job->mu);
      job->upload_failed = true;
      job->snap.state = JobState::kFailed;
      job->snap.error = st;
      job->snap.finished_unix = NowUnix();
    }
    manager_->Notify(*job);
    return st;
  }
  if (fd_ >= 0) {
    if (manager_->options_.sync && !job->snap.request.ephemeral) ::fsync(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  {
    std::lock_guard<std::mutex> lock(job->mu);
    job->upload_done = true;
    HC_RETURN_IF_ERROR(manager_->Persist(*job));
  }
  job->cv.notify_all();
  ended_ = true;
  manager_->Log(absl::StrCat("job ", id_, " upload complete: ", files.size(), " files"));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Held uploads: backpressure between the upload reader and the job

bool JobManager::HasRoom(const Job& job) const {
  const bool wanted = job.starved && (job.want_file >= job.files.size() || job.files[job.want_file].received < job.want);
  return job.held_bytes < options_.memory_budget / 16 || wanted || job.cancel || job.upload_failed ||
         IsFinal(job.snap.state) || stopping_;
}

void JobManager::WakeUpload(Job& job) {
  std::function<void()> resume;
  {
    std::lock_guard<std::mutex> lock(job.mu);
    if (!job.resume || !HasRoom(job)) return;
    resume = std::move(job.resume);
    job.resume = nullptr;
  }
  resume();
}

// Splits the bytes between the spool file (a safetensors header, learnt from its first 8
// bytes; an index file) and memory (tensor data).
absl::Status JobManager::AppendHeld(Job& job, int fd, std::string bytes) {
  const uint64_t total = bytes.size();
  std::unique_lock<std::mutex> lock(job.mu);
  Job::File& f = job.files.back();
  if (bytes.size() > f.size - f.received) {
    return absl::InvalidArgumentError(absl::StrCat("file \"", f.name, "\": data beyond its declared ", f.size, " bytes"));
  }
  if (job.cancel || IsFinal(job.snap.state)) return absl::CancelledError("the job has ended");
  size_t used = 0;
  while (used < bytes.size() && f.received < f.spool_end) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size() - used, f.spool_end - f.received));
    if (::pwrite(fd, bytes.data() + used, n, static_cast<off_t>(f.received)) != static_cast<ssize_t>(n)) {
      std::string msg = absl::StrCat("spool: writing ", f.name, ": ", std::strerror(errno));
      return errno == ENOSPC ? absl::ResourceExhaustedError(msg) : absl::UnavailableError(msg);
    }
    used += n;
    f.received += n;
    if (!f.header_known && f.received == f.spool_end && f.spool_end == 8 && !absl::EndsWith(f.name, ".json")) {
      f.header_known = true;
      uint8_t prefix[8] = {0};
      if (::pread(fd, prefix, 8, 0) != 8) return absl::UnavailableError(absl::StrCat("spool: reading ", f.name, " failed"));
      uint64_t len = 0;
      for (int i = 0; i < 8; ++i) len |= static_cast<uint64_t>(prefix[i]) << (8 * i);
      // A length past the file is refused by the runner; the whole file is then kept on disk.
      f.spool_end = len > f.size - 8 ? f.size : 8 + len;
    }
  }
  if (used < bytes.size()) {
    const uint64_t n = bytes.size() - used;
    if (f.held.end() != f.received) f.held = ByteQueue(f.received);  // the first data bytes
    f.held.Append(used == 0 ? std::move(bytes) : bytes.substr(used));
    f.received += n;
    job.held_bytes += n;
  }
  job.snap.progress.bytes_received += total;
  lock.unlock();
  job.cv.notify_all();
  return absl::OkStatus();
}

// Follows spooled file `k` as its bytes arrive: the header once it is in, then each tensor as
// soon as its last byte is in, handed to a FileCompressor (the same one local mode uses, so the
// artifact bytes are identical).
}  // namespace hc::server
