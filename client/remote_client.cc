#include "client/remote_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"

namespace hc::client {
namespace fs = std::filesystem;
using hyperc::v1::CompressRequest;
using hyperc::v1::CompressResponse;

namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// The files of a model in upload order: the file itself, or the index then its shards.
absl::StatusOr<std::vector<std::string>> UploadFiles(const std::string& input) {
  if (!IsShardIndexPath(input)) return std::vector<std::string>{input};
  HC_ASSIGN_OR_RETURN(ShardIndex index, ReadShardIndex(input));
  std::vector<std::string> out = {input};
  for (size_t i = 0; i < index.shards.size(); ++i) out.push_back(index.ShardPath(i));
  return out;
}

std::string ModelName(const std::string& input) {
  return IsShardIndexPath(input) ? BaseName(DirName(input)) : BaseName(input);
}

void ToProto(const CompressOptions& o, hyperc::v1::CompressOptions* p) {
  p->set_codec(o.codec);
  for (const auto& [k, v] : o.codec_options.items()) (*p->mutable_codec_options())[k] = v;
  for (const std::string& s : o.skip) p->add_skip(s);
}

// Sends Start, every file (header + chunks) and End. Returns false if the stream broke.
template <typename Writer>
bool SendUpload(Writer* w, const std::vector<std::string>& files, const std::string& model_name,
                const CompressOptions& options, size_t chunk_bytes, absl::Status* error) {
  CompressRequest req;
  req.mutable_start()->set_model_name(model_name);
  ToProto(options, req.mutable_start()->mutable_options());
  if (!w->Write(req)) return false;
  std::vector<char> buf(chunk_bytes);
  for (const std::string& path : files) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      *error = absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
      return false;
    }
    struct stat st;
    ::fstat(fd, &st);
    req.Clear();
    req.mutable_file()->set_name(BaseName(path));
    req.mutable_file()->set_size(static_cast<uint64_t>(st.st_size));
    bool ok = w->Write(req);
    while (ok) {
      ssize_t r = ::read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        *error = absl::UnavailableError(absl::StrCat(path, ": read failed"));
        ok = false;
        break;
      }
      if (r == 0) break;
      req.Clear();
      req.set_chunk(buf.data(), static_cast<size_t>(r));
      ok = w->Write(req);
    }
    ::close(fd);
    if (!ok) return false;
  }
  req.Clear();
  req.mutable_end();
  return w->Write(req);
}

