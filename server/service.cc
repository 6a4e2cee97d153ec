#include "server/service.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors_file.h"
#include "server/grpc_status.h"
#include "server/proto_convert.h"

namespace hc::server {
namespace {

using hyperc::v1::CompressRequest;
using hyperc::v1::CompressResponse;

constexpr size_t kChunkBytes = 1 << 20;

// The upload half shared by Compress and SubmitJob: Start, then FileHeader + chunks, then End.
class UploadSession {
 public:
  UploadSession(JobManager* jobs, bool ephemeral) : jobs_(jobs), ephemeral_(ephemeral) {}

  // Takes a chunk's bytes out of `req`.
  absl::Status Handle(CompressRequest& req) {
    if (ended_) return absl::InvalidArgumentError("message after End");
    if (req.msg_case() != CompressRequest::kStart && !upload_) {
      return absl::InvalidArgumentError("the first message must be Start");
    }
    switch (req.msg_case()) {
      case CompressRequest::kStart: {
        if (upload_) return absl::InvalidArgumentError("Start sent twice");
        auto u = jobs_->StartUpload({req.start().model_name(), FromProto(req.start().options()),
                                     ephemeral_, req.start().server_path(),
                                     req.start().server_output_path()});
        if (!u.ok()) return u.status();
        upload_ = *std::move(u);
        return absl::OkStatus();
      }
      case CompressRequest::kFile:
        return upload_->BeginFile(req.file().name(), req.file().size());
      case CompressRequest::kChunk:
        return upload_->Append(std::move(*req.mutable_chunk()));
      case CompressRequest::kEnd: {
        absl::Status s = upload_->End();
        ended_ = s.ok();
        return s;
      }
      default:
        return absl::InvalidArgumentError("empty request message");
    }
  }
  bool started() const { return upload_ != nullptr; }
  // See Upload::ReadyForMore.
  bool ReadyForMore(std::function<void()> resume) {
    return upload_ == nullptr || upload_->ReadyForMore(std::move(resume));
  }
  bool ended() const { return ended_; }
  std::string job_id() const { return upload_ ? upload_->job_id() : ""; }
  // Drops the upload (an unfinished one deletes its job).
  void Reset() { upload_.reset(); }

 private:
  JobManager* jobs_;
  bool ephemeral_;
  std::unique_ptr<Upload> upload_;
  bool ended_ = false;
};

// Reads an artifact file in chunks for a streaming response. The job wrote the artifact with
// O_DIRECT, so it is not in the page cache, and a buffered read would fill fresh page-cache
// pages (on this VM 1.5-1.9 s of CPU per GB, against 0.1 s for a direct read): the file is read
// with O_DIRECT in aligned blocks into a staging buffer (the next block read ahead on another
// thread), and each chunk copied from there.
// Where the file system refuses O_DIRECT, the same reads are buffered.
class ArtifactCursor {
 public:
  static constexpr size_t kBlock = size_t{4} << 20;  // >= kChunkBytes + kAlign
  static constexpr size_t kAlign = 4096;
  static_assert(kBlock >= kChunkBytes + kAlign, "a chunk must fit in one block read");

