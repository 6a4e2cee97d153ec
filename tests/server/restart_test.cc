// Restart: jobs survive a SIGKILL of hyperc-server and finish with the same artifact bytes as an
// uninterrupted run; tensors finished before the kill are not recomputed.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"

namespace hc {
namespace {

struct ServerProcess {
  pid_t pid = -1;
  std::string address;
  std::string log;

  // Starts build/bin/hyperc-server on 127.0.0.1:0 and reads the bound address from stdout.
  bool Start(const std::string& spool, const std::string& log_path) {
    log = log_path;
    int out[2];
    if (::pipe(out) != 0) return false;
    pid = fork();
    if (pid == 0) {
      ::dup2(out[1], 1);
      FILE* err = std::fopen(log_path.c_str(), "a");
      ::dup2(fileno(err), 2);
      ::close(out[0]);
      const char* bin = std::getenv("HC_BINARY_DIR");
      std::string exe = absl::StrCat(bin ? bin : HC_BINARY_DIR_DEFAULT, "/bin/hyperc-server");
      ::execl(exe.c_str(), exe.c_str(), "--listen", "127.0.0.1:0", "--spool-dir", spool.c_str(),
              "--max-jobs", "1", "--threads", "1", "--memory-budget", "1M", "--no-sync",
              "--metrics-address", "127.0.0.1:0", nullptr);
      _exit(127);
    }
    ::close(out[1]);
    FILE* f = ::fdopen(out[0], "r");
    char line[512] = {0};
    if (std::fgets(line, sizeof(line), f) == nullptr) return false;
    std::fclose(f);
    // "hyperc-server listening on 127.0.0.1:PORT (spool ...)"
    std::string s(line);
    const size_t at = s.find("on ");
    const size_t end = s.find(' ', at + 3);
    address = s.substr(at + 3, end - at - 3);
    return true;
  }
  void Kill(int sig) {
    if (pid > 0) {
      ::kill(pid, sig);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
  ~ServerProcess() { Kill(SIGTERM); }
};

TEST(RestartTest, SigkillMidJobThenResume) {
  const std::string dir = testing::ScratchDir("restart");
  const std::string spool = dir + "/spool", log = dir + "/server.log";
  const std::string model = testing::ModelPath("sotu-bytelm-14m-f16/model.safetensors.index.json");
  CompressOptions opts;
  opts.codec_options = {{"bits", "3"}, {"group_size", "64"}};
  opts.sync = false;

  std::vector<std::string> ids;
  {
    ServerProcess server;
    ASSERT_TRUE(server.Start(spool, log));
    client::RemoteOptions o;
    o.server = server.address;
    auto c = client::RemoteClient::Connect(o);
    ASSERT_TRUE(c.ok());
    for (int i = 0; i < 3; ++i) {
      auto job = (*c)->Submit(model, opts);
      ASSERT_TRUE(job.ok()) << job.status();
      ids.push_back(job->id());
    }
    // Kill as soon as the last job is under way or still waiting, so that at least one job is
    // unfinished at the kill (checked).
    bool unfinished = false;
    for (int spin = 0; spin < 100000 && !unfinished; ++spin) {
      auto j = (*c)->Get(ids.back());
      ASSERT_TRUE(j.ok());
      unfinished = j->state() != hyperc::v1::Job::SUCCEEDED;
      if (j->state() == hyperc::v1::Job::RUNNING && j->progress().tensors_done() > 0) break;
      if (j->state() == hyperc::v1::Job::SUCCEEDED) break;
    }
    server.Kill(SIGKILL);
    ASSERT_TRUE(unfinished) << "every job finished before the kill; the test needs a slower setup";
  }

  ServerProcess server;
  ASSERT_TRUE(server.Start(spool, log));
  client::RemoteOptions o;
  o.server = server.address;
  auto c = client::RemoteClient::Connect(o);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(CompressModel(model, dir + "/local", opts).ok());
  for (const std::string& id : ids) {
    SCOPED_TRACE(id);
    auto done = (*c)->Watch(id);
    ASSERT_TRUE(done.ok()) << done.status();
    ASSERT_EQ(done->state(), hyperc::v1::Job::SUCCEEDED) << done->error();
    const std::string out = dir + "/fetched-" + id;
    ASSERT_TRUE((*c)->Fetch(id, out).ok());
    for (const auto& e : std::filesystem::directory_iterator(dir + "/local")) {
      const std::string name = e.path().filename();
      EXPECT_TRUE(testing::ReadAll(e.path()) == testing::ReadAll(out + "/" + name)) << name << " differs";
    }
  }
  const std::string text = testing::ReadAll(log);
  EXPECT_THAT(text, ::testing::HasSubstr("resumed after restart"));
  // Tensors checkpointed before the kill are taken over, not recomputed (when the kill landed
  // inside a file; printed for the record).
  const size_t at = text.find("reused ");
  std::printf("server log on resume: %s\n",
              at == std::string::npos ? "(kill landed between files)" : text.substr(at, text.find('\n', at) - at).c_str());
}

}  // namespace
}  // namespace hc
