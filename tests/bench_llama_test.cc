// `hyperc-bench make-llama` and `compress-llama` end to end on a tiny model: the real binaries
// run as child processes. No timing is asserted.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/dtype.h"
#include "core/base/json.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"

namespace hc {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

std::string BenchPath() {
  const char* bin = std::getenv("HC_BINARY_DIR");
  return absl::StrCat(bin ? bin : HC_BINARY_DIR_DEFAULT, "/bin/hyperc-bench");
}

// Runs hyperc-bench with `args`, capturing stdout and stderr in files under `dir`.
RunResult RunBench(const std::string& dir, const std::vector<std::string>& args) {
  const std::string out = dir + "/stdout", err = dir + "/stderr";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 1);
    ::dup2(::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
    std::string exe = BenchPath();
    std::vector<std::string> copy = args;
    std::vector<char*> argv = {exe.data()};
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = testing::ReadAll(out);
  r.err = testing::ReadAll(err);
  return r;
}

// The tiny model: 2 layers, hidden 64, intermediate 172, vocab 100; 60000-byte shards.
constexpr int kLayers = 2;
constexpr int64_t kHidden = 64, kInter = 172, kVocab = 100;

std::vector<std::string> TinyArgs(const std::string& out, int seed, int threads) {
  return {"make-llama", "--out", out, "--layers", absl::StrCat(kLayers), "--hidden",
          absl::StrCat(kHidden), "--intermediate", absl::StrCat(kInter), "--vocab",
          absl::StrCat(kVocab), "--max-shard-bytes", "60000", "--seed", absl::StrCat(seed),
          "--threads", absl::StrCat(threads)};
}

struct Expected {
  std::string name;
  std::vector<int64_t> shape;
};

// State-dict order of LlamaForCausalLM.
std::vector<Expected> ExpectedTensors() {
  std::vector<Expected> t = {{"model.embed_tokens.weight", {kVocab, kHidden}}};
  for (int i = 0; i < kLayers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    for (const char* m : {"q", "k", "v", "o"}) {
      t.push_back({absl::StrCat(p, "self_attn.", m, "_proj.weight"), {kHidden, kHidden}});
    }
    t.push_back({p + "mlp.gate_proj.weight", {kInter, kHidden}});
    t.push_back({p + "mlp.up_proj.weight", {kInter, kHidden}});
    t.push_back({p + "mlp.down_proj.weight", {kHidden, kInter}});
    t.push_back({p + "input_layernorm.weight", {kHidden}});
    t.push_back({p + "post_attention_layernorm.weight", {kHidden}});
  }
  t.push_back({"model.norm.weight", {kHidden}});
  t.push_back({"lm_head.weight", {kVocab, kHidden}});
  return t;
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n != "stdout" && n != "stderr") names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(BenchLlamaTest, MakeLlamaWritesHuggingFaceShards) {
  const std::string dir = testing::ScratchDir("bench_llama_layout");
  const std::string model = dir + "/model";
  RunResult r = RunBench(dir, TinyArgs(model, 7, 2));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("model.safetensors.index.json"));
  EXPECT_THAT(r.out, HasSubstr("total: 21 tensors"));

