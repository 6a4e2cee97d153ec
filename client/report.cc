#include "client/report.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "core/quality/stats.h"

namespace hc::cli {
namespace {

constexpr char kReportUsage[] =
    "usage: hyperc report [MODEL...] [--work-dir DIR] [--threads N]\n"
    "\n"
    "The main job. For each MODEL (a .safetensors file, a shard index, or a directory of\n"
    "models; default: ../shared/models) and each codec configuration (rtn 4-bit group 128, and\n"
    "the best hyperc codec built in), compress, decompress, check the round trip (names, shapes,\n"
    "dtypes and order restored, raw tensors bit-identical, SNR recomputed from the decompressed\n"
    "file equal to the recorded one) and print the quality report. Artifacts go to --work-dir\n"
    "(default: a fresh directory under /tmp).\n";

struct Config {
  std::string label;
  CompressOptions options;
};

std::vector<Config> Configs(int threads) {
  std::vector<Config> out;
  Config rtn{"rtn b4 g128", {}};
  rtn.options.codec = "rtn";
  rtn.options.codec_options = {{"bits", "4"}, {"group_size", "128"}};
  out.push_back(rtn);
  // The hyperc codecs, best first: the report shows each one that this build has.
  for (const auto& [codec, opts, label] :
       std::vector<std::tuple<std::string, CodecOptions, std::string>>{
           {"hc1", CodecOptions{{"preset", "llm"}}, "hc1 llm"}}) {
    if (CreateCodec(codec, opts).ok()) {
      Config c{label, {}};
      c.options.codec = codec;
      c.options.codec_options = opts;
      out.push_back(c);
    }
  }
  for (Config& c : out) {
    c.options.threads = threads;
    c.options.sync = false;
  }
  return out;
}

// Every file a model consists of: the .safetensors itself, or the index's shards.
absl::StatusOr<std::vector<std::string>> ModelFiles(const std::string& model) {
  if (!IsShardIndexPath(model)) return std::vector<std::string>{model};
  HC_ASSIGN_OR_RETURN(ShardIndex idx, ReadShardIndex(model));
  std::vector<std::string> out;
  for (size_t i = 0; i < idx.shards.size(); ++i) out.push_back(idx.ShardPath(i));
  return out;
}

// Independent check of a round trip: the decompressed files hold the original tensors in the
// original order with the original dtypes and shapes; raw tensors are bit-identical; for coded
// tensors the SNR recomputed here from the two files equals the recorded one.
absl::Status VerifyRoundTrip(const std::vector<std::string>& originals,
                             const std::vector<std::string>& restored, const RunSummary& summary,
                             double* worst_snr_gap) {
  if (originals.size() != restored.size()) {
    return absl::InternalError("round trip: different number of files");
  }
  std::unordered_map<std::string, const TensorRecord*> records;
  for (const TensorRecord& r : summary.tensors) records[r.name] = &r;
  *worst_snr_gap = 0;
  for (size_t f = 0; f < originals.size(); ++f) {
    HC_ASSIGN_OR_RETURN(auto a, SafetensorsFile::Open(originals[f]));
    HC_ASSIGN_OR_RETURN(auto b, SafetensorsFile::Open(restored[f]));
    const auto& ta = a->header().tensors;
    const auto& tb = b->header().tensors;
    if (ta.size() != tb.size()) return absl::InternalError(absl::StrCat(restored[f], ": tensor count differs"));
    if (a->header().metadata != b->header().metadata) {
      return absl::InternalError(absl::StrCat(restored[f], ": __metadata__ differs"));
    }
    for (size_t i = 0; i < ta.size(); ++i) {
      if (ta[i].name != tb[i].name || ta[i].dtype != tb[i].dtype || ta[i].shape != tb[i].shape) {
        return absl::InternalError(absl::StrCat(restored[f], ": tensor ", i, " is \"", tb[i].name,
                                                "\", expected \"", ta[i].name, "\" with the same dtype and shape"));
      }
      const TensorRecord* rec = records.at(ta[i].name);
      auto da = a->TensorData(i), db = b->TensorData(i);
      if (rec->codec == kRawCodec) {
        if (!std::equal(da.begin(), da.end(), db.begin(), db.end())) {
          return absl::InternalError(absl::StrCat("raw tensor \"", ta[i].name, "\" changed"));
        }
        continue;
      }
      std::vector<float> x(ta[i].numel), y(ta[i].numel);
      WidenToF32(ta[i].dtype, da.data(), x.size(), x.data());
      WidenToF32(tb[i].dtype, db.data(), y.size(), y.data());
      double sq = 0, mean = 0;
      for (size_t k = 0; k < x.size(); ++k) mean += x[k];
      mean /= static_cast<double>(x.size());
      double var = 0;
      for (size_t k = 0; k < x.size(); ++k) {
        const double e = static_cast<double>(x[k]) - y[k];
        sq += e * e;
        var += (x[k] - mean) * (x[k] - mean);
      }
      if (sq > 0 && var > 0) {
        const double snr = 10 * std::log10(var / sq);
        *worst_snr_gap = std::max(*worst_snr_gap, std::fabs(snr - rec->stats.snr_db));
      }
      a->Release(i);
      b->Release(i);
    }
  }
  if (*worst_snr_gap > 0.01) {
    return absl::InternalError(absl::StrFormat("recorded SNR differs from the recomputed one by %.4f dB", *worst_snr_gap));
  }
  return absl::OkStatus();
}

std::string DefaultModelsDir() {
  for (const char* c : {"../shared/models", "../../shared/models", "shared/models"}) {
    struct stat st;
    if (::stat(c, &st) == 0 && S_ISDIR(st.st_mode)) return c;
  }
  return "";
}

// Expands a directory into the models it holds (.safetensors files and shard indexes).
std::vector<std::string> ExpandModels(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return {path};
  std::vector<std::string> out;
  std::vector<std::filesystem::path> entries;
  for (const auto& e : std::filesystem::directory_iterator(path)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  for (const auto& p : entries) {
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::directory_iterator(p)) {
        if (absl::EndsWith(e.path().string(), ".index.json")) out.push_back(e.path().string());
      }
    } else if (absl::EndsWith(p.string(), ".safetensors")) {
      out.push_back(p.string());
    }
  }
  return out;
}

}  // namespace

