// hyperc: the command-line client. Local mode runs the core pipeline in process.
#include <malloc.h>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/cli_util.h"
#include "client/jobs_cli.h"
#include "client/report.h"
#include "core/base/strings.h"
#include "core/codec/codec.h"
#include "core/pipeline/pipeline.h"

namespace hc::cli {
namespace {

constexpr char kUsage[] =
    "hyperc: data-free neural-network weight compression (Hyper-Compression and baselines)\n"
    "\n"
    "usage: hyperc <command> [options]\n"
    "\n"
    "commands:\n"
    "  compress IN -o OUT     compress a .safetensors file or a shard index (.json)\n"
    "  decompress ART -o OUT  restore a model from an artifact (file, index or directory)\n"
    "  inspect ART [--json]   per-tensor table (or JSON) of an artifact\n"
    "  codecs                 list codecs and their options\n"
    "  report [MODEL...]      the main job: compress, decompress and compare codecs on models\n"
    "  jobs ...               batch jobs on a hyperc-server (submit, watch, get, list, cancel,\n"
    "                         fetch, delete)\n"
    "\n"
    "Run 'hyperc <command> --help' for a command's options.\n";

constexpr char kCompressUsage[] =
    "usage: hyperc compress IN -o OUT [--codec NAME] [codec options] [--threads N]\n"
    "                       [--skip REGEX]... [--memory-budget SIZE] [--quiet] [--json FILE]\n"
    "                       [--target-bpw X] [--override REGEX=SPEC]...\n"
    "\n"
    "  IN                 a .safetensors file, or a Hugging Face model.safetensors.index.json\n"
    "  -o, --output OUT   the artifact: a file, or a directory for a sharded IN\n"
    "  --codec NAME       rtn (default) or another codec from 'hyperc codecs'\n"
    "  --KEY VALUE        a codec option, e.g. --bits 4 --group-size 128 (dashes become\n"
    "                     underscores); also --opt KEY=VALUE\n"
    "  --threads N        worker threads (default: one per core)\n"
    "  --skip REGEX       store tensors whose name matches REGEX raw (repeatable)\n"
    "  --target-bpw X     model-level bits per weight, every stored byte counted (hc2):\n"
    "                     small and 1-D tensors get 8, the rest share what is left\n"
    "  --override R=SPEC  tensors matching regex R: SPEC 'raw', or codec options\n"
    "                     'key=value[,key=value]' (e.g. 'lm_head=bpw=6'); first match wins\n"
    "  --memory-budget S  bytes in flight at once (input plus the codec's working\n"
    "                     memory), e.g. 64M (default 256M)\n"
    "  --no-sync          do not fsync the output\n"
    "  --quiet            no progress and no summary table\n"
    "  --json FILE        also write the per-tensor report as JSON ('-' for stdout)\n"
    "  --server HOST:PORT compress on a hyperc-server instead of in process (same artifact)\n"
    "  --server-input     with --server: IN is read by the server in place, no upload (it\n"
    "                     must lie in one of the server's --input-root directories; a\n"
    "                     relative IN is made absolute against this directory)\n"
    "  --server-output    with --server: the server writes OUT on its side, nothing comes\n"
    "                     back (inside one of its --output-root directories; made absolute\n"
    "                     likewise)\n"
    "  --token-file F     bearer token for the server; --tls-ca F: CA of a TLS server\n";

constexpr char kDecompressUsage[] =
    "usage: hyperc decompress ART -o OUT [--threads N] [--quiet]\n"
    "\n"
    "  ART                an artifact file, a hyperc.index.json, or a directory holding one\n"
    "  -o, --output OUT   a .safetensors file (a directory for a sharded artifact)\n";

constexpr char kInspectUsage[] =
    "usage: hyperc inspect ART [--json]\n"
    "\n"
    "  Prints per tensor: shape, dtype, codec, weights, bits per weight, MAE, relative MSE,\n"
    "  SNR in dB and dB above the Gaussian rate-distortion bound D(R) = var * 2^(-2R),\n"
    "  then totals. --json prints {\"tensors\":[...],\"total\":{...}}.\n";

bool IsHelp(const std::string& a) { return a == "--help" || a == "-h"; }

int Compress(Args& args) {
  CompressOptions opt;
  std::string input, output, json_path;
  bool quiet = false;
  RemoteFlags remote;
  while (!args.done()) {
    if (IsHelp(args.Peek())) {
      std::fputs(kCompressUsage, stdout);
      return 0;
    }
    {
      auto took = remote.Take(args);
      if (!took.ok()) return Fail(took.status(), 2);
      if (*took) continue;
    }
    absl::StatusOr<std::optional<std::string>> v;
#define HC_FLAG(name, body)                         \
  v = args.Value(name);                             \
  if (!v.ok()) return Fail(v.status(), 2);          \
  if (v->has_value()) {                             \
    const std::string& val = **v;                   \
    body;                                           \
    continue;                                       \
  }
    HC_FLAG("-o", output = val);
    HC_FLAG("--output", output = val);
    HC_FLAG("--codec", opt.codec = val);
    HC_FLAG("--json", json_path = val);
    HC_FLAG("--skip", opt.skip.push_back(val));
    HC_FLAG("--override", opt.overrides.push_back(val));
    HC_FLAG("--target-bpw", {
      if (!absl::SimpleAtod(val, &opt.target_bpw)) return Fail(absl::InvalidArgumentError("--target-bpw needs a number"), 2);
    });
    HC_FLAG("--threads", {
      if (!absl::SimpleAtoi(val, &opt.threads)) return Fail(absl::InvalidArgumentError("--threads needs an integer"), 2);
    });
    HC_FLAG("--memory-budget", {
      auto b = ParseByteSize(val);
      if (!b.ok()) return Fail(b.status(), 2);
      opt.memory_budget = *b;
    });
    HC_FLAG("--opt", {
      const size_t eq = val.find('=');
      if (eq == std::string::npos) return Fail(absl::InvalidArgumentError("--opt needs KEY=VALUE"), 2);
      opt.codec_options.Set(val.substr(0, eq), val.substr(eq + 1));
    });
#undef HC_FLAG
    if (args.Switch("--quiet")) { quiet = true; continue; }
    if (args.Switch("--no-sync")) { opt.sync = false; continue; }
    std::string a = args.Next();
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      // Any other --key value is a codec option.
      std::string key = a.substr(2), value;
      const size_t eq = key.find('=');
      if (eq != std::string::npos) {
        value = key.substr(eq + 1);
        key.resize(eq);
      } else if (!args.done()) {
        value = args.Next();
      } else {
        return Fail(absl::InvalidArgumentError(absl::StrCat(a, " needs a value")), 2);
      }
      opt.codec_options.Set(absl::StrReplaceAll(key, {{"-", "_"}}), value);
      continue;
    }
    if (!input.empty()) return Fail(absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", a, "\"")), 2);
    input = a;
  }
  if (input.empty() || output.empty()) {
    std::fputs(kCompressUsage, stderr);
    return Fail(absl::InvalidArgumentError("compress needs IN and -o OUT"), 2);
  }
  if ((remote.server_input || remote.server_output) && remote.server.empty()) {
    return Fail(
        absl::InvalidArgumentError("--server-input and --server-output need --server HOST:PORT"),
        2);
  }
  if (!remote.server.empty()) {
    if (!json_path.empty()) return Fail(absl::InvalidArgumentError("--json is for local mode (use hyperc inspect --json on the artifact)"), 2);
    return CompressRemote(input, output, opt, remote, quiet);
  }
  ProgressPrinter printer("compress", !quiet);
  auto summary = CompressModel(input, output, opt, [&](const Progress& p) { printer(p); });
  printer.Finish();
  if (!summary.ok()) return Fail(summary.status());
  if (!quiet) {
    std::fputs(SummaryTable(*summary).c_str(), stdout);
    std::printf("wrote %s in %.2fs\n", output.c_str(), summary->seconds);
  }
  if (!json_path.empty()) {
    const std::string j = ReportJson(*summary);
    if (json_path == "-") {
      std::fputs(j.c_str(), stdout);
    } else if (FILE* f = std::fopen(json_path.c_str(), "w")) {
      std::fputs(j.c_str(), f);
      std::fclose(f);
    } else {
      return Fail(absl::UnavailableError(absl::StrCat(json_path, ": cannot write: ", std::strerror(errno))));
    }
  }
  return 0;
}

