// A full disk: the spool (server) or the output (local mode) on a small tmpfs. The error is
// clear (RESOURCE_EXHAUSTED, naming the spool or file), nothing corrupt is left, and the server
// keeps serving requests that fit.
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "core/io/safetensors_file.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir(absl::StrCat("disk_full_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    mnt_ = dir_ + "/small";
    std::filesystem::create_directories(mnt_);
    if (::geteuid() != 0 || ::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=8m") != 0) {
      GTEST_SKIP() << "cannot mount an 8 MiB tmpfs here (needs root): " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }
  // Files (recursively) under the small disk, spool bookkeeping excluded.
  std::vector<std::string> Leftovers(const std::string& root) {
    // The server deletes a failed job's files while this runs: a walk that skips what vanishes.
    std::vector<std::string> out;
    ForEachRegularFile(root,
                       [&](const std::string& path, const struct stat&) { out.push_back(path); });
    return out;
  }
  std::string dir_, mnt_;
  bool mounted_ = false;
};

TEST_F(DiskFullTest, SpoolFullIsResourceExhaustedAndServerGoesOn) {
  server::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.metrics_address = "";
  o.jobs.spool_dir = mnt_ + "/spool";
  o.jobs.sync = false;
  o.jobs.log = [](const std::string&) {};
  HC_ASSERT_OK_AND_ASSIGN(auto server, server::Server::Start(o));
  client::RemoteOptions c;
  c.server = server->address();
  HC_ASSERT_OK_AND_ASSIGN(auto client, client::RemoteClient::Connect(c));
  // A job's upload is spooled: 12.5 MB into an 8 MiB spool.
  EXPECT_THAT(client->Submit(testing::ModelPath("movenet-thunder-f16.safetensors"), {}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("spool")));
  for (int i = 0; i < 200 && !Leftovers(mnt_).empty(); ++i) usleep(10000);
  EXPECT_THAT(Leftovers(mnt_), ::testing::IsEmpty()) << "the failed job's files are freed";
  // A Compress call's upload is held in memory, its artifact is not: every tensor raw, 12.5 MB.
  CompressOptions raw;
  raw.skip = {".*"};
  EXPECT_THAT(client->Compress(testing::ModelPath("movenet-thunder-f16.safetensors"), dir_ + "/big.hyc", raw),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("spool")));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/big.hyc"));
  for (int i = 0; i < 200 && !Leftovers(mnt_).empty(); ++i) usleep(10000);
  EXPECT_THAT(Leftovers(mnt_), ::testing::IsEmpty()) << "the failed job's files are freed";
  // A model that fits still works, and its artifact is the local one.
  HC_ASSERT_OK(client->Compress(testing::ModelPath("fmnist-cnn-f32.safetensors"), dir_ + "/ok.hyc", {}).status());
  HC_ASSERT_OK(CompressModel(testing::ModelPath("fmnist-cnn-f32.safetensors"), dir_ + "/local.hyc", {}).status());
  EXPECT_TRUE(testing::ReadAll(dir_ + "/ok.hyc") == testing::ReadAll(dir_ + "/local.hyc"));
}

TEST_F(DiskFullTest, LocalOutputOnAFullDiskLeavesNothing) {
  CompressOptions o;
  o.codec_options = {{"bits", "8"}};  // ~6.3 MB of output from 28.7 MB: too much for 8 MiB after filling
  // Fill most of the disk first.
  {
    FILE* f = std::fopen((mnt_ + "/filler").c_str(), "w");
    std::vector<char> mb(1 << 20, 'x');
    for (int i = 0; i < 7; ++i) std::fwrite(mb.data(), 1, mb.size(), f);
    std::fclose(f);
  }
  auto s = CompressModel(testing::ModelPath("movenet-thunder-f16.safetensors"), mnt_ + "/out.hyc", o);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("out.hyc")));
  std::vector<std::string> left = Leftovers(mnt_);
  EXPECT_EQ(left.size(), 1u) << "only the filler remains";
}

}  // namespace
}  // namespace hc
