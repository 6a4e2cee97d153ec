#include "server/job_manager.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/crc32c.h"
#include "core/base/json.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "core/pipeline/file_compressor.h"
#include "server/job_internal.h"

namespace hc::server {
namespace fs = std::filesystem;
using internal::DecodeCheckpoint;
using internal::EncodeCheckpoint;
using internal::NowUnix;

namespace {

std::string NewJobId() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}



// Heap buffers of tensor inputs, kept for reuse once their tensor is written: a model repeats a
// few shapes, and a fresh buffer costs page faults and zeroing on every tensor. Holds at most
// `limit` bytes. Used by one job thread.
class BufferPool {
 public:
  explicit BufferPool(uint64_t limit) : limit_(limit) {}
  // A buffer of at least `n` bytes (and not much larger), and its capacity.
  std::unique_ptr<uint8_t[]> Take(uint64_t n, uint64_t* capacity) {
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i].first >= n && free_[i].first <= n + n / 4) {
        *capacity = free_[i].first;
        std::unique_ptr<uint8_t[]> p = std::move(free_[i].second);
        held_ -= free_[i].first;
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
        return p;
      }
    }
    *capacity = std::max<uint64_t>(n, 1);
    return std::unique_ptr<uint8_t[]>(new uint8_t[*capacity]);  // not zero-filled: every byte is copied in
  }
  // Keeps `p` if it fits the limit (the newest first), else frees it.
  void Give(std::unique_ptr<uint8_t[]> p, uint64_t capacity) {
    while (!free_.empty() && held_ + capacity > limit_) {
      held_ -= free_.front().first;
      free_.erase(free_.begin());
    }
    if (capacity > limit_) return;
    held_ += capacity;
    free_.emplace_back(capacity, std::move(p));
  }

 private:
  uint64_t limit_, held_ = 0;
  std::vector<std::pair<uint64_t, std::unique_ptr<uint8_t[]>>> free_;  // oldest first
};

// One tensor's input as handed to a FileCompressor: a heap buffer (from a BufferPool, returned
// to it), or a read-only mapping of its bytes in the job's spool file. A mapping's pages can be
// dropped as soon as the codec has copied them (they come back from the page cache if read
// again), as in local mode. Freed once the tensor is written.
class TensorInput {
 public:
  static std::unique_ptr<TensorInput> Heap(uint64_t n, BufferPool* pool) {
    std::unique_ptr<TensorInput> in(new TensorInput());
    in->heap_ = pool->Take(n, &in->capacity_);
    in->pool_ = pool;
    in->data_ = in->heap_.get();
    in->size_ = n;
    return in;
  }
  // Bytes [offset, offset + n) of `fd`, which must all be in the file.
  static absl::StatusOr<std::unique_ptr<TensorInput>> Map(int fd, uint64_t offset, uint64_t n,
                                                          const std::string& name) {
    static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    static uint8_t empty = 0;  // an empty tensor: a valid pointer, never read
    std::unique_ptr<TensorInput> in(new TensorInput());
    in->data_ = &empty;
    if (n == 0) return in;
    const uint64_t start = offset / page * page;
    in->map_len_ = offset + n - start;
    void* p = ::mmap(nullptr, in->map_len_, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
    if (p == MAP_FAILED) return absl::UnavailableError(absl::StrCat("spool: mapping ", name, ": ", std::strerror(errno)));
    in->map_ = p;
    in->data_ = static_cast<uint8_t*>(p) + (offset - start);
    in->size_ = n;
    return in;
  }
  ~TensorInput() {
    if (map_ != nullptr) ::munmap(map_, map_len_);
    if (heap_ != nullptr) pool_->Give(std::move(heap_), capacity_);
  }
  uint8_t* data() const { return data_; }
  absl::Span<const uint8_t> span() const { return absl::MakeConstSpan(data_, size_); }
  bool mapped() const { return map_ != nullptr; }
  // A mapping only: drops its pages from the process.
  void Drop() const {
    if (map_ != nullptr) ::madvise(map_, map_len_, MADV_DONTNEED);
  }

 private:
  TensorInput() = default;
  std::unique_ptr<uint8_t[]> heap_;
  uint64_t capacity_ = 0;
  BufferPool* pool_ = nullptr;
  void* map_ = nullptr;
  uint64_t map_len_ = 0;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

absl::Status WaitFailed(const std::string& file) {
  return absl::InvalidArgumentError(absl::StrCat("upload of ", file, " ended early"));
}

}  // namespace

absl::string_view JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued: return "QUEUED";
    case JobState::kRunning: return "RUNNING";
    case JobState::kSucceeded: return "SUCCEEDED";
    case JobState::kFailed: return "FAILED";
    case JobState::kCancelled: return "CANCELLED";
  }
  return "?";
}

