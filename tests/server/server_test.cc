// The real server on 127.0.0.1 with the real C++ client.
#include "server/server.h"

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

}  // namespace
}  // namespace hc
