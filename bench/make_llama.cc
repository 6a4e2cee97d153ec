// hyperc-bench make-llama: writes a synthetic LLaMA-2-7B-shaped checkpoint, sharded the way
// Hugging Face save_pretrained shards it, to benchmark hyperc at the scale of a real LLM.
//
//   hyperc-bench make-llama --out /tmp/llama32                  # 32 layers: 6.74 G weights, 13.5 GB
//   hyperc-bench make-llama --out /tmp/tiny --layers 2 --hidden 64 --intermediate 172
//       --vocab 100 --max-shard-bytes 60000                       # (one line) a tiny model
//
// Tensors (all F16): model.embed_tokens.weight [vocab, hidden]; per layer i
// model.layers.i.self_attn.{q,k,v,o}_proj.weight [hidden, hidden], mlp.{gate,up}_proj.weight
// [intermediate, hidden], mlp.down_proj.weight [hidden, intermediate],
// {input,post_attention}_layernorm.weight [hidden]; model.norm.weight [hidden]; lm_head.weight
// [vocab, hidden]. Matrices are N(0, 0.02^2) with 2-4 outliers per row at 5-20 sigma (random
// sign and column); norm vectors are 1 + N(0, 0.05^2).
//
// Layout as save_pretrained writes it: tensors go to shards in state-dict order (the order
// above), a new shard starting when the next tensor would push the current one past
// --max-shard-bytes; inside a shard the safetensors library stores tensors sorted by name; the
// index's weight_map is sorted by name and its metadata holds total_size.
//
// Values are deterministic for a seed: each row draws from its own counter-based stream keyed
// by (seed, tensor name, row), so rows are generated in parallel (on a TbbExecutor) with the
// same bytes whatever the thread count, and a tensor's values do not depend on --layers.
// Memory: one tensor is generated at a time into a reused buffer and handed to core/io's
// SafetensorsWriter, which writes it straight to disk except for the first tensor of a shard
// (copied into its memory buffer before it spills), so peak RSS is about twice the largest
// tensor (lm_head/embed_tokens: 262 MB each at full size).
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench.h"
#include "core/base/dtype.h"
#include "core/base/json.h"
#include "core/base/status_macros.h"
#include "core/base/strings.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_file.h"
#include "core/io/safetensors_writer.h"
#include "core/io/shard_index.h"
#include "core/pipeline/tbb_executor.h"

namespace hc::bench {
namespace {

constexpr char kUsage[] =
    "usage: hyperc-bench make-llama --out DIR [--layers N] [--seed S] [--hidden H]\n"
    "                               [--intermediate I] [--vocab V] [--max-shard-bytes B]\n"
    "                               [--threads T]\n"
    "\n"
    "  Writes a synthetic LLaMA-2-7B-shaped F16 checkpoint to DIR: Hugging Face shards\n"
    "  model-0000k-of-0000n.safetensors plus model.safetensors.index.json. Gaussian weights\n"
    "  (std 0.02) with 2-4 outliers per row at 5-20 sigma; norm vectors around 1.0.\n"
    "  Deterministic for a seed, whatever the thread count. Streams tensor by tensor.\n"
    "\n"
    "  --out DIR            output folder (created; existing files of the same names replaced)\n"
    "  --layers N           decoder layers (default 32: 6.74 G weights, 13.5 GB)\n"
    "  --seed S             unsigned 64-bit seed (default 0)\n"
    "  --hidden H           hidden size (default 4096)\n"
    "  --intermediate I     MLP size (default 11008)\n"
    "  --vocab V            vocabulary size (default 32000)\n"
    "  --max-shard-bytes B  shard size limit, e.g. 5e9, 5000000000 or 4G (default 5e9)\n"
    "  --threads T          generator threads (default 0: one per core)\n";

constexpr float kWeightStd = 0.02f;
constexpr float kNormStd = 0.05f;
constexpr int64_t kRowsPerUnit = 16;  // rows per ParallelFor unit

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;  // [rows, cols] or [n] (a norm vector: one row)
  bool norm = false;