// Collects artifact chunks into "<final>.part" files and renames them at the end.
class ArtifactSink {
 public:
  ArtifactSink(std::string output, bool directory) : output_(std::move(output)), dir_(directory) {}
  ~ArtifactSink() {
    for (auto& [name, f] : files_) {
      if (f.fd >= 0) ::close(f.fd);
      if (!committed_) ::unlink(f.part.c_str());
    }
  }
  absl::Status Write(const hyperc::v1::ArtifactChunk& c) {
    auto it = files_.find(c.file());
    if (it == files_.end()) {
      if (c.file().empty() || absl::StrContains(c.file(), "/")) return absl::DataLossError("bad artifact file name");
      if (!dir_ && !files_.empty()) return absl::DataLossError("several artifact files for a single-file model");
      if (dir_) fs::create_directories(output_);
      File f;
      f.final_path = dir_ ? output_ + "/" + c.file() : output_;
      f.part = f.final_path + ".part";
      f.fd = ::open(f.part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (f.fd < 0) return absl::UnavailableError(absl::StrCat(f.part, ": ", std::strerror(errno)));
      f.size = c.file_size();
      it = files_.emplace(c.file(), f).first;
    }
    File& f = it->second;
    if (c.offset() != f.written) return absl::DataLossError("artifact chunks out of order");
    const std::string& d = c.data();
    if (::pwrite(f.fd, d.data(), d.size(), static_cast<off_t>(c.offset())) != static_cast<ssize_t>(d.size())) {
      return absl::UnavailableError(absl::StrCat(f.part, ": write failed"));
    }
    f.written += d.size();
    return absl::OkStatus();
  }
  absl::Status Commit() {
    for (auto& [name, f] : files_) {
      if (f.written != f.size) return absl::DataLossError(absl::StrCat("artifact ", name, " is incomplete"));
      ::fsync(f.fd);
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

 private:
  struct File {
    std::string final_path, part;
    int fd = -1;
    uint64_t size = 0, written = 0;
  };
  std::string output_;
  bool dir_;
  std::map<std::string, File> files_;
  bool committed_ = false;
};

}  // namespace

absl::Status RemoteOptions::Validate() const {
  if (server.empty()) return absl::InvalidArgumentError("--server HOST:PORT is required");
  if (attempts < 1) return absl::InvalidArgumentError("attempts must be >= 1");
  if (chunk_bytes < 1024 || chunk_bytes > (4u << 20)) {
    return absl::InvalidArgumentError("chunk size must be in [1 KiB, 4 MiB]");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RemoteClient>> RemoteClient::Connect(RemoteOptions options) {
  HC_RETURN_IF_ERROR(options.Validate());
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_file.empty()) {
    HC_ASSIGN_OR_RETURN(std::string ca, ReadFileToString(options.tls_ca_file, 1 << 20));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ca;
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  args.SetMaxSendMessageSize(8 << 20);
  std::unique_ptr<RemoteClient> c(new RemoteClient(std::move(options)));
  auto channel = grpc::CreateCustomChannel(c->options_.server, creds, args);
  c->stub_ = hyperc::v1::Compressor::NewStub(channel);
  return c;
}

void RemoteClient::Prepare(grpc::ClientContext* ctx, double timeout) const {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000)));
  if (!options_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + options_.token);
}

absl::StatusOr<hyperc::v1::Summary> RemoteClient::Compress(const std::string& input,
                                                           const std::string& output,
                                                           const CompressOptions& options,
                                                           const RemoteProgress& progress) {
  HC_ASSIGN_OR_RETURN(std::vector<std::string> files, UploadFiles(input));
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.stream_timeout_seconds);
  auto stream = stub_->Compress(&ctx);
  absl::Status upload_error;
  std::thread uploader([&] {
    if (SendUpload(stream.get(), files, ModelName(input), options, options_.chunk_bytes, &upload_error)) {
      stream->WritesDone();
    } else if (!upload_error.ok()) {
      ctx.TryCancel();
    }
  });
  ArtifactSink sink(output, IsShardIndexPath(input));
  CompressResponse resp;
  hyperc::v1::Summary summary;
  bool have_summary = false;
  absl::Status sink_error;
  while (stream->Read(&resp)) {
    if (resp.has_progress()) {
      if (progress) progress(resp.progress());
    } else if (resp.has_artifact()) {
      if (sink_error.ok()) sink_error = sink.Write(resp.artifact());
      if (!sink_error.ok()) ctx.TryCancel();
    } else if (resp.has_summary()) {
      summary = resp.summary();
      have_summary = true;
    }
  }
  uploader.join();
  grpc::Status st = stream->Finish();
  HC_RETURN_IF_ERROR(upload_error);
  HC_RETURN_IF_ERROR(sink_error);
  HC_RETURN_IF_ERROR(FromGrpc(st));
  if (!have_summary) return absl::DataLossError("the server ended the call without a summary");
  HC_RETURN_IF_ERROR(sink.Commit());
  return summary;
}

absl::StatusOr<hyperc::v1::Job> RemoteClient::Submit(const std::string& input, const CompressOptions& options) {
  HC_ASSIGN_OR_RETURN(std::vector<std::string> files, UploadFiles(input));
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.stream_timeout_seconds);
  hyperc::v1::Job job;
  auto writer = stub_->SubmitJob(&ctx, &job);
  absl::Status upload_error;
  if (SendUpload(writer.get(), files, ModelName(input), options, options_.chunk_bytes, &upload_error)) {
    writer->WritesDone();
  }
  grpc::Status st = writer->Finish();
  HC_RETURN_IF_ERROR(upload_error);
  HC_RETURN_IF_ERROR(FromGrpc(st));
  return job;
}

namespace {
// Runs `call` up to `attempts` times while it fails with UNAVAILABLE, backing off 0.2 s, 0.4 s...
template <typename Fn>
grpc::Status Retry(int attempts, Fn call) {
  grpc::Status st;
  for (int i = 0; i < attempts; ++i) {
    st = call();
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << i));
  }
  return st;
}
}  // namespace

