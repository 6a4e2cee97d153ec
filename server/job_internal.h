// Private to server/: a job's in-memory state (JobManager::Job) and the helpers that
// job_manager.cc (uploads, runs) and job_store.cc (job.json, checkpoints, restart) share.
// Not part of the server's interface.
#ifndef HC_SERVER_JOB_INTERNAL_H_
#define HC_SERVER_JOB_INTERNAL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/json.h"
#include "core/io/byte_queue.h"
#include "core/pipeline/pipeline.h"
#include "server/job_manager.h"

namespace hc::server {

/// One job: its snapshot, upload files, held bytes, watchers and what is on disk. Guarded by
/// `mu` (watchers are called under `notify_mu`).
struct JobManager::Job {
  std::mutex mu;
  std::condition_variable cv;  // upload progress, upload end, cancel
  std::mutex notify_mu;        // serialises watcher calls, so events arrive in order
  JobSnapshot snap;
  std::string dir;
  struct File {
    std::string name;
    uint64_t size = 0;
    uint64_t received = 0;
    // A held upload: bytes [0, spool_end) are in the spool file (a safetensors header, known
    // once its first 8 bytes are in; a whole index file), the rest in `held`.
    uint64_t spool_end = 0;
    bool header_known = false;
    ByteQueue held;
    // A server_path job: the file's resolved path, and its modification time when the job was
    // created (nanoseconds since the epoch).
    std::string source;
    int64_t mtime_ns = 0;
  };
  std::vector<File> files;
  // A held upload (see JobManager): the bytes in memory over every file, whether the runner
  // waits for bytes not yet received (file `want_file` up to `want`; a file not yet begun),
  // and the upload reader waiting for room.
  bool held = false;
  uint64_t held_bytes = 0;
  bool starved = false;
  size_t want_file = 0;
  uint64_t want = 0;
  std::function<void()> resume;
  bool upload_done = false;    // End() succeeded (or restored from disk)
  bool upload_failed = false;  // the upload stream broke
  std::atomic<bool> cancel{false};
  std::map<uint64_t, std::function<void(const JobSnapshot&)>> watchers;
  std::vector<std::string> artifact_files;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  JobState persisted_state = JobState::kQueued;
  // Upload bytes that are not tensor data (headers, index files) found so far: progress is
  // tensor bytes done over upload bytes minus these, so it ends at exactly 1.
  uint64_t overhead_bytes = 0;
  bool persisted_once = false;
};

namespace internal {

/// Seconds since the epoch.
int64_t NowUnix();
/// A job's compression options as stored in job.json, and back.
JsonValue OptionsJson(const CompressOptions& o);
CompressOptions OptionsFromJson(const JsonValue& j);
/// Checkpoint of one finished tensor: "HCK1", u32 LE length of the record JSON, the JSON, then
/// the parts' bytes in record order. Written without fsync (a process crash keeps the page
/// cache); a torn file fails its part CRCs on load (DataLoss) and the tensor is recomputed.
std::string EncodeCheckpoint(const TensorCompressor::Result& r);
absl::StatusOr<TensorCompressor::Result> DecodeCheckpoint(const std::string& bytes,
                                                          const TensorInfo& t);

}  // namespace internal
}  // namespace hc::server

#endif  // HC_SERVER_JOB_INTERNAL_H_