  ~ArtifactCursor() { Close(); }
  absl::Status Open(const std::string& path, std::string name, uint64_t offset) {
    Close();
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    direct_ = fd_ >= 0;
    if (fd_ < 0) fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return absl::UnavailableError(absl::StrCat("cannot open artifact ", name));
    size_ = static_cast<uint64_t>(::lseek(fd_, 0, SEEK_END));
    if (offset > size_) return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of ", name, " (", size_, " bytes)"));
    name_ = std::move(name);
    offset_ = offset;
    buf_begin_ = buf_end_ = 0;
    return absl::OkStatus();
  }
  bool done() const { return fd_ < 0 || offset_ >= size_; }
  // Fills `chunk` with the next piece. Errors on read failure.
  absl::Status Next(hyperc::v1::ArtifactChunk* chunk) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkBytes, size_ - offset_));
    if (offset_ < buf_begin_ || offset_ + n > buf_end_) {
      if (absl::Status s = Fill(); !s.ok()) return s;
    }
    chunk->mutable_data()->assign(reinterpret_cast<const char*>(buf_.get()) + (offset_ - buf_begin_), n);
    chunk->set_file(name_);
    chunk->set_file_size(size_);
    chunk->set_offset(offset_);
    offset_ += n;
    return absl::OkStatus();
  }
  void Close() {
    if (next_.valid()) next_.wait();  // the read ahead uses fd_
    next_ = {};
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  // Reads up to kBlock bytes at `begin` (aligned) into `buf`; fewer at the end of the file.
  absl::StatusOr<size_t> ReadBlock(uint8_t* buf, uint64_t begin) {
    size_t got = 0;
    while (got < kBlock) {
      const ssize_t r = ::pread(fd_, buf + got, kBlock - got, static_cast<off_t>(begin + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EINVAL && direct_) {
        // Refused by the file system after all: buffered from here on.
        SetDirectIo(fd_, false);
        direct_ = false;
        continue;
      }
      if (r < 0) return absl::UnavailableError(absl::StrCat("reading artifact ", name_, " failed: ", std::strerror(errno)));
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    return got;
  }
  // Makes buf_ hold the aligned block that starts at or just before offset_: the block read
  // ahead if it is that one, else read now; then starts reading the following block on another
  // thread, so that the disk works while the chunks go out.
  absl::Status Fill() {
    for (auto* b : {&buf_, &next_buf_}) {
      if (*b == nullptr) b->reset(static_cast<uint8_t*>(std::aligned_alloc(kAlign, kBlock)));
      if (*b == nullptr) return absl::ResourceExhaustedError("no memory for the artifact read buffers");
    }
    const uint64_t begin = offset_ / kAlign * kAlign;
    absl::StatusOr<size_t> got = size_t{0};
    if (next_.valid()) {
      got = next_.get();
      if (next_begin_ == begin) {
        std::swap(buf_, next_buf_);
      } else {
        got = ReadBlock(buf_.get(), begin);
      }
    } else {
      got = ReadBlock(buf_.get(), begin);
    }
    if (!got.ok()) return got.status();
    buf_begin_ = begin;
    buf_end_ = begin + *got;
    const uint64_t want = std::min<uint64_t>(kChunkBytes, size_ - offset_);
    if (offset_ + want > buf_end_) return absl::UnavailableError(absl::StrCat("reading artifact ", name_, " failed: short read"));
    if (buf_end_ < size_) {
      next_begin_ = buf_end_;
      next_ = std::async(std::launch::async, [this, b = next_begin_] { return ReadBlock(next_buf_.get(), b); });
    }
    return absl::OkStatus();
  }

  int fd_ = -1;
  bool direct_ = false;
  std::string name_;
  uint64_t size_ = 0, offset_ = 0;
  std::unique_ptr<uint8_t, FreeDeleter> buf_, next_buf_;
  uint64_t buf_begin_ = 0, buf_end_ = 0;  // file range held in buf_
  std::future<absl::StatusOr<size_t>> next_;  // reading the block at next_begin_ into next_buf_
  uint64_t next_begin_ = 0;
};

class CompressReactor;

// Lets a job thread restart a Compress call's paused upload reads (backpressure of a held
// upload), never after the reactor is gone. Recursive: the read may complete inline.
struct ReadGate {
  std::recursive_mutex mu;
  CompressReactor* reactor = nullptr;  // null once the call is done
};

// Compress: upload in, progress + artifact + summary out, on one stream.
class CompressReactor final : public grpc::ServerBidiReactor<CompressRequest, CompressResponse> {
 public:
  CompressReactor(CompressorService* svc, grpc::CallbackServerContext* ctx)
      : svc_(svc), session_(svc->jobs(), /*ephemeral=*/true), gate_(std::make_shared<ReadGate>()) {
    gate_->reactor = this;
    grpc::Status auth = svc->CheckAuth(ctx);
    if (!auth.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(auth);
      return;
    }
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!session_.ended()) FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the upload stream closed before End"));
      return;
    }
    absl::Status s = session_.Handle(req_);
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(ToGrpcStatus(s));
      return;
    }
    if (session_.started() && !watching_) {
      watching_ = true;
      job_id_ = session_.job_id();
      auto token = svc_->jobs()->Watch(job_id_, [this](const JobSnapshot& snap) { OnJob(snap); });
      if (token.ok()) token_ = *token;
    }
    if (session_.ended()) return;
    // A held upload past its memory limit: the next read waits for the job to catch up.
    auto resume = [g = gate_] {
      std::lock_guard<std::recursive_mutex> lock(g->mu);
      if (g->reactor != nullptr) g->reactor->ResumeRead();
    };
    if (session_.ReadyForMore(resume)) StartRead(&req_);
  }

  // The client went away (or the server shuts down) while no read or write was pending.
  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading"));
      return;
    }
    PumpLocked();
  }

  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> lock(gate_->mu);
      gate_->reactor = nullptr;
    }
    if (token_ != 0) svc_->jobs()->Unwatch(job_id_, token_);
    const bool ended = session_.ended();
    session_.Reset();  // an unfinished upload deletes its job here
    if (ended) svc_->jobs()->Delete(job_id_).IgnoreError();
    if (svc_->hooks().on_rpc_done) svc_->hooks().on_rpc_done("Compress", final_status_);
    delete this;
  }

 private:
  void ResumeRead() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
    }
    StartRead(&req_);
  }

  void OnJob(const JobSnapshot& snap) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || snap.version <= last_version_) return;
    last_version_ = snap.version;
    // Artifact files complete before the job ends (a sharded model's shards) go out at once.
    for (const auto& [name, size] : snap.ready_files) QueueFileLocked(name);
    if (snap.state == JobState::kSucceeded) {
      success_ = snap;
      // An artifact written on the server (server_output_path) is not sent back.
      if (snap.request.output_path.empty()) {
        for (const auto& [name, size] : snap.files) QueueFileLocked(name);
      }
    } else if (IsFinal(snap.state)) {
      error_ = snap.error.ok() ? absl::InternalError("job ended without a result") : snap.error;
    } else if (snap.progress.tensors_done > 0) {
      progress_ = snap.progress;  // coalesce: only the newest unsent event is kept
    }
    PumpLocked();
  }

  void QueueFileLocked(const std::string& name) {
    if (std::find(files_.begin(), files_.end(), name) == files_.end()) files_.push_back(name);
  }

  // Starts the next write: pending progress, then the artifact files that are ready, and once
  // the job has succeeded the rest, then the summary, then Finish.
  void PumpLocked() {
    if (writing_ || finished_) return;
    resp_.Clear();
    if (progress_) {
      ToProto(*progress_, resp_.mutable_progress());
      progress_.reset();
    } else if (error_) {
      FinishLocked(ToGrpcStatus(*error_));
      return;
    } else if (success_ || !cursor_.done() || next_file_ < files_.size()) {
      while (cursor_.done() && next_file_ < files_.size()) {
        const std::string& name = files_[next_file_++];
        auto path = svc_->jobs()->ArtifactPath(job_id_, name);
        absl::Status s = path.ok() ? cursor_.Open(*path, name, 0) : path.status();
        if (!s.ok()) {
          FinishLocked(ToGrpcStatus(s));
          return;
        }
        if (!cursor_.done()) break;
      }
      if (!cursor_.done()) {
        if (absl::Status s = cursor_.Next(resp_.mutable_artifact()); !s.ok()) {
          FinishLocked(ToGrpcStatus(s));
          return;
        }
      } else if (!success_) {
        return;  // the ready files are sent; the rest come with success
      } else if (!summary_sent_) {
        ToProto(*success_, resp_.mutable_summary());
        summary_sent_ = true;
      } else {
        FinishLocked(grpc::Status::OK);
        return;
      }
    } else {
      return;  // nothing to send yet
    }
    writing_ = true;
    StartWrite(&resp_);
  }

  void FinishLocked(const grpc::Status& s) {
    if (finished_) return;
    finished_ = true;
    final_status_ = s;
    Finish(s);
  }

  CompressorService* svc_;
  UploadSession session_;
  std::shared_ptr<ReadGate> gate_;
  CompressRequest req_;
  bool watching_ = false;
  std::string job_id_;
  uint64_t token_ = 0;

  std::mutex mu_;
  CompressResponse resp_;
  bool writing_ = false, finished_ = false, summary_sent_ = false;
  uint64_t last_version_ = 0;
  std::optional<JobProgress> progress_;
  std::optional<absl::Status> error_;
  std::optional<JobSnapshot> success_;
  std::vector<std::string> files_;  // artifact files to send, in order
  size_t next_file_ = 0;
  ArtifactCursor cursor_;
  grpc::Status final_status_;
};