int Decompress(Args& args) {
  std::string input, output, threads_text;
  int threads = 0;
  bool quiet = false;
  while (!args.done()) {
    if (IsHelp(args.Peek())) {
      std::fputs(kDecompressUsage, stdout);
      return 0;
    }
    auto took = args.Take({"-o", "--output"}, &output);
    if (took.ok() && !*took) took = args.Take({"--threads"}, &threads_text);
    if (!took.ok()) return Fail(took.status(), 2);
    if (*took) continue;
    if (args.Switch("--quiet")) {
      quiet = true;
      continue;
    }
    std::string a = args.Next();
    if (a.rfind("-", 0) == 0 || !input.empty()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", a, "\"")), 2);
    }
    input = a;
  }
  if (!threads_text.empty() && (!absl::SimpleAtoi(threads_text, &threads) || threads < 0)) {
    return Fail(absl::InvalidArgumentError("--threads needs a non-negative integer"), 2);
  }
  if (input.empty() || output.empty()) {
    std::fputs(kDecompressUsage, stderr);
    return Fail(absl::InvalidArgumentError("decompress needs ART and -o OUT"), 2);
  }
  ProgressPrinter printer("decompress", !quiet);
  auto summary = DecompressModel(input, output, threads, [&](const Progress& p) { printer(p); });
  printer.Finish();
  if (!summary.ok()) return Fail(summary.status());
  if (!quiet) std::printf("wrote %s (%zu tensors) in %.2fs\n", output.c_str(), summary->tensors.size(), summary->seconds);
  return 0;
}

