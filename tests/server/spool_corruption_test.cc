// Corrupt spool files at restart are detected (checksums) and the job is marked FAILED with the
// reason; the server keeps serving.
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<server::Server>> StartOn(const std::string& spool) {
  server::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.metrics_address = "";
  o.jobs.spool_dir = spool;
  o.jobs.sync = false;
  o.jobs.log = [](const std::string&) {};
  return server::Server::Start(o);
}

std::unique_ptr<client::RemoteClient> ClientOf(const server::Server& s) {
  client::RemoteOptions c;
  c.server = s.address();
  return *client::RemoteClient::Connect(c);
}

void FlipByte(const std::string& path, size_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  char c;
  f.get(c);
  f.seekp(static_cast<std::streamoff>(at));
  f.put(static_cast<char>(c ^ 0x04));
}

TEST(SpoolCorruptionTest, CorruptStateAndArtifactAreFailedWithTheReason) {
  const std::string dir = testing::ScratchDir("spool_corruption");
  const std::string spool = dir + "/spool";
  const std::string model = testing::ModelPath("fmnist-cnn-f32.safetensors");
  std::string good, bad_state, bad_artifact;
  {
    HC_ASSERT_OK_AND_ASSIGN(auto s, StartOn(spool));
    auto c = ClientOf(*s);
    for (std::string* id : {&good, &bad_state, &bad_artifact}) {
      HC_ASSERT_OK_AND_ASSIGN(auto job, c->Submit(model, {}));
      HC_ASSERT_OK_AND_ASSIGN(auto done, c->Watch(job.id()));
      ASSERT_EQ(done.state(), hyperc::v1::Job::SUCCEEDED);
      *id = job.id();
    }
  }
  const std::string jobs = spool + "/jobs/";
  FlipByte(jobs + bad_state + "/job.json", 60);  // inside the sealed state
  const std::string art = jobs + bad_artifact + "/artifact/fmnist-cnn-f32.hyc.safetensors";
  ASSERT_TRUE(std::filesystem::exists(art));
  FlipByte(art, 200);  // inside the safetensors header / metadata
  std::filesystem::create_directories(jobs + "garbage0000000000");
  std::ofstream(jobs + "garbage0000000000/job.json") << "{not json";

  for (int restart = 0; restart < 2; ++restart) {
    SCOPED_TRACE(restart);
    HC_ASSERT_OK_AND_ASSIGN(auto s, StartOn(spool));
    auto c = ClientOf(*s);
    HC_ASSERT_OK_AND_ASSIGN(auto g, c->Get(good));
    EXPECT_EQ(g.state(), hyperc::v1::Job::SUCCEEDED);
    HC_ASSERT_OK_AND_ASSIGN(auto b1, c->Get(bad_state));
    EXPECT_EQ(b1.state(), hyperc::v1::Job::FAILED);
    EXPECT_THAT(b1.error(), HasSubstr("state in the spool is corrupt"));
    HC_ASSERT_OK_AND_ASSIGN(auto b2, c->Get(bad_artifact));
    EXPECT_EQ(b2.state(), hyperc::v1::Job::FAILED);
    EXPECT_THAT(b2.error(), HasSubstr("artifact in the spool is corrupt"));
    EXPECT_THAT(b2.error(), HasSubstr("DATA_LOSS"));
    HC_ASSERT_OK_AND_ASSIGN(auto b3, c->Get("garbage0000000000"));
    EXPECT_EQ(b3.state(), hyperc::v1::Job::FAILED);
    EXPECT_FALSE(c->Fetch(bad_artifact, dir + "/never.hyc").ok());
    EXPECT_FALSE(std::filesystem::exists(dir + "/never.hyc"));
    HC_ASSERT_OK(c->Fetch(good, dir + "/good.hyc"));
    EXPECT_THAT(c->Compress(model, absl::StrCat(dir, "/after", restart, ".hyc"), {}), IsOk());
  }
}

}  // namespace
}  // namespace hc
