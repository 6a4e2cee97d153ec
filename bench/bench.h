// hyperc-bench: shared pieces of the benchmark subcommands.
//
// Each subcommand lives in its own file and is listed once in main.cc's table. A subcommand gets
// its arguments (without the program and subcommand names), prints its results on stdout and
// returns the process exit code (0 ok, 1 failure, 2 usage error).
#ifndef HC_BENCH_BENCH_H_
#define HC_BENCH_BENCH_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace hc::bench {

/// One subcommand: `hyperc-bench <name> ...`.
struct Subcommand {
  const char* name;
  /// One line for the top-level usage.
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

/// `hyperc-bench codecs`: encode/decode throughput of hc1 and rtn (bench/codecs.cc).
int RunCodecs(const std::vector<std::string>& args);

/// `hyperc-bench load`: concurrent clients against a hyperc-server (bench/load.cc).
int RunLoad(const std::vector<std::string>& args);

/// `hyperc-bench rd`: rate-distortion table of hc2, hc2 fixed-rate, rtn and hc1 (bench/rd.cc).
int RunRd(const std::vector<std::string>& args);

/// `hyperc-bench make-llama`: writes a synthetic LLaMA-2-7B-shaped sharded checkpoint
/// (bench/make_llama.cc).
int RunMakeLlama(const std::vector<std::string>& args);

/// `hyperc-bench compress-llama`: times `hyperc compress` on a sharded model, local and through
/// a hyperc-server, against reading its files (bench/compress_llama.cc).
int RunCompressLlama(const std::vector<std::string>& args);

/// `hyperc-bench gemv`: fused decode+GEMV kernels against F16/F32 GEMV (bench/gemv.cc).
int RunGemv(const std::vector<std::string>& args);

/// The shared data folder: $HC_SHARED_DIR, else ../shared beside the source tree.
std::string SharedDir();

/// Prints "hyperc-bench: <message>" to stderr and returns `code`.
int Fail(const absl::Status& status, int code = 1);
int Fail(absl::string_view message, int code = 1);

/// Splits args[i] into a flag and its value: "--key=value", or "--key value" when
/// `takes_value(key)` (args[i + 1] is consumed, i advanced). Anything else is returned as the key
/// with an empty value. False when the value is missing (args[i] was the last argument).
bool SplitFlag(const std::vector<std::string>& args, size_t& i,
               absl::FunctionRef<bool(const std::string&)> takes_value, std::string* key,
               std::string* value);

/// Seconds since an arbitrary start (steady clock).
inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace hc::bench

#endif  // HC_BENCH_BENCH_H_
