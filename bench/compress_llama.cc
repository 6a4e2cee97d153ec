// hyperc-bench compress-llama: times the real `hyperc compress` executable on a sharded model
// (typically one written by `hyperc-bench make-llama`), per codec, in local mode and through a
// hyperc-server it starts itself, against the time it takes just to read the model's files.
//
//   hyperc-bench make-llama --out /tmp/llama32
//   hyperc-bench compress-llama /tmp/llama32 --codecs rtn,hc1 --server [--threads 2] [--json]
//
// Each run is a child process (build/bin/hyperc beside hyperc-bench) compressing
// DIR/model.safetensors.index.json into a scratch folder (removed afterwards): wall time,
// weights/s, the child's peak RSS and CPU time (wait4), and in server mode the server's VmHWM
// and CPU time from /proc (a fresh hyperc-server on 127.0.0.1, ephemeral port, per run, so the
// high-water mark belongs to that run). "x read" is the wall time over the best of two timings
// of `cat` of the shards to /dev/null, one before and one after the runs; the share of the
// model's pages in the page cache (mincore) is printed with each timing, since a warm cache
// makes both reading and compressing faster than the disk allows. Codec options: rtn bits 4,
// group_size 128; hc1 preset llm; anything else its defaults. A codec that `hyperc compress`
// does not know is reported as "X: skipped (unknown codec)".
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench.h"
#include "core/base/json.h"
#include "core/io/safetensors_file.h"
#include "core/io/shard_index.h"

namespace hc::bench {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: hyperc-bench compress-llama DIR [--codecs rtn,hc1,hc2] [--threads N] [--repeat N]\n"
    "                                   [--server] [--json] [--work PARENT]\n"
    "                                   [--hyperc-bin PATH] [--server-bin PATH]\n"
    "\n"
    "  Times `hyperc compress DIR/model.safetensors.index.json` once per codec (rtn: bits 4,\n"
    "  group 128; hc1: preset llm; others: defaults) in local mode and, with --server, through\n"
    "  a hyperc-server started on 127.0.0.1 for each run: uploading the model (mode server),\n"
    "  letting the server read it in place (server-in), and also write the artifact in place\n"
    "  (server-inout). Prints wall time, weights/s, the\n"
    "  ratio to the time of reading the shards (cat, best of before and after), peak RSS and\n"
    "  CPU time of the client and the server, and the artifact size. Unknown codecs are\n"
    "  skipped.\n"
    "\n"
    "  --codecs LIST      comma-separated codecs (default rtn,hc1,hc2)\n"
    "  --threads N        worker threads of hyperc and of the server (default 2)\n"
    "  --repeat N         runs per codec and mode; best time, largest RSS kept (default 1)\n"
    "  --server           also run through a hyperc-server (default: local mode only)\n"
    "  --json             print one JSON object instead of the table\n"
    "  --work PARENT      where the scratch folder goes (default $TMPDIR or /tmp)\n"
    "  --hyperc-bin PATH  default: hyperc beside hyperc-bench; --server-bin likewise\n";

struct Model {
  std::string index_path;
  std::vector<std::string> shards;  // full paths
  uint64_t tensors = 0;
  uint64_t weights = 0;
  uint64_t bytes = 0;  // shard file sizes
};

absl::StatusOr<Model> LoadModel(const std::string& dir_or_index) {
  Model m;
  m.index_path = IsShardIndexPath(dir_or_index)
                     ? dir_or_index
                     : dir_or_index + "/model.safetensors.index.json";
  auto index = ReadShardIndex(m.index_path);
  if (!index.ok()) return index.status();
  for (size_t i = 0; i < index->shards.size(); ++i) {
    const std::string path = index->ShardPath(i);
    auto f = SafetensorsFile::Open(path);
    if (!f.ok()) return f.status();
    for (const TensorInfo& t : (*f)->header().tensors) {
      ++m.tensors;
      if (IsCompressibleFloat(t.dtype)) m.weights += t.numel;
    }
    std::error_code ec;
    m.bytes += fs::file_size(path, ec);
    m.shards.push_back(path);
  }
  return m;
}

// The share of the files' pages resident in the page cache (mincore on a read-only mapping,
// which touches nothing).
double CachedFraction(const std::vector<std::string>& files) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t resident = 0, total = 0;
  for (const std::string& path : files) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      const size_t len = static_cast<size_t>(st.st_size);
      void* map = ::mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
      if (map != MAP_FAILED) {
        std::vector<unsigned char> vec((len + page - 1) / page);
        if (::mincore(map, len, vec.data()) == 0) {
          for (unsigned char v : vec) resident += v & 1;
          total += vec.size();
        }
        ::munmap(map, len);
      }
    }
    ::close(fd);
  }
  return total ? static_cast<double>(resident) / static_cast<double>(total) : 0.0;
}

