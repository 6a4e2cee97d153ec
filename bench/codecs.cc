// hyperc-bench codecs: encode and decode throughput of hc1 (preset llm) and rtn (4-bit, group
// 128) on real models, with 1 and 2 threads, all measured in one run.
//
// Tensors are encoded the way the pipeline does it: one ParallelFor over the model's float
// tensors on a TbbExecutor, each Encode running its own parallel units on the same executor.
// Decoding prepares every decoder, then decodes all elements in kChunkElems chunks in parallel.
// Each figure is the best of --repeat runs after one warm-up run; runs alternate between the
// codecs so that a change of machine load affects both alike.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench.h"
#include "core/codec/codec.h"
#include "core/io/safetensors_file.h"
#include "core/pipeline/tbb_executor.h"

namespace hc::bench {
namespace {

constexpr char kUsage[] =
    "usage: hyperc-bench codecs [--models A.safetensors,B.safetensors] [--repeat N]\n"
    "                           [--codecs hc1,rtn,hc2-ec,hc2-fixed] [--threads 1,2]\n"
    "\n"
    "  Encode and decode throughput (weights/s) of hc1 (preset llm), hc2 (ec at 4.25 bpw, fixed\n"
    "  4 bits) and rtn (bits 4,\n"
    "  group_size 128) with 1 and 2 threads, and the hc1/rtn time ratio.\n"
    "\n"
    "  --models LIST  comma-separated safetensors files (default: ppocrv4-rec-f32 and\n"
    "                 faceres-f16 from the shared models folder)\n"
    "  --repeat N     timed runs per figure, best kept (default 3), after one warm-up\n"
    "  --codecs LIST  comma-separated subset of hc1, rtn, hc2-ec, hc2-fixed (default: all;\n"
    "                 the hc1/rtn ratio needs both)\n"
    "  --threads LIST comma-separated thread counts (default: 1,2)\n";

struct Model {
  std::string name;
  std::unique_ptr<SafetensorsFile> file;
  std::vector<size_t> tensors;  // compressible float tensors
  uint64_t weights = 0;
};

struct Figures {
  double encode_s = 1e300;
  double decode_s = 1e300;
  uint64_t encoded_weights = 0;  // weights in tensors the codec did not keep raw
  uint64_t stored_bytes = 0;     // parts of encoded tensors + raw tensors at their dtype
};

absl::StatusOr<Model> LoadModel(const std::string& path) {
  Model m;
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  m.file = std::move(*file);
  m.name = path.substr(path.find_last_of('/') + 1);
  if (absl::EndsWith(m.name, ".safetensors")) m.name.resize(m.name.size() - 12);
  const auto& tensors = m.file->header().tensors;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!IsCompressibleFloat(tensors[i].dtype) || tensors[i].numel == 0) continue;
    m.tensors.push_back(i);
    m.weights += tensors[i].numel;
  }
  return m;
}