absl::Status JobManagerOptions::Validate() const {
  if (spool_dir.empty()) return absl::InvalidArgumentError("a spool directory is required");
  if (max_running_jobs < 1) return absl::InvalidArgumentError("max_running_jobs must be >= 1");
  if (max_queued_jobs < 0) return absl::InvalidArgumentError("max_queued_jobs must be >= 0");
  if (memory_budget < (uint64_t{1} << 20)) return absl::InvalidArgumentError("memory budget must be >= 1 MiB");
  if (threads < 0) return absl::InvalidArgumentError("threads must be >= 0");
  for (const auto* roots : {&input_roots, &output_roots}) {
    for (const std::string& r : *roots) {
      if (!fs::path(r).is_absolute()) {
        return absl::InvalidArgumentError(absl::StrCat(roots == &input_roots ? "input" : "output",
                                                       " root \"", r,
                                                       "\" is not an absolute path"));
      }
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// JobManager

JobManager::JobManager(JobManagerOptions options) : options_(std::move(options)) {
  if (!options_.log) options_.log = [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); };
}

void JobManager::Log(const std::string& line) const { options_.log(line); }

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(JobManagerOptions options) {
  HC_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<JobManager> m(new JobManager(std::move(options)));
  std::error_code ec;
  fs::create_directories(fs::path(m->options_.spool_dir) / "jobs", ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("spool directory ", m->options_.spool_dir, ": ", ec.message()));
  }
  for (auto* roots : {&m->options_.input_roots, &m->options_.output_roots}) {
    for (std::string& r : *roots) {
      const fs::path resolved = fs::canonical(r, ec);
      if (ec || !fs::is_directory(resolved)) {
        return absl::InvalidArgumentError(
            absl::StrCat(roots == &m->options_.input_roots ? "input" : "output", " root ", r, ": ",
                         ec ? ec.message() : "not a directory"));
      }
      r = resolved.string();
    }
  }
  m->executor_ = std::make_unique<TbbExecutor>(m->options_.threads);
  HC_RETURN_IF_ERROR(m->Restore());
  for (int i = 0; i < m->options_.max_running_jobs; ++i) {
    m->threads_.emplace_back([mp = m.get()] { mp->Schedule(); });
  }
  return m;
}

JobManager::~JobManager() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [id, job] : jobs_) {
      job->cancel = true;
      job->cv.notify_all();
    }
  }
  for (auto& [id, job] : jobs_) job->cv.notify_all();
  pending_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

std::shared_ptr<JobManager::Job> JobManager::Find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

int JobManager::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

uint64_t JobManager::SpoolBytes() const {
  // Allocated bytes: a held upload's spool file is mostly a hole. Jobs finish and delete their
  // files during the walk; those are skipped, not an end to the count.
  uint64_t total = 0;
  ForEachRegularFile(options_.spool_dir, [&](const std::string&, const struct stat& st) {
    total += static_cast<uint64_t>(st.st_blocks) * 512;
  });
  return total;
}

int JobManager::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(pending_.size());
}

