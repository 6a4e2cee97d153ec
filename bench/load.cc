// hyperc-bench load: N concurrent clients compressing real models through a hyperc-server for a
// set time (loopback only), reporting throughput, latency quantiles, errors, spot checks of the
// artifacts and the server's RSS over time.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench.h"
#include "client/remote_client.h"
#include "core/pipeline/pipeline.h"

namespace hc::bench {
namespace {

constexpr char kUsage[] =
    "usage: hyperc-bench load [--clients N] [--seconds S] [--models A,B,...] [--server-bin PATH]\n"
    "                         [--work DIR] [--codec NAME] [--spot-every K]\n"
    "\n"
    "  Starts hyperc-server on 127.0.0.1 (port 0, own spool), then N client threads compress the\n"
    "  models round-robin through it until S seconds have passed (no call starts after that).\n"
    "  Every K-th artifact (default 5) is compared byte for byte with the local-mode artifact.\n"
    "  Prints calls, throughput, latency p50/p90/p99/max, errors, spot checks, and the server's\n"
    "  RSS sampled every second (growth over the second half).\n"
    "  Defaults: 8 clients, 60 s, the four single-file shared models, build/bin/hyperc-server.\n";

long RssKiB(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      long kib = 0;
      std::istringstream(line.substr(6)) >> kib;
      return kib;
    }
  }
  return 0;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

int RunLoad(const std::vector<std::string>& args) {
  int clients = 8, spot_every = 5;
  double seconds = 60;
  std::string server_bin, work = "/tmp/hyperc-load", codec = "rtn";
  std::vector<std::string> models;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (i + 1 >= args.size()) return Fail(absl::StrCat(a, " needs a value"), 2);
    const std::string& v = args[++i];
    bool ok = true;
    if (a == "--clients") ok = absl::SimpleAtoi(v, &clients) && clients > 0 && clients <= 256;
    else if (a == "--seconds") ok = absl::SimpleAtod(v, &seconds) && seconds > 0 && seconds <= 3600;
    else if (a == "--spot-every") ok = absl::SimpleAtoi(v, &spot_every) && spot_every > 0;
    else if (a == "--models") models = absl::StrSplit(v, ',', absl::SkipEmpty());
    else if (a == "--server-bin") server_bin = v;
    else if (a == "--work") work = v;
    else if (a == "--codec") codec = v;
    else return Fail(absl::StrCat("unknown option ", a), 2);
    if (!ok) return Fail(absl::StrCat(a, ": bad value \"", v, "\""), 2);
  }
  if (models.empty()) {
    for (const char* m : {"ppocrv4-rec-f32", "faceres-f16", "movenet-thunder-f16", "fmnist-cnn-f32"}) {
      models.push_back(absl::StrCat(SharedDir(), "/models/", m, ".safetensors"));
    }
  }
  if (server_bin.empty()) {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    server_bin = n > 0 ? absl::StrCat(std::string(self, n).substr(0, std::string(self, n).rfind('/')), "/hyperc-server")
                       : "hyperc-server";
  }
  ::system(absl::StrCat("rm -rf '", work, "' && mkdir -p '", work, "'").c_str());
  CompressOptions opts;
  opts.codec = codec;
  opts.sync = false;
  // The reference artifacts, in process.
  std::vector<std::string> reference;
  for (size_t m = 0; m < models.size(); ++m) {
    const std::string out = absl::StrCat(work, "/ref", m, ".hyc");
    auto s = CompressModel(models[m], out, opts);
    if (!s.ok()) return Fail(s.status());
    reference.push_back(ReadAll(out));
  }
  // The server, as a child process with its stdout on a pipe.
  int pipefd[2];
  if (::pipe(pipefd) != 0) return Fail("pipe failed");
  const pid_t pid = fork();
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    ::close(pipefd[0]);
    if (FILE* log = std::fopen((work + "/server.log").c_str(), "w")) ::dup2(fileno(log), 2);
    const std::string spool = work + "/spool";
    ::execl(server_bin.c_str(), server_bin.c_str(), "--listen", "127.0.0.1:0", "--spool-dir", spool.c_str(),
            "--metrics-address", "", "--no-sync", "--max-jobs", "8", "--max-queue", "64", nullptr);
    _exit(127);
  }
  ::close(pipefd[1]);
  FILE* f = ::fdopen(pipefd[0], "r");
  char line[512] = {0};
  if (std::fgets(line, sizeof(line), f) == nullptr) return Fail(absl::StrCat(server_bin, " did not start"));
  const std::string l(line);
  const size_t at = l.find("on ") + 3;
  const std::string addr = l.substr(at, l.find(' ', at) - at);

  client::RemoteOptions ro;
  ro.server = addr;
  auto client = client::RemoteClient::Connect(ro);
  if (!client.ok()) return Fail(client.status());

  std::mutex mu;
  std::vector<double> latencies;
  std::vector<std::string> errors;
  std::atomic<uint64_t> spot_ok{0}, spot_bad{0};
  std::atomic<int> next{0};
  const double t0 = Now();
  const double end = t0 + seconds;
  std::vector<std::pair<double, long>> rss;
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      rss.emplace_back(Now() - t0, RssKiB(pid));
      for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      while (Now() < end) {
        const int k = next++;
        const size_t m = static_cast<size_t>(k) % models.size();
        const std::string out = absl::StrCat(work, "/c", c, ".hyc");
        const double s = Now();
        auto r = (*client)->Compress(models[m], out, opts);
        const double dt = Now() - s;
        std::lock_guard<std::mutex> lock(mu);
        if (!r.ok()) {
          errors.push_back(std::string(r.status().message()));
          continue;
        }
        latencies.push_back(dt);
        if (k % spot_every == 0) (ReadAll(out) == reference[m] ? spot_ok : spot_bad)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double wall = Now() - t0;
  done = true;
  sampler.join();
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::fclose(f);

  // RSS growth over the second half: last sample against the sample at mid-run.
  long mid = 0, last = 0, peak = 0;
  for (const auto& [t, kib] : rss) {
    if (t <= wall / 2) mid = kib;
    last = kib;
    peak = std::max(peak, kib);
  }
  std::printf("load: %d clients, %.1f s, codec %s, %zu models, server %s\n", clients, wall, codec.c_str(),
              models.size(), addr.c_str());
  std::printf("calls ok %zu, errors %zu, %.2f calls/s\n", latencies.size(), errors.size(),
              static_cast<double>(latencies.size()) / wall);
  std::printf("latency s: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", Quantile(latencies, 0.5),
              Quantile(latencies, 0.9), Quantile(latencies, 0.99), Quantile(latencies, 1.0));
  std::printf("spot checks (artifact == local mode): %llu ok, %llu different\n",
              static_cast<unsigned long long>(spot_ok.load()), static_cast<unsigned long long>(spot_bad.load()));
  std::printf("server RSS KiB: mid-run %ld, end %ld, peak %ld, growth over the second half %.1f%%\n", mid, last,
              peak, mid ? 100.0 * static_cast<double>(last - mid) / static_cast<double>(mid) : 0.0);
  std::printf("server exit status %d (log: %s/server.log)\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              work.c_str());
  std::printf("rss samples (s:KiB):");
  for (size_t i = 0; i < rss.size(); i += std::max<size_t>(1, rss.size() / 20)) {
    std::printf(" %.0f:%ld", rss[i].first, rss[i].second);
  }
  std::printf("\n");
  for (size_t i = 0; i < std::min<size_t>(errors.size(), 5); ++i) std::printf("error: %s\n", errors[i].c_str());
  return errors.empty() && spot_bad == 0 ? 0 : 1;
}

}  // namespace hc::bench
