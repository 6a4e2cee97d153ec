// Restart: jobs survive a SIGKILL of hyperc-server and finish with the same artifact bytes as an
// uninterrupted run; tensors finished before the kill are not recomputed.
#include <grpcpp/create_channel.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hyperc/v1/hyperc.grpc.pb.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"

namespace hc {
namespace {

struct ServerProcess {
  pid_t pid = -1;
  std::string address;
  std::string log;

  // Starts build/bin/hyperc-server on 127.0.0.1:0 and reads the bound address from stdout.
  // `input_root`: the server's --input-root (none when empty).
  bool Start(const std::string& spool, const std::string& log_path,
             const std::string& input_root = "") {
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
      std::vector<const char*> argv = {
          exe.c_str(),  "--listen",  "127.0.0.1:0",       "--spool-dir", spool.c_str(),
          "--max-jobs", "1",         "--threads",         "1",           "--memory-budget",
          "1M",         "--no-sync", "--metrics-address", "127.0.0.1:0"};
      if (!input_root.empty()) {
        argv.push_back("--input-root");
        argv.push_back(input_root.c_str());
      }
      argv.push_back(nullptr);
      ::execv(exe.c_str(), const_cast<char* const*>(argv.data()));
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

// Jobs that read their model in place (server_path) survive a SIGKILL too: queued behind an
// upload that never ends, killed, resumed by the restarted server. The one whose file is
// unchanged gives local mode's bytes; the one whose file changed meanwhile fails by name.
TEST(RestartTest, ServerPathJobsResumeAndNoticeAChangedInput) {
  const std::string dir = testing::ScratchDir("restart_server_path");
  const std::string spool = dir + "/spool", log = dir + "/server.log", root = dir + "/models";
  std::filesystem::create_directories(root);
  const std::string same = root + "/same.safetensors", changed = root + "/changed.safetensors";
  std::filesystem::copy_file(testing::ModelPath("fmnist-cnn-f32.safetensors"), same);
  std::filesystem::copy_file(testing::ModelPath("fmnist-cnn-f32.safetensors"), changed);
  CompressOptions opts;
  opts.codec = "hc1";
  opts.sync = false;

  std::string id_same, id_changed;
  {
    ServerProcess server;
    ASSERT_TRUE(server.Start(spool, log, root));
    // The one run slot (--max-jobs 1) goes to an upload that announces a file and stops.
    auto stub = hyperc::v1::Compressor::NewStub(
        grpc::CreateChannel(server.address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext blocker_ctx;
    hyperc::v1::Job blocker_job;
    auto blocker = stub->SubmitJob(&blocker_ctx, &blocker_job);
    hyperc::v1::CompressRequest req;
    req.mutable_start()->set_model_name("blocker");
    ASSERT_TRUE(blocker->Write(req));
    req.Clear();
    req.mutable_file()->set_name("b.safetensors");
    req.mutable_file()->set_size(1000);
    ASSERT_TRUE(blocker->Write(req));
    client::RemoteOptions o;
    o.server = server.address;
    o.server_input = true;
    auto c = client::RemoteClient::Connect(o);
    ASSERT_TRUE(c.ok());
    // The blocker's job takes the slot once its Start is in: wait for it to be listed.
    for (int spin = 0; spin < 1000; ++spin) {
      auto jobs = (*c)->List();
      ASSERT_TRUE(jobs.ok());
      if (!jobs->empty()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    auto a = (*c)->Submit(same, opts);
    ASSERT_TRUE(a.ok()) << a.status();
    auto b = (*c)->Submit(changed, opts);
    ASSERT_TRUE(b.ok()) << b.status();
    id_same = a->id();
    id_changed = b->id();
    for (const std::string& id : {id_same, id_changed}) {
      auto j = (*c)->Get(id);
      ASSERT_TRUE(j.ok());
      ASSERT_EQ(j->state(), hyperc::v1::Job::QUEUED) << "the blocker did not hold the slot";
    }
    server.Kill(SIGKILL);
    blocker_ctx.TryCancel();
    blocker->Finish().ok();
  }
  // Same size, other bytes and time: a rewritten model.
  {
    std::fstream f(changed, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-4, std::ios::end);
    f.write("\x01\x02\x03\x04", 4);
  }
  std::filesystem::last_write_time(
      changed, std::filesystem::last_write_time(changed) + std::chrono::seconds(5));

  ServerProcess server;
  ASSERT_TRUE(server.Start(spool, log, root));
  client::RemoteOptions o;
  o.server = server.address;
  auto c = client::RemoteClient::Connect(o);
  ASSERT_TRUE(c.ok());
  auto done = (*c)->Watch(id_same);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->state(), hyperc::v1::Job::SUCCEEDED) << done->error();
  EXPECT_EQ(done->server_path(), same);
  ASSERT_TRUE((*c)->Fetch(id_same, dir + "/fetched.hyc").ok());
  ASSERT_TRUE(CompressModel(same, dir + "/local.hyc", opts).ok());
  EXPECT_TRUE(testing::ReadAll(dir + "/fetched.hyc") == testing::ReadAll(dir + "/local.hyc"));
  done = (*c)->Watch(id_changed);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), hyperc::v1::Job::FAILED);
  EXPECT_THAT(done->error(), ::testing::HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(done->error(), ::testing::HasSubstr("changed.safetensors changed or disappeared"));
}

}  // namespace
}  // namespace hc