absl::StatusOr<std::unique_ptr<Upload>> JobManager::StartUpload(JobRequest request) {
  if (request.options.codec.empty()) request.options.codec = "rtn";
  request.options.threads = 0;
  request.options.memory_budget = options_.memory_budget;
  request.options.sync = options_.sync;
  if (request.model_name.size() > 256) return absl::InvalidArgumentError("model_name longer than 256 bytes");
  // Validates codec and options now, so a bad request fails before any upload.
  HC_RETURN_IF_ERROR(TensorCompressor::Create(request.options).status());
  auto job = std::make_shared<Job>();
  job->snap.id = NewJobId();
  job->snap.request = std::move(request);
  job->held = job->snap.request.ephemeral && job->snap.request.options.target_bpw <= 0 &&
              job->snap.request.server_path.empty();
  job->snap.created_unix = NowUnix();
  job->dir = (fs::path(options_.spool_dir) / "jobs" / job->snap.id).string();
  if (!job->snap.request.server_path.empty()) HC_RETURN_IF_ERROR(ResolveServerInput(*job));
  if (!job->snap.request.output_path.empty()) HC_RETURN_IF_ERROR(ResolveServerOutput(*job));
  std::error_code ec;
  fs::create_directories(job->dir + "/upload", ec);
  fs::create_directories(job->dir + "/artifact", ec);
  if (ec) return absl::UnavailableError(absl::StrCat("spool: ", job->dir, ": ", ec.message()));
  if (job->upload_done) {
    // A server_path job is complete now: persisted before it can run, so that it resumes.
    std::lock_guard<std::mutex> lock(job->mu);
    if (absl::Status p = Persist(*job); !p.ok()) {
      fs::remove_all(job->dir);
      return p;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int>(pending_.size()) >= options_.max_queued_jobs + (options_.max_running_jobs - running_)) {
      fs::remove_all(job->dir);
      return absl::ResourceExhaustedError(absl::StrCat("the job queue is full (", pending_.size(),
                                                       " jobs waiting); retry later"));
    }
    Log(absl::StrCat("job ", job->snap.id, " created: model \"", job->snap.request.model_name,
                     "\", codec ", job->snap.request.options.codec,
                     job->snap.request.ephemeral ? " (Compress call)" : "",
                     job->snap.request.server_path.empty()
                         ? ""
                         : absl::StrCat(", reading ", job->snap.request.server_path, " in place")));
    jobs_.emplace(job->snap.id, job);
    pending_.push_back(job->snap.id);
  }
  pending_cv_.notify_one();
  return std::unique_ptr<Upload>(new Upload(this, job->snap.id));
}

absl::StatusOr<JobSnapshot> JobManager::Get(const std::string& id) const {
  auto job = Find(id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job \"", id, "\""));
  std::lock_guard<std::mutex> lock(job->mu);
  return job->snap;
}

std::vector<JobSnapshot> JobManager::List() const {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, j] : jobs_) jobs.push_back(j);
  }
  std::vector<JobSnapshot> out;
  for (auto& j : jobs) {
    std::lock_guard<std::mutex> lock(j->mu);
    if (!j->snap.request.ephemeral) out.push_back(j->snap);
  }
  std::sort(out.begin(), out.end(), [](const JobSnapshot& a, const JobSnapshot& b) {
    return a.created_unix != b.created_unix ? a.created_unix > b.created_unix : a.id > b.id;
  });
  return out;
}

absl::StatusOr<JobSnapshot> JobManager::Cancel(const std::string& id) {
  auto job = Find(id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job \"", id, "\""));
  bool was_pending = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::find(pending_.begin(), pending_.end(), id);
    if (it != pending_.end()) {
      pending_.erase(it);
      was_pending = true;
    }
  }
  {
    std::lock_guard<std::mutex> lock(job->mu);
    if (IsFinal(job->snap.state)) return job->snap;
    job->cancel = true;
    if (was_pending) {
      job->snap.state = JobState::kCancelled;
      job->snap.error = absl::CancelledError("cancelled");
      job->snap.finished_unix = NowUnix();
    }
  }
  job->cv.notify_all();
  WakeUpload(*job);
  if (was_pending) {
    FinishOnDisk(*job);
    Notify(*job);
    Log(absl::StrCat("job ", id, " cancelled while queued"));
  }
  // A running job notices the flag after its current tensor and ends CANCELLED.
  std::unique_lock<std::mutex> lock(job->mu);
  job->cv.wait_for(lock, std::chrono::seconds(30), [&] { return IsFinal(job->snap.state); });
  return job->snap;
}

