// Persistence of jobs: job.json (sealed with a CRC-32C), per-tensor checkpoints, and the
// restore of every job at start-up (see JobManager in job_manager.h).
#include <ctime>
#include <filesystem>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/base/crc32c.h"
#include "core/base/json.h"
#include "core/base/status_macros.h"
#include "core/format/artifact.h"
#include "core/io/safetensors_file.h"
#include "server/job_internal.h"
#include "server/job_manager.h"

namespace hc::server {
namespace fs = std::filesystem;

namespace internal {

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

JsonValue OptionsJson(const CompressOptions& o) {
  JsonValue kv = JsonValue::Object();
  for (const auto& [k, v] : o.codec_options.items()) kv.Add(k, JsonValue::String(v));
  JsonValue skip = JsonValue::Array();
  for (const std::string& s : o.skip) skip.Push(JsonValue::String(s));
  JsonValue overrides = JsonValue::Array();
  for (const std::string& s : o.overrides) overrides.Push(JsonValue::String(s));
  return JsonValue::Object()
      .Add("codec", JsonValue::String(o.codec))
      .Add("codec_options", std::move(kv))
      .Add("skip", std::move(skip))
      .Add("target_bpw", JsonValue::Number(o.target_bpw))
      .Add("overrides", std::move(overrides));
}

CompressOptions OptionsFromJson(const JsonValue& j) {
  CompressOptions o;
  if (const JsonValue* c = j.Find("codec"); c && c->is_string()) o.codec = c->string_value();
  if (const JsonValue* kv = j.Find("codec_options"); kv && kv->is_object()) {
    for (const auto& [k, v] : kv->members()) o.codec_options.Set(k, v.string_value());
  }
  if (const JsonValue* s = j.Find("skip"); s && s->is_array()) {
    for (const JsonValue& r : s->items()) o.skip.push_back(r.string_value());
  }
  if (const JsonValue* t = j.Find("target_bpw"); t && t->is_number()) o.target_bpw = t->number();
  if (const JsonValue* s = j.Find("overrides"); s && s->is_array()) {
    for (const JsonValue& r : s->items()) o.overrides.push_back(r.string_value());
  }
  return o;
}

std::string EncodeCheckpoint(const TensorCompressor::Result& r) {
  const std::string json = TensorRecordToJson(r.record).Dump();
  std::string out = "HCK1";
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((json.size() >> (8 * i)) & 0xff));
  out += json;
  for (const EncodedPart& p : r.parts) out.append(reinterpret_cast<const char*>(p.bytes.data()), p.bytes.size());
  return out;
}

absl::StatusOr<TensorCompressor::Result> DecodeCheckpoint(const std::string& bytes, const TensorInfo& t) {
  auto bad = absl::DataLossError("bad checkpoint");
  if (bytes.size() < 8 || bytes.compare(0, 4, "HCK1") != 0) return bad;
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[4 + i])) << (8 * i);
  if (n > bytes.size() - 8) return bad;
  auto j = ParseJson(absl::string_view(bytes).substr(8, n));
  if (!j.ok()) return bad;
  HC_ASSIGN_OR_RETURN(TensorRecord rec, TensorRecordFromJson(*j));
  if (rec.name != t.name || rec.dtype != t.dtype || rec.shape != t.shape) return bad;
  TensorCompressor::Result r;
  size_t off = 8 + n;
  if (rec.codec != kRawCodec) {
    for (const StoredPart& p : rec.parts) {
      if (p.nbytes > bytes.size() - off) return bad;
      EncodedPart e{p.suffix, p.dtype, p.shape,
                    std::vector<uint8_t>(bytes.begin() + off, bytes.begin() + off + p.nbytes)};
      if (Crc32c(0, e.bytes) != p.crc32c) return bad;
      off += p.nbytes;
      r.parts.push_back(std::move(e));
    }
  }
  if (off != bytes.size()) return bad;
  r.record = std::move(rec);
  return r;
}

}  // namespace internal

using internal::NowUnix;
using internal::OptionsFromJson;
using internal::OptionsJson;

