#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "server/metrics.h"

namespace hc::server {

struct Server::Impl {
  ServerOptions options;
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<JobManager> jobs;
  std::unique_ptr<CompressorService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string host;
  std::once_flag shutdown_once;
};

absl::Status ServerOptions::Validate() const {
  if (listen.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--listen \"", listen, "\" needs host:port"));
  }
  if (tls_cert_file.empty() != tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (max_message_bytes < (1 << 20)) return absl::InvalidArgumentError("max message size must be >= 1 MiB");
  return jobs.Validate();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerOptions options) {
  HC_RETURN_IF_ERROR(options.Validate());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (!options.metrics_address.empty()) {
    HC_ASSIGN_OR_RETURN(impl->metrics, Metrics::Start(options.metrics_address));
    JobObserver mo = impl->metrics->Observer();
    JobObserver& o = options.jobs.observer;
    // Chain with observers the caller installed.
    auto chain = [](auto a, auto b) {
      return [a, b](const auto&... args) {
        if (a) a(args...);
        if (b) b(args...);
      };
    };
    o.on_tensor = chain(o.on_tensor, mo.on_tensor);
    o.on_job_change = chain(o.on_job_change, mo.on_job_change);
    o.on_job_deleted = chain(o.on_job_deleted, mo.on_job_deleted);
    ServiceHooks mh = impl->metrics->Hooks();
    options.hooks.on_rpc_done = chain(options.hooks.on_rpc_done, mh.on_rpc_done);
  }
  HC_ASSIGN_OR_RETURN(impl->jobs, JobManager::Create(options.jobs));
  if (impl->metrics) impl->metrics->Follow(impl->jobs.get());
  impl->service = std::make_unique<CompressorService>(impl->jobs.get(), options.auth_token, options.hooks);

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty()) {
    HC_ASSIGN_OR_RETURN(std::string cert, ReadFileToString(options.tls_cert_file, 1 << 20));
    HC_ASSIGN_OR_RETURN(std::string key, ReadFileToString(options.tls_key_file, 1 << 20));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, creds, &impl->port);
  builder.RegisterService(impl->service.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  impl->host = options.listen.substr(0, options.listen.rfind(':'));
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->port; }
int Server::metrics_port() const { return impl_->metrics ? impl_->metrics->port() : 0; }
std::string Server::address() const { return absl::StrCat(impl_->host, ":", impl_->port); }
JobManager& Server::jobs() { return *impl_->jobs; }

void Server::Shutdown() {
  if (impl_ == nullptr) return;
  std::call_once(impl_->shutdown_once, [this] {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    impl_->metrics.reset();  // stops reading the job manager before it goes
    impl_->jobs.reset();
  });
}

void Server::Wait() { impl_->server->Wait(); }

}  // namespace hc::server