absl::StatusOr<hyperc::v1::Job> RemoteClient::Get(const std::string& id) {
  hyperc::v1::Job job;
  hyperc::v1::JobRef ref;
  ref.set_id(id);
  grpc::Status st = Retry(options_.attempts, [&] {
    grpc::ClientContext ctx;
    Prepare(&ctx, options_.unary_timeout_seconds);
    return stub_->GetJob(&ctx, ref, &job);
  });
  HC_RETURN_IF_ERROR(FromGrpc(st));
  return job;
}

absl::StatusOr<std::vector<hyperc::v1::Job>> RemoteClient::List() {
  hyperc::v1::ListJobsResponse resp;
  grpc::Status st = Retry(options_.attempts, [&] {
    grpc::ClientContext ctx;
    Prepare(&ctx, options_.unary_timeout_seconds);
    return stub_->ListJobs(&ctx, hyperc::v1::ListJobsRequest(), &resp);
  });
  HC_RETURN_IF_ERROR(FromGrpc(st));
  return std::vector<hyperc::v1::Job>(resp.jobs().begin(), resp.jobs().end());
}

absl::StatusOr<hyperc::v1::Job> RemoteClient::Cancel(const std::string& id) {
  hyperc::v1::Job job;
  hyperc::v1::JobRef ref;
  ref.set_id(id);
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.unary_timeout_seconds);
  HC_RETURN_IF_ERROR(FromGrpc(stub_->CancelJob(&ctx, ref, &job)));
  return job;
}

absl::Status RemoteClient::Delete(const std::string& id) {
  hyperc::v1::JobRef ref;
  ref.set_id(id);
  hyperc::v1::DeleteJobResponse resp;
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.unary_timeout_seconds);
  return FromGrpc(stub_->DeleteJob(&ctx, ref, &resp));
}

absl::StatusOr<hyperc::v1::Job> RemoteClient::Watch(
    const std::string& id, const std::function<void(const hyperc::v1::Job&)>& on_update) {
  hyperc::v1::JobRef ref;
  ref.set_id(id);
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.stream_timeout_seconds);
  auto reader = stub_->WatchJob(&ctx, ref);
  hyperc::v1::Job job, last;
  bool any = false;
  while (reader->Read(&job)) {
    last = job;
    any = true;
    if (on_update) on_update(job);
  }
  HC_RETURN_IF_ERROR(FromGrpc(reader->Finish()));
  if (!any) return absl::DataLossError("the watch stream ended without a state");
  return last;
}

absl::Status RemoteClient::FetchFile(const std::string& id, const std::string& file, const std::string& path) {
  const std::string part = path + ".part";
  grpc::Status st = Retry(options_.attempts, [&] {
    struct stat s;
    const uint64_t have = ::stat(part.c_str(), &s) == 0 ? static_cast<uint64_t>(s.st_size) : 0;
    int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return grpc::Status(grpc::StatusCode::UNKNOWN, part + ": cannot open");
    hyperc::v1::FetchArtifactRequest req;
    req.set_id(id);
    req.set_file(file);
    req.set_offset(have);
    grpc::ClientContext ctx;
    Prepare(&ctx, options_.stream_timeout_seconds);
    auto reader = stub_->FetchArtifact(&ctx, req);
    hyperc::v1::ArtifactChunk chunk;
    while (reader->Read(&chunk)) {
      ::pwrite(fd, chunk.data().data(), chunk.data().size(), static_cast<off_t>(chunk.offset()));
    }
    ::fsync(fd);
    ::close(fd);
    return reader->Finish();
  });
  HC_RETURN_IF_ERROR(FromGrpc(st));
  if (::rename(part.c_str(), path.c_str()) != 0) return absl::UnavailableError(path + ": rename failed");
  return absl::OkStatus();
}

absl::Status RemoteClient::Fetch(const std::string& id, const std::string& output) {
  HC_ASSIGN_OR_RETURN(hyperc::v1::Job job, Get(id));
  if (job.state() != hyperc::v1::Job::SUCCEEDED) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id, " is ", hyperc::v1::Job::State_Name(job.state())));
  }
  const auto& files = job.summary().files();
  if (files.size() == 1) return FetchFile(id, files[0].name(), output);
  fs::create_directories(output);
  for (const auto& f : files) HC_RETURN_IF_ERROR(FetchFile(id, f.name(), output + "/" + f.name()));
  return absl::OkStatus();
}

}  // namespace hc::client
