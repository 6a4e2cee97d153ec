// Paths on the server's own filesystem: models a job reads in place (JobRequest::server_path),
// artifacts it writes in place (JobRequest::output_path), and the validation of a model's files
// that a server_path job and an ended upload share.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "server/job_internal.h"
#include "server/job_manager.h"

namespace hc::server {
namespace fs = std::filesystem;

namespace {

// True if resolved path `p` is `root` or lies under it (both resolved, no trailing '/').
bool IsUnder(const std::string& p, const std::string& root) {
  if (root == "/") return true;
  return p == root ||
         (absl::StartsWith(p, root) && p.size() > root.size() && p[root.size()] == '/');
}

// A path as a client sends it: at most 4096 bytes, no NUL byte. `field` names it in the error.
absl::Status CheckPathText(const std::string& path, absl::string_view field) {
  if (path.size() > 4096 || path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is longer than 4096 bytes or holds a NUL byte"));
  }
  return absl::OkStatus();
}

struct FileFacts {
  std::string resolved;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

// Resolves `path` (symbolic links, "..") and checks that it is a regular file inside a root.
absl::StatusOr<FileFacts> ResolveInRoots(const std::string& path,
                                         const std::vector<std::string>& roots) {
  std::error_code ec;
  const fs::path resolved = fs::canonical(path, ec);
  if (ec) {
    const std::string msg = absl::StrCat("server_path \"", path, "\": ", ec.message());
    return ec == std::errc::no_such_file_or_directory ? absl::NotFoundError(msg)
                                                      : absl::InvalidArgumentError(msg);
  }
  FileFacts f;
  f.resolved = resolved.string();
  if (std::none_of(roots.begin(), roots.end(),
                   [&](const std::string& r) { return IsUnder(f.resolved, r); })) {
    return absl::PermissionDeniedError(absl::StrCat("server_path \"", path, "\" (", f.resolved,
                                                    ") is outside the server's input directories"));
  }
  struct stat st;
  if (::stat(f.resolved.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("server_path \"", path, "\": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("server_path \"", path, "\" is not a regular file"));
  }
  f.size = static_cast<uint64_t>(st.st_size);
  f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return f;
}

}  // namespace

std::string JobManager::InputPath(Job& job, const std::string& name) const {
  std::lock_guard<std::mutex> lock(job.mu);
  for (const Job::File& f : job.files) {
    if (f.name == name && !f.source.empty()) return f.source;
  }
  return absl::StrCat(job.dir, "/upload/", name);
}

absl::Status JobManager::CheckModelFiles(
    const std::vector<std::pair<std::string, std::string>>& files) const {
  std::vector<std::string> shards;
  std::string index_name, index_path;
  for (const auto& [name, path] : files) {
    if (absl::EndsWith(name, ".json")) {
      if (!index_name.empty())
        return absl::InvalidArgumentError("more than one index file uploaded");
      index_name = name;
      index_path = path;
      HC_RETURN_IF_ERROR(ReadShardIndex(path).status());
      continue;
    }
    HC_ASSIGN_OR_RETURN(auto sf, SafetensorsFile::Open(path));
    for (const TensorInfo& t : sf->header().tensors) {
      if (t.nbytes() > options_.max_tensor_bytes) {
        return absl::ResourceExhaustedError(
            absl::StrCat(name, ": tensor \"", t.name, "\" has ", t.nbytes(),
                         " bytes, over the server limit of ", options_.max_tensor_bytes));
      }
    }
    shards.push_back(name);
  }
  if (shards.empty()) return absl::InvalidArgumentError("the upload holds no .safetensors file");
  if (index_name.empty() && shards.size() > 1) {
    return absl::InvalidArgumentError("several .safetensors files need their shard index (.json)");
  }
  if (!index_name.empty()) {
    HC_ASSIGN_OR_RETURN(ShardIndex idx, ReadShardIndex(index_path));
    std::sort(shards.begin(), shards.end());
    if (idx.shards != shards) {
      return absl::InvalidArgumentError(absl::StrCat(index_name, ": names ", idx.shards.size(),
                                                     " shards but ", shards.size(),
                                                     " were uploaded"));
    }
  }
  return absl::OkStatus();
}

absl::Status JobManager::ResolveServerInput(Job& job) const {
  const std::string& path = job.snap.request.server_path;
  if (options_.input_roots.empty()) {
    return absl::PermissionDeniedError(
        "this server reads no models from its own filesystem (server_path); start hyperc-server "
        "with --input-root DIR to allow a directory, or upload the model");
  }
  HC_RETURN_IF_ERROR(CheckPathText(path, "server_path"));
  if (!fs::path(path).is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat("server_path \"", path, "\" is not an absolute path"));
  }
  const bool index = absl::EndsWith(path, ".json");
  if (!index && !absl::EndsWith(path, ".safetensors")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server_path \"", path, "\": a .safetensors file or a shard index .json is needed"));
  }
  HC_ASSIGN_OR_RETURN(FileFacts top, ResolveInRoots(path, options_.input_roots));
  std::vector<Job::File> files;
  auto add = [&](std::string name, const FileFacts& f) {
    Job::File file;
    file.name = std::move(name);
    file.size = file.received = f.size;
    file.source = f.resolved;
    file.mtime_ns = f.mtime_ns;
    files.push_back(std::move(file));
  };
  if (index) {
    // Shards are named relative to the index as given (as local mode reads them), and each is
    // resolved and checked on its own: a shard that is a link out of the roots is refused.
    HC_ASSIGN_OR_RETURN(ShardIndex idx, ReadShardIndex(top.resolved));
    add(fs::path(path).filename().string(), top);
    const std::string dir = fs::path(path).parent_path().string();
    for (const std::string& shard : idx.shards) {
      HC_ASSIGN_OR_RETURN(FileFacts f,
                          ResolveInRoots(absl::StrCat(dir, "/", shard), options_.input_roots));
      add(shard, f);
    }
  } else {
    add(fs::path(path).filename().string(), top);
  }
  std::vector<std::pair<std::string, std::string>> check;
  uint64_t total = 0;
  for (const Job::File& f : files) {
    check.emplace_back(f.name, f.source);
    total += f.size;
  }
  HC_RETURN_IF_ERROR(CheckModelFiles(check));
  std::lock_guard<std::mutex> lock(job.mu);
  job.files = std::move(files);
  job.snap.progress.bytes_total = job.snap.progress.bytes_received = total;
  job.upload_done = true;
  return absl::OkStatus();
}

