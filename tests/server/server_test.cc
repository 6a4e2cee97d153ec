// The real server on 127.0.0.1 with the real C++ client.
#include "server/server.h"

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "core/io/shard_index.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::ReadAll;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir(absl::StrCat("server_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    StartServer();
  }
  void StartServer(std::string token = "") {
    server::ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_address = "";
    o.jobs.spool_dir = dir_ + "/spool";
    o.jobs.sync = false;
    o.jobs.log = [](const std::string&) {};
    o.auth_token = token;
    auto s = server::Server::Start(o);
    ASSERT_THAT(s, IsOk());
    server_ = *std::move(s);
    client::RemoteOptions c;
    c.server = server_->address();
    c.token = token;
    auto cl = client::RemoteClient::Connect(c);
    ASSERT_THAT(cl, IsOk());
    client_ = *std::move(cl);
  }
  static CompressOptions Rtn4() {
    CompressOptions o;
    o.codec_options = {{"bits", "4"}, {"group_size", "128"}};
    o.sync = false;
    return o;
  }
  // Compares an artifact (file or directory) byte for byte.
  static void ExpectSameArtifact(const std::string& a, const std::string& b) {
    if (std::filesystem::is_directory(a)) {
      std::vector<std::string> names;
      for (const auto& e : std::filesystem::directory_iterator(a)) names.push_back(e.path().filename());
      ASSERT_FALSE(names.empty());
      for (const std::string& n : names) {
        SCOPED_TRACE(n);
        EXPECT_TRUE(ReadAll(a + "/" + n) == ReadAll(b + "/" + n)) << "artifact file differs";
      }
      return;
    }
    const std::string x = ReadAll(a);
    EXPECT_FALSE(x.empty());
    EXPECT_TRUE(x == ReadAll(b)) << "artifact differs";
  }
  std::string dir_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<client::RemoteClient> client_;
};

TEST_F(ServerTest, CompressEqualsLocalModeOnEveryModel) {
  int k = 0;
  for (const std::string& model : testing::SharedModels()) {
    SCOPED_TRACE(model);
    const std::string local = absl::StrCat(dir_, "/local", k), remote = absl::StrCat(dir_, "/remote", k++);
    HC_ASSERT_OK(CompressModel(model, local, Rtn4()).status());
    std::vector<hyperc::v1::Progress> events;
    auto summary = client_->Compress(model, remote, Rtn4(), [&](const hyperc::v1::Progress& p) { events.push_back(p); });
    ASSERT_THAT(summary, IsOk());
    ExpectSameArtifact(local, remote);
    ASSERT_FALSE(events.empty());
    for (size_t i = 1; i < events.size(); ++i) EXPECT_GE(events[i].tensors_done(), events[i - 1].tensors_done());
    EXPECT_EQ(events.back().tensors_done(), events.back().tensors_total());
    EXPECT_GT(summary->tensors_size(), 0);
  }
}

TEST_F(ServerTest, JobSubmitWatchFetchDelete) {
  const std::string model = testing::ModelPath("ppocrv4-rec-f32.safetensors");
  HC_ASSERT_OK_AND_ASSIGN(hyperc::v1::Job job, client_->Submit(model, Rtn4()));
  EXPECT_FALSE(job.id().empty());
  HC_ASSERT_OK_AND_ASSIGN(hyperc::v1::Job done, client_->Watch(job.id()));
  EXPECT_EQ(done.state(), hyperc::v1::Job::SUCCEEDED) << done.error();
  HC_ASSERT_OK(client_->Fetch(job.id(), dir_ + "/fetched.hyc"));
  HC_ASSERT_OK(CompressModel(model, dir_ + "/local.hyc", Rtn4()).status());
  ExpectSameArtifact(dir_ + "/local.hyc", dir_ + "/fetched.hyc");
  HC_ASSERT_OK_AND_ASSIGN(auto jobs, client_->List());
  ASSERT_EQ(jobs.size(), 1u);
  HC_ASSERT_OK(client_->Delete(job.id()));
  EXPECT_THAT(client_->Get(job.id()), StatusIs(absl::StatusCode::kNotFound, HasSubstr(job.id())));
}

