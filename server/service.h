// The hyperc.v1.Compressor service: thin handlers that convert messages, call the JobManager
// and convert back.
#ifndef HC_SERVER_SERVICE_H_
#define HC_SERVER_SERVICE_H_

#include <functional>
#include <string>

#include "hyperc/v1/hyperc.grpc.pb.h"
#include "server/job_manager.h"

namespace hc::server {

/// Hooks for metrics and logs (all optional).
struct ServiceHooks {
  /// Called when an RPC finishes: method name and status.
  std::function<void(const std::string& method, const grpc::Status&)> on_rpc_done;
};

class CompressorService final : public hyperc::v1::Compressor::CallbackService {
 public:
  /// `jobs` must outlive the service. `auth_token`: when non-empty, every call must carry
  /// "authorization: Bearer <token>" metadata.
  CompressorService(JobManager* jobs, std::string auth_token, ServiceHooks hooks = {});

  grpc::ServerBidiReactor<hyperc::v1::CompressRequest, hyperc::v1::CompressResponse>* Compress(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerReadReactor<hyperc::v1::CompressRequest>* SubmitJob(
      grpc::CallbackServerContext* ctx, hyperc::v1::Job* response) override;
  grpc::ServerWriteReactor<hyperc::v1::Job>* WatchJob(grpc::CallbackServerContext* ctx,
                                                      const hyperc::v1::JobRef* request) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const hyperc::v1::JobRef* request,
                                   hyperc::v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const hyperc::v1::ListJobsRequest* request,
                                     hyperc::v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const hyperc::v1::JobRef* request,
                                      hyperc::v1::Job* response) override;
  grpc::ServerWriteReactor<hyperc::v1::ArtifactChunk>* FetchArtifact(
      grpc::CallbackServerContext* ctx, const hyperc::v1::FetchArtifactRequest* request) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* ctx,
                                      const hyperc::v1::JobRef* request,
                                      hyperc::v1::DeleteJobResponse* response) override;

  /// UNAUTHENTICATED unless the call carries the token (OK when no token is configured).
  grpc::Status CheckAuth(const grpc::CallbackServerContext* ctx) const;
  const ServiceHooks& hooks() const { return hooks_; }
  JobManager* jobs() const { return jobs_; }

 private:
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const char* method,
                                  const std::function<absl::Status()>& body);
  JobManager* jobs_;
  std::string auth_token_;
  ServiceHooks hooks_;
};

}  // namespace hc::server

#endif  // HC_SERVER_SERVICE_H_
