// hyperc-bench: benchmarks of the hyperc core, one subcommand per file (see bench.h).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench.h"

namespace hc::bench {
namespace {

// Add new subcommands here (and their file in bench/CMakeLists.txt).
constexpr Subcommand kSubcommands[] = {
    {"codecs", "encode/decode throughput of hc1 (llm), hc2 and rtn (4-bit, g128) on 1 and 2 threads",
     RunCodecs},
    {"load", "N concurrent clients compressing through hyperc-server for S seconds (loopback)",
     RunLoad},
    {"rd", "rate-distortion table per model: hc2 (target bpw and fixed rate), rtn g128, hc1",
     RunRd},
    {"make-llama", "write a synthetic LLaMA-2-7B-shaped sharded F16 checkpoint (streaming)",
     RunMakeLlama},
    {"compress-llama", "time hyperc compress on a sharded model, local and via hyperc-server",
     RunCompressLlama},
    {"gemv", "fused decode+GEMV (hc2 fixed, rtn, hc1) vs F16/F32 GEMV, 4096x4096 and 11008x4096",
     RunGemv},
};

void PrintUsage(std::FILE* out) {
  std::fputs(
      "hyperc-bench: benchmarks of the hyperc core\n"
      "\n"
      "usage: hyperc-bench <command> [options]\n"
      "\n"
      "commands:\n",
      out);
  for (const Subcommand& s : kSubcommands) std::fprintf(out, "  %-14s %s\n", s.name, s.summary);
  std::fputs("\nRun 'hyperc-bench <command> --help' for a command's options.\n", out);
}

}  // namespace

std::string SharedDir() {
  if (const char* d = std::getenv("HC_SHARED_DIR")) return d;
  return HC_BENCH_SHARED_DIR;
}

bool SplitFlag(const std::vector<std::string>& args, size_t& i,
               absl::FunctionRef<bool(const std::string&)> takes_value, std::string* key,
               std::string* value) {
  const std::string& a = args[i];
  value->clear();
  if (const size_t eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
    *key = a.substr(0, eq);
    *value = a.substr(eq + 1);
    return true;
  }
  *key = a;
  if (!takes_value(a)) return true;
  if (i + 1 >= args.size()) return false;
  *value = args[++i];
  return true;
}

int Fail(const absl::Status& status, int code) {
  return Fail(absl::string_view(status.message()), code);
}

int Fail(absl::string_view message, int code) {
  std::fprintf(stderr, "hyperc-bench: %s\n", std::string(message).c_str());
  return code;
}

}  // namespace hc::bench

int main(int argc, char** argv) {
  using hc::bench::kSubcommands;
  if (argc < 2) {
    hc::bench::PrintUsage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    hc::bench::PrintUsage(stdout);
    return 0;
  }
  for (const hc::bench::Subcommand& s : kSubcommands) {
    if (cmd == s.name) return s.run(std::vector<std::string>(argv + 2, argv + argc));
  }
  hc::bench::PrintUsage(stderr);
  return hc::bench::Fail(absl::StrCat("unknown command \"", cmd, "\""), 2);
}