absl::Status JobManager::Delete(const std::string& id) {
  auto job = Find(id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job \"", id, "\""));
  {
    std::lock_guard<std::mutex> lock(job->mu);
    job->upload_failed = job->upload_failed || !job->upload_done;
  }
  HC_RETURN_IF_ERROR(Cancel(id).status());
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.erase(id);
  }
  std::error_code ec;
  fs::remove_all(job->dir, ec);
  if (options_.observer.on_job_deleted) options_.observer.on_job_deleted(id);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> JobManager::Watch(const std::string& id,
                                           std::function<void(const JobSnapshot&)> fn) {
  auto job = Find(id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job \"", id, "\""));
  std::lock_guard<std::mutex> nlock(job->notify_mu);
  JobSnapshot snap;
  uint64_t token;
  {
    std::lock_guard<std::mutex> lock(job->mu);
    token = next_token_++;
    job->watchers.emplace(token, fn);
    snap = job->snap;
  }
  fn(snap);
  return token;
}

void JobManager::Unwatch(const std::string& id, uint64_t token) {
  auto job = Find(id);
  if (!job) return;
  std::lock_guard<std::mutex> nlock(job->notify_mu);
  std::lock_guard<std::mutex> lock(job->mu);
  job->watchers.erase(token);
}

absl::StatusOr<std::string> JobManager::ArtifactPath(const std::string& id, const std::string& file) const {
  auto job = Find(id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job \"", id, "\""));
  std::lock_guard<std::mutex> lock(job->mu);
  for (const auto& [name, size] : job->snap.ready_files) {
    if (!file.empty() && name == file) return job->dir + "/artifact/" + name;
  }
  if (job->snap.state != JobState::kSucceeded) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id, " is ", JobStateName(job->snap.state),
                                                      "; its artifact exists once it has SUCCEEDED"));
  }
  if (file.empty()) return FinalArtifactPath(*job, job->artifact_files.front());
  for (const std::string& a : job->artifact_files) {
    if (a == file) return FinalArtifactPath(*job, a);
  }
  return absl::NotFoundError(absl::StrCat("job ", id, " has no artifact file \"", file, "\""));
}

void JobManager::Notify(Job& job) {
  std::lock_guard<std::mutex> nlock(job.notify_mu);
  JobSnapshot snap;
  std::vector<std::function<void(const JobSnapshot&)>> fns;
  {
    std::lock_guard<std::mutex> lock(job.mu);
    ++job.snap.version;
    if (!job.persisted_once || job.persisted_state != job.snap.state) {
      if (absl::Status s = Persist(job); !s.ok()) Log(absl::StrCat("job ", job.snap.id, ": ", s.message()));
      job.persisted_state = job.snap.state;
      job.persisted_once = true;
    }
    snap = job.snap;
    for (auto& [t, fn] : job.watchers) fns.push_back(fn);
  }
  job.cv.notify_all();
  for (auto& fn : fns) fn(snap);
  if (options_.observer.on_job_change) options_.observer.on_job_change(snap, running(), queued());
}

void JobManager::Schedule() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      pending_cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (stopping_) return;
      auto it = jobs_.find(pending_.front());
      pending_.erase(pending_.begin());
      if (it == jobs_.end()) continue;
      job = it->second;
      ++running_;
    }
    Run(job);  // gives its slot back (running_) before announcing the job's end
  }
}

void JobManager::FinishOnDisk(Job& job) {
  {
    std::lock_guard<std::mutex> lock(job.mu);
    if (absl::Status p = Persist(job); !p.ok()) {
      Log(absl::StrCat("job ", job.snap.id, ": ", p.message()));
    } else {
      job.persisted_state = job.snap.state;
      job.persisted_once = true;
    }
  }
  std::error_code ec;
  fs::remove_all(job.dir + "/upload", ec);
  fs::remove_all(job.dir + "/done", ec);
  if (!job.snap.request.output_path.empty()) fs::remove_all(StagingDir(job), ec);
}