  int64_t rows() const { return shape.size() == 1 ? 1 : shape[0]; }
  int64_t cols() const { return shape.back(); }
  uint64_t numel() const { return static_cast<uint64_t>(rows()) * static_cast<uint64_t>(cols()); }
  uint64_t nbytes() const { return 2 * numel(); }
};

// The tensors of LlamaForCausalLM in state-dict order.
std::vector<TensorSpec> LlamaTensors(int layers, int64_t hidden, int64_t inter, int64_t vocab) {
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {vocab, hidden}});
  for (int i = 0; i < layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    for (const char* m : {"q", "k", "v", "o"}) {
      t.push_back({absl::StrCat(p, "self_attn.", m, "_proj.weight"), {hidden, hidden}});
    }
    t.push_back({p + "mlp.gate_proj.weight", {inter, hidden}});
    t.push_back({p + "mlp.up_proj.weight", {inter, hidden}});
    t.push_back({p + "mlp.down_proj.weight", {hidden, inter}});
    t.push_back({p + "input_layernorm.weight", {hidden}, true});
    t.push_back({p + "post_attention_layernorm.weight", {hidden}, true});
  }
  t.push_back({"model.norm.weight", {hidden}, true});
  t.push_back({"lm_head.weight", {vocab, hidden}});
  return t;
}

// SplitMix64's finaliser: a bijective 64-bit mix.
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t NameHash(absl::string_view s) {  // FNV-1a
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// A SplitMix64 stream: the counter-based generator of one row.
class RowRng {
 public:
  explicit RowRng(uint64_t key) : state_(key) {}
  uint64_t Next() { return Mix64(state_ += 0x9E3779B97F4A7C15ull); }
  // Uniform in [0, 1) with 24 bits.
  float Uniform() { return static_cast<float>(Next() >> 40) * 0x1p-24f; }
  // Standard normal pairs by Marsaglia's polar method (no trigonometry).
  void Gaussian2(float& a, float& b) {
    float u, v, s;
    do {
      const uint64_t r = Next();
      u = static_cast<float>(static_cast<int32_t>(r >> 32)) * 0x1p-31f;
      v = static_cast<float>(static_cast<int32_t>(r & 0xFFFFFFFFu)) * 0x1p-31f;
      s = u * u + v * v;
    } while (s >= 1.0f || s == 0.0f);
    const float m = std::sqrt(-2.0f * std::log(s) / s);
    a = u * m;
    b = v * m;
  }

 private:
  uint64_t state_;
};

// Values of one row (`cols` floats) of tensor `t`, from the stream keyed by (seed, name, row).
void FillRow(const TensorSpec& t, uint64_t tensor_key, int64_t row, float* out) {
  RowRng rng(Mix64(tensor_key ^ Mix64(static_cast<uint64_t>(row) + 1)));
  const int64_t n = t.cols();
  const float mean = t.norm ? 1.0f : 0.0f;
  const float sd = t.norm ? kNormStd : kWeightStd;
  int64_t c = 0;
  for (; c + 1 < n; c += 2) {
    float a, b;
    rng.Gaussian2(a, b);
    out[c] = mean + sd * a;
    out[c + 1] = mean + sd * b;
  }
  if (c < n) {
    float a, b;
    rng.Gaussian2(a, b);
    out[c] = mean + sd * a;
  }
  if (t.norm) return;
  const int outliers = 2 + static_cast<int>(rng.Next() % 3);
  for (int k = 0; k < outliers; ++k) {
    const uint64_t r = rng.Next();
    const int64_t col = static_cast<int64_t>((r >> 1) % static_cast<uint64_t>(n));
    const float sigmas = 5.0f + 15.0f * rng.Uniform();
    out[col] = ((r & 1) ? -sigmas : sigmas) * sd;
  }
}

// Generates tensor `t` as F16 into `dst` (t.nbytes() bytes), rows in parallel.
void GenerateTensor(const TensorSpec& t, uint64_t seed, Executor& ex, uint8_t* dst) {
  const uint64_t key = Mix64(seed ^ Mix64(NameHash(t.name)));
  const int64_t rows = t.rows(), cols = t.cols();
  const int64_t units = (rows + kRowsPerUnit - 1) / kRowsPerUnit;
  ex.ParallelFor(units, [&](int64_t u) {
    std::vector<float> row(static_cast<size_t>(cols));
    const int64_t end = std::min(rows, (u + 1) * kRowsPerUnit);
    for (int64_t r = u * kRowsPerUnit; r < end; ++r) {
      FillRow(t, key, r, row.data());
      NarrowFromF32(DType::kF16, row.data(), static_cast<size_t>(cols),
                    dst + static_cast<size_t>(2 * r * cols));
    }
  });
}

// Shards as save_pretrained cuts them: state-dict order, a new shard when the next tensor would
// push the current one past `max_bytes` (a tensor larger than that gets a shard of its own).
std::vector<std::vector<size_t>> PlanShards(const std::vector<TensorSpec>& tensors,
                                            uint64_t max_bytes) {
  std::vector<std::vector<size_t>> shards;
  uint64_t size = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (shards.empty() || (size > 0 && size + tensors[i].nbytes() > max_bytes)) {
      shards.emplace_back();
      size = 0;
    }
    shards.back().push_back(i);
    size += tensors[i].nbytes();
  }
  return shards;
}

