// absl::Status <-> grpc::Status. The numeric codes are the same by design; static_asserts in
// the .cc keep it so.
#ifndef HC_SERVER_GRPC_STATUS_H_
#define HC_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace hc::server {

grpc::Status ToGrpcStatus(const absl::Status& s);
absl::Status FromGrpcStatus(const grpc::Status& s);

}  // namespace hc::server

#endif  // HC_SERVER_GRPC_STATUS_H_
