// hyperc-bench gemv: fused decode+GEMV (core/infer/linear.h) against plain F16 and F32 GEMV, all
// measured in the same run.
//
// Weights are synthetic: Gaussian (sigma 0.02) with 0.1 % outliers at 10 sigma, fixed seed,
// encoded by the real codecs through the Codec interface (hc2 fixed 4 bits, rtn 4-bit g128, hc1
// preset llm). For each shape and batch every kernel runs once as a warm-up, then --repeat rounds
// run every kernel once each, in turn, so a change of machine load hits all of them alike; the
// median is reported (wall time, and the process CPU time: on a shared machine it shows how much
// of the wall time the kernels ran), with the weight bytes read per call / time and the speedup
// over F16. hc2 runs through each of its kernels (LinearOptions::hc2_integer, hc2_pair_table).
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench.h"
#include "core/base/dtype.h"
#include "core/codec/codec.h"
#include "core/infer/linear.h"
#include "core/pipeline/tbb_executor.h"

namespace hc::bench {
namespace {

constexpr char kUsage[] =
    "usage: hyperc-bench gemv [--json] [--threads N] [--repeat R] [--small | --large-only]\n"
    "                         [--batch B]\n"
    "\n"
    "  Y = W X for W of 4096x4096 and 11008x4096 at batch 1, 4 and 16: fused kernels reading\n"
    "  the codes (hc2 fixed 4 bits, rtn 4-bit g128, hc1 llm) against F16 and F32 GEMV, measured\n"
    "  in the same run. Reports the median time, GB/s of weight data and the speedup vs F16.\n"
    "\n"
    "  --json      one JSON object on stdout instead of a table\n"
    "  --threads N worker threads (default 1; 0 = one per core)\n"
    "  --repeat R  timed rounds, kernels interleaved (default 15)\n"
    "  --small     a 256x512 shape only (smoke test)\n"
    "  --large-only  the 11008x4096 shape only\n"
    "  --batch B   this batch size only\n"
    "  --random-codes  hc2 and rtn read random codes instead of encoded weights (same timings,\n"
    "              no slow hc2 encoding; for kernel work, not for reported figures)\n";

struct Kernel {
  std::string name;
  std::vector<uint8_t> bytes;  // what the parts view (kept alive here)
  std::vector<std::vector<uint8_t>> part_bytes;
  std::unique_ptr<Linear> linear;
  LinearWeight weight;
  double encode_s = 0;
};

struct Result {
  int64_t rows, cols;
  int batch;
  std::string kernel;
  double median_ms;
  double cpu_ms;
  double gbps;
  double speedup_vs_f16;
  uint64_t bytes;
};

std::vector<float> SyntheticWeights(int64_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 0.02f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> w(n);
  for (float& v : w) v = u(rng) < 0.001f ? (u(rng) < 0.5f ? -0.2f : 0.2f) : g(rng);
  return w;
}

// Uniformly random codes and plausible scales in the layout of hc2's fixed mode or rtn (4 bits,
// group 128): kernel timings do not depend on the code values, and this skips hc2's slow
// encoder when iterating on kernels (--random-codes).
absl::StatusOr<EncodedTensor> RandomCodes(const std::string& codec, const CodecOptions& options,
                                          uint64_t numel) {
  std::mt19937_64 rng(5);
  EncodedTensor e;
  EncodedPart codes{
      "codes", DType::kU8, {static_cast<int64_t>(numel / 2)}, std::vector<uint8_t>(numel / 2)};
  for (uint8_t& b : codes.bytes) b = static_cast<uint8_t>(rng());
  const uint64_t groups = numel / 128;
  const uint16_t half = FloatToHalf(0.01f);
  EncodedPart scales{"scales", DType::kF16, {}, {}};
  if (codec == "hc2") {
    e.params.Add("mode", JsonValue::String("fixed"))
        .Add("bits", JsonValue::Int(4))
        .Add("window", JsonValue::Int(12))
        .Add("codebook", JsonValue::Int(2));
    codes.suffix = "symbols";
    scales.shape = {static_cast<int64_t>(groups)};
    scales.bytes.resize(2 * groups);
  } else {
    e.params.Add("bits", JsonValue::Int(4)).Add("group_size", JsonValue::Int(128));
    scales.shape = {static_cast<int64_t>(groups), 2};
    scales.bytes.resize(4 * groups);
  }
  for (size_t i = 0; i + 1 < scales.bytes.size(); i += 2) std::memcpy(&scales.bytes[i], &half, 2);
  e.parts.push_back(std::move(codes));
  e.parts.push_back(std::move(scales));
  return e;
}

absl::StatusOr<Kernel> EncodeKernel(const std::string& label, const std::string& codec_name,
                                    const CodecOptions& options, int64_t rows, int64_t cols,
                                    const std::vector<float>& w, bool random_codes, Executor& ex) {
  Kernel k;
  k.name = label;
  auto codec = CreateCodec(codec_name, options);
  if (!codec.ok()) return codec.status();
  TensorInfo info;
  info.name = label;
  info.dtype = DType::kF32;
  info.shape = {rows, cols};
  info.numel = static_cast<uint64_t>(rows * cols);
  info.end = info.numel * 4;
  const double t0 = Now();
  absl::StatusOr<EncodedTensor> enc =
      random_codes && codec_name != "hc1"
          ? RandomCodes(codec_name, options, info.numel)
          : (*codec)->Encode(
                info, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(w.data()), info.end),
                ex);
  k.encode_s = Now() - t0;
  if (!enc.ok()) return enc.status();
  if (enc->raw) return absl::InternalError(absl::StrCat(label, " stayed raw: ", enc->raw_reason));
  LinearWeight lw;
  lw.codec = codec_name;
  lw.dtype = DType::kF32;
  lw.shape = info.shape;
  lw.params = enc->params;
  for (EncodedPart& p : enc->parts) k.part_bytes.push_back(std::move(p.bytes));
  for (size_t i = 0; i < enc->parts.size(); ++i) {
    lw.parts.push_back(
        PartView{enc->parts[i].suffix, enc->parts[i].dtype, enc->parts[i].shape, k.part_bytes[i]});
  }
  auto lin = CreateLinear(lw);
  if (!lin.ok()) return lin.status();
  k.linear = std::move(*lin);
  k.weight = std::move(lw);
  return k;
}

// CPU time of the whole process (all threads), seconds: on a shared machine it shows how much
// of the wall time the kernels actually ran.
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int RunGemv(const std::vector<std::string>& args) {
  bool json = false, small = false, only_large = false, random_codes = false;
  int threads = 1, repeat = 15, only_batch = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string key, value;
    if (!SplitFlag(
            args, i,
            [](const std::string& k) {
              return k == "--threads" || k == "--repeat" || k == "--batch";
            },
            &key, &value)) {
      return Fail(absl::StrCat("missing value for ", args[i]), 2);
    }
    if (key == "--json") {
      json = true;
    } else if (key == "--small") {
      small = true;
    } else if (key == "--random-codes") {
      random_codes = true;
    } else if (key == "--large-only") {
      only_large = true;
    } else if (key == "--batch") {
      if (!absl::SimpleAtoi(value, &only_batch) || only_batch < 1 || only_batch > kMaxBatch) {
        return Fail("bad --batch", 2);
      }
    } else if (key == "--threads") {
      if (!absl::SimpleAtoi(value, &threads) || threads < 0) return Fail("bad --threads", 2);
    } else if (key == "--repeat") {
      if (!absl::SimpleAtoi(value, &repeat) || repeat < 1) return Fail("bad --repeat", 2);
    } else if (key == "--help" || key == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fputs(kUsage, stderr);
      return Fail(absl::StrCat("unknown option ", key), 2);
    }
  }
  TbbExecutor ex(threads);
  const std::vector<std::pair<int64_t, int64_t>> shapes =
      small        ? std::vector<std::pair<int64_t, int64_t>>{{256, 512}}
      : only_large ? std::vector<std::pair<int64_t, int64_t>>{{11008, 4096}}
                   : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {11008, 4096}};
  const int batches[] = {1, 4, 16};
  std::vector<Result> results;
  std::string encode_notes;
  for (const auto& [rows, cols] : shapes) {
    const std::vector<float> w = SyntheticWeights(rows * cols, 1234 + static_cast<uint32_t>(rows));
    std::vector<Kernel> kernels;
    // Dense baselines.
    for (DType dt : {DType::kF32, DType::kF16}) {
      Kernel k;
      k.name = dt == DType::kF32 ? "f32" : "f16";
      k.bytes.resize(w.size() * DTypeSize(dt));
      NarrowFromF32(dt, w.data(), w.size(), k.bytes.data());
      auto lin = CreateDenseLinear(dt, rows, cols, k.bytes);
      if (!lin.ok()) return Fail(lin.status());
      k.linear = std::move(*lin);
      kernels.push_back(std::move(k));
    }
    struct Spec {
      const char* label;
      const char* codec;
      CodecOptions options;
    };
    const Spec specs[] = {
        {"hc2-fixed-4", "hc2", {{"mode", "fixed"}, {"bits", "4"}}},
        {"rtn-4-g128", "rtn", {{"bits", "4"}, {"group_size", "128"}}},
        {"hc1-llm", "hc1", {{"preset", "llm"}}},
    };
    for (const Spec& s : specs) {
      auto k = EncodeKernel(s.label, s.codec, s.options, rows, cols, w, random_codes, ex);
      if (!k.ok()) return Fail(k.status());
      if (!json) {
        std::fprintf(stderr, "encoded %s %lldx%lld in %.1f s\n", s.label,
                     static_cast<long long>(rows), static_cast<long long>(cols), k->encode_s);
      }
      k->name = k->linear->kind();
      if (std::string(s.codec) == "hc2") {
        // The same codes through hc2's other kernels (LinearOptions::hc2_integer, then
        // hc2_pair_table off), each once.
        std::vector<Kernel> more;
        for (const bool pairs : {true, false}) {
          LinearOptions o;
          o.hc2_integer = false;
          o.hc2_pair_table = pairs;
          auto lin = CreateLinear(k->weight, o);
          if (!lin.ok()) return Fail(lin.status());
          Kernel p;
          p.linear = std::move(*lin);
          p.name = p.linear->kind();
          if (p.name == k->name) continue;
          bool seen = false;
          for (const Kernel& m : more) seen |= m.name == p.name;
          if (!seen) more.push_back(std::move(p));
        }
        kernels.push_back(std::move(*k));
        for (Kernel& m : more) kernels.push_back(std::move(m));
        continue;
      }
      kernels.push_back(std::move(*k));
    }
    for (int batch : batches) {
      if (only_batch > 0 && batch != only_batch) continue;
      std::vector<float> x(static_cast<size_t>(batch * cols));
      std::vector<float> y(static_cast<size_t>(batch * rows));
      std::mt19937 rng(7);
      std::normal_distribution<float> g(0.0f, 1.0f);
      for (float& v : x) v = g(rng);
      // hc2's pair-table kernel only runs at batch <= 2 (it falls back to the gather kernel,
      // timed already, above that): skip its row there.
      std::vector<bool> skip(kernels.size());
      for (size_t i = 0; i < kernels.size(); ++i) {
        skip[i] = batch > 2 && absl::EndsWith(kernels[i].name, "-pairs");
      }
      std::vector<std::vector<double>> times(kernels.size()), cpu(kernels.size());
      for (int round = -1; round < repeat; ++round) {
        for (size_t i = 0; i < kernels.size(); ++i) {
          if (skip[i]) continue;
          const double t0 = Now(), c0 = CpuSeconds();
          const absl::Status st =
              kernels[i].linear->Apply(x, cols, batch, absl::MakeSpan(y), rows, ex);
          const double t = Now() - t0, c = CpuSeconds() - c0;
          if (!st.ok()) return Fail(st);
          if (round >= 0) times[i].push_back(t), cpu[i].push_back(c);
        }
      }
      double f16_ms = 0;
      for (size_t i = 0; i < kernels.size(); ++i) {
        if (kernels[i].name == "f16") f16_ms = Median(times[i]) * 1e3;
      }
      for (size_t i = 0; i < kernels.size(); ++i) {
        if (skip[i]) continue;
        const double ms = Median(times[i]) * 1e3;
        const uint64_t bytes = kernels[i].linear->weight_bytes();
        results.push_back(Result{rows, cols, batch, kernels[i].name, ms, Median(cpu[i]) * 1e3,
                                 bytes / (ms * 1e6), f16_ms / ms, bytes});
      }
    }
  }
  const int used_threads = ex.threads();
  if (json) {
    std::string out =
        absl::StrCat("{\"threads\":", used_threads, ",\"repeat\":", repeat,
                     ",\"avx512\":", LinearHasAvx512() ? "true" : "false", ",\"results\":[");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      absl::StrAppend(&out, i ? "," : "", "{\"rows\":", r.rows, ",\"cols\":", r.cols,
                      ",\"batch\":", r.batch, ",\"kernel\":\"", r.kernel,
                      "\",\"weight_bytes\":", r.bytes,
                      absl::StrFormat(",\"median_ms\":%.4f,\"cpu_ms\":%.4f,\"gbps\":%.2f",
                                      r.median_ms, r.cpu_ms, r.gbps),
                      absl::StrFormat(",\"speedup_vs_f16\":%.3f}", r.speedup_vs_f16));
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
  } else {
    std::printf("threads %d, repeat %d (median), avx512 %s\n", used_threads, repeat,
                LinearHasAvx512() ? "yes" : "no");
    std::printf("%-12s %5s %-18s %10s %10s %8s %8s %10s\n", "shape", "batch", "kernel", "ms",
                "cpu ms", "GB/s", "vs f16", "MB read");
    for (const Result& r : results) {
      std::printf("%-12s %5d %-18s %10.3f %10.3f %8.2f %8.2f %10.2f\n",
                  absl::StrCat(r.rows, "x", r.cols).c_str(), r.batch, r.kernel.c_str(), r.median_ms,
                  r.cpu_ms, r.gbps, r.speedup_vs_f16, r.bytes / 1e6);
    }
  }
  return 0;
}

}  // namespace hc::bench
