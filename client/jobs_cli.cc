#include "client/jobs_cli.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/io/safetensors_file.h"

namespace hc::cli {
namespace {

constexpr char kJobsUsage[] =
    "usage: hyperc jobs <command> --server HOST:PORT [--token-file F] [--tls-ca F] ...\n"
    "\n"
    "  submit IN [--codec NAME] [codec options] [--skip REGEX]...   upload, print the job id\n"
    "         [--target-bpw X] [--override REGEX=SPEC]... [--server-input]\n"
    "         [--server-output -o OUT]\n"
    "         (--server-input: the server reads IN in place, no upload; --server-output: it\n"
    "         writes the artifact at OUT on its side; see hyperc-server --input-root and\n"
    "         --output-root)\n"
    "  watch ID       follow a job until it ends (progress bar)\n"
    "  get ID         one job's state\n"
    "  list           every job, newest first\n"
    "  cancel ID      stop a queued or running job\n"
    "  fetch ID -o OUT  download a succeeded job's artifact (resumes a partial download)\n"
    "  delete ID      remove a job and its files\n";

void PrintJob(const hyperc::v1::Job& j) {
  std::printf("%s  %-9s  %-28s  %s  %llu/%llu tensors  %.0f%%%s%s\n", j.id().c_str(),
              hyperc::v1::Job::State_Name(j.state()).c_str(), j.model_name().c_str(),
              j.options().codec().c_str(), static_cast<unsigned long long>(j.progress().tensors_done()),
              static_cast<unsigned long long>(j.progress().tensors_total()), 100 * j.progress().fraction(),
              j.error().empty() ? "" : "  ", j.error().c_str());
  if (!j.server_path().empty()) std::printf("  reads %s in place\n", j.server_path().c_str());
  if (!j.server_output_path().empty())
    std::printf("  writes %s in place\n", j.server_output_path().c_str());
  if (j.state() == hyperc::v1::Job::SUCCEEDED) {
    const auto& s = j.summary();
    std::printf("  %llu tensors (%llu coded), %.3f bits/weight coded, SNR %.2f dB, %.2f dB above D(R), %.2fs\n",
                static_cast<unsigned long long>(s.tensors_total()),
                static_cast<unsigned long long>(s.coded_tensors()), s.coded_bits_per_weight(), s.snr_db(),
                s.db_above_rd(), s.seconds());
    for (const auto& f : s.files()) std::printf("  artifact %s (%llu bytes)\n", f.name().c_str(), static_cast<unsigned long long>(f.size()));
  }
}

Progress ToProgress(const hyperc::v1::Progress& p) {
  Progress out;
  out.tensors_done = p.tensors_done();
  out.tensors_total = p.tensors_total();
  out.bytes_done = p.bytes_done();
  out.bytes_total = p.bytes_total();
  out.eta_seconds = p.eta_seconds();
  out.tensor = p.tensor();
  return out;
}

// A path the server reads: made absolute against this directory (a shared filesystem sees it
// at the same path on both sides).
std::string AbsolutePath(const std::string& p) {
  std::error_code ec;
  const std::filesystem::path a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

}  // namespace

absl::StatusOr<bool> RemoteFlags::Take(Args& args) {
  if (args.Switch("--server-input")) {
    server_input = true;
    return true;
  }
  if (args.Switch("--server-output")) {
    server_output = true;
    return true;
  }
  auto t = args.Take({"--server"}, &server);
  if (t.ok() && !*t) t = args.Take({"--token-file"}, &token_file);
  if (t.ok() && !*t) t = args.Take({"--tls-ca"}, &tls_ca);
  return t;
}

absl::StatusOr<std::unique_ptr<client::RemoteClient>> RemoteFlags::Connect() const {
  client::RemoteOptions o;
  o.server = server;
  o.tls_ca_file = tls_ca;
  o.server_input = server_input;
  o.server_output = server_output;
  if (!token_file.empty()) {
    auto t = ReadFileToString(token_file, 4096);
    if (!t.ok()) return t.status();
    o.token = std::string(absl::StripAsciiWhitespace(*t));
  }
  return client::RemoteClient::Connect(o);
}

int CompressRemote(const std::string& input, const std::string& output, const CompressOptions& options,
                   const RemoteFlags& remote, bool quiet) {
  auto c = remote.Connect();
  if (!c.ok()) return Fail(c.status(), 2);
  ProgressPrinter printer("compress", !quiet);
  auto summary = (*c)->Compress(remote.server_input ? AbsolutePath(input) : input,
                                remote.server_output ? AbsolutePath(output) : output, options,
                                [&](const hyperc::v1::Progress& p) { printer(ToProgress(p)); });
  printer.Finish();
  if (!summary.ok()) return Fail(summary.status());
  if (!quiet) {
    std::printf("%llu tensors (%llu coded), %.3f bits/weight coded, SNR %.2f dB, %.2f dB above D(R)\n",
                static_cast<unsigned long long>(summary->tensors_total()),
                static_cast<unsigned long long>(summary->coded_tensors()), summary->coded_bits_per_weight(),
                summary->snr_db(), summary->db_above_rd());
    std::printf("%s %s (server time %.2fs)\n", remote.server_output ? "the server wrote" : "wrote",
                output.c_str(), summary->seconds());
  }
  return 0;
}

int Jobs(Args& args) {
  if (args.done() || args.Peek() == "--help" || args.Peek() == "-h") {
    std::fputs(kJobsUsage, args.done() ? stderr : stdout);
    return args.done() ? 2 : 0;
  }
  const std::string cmd = args.Next();
  if (!args.done() && (args.Peek() == "--help" || args.Peek() == "-h")) {  // `jobs CMD --help`
    std::fputs(kJobsUsage, stdout);
    return 0;
  }
  RemoteFlags remote;
  CompressOptions options;
  std::string positional, output;
  while (!args.done()) {
    auto took = remote.Take(args);
    if (took.ok() && !*took) took = args.Take({"-o", "--output"}, &output);
    if (took.ok() && !*took) took = args.Take({"--codec"}, &options.codec);
    std::string skip, rule, bpw;
    if (took.ok() && !*took) {
      took = args.Take({"--skip"}, &skip);
      if (took.ok() && *took) options.skip.push_back(skip);
    }
    if (took.ok() && !*took) {
      took = args.Take({"--override"}, &rule);
      if (took.ok() && *took) options.overrides.push_back(rule);
    }
    if (took.ok() && !*took) {
      took = args.Take({"--target-bpw"}, &bpw);
      if (took.ok() && *took && !absl::SimpleAtod(bpw, &options.target_bpw)) {
        return Fail(absl::InvalidArgumentError("--target-bpw needs a number"), 2);
      }
    }
    if (!took.ok()) return Fail(took.status(), 2);
    if (*took) continue;
    std::string a = args.Next();
    if (a.size() > 2 && a.rfind("--", 0) == 0 && !args.done() && cmd == "submit") {
      std::string key = a.substr(2);
      for (char& ch : key) ch = ch == '-' ? '_' : ch;
      options.codec_options.Set(key, args.Next());
      continue;
    }
    if (!positional.empty() || a.rfind("-", 0) == 0) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", a, "\"")), 2);
    }
    positional = a;
  }
  if (remote.server.empty()) return Fail(absl::InvalidArgumentError("jobs commands need --server HOST:PORT"), 2);
  const bool needs_id = cmd != "list" && cmd != "submit";
  if ((needs_id || cmd == "submit") && positional.empty()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("jobs ", cmd, " needs ", cmd == "submit" ? "IN" : "a job ID")), 2);
  }
  auto c = remote.Connect();
  if (!c.ok()) return Fail(c.status(), 2);
  client::RemoteClient& cl = **c;
  if (cmd == "submit") {
    if (remote.server_output && output.empty()) {
      return Fail(absl::InvalidArgumentError("jobs submit --server-output needs -o OUT"), 2);
    }
    auto j = cl.Submit(remote.server_input ? AbsolutePath(positional) : positional, options,
                       remote.server_output ? AbsolutePath(output) : "");
    if (!j.ok()) return Fail(j.status());
    std::printf("%s\n", j->id().c_str());
    return 0;
  }
  if (cmd == "get" || cmd == "cancel") {
    auto j = cmd == "get" ? cl.Get(positional) : cl.Cancel(positional);
    if (!j.ok()) return Fail(j.status());
    PrintJob(*j);
    return 0;
  }
  if (cmd == "list") {
    auto jobs = cl.List();
    if (!jobs.ok()) return Fail(jobs.status());
    for (const auto& j : *jobs) PrintJob(j);
    return 0;
  }
  if (cmd == "watch") {
    ProgressPrinter printer("job " + positional, true);
    auto j = cl.Watch(positional, [&](const hyperc::v1::Job& u) { printer(ToProgress(u.progress())); });
    printer.Finish();
    if (!j.ok()) return Fail(j.status());
    PrintJob(*j);
    return j->state() == hyperc::v1::Job::SUCCEEDED ? 0 : 1;
  }
  if (cmd == "fetch") {
    if (output.empty()) return Fail(absl::InvalidArgumentError("jobs fetch needs -o OUT"), 2);
    absl::Status s = cl.Fetch(positional, output);
    if (!s.ok()) return Fail(s);
    std::printf("wrote %s\n", output.c_str());
    return 0;
  }
  if (cmd == "delete") {
    absl::Status s = cl.Delete(positional);
    if (!s.ok()) return Fail(s);
    return 0;
  }
  return Fail(absl::InvalidArgumentError(absl::StrCat("unknown jobs command \"", cmd, "\"")), 2);
}

}  // namespace hc::cli