struct Totals {
  double generate_s = 0;
  double write_s = 0;
};

// Writes one shard: its tensors sorted by name, as the safetensors library stores them. The
// header space is reserved at its exact size so the writer never pads or moves the data.
absl::Status WriteShard(const std::string& path, const std::vector<TensorSpec>& tensors,
                        std::vector<size_t> members, uint64_t seed, Executor& ex,
                        std::vector<uint8_t>& buffer, Totals& totals) {
  std::sort(members.begin(), members.end(),
            [&](size_t a, size_t b) { return tensors[a].name < tensors[b].name; });
  const StringMap metadata = {{"format", "pt"}};
  std::vector<TensorInfo> infos;
  uint64_t offset = 0;
  for (size_t i : members) {
    TensorInfo info;
    info.name = tensors[i].name;
    info.dtype = DType::kF16;
    info.shape = tensors[i].shape;
    info.numel = tensors[i].numel();
    info.begin = offset;
    info.end = offset += tensors[i].nbytes();
    infos.push_back(std::move(info));
  }
  SafetensorsWriterOptions wo;
  wo.reserve_header_bytes = EncodeSafetensorsHeader(infos, metadata).size();
  HC_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> w, SafetensorsWriter::Create(path, wo));
  for (size_t i : members) {
    const TensorSpec& t = tensors[i];
    const double t0 = Now();
    GenerateTensor(t, seed, ex, buffer.data());
    const double t1 = Now();
    HC_RETURN_IF_ERROR(w->Add(t.name, DType::kF16, t.shape, absl::MakeSpan(buffer.data(), t.nbytes())));
    totals.generate_s += t1 - t0;
    totals.write_s += Now() - t1;
  }
  const double t2 = Now();
  HC_RETURN_IF_ERROR(w->Finish(metadata));
  totals.write_s += Now() - t2;
  return absl::OkStatus();
}

std::string Gb(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1e8) return absl::StrFormat("%.2f GB", b / 1e9);
  if (b >= 1e5) return absl::StrFormat("%.2f MB", b / 1e6);
  return absl::StrFormat("%.1f kB", b / 1e3);
}

}  // namespace

