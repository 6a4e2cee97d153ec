// Jobs: uploads spooled to disk, compression on the shared TBB arena, state persisted so that a
// restarted server lists finished jobs and resumes unfinished ones. No gRPC here: the service
// converts requests into these calls.
#ifndef HC_SERVER_JOB_MANAGER_H_
#define HC_SERVER_JOB_MANAGER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/io/byte_queue.h"
#include "core/pipeline/pipeline.h"
#include "core/pipeline/tbb_executor.h"

namespace hc::server {

/// Job states. QUEUED covers a job whose upload is still arriving or that waits for a slot.
enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
absl::string_view JobStateName(JobState s);
inline bool IsFinal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

/// What a client asks for.
struct JobRequest {
  std::string model_name;
  CompressOptions options;
  /// A Compress call's job: deleted when the call ends, never resumed after a restart.
  bool ephemeral = false;
  /// Non-empty: the model is read from this path on the server (a .safetensors file or a shard
  /// index) instead of an upload; see JobManagerOptions::input_roots and StartUpload.
  std::string server_path;
  /// Non-empty: the artifact is written at this path on the server (a file, or a directory for
  /// a sharded model) instead of the spool; see JobManagerOptions::output_roots. StartUpload
  /// stores it resolved.
  std::string output_path;
};

/// Progress of a job.
struct JobProgress {
  uint64_t tensors_done = 0, tensors_total = 0;
  uint64_t bytes_received = 0, bytes_total = 0, bytes_done = 0;
  double fraction = 0, eta_seconds = 0;
  std::string tensor;
};

/// A point-in-time copy of a job, safe to use without locks.
struct JobSnapshot {
  std::string id;
  JobRequest request;
  JobState state = JobState::kQueued;
  JobProgress progress;
  /// For kFailed: the error. For kCancelled: Cancelled.
  absl::Status error;
  /// Records of every tensor (set once the job succeeded).
  std::vector<TensorRecord> tensors;
  /// Artifact files (name, size) in the order a client should write them.
  std::vector<std::pair<std::string, uint64_t>> files;
  /// A Compress call's job only: artifact files already complete while it runs (a sharded
  /// model's shards, as they finish); ArtifactPath serves them before the job has succeeded.
  std::vector<std::pair<std::string, uint64_t>> ready_files;
  int64_t created_unix = 0, finished_unix = 0;
  double seconds = 0;
  /// Increases with every change; watchers compare it.
  uint64_t version = 0;
};

/// Hooks for metrics, all optional. Called from job threads: keep them cheap and non-blocking.
struct JobObserver {
  /// A tensor was written: its codec (or "raw"), record, input bytes and encoding seconds
  /// (0 when taken from a checkpoint).
  std::function<void(const TensorRecord&, uint64_t input_bytes, double seconds)> on_tensor;
  /// Any change of a job (progress or state), with the counts of running and queued jobs.
  std::function<void(const JobSnapshot&, int running, int queued)> on_job_change;
  /// A job was deleted.
  std::function<void(const std::string& id)> on_job_deleted;
};

/// Limits and placement.
struct JobManagerOptions {
  /// Where uploads, artifacts and job state live. Required.
  std::string spool_dir;
  /// Jobs compressing at once; more wait QUEUED. Default: 2.
  int max_running_jobs = 2;
  /// Jobs waiting for a slot; beyond it new jobs get ResourceExhausted. Default: 16.
  int max_queued_jobs = 16;
  /// Largest upload (all files of a job). Default: 64 GiB.
  uint64_t max_upload_bytes = uint64_t{64} << 30;
  /// Largest single tensor. Default: 4 GiB.
  uint64_t max_tensor_bytes = uint64_t{4} << 30;
  /// Input bytes in flight per running job. Default: 256 MiB.
  uint64_t memory_budget = uint64_t{256} << 20;
  /// Worker threads of the shared arena (0 = one per core). Default: 0.
  int threads = 0;
  /// fsync artifacts and state. Default: true.
  bool sync = true;
  /// Directories whose models a job may read in place (JobRequest::server_path), absolute.
  /// Empty (the default): no server-side input, only uploads. A path counts as inside a root
  /// once both are resolved (symbolic links, "..").
  std::vector<std::string> input_roots;
  /// Directories where a job may write its artifact (JobRequest::output_path), absolute, as
  /// input_roots. Empty (the default): artifacts stay in the spool.
  std::vector<std::string> output_roots;
  /// Log lines ("job <id> ...") go here; default stderr.
  std::function<void(const std::string&)> log;
  JobObserver observer;