int Inspect(Args& args) {
  std::string input;
  bool json = false;
  while (!args.done()) {
    if (IsHelp(args.Peek())) {
      std::fputs(kInspectUsage, stdout);
      return 0;
    }
    if (args.Switch("--json")) { json = true; continue; }
    std::string a = args.Next();
    if (a.rfind("-", 0) == 0 || !input.empty()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", a, "\"")), 2);
    }
    input = a;
  }
  if (input.empty()) {
    std::fputs(kInspectUsage, stderr);
    return Fail(absl::InvalidArgumentError("inspect needs ART"), 2);
  }
  auto summary = InspectArtifact(input);
  if (!summary.ok()) return Fail(summary.status());
  std::fputs((json ? ReportJson(*summary) : TensorTable(*summary)).c_str(), stdout);
  return 0;
}

int Codecs(Args& args) {
  for (const CodecDescription& d : ListCodecs()) {
    std::printf("%s: %s\n", d.name.c_str(), d.summary.c_str());
    for (const auto& [k, help] : d.options) {
      std::printf("  --%s  %s\n", absl::StrReplaceAll(k, {{"_", "-"}}).c_str(), help.c_str());
    }
  }
  return 0;
}

}  // namespace
}  // namespace hc::cli

int main(int argc, char** argv) {
  // Buffers of a few MiB (upload and artifact chunks, gRPC slices, small tensors) come and go
  // all the time: keep them in the heap instead of mapping, faulting in and zeroing fresh pages
  // for each (about a third of the CPU time of an upload over loopback).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  using namespace hc::cli;
  if (argc < 2 || IsHelp(argv[1])) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  Args args(argc, argv, 2);
  if (cmd == "compress") return Compress(args);
  if (cmd == "decompress") return Decompress(args);
  if (cmd == "inspect") return Inspect(args);
  if (cmd == "codecs") return Codecs(args);
  if (cmd == "report") return Report(args);
  if (cmd == "jobs") return Jobs(args);
  std::fprintf(stderr, "hyperc: error: unknown command \"%s\"\n%s", cmd.c_str(), kUsage);
  return 2;
}