// SubmitJob: the same upload; answers with the job once the upload is complete and valid.
class SubmitReactor final : public grpc::ServerReadReactor<CompressRequest> {
 public:
  SubmitReactor(CompressorService* svc, grpc::CallbackServerContext* ctx, hyperc::v1::Job* response)
      : svc_(svc), session_(svc->jobs(), /*ephemeral=*/false), response_(response) {
    grpc::Status auth = svc->CheckAuth(ctx);
    if (!auth.ok()) {
      Done(auth);
      return;
    }
    StartRead(&req_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Done(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the upload stream closed before End"));
      return;
    }
    absl::Status s = session_.Handle(req_);
    if (!s.ok()) {
      Done(ToGrpcStatus(s));
      return;
    }
    if (!session_.ended()) {
      StartRead(&req_);
      return;
    }
    auto snap = svc_->jobs()->Get(session_.job_id());
    if (snap.ok()) ToProto(*snap, response_);
    Done(ToGrpcStatus(snap.status()));
  }
  void OnDone() override {
    session_.Reset();
    if (svc_->hooks().on_rpc_done) svc_->hooks().on_rpc_done("SubmitJob", status_);
    delete this;
  }

 private:
  void Done(const grpc::Status& s) {
    status_ = s;
    Finish(s);
  }
  CompressorService* svc_;
  UploadSession session_;
  hyperc::v1::Job* response_;
  CompressRequest req_;
  grpc::Status status_;
};

// WatchJob: the newest state after every change until the job ends.
class WatchReactor final : public grpc::ServerWriteReactor<hyperc::v1::Job> {
 public:
  WatchReactor(CompressorService* svc, grpc::CallbackServerContext* ctx, std::string id)
      : svc_(svc), id_(std::move(id)) {
    grpc::Status auth = svc->CheckAuth(ctx);
    if (!auth.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(auth);
      return;
    }
    auto token = svc_->jobs()->Watch(id_, [this](const JobSnapshot& s) { OnJob(s); });
    if (!token.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(ToGrpcStatus(token.status()));
      return;
    }
    token_ = *token;
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading"));
      return;
    }
    PumpLocked();
  }
  void OnDone() override {
    if (token_ != 0) svc_->jobs()->Unwatch(id_, token_);
    if (svc_->hooks().on_rpc_done) svc_->hooks().on_rpc_done("WatchJob", status_);
    delete this;
  }

