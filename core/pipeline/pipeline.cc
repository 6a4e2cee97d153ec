#include "core/pipeline/pipeline.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/safetensors_writer.h"
#include "core/io/shard_index.h"
#include "core/pipeline/file_compressor.h"
#include "core/pipeline/tbb_executor.h"

namespace hc {
namespace {

constexpr absl::string_view kIndexFormatName = "hyperc-artifact-index";

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The inputs of a run: one file, or every shard of an index (checked against its weight map).
struct ModelInput {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::vector<std::string> names;  // shard file names (for a single file: its base name)
  bool sharded = false;
  ShardIndex index;
};

absl::StatusOr<ModelInput> OpenModel(const std::string& path) {
  ModelInput in;
  if (!IsShardIndexPath(path)) {
    HC_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(path));
    in.files.push_back(std::move(f));
    in.names.push_back(BaseName(path));
    return in;
  }
  in.sharded = true;
  HC_ASSIGN_OR_RETURN(in.index, ReadShardIndex(path));
  std::vector<const SafetensorsHeader*> headers;
  for (size_t i = 0; i < in.index.shards.size(); ++i) {
    HC_ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(in.index.ShardPath(i)));
    headers.push_back(&f->header());
    in.files.push_back(std::move(f));
    in.names.push_back(in.index.shards[i]);
  }
  HC_RETURN_IF_ERROR(CheckShardsMatchIndex(in.index, headers));
  return in;
}


// Removes outputs of a failed run; the directory too if this run created it.
class OutputGuard {
 public:
  void AddFile(std::string p) { files_.push_back(std::move(p)); }
  void SetCreatedDir(std::string d) { dir_ = std::move(d); }
  void Commit() { committed_ = true; }
  ~OutputGuard() {
    if (committed_) return;
    for (const std::string& f : files_) ::unlink(f.c_str());
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }

 private:
  std::vector<std::string> files_;
  std::string dir_;
  bool committed_ = false;
};

absl::Status PrepareOutputDir(const std::string& dir, OutputGuard* guard) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": exists and is not a directory"));
    }
    return absl::OkStatus();
  }
  if (::mkdir(dir.c_str(), 0755) != 0) {
    return absl::UnavailableError(absl::StrCat(dir, ": cannot create directory: ", std::strerror(errno)));
  }
  guard->SetCreatedDir(dir);
  return absl::OkStatus();
}

}  // namespace

std::string ArtifactShardName(const std::string& source_name) {
  std::string stem = source_name;
  if (absl::EndsWith(stem, ".safetensors")) stem.resize(stem.size() - 12);
  return stem + ".hyc.safetensors";
}

