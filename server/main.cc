// hyperc-server: flags, signals, Server::Start, wait.
#include <malloc.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/base/strings.h"
#include "core/io/safetensors_file.h"
#include "server/server.h"

namespace {

constexpr char kUsage[] =
    "usage: hyperc-server [flags]\n"
    "\n"
    "Serves hyperc.v1.Compressor (Compress stream and jobs), grpc.health.v1 and reflection.\n"
    "\n"
    "  --listen HOST:PORT       address (default 127.0.0.1:50051; port 0 picks a free port,\n"
    "                           printed on stdout)\n"
    "  --spool-dir DIR          uploads, artifacts and job state (default ./hyperc-spool);\n"
    "                           jobs found there are resumed\n"
    "  --threads N              worker threads shared by all jobs (default: one per core)\n"
    "  --max-jobs N             jobs compressing at once (default 2)\n"
    "  --max-queue N            jobs waiting beyond those (default 16)\n"
    "  --max-upload-bytes S     largest upload, e.g. 64G (default 64G)\n"
    "  --max-tensor-bytes S     largest tensor (default 4G)\n"
    "  --memory-budget S        input bytes in flight per job (default 256M)\n"
    "  --input-root DIR         let clients name models inside DIR by path (Start.server_path,\n"
    "                           'hyperc compress --server-input'): read in place, no upload;\n"
    "                           repeatable; none by default\n"
    "  --output-root DIR        let clients have artifacts written inside DIR\n"
    "                           (Start.server_output_path, 'hyperc compress --server-output')\n"
    "                           instead of sent back; repeatable; none by default\n"
    "  --metrics-address H:P    Prometheus /metrics endpoint (default 127.0.0.1:9464;\n"
    "                           empty string disables it)\n"
    "  --auth-token-file F      require 'authorization: Bearer <token in F>'\n"
    "  --tls-cert F --tls-key F serve TLS with this PEM certificate and key\n"
    "  --no-sync                do not fsync artifacts and job state\n";

bool ParseSize(const std::string& text, uint64_t* out) {
  auto v = hc::ParseByteSize(text);
  if (v.ok()) *out = *v;
  return v.ok();
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "hyperc-server: error: %s\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Buffers of a few MiB (upload and artifact chunks, gRPC slices, small tensors) come and go
  // all the time: keep them in the heap instead of mapping, faulting in and zeroing fresh pages
  // for each (about a third of the CPU time of an upload over loopback).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  hc::server::ServerOptions o;
  o.jobs.spool_dir = "hyperc-spool";
  std::string token_file;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--no-sync") {
      o.jobs.sync = false;
      continue;
    }
    std::string flag = a, value;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      flag = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Fail(absl::StrCat(a, " needs a value"));
    }
    bool ok = true;
    if (flag == "--listen") o.listen = value;
    else if (flag == "--spool-dir") o.jobs.spool_dir = value;
    else if (flag == "--threads") ok = absl::SimpleAtoi(value, &o.jobs.threads);
    else if (flag == "--max-jobs") ok = absl::SimpleAtoi(value, &o.jobs.max_running_jobs);
    else if (flag == "--max-queue") ok = absl::SimpleAtoi(value, &o.jobs.max_queued_jobs);
    else if (flag == "--max-upload-bytes") ok = ParseSize(value, &o.jobs.max_upload_bytes);
    else if (flag == "--max-tensor-bytes") ok = ParseSize(value, &o.jobs.max_tensor_bytes);
    else if (flag == "--memory-budget") ok = ParseSize(value, &o.jobs.memory_budget);
    else if (flag == "--input-root")
      o.jobs.input_roots.push_back(value);
    else if (flag == "--output-root")
      o.jobs.output_roots.push_back(value);
    else if (flag == "--auth-token-file") token_file = value;
    else if (flag == "--metrics-address") o.metrics_address = value;
    else if (flag == "--tls-cert") o.tls_cert_file = value;
    else if (flag == "--tls-key") o.tls_key_file = value;
    else return Fail(absl::StrCat("unknown flag ", flag, " (see --help)"));
    if (!ok) return Fail(absl::StrCat(flag, ": bad value \"", value, "\""));
  }
  if (!token_file.empty()) {
    auto t = hc::ReadFileToString(token_file, 4096);
    if (!t.ok()) return Fail(std::string(t.status().message()));
    o.auth_token = std::string(absl::StripAsciiWhitespace(*t));
    if (o.auth_token.empty()) return Fail(absl::StrCat(token_file, " is empty"));
  }
  // Signals are taken by a dedicated thread: SIGINT/SIGTERM shut the server down.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto server = hc::server::Server::Start(o);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::printf("hyperc-server listening on %s (spool %s, metrics port %d)\n",
              (*server)->address().c_str(), o.jobs.spool_dir.c_str(), (*server)->metrics_port());
  std::fflush(stdout);
  std::thread signals([&] {
    int sig = 0;
    sigwait(&set, &sig);
    std::fprintf(stderr, "hyperc-server: signal %d, shutting down\n", sig);
    (*server)->Shutdown();
  });
  // Wait() returns once Shutdown() has stopped the gRPC server; the signal thread is then still
  // finishing Shutdown() (metrics, job runners): join it before destroying the server.
  (*server)->Wait();
  signals.join();
  (*server).reset();
  return 0;
}
