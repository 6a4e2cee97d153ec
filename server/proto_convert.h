// Conversions between hyperc.v1 messages and core / job-manager types.
#ifndef HC_SERVER_PROTO_CONVERT_H_
#define HC_SERVER_PROTO_CONVERT_H_

#include "core/pipeline/pipeline.h"
#include "hyperc/v1/hyperc.pb.h"
#include "server/job_manager.h"

namespace hc::server {

/// The request's options as core options (codec defaults to rtn).
CompressOptions FromProto(const hyperc::v1::CompressOptions& p);
void ToProto(const CompressOptions& o, hyperc::v1::CompressOptions* p);
void ToProto(const JobProgress& p, hyperc::v1::Progress* out);
/// Per-tensor statistics, totals, timing and files.
void ToProto(const JobSnapshot& s, hyperc::v1::Summary* out);
void ToProto(const JobSnapshot& s, hyperc::v1::Job* out);

}  // namespace hc::server

#endif  // HC_SERVER_PROTO_CONVERT_H_