void JobManager::Run(std::shared_ptr<Job> job) {
  // The run slot is released exactly once, before the final notification, so observers that
  // read running() then see the job gone.
  bool slot_held = true;
  auto release_slot = [&] {
    if (!slot_held) return;
    slot_held = false;
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
  };
  struct Releaser {
    std::function<void()> fn;
    ~Releaser() { fn(); }
  } releaser{release_slot};
  {
    std::lock_guard<std::mutex> lock(job->mu);
    if (IsFinal(job->snap.state)) return;
    job->snap.state = JobState::kRunning;
    job->t0 = std::chrono::steady_clock::now();
  }
  Notify(*job);
  Log(absl::StrCat("job ", job->snap.id, " running"));
  absl::Status st = RunJob(*job);
  {
    std::lock_guard<std::mutex> lock(job->mu);
    if (stopping_ && !st.ok()) {
      return;  // server shutting down: the job stays resumable on disk
    }
    if (IsFinal(job->snap.state)) return;  // failed by Upload::End, which reported the error
    job->snap.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - job->t0).count();
    job->snap.finished_unix = NowUnix();
    if (st.ok()) {
      job->snap.state = JobState::kSucceeded;
      job->snap.progress.fraction = 1;
      job->snap.progress.eta_seconds = 0;
    } else if (job->cancel || absl::IsCancelled(st)) {
      job->snap.state = JobState::kCancelled;
      job->snap.error = absl::CancelledError("cancelled");
    } else {
      job->snap.state = JobState::kFailed;
      job->snap.error = st;
    }
  }
  release_slot();
  FinishOnDisk(*job);
  Notify(*job);
  WakeUpload(*job);
  Log(absl::StrCat("job ", job->snap.id, " ", JobStateName(job->snap.state),
                   st.ok() ? "" : absl::StrCat(": ", st.message())));
}

absl::Status JobManager::RunJob(Job& job) {
  HC_ASSIGN_OR_RETURN(auto compressor, TensorCompressor::Create(job.snap.request.options));
  if (!job.snap.request.server_path.empty()) HC_RETURN_IF_ERROR(CheckServerInputUnchanged(job));
  if (!job.snap.request.output_path.empty()) {
    std::error_code ec;
    fs::create_directories(StagingDir(job), ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("server_output_path: ", StagingDir(job), ": ", ec.message()));
    }
  }
  if (job.snap.request.options.target_bpw > 0) {
    // A model-level rate needs every tensor: plan once the whole upload is in.
    std::vector<std::string> files;
    {
      std::unique_lock<std::mutex> lock(job.mu);
      job.cv.wait(lock, [&] { return job.cancel || job.upload_failed || job.upload_done; });
      if (job.cancel) return absl::CancelledError("cancelled");
      if (!job.upload_done) return absl::InvalidArgumentError("the upload ended early");
      for (const auto& f : job.files) files.push_back(f.name);
    }
    std::vector<TensorInfo> all;
    for (const std::string& f : files) {
      if (absl::EndsWith(f, ".json")) continue;
      HC_ASSIGN_OR_RETURN(auto st, SafetensorsFile::Open(InputPath(job, f)));
      all.insert(all.end(), st->header().tensors.begin(), st->header().tensors.end());
    }
    HC_RETURN_IF_ERROR(compressor->Plan(all));
  }
  std::vector<std::string> names;                   // compressed files, upload order
  std::vector<std::vector<TensorRecord>> records;  // per compressed file
  std::string index_name;
  for (size_t k = 0;; ++k) {
    std::string name;
    {
      std::unique_lock<std::mutex> lock(job.mu);
      job.starved = true;
      job.want_file = k;
      job.want = 0;
      lock.unlock();
      WakeUpload(job);
      lock.lock();
      job.cv.wait(lock, [&] {
        return job.cancel || job.upload_failed || job.files.size() > k || job.upload_done;
      });
      job.starved = false;
      if (job.cancel) return absl::CancelledError("cancelled");
      if (job.files.size() <= k) {
        if (job.upload_failed) return absl::InvalidArgumentError("the upload ended early");
        break;
      }
      name = job.files[k].name;
    }
    if (absl::EndsWith(name, ".json")) {
      index_name = name;  // read once every file is in
      std::lock_guard<std::mutex> lock(job.mu);
      job.overhead_bytes += job.files[k].size;
      continue;
    }
    std::vector<TensorRecord> recs;
    HC_RETURN_IF_ERROR(CompressSpooledFile(job, k, *compressor, &recs));
    if (job.snap.request.ephemeral && job.snap.request.output_path.empty()) {
      const std::string a = ArtifactShardName(name);
      {
        std::lock_guard<std::mutex> lock(job.mu);
        job.snap.ready_files.emplace_back(a, fs::file_size(job.dir + "/artifact/" + a));
      }
      Notify(job);
    }
    names.push_back(name);
    records.push_back(std::move(recs));
  }
  // Wait for End() (it validates the whole upload).
  {
    std::unique_lock<std::mutex> lock(job.mu);
    job.cv.wait(lock, [&] { return job.cancel || job.upload_failed || job.upload_done; });
    if (job.cancel) return absl::CancelledError("cancelled");
    if (!job.upload_done) return absl::InvalidArgumentError("the upload ended early");
  }
  const std::string art = StagingDir(job);
  std::vector<std::string> artifact_files;
  std::vector<TensorRecord> all;
  if (index_name.empty()) {
    artifact_files.push_back(ArtifactShardName(names[0]));
    all = std::move(records[0]);
  } else {
    HC_ASSIGN_OR_RETURN(ShardIndex index, ReadShardIndex(InputPath(job, index_name)));
    // Local mode orders shards by name; so does the artifact index here.
    std::vector<size_t> order(names.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return names[a] < names[b]; });
    std::vector<std::string> sorted_names;
    std::vector<std::vector<TensorRecord>> sorted_records;
    std::vector<std::unique_ptr<SafetensorsFile>> files;
    std::vector<const SafetensorsHeader*> headers;
    for (size_t i : order) {
      sorted_names.push_back(names[i]);
      sorted_records.push_back(std::move(records[i]));
      HC_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(InputPath(job, names[i])));
      headers.push_back(&f->header());
      files.push_back(std::move(f));
    }
    HC_RETURN_IF_ERROR(CheckShardsMatchIndex(index, headers));
    HC_RETURN_IF_ERROR(WriteArtifactIndex(art, index_name, index.metadata, sorted_names,
                                          sorted_records, options_.sync && !job.snap.request.ephemeral)
                           .status());
    for (size_t i = 0; i < sorted_names.size(); ++i) {
      artifact_files.push_back(ArtifactShardName(sorted_names[i]));
      all.insert(all.end(), sorted_records[i].begin(), sorted_records[i].end());
    }
    artifact_files.push_back(std::string(kArtifactIndexName));
  }
  {
    std::lock_guard<std::mutex> lock(job.mu);
    job.artifact_files = artifact_files;
  }
  if (!job.snap.request.output_path.empty()) HC_RETURN_IF_ERROR(PlaceArtifact(job));
  std::lock_guard<std::mutex> lock(job.mu);
  job.snap.files.clear();
  for (const std::string& a : artifact_files) {
    job.snap.files.emplace_back(a, fs::file_size(FinalArtifactPath(job, a)));
  }
  job.snap.tensors = std::move(all);
  // The upload stays until Run() has persisted SUCCEEDED: a kill before that resumes the job
  // from it.
  return absl::OkStatus();
}