absl::Status JobManager::ResolveServerOutput(Job& job) const {
  const std::string& path = job.snap.request.output_path;
  if (options_.output_roots.empty()) {
    return absl::PermissionDeniedError(
        "this server writes no artifacts to its own filesystem (server_output_path); start "
        "hyperc-server with --output-root DIR to allow a directory, or take the artifact back");
  }
  HC_RETURN_IF_ERROR(CheckPathText(path, "server_output_path"));
  const fs::path p(path);
  const std::string name = p.filename().string();
  if (!p.is_absolute() || name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(
        "server_output_path \"", path, "\" is not an absolute path to a file or directory"));
  }
  std::error_code ec;
  const fs::path parent = fs::canonical(p.parent_path(), ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("server_output_path \"", path, "\": its directory: ", ec.message()));
  }
  const std::string resolved = (parent / name).string();
  if (std::none_of(options_.output_roots.begin(), options_.output_roots.end(),
                   [&](const std::string& r) { return IsUnder(parent.string(), r); })) {
    return absl::PermissionDeniedError(
        absl::StrCat("server_output_path \"", path, "\" (", resolved,
                     ") is outside the server's output directories"));
  }
  if (fs::is_symlink(fs::symlink_status(resolved, ec))) {
    return absl::InvalidArgumentError(
        absl::StrCat("server_output_path \"", path, "\" is a symbolic link; name the file itself"));
  }
  std::lock_guard<std::mutex> lock(job.mu);
  job.snap.request.output_path = resolved;
  return absl::OkStatus();
}

std::string JobManager::StagingDir(const Job& job) {
  const std::string& out = job.snap.request.output_path;
  if (out.empty()) return job.dir + "/artifact";
  const fs::path p(out);
  return (p.parent_path() / absl::StrCat(".", p.filename().string(), ".hyperc-", job.snap.id))
      .string();
}

std::string JobManager::FinalArtifactPath(const Job& job, const std::string& name) {
  const std::string& out = job.snap.request.output_path;
  if (out.empty()) return absl::StrCat(job.dir, "/artifact/", name);
  // As local mode: one file is the output itself; a sharded model's files go in a directory.
  return job.artifact_files.size() == 1 ? out : absl::StrCat(out, "/", name);
}

absl::Status JobManager::PlaceArtifact(Job& job) const {
  std::vector<std::string> names;
  std::string staging, out;
  {
    std::lock_guard<std::mutex> lock(job.mu);
    names = job.artifact_files;
    staging = StagingDir(job);
    out = job.snap.request.output_path;
  }
  std::error_code ec;
  // Checked again now: a link put there since the job started could lead out of the roots.
  if (fs::is_symlink(fs::symlink_status(out, ec))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server_output_path ", out, " became a symbolic link while the job ran; not followed"));
  }
  if (names.size() > 1) {
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) fs::remove(out, ec);
    fs::create_directories(out, ec);
    if (ec)
      return absl::UnavailableError(absl::StrCat("server_output_path ", out, ": ", ec.message()));
  }
  for (const std::string& name : names) {
    const std::string to = names.size() == 1 ? out : absl::StrCat(out, "/", name);
    if (names.size() == 1 && fs::is_directory(to, ec)) fs::remove_all(to, ec);
    fs::rename(absl::StrCat(staging, "/", name), to, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("server_output_path: moving ", name, " to ", to, ": ", ec.message()));
    }
  }
  fs::remove_all(staging, ec);
  return absl::OkStatus();
}

absl::Status JobManager::CheckServerInputUnchanged(Job& job) const {
  std::vector<FileFacts> recorded;
  {
    std::lock_guard<std::mutex> lock(job.mu);
    for (const Job::File& f : job.files) {
      if (!f.source.empty()) recorded.push_back({f.source, f.size, f.mtime_ns});
    }
  }
  for (const FileFacts& f : recorded) {
    absl::StatusOr<FileFacts> now = ResolveInRoots(f.resolved, options_.input_roots);
    if (!now.ok() && absl::IsPermissionDenied(now.status())) return now.status();
    if (!now.ok() || now->resolved != f.resolved || now->size != f.size ||
        now->mtime_ns != f.mtime_ns) {
      return absl::FailedPreconditionError(absl::StrCat(
          "input file ", f.resolved, " changed or disappeared since the job was submitted (it had ",
          f.size, " bytes); submit the job again"));
    }
  }
  return absl::OkStatus();
}

}  // namespace hc::server