absl::Status CheckShardsMatchIndex(const ShardIndex& index,
                                   absl::Span<const SafetensorsHeader* const> headers) {
  std::unordered_map<std::string, std::string> expected(index.weight_map.begin(),
                                                        index.weight_map.end());
  uint64_t seen = 0;
  for (size_t i = 0; i < headers.size(); ++i) {
    for (const TensorInfo& t : headers[i]->tensors) {
      auto it = expected.find(t.name);
      if (it == expected.end() || it->second != index.shards[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            index.path, ": tensor \"", t.name, "\" is in shard ", index.shards[i],
            it == expected.end() ? " but not in the weight map"
                                 : absl::StrCat(" but the weight map says ", it->second)));
      }
      ++seen;
    }
  }
  if (seen != expected.size()) {
    return absl::InvalidArgumentError(absl::StrCat(index.path, ": the weight map lists ",
                                                   expected.size(), " tensors but the shards hold ", seen));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> WriteArtifactIndex(const std::string& dir,
                                               const std::string& source_index_name,
                                               const JsonValue& source_index_metadata,
                                               absl::Span<const std::string> source_shards,
                                               absl::Span<const std::vector<TensorRecord>> records,
                                               bool sync) {
  JsonValue shards = JsonValue::Array();
  std::vector<std::pair<std::string, std::string>> weight_map;
  uint64_t total = 0;
  for (size_t i = 0; i < source_shards.size(); ++i) {
    const std::string name = ArtifactShardName(source_shards[i]);
    for (const TensorRecord& r : records[i]) {
      total += r.stats.stored_bytes;
      for (const StoredPart& p : r.parts) weight_map.emplace_back(r.StoredName(p), name);
    }
    shards.Push(JsonValue::Object()
                    .Add("artifact", JsonValue::String(name))
                    .Add("source", JsonValue::String(source_shards[i])));
  }
  JsonValue meta =
      JsonValue::Object()
          .Add(std::string(kFormatKey), JsonValue::String(std::string(kIndexFormatName)))
          .Add(std::string(kVersionKey), JsonValue::String(absl::StrCat(kArtifactFormatVersion)))
          .Add("total_size", JsonValue::Int(static_cast<int64_t>(total)))
          .Add("source_index", JsonValue::String(source_index_name))
          .Add("source_metadata",
               source_index_metadata.is_null() ? JsonValue::Object() : source_index_metadata);
  JsonValue wm = JsonValue::Object();
  for (auto& [t, f] : weight_map) wm.Add(t, JsonValue::String(f));
  JsonValue root = JsonValue::Object()
                       .Add("metadata", std::move(meta))
                       .Add("weight_map", std::move(wm))
                       .Add("shards", std::move(shards));
  const std::string path = absl::StrCat(dir, "/", kArtifactIndexName);
  HC_RETURN_IF_ERROR(WriteFileAtomically(path, root.Dump() + "\n", sync));
  return path;
}

namespace {

class ProgressTracker {
 public:
  ProgressTracker(const ProgressCallback& cb, uint64_t tensors, uint64_t bytes) : cb_(cb) {
    p_.tensors_total = tensors;
    p_.bytes_total = bytes;
  }
  void Done(const std::string& name, uint64_t bytes) {
    ++p_.tensors_done;
    p_.bytes_done += bytes;
    p_.elapsed_seconds = Since(t0_);
    p_.eta_seconds = p_.bytes_done > 0 && p_.bytes_done < p_.bytes_total
                         ? p_.elapsed_seconds * static_cast<double>(p_.bytes_total - p_.bytes_done) /
                               static_cast<double>(p_.bytes_done)
                         : 0.0;
    p_.tensor = name;
    if (cb_) cb_(p_);
  }
  double elapsed() const { return Since(t0_); }

 private:
  const ProgressCallback& cb_;
  Progress p_;
  Clock::time_point t0_ = Clock::now();
};

absl::Status CheckCancel(const std::atomic<bool>* cancel) {
  if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
    return absl::CancelledError("cancelled");
  }
  return absl::OkStatus();
}

// Compresses one input file into one artifact file: tensors in file order through a
// FileCompressor (which bounds the bytes in flight); each tensor's input pages are handed back
// to the kernel as soon as it is encoded.
absl::Status CompressFile(const SafetensorsFile& in, const std::string& out_path,
                          const TensorCompressor& compressor, const CompressOptions& options,
                          TbbExecutor& executor, ProgressTracker& progress,
                          const std::atomic<bool>* cancel, std::vector<TensorRecord>* records) {
  FileCompressor::Options fopt;
  fopt.memory_budget = options.memory_budget;
  fopt.release_keeps_data = true;  // SafetensorsFile::Release drops mapped pages only
  fopt.sync = options.sync;
  fopt.cancel = cancel;
  HC_ASSIGN_OR_RETURN(
      auto fc, FileCompressor::Create(compressor, executor, in.header(), in.path(), out_path, fopt,
                                      [&](const TensorRecord& r, uint64_t bytes, double) {
                                        progress.Done(r.name, bytes);
                                      }));
  for (size_t i = 0; i < in.header().tensors.size(); ++i) {
    HC_RETURN_IF_ERROR(CheckCancel(cancel));
    HC_RETURN_IF_ERROR(fc->Add(in.TensorData(i), [&in, i] { in.Release(i); }));
  }
  HC_RETURN_IF_ERROR(CheckCancel(cancel));
  HC_ASSIGN_OR_RETURN(std::vector<TensorRecord> recs, fc->Finish());
  for (TensorRecord& r : recs) records->push_back(std::move(r));
  return absl::OkStatus();
}

// Resolves an artifact argument to (artifact files, source names, index JSON or null).
struct ArtifactSet {
  std::vector<std::string> files;
  std::vector<std::string> source_names;
  bool sharded = false;
  std::string source_index_name;
  JsonValue source_index_metadata;
};

absl::StatusOr<ArtifactSet> ResolveArtifact(const std::string& path) {
  ArtifactSet set;
  std::string index_path = path;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    index_path = absl::StrCat(path, "/", kArtifactIndexName);
  } else if (!IsShardIndexPath(path)) {
    set.files.push_back(path);
    set.source_names.push_back(BaseName(path));
    return set;
  }
  set.sharded = true;
  HC_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path, uint64_t{256} << 20));
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", what));
  };
  auto j = ParseJson(text);
  if (!j.ok()) return bad(j.status().message());
  const JsonValue* meta = j->Find("metadata");
  const JsonValue* fmt = meta ? meta->Find(kFormatKey) : nullptr;
  if (fmt == nullptr || !fmt->is_string() || fmt->string_value() != kIndexFormatName) {
    return bad("not a hyperc artifact index");
  }
  const JsonValue* shards = j->Find("shards");
  if (shards == nullptr || !shards->is_array() || shards->items().empty()) return bad("no shards");
  const std::string dir = DirName(index_path);
  for (const JsonValue& s : shards->items()) {
    const JsonValue* a = s.Find("artifact");
    const JsonValue* src = s.Find("source");
    if (!a || !a->is_string() || !src || !src->is_string() ||
        absl::StrContains(a->string_value(), "/") || absl::StrContains(src->string_value(), "/") ||
        a->string_value().empty() || src->string_value().empty()) {
      return bad("a shard entry needs plain \"artifact\" and \"source\" file names");
    }
    set.files.push_back(absl::StrCat(dir, "/", a->string_value()));
    set.source_names.push_back(src->string_value());
  }
  if (const JsonValue* n = meta->Find("source_index"); n && n->is_string()) {
    set.source_index_name = n->string_value();
  }
  if (set.source_index_name.empty() || absl::StrContains(set.source_index_name, "/")) {
    set.source_index_name = "model.safetensors.index.json";
  }
  if (const JsonValue* m = meta->Find("source_metadata")) set.source_index_metadata = *m;
  return set;
}

}  // namespace