// One encode + decode run of `codec` over the model: keeps the best times in `fig`; the
// warm-up run (`warmup`) only counts sizes.
absl::Status RunOnce(const Model& m, const Codec& codec, Executor& ex, bool warmup, Figures& fig) {
  const size_t nt = m.tensors.size();
  const auto& infos = m.file->header().tensors;
  std::vector<absl::StatusOr<EncodedTensor>> enc(nt, absl::UnknownError("not run"));
  const double t0 = Now();
  ex.ParallelFor(static_cast<int64_t>(nt), [&](int64_t k) {
    const size_t i = m.tensors[k];
    enc[k] = codec.Encode(infos[i], m.file->TensorData(i), ex);
  });
  const double t1 = Now();
  for (const auto& e : enc) {
    if (!e.ok()) return e.status();
  }

  // Decode: every decoder, then every chunk of every encoded tensor.
  std::vector<std::vector<PartView>> views(nt);
  std::vector<std::unique_ptr<TensorDecoder>> decoders(nt);
  std::vector<std::vector<float>> out(nt);
  std::vector<std::pair<size_t, uint64_t>> chunks;
  for (size_t k = 0; k < nt; ++k) {
    if (enc[k]->raw) continue;
    for (const EncodedPart& p : enc[k]->parts) {
      views[k].push_back({p.suffix, p.dtype, p.shape, p.bytes});
    }
    const uint64_t numel = infos[m.tensors[k]].numel;
    out[k].resize(numel);
    for (uint64_t b = 0; b < numel; b += kChunkElems) chunks.emplace_back(k, b);
  }
  std::vector<absl::Status> dec_status(nt);
  const double t2 = Now();
  ex.ParallelFor(static_cast<int64_t>(nt), [&](int64_t k) {
    if (enc[k]->raw) return;
    auto d = codec.PrepareDecoder(infos[m.tensors[k]], enc[k]->params, views[k]);
    if (d.ok()) {
      decoders[k] = std::move(*d);
    } else {
      dec_status[k] = d.status();
    }
  });
  ex.ParallelFor(static_cast<int64_t>(chunks.size()), [&](int64_t c) {
    const auto [k, b] = chunks[c];
    if (!decoders[k]) return;
    const uint64_t n = std::min<uint64_t>(kChunkElems, out[k].size() - b);
    decoders[k]->DecodeRange(b, absl::MakeSpan(out[k].data() + b, n));
  });
  const double t3 = Now();
  for (const absl::Status& s : dec_status) {
    if (!s.ok()) return s;
  }
  if (warmup) {  // count sizes only
    for (size_t k = 0; k < nt; ++k) {
      const TensorInfo& info = infos[m.tensors[k]];
      if (enc[k]->raw) {
        fig.stored_bytes += info.nbytes();
        continue;
      }
      fig.encoded_weights += info.numel;
      for (const EncodedPart& p : enc[k]->parts) fig.stored_bytes += p.bytes.size();
    }
    return absl::OkStatus();
  }
  fig.encode_s = std::min(fig.encode_s, t1 - t0);
  fig.decode_s = std::min(fig.decode_s, t3 - t2);
  return absl::OkStatus();
}

}  // namespace

