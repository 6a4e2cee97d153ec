// The hyperc server: gRPC Compressor service + health + reflection over a JobManager.
#ifndef HC_SERVER_SERVER_H_
#define HC_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/job_manager.h"
#include "server/service.h"

namespace hc::server {

/// Server options (the flags of hyperc-server).
struct ServerOptions {
  /// host:port to listen on; port 0 picks a free port (see Server::port()).
  /// Default: 127.0.0.1:50051.
  std::string listen = "127.0.0.1:50051";
  JobManagerOptions jobs;
  /// When non-empty, every call needs "authorization: Bearer <auth_token>".
  std::string auth_token;
  /// PEM files for TLS; both empty = plaintext.
  std::string tls_cert_file, tls_key_file;
  /// host:port of the Prometheus /metrics endpoint; empty = none. Default: 127.0.0.1:9464.
  std::string metrics_address = "127.0.0.1:9464";
  /// Largest gRPC message accepted (upload chunks). Default: 8 MiB.
  int max_message_bytes = 8 << 20;
  ServiceHooks hooks;

  absl::Status Validate() const;
};

/// A running server. Destroying it shuts it down.
class Server {
 public:
  /// Starts listening. Errors: InvalidArgument for bad options, Unavailable if the address
  /// cannot be bound, errors of JobManager::Create.
  static absl::StatusOr<std::unique_ptr<Server>> Start(ServerOptions options);
  ~Server();
  /// The bound port.
  int port() const;
  /// "host:port" actually bound.
  std::string address() const;
  JobManager& jobs();
  /// The bound metrics port (0 without metrics).
  int metrics_port() const;
  /// Stops accepting calls, ends open ones, stops job runners (jobs stay resumable).
  void Shutdown();
  /// Blocks until Shutdown().
  void Wait();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hc::server

#endif  // HC_SERVER_SERVER_H_