absl::StatusOr<RunSummary> CompressModel(const std::string& input, const std::string& output,
                                         const CompressOptions& options,
                                         const ProgressCallback& progress_cb,
                                         const std::atomic<bool>* cancel) {
  HC_ASSIGN_OR_RETURN(auto compressor, TensorCompressor::Create(options));
  HC_ASSIGN_OR_RETURN(ModelInput in, OpenModel(input));
  uint64_t tensors = 0, bytes = 0;
  std::vector<TensorInfo> all;
  for (const auto& f : in.files) {
    tensors += f->header().tensors.size();
    bytes += f->header().data_bytes;
    all.insert(all.end(), f->header().tensors.begin(), f->header().tensors.end());
  }
  HC_RETURN_IF_ERROR(compressor->Plan(all));
  TbbExecutor executor(options.threads);
  ProgressTracker progress(progress_cb, tensors, bytes);
  RunSummary summary;
  OutputGuard guard;
  if (!in.sharded) {
    guard.AddFile(output);
    HC_RETURN_IF_ERROR(CompressFile(*in.files[0], output, *compressor, options, executor, progress,
                                    cancel, &summary.tensors));
    summary.outputs.push_back(output);
  } else {
    HC_RETURN_IF_ERROR(PrepareOutputDir(output, &guard));
    std::vector<std::vector<TensorRecord>> per_shard(in.files.size());
    for (size_t i = 0; i < in.files.size(); ++i) {
      const std::string path = absl::StrCat(output, "/", ArtifactShardName(in.names[i]));
      guard.AddFile(path);
      HC_RETURN_IF_ERROR(CompressFile(*in.files[i], path, *compressor, options, executor, progress,
                                      cancel, &per_shard[i]));
      summary.tensors.insert(summary.tensors.end(), per_shard[i].begin(), per_shard[i].end());
      summary.outputs.push_back(path);
    }
    guard.AddFile(absl::StrCat(output, "/", kArtifactIndexName));
    HC_ASSIGN_OR_RETURN(std::string index_path,
                        WriteArtifactIndex(output, BaseName(input), in.index.metadata, in.names,
                                           per_shard, options.sync));
    summary.outputs.push_back(index_path);
  }
  guard.Commit();
  summary.seconds = progress.elapsed();
  summary.totals = Summarize(summary.tensors);
  return summary;
}

