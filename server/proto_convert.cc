#include "server/proto_convert.h"

#include <map>

#include "absl/strings/str_cat.h"

namespace hc::server {

CompressOptions FromProto(const hyperc::v1::CompressOptions& p) {
  CompressOptions o;
  o.codec = p.codec().empty() ? "rtn" : p.codec();
  // Sorted keys: the options' order never depends on the map's iteration order.
  std::map<std::string, std::string> kv(p.codec_options().begin(), p.codec_options().end());
  for (const auto& [k, v] : kv) o.codec_options.Set(k, v);
  for (const std::string& s : p.skip()) o.skip.push_back(s);
  o.target_bpw = p.target_bpw();
  for (const std::string& s : p.overrides()) o.overrides.push_back(s);
  return o;
}

void ToProto(const CompressOptions& o, hyperc::v1::CompressOptions* p) {
  p->set_codec(o.codec);
  for (const auto& [k, v] : o.codec_options.items()) (*p->mutable_codec_options())[k] = v;
  for (const std::string& s : o.skip) p->add_skip(s);
  p->set_target_bpw(o.target_bpw);
  for (const std::string& s : o.overrides) p->add_overrides(s);
}

void ToProto(const JobProgress& p, hyperc::v1::Progress* out) {
  out->set_tensors_done(p.tensors_done);
  out->set_tensors_total(p.tensors_total);
  out->set_bytes_received(p.bytes_received);
  out->set_bytes_total(p.bytes_total);
  out->set_bytes_done(p.bytes_done);
  out->set_fraction(p.fraction);
  out->set_eta_seconds(p.eta_seconds);
  out->set_tensor(p.tensor);
}

void ToProto(const JobSnapshot& s, hyperc::v1::Summary* out) {
  for (const TensorRecord& r : s.tensors) {
    auto* t = out->add_tensors();
    t->set_name(r.name);
    t->set_dtype(std::string(DTypeName(r.dtype)));
    for (int64_t d : r.shape) t->add_shape(d);
    t->set_codec(r.codec);
    t->set_raw_reason(r.raw_reason);
    t->set_numel(r.numel);
    t->set_stored_bytes(r.stats.stored_bytes);
    t->set_bits_per_weight(r.stats.bits_per_weight);
    t->set_mae(r.stats.mae);
    t->set_rel_mse(r.stats.rel_mse);
    t->set_snr_db(r.stats.snr_db);
    t->set_db_above_rd(r.stats.db_above_rd);
  }
  const ModelTotals t = Summarize(s.tensors);
  out->set_tensors_total(t.tensors);
  out->set_coded_tensors(t.coded_tensors);
  out->set_bits_per_weight(t.bits_per_weight);
  out->set_coded_bits_per_weight(t.coded_bits_per_weight);
  out->set_snr_db(t.snr_db);
  out->set_db_above_rd(t.db_above_rd);
  out->set_seconds(s.seconds);
  for (const auto& [name, size] : s.files) {
    auto* f = out->add_files();
    f->set_name(name);
    f->set_size(size);
  }
}

void ToProto(const JobSnapshot& s, hyperc::v1::Job* out) {
  out->set_id(s.id);
  out->set_model_name(s.request.model_name);
  out->set_server_path(s.request.server_path);
  out->set_server_output_path(s.request.output_path);
  switch (s.state) {
    case JobState::kQueued: out->set_state(hyperc::v1::Job::QUEUED); break;
    case JobState::kRunning: out->set_state(hyperc::v1::Job::RUNNING); break;
    case JobState::kSucceeded: out->set_state(hyperc::v1::Job::SUCCEEDED); break;
    case JobState::kFailed: out->set_state(hyperc::v1::Job::FAILED); break;
    case JobState::kCancelled: out->set_state(hyperc::v1::Job::CANCELLED); break;
  }
  ToProto(s.request.options, out->mutable_options());
  ToProto(s.progress, out->mutable_progress());
  if (!s.error.ok()) {
    out->set_error(absl::StrCat(absl::StatusCodeToString(s.error.code()), ": ", s.error.message()));
  }
  if (s.state == JobState::kSucceeded) ToProto(s, out->mutable_summary());
  out->set_created_unix(s.created_unix);
  out->set_finished_unix(s.finished_unix);
}

}  // namespace hc::server
