#include "client/remote_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/sync_stream.h>
#include <grpcpp/security/credentials.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/artifact_sink.h"
#include "client/mapped_upload.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "core/pipeline/pipeline.h"

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
  p->set_target_bpw(o.target_bpw);
  for (const std::string& s : o.overrides) p->add_overrides(s);
}

// Sends Start, every file (header + chunks) and End. Returns false if the stream broke. Each
// file is mapped and sent from the mapping without a copy (mapped_upload.h), in messages of
// `chunk_bytes`; `w` writes grpc::ByteBuffer messages.
// With `server_path` non-empty, `files` is empty: Start names the path, then End.
// `server_output`: Start.server_output_path (empty: the artifact comes back).
template <typename Writer>
bool SendUpload(Writer* w, const std::vector<std::string>& files, const std::string& model_name,
                const std::string& server_path, const std::string& server_output,
                const CompressOptions& options, size_t chunk_bytes, absl::Status* error) {
  CompressRequest req;
  req.mutable_start()->set_model_name(model_name);
  req.mutable_start()->set_server_path(server_path);
  req.mutable_start()->set_server_output_path(server_output);
  ToProto(options, req.mutable_start()->mutable_options());
  if (!w->Write(MessageBuffer(req))) return false;
  for (const std::string& path : files) {
    absl::StatusOr<std::shared_ptr<const MappedFile>> file = MappedFile::Open(path);
    if (!file.ok()) {
      *error = file.status();
      return false;
    }
    req.Clear();
    req.mutable_file()->set_name(BaseName(path));
    req.mutable_file()->set_size((*file)->size());
    if (!w->Write(MessageBuffer(req))) return false;
    for (uint64_t off = 0; off < (*file)->size(); off += chunk_bytes) {
      const uint64_t n = std::min<uint64_t>(chunk_bytes, (*file)->size() - off);
      (*file)->Prefault(off, n);
      if (!w->Write(ChunkMessage(*file, off, n))) return false;
    }
  }
  req.Clear();
  req.mutable_end();
  return w->Write(MessageBuffer(req));
}

// The method paths of the streaming upload calls, for the raw (ByteBuffer) writers above.
const std::string& MethodPath(absl::string_view method) {
  static const std::string* compress =
      new std::string(absl::StrCat("/", hyperc::v1::Compressor::service_full_name(), "/Compress"));
  static const std::string* submit =
      new std::string(absl::StrCat("/", hyperc::v1::Compressor::service_full_name(), "/SubmitJob"));
  return method == "Compress" ? *compress : *submit;
}

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
  // A DNS name with several records (e.g. a headless Kubernetes service) spreads calls over
  // every replica.
  args.SetLoadBalancingPolicyName("round_robin");
  std::unique_ptr<RemoteClient> c(new RemoteClient(std::move(options)));
  for (absl::string_view target : absl::StrSplit(c->options_.server, ',', absl::SkipWhitespace())) {
    auto channel = grpc::CreateCustomChannel(std::string(absl::StripAsciiWhitespace(target)), creds, args);
    c->spread_.push_back(channel);
  }
  if (c->spread_.empty()) return absl::InvalidArgumentError("--server names no address");
  c->round_robin_ = absl::StrContains(c->options_.server, ":///");
  // Job calls must all reach the replica that holds the job: the first address, and for a DNS
  // name pick_first (one resolved replica) rather than round_robin.
  grpc::ChannelArguments job_args;
  job_args.SetMaxReceiveMessageSize(8 << 20);
  job_args.SetMaxSendMessageSize(8 << 20);
  job_args.SetLoadBalancingPolicyName("pick_first");
  c->channel_ = grpc::CreateCustomChannel(
      std::string(absl::StripAsciiWhitespace(c->options_.server.substr(0, c->options_.server.find(',')))), creds,
      job_args);
  c->stub_ = hyperc::v1::Compressor::NewStub(c->channel_);
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
  if (IsShardIndexPath(input) && (spread_.size() > 1 || round_robin_) && !options_.server_input &&
      !options_.server_output) {
    return CompressSpread(input, output, options, progress);
  }
  return CompressOne(channel_, input, output, IsShardIndexPath(input), options, progress);
}