int RunMakeLlama(const std::vector<std::string>& args) {
  std::string out;
  int layers = 32, threads = 0;
  uint64_t seed = 0;
  int64_t hidden = 4096, inter = 11008, vocab = 32000;
  uint64_t max_shard = 5000000000ull;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::string key, v;
    if (!SplitFlag(args, i, [](const std::string&) { return true; }, &key, &v)) {
      std::fputs(kUsage, stderr);
      return Fail(absl::StrCat(a, " needs a value"), 2);
    }
    bool ok = true;
    if (key == "--out") {
      out = v;
      ok = !v.empty();
    } else if (key == "--layers") {
      ok = absl::SimpleAtoi(v, &layers) && layers >= 0 && layers <= 1000;
    } else if (key == "--seed") {
      ok = absl::SimpleAtoi(v, &seed);
    } else if (key == "--hidden") {
      ok = absl::SimpleAtoi(v, &hidden) && hidden > 0 && hidden <= (1 << 20);
    } else if (key == "--intermediate") {
      ok = absl::SimpleAtoi(v, &inter) && inter > 0 && inter <= (1 << 20);
    } else if (key == "--vocab") {
      ok = absl::SimpleAtoi(v, &vocab) && vocab > 0 && vocab <= (1 << 22);
    } else if (key == "--threads") {
      ok = absl::SimpleAtoi(v, &threads) && threads >= 0 && threads <= 1024;
    } else if (key == "--max-shard-bytes") {
      double d = 0;
      if (absl::SimpleAtod(v, &d)) {
        ok = d >= 1 && d < 1.8e19;
        max_shard = ok ? static_cast<uint64_t>(d) : 0;
      } else {
        auto b = ParseByteSize(v);
        ok = b.ok() && *b > 0;
        if (ok) max_shard = *b;
      }
    } else {
      std::fputs(kUsage, stderr);
      return Fail(absl::StrCat("unknown argument \"", a, "\""), 2);
    }
    if (!ok) return Fail(absl::StrCat(key, ": bad value \"", v, "\""), 2);
  }
  if (out.empty()) {
    std::fputs(kUsage, stderr);
    return Fail("make-llama needs --out DIR", 2);
  }
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) return Fail(absl::StrCat(out, ": ", ec.message()));

  const std::vector<TensorSpec> tensors = LlamaTensors(layers, hidden, inter, vocab);
  const std::vector<std::vector<size_t>> shards = PlanShards(tensors, max_shard);
  uint64_t total_bytes = 0, total_weights = 0, largest = 0;
  for (const TensorSpec& t : tensors) {
    total_bytes += t.nbytes();
    total_weights += t.numel();
    largest = std::max(largest, t.nbytes());
  }
  TbbExecutor ex(threads);
  std::printf("make-llama: %d layers, hidden %lld, intermediate %lld, vocab %lld, seed %llu, "
              "%d threads, %zu shards of at most %s\n",
              layers, static_cast<long long>(hidden), static_cast<long long>(inter),
              static_cast<long long>(vocab), static_cast<unsigned long long>(seed), ex.threads(),
              shards.size(), Gb(max_shard).c_str());
  std::fflush(stdout);

  std::vector<uint8_t> buffer(largest);
  Totals totals;
  const double t0 = Now();
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards.size());
    const std::string path = out + "/" + name;
    uint64_t bytes = 0;
    for (size_t i : shards[s]) {
      weight_map.emplace_back(tensors[i].name, name);
      bytes += tensors[i].nbytes();
    }
    if (absl::Status st = WriteShard(path, tensors, shards[s], seed, ex, buffer, totals); !st.ok()) {
      return Fail(st);
    }
    std::printf("  %s  %zu tensors  %s\n", path.c_str(), shards[s].size(), Gb(bytes).c_str());
    std::fflush(stdout);
  }
  // The index as save_pretrained writes it: weight_map sorted by tensor name.
  std::sort(weight_map.begin(), weight_map.end());
  JsonValue metadata = JsonValue::Object();
  metadata.Add("total_size", JsonValue::Int(static_cast<int64_t>(total_bytes)));
  const std::string index_path = out + "/model.safetensors.index.json";
  if (absl::Status st = WriteFileAtomically(index_path, EncodeShardIndex(metadata, weight_map), true);
      !st.ok()) {
    return Fail(st);
  }
  const double wall = Now() - t0;
  std::printf("  %s\n", index_path.c_str());
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  std::printf("total: %zu tensors, %llu weights, %llu bytes (%s) in %zu shards\n", tensors.size(),
              static_cast<unsigned long long>(total_weights),
              static_cast<unsigned long long>(total_bytes), Gb(total_bytes).c_str(),
              shards.size());
  std::printf("time: %.2f s (generate %.2f s, write %.2f s), %.3e weights/s, %.1f MB/s; "
              "peak RSS %.0f MiB\n",
              wall, totals.generate_s, totals.write_s, static_cast<double>(total_weights) / wall,
              static_cast<double>(total_bytes) / wall / 1e6, static_cast<double>(ru.ru_maxrss) / 1024);
  return 0;
}

}  // namespace hc::bench