absl::Status JobManager::CompressSpooledFile(Job& job, size_t k, const TensorCompressor& compressor,
                                             std::vector<TensorRecord>* records) {
  std::string name;
  uint64_t size;
  {
    std::lock_guard<std::mutex> lock(job.mu);
    name = job.files[k].name;
    size = job.files[k].size;
  }
  auto wait_for = [&](uint64_t need) -> absl::Status {
    std::unique_lock<std::mutex> lock(job.mu);
    if (job.files[k].received < need) {
      job.starved = true;  // a held upload may read past its limit to bring these bytes
      job.want_file = k;
      job.want = need;
      lock.unlock();
      WakeUpload(job);
      lock.lock();
    }
    job.cv.wait(lock, [&] { return job.cancel || job.upload_failed || job.files[k].received >= need; });
    job.starved = false;
    if (job.cancel) return absl::CancelledError("cancelled");
    if (job.files[k].received < need) return WaitFailed(name);
    return absl::OkStatus();
  };
  const std::string path = InputPath(job, name);
  // A held upload's large tensors are staged into the spool file's hole (see below).
  int fd = ::open(path.c_str(), (job.held ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("spool: ", path, ": ", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // A held upload's tensor data: copied out of memory as it arrives (into `dst`, or with `dst`
  // null into the spool file at its own offset) and freed as it goes (a large tensor is not
  // held twice), letting the upload go on.
  auto take_held = [&](uint8_t* dst, uint64_t begin, uint64_t end) -> absl::Status {
    std::vector<uint8_t> bounce;
    uint64_t pos = begin;
    while (pos < end) {
      HC_RETURN_IF_ERROR(wait_for(pos + 1));
      uint64_t upto = pos;
      {
        std::lock_guard<std::mutex> lock(job.mu);
        Job::File& f = job.files[k];
        upto = std::min(end, f.received);
        if (dst != nullptr) {
          HC_RETURN_IF_ERROR(f.held.CopyOut(pos, absl::MakeSpan(dst + (pos - begin), upto - pos)));
        } else {
          upto = std::min(upto, pos + (uint64_t{1} << 20));  // a bounded bounce buffer
          bounce.resize(upto - pos);
          HC_RETURN_IF_ERROR(f.held.CopyOut(pos, absl::MakeSpan(bounce)));
        }
      }
      if (dst == nullptr && ::pwrite(fd, bounce.data(), bounce.size(), static_cast<off_t>(pos)) !=
                                static_cast<ssize_t>(bounce.size())) {
        std::string msg = absl::StrCat("spool: writing ", name, ": ", std::strerror(errno));
        return errno == ENOSPC ? absl::ResourceExhaustedError(msg) : absl::UnavailableError(msg);
      }
      pos = upto;
      {
        std::lock_guard<std::mutex> lock(job.mu);
        Job::File& f = job.files[k];
        const uint64_t before = f.held.held();
        f.held.DropBefore(pos);
        job.held_bytes -= before - f.held.held();
      }
      WakeUpload(job);
    }
    return absl::OkStatus();
  };
  auto read_at = [&](uint8_t* dst, uint64_t n, uint64_t off) -> absl::Status {
    while (n > 0) {
      ssize_t r = ::pread(fd, dst, n, static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return absl::UnavailableError(absl::StrCat("spool: reading ", name, " failed"));
      dst += r;
      n -= static_cast<uint64_t>(r);
      off += static_cast<uint64_t>(r);
    }
    return absl::OkStatus();
  };
  if (size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": file has ", size, " bytes, fewer than the 8-byte header length"));
  }
  HC_RETURN_IF_ERROR(wait_for(8));
  uint8_t prefix[8];
  HC_RETURN_IF_ERROR(read_at(prefix, 8, 0));
  HC_ASSIGN_OR_RETURN(uint64_t n, ParseHeaderLength(prefix, size, name));
  HC_RETURN_IF_ERROR(wait_for(8 + n));
  std::string json(n, '\0');
  HC_RETURN_IF_ERROR(read_at(reinterpret_cast<uint8_t*>(json.data()), n, 8));
  HC_ASSIGN_OR_RETURN(SafetensorsHeader header, ValidateSafetensorsHeader(json, size - 8 - n, name));
  for (const TensorInfo& t : header.tensors) {
    if (t.nbytes() > options_.max_tensor_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(name, ": tensor \"", t.name, "\" has ", t.nbytes(),
                                                       " bytes, over the server limit of ", options_.max_tensor_bytes));
    }
  }
  {
    std::lock_guard<std::mutex> lock(job.mu);
    job.snap.progress.tensors_total += header.tensors.size();
    job.overhead_bytes += 8 + n;
  }
  FileCompressor::Options fopt;
  fopt.memory_budget = options_.memory_budget;
  fopt.sync = options_.sync && !job.snap.request.ephemeral;
  // Release drops a mapped input's pages (they come back on demand); heap inputs are freed in
  // on_done below, once written, so their release does nothing.
  fopt.release_keeps_data = true;
  fopt.cancel = &job.cancel;
  const bool checkpoint = !job.snap.request.ephemeral;
  const std::string ckpt_dir = absl::StrCat(job.dir, "/done/", k);
  if (checkpoint) {
    std::error_code ec;
    fs::create_directories(ckpt_dir, ec);
    fopt.on_result = [&](size_t i, const TensorCompressor::Result& r) {
      const std::string path = absl::StrCat(ckpt_dir, "/", i);
      if (fs::exists(path)) return;
      WriteFileAtomically(path, EncodeCheckpoint(r), /*sync=*/false).IgnoreError();
    };
  }
  uint64_t reused = 0;
  // The inputs of the tensors added and not yet written, oldest first (tensors are written in
  // order); declared before the FileCompressor so that they outlive its in-flight work. Their
  // heap buffers go back to `pool` (at most half the budget kept).
  BufferPool pool(options_.memory_budget / 2);
  std::deque<std::unique_ptr<TensorInput>> inputs;
  auto on_done = [&](const TensorRecord& r, uint64_t bytes, double seconds) {
    if (!inputs.empty()) inputs.pop_front();
    if (options_.observer.on_tensor) options_.observer.on_tensor(r, bytes, seconds);
    {
      std::lock_guard<std::mutex> lock(job.mu);
      JobProgress& p = job.snap.progress;
      ++p.tensors_done;
      p.bytes_done += bytes;
      p.tensor = r.name;
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - job.t0).count();
      const uint64_t data_total = p.bytes_total - std::min(p.bytes_total, job.overhead_bytes);
      const uint64_t left = data_total - std::min(data_total, p.bytes_done);
      p.fraction = data_total ? std::min(1.0, static_cast<double>(p.bytes_done) / static_cast<double>(data_total)) : 0;
      p.eta_seconds = p.bytes_done && left ? elapsed * static_cast<double>(left) / static_cast<double>(p.bytes_done) : 0;
    }
    Notify(job);
  };
  HC_ASSIGN_OR_RETURN(auto fc, FileCompressor::Create(
                                   compressor, *executor_, header, name,
                                   StagingDir(job) + "/" + ArtifactShardName(name), fopt, on_done));
  for (size_t i = 0; i < header.tensors.size(); ++i) {
    const TensorInfo& t = header.tensors[i];
    // The input: a spooled upload's tensor is mapped from the spool file. A held upload's
    // tensor is copied into memory, except one larger than half the memory budget whose codec
    // needs more than the whole budget to encode it (e.g. hc1 on the embedding or LM head of an
    // LLM): that one is staged into the spool file's hole and mapped, so that its pages leave
    // the server's memory while it waits for the budget and once the codec has copied them, as
    // a mapped file's do in local mode. (Staging costs a page-cache write, so it is kept for
    // the tensors where the memory matters.)
    const uint64_t begin = header.data_start() + t.begin, end = header.data_start() + t.end;
    const bool stage = t.nbytes() > options_.memory_budget / 2 && compressor.EncodeMemory(t) > options_.memory_budget;
    std::unique_ptr<TensorInput> in;
    if (job.held && !stage) {
      // A tensor larger than half the budget is copied only once it fits in the budget, not
      // while the tensors before it still fill it (two LLM embeddings' copies at once were the
      // server's memory peak). A smaller one is copied at once, so that its upload overlaps the
      // work in flight (waiting for each one cost hc2 about 14% through the server).
      if (t.nbytes() > options_.memory_budget / 2) HC_RETURN_IF_ERROR(fc->WaitForRoom());
      in = TensorInput::Heap(t.nbytes(), &pool);
      HC_RETURN_IF_ERROR(take_held(in->data(), begin, end));
    } else {
      if (job.held) {
        HC_RETURN_IF_ERROR(take_held(nullptr, begin, end));
      } else {
        HC_RETURN_IF_ERROR(wait_for(end));
      }
      HC_ASSIGN_OR_RETURN(in, TensorInput::Map(fd, begin, t.nbytes(), name));
    }
    // Such a tensor runs alone and sets the job's memory peak: first give the allocator's
    // retained free memory back (each thread's malloc arena keeps what it has freed, e.g. the
    // upload chunks a gRPC thread received; together about 100 MiB).
    if (stage) ::malloc_trim(0);
    const absl::Span<const uint8_t> data = in->span();
    std::function<void()> release;
    if (in->mapped()) release = [p = in.get()] { p->Drop(); };
    inputs.push_back(std::move(in));
    // A tensor finished before a restart is taken from its checkpoint, not recomputed.
    if (checkpoint) {
      auto text = ReadFileToString(absl::StrCat(ckpt_dir, "/", i), uint64_t{1} << 40);
      if (text.ok()) {
        auto r = DecodeCheckpoint(*text, t);
        if (r.ok()) {
          ++reused;
          HC_RETURN_IF_ERROR(fc->AddPrecomputed(data, release, *std::move(r)));
          continue;
        }
      }
    }
    HC_RETURN_IF_ERROR(fc->Add(data, release));
  }
  HC_ASSIGN_OR_RETURN(*records, fc->Finish());
  if (reused > 0) {
    Log(absl::StrCat("job ", job.snap.id, " ", name, ": reused ", reused, " of ", header.tensors.size(),
                     " tensors finished before the restart"));
  }
  return absl::OkStatus();
}

}  // namespace hc::server