int Report(Args& args) {
  std::vector<std::string> models;
  std::string work_dir, threads_text;
  while (!args.done()) {
    if (args.Peek() == "--help" || args.Peek() == "-h") {
      std::fputs(kReportUsage, stdout);
      return 0;
    }
    auto took = args.Take({"--work-dir"}, &work_dir);
    if (took.ok() && !*took) took = args.Take({"--threads"}, &threads_text);
    if (!took.ok()) return Fail(took.status(), 2);
    if (*took) continue;
    std::string a = args.Next();
    if (a.rfind("-", 0) == 0) return Fail(absl::InvalidArgumentError(absl::StrCat("unknown option ", a)), 2);
    for (std::string& m : ExpandModels(a)) models.push_back(std::move(m));
  }
  int threads = 0;
  if (!threads_text.empty() && !absl::SimpleAtoi(threads_text, &threads)) {
    return Fail(absl::InvalidArgumentError("--threads needs an integer"), 2);
  }
  if (models.empty()) {
    const std::string dir = DefaultModelsDir();
    if (dir.empty()) {
      return Fail(absl::NotFoundError("no MODEL given and no ../shared/models here"), 2);
    }
    models = ExpandModels(dir);
  }
  if (work_dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "hyperc-report-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) return Fail(absl::UnavailableError("cannot create a work dir"));
    work_dir = tmpl;
  }
  std::filesystem::create_directories(work_dir);
  std::printf("hyperc report: %zu models, artifacts in %s\n\n", models.size(), work_dir.c_str());

  std::string table = absl::StrFormat("%-34s %-12s %7s %6s %9s %9s %8s %9s %8s %8s  %s\n", "model",
                                      "codec", "coded", "raw", "MB in", "MB out", "bpw",
                                      "snr_db", "dB>D(R)", "time s", "round trip");
  int failures = 0;
  int n = 0;
  for (const std::string& model : models) {
    auto files = ModelFiles(model);
    if (!files.ok()) return Fail(files.status());
    uint64_t in_bytes = 0;
    for (const std::string& f : *files) in_bytes += std::filesystem::file_size(f);
    const std::string base = IsShardIndexPath(model) ? BaseName(DirName(model)) : BaseName(model);
    for (const Config& c : Configs(threads)) {
      const std::string tag = absl::StrCat(work_dir, "/", n++, "-", base, ".", c.options.codec);
      ProgressPrinter printer(absl::StrCat(base, " ", c.label), true);
      auto s = CompressModel(model, tag + ".hyc", c.options, [&](const Progress& p) { printer(p); });
      printer.Finish();
      if (!s.ok()) return Fail(s.status());
      const bool sharded = IsShardIndexPath(model);
      const std::string restored = tag + (sharded ? ".restored" : ".restored.safetensors");
      auto d = DecompressModel(sharded ? tag + ".hyc" : tag + ".hyc", restored, threads);
      if (!d.ok()) return Fail(d.status());
      uint64_t out_bytes = 0;
      for (const std::string& o : s->outputs) out_bytes += std::filesystem::file_size(o);
      std::vector<std::string> restored_files;
      if (sharded) {
        auto idx = ReadShardIndex(absl::StrCat(restored, "/", BaseName(model)));
        if (!idx.ok()) return Fail(idx.status());
        for (size_t i = 0; i < idx->shards.size(); ++i) restored_files.push_back(idx->ShardPath(i));
      } else {
        restored_files.push_back(restored);
      }
      double gap = 0;
      absl::Status v = VerifyRoundTrip(*files, restored_files, *s, &gap);
      if (!v.ok()) ++failures;
      const ModelTotals& t = s->totals;
      absl::StrAppendFormat(&table, "%-34s %-12s %7d %6d %9.3f %9.3f %8.3f %9.2f %8.2f %8.2f  %s\n",
                            base.substr(0, 34), c.label, t.coded_tensors, t.tensors - t.coded_tensors,
                            in_bytes / 1e6, out_bytes / 1e6, t.coded_bits_per_weight, t.snr_db,
                            t.db_above_rd, s->seconds + d->seconds,
                            v.ok() ? absl::StrFormat("ok (SNR recomputed within %.1e dB)", gap)
                                   : absl::StrCat("FAILED: ", v.message()));
    }
  }
  std::printf("\n%s", table.c_str());
  std::printf(
      "\nbpw: bits per weight over the coded tensors, counting every stored byte (codes and side\n"
      "parameters). snr_db: numel-weighted mean of 10*log10(var/MSE) over coded tensors.\n"
      "dB>D(R): how far the error sits above the Gaussian rate-distortion bound var*2^(-2R)\n"
      "(0 would be optimal). Per-tensor figures: hyperc inspect ARTIFACT.\n");
  return failures == 0 ? 0 : 1;
}

}  // namespace hc::cli
