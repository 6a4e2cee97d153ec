// The C++ client of hyperc-server. Returns StatusOr, sets a deadline on every call, retries
// idempotent calls with backoff, never prints.
#ifndef HC_CLIENT_REMOTE_CLIENT_H_
#define HC_CLIENT_REMOTE_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/pipeline/pipeline.h"
#include "hyperc/v1/hyperc.grpc.pb.h"

namespace hc::client {

/// How to reach the server.
struct RemoteOptions {
  /// The server: "host:port"; several as "h1:p1,h2:p2"; or a gRPC target such as
  /// "dns:///name:port" whose records are used round-robin. With several servers (or a DNS
  /// name) the shards of a sharded model are compressed in parallel, one Compress call per
  /// shard spread over them; job calls go to the first address. Required.
  std::string server;
  /// Bearer token sent as "authorization" metadata; empty = none.
  std::string token;
  /// PEM file of the CA that signed the server's certificate; empty = plaintext.
  std::string tls_ca_file;
  /// Deadline of a whole Compress/Submit/Watch/Fetch call, seconds. Default: 24 h.
  double stream_timeout_seconds = 24 * 3600;
  /// Deadline of a unary call, seconds. Default: 60.
  double unary_timeout_seconds = 60;
  /// Attempts of an idempotent call (Get, List, Fetch) on UNAVAILABLE. Default: 4.
  int attempts = 4;
  /// Upload chunk size in bytes, at most 4 MiB. Default: 4 MiB (fewer, larger messages: the
  /// upload is sent from the mapped file without a copy, so a message costs its count, not
  /// its size).
  size_t chunk_bytes = 4 << 20;
  /// The `input` of Compress and Submit is a path on the server's filesystem (sent as
  /// Start.server_path; the server must allow its directory with --input-root): nothing is
  /// uploaded, and a sharded model is one call. It must be absolute. Default: false.
  bool server_input = false;
  /// The `output` of Compress is a path on the server's filesystem (Start.server_output_path;
  /// the server must allow its directory with --output-root), written there by the server:
  /// nothing is sent back. It must be absolute. Default: false.
  bool server_output = false;

  absl::Status Validate() const;
};

/// Progress from the server, in order.
using RemoteProgress = std::function<void(const hyperc::v1::Progress&)>;

class RemoteClient {
 public:
  static absl::StatusOr<std::unique_ptr<RemoteClient>> Connect(RemoteOptions options);

  /// Compresses `input` (a .safetensors file or a shard index) on the server and writes the
  /// artifact to `output` (a file; a directory for a sharded input), atomically. The artifact
  /// is byte-identical to local mode with the same options. Returns the server's summary (for
  /// a model spread over several servers: the combined summary).
  absl::StatusOr<hyperc::v1::Summary> Compress(const std::string& input, const std::string& output,
                                               const CompressOptions& options,
                                               const RemoteProgress& progress = {});
  /// Uploads `input` as a job and returns it (running in the background on the server).
  /// `server_output`, when non-empty, is the job's Start.server_output_path (absolute).
  absl::StatusOr<hyperc::v1::Job> Submit(const std::string& input, const CompressOptions& options,
                                         const std::string& server_output = "");
  absl::StatusOr<hyperc::v1::Job> Get(const std::string& id);
  absl::StatusOr<std::vector<hyperc::v1::Job>> List();
  absl::StatusOr<hyperc::v1::Job> Cancel(const std::string& id);
  absl::Status Delete(const std::string& id);
  /// Follows a job until it ends; `on_update` sees every state. Returns the final job.
  absl::StatusOr<hyperc::v1::Job> Watch(const std::string& id,
                                        const std::function<void(const hyperc::v1::Job&)>& on_update = {});
  /// Downloads a succeeded job's artifact to `output` (file, or directory for several files).
  /// A partial download left at `output`.part resumes from its size.
  absl::Status Fetch(const std::string& id, const std::string& output);

 private:
  explicit RemoteClient(RemoteOptions o) : options_(std::move(o)) {}
  void Prepare(grpc::ClientContext* ctx, double timeout) const;
  absl::StatusOr<hyperc::v1::Summary> CompressOne(const std::shared_ptr<grpc::Channel>& channel,
                                                  const std::string& input, const std::string& output,
                                                  bool directory, const CompressOptions& options,
                                                  const RemoteProgress& progress);
  absl::StatusOr<hyperc::v1::Summary> CompressSpread(const std::string& index, const std::string& output,
                                                     const CompressOptions& options,
                                                     const RemoteProgress& progress);
  absl::Status FetchFile(const std::string& id, const std::string& file, uint64_t size,
                         const std::string& path);
  RemoteOptions options_;
  std::shared_ptr<grpc::Channel> channel_;               // the first server (pick_first)
  std::unique_ptr<hyperc::v1::Compressor::Stub> stub_;  // over channel_
  std::vector<std::shared_ptr<grpc::Channel>> spread_;  // every server
  bool round_robin_ = false;  // a resolver target: one channel balancing over its records
};

}  // namespace hc::client

#endif  // HC_CLIENT_REMOTE_CLIENT_H_