int RunCodecs(const std::vector<std::string>& args) {
  std::vector<std::string> paths = {SharedDir() + "/models/ppocrv4-rec-f32.safetensors",
                                    SharedDir() + "/models/faceres-f16.safetensors"};
  int repeat = 3;
  std::vector<std::string> only;  // --codecs: keys to run (empty: all)
  std::vector<int> thread_counts = {1, 2};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::string key, value;
    if (!SplitFlag(args, i, [](const std::string& k) { 
          return k == "--models" || k == "--repeat" || k == "--codecs" || k == "--threads";
        },
                   &key, &value)) {
      return Fail(absl::StrCat(a, " needs a value"), 2);
    }
    if (key == "--models") {
      paths = absl::StrSplit(value, ',', absl::SkipEmpty());
      if (paths.empty()) return Fail("--models needs at least one file", 2);
    } else if (key == "--threads") {
      thread_counts.clear();
      for (absl::string_view v : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        int n = 0;
        if (!absl::SimpleAtoi(v, &n) || n < 1 || n > 1024) {
          return Fail(absl::StrCat("--threads takes integers in [1, 1024], got \"", value, "\""),
                      2);
        }
        thread_counts.push_back(n);
      }
      if (thread_counts.empty()) return Fail("--threads needs at least one count", 2);
    } else if (key == "--codecs") {
      only = absl::StrSplit(value, ',', absl::SkipEmpty());
      if (only.empty()) return Fail("--codecs needs at least one codec", 2);
    } else if (key == "--repeat") {
      if (!absl::SimpleAtoi(value, &repeat) || repeat < 1 || repeat > 1000) {
        return Fail(absl::StrCat("--repeat must be an integer in [1, 1000], got \"", value, "\""),
                    2);
      }
    } else {
      std::fputs(kUsage, stderr);
      return Fail(absl::StrCat("unknown argument \"", a, "\""), 2);
    }
  }

  struct CodecSpec {
    const char* key;  // for --codecs
    const char* label;
    const char* name;
    CodecOptions options;
  };
  const std::vector<CodecSpec> all_specs = {
      {"hc1", "hc1 llm", "hc1", {{"preset", "llm"}}},
      {"rtn", "rtn 4b g128", "rtn", {{"bits", "4"}, {"group_size", "128"}}},
      {"hc2-ec", "hc2 ec 4.25", "hc2", {{"bpw", "4.25"}}},
      {"hc2-fixed", "hc2 fixed 4", "hc2", {{"mode", "fixed"}, {"bits", "4"}}},
  };
  for (const std::string& k : only) {
    if (std::none_of(all_specs.begin(), all_specs.end(),
                     [&](const CodecSpec& s) { return k == s.key; })) {
      return Fail(absl::StrCat("--codecs: unknown codec \"", k, "\""), 2);
    }
  }
  std::vector<CodecSpec> specs;
  for (const CodecSpec& s : all_specs) {
    if (only.empty() || std::find(only.begin(), only.end(), s.key) != only.end()) {
      specs.push_back(s);
    }
  }
  // The hc1/rtn ratio is printed when both run (they are the first two specs then).
  const bool ratio = specs.size() >= 2 && std::string(specs[0].key) == "hc1" &&
                     std::string(specs[1].key) == "rtn";
  std::vector<std::unique_ptr<Codec>> codecs;
  for (const CodecSpec& s : specs) {
    auto c = CreateCodec(s.name, s.options);
    if (!c.ok()) return Fail(c.status());
    codecs.push_back(std::move(*c));
  }

  std::vector<Model> models;
  for (const std::string& path : paths) {
    auto model = LoadModel(path);
    if (!model.ok()) return Fail(model.status());
    models.push_back(std::move(*model));
  }

  std::printf("%-18s %-12s %7s %10s %10s %12s %10s %12s %7s\n", "model", "codec", "threads",
              "weights", "encode ms", "encode w/s", "decode ms", "decode w/s", "bpw");
  struct Row {
    std::string model;
    int threads;
    double enc[2];
  };
  std::vector<Row> rows;
  for (const Model& m : models) {
    const Model* model = &m;
    for (int threads : thread_counts) {
      // Runs alternate between the codecs, so that load changes hit both alike.
      TbbExecutor ex(threads);
      std::vector<Figures> figs(codecs.size());
      for (int run = 0; run <= repeat; ++run) {
        for (size_t c = 0; c < codecs.size(); ++c) {
          if (absl::Status s = RunOnce(*model, *codecs[c], ex, run == 0, figs[c]); !s.ok()) {
            return Fail(s);
          }
        }
      }
      Row row{model->name, threads,
              {figs[0].encode_s, ratio ? figs[1].encode_s : figs[0].encode_s}};
      for (size_t c = 0; c < codecs.size(); ++c) {
        const Figures* fig = &figs[c];
        std::printf("%-18s %-12s %7d %10llu %10.2f %12.3e %10.2f %12.3e %7.3f\n",
                    model->name.c_str(), specs[c].label, threads,
                    static_cast<unsigned long long>(model->weights), fig->encode_s * 1e3,
                    model->weights / fig->encode_s, fig->decode_s * 1e3,
                    fig->encoded_weights / fig->decode_s, 8.0 * fig->stored_bytes / model->weights);
      }
      rows.push_back(row);
    }
  }
  if (ratio) std::printf("\nencode time ratio hc1/rtn:\n");
  for (const Row& r : ratio ? rows : std::vector<Row>{}) {
    std::printf("  %-18s %d thread%s  %.2fx\n", r.model.c_str(), r.threads,
                r.threads == 1 ? " " : "s", r.enc[0] / r.enc[1]);
  }
  std::printf(
      "\nweights: every F32/F16/BF16 weight of the model (encode w/s counts them all, raw ones "
      "included);\ndecode w/s counts the weights of encoded tensors; bpw: stored parts plus raw "
      "tensors at their dtype.\n");
  return 0;
}

}  // namespace hc::bench