TEST_F(ServerTest, FourCompressCallsAndTwoJobsAtOnce) {
  const std::vector<std::string> models = {
      testing::ModelPath("ppocrv4-rec-f32.safetensors"), testing::ModelPath("faceres-f16.safetensors"),
      testing::ModelPath("movenet-thunder-f16.safetensors"), testing::ModelPath("fmnist-cnn-f32.safetensors")};
  std::vector<absl::Status> results(6);
  std::vector<bool> ordered(4, true);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      uint64_t last = 0;
      auto s = client_->Compress(models[i], absl::StrCat(dir_, "/c", i), Rtn4(), [&](const hyperc::v1::Progress& p) {
        if (p.tensors_done() < last) ordered[i] = false;
        last = p.tensors_done();
      });
      results[i] = s.status();
    });
  }
  std::vector<std::string> job_ids(2);
  const std::vector<std::string> job_models = {testing::ModelPath("sotu-bytelm-14m-f16/model.safetensors.index.json"),
                                               models[0]};
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      auto job = client_->Submit(job_models[i], Rtn4());
      if (!job.ok()) {
        results[4 + i] = job.status();
        return;
      }
      job_ids[i] = job->id();
      auto done = client_->Watch(job->id());
      results[4 + i] = !done.ok() ? done.status()
                       : done->state() == hyperc::v1::Job::SUCCEEDED ? absl::OkStatus()
                                                                      : absl::InternalError(done->error());
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 6; ++i) EXPECT_THAT(results[i], IsOk()) << i;
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(ordered[i]) << "progress out of order in call " << i;
    HC_ASSERT_OK(CompressModel(models[i], absl::StrCat(dir_, "/l", i), Rtn4()).status());
    ExpectSameArtifact(absl::StrCat(dir_, "/l", i), absl::StrCat(dir_, "/c", i));
  }
  HC_ASSERT_OK(client_->Fetch(job_ids[0], dir_ + "/j0"));
  HC_ASSERT_OK(CompressModel(job_models[0], dir_ + "/lj0", Rtn4()).status());
  ExpectSameArtifact(dir_ + "/lj0", dir_ + "/j0");
}

// Scale-out: with several servers the shards of a sharded model are spread over them, one
// Compress call per shard, and the artifact is still byte-identical to local mode.
TEST_F(ServerTest, ShardsSpreadOverSeveralServers) {
  std::atomic<int> calls_a{0}, calls_b{0};
  auto start = [&](const std::string& name, std::atomic<int>* calls) {
    server::ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_address = "";
    o.jobs.spool_dir = dir_ + "/spool-" + name;
    o.jobs.sync = false;
    o.jobs.log = [](const std::string&) {};
    o.hooks.on_rpc_done = [calls](const std::string& method, const grpc::Status& s) {
      if (method == "Compress" && s.ok()) ++*calls;
    };
    return server::Server::Start(o);
  };
  HC_ASSERT_OK_AND_ASSIGN(auto a, start("a", &calls_a));
  HC_ASSERT_OK_AND_ASSIGN(auto b, start("b", &calls_b));
  client::RemoteOptions c;
  c.server = absl::StrCat(a->address(), ",", b->address());
  HC_ASSERT_OK_AND_ASSIGN(auto spread, client::RemoteClient::Connect(c));
  const std::string model = testing::ModelPath("sotu-bytelm-14m-f16/model.safetensors.index.json");
  uint64_t last = 0;
  bool ordered = true;
  HC_ASSERT_OK_AND_ASSIGN(hyperc::v1::Summary s,
                          spread->Compress(model, dir_ + "/spread", Rtn4(), [&](const hyperc::v1::Progress& p) {
                            ordered = ordered && p.tensors_done() >= last;
                            last = p.tensors_done();
                          }));
  EXPECT_TRUE(ordered);
  EXPECT_EQ(s.tensors_total(), 75u);
  EXPECT_EQ(calls_a.load(), 1);
  EXPECT_EQ(calls_b.load(), 1);
  HC_ASSERT_OK(CompressModel(model, dir_ + "/local", Rtn4()).status());
  ExpectSameArtifact(dir_ + "/local", dir_ + "/spread");
}

TEST_F(ServerTest, CancelStopsARunningJobAndFreesIt) {
  // A job whose upload is still arriving is RUNNING (it compresses tensors as they come).
  server::JobRequest req;
  req.model_name = "slow upload";
  HC_ASSERT_OK_AND_ASSIGN(auto upload, server_->jobs().StartUpload(req));
  const std::string id = upload->job_id();
  const std::string bytes = ReadAll(testing::ModelPath("movenet-thunder-f16.safetensors"));
  HC_ASSERT_OK(upload->BeginFile("m.safetensors", bytes.size()));
  HC_ASSERT_OK(upload->Append(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size() / 2)));
  for (int i = 0; i < 500; ++i) {
    auto j = client_->Get(id);
    ASSERT_THAT(j, IsOk());
    if (j->state() == hyperc::v1::Job::RUNNING && j->progress().tensors_done() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::vector<hyperc::v1::Job::State> watched;
  std::thread watcher([&] {
    auto w = client_->Watch(id, [&](const hyperc::v1::Job& j) { watched.push_back(j.state()); });
    EXPECT_THAT(w, IsOk());
  });
  HC_ASSERT_OK_AND_ASSIGN(hyperc::v1::Job cancelled, client_->Cancel(id));
  watcher.join();
  EXPECT_EQ(cancelled.state(), hyperc::v1::Job::CANCELLED);
  ASSERT_FALSE(watched.empty());
  EXPECT_EQ(watched.back(), hyperc::v1::Job::CANCELLED);
  EXPECT_EQ(server_->jobs().running(), 0);
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(dir_, "/spool/jobs/", id, "/upload")))
      << "the spooled upload of a cancelled job is freed";
  upload.reset();  // the client side of the upload goes away: the job is deleted
  EXPECT_THAT(client_->Get(id), StatusIs(absl::StatusCode::kNotFound, HasSubstr(id)));
  // The server goes on serving.
  HC_ASSERT_OK(client_->Compress(testing::ModelPath("fmnist-cnn-f32.safetensors"), dir_ + "/after", Rtn4()).status());
}

}  // namespace
}  // namespace hc