absl::StatusOr<hyperc::v1::Summary> RemoteClient::CompressOne(const std::shared_ptr<grpc::Channel>& channel,
                                                              const std::string& input,
                                                              const std::string& output, bool directory,
                                                              const CompressOptions& options,
                                                              const RemoteProgress& progress) {
  std::vector<std::string> files;
  if (!options_.server_input) {
    HC_ASSIGN_OR_RETURN(files, UploadFiles(input));
  }
  const std::string server_path = options_.server_input ? input : "";
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.stream_timeout_seconds);
  // The typed stub would serialise (copy) every chunk: the upload goes through a raw writer.
  const grpc::internal::RpcMethod method(MethodPath("Compress").c_str(), grpc::internal::RpcMethod::BIDI_STREAMING,
                                         channel);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, CompressResponse>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, CompressResponse>::Create(channel.get(), method,
                                                                                           &ctx));
  absl::Status upload_error;
  std::thread uploader([&] {
    if (SendUpload(stream.get(), files, ModelName(input), server_path,
                   options_.server_output ? output : "", options, options_.chunk_bytes,
                   &upload_error)) {
      stream->WritesDone();
    } else if (!upload_error.ok()) {
      ctx.TryCancel();
    }
  });
  // An artifact the server writes itself (server_output) never reaches this sink.
  ArtifactSink sink(output, directory);
  CompressResponse resp;
  hyperc::v1::Summary summary;
  bool have_summary = false;
  absl::Status sink_error;
  while (stream->Read(&resp)) {
    if (resp.has_progress()) {
      if (progress) progress(resp.progress());
    } else if (resp.has_artifact()) {
      if (sink_error.ok() && options_.server_output) {
        sink_error =
            absl::DataLossError("the server sent an artifact it was asked to write itself");
      }
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
  if (!options_.server_output) HC_RETURN_IF_ERROR(sink.Commit(summary));
  return summary;
}

// Scale-out: one Compress call per shard, spread over the servers, run in parallel; each shard's
// artifact is what local mode writes for it, and the index is written here exactly as local mode
// writes it, so the result is byte-identical.
absl::StatusOr<hyperc::v1::Summary> RemoteClient::CompressSpread(const std::string& index_path,
                                                                 const std::string& output,
                                                                 const CompressOptions& options,
                                                                 const RemoteProgress& progress) {
  HC_ASSIGN_OR_RETURN(ShardIndex index, ReadShardIndex(index_path));
  std::error_code ec;
  const bool created = !fs::exists(output);
  fs::create_directories(output, ec);
  if (ec) return absl::UnavailableError(absl::StrCat(output, ": ", ec.message()));
  const size_t n = index.shards.size();
  std::vector<absl::StatusOr<hyperc::v1::Summary>> results(n, absl::UnknownError("not run"));
  std::mutex mu;
  std::vector<hyperc::v1::Progress> per_shard(n);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      results[i] = CompressOne(spread_[i % spread_.size()], index.ShardPath(i), absl::StrCat(output, "/", ArtifactShardName(index.shards[i])),
                               /*directory=*/false, options, [&](const hyperc::v1::Progress& p) {
                                 if (!progress) return;
                                 std::lock_guard<std::mutex> lock(mu);
                                 per_shard[i] = p;
                                 hyperc::v1::Progress sum;
                                 for (const auto& q : per_shard) {
                                   sum.set_tensors_done(sum.tensors_done() + q.tensors_done());
                                   sum.set_tensors_total(sum.tensors_total() + q.tensors_total());
                                   sum.set_bytes_received(sum.bytes_received() + q.bytes_received());
                                   sum.set_bytes_total(sum.bytes_total() + q.bytes_total());
                                   sum.set_bytes_done(sum.bytes_done() + q.bytes_done());
                                 }
                                 sum.set_tensor(p.tensor());
                                 progress(sum);
                               });
    });
  }
  for (auto& t : threads) t.join();
  absl::Status failed;
  for (const auto& r : results) {
    if (!r.ok() && failed.ok()) failed = r.status();
  }
  std::vector<std::vector<TensorRecord>> records(n);
  if (failed.ok()) {
    for (size_t i = 0; i < n && failed.ok(); ++i) {
      auto s = InspectArtifact(absl::StrCat(output, "/", ArtifactShardName(index.shards[i])));
      if (s.ok()) records[i] = s->tensors;
      else failed = s.status();
    }
  }
  if (failed.ok()) {
    failed = WriteArtifactIndex(output, BaseName(index_path), index.metadata, index.shards, records, true).status();
  }
  if (!failed.ok()) {
    for (size_t i = 0; i < n; ++i) fs::remove(absl::StrCat(output, "/", ArtifactShardName(index.shards[i])), ec);
    if (created) fs::remove_all(output, ec);
    return failed;
  }
  // The combined summary.
  hyperc::v1::Summary summary;
  double seconds = 0;
  for (const auto& r : results) {
    for (const auto& t : r->tensors()) *summary.add_tensors() = t;
    for (const auto& f : r->files()) *summary.add_files() = f;
    seconds = std::max(seconds, r->seconds());
  }
  auto* index_file = summary.add_files();
  index_file->set_name(std::string(kArtifactIndexName));
  index_file->set_size(fs::file_size(absl::StrCat(output, "/", kArtifactIndexName)));
  std::vector<TensorRecord> all;
  for (const auto& rs : records) all.insert(all.end(), rs.begin(), rs.end());
  const ModelTotals t = Summarize(all);
  summary.set_tensors_total(t.tensors);
  summary.set_coded_tensors(t.coded_tensors);
  summary.set_bits_per_weight(t.bits_per_weight);
  summary.set_coded_bits_per_weight(t.coded_bits_per_weight);
  summary.set_snr_db(t.snr_db);
  summary.set_db_above_rd(t.db_above_rd);
  summary.set_seconds(seconds);
  return summary;
}