  auto index = ReadShardIndex(model + "/model.safetensors.index.json");
  ASSERT_TRUE(index.ok()) << index.status();
  const size_t n = index->shards.size();
  ASSERT_GE(n, 2u);
  for (size_t s = 0; s < n; ++s) {
    EXPECT_EQ(index->shards[s], absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, n));
  }
  // weight_map: every tensor once, sorted by name (as save_pretrained writes it).
  const std::vector<Expected> expected = ExpectedTensors();
  ASSERT_EQ(index->weight_map.size(), expected.size());
  EXPECT_TRUE(std::is_sorted(index->weight_map.begin(), index->weight_map.end()));
  std::map<std::string, std::string> shard_of(index->weight_map.begin(), index->weight_map.end());

  // Shards follow state-dict order: the shard number never decreases along it.
  uint64_t total = 0;
  std::string prev_shard;
  std::map<std::string, std::vector<int64_t>> shape_of;
  for (const Expected& e : expected) {
    ASSERT_EQ(shard_of.count(e.name), 1u) << e.name;
    EXPECT_GE(shard_of[e.name], prev_shard) << e.name;
    prev_shard = shard_of[e.name];
    shape_of[e.name] = e.shape;
  }
  // Each shard: valid safetensors, F16, shapes as expected, tensors sorted by name and stored
  // in that order, exactly the tensors the index assigns it.
  for (size_t s = 0; s < n; ++s) {
    auto f = SafetensorsFile::Open(index->ShardPath(s));
    ASSERT_TRUE(f.ok()) << f.status();
    const auto& tensors = (*f)->header().tensors;
    ASSERT_FALSE(tensors.empty());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const TensorInfo& t = tensors[i];
      EXPECT_EQ(shard_of[t.name], index->shards[s]) << t.name;
      EXPECT_EQ(t.dtype, DType::kF16) << t.name;
      EXPECT_EQ(t.shape, shape_of[t.name]) << t.name;
      if (i > 0) {
        EXPECT_LT(tensors[i - 1].name, t.name);
        EXPECT_EQ(tensors[i - 1].end, t.begin);
      }
      total += t.nbytes();
      // Values: matrices N(0, 0.02^2) with outliers in every row; norms around 1.
      std::vector<float> v(t.numel);
      WidenToF32(DType::kF16, (*f)->TensorData(i).data(), t.numel, v.data());
      double sum = 0, sq = 0;
      for (float x : v) {
        ASSERT_TRUE(std::isfinite(x)) << t.name;
        sum += x;
        sq += static_cast<double>(x) * x;
      }
      const double mean = sum / static_cast<double>(v.size());
      const double sd = std::sqrt(std::max(0.0, sq / static_cast<double>(v.size()) - mean * mean));
      if (t.shape.size() == 1) {
        EXPECT_NEAR(mean, 1.0, 0.05) << t.name;
        EXPECT_GT(sd, 0.01) << t.name;
        EXPECT_LT(sd, 0.2) << t.name;
      } else {
        EXPECT_NEAR(mean, 0.0, 0.01) << t.name;
        EXPECT_GT(sd, 0.015) << t.name;  // includes the outliers
        EXPECT_LT(sd, 0.08) << t.name;
        const int64_t cols = t.shape[1];
        for (int64_t row = 0; row < t.shape[0]; ++row) {
          int big = 0;
          for (int64_t c = 0; c < cols; ++c) big += std::fabs(v[row * cols + c]) >= 0.0999f;
          EXPECT_GE(big, 1) << t.name << " row " << row;  // an outlier of 5 sigma or more
          EXPECT_LE(big, 4 + 2) << t.name << " row " << row;
        }
      }
    }
  }
  ASSERT_NE(index->metadata.Find("total_size"), nullptr);
  EXPECT_EQ(index->metadata.Find("total_size")->as_uint64(), total);
  EXPECT_EQ(total, 2u * (2 * kVocab * kHidden + kHidden +
                          kLayers * (4 * kHidden * kHidden + 3 * kInter * kHidden + 2 * kHidden)));
}

TEST(BenchLlamaTest, MakeLlamaIsDeterministicWhateverTheThreads) {
  const std::string dir = testing::ScratchDir("bench_llama_determinism");
  ASSERT_EQ(RunBench(dir, TinyArgs(dir + "/a", 7, 1)).exit_code, 0);
  ASSERT_EQ(RunBench(dir, TinyArgs(dir + "/b", 7, 2)).exit_code, 0);
  ASSERT_EQ(RunBench(dir, TinyArgs(dir + "/c", 8, 2)).exit_code, 0);
  const std::vector<std::string> files = FilesIn(dir + "/a");
  ASSERT_GE(files.size(), 3u);
  EXPECT_EQ(FilesIn(dir + "/b"), files);
  bool seed_changes_something = false;
  for (const std::string& f : files) {
    const std::string a = testing::ReadAll(dir + "/a/" + f);
    EXPECT_EQ(a, testing::ReadAll(dir + "/b/" + f)) << f;
    if (f.find(".safetensors") != std::string::npos && f.find(".json") == std::string::npos &&
        a != testing::ReadAll(dir + "/c/" + f)) {
      seed_changes_something = true;
    }
  }
  EXPECT_TRUE(seed_changes_something);
}