  absl::Status Validate() const;
};

class JobManager;

/// The receiving end of one upload: FileHeader / Append in order, then End.
/// Not thread-safe (one stream feeds it).
class Upload {
 public:
  ~Upload();  // an upload dropped before End() cancels and removes its job
  const std::string& job_id() const { return id_; }
  /// Starts the next file. Errors: InvalidArgument for a bad name, a duplicate, or the previous
  /// file incomplete; ResourceExhausted past the upload limit.
  absl::Status BeginFile(const std::string& name, uint64_t size);
  /// Appends bytes to the current file. Errors: InvalidArgument past its declared size or with
  /// no file started; Unavailable/ResourceExhausted on disk errors; Cancelled once the job was
  /// cancelled or ended.
  absl::Status Append(absl::Span<const uint8_t> bytes);
  /// The same, taking the bytes over (a held upload keeps them without a copy).
  absl::Status Append(std::string bytes);
  /// Backpressure for a held upload (see JobManager): true if the caller may read and Append
  /// more now. Otherwise false, and `resume` is called once, from a job thread, when there is
  /// room again or the job has ended; it must stay callable until the Upload is destroyed
  /// (the destructor drops it). A spooled upload is always ready.
  bool ReadyForMore(std::function<void()> resume);
  /// Ends the upload: every file complete, every header valid, a consistent model.
  /// Errors: InvalidArgument naming the file, tensor and rule (the job is then deleted).
  absl::Status End();

 private:
  friend class JobManager;
  Upload(JobManager* m, std::string id) : manager_(m), id_(std::move(id)) {}
  JobManager* manager_;
  std::string id_;
  bool ended_ = false;
  int fd_ = -1;
};

/// Owns every job. Thread-safe.
///
/// Uploads are spooled to disk, except a Compress call's (ephemeral) upload without a target
/// rate, which is "held": each file's safetensors header (and an index file) goes to the spool,
/// the tensor data stays in memory until the job has read it (the spool file keeps a hole
/// there). A held upload asks for no more than memory_budget / 16 bytes ahead of the job, or
/// the one tensor the job waits for (Upload::ReadyForMore), so it is bounded; it is not
/// resumable, like every Compress call's job. Ephemeral jobs also skip fsync: their artifact
/// lives until the call has sent it.
///
/// Memory of a running job: each tensor's input is a heap copy (buffers reused, at most
/// memory_budget / 2 kept idle) counted in the budget once handed to the FileCompressor, plus
/// the next tensor's copy while it waits for room; a tensor larger than memory_budget / 2 is
/// copied only once it fits in the budget (FileCompressor::WaitForRoom). A held tensor larger than memory_budget / 2
/// whose codec needs more than memory_budget to encode it (e.g. hc1 on an LLM's embedding or
/// LM head) is instead written into the spool file's hole and mapped, like every tensor of a
/// spooled upload: its pages leave the process once the codec has copied them, as a mapped
/// model's do in local mode.
class JobManager {
 public:
  /// Opens the spool directory (creating it), restores jobs and resumes unfinished ones.
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(JobManagerOptions options);
  ~JobManager();  // stops runners (jobs stay resumable on disk)

  /// Creates a job for an upload. Errors: InvalidArgument for bad options; ResourceExhausted
  /// when the queue is full.
  ///
  /// With `request.server_path` the job reads that model in place, validated now as End()
  /// validates an upload, and the returned Upload takes no files (BeginFile and Append fail with
  /// InvalidArgument; End() only confirms). Errors besides the above: PermissionDenied when
  /// input_roots is empty or the resolved path (or a shard) lies outside every root;
  /// InvalidArgument for a relative path or a name ending neither in .safetensors nor .json;
  /// NotFound for a missing file. Each file's size and modification time are recorded: a job
  /// that starts (or resumes after a restart) and finds a file changed or gone fails with
  /// FailedPrecondition, and one whose file has left the roots with PermissionDenied.
  ///
  /// With `request.output_path` the artifact is written in a hidden directory beside that path
  /// and moved there when the job succeeds (ArtifactPath then names the moved files; Delete
  /// leaves them). Errors: PermissionDenied when output_roots is empty or the path's parent
  /// lies outside them; NotFound for a missing parent; InvalidArgument for a relative path or
  /// a symbolic link.
  absl::StatusOr<std::unique_ptr<Upload>> StartUpload(JobRequest request);