absl::StatusOr<hyperc::v1::Job> RemoteClient::Submit(const std::string& input,
                                                     const CompressOptions& options,
                                                     const std::string& server_output) {
  std::vector<std::string> files;
  if (!options_.server_input) {
    HC_ASSIGN_OR_RETURN(files, UploadFiles(input));
  }
  const std::string server_path = options_.server_input ? input : "";
  grpc::ClientContext ctx;
  Prepare(&ctx, options_.stream_timeout_seconds);
  hyperc::v1::Job job;
  const grpc::internal::RpcMethod method(MethodPath("SubmitJob").c_str(), grpc::internal::RpcMethod::CLIENT_STREAMING,
                                         channel_);
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
      grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(channel_.get(), method, &ctx, &job));
  absl::Status upload_error;
  if (SendUpload(writer.get(), files, ModelName(input), server_path, server_output, options,
                 options_.chunk_bytes, &upload_error)) {
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
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE || i + 1 == attempts) return st;
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

absl::Status RemoteClient::FetchFile(const std::string& id, const std::string& file, uint64_t size,
                                     const std::string& path) {
  // Downloads into "<path>.part", resuming from its length; a part that cannot be a prefix of
  // the artifact (longer than it) is started over.
  const std::string part = path + ".part";
  absl::Status local;
  grpc::Status st = Retry(options_.attempts, [&] {
    struct stat s;
    uint64_t have = ::stat(part.c_str(), &s) == 0 ? static_cast<uint64_t>(s.st_size) : 0;
    if (have > size) {
      ::truncate(part.c_str(), 0);
      have = 0;
    }
    int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      local = absl::UnavailableError(absl::StrCat(part, ": cannot open: ", std::strerror(errno)));
      return grpc::Status::OK;
    }
    hyperc::v1::FetchArtifactRequest req;
    req.set_id(id);
    req.set_file(file);
    req.set_offset(have);
    grpc::ClientContext ctx;
    Prepare(&ctx, options_.stream_timeout_seconds);
    auto reader = stub_->FetchArtifact(&ctx, req);
    hyperc::v1::ArtifactChunk chunk;
    uint64_t next = have;
    while (reader->Read(&chunk)) {
      if (chunk.offset() != next) {
        local = absl::DataLossError(absl::StrCat(file, ": chunk at ", chunk.offset(), ", expected ", next));
        ctx.TryCancel();
        break;
      }
      const std::string& d = chunk.data();
      if (::pwrite(fd, d.data(), d.size(), static_cast<off_t>(chunk.offset())) != static_cast<ssize_t>(d.size())) {
        local = absl::UnavailableError(absl::StrCat(part, ": write failed: ", std::strerror(errno)));
        ctx.TryCancel();
        break;
      }
      next += d.size();
    }
    ::fsync(fd);
    ::close(fd);
    grpc::Status fs = reader->Finish();
    return local.ok() ? fs : grpc::Status::OK;
  });
  HC_RETURN_IF_ERROR(local);
  HC_RETURN_IF_ERROR(FromGrpc(st));
  struct stat s;
  if (::stat(part.c_str(), &s) != 0 || static_cast<uint64_t>(s.st_size) != size) {
    return absl::DataLossError(absl::StrCat(file, ": downloaded size differs from the job's ", size, " bytes"));
  }
  if (::rename(part.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat(path, ": rename failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status RemoteClient::Fetch(const std::string& id, const std::string& output) {
  HC_ASSIGN_OR_RETURN(hyperc::v1::Job job, Get(id));
  if (job.state() != hyperc::v1::Job::SUCCEEDED) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id, " is ", hyperc::v1::Job::State_Name(job.state())));
  }
  const auto& files = job.summary().files();
  if (files.size() == 1) return FetchFile(id, files[0].name(), files[0].size(), output);
  fs::create_directories(output);
  for (const auto& f : files) HC_RETURN_IF_ERROR(FetchFile(id, f.name(), f.size(), output + "/" + f.name()));
  return absl::OkStatus();
}

}  // namespace hc::client