TEST(BenchLlamaTest, CompressLlamaLocalAndServer) {
  const std::string dir = testing::ScratchDir("bench_llama_compress");
  const std::string model = dir + "/model";
  ASSERT_EQ(RunBench(dir, TinyArgs(model, 1, 2)).exit_code, 0);
  const std::string work = dir + "/work";
  fs::create_directories(work);

  RunResult r = RunBench(dir, {"compress-llama", model, "--codecs", "rtn,nosuchcodec", "--server",
                               "--threads", "2", "--json", "--work", work});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = ParseJson(r.out);
  ASSERT_TRUE(j.ok()) << j.status() << "\n" << r.out;
  const uint64_t weights =
      2 * kVocab * kHidden + kHidden + kLayers * (4 * kHidden * kHidden + 3 * kInter * kHidden + 2 * kHidden);
  EXPECT_EQ(j->Find("weights")->as_uint64(), weights);
  EXPECT_EQ(j->Find("tensors")->as_uint64(), 21u);
  ASSERT_NE(j->Find("read"), nullptr);
  EXPECT_TRUE(j->Find("read")->Find("best_s")->is_number());
  const JsonValue* runs = j->Find("runs");
  ASSERT_TRUE(runs != nullptr && runs->is_array());
  // rtn local, rtn server, rtn server-in, rtn server-inout, nosuchcodec (skipped once)
  ASSERT_EQ(runs->items().size(), 5u);
  const char* modes[] = {"local", "server", "server-in", "server-inout"};
  for (int k = 0; k < 4; ++k) {
    const JsonValue& run = runs->items()[k];
    EXPECT_EQ(run.Find("codec")->string_value(), "rtn");
    EXPECT_EQ(run.Find("mode")->string_value(), modes[k]);
    EXPECT_EQ(run.Find("status")->string_value(), "ok");
    EXPECT_EQ(run.Find("runs")->as_uint64(), 1u);
    EXPECT_GT(run.Find("client_max_rss_kib")->number(), 0);
    EXPECT_GT(run.Find("output_bytes")->number(), 0);
    EXPECT_GT(run.Find("bits_per_weight")->number(), 4.0);  // 4 bits + scales + headers
    EXPECT_EQ(run.Find("server_vmhwm_kib") != nullptr, k >= 1);
    if (k >= 1) {
      EXPECT_GT(run.Find("server_vmhwm_kib")->number(), 0);
    }
  }
  // Uploaded or read in place, the server writes local mode's artifact.
  EXPECT_EQ(runs->items()[1].Find("output_bytes")->number(),
            runs->items()[0].Find("output_bytes")->number());
  EXPECT_EQ(runs->items()[2].Find("output_bytes")->number(),
            runs->items()[0].Find("output_bytes")->number());
  EXPECT_EQ(runs->items()[3].Find("output_bytes")->number(),
            runs->items()[0].Find("output_bytes")->number());
  EXPECT_EQ(runs->items()[4].Find("codec")->string_value(), "nosuchcodec");
  EXPECT_EQ(runs->items()[4].Find("status")->string_value(), "skipped (unknown codec)");
  // The scratch folder is gone.
  EXPECT_TRUE(fs::is_empty(work));

  // The table.
  r = RunBench(dir, {"compress-llama", model, "--codecs", "rtn,nosuchcodec", "--threads", "1",
                     "--work", work});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("read (cat of the shards > /dev/null)"));
  EXPECT_THAT(r.out, HasSubstr("rtn 4b g128  local"));
  EXPECT_THAT(r.out, HasSubstr("nosuchcodec: skipped (unknown codec)"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("rtn 4b g128  server")));

  // A missing model fails (exit 1); missing arguments are usage errors (exit 2).
  EXPECT_EQ(RunBench(dir, {"compress-llama", dir + "/nonexistent"}).exit_code, 1);
  EXPECT_EQ(RunBench(dir, {"compress-llama"}).exit_code, 2);
  EXPECT_EQ(RunBench(dir, {"make-llama", "--layers", "2"}).exit_code, 2);
}

}  // namespace
}  // namespace hc