  absl::StatusOr<JobSnapshot> Get(const std::string& id) const;
  /// Newest first.
  std::vector<JobSnapshot> List() const;
  /// Cancels a queued or running job; a finished job is returned unchanged.
  absl::StatusOr<JobSnapshot> Cancel(const std::string& id);
  /// Deletes a job and its files (cancelling it first).
  absl::Status Delete(const std::string& id);
  /// Calls `fn` after every change of job `id` (from the thread that made the change; keep it
  /// short and non-blocking) until the returned token is passed to Unwatch. The current state is
  /// delivered at once. Errors: NotFound.
  absl::StatusOr<uint64_t> Watch(const std::string& id,
                                 std::function<void(const JobSnapshot&)> fn);
  void Unwatch(const std::string& id, uint64_t token);
  /// Path of artifact file `file` of a succeeded job ("" = the first), or of one of its
  /// ready_files. Errors: NotFound, FailedPrecondition if the job has not succeeded.
  absl::StatusOr<std::string> ArtifactPath(const std::string& id, const std::string& file) const;

  /// Counts for metrics and limits.
  int running() const;
  int queued() const;
  /// Worker threads of the shared arena, and how many run a tensor right now.
  int pool_threads() const { return executor_->threads(); }
  int pool_busy() const { return executor_->busy(); }
  /// Bytes allocated under the spool directory (walks it).
  uint64_t SpoolBytes() const;

 private:
  friend class Upload;
  struct Job;
  explicit JobManager(JobManagerOptions options);
  absl::Status Restore();
  std::shared_ptr<Job> Find(const std::string& id) const;
  void Schedule();
  void Run(std::shared_ptr<Job> job);
  absl::Status RunJob(Job& job);
  // Where file `name` of a job is read from: its server-side path, or the spool.
  std::string InputPath(Job& job, const std::string& name) const;
  // A server_path request: the model's files (names, resolved paths, sizes, times) checked
  // against input_roots and validated like an ended upload.
  absl::Status ResolveServerInput(Job& job) const;
  // An output_path request: checked against output_roots and stored resolved.
  absl::Status ResolveServerOutput(Job& job) const;
  // Where a job writes its artifact files (the spool, or the hidden directory beside its
  // output_path), and where artifact file `name` is once the job has succeeded.
  static std::string StagingDir(const Job& job);
  static std::string FinalArtifactPath(const Job& job, const std::string& name);
  // An output_path job that succeeded: moves its files from StagingDir into place.
  absl::Status PlaceArtifact(Job& job) const;
  // A server_path job's files: each still inside the roots with its recorded size and time.
  absl::Status CheckServerInputUnchanged(Job& job) const;
  // Every file of a model (name, path) valid and consistent: one .safetensors, or an index and
  // exactly its shards; no tensor over max_tensor_bytes. The errors Upload::End() returns.
  absl::Status CheckModelFiles(const std::vector<std::pair<std::string, std::string>>& files) const;
  absl::Status CompressSpooledFile(Job& job, size_t file, const TensorCompressor& compressor,
                                   std::vector<TensorRecord>* records);
  // A held upload: whether its reader may go on (job.mu held), and calling its resume callback
  // when it may (job.mu not held).
  bool HasRoom(const Job& job) const;
  // Appends to the current file of a held upload: header bytes to `fd`, data to memory.
  absl::Status AppendHeld(Job& job, int fd, std::string bytes);
  void WakeUpload(Job& job);
  void Notify(Job& job);  // bump version, persist, call watchers; job.mu held
  // A job that reached a final state: persists it, then deletes its upload and staged files
  // (in that order: a kill in between must not leave a resumable job without its input).
  void FinishOnDisk(Job& job);
  absl::Status Persist(const Job& job) const;
  void Log(const std::string& line) const;

  JobManagerOptions options_;
  std::unique_ptr<TbbExecutor> executor_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
  std::vector<std::string> pending_;  // ids waiting for a run slot, FIFO
  std::condition_variable pending_cv_;
  int running_ = 0;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
  uint64_t next_token_ = 1;
};

}  // namespace hc::server

#endif  // HC_SERVER_JOB_MANAGER_H_