struct ChildResult {
  int exit_code = -1;
  double wall_s = 0;
  long max_rss_kib = 0;
  double cpu_s = 0;
};

// Runs `argv` with stdout to `out_path` and stderr to `err_path` and waits for it.
ChildResult RunChild(const std::vector<std::string>& argv, const std::string& out_path,
                     const std::string& err_path) {
  ChildResult r;
  const double t0 = Now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o >= 0) ::dup2(o, 1);
    if (e >= 0) ::dup2(e, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  if (pid < 0) return r;
  int status = 0;
  struct rusage ru {};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  r.wall_s = Now() - t0;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.max_rss_kib = ru.ru_maxrss;
  r.cpu_s = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  return r;
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string LastLine(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// VmHWM of a live process (KiB), from /proc/PID/status.
long VmHwmKib(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      long kib = 0;
      std::istringstream(line.substr(6)) >> kib;
      return kib;
    }
  }
  return 0;
}

// User + system CPU seconds of a live process, from /proc/PID/stat.
double CpuSeconds(pid_t pid) {
  const std::string stat = ReadAll(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
  // After the ")": state is field 3, utime field 14, stime field 15.
  double ut = 0, st = 0;
  if (f.size() < 13 || !absl::SimpleAtod(f[11], &ut) || !absl::SimpleAtod(f[12], &st)) return 0;
  return (ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct ServerProcess {
  pid_t pid = -1;
  FILE* out = nullptr;  // its stdout (the "listening on" line)
  std::string address;
};

// Stops the server with SIGTERM and returns its exit code.
int StopServer(ServerProcess& s) {
  ::kill(s.pid, SIGTERM);
  int status = 0;
  while (::waitpid(s.pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::fclose(s.out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// `input_root`, `output_root`: the server's --input-root and --output-root (none when empty).
absl::StatusOr<ServerProcess> StartServer(const std::string& bin, const std::string& spool,
                                          int threads, const std::string& log,
                                          const std::string& input_root,
                                          const std::string& output_root) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  ServerProcess s;
  s.pid = ::fork();
  if (s.pid == 0) {
    ::dup2(pipefd[1], 1);
    const int e = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (e >= 0) ::dup2(e, 2);
    const std::string t = absl::StrCat(threads);
    std::vector<const char*> argv = {
        bin.c_str(),         "--listen", "127.0.0.1:0", "--spool-dir", spool.c_str(),
        "--metrics-address", "",         "--threads",   t.c_str()};
    if (!input_root.empty()) argv.insert(argv.end(), {"--input-root", input_root.c_str()});
    if (!output_root.empty()) argv.insert(argv.end(), {"--output-root", output_root.c_str()});
    argv.push_back(nullptr);
    ::execv(bin.c_str(), const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  ::close(pipefd[1]);
  if (s.pid < 0) {
    ::close(pipefd[0]);
    return absl::InternalError("fork failed");
  }
  s.out = ::fdopen(pipefd[0], "r");
  char line[512] = {0};
  if (s.out == nullptr || std::fgets(line, sizeof(line), s.out) == nullptr) {
    ::kill(s.pid, SIGKILL);
    ::waitpid(s.pid, nullptr, 0);
    if (s.out) std::fclose(s.out);
    return absl::UnavailableError(absl::StrCat(bin, " did not start: ", LastLine(ReadAll(log))));
  }
  const std::string l(line);
  const size_t at = l.find(" on ");
  if (at == std::string::npos) {
    StopServer(s);
    return absl::UnavailableError(absl::StrCat("unexpected server line: ", l));
  }
  s.address = l.substr(at + 4, l.find(' ', at + 4) - at - 4);
  return s;
}

uint64_t TreeBytes(const std::string& dir) {
  uint64_t n = 0;
  ForEachRegularFile(dir, [&](const std::string&, const struct stat& st) { n += st.st_size; });
  return n;
}

std::vector<std::string> CodecArgs(const std::string& codec) {
  if (codec == "rtn") return {"--bits", "4", "--group-size", "128"};
  if (codec == "hc1") return {"--preset", "llm"};
  return {};
}

std::string CodecLabel(const std::string& codec) {
  if (codec == "rtn") return "rtn 4b g128";
  if (codec == "hc1") return "hc1 llm";
  return codec;
}

// One row of the table: a codec in a mode, over --repeat runs.
struct Row {
  std::string codec, mode;
  std::string status = "ok";  // "ok", "skipped (unknown codec)" or "failed: ..."
  int runs = 0;
  double wall_s = 1e300;  // best
  double client_cpu_s = 0, server_cpu_s = 0;  // of the best run
  long client_rss_kib = 0, server_hwm_kib = 0;  // largest over the runs
  double cached_at_start = 0;  // page-cache share before the best run
  uint64_t output_bytes = 0;
};

struct ReadTiming {
  double seconds = 0;
  double cached_before = 0;  // page-cache share when it started
};

absl::StatusOr<ReadTiming> TimeRead(const Model& m, const std::string& work) {
  ReadTiming t;
  t.cached_before = CachedFraction(m.shards);
  std::vector<std::string> argv = {"/bin/cat"};
  argv.insert(argv.end(), m.shards.begin(), m.shards.end());
  const ChildResult r = RunChild(argv, "/dev/null", work + "/cat.err");
  if (r.exit_code != 0) {
    return absl::UnavailableError(absl::StrCat("cat failed: ", LastLine(ReadAll(work + "/cat.err"))));
  }
  t.seconds = r.wall_s;
  return t;
}

std::string BinBeside(const std::string& name) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return name;
  return DirName(std::string(self, static_cast<size_t>(n))) + "/" + name;
}

long MemTotalKib() {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("MemTotal:", 0) == 0) {
      long kib = 0;
      std::istringstream(line.substr(9)) >> kib;
      return kib;
    }
  }
  return 0;
}

// The 1-minute load average and the number of CPUs, to judge contention.
std::string LoadAverage() {
  std::string l = ReadAll("/proc/loadavg");
  l = l.substr(0, l.find(' '));
  return absl::StrCat(l.empty() ? "?" : l, " on ", ::sysconf(_SC_NPROCESSORS_ONLN), " CPUs");
}

// Removes the scratch folder however the run ends.
struct ScratchDir {
  std::string path;
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

double Mib(long kib) { return static_cast<double>(kib) / 1024.0; }

}  // namespace

int RunCompressLlama(const std::vector<std::string>& args) {
  std::string dir, hyperc_bin = BinBeside("hyperc"), server_bin = BinBeside("hyperc-server");
  std::string work_parent;
  if (const char* t = std::getenv("TMPDIR")) work_parent = t;
  if (work_parent.empty()) work_parent = "/tmp";
  std::vector<std::string> codecs = {"rtn", "hc1", "hc2"};
  int threads = 2, repeat = 1;
  bool with_server = false, json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--server") {
      with_server = true;
      continue;
    }
    if (a == "--json") {
      json = true;
      continue;
    }
    if (a.rfind("--", 0) != 0) {
      if (!dir.empty()) return Fail(absl::StrCat("unexpected argument \"", a, "\""), 2);
      dir = a;
      continue;
    }
    std::string key, v;
    if (!SplitFlag(args, i, [](const std::string&) { return true; }, &key, &v)) {
      return Fail(absl::StrCat(a, " needs a value"), 2);
    }
    bool ok = true;
    if (key == "--codecs") {
      codecs = absl::StrSplit(v, ',', absl::SkipEmpty());
      ok = !codecs.empty();
    } else if (key == "--threads") {
      ok = absl::SimpleAtoi(v, &threads) && threads >= 0 && threads <= 1024;
    } else if (key == "--repeat") {
      ok = absl::SimpleAtoi(v, &repeat) && repeat >= 1 && repeat <= 100;
    } else if (key == "--work") {
      work_parent = v;
    } else if (key == "--hyperc-bin") {
      hyperc_bin = v;
    } else if (key == "--server-bin") {
      server_bin = v;
    } else {
      std::fputs(kUsage, stderr);
      return Fail(absl::StrCat("unknown argument \"", a, "\""), 2);
    }
    if (!ok) return Fail(absl::StrCat(key, ": bad value \"", v, "\""), 2);
  }
  if (dir.empty()) {
    std::fputs(kUsage, stderr);
    return Fail("compress-llama needs DIR", 2);
  }
  auto model = LoadModel(dir);
  if (!model.ok()) return Fail(model.status());
  const Model& m = *model;

  ScratchDir scratch;
  {
    std::string tmpl = work_parent + "/hyperc-compress-llama-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) return Fail(absl::StrCat(tmpl, ": mkdtemp failed"));
    scratch.path = tmpl;
  }
  const std::string& work = scratch.path;
  if (!json) {
    std::printf("compress-llama: %s: %zu shards, %llu tensors, %.3e weights, %.2f GB; %d threads, "
                "repeat %d\n",
                m.index_path.c_str(), m.shards.size(), static_cast<unsigned long long>(m.tensors),
                static_cast<double>(m.weights), static_cast<double>(m.bytes) / 1e9, threads, repeat);
    std::fflush(stdout);
  }

  const std::string load_before = LoadAverage();
  auto read_before = TimeRead(m, work);
  if (!read_before.ok()) return Fail(read_before.status());

  std::vector<Row> rows;
  bool failed = false;
  const std::vector<std::string> modes =
      with_server ? std::vector<std::string>{"local", "server", "server-in", "server-inout"}
                  : std::vector<std::string>{"local"};
  for (const std::string& codec : codecs) {
    bool skip_codec = false;
    for (const std::string& mode : modes) {
      if (skip_codec) break;
      Row row;
      row.codec = codec;
      row.mode = mode;
      for (int run = 0; run < repeat; ++run) {
        const std::string out = work + "/artifact";
        const std::string log_out = work + "/hyperc.out", log_err = work + "/hyperc.err";
        std::vector<std::string> argv = {hyperc_bin, "compress", m.index_path, "-o", out,
                                         "--codec", codec};
        for (const std::string& a : CodecArgs(codec)) argv.push_back(a);
        argv.insert(argv.end(), {"--threads", absl::StrCat(threads), "--quiet"});
        ServerProcess server;
        if (mode != "local") {
          // "server-in": the server reads the model in place (--input-root, --server-input);
          // "server-inout": and writes the artifact in place (--output-root, --server-output).
          const bool in_place = mode != "server", out_in_place = mode == "server-inout";
          const std::string root =
              in_place ? fs::absolute(m.index_path).parent_path().string() : "";
          auto s = StartServer(server_bin, work + "/spool", threads, work + "/server.log", root,
                               out_in_place ? fs::absolute(work).string() : "");
          if (!s.ok()) {
            row.status = absl::StrCat("failed: ", s.status().message());
            break;
          }
          server = *s;
          argv.insert(argv.end(), {"--server", server.address});
          if (in_place) argv.push_back("--server-input");
          if (out_in_place) argv.push_back("--server-output");
        }
        const double cached = CachedFraction(m.shards);
        const ChildResult r = RunChild(argv, log_out, log_err);
        double server_cpu = 0;
        long server_hwm = 0;
        if (server.pid > 0) {
          server_hwm = VmHwmKib(server.pid);
          server_cpu = CpuSeconds(server.pid);
          StopServer(server);
        }
        const uint64_t out_bytes = TreeBytes(out);
        std::error_code ec;
        fs::remove_all(out, ec);
        fs::remove_all(work + "/spool", ec);
        if (r.exit_code != 0) {
          const std::string err = ReadAll(log_err);
          if (absl::StrContains(err, "unknown codec")) {
            row.status = "skipped (unknown codec)";
            skip_codec = true;
          } else {
            row.status = absl::StrCat("failed (exit ", r.exit_code, "): ", LastLine(err));
          }
          break;
        }
        ++row.runs;
        row.client_rss_kib = std::max(row.client_rss_kib, r.max_rss_kib);
        row.server_hwm_kib = std::max(row.server_hwm_kib, server_hwm);
        if (r.wall_s < row.wall_s) {
          row.wall_s = r.wall_s;
          row.client_cpu_s = r.cpu_s;
          row.server_cpu_s = server_cpu;
          row.cached_at_start = cached;
          row.output_bytes = out_bytes;
        }
      }
      if (row.status != "ok" && row.status.rfind("skipped", 0) != 0) failed = true;
      rows.push_back(row);
      if (!json && row.status != "ok" && row.status.rfind("skipped", 0) != 0) {
        std::fprintf(stderr, "%s %s: %s\n", codec.c_str(), mode.c_str(), row.status.c_str());
      }
    }
  }

  auto read_after = TimeRead(m, work);
  if (!read_after.ok()) return Fail(read_after.status());
  const std::string load_after = LoadAverage();
  const double read_s = std::min(read_before->seconds, read_after->seconds);
  const double gb = static_cast<double>(m.bytes) / 1e9;
  const double ram_gb = static_cast<double>(MemTotalKib()) / (1024.0 * 1024.0);

  if (json) {
    JsonValue root = JsonValue::Object();
    root.Add("index", JsonValue::String(m.index_path));
    root.Add("shards", JsonValue::Int(static_cast<int64_t>(m.shards.size())));
    root.Add("tensors", JsonValue::Int(static_cast<int64_t>(m.tensors)));
    root.Add("weights", JsonValue::Int(static_cast<int64_t>(m.weights)));
    root.Add("bytes", JsonValue::Int(static_cast<int64_t>(m.bytes)));
    root.Add("threads", JsonValue::Int(threads));
    root.Add("repeat", JsonValue::Int(repeat));
    root.Add("load_before", JsonValue::String(load_before));
    root.Add("load_after", JsonValue::String(load_after));
    JsonValue read = JsonValue::Object();
    read.Add("before_s", JsonValue::Number(read_before->seconds));
    read.Add("before_cached", JsonValue::Number(read_before->cached_before));
    read.Add("after_s", JsonValue::Number(read_after->seconds));
    read.Add("after_cached", JsonValue::Number(read_after->cached_before));
    read.Add("best_s", JsonValue::Number(read_s));
    root.Add("read", std::move(read));
    JsonValue runs = JsonValue::Array();
    for (const Row& r : rows) {
      JsonValue o = JsonValue::Object();
      o.Add("codec", JsonValue::String(r.codec));
      o.Add("mode", JsonValue::String(r.mode));
      o.Add("status", JsonValue::String(r.status));
      if (r.status == "ok") {
        o.Add("runs", JsonValue::Int(r.runs));
        o.Add("wall_s", JsonValue::Number(r.wall_s));
        o.Add("weights_per_s", JsonValue::Number(static_cast<double>(m.weights) / r.wall_s));
        o.Add("ratio_to_read", JsonValue::Number(read_s > 0 ? r.wall_s / read_s : 0));
        o.Add("client_max_rss_kib", JsonValue::Int(r.client_rss_kib));
        o.Add("client_cpu_s", JsonValue::Number(r.client_cpu_s));
        if (r.mode != "local") {
          o.Add("server_vmhwm_kib", JsonValue::Int(r.server_hwm_kib));
          o.Add("server_cpu_s", JsonValue::Number(r.server_cpu_s));
        }
        o.Add("cached_at_start", JsonValue::Number(r.cached_at_start));
        o.Add("output_bytes", JsonValue::Int(static_cast<int64_t>(r.output_bytes)));
        o.Add("bits_per_weight", JsonValue::Number(
                                     m.weights ? 8.0 * static_cast<double>(r.output_bytes) /
                                                     static_cast<double>(m.weights)
                                               : 0));
      }
      runs.Push(std::move(o));
    }
    root.Add("runs", std::move(runs));
    std::printf("%s\n", root.Dump().c_str());
    return failed ? 1 : 0;
  }

  std::printf("read (cat of the shards > /dev/null): before %.2f s (%.0f%% cached), after %.2f s "
              "(%.0f%% cached); best %.2f s = %.2f GB/s\n",
              read_before->seconds, 100 * read_before->cached_before, read_after->seconds,
              100 * read_after->cached_before, read_s, read_s > 0 ? gb / read_s : 0.0);
  std::printf("\n%-12s %-12s %9s %11s %7s %10s %10s %9s %9s %7s %8s %6s\n", "codec", "mode",
              "wall s", "weights/s", "x read", "client MiB", "server MiB", "client s", "server s",
              "cached", "out MB", "bpw");
  for (const Row& r : rows) {
    if (r.status != "ok") {
      if (r.status.rfind("skipped", 0) == 0) {
        std::printf("%s: %s\n", r.codec.c_str(), r.status.c_str());
      } else {
        std::printf("%-12s %-12s %s\n", CodecLabel(r.codec).c_str(), r.mode.c_str(),
                    r.status.c_str());
      }
      continue;
    }
    const bool srv = r.mode != "local";
    std::printf(
        "%-12s %-12s %9.2f %11.3e %7.2f %10.0f %10s %9.2f %9s %6.0f%% %8.1f %6.3f\n",
        CodecLabel(r.codec).c_str(), r.mode.c_str(), r.wall_s,
        static_cast<double>(m.weights) / r.wall_s, read_s > 0 ? r.wall_s / read_s : 0.0,
        Mib(r.client_rss_kib), srv ? absl::StrFormat("%.0f", Mib(r.server_hwm_kib)).c_str() : "-",
        r.client_cpu_s, srv ? absl::StrFormat("%.2f", r.server_cpu_s).c_str() : "-",
        100 * r.cached_at_start, static_cast<double>(r.output_bytes) / 1e6,
        m.weights ? 8.0 * static_cast<double>(r.output_bytes) / static_cast<double>(m.weights)
                  : 0.0);
  }
  std::printf(
      "\nwall s: best of %d run(s) of the hyperc child; x read: wall / best read time;\n"
      "client MiB: its peak RSS (wait4); server MiB: the server's VmHWM (a fresh server per run);\n"
      "mode: local (in process); server (uploaded to a hyperc-server, artifact sent back);\n"
      "server-in (the server reads the model in place: --input-root, --server-input; artifact\n"
      "sent back); server-inout (and writes the artifact in place: --output-root,\n"
      "--server-output).\n"
      "client s, server s: CPU seconds; cached: share of the model's pages in the page cache when\n"
      "the run started (mincore); out MB, bpw: artifact bytes (shards + index), bits per weight.\n"
      "Load average: %s before, %s after (other processes slow the runs down).\n"
      "Page cache: the model is %.2f GB and this machine has %.1f GiB of RAM: %s\n"
      "Reading and compressing from a warm cache run faster than the disk allows; server runs\n"
      "also write the upload to the server's spool, which can push the model out of the cache.\n",
      repeat, load_before.c_str(), load_after.c_str(), gb, ram_gb,
      gb < 0.8 * ram_gb
          ? "it may stay cached between\nruns (then the read time measures memory, not the disk)."
          : "it cannot stay cached,\nevery run reads from the disk.");
  return failed ? 1 : 0;
}

}  // namespace hc::bench