absl::Status JobManager::Persist(const Job& job) const {
  if (job.snap.request.ephemeral) return absl::OkStatus();
  JsonValue files = JsonValue::Array();
  for (const auto& f : job.files) {
    JsonValue o = JsonValue::Object()
                      .Add("name", JsonValue::String(f.name))
                      .Add("size", JsonValue::Int(static_cast<int64_t>(f.size)));
    if (!f.source.empty()) {
      o.Add("source", JsonValue::String(f.source)).Add("mtime_ns", JsonValue::Int(f.mtime_ns));
    }
    files.Push(std::move(o));
  }
  JsonValue artifact = JsonValue::Array();
  for (const auto& a : job.artifact_files) artifact.Push(JsonValue::String(a));
  JsonValue j = JsonValue::Object()
                    .Add("id", JsonValue::String(job.snap.id))
                    .Add("model_name", JsonValue::String(job.snap.request.model_name))
                    .Add("server_path", JsonValue::String(job.snap.request.server_path))
                    .Add("output_path", JsonValue::String(job.snap.request.output_path))
                    .Add("options", OptionsJson(job.snap.request.options))
                    .Add("state", JsonValue::String(std::string(JobStateName(job.snap.state))))
                    .Add("error_code", JsonValue::Int(static_cast<int>(job.snap.error.code())))
                    .Add("error", JsonValue::String(std::string(job.snap.error.message())))
                    .Add("created", JsonValue::Int(job.snap.created_unix))
                    .Add("finished", JsonValue::Int(job.snap.finished_unix))
                    .Add("seconds", JsonValue::Number(job.snap.seconds))
                    .Add("upload_complete", JsonValue::Bool(job.upload_done))
                    .Add("files", std::move(files))
                    .Add("artifact", std::move(artifact));
  // The state is sealed with a CRC-32C of its compact text, so a damaged file is recognised.
  const std::string text = j.Dump();
  const uint32_t crc = Crc32c(0, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  return WriteFileAtomically(job.dir + "/job.json",
                             absl::StrCat("{\"crc32c\":", crc, ",\"job\":", text, "}\n"), options_.sync);
}

namespace {

// The job state stored in job.json, checked: its CRC-32C, then every field's type.
struct StoredJob {
  JsonValue j;
  const std::string& Str(absl::string_view k) const { return j.Find(k)->string_value(); }
};

absl::StatusOr<StoredJob> LoadJobState(const std::string& text) {
  auto bad = [](absl::string_view why) { return absl::DataLossError(why); };
  auto outer = ParseJson(text);
  if (!outer.ok()) return bad(outer.status().message());
  const JsonValue* crc = outer->Find("crc32c");
  const JsonValue* job = outer->Find("job");
  if (crc == nullptr || job == nullptr || !job->is_object() || !crc->as_uint64()) return bad("no sealed state");
  const std::string inner = job->Dump();
  if (Crc32c(0, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(inner.data()), inner.size())) != *crc->as_uint64()) {
    return bad("checksum mismatch");
  }
  for (const char* k : {"id", "model_name", "state", "error"}) {
    if (job->Find(k) == nullptr || !job->Find(k)->is_string()) return bad(absl::StrCat("field ", k));
  }
  for (const char* k : {"created", "finished", "error_code"}) {
    if (job->Find(k) == nullptr || !job->Find(k)->as_int64()) return bad(absl::StrCat("field ", k));
  }
  if (job->Find("seconds") == nullptr || !job->Find("seconds")->is_number()) return bad("field seconds");
  if (job->Find("upload_complete") == nullptr || !job->Find("upload_complete")->is_bool()) return bad("field upload_complete");
  if (job->Find("options") == nullptr || !job->Find("options")->is_object()) return bad("field options");
  for (const char* k : {"files", "artifact"}) {
    if (job->Find(k) == nullptr || !job->Find(k)->is_array()) return bad(absl::StrCat("field ", k));
  }
  for (const JsonValue& f : job->Find("files")->items()) {
    if (f.Find("name") == nullptr || !f.Find("name")->is_string() || f.Find("size") == nullptr ||
        !f.Find("size")->as_uint64()) {
      return bad("field files");
    }
    // A server_path job's files (absent in state written before server_path existed).
    if (f.Find("source") != nullptr &&
        (!f.Find("source")->is_string() || f.Find("mtime_ns") == nullptr ||
         !f.Find("mtime_ns")->as_int64())) {
      return bad("field files.source");
    }
  }
  for (const JsonValue& a : job->Find("artifact")->items()) {
    if (!a.is_string() || a.string_value().empty() || a.string_value().find('/') != std::string::npos) {
      return bad("field artifact");
    }
  }
  return StoredJob{*job};
}

}  // namespace