absl::StatusOr<std::vector<std::string>> ResolveArtifactFiles(const std::string& artifact) {
  HC_ASSIGN_OR_RETURN(ArtifactSet set, ResolveArtifact(artifact));
  return std::move(set.files);
}

absl::StatusOr<RunSummary> InspectArtifact(const std::string& artifact) {
  HC_ASSIGN_OR_RETURN(ArtifactSet set, ResolveArtifact(artifact));
  RunSummary summary;
  for (const std::string& f : set.files) {
    HC_ASSIGN_OR_RETURN(auto reader, ArtifactReader::Open(f));
    for (const TensorRecord& r : reader->metadata().tensors) summary.tensors.push_back(r);
    summary.outputs.push_back(f);
  }
  summary.totals = Summarize(summary.tensors);
  return summary;
}

absl::StatusOr<RunSummary> DecompressModel(const std::string& artifact, const std::string& output,
                                           int threads, const ProgressCallback& progress_cb,
                                           const std::atomic<bool>* cancel) {
  HC_ASSIGN_OR_RETURN(ArtifactSet set, ResolveArtifact(artifact));
  std::vector<std::unique_ptr<ArtifactReader>> readers;
  uint64_t tensors = 0, bytes = 0;
  for (const std::string& f : set.files) {
    HC_ASSIGN_OR_RETURN(auto r, ArtifactReader::Open(f));
    for (const TensorRecord& rec : r->metadata().tensors) {
      ++tensors;
      bytes += rec.numel * DTypeSize(rec.dtype);
    }
    readers.push_back(std::move(r));
  }
  TbbExecutor executor(threads);
  ProgressTracker progress(progress_cb, tensors, bytes);
  RunSummary summary;
  OutputGuard guard;
  std::string dir;
  if (set.sharded) {
    HC_RETURN_IF_ERROR(PrepareOutputDir(output, &guard));
    dir = output;
  }
  std::vector<std::pair<std::string, std::string>> weight_map;
  uint64_t total_size = 0;
  for (size_t s = 0; s < readers.size(); ++s) {
    const ArtifactReader& reader = *readers[s];
    const std::string path = set.sharded ? absl::StrCat(dir, "/", set.source_names[s]) : output;
    guard.AddFile(path);
    HC_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(path));
    const auto& recs = reader.metadata().tensors;
    for (size_t i = 0; i < recs.size(); ++i) {
      HC_RETURN_IF_ERROR(CheckCancel(cancel));
      const TensorRecord& rec = recs[i];
      std::vector<uint8_t> buf(rec.numel * DTypeSize(rec.dtype));
      HC_RETURN_IF_ERROR(reader.DecodeTensor(i, absl::MakeSpan(buf), executor));
      HC_RETURN_IF_ERROR(writer->Add(rec.name, rec.dtype, rec.shape, buf));
      reader.Release(i);
      weight_map.emplace_back(rec.name, set.source_names[s]);
      total_size += buf.size();
      progress.Done(rec.name, buf.size());
      summary.tensors.push_back(rec);
    }
    HC_RETURN_IF_ERROR(writer->Finish(reader.metadata().source_metadata));
    summary.outputs.push_back(path);
  }
  if (set.sharded) {
    JsonValue meta = set.source_index_metadata.is_object()
                         ? set.source_index_metadata
                         : JsonValue::Object().Add("total_size", JsonValue::Int(static_cast<int64_t>(total_size)));
    const std::string index_path = absl::StrCat(dir, "/", set.source_index_name);
    guard.AddFile(index_path);
    HC_RETURN_IF_ERROR(WriteFileAtomically(index_path, EncodeShardIndex(meta, weight_map), true));
    summary.outputs.push_back(index_path);
  }
  guard.Commit();
  summary.seconds = progress.elapsed();
  summary.totals = Summarize(summary.tensors);
  return summary;
}

}  // namespace hc