 private:
  void OnJob(const JobSnapshot& s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    pending_ = s;
    PumpLocked();
  }
  void PumpLocked() {
    if (writing_ || finished_) return;
    if (!pending_) {
      if (final_sent_) FinishLocked(grpc::Status::OK);
      return;
    }
    job_.Clear();
    ToProto(*pending_, &job_);
    final_sent_ = IsFinal(pending_->state);
    pending_.reset();
    writing_ = true;
    StartWrite(&job_);
  }
  void FinishLocked(const grpc::Status& s) {
    if (finished_) return;
    finished_ = true;
    status_ = s;
    Finish(s);
  }
  CompressorService* svc_;
  std::string id_;
  uint64_t token_ = 0;
  std::mutex mu_;
  hyperc::v1::Job job_;
  std::optional<JobSnapshot> pending_;
  bool writing_ = false, finished_ = false, final_sent_ = false;
  grpc::Status status_;
};

// FetchArtifact: one artifact file from an offset, in chunks.
class FetchReactor final : public grpc::ServerWriteReactor<hyperc::v1::ArtifactChunk> {
 public:
  FetchReactor(CompressorService* svc, grpc::CallbackServerContext* ctx,
               const hyperc::v1::FetchArtifactRequest& req)
      : svc_(svc) {
    grpc::Status auth = svc->CheckAuth(ctx);
    if (!auth.ok()) {
      Done(auth);
      return;
    }
    auto path = svc->jobs()->ArtifactPath(req.id(), req.file());
    absl::Status s = path.status();
    if (s.ok()) {
      std::string name = req.file();
      if (name.empty()) name = path->substr(path->rfind('/') + 1);
      s = cursor_.Open(*path, name, req.offset());
    }
    if (!s.ok()) {
      Done(ToGrpcStatus(s));
      return;
    }
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading"));
      return;
    }
    Next();
  }
  void OnDone() override {
    if (svc_->hooks().on_rpc_done) svc_->hooks().on_rpc_done("FetchArtifact", status_);
    delete this;
  }

 private:
  void Next() {
    if (cursor_.done()) {
      Done(grpc::Status::OK);
      return;
    }
    chunk_.Clear();
    if (absl::Status s = cursor_.Next(&chunk_); !s.ok()) {
      Done(ToGrpcStatus(s));
      return;
    }
    StartWrite(&chunk_);
  }
  void Done(const grpc::Status& s) {
    status_ = s;
    Finish(s);
  }
  CompressorService* svc_;
  ArtifactCursor cursor_;
  hyperc::v1::ArtifactChunk chunk_;
  grpc::Status status_;
};

}  // namespace