absl::Status JobManager::Restore() {
  const fs::path root = fs::path(options_.spool_dir) / "jobs";
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string dir = entry.path().string();
    if (!fs::exists(dir + "/job.json")) {
      // An ephemeral job, or an upload that never completed: nothing to resume.
      fs::remove_all(entry.path());
      continue;
    }
    auto job = std::make_shared<Job>();
    job->dir = dir;
    auto text = ReadFileToString(dir + "/job.json", 1 << 26);
    auto stored = text.ok() ? LoadJobState(*text) : absl::StatusOr<StoredJob>(text.status());
    // A damaged state file: the job is kept, FAILED with the reason, and its data discarded.
    bool corrupt = false;
    auto fail_corrupt = [&](const std::string& what) {
      corrupt = true;
      job->snap.state = JobState::kFailed;
      job->snap.error = absl::DataLossError(what);
      job->snap.finished_unix = NowUnix();
      job->upload_done = true;
      job->artifact_files.clear();
      job->files.clear();
      std::error_code ec;
      fs::remove_all(dir + "/upload", ec);
      fs::remove_all(dir + "/done", ec);
      fs::remove_all(dir + "/artifact", ec);
      Log(absl::StrCat("job ", job->snap.id, " FAILED at restart: ", what));
    };
    if (!stored.ok()) {
      job->snap.id = entry.path().filename().string();
      fail_corrupt(absl::StrCat("the job's state in the spool is corrupt (", stored.status().message(),
                                "); its data was discarded"));
    } else {
      const StoredJob& sj = *stored;
      job->snap.id = sj.Str("id");
      job->snap.request.model_name = sj.Str("model_name");
      if (const JsonValue* sp = sj.j.Find("server_path"); sp != nullptr && sp->is_string()) {
        job->snap.request.server_path = sp->string_value();
      }
      if (const JsonValue* op = sj.j.Find("output_path"); op != nullptr && op->is_string()) {
        job->snap.request.output_path = op->string_value();
      }
      job->snap.request.options = OptionsFromJson(*sj.j.Find("options"));
      job->snap.created_unix = *sj.j.Find("created")->as_int64();
      job->snap.finished_unix = *sj.j.Find("finished")->as_int64();
      job->snap.seconds = sj.j.Find("seconds")->number();
      job->upload_done = sj.j.Find("upload_complete")->bool_value();
      if (!job->upload_done) {
        fs::remove_all(entry.path());
        continue;
      }
      for (const JsonValue& f : sj.j.Find("files")->items()) {
        const uint64_t size = *f.Find("size")->as_uint64();
        Job::File file;
        file.name = f.Find("name")->string_value();
        file.size = file.received = size;
        if (const JsonValue* src = f.Find("source")) {
          file.source = src->string_value();
          file.mtime_ns = *f.Find("mtime_ns")->as_int64();
        }
        job->files.push_back(std::move(file));
        job->snap.progress.bytes_total += size;
      }
      job->snap.progress.bytes_received = job->snap.progress.bytes_total;
      for (const JsonValue& a : sj.j.Find("artifact")->items()) job->artifact_files.push_back(a.string_value());
      const std::string& state = sj.Str("state");
      if (state == "SUCCEEDED") {
        // The artifact must still be sound (container, metadata checksum, records).
        absl::StatusOr<RunSummary> inspected = absl::DataLossError("no artifact file recorded");
        if (!job->artifact_files.empty()) {
          const std::string first = FinalArtifactPath(*job, job->artifact_files.front());
          inspected = InspectArtifact(
              job->artifact_files.size() > 1 ? fs::path(first).parent_path().string() : first);
        }
        if (inspected.ok()) {
          job->snap.state = JobState::kSucceeded;
          job->snap.tensors = inspected->tensors;
          job->snap.progress.fraction = 1;
          for (const std::string& a : job->artifact_files) {
            std::error_code ec;
            job->snap.files.emplace_back(a, fs::file_size(FinalArtifactPath(*job, a), ec));
          }
        } else {
          fail_corrupt(absl::StrCat(
              "the job's artifact ",
              job->snap.request.output_path.empty()
                  ? "in the spool is corrupt"
                  : absl::StrCat("at ", job->snap.request.output_path, " is missing or corrupt"),
              " (", inspected.status().message(), ")"));
        }
      } else if (state == "FAILED" || state == "CANCELLED") {
        job->snap.state = state == "FAILED" ? JobState::kFailed : JobState::kCancelled;
        job->snap.error = absl::Status(static_cast<absl::StatusCode>(*sj.j.Find("error_code")->as_int64()), sj.Str("error"));
      } else {
        job->snap.state = JobState::kQueued;  // resume
        pending_.push_back(job->snap.id);
        Log(absl::StrCat("job ", job->snap.id, " resumed after restart"));
      }
    }
    job->persisted_state = job->snap.state;
    job->persisted_once = true;
    if (corrupt) {
      if (absl::Status p = Persist(*job); !p.ok()) Log(absl::StrCat("job ", job->snap.id, ": ", p.message()));
    }
    jobs_.emplace(job->snap.id, job);
  }
  return absl::OkStatus();
}

}  // namespace hc::server