CompressorService::CompressorService(JobManager* jobs, std::string auth_token, ServiceHooks hooks)
    : jobs_(jobs), auth_token_(std::move(auth_token)), hooks_(std::move(hooks)) {}

grpc::Status CompressorService::CheckAuth(const grpc::CallbackServerContext* ctx) const {
  if (auth_token_.empty()) return grpc::Status::OK;
  const std::string want = "Bearer " + auth_token_;
  auto range = ctx->client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    if (std::string(it->second.data(), it->second.size()) == want) return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      range.first == range.second ? "missing bearer token (authorization metadata)"
                                                  : "wrong bearer token");
}

grpc::ServerUnaryReactor* CompressorService::Unary(grpc::CallbackServerContext* ctx, const char* method,
                                                   const std::function<absl::Status()>& body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  grpc::Status s = CheckAuth(ctx);
  if (s.ok()) s = ToGrpcStatus(body());
  if (hooks_.on_rpc_done) hooks_.on_rpc_done(method, s);
  reactor->Finish(s);
  return reactor;
}

grpc::ServerBidiReactor<CompressRequest, CompressResponse>* CompressorService::Compress(
    grpc::CallbackServerContext* ctx) {
  return new CompressReactor(this, ctx);
}

grpc::ServerReadReactor<CompressRequest>* CompressorService::SubmitJob(grpc::CallbackServerContext* ctx,
                                                                       hyperc::v1::Job* response) {
  return new SubmitReactor(this, ctx, response);
}

grpc::ServerWriteReactor<hyperc::v1::Job>* CompressorService::WatchJob(grpc::CallbackServerContext* ctx,
                                                                       const hyperc::v1::JobRef* request) {
  return new WatchReactor(this, ctx, request->id());
}

grpc::ServerUnaryReactor* CompressorService::GetJob(grpc::CallbackServerContext* ctx,
                                                    const hyperc::v1::JobRef* request,
                                                    hyperc::v1::Job* response) {
  return Unary(ctx, "GetJob", [&]() -> absl::Status {
    auto snap = jobs_->Get(request->id());
    if (snap.ok()) ToProto(*snap, response);
    return snap.status();
  });
}

grpc::ServerUnaryReactor* CompressorService::ListJobs(grpc::CallbackServerContext* ctx,
                                                      const hyperc::v1::ListJobsRequest*,
                                                      hyperc::v1::ListJobsResponse* response) {
  return Unary(ctx, "ListJobs", [&]() -> absl::Status {
    for (const JobSnapshot& s : jobs_->List()) ToProto(s, response->add_jobs());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* CompressorService::CancelJob(grpc::CallbackServerContext* ctx,
                                                       const hyperc::v1::JobRef* request,
                                                       hyperc::v1::Job* response) {
  return Unary(ctx, "CancelJob", [&]() -> absl::Status {
    auto snap = jobs_->Cancel(request->id());
    if (snap.ok()) ToProto(*snap, response);
    return snap.status();
  });
}

grpc::ServerWriteReactor<hyperc::v1::ArtifactChunk>* CompressorService::FetchArtifact(
    grpc::CallbackServerContext* ctx, const hyperc::v1::FetchArtifactRequest* request) {
  return new FetchReactor(this, ctx, *request);
}

grpc::ServerUnaryReactor* CompressorService::DeleteJob(grpc::CallbackServerContext* ctx,
                                                       const hyperc::v1::JobRef* request,
                                                       hyperc::v1::DeleteJobResponse*) {
  return Unary(ctx, "DeleteJob", [&]() { return jobs_->Delete(request->id()); });
}

}  // namespace hc::server
