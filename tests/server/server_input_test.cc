// Paths on the server: models read in place (Start.server_path, hyperc-server --input-root) and
// artifacts written in place (Start.server_output_path, --output-root) give local mode's bytes;
// every bad path gets the right status code and a message naming it, and the server keeps
// serving.
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hyperc/v1/hyperc.grpc.pb.h"
#include "server/server.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"

namespace hc {
namespace {

namespace fs = std::filesystem;
using hyperc::v1::CompressRequest;
using ::testing::HasSubstr;

class ServerInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir(absl::StrCat(
        "server_input_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    root_ = dir_ + "/root";
    fs::create_directories(root_);
    fs::create_directories(dir_ + "/outside");
    fs::copy_file(testing::ModelPath("fmnist-cnn-f32.safetensors"), root_ + "/fmnist.safetensors");
    fs::copy_file(testing::ModelPath("fmnist-cnn-f32.safetensors"),
                  dir_ + "/outside/fmnist.safetensors");
    fs::create_directories(dir_ + "/out");
    server_ = StartServer({root_, fs::absolute(testing::SharedDir() + "/models").string()},
                          {dir_ + "/out"});
    ASSERT_NE(server_, nullptr);
    stub_ = hyperc::v1::Compressor::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }

  std::unique_ptr<server::Server> StartServer(std::vector<std::string> roots,
                                              std::vector<std::string> output_roots = {}) {
    server::ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_address = "";
    o.jobs.spool_dir = absl::StrCat(dir_, "/spool", roots.size());
    o.jobs.sync = false;
    o.jobs.input_roots = std::move(roots);
    o.jobs.output_roots = std::move(output_roots);
    o.jobs.log = [](const std::string&) {};
    auto s = server::Server::Start(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  static CompressRequest Start(const std::string& path, const std::string& output = "") {
    CompressRequest r;
    r.mutable_start()->set_model_name("t");
    r.mutable_start()->set_server_path(path);
    r.mutable_start()->set_server_output_path(output);
    return r;
  }
  static CompressRequest End() {
    CompressRequest r;
    r.mutable_end();
    return r;
  }

  // A Compress stream with exactly `msgs` on `stub`; the final status and the artifact bytes.
  static grpc::Status RawCompress(hyperc::v1::Compressor::Stub* stub,
                                  const std::vector<CompressRequest>& msgs,
                                  std::string* artifact = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto stream = stub->Compress(&ctx);
    for (const auto& m : msgs) {
      if (!stream->Write(m)) break;
    }
    stream->WritesDone();
    hyperc::v1::CompressResponse resp;
    while (stream->Read(&resp)) {
      if (resp.has_artifact() && artifact != nullptr) *artifact += resp.artifact().data();
    }
    return stream->Finish();
  }

  void ExpectError(const std::string& path, grpc::StatusCode code, const std::string& message,
                   const std::string& output = "") {
    SCOPED_TRACE(path + " -> " + output);
    grpc::Status s = RawCompress(stub_.get(), {Start(path, output), End()});
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(message));
    // Still serving: the same call on a good path succeeds.
    std::string artifact;
    s = RawCompress(stub_.get(), {Start(root_ + "/fmnist.safetensors"), End()}, &artifact);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(artifact.size(), 0u);
  }

  // The shared sharded model's index, absolute (the server takes absolute paths only).
  static std::string ShardIndexPath() {
    return fs::absolute(testing::ModelPath("sotu-bytelm-14m-f16/model.safetensors.index.json"))
        .string();
  }

  // Every file of directory `want` has the same bytes in `got`; returns how many there are.
  static int ExpectSameFiles(const std::string& want, const std::string& got) {
    int files = 0;
    for (const auto& e : fs::directory_iterator(want)) {
      ++files;
      const std::string name = e.path().filename();
      EXPECT_TRUE(testing::ReadAll(e.path()) == testing::ReadAll(got + "/" + name)) << name;
    }
    return files;
  }

  std::unique_ptr<client::RemoteClient> Client(bool server_input = true,
                                               bool server_output = false) {
    client::RemoteOptions o;
    o.server = server_->address();
    o.server_input = server_input;
    o.server_output = server_output;
    auto c = client::RemoteClient::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::string dir_, root_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<hyperc::v1::Compressor::Stub> stub_;
};

TEST_F(ServerInputTest, SameArtifactAsLocalModeForAFileAndAShardedModel) {
  CompressOptions opts;
  opts.codec = "hc1";
  opts.sync = false;
  auto c = Client();
  ASSERT_NE(c, nullptr);
  const std::string file = root_ + "/fmnist.safetensors";
  auto summary = c->Compress(file, dir_ + "/remote.hyc", opts);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->tensors_total(), 8u);
  ASSERT_TRUE(CompressModel(file, dir_ + "/local.hyc", opts).ok());
  EXPECT_TRUE(testing::ReadAll(dir_ + "/remote.hyc") == testing::ReadAll(dir_ + "/local.hyc"));

  // A shard index: the server reads the shards beside it; one call, every file identical.
  const std::string index = ShardIndexPath();
  opts.codec = "rtn";
  summary = c->Compress(index, dir_ + "/remote-sharded", opts);
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_TRUE(CompressModel(index, dir_ + "/local-sharded", opts).ok());
  EXPECT_GE(ExpectSameFiles(dir_ + "/local-sharded", dir_ + "/remote-sharded"), 2);

  // As a job: submitted by path, watched, fetched.
  auto job = c->Submit(file, opts);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->server_path(), file);
  auto done = c->Watch(job->id());
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->state(), hyperc::v1::Job::SUCCEEDED) << done->error();
  EXPECT_EQ(done->progress().bytes_total(), fs::file_size(file));
  ASSERT_TRUE(c->Fetch(job->id(), dir_ + "/fetched.hyc").ok());
  ASSERT_TRUE(CompressModel(file, dir_ + "/local-rtn.hyc", opts).ok());
  EXPECT_TRUE(testing::ReadAll(dir_ + "/fetched.hyc") == testing::ReadAll(dir_ + "/local-rtn.hyc"));
  // The input is untouched: deleting the job leaves it in place.
  ASSERT_TRUE(c->Delete(job->id()).ok());
  EXPECT_TRUE(fs::exists(file));
}

TEST_F(ServerInputTest, BadPathsAreRefusedByName) {
  ExpectError("fmnist.safetensors", grpc::StatusCode::INVALID_ARGUMENT, "not an absolute path");
  ExpectError(dir_ + "/outside/fmnist.safetensors", grpc::StatusCode::PERMISSION_DENIED,
              "outside the server's input directories");
  ExpectError(root_ + "/../outside/fmnist.safetensors", grpc::StatusCode::PERMISSION_DENIED,
              "outside the server's input directories");
  fs::create_symlink(dir_ + "/outside/fmnist.safetensors", root_ + "/link.safetensors");
  ExpectError(root_ + "/link.safetensors", grpc::StatusCode::PERMISSION_DENIED,
              "outside the server's input directories");
  ExpectError(root_ + "/missing.safetensors", grpc::StatusCode::NOT_FOUND, "missing.safetensors");
  ExpectError(root_ + "/fmnist.bin", grpc::StatusCode::INVALID_ARGUMENT,
              "a .safetensors file or a shard index");
  fs::create_directories(root_ + "/dir.safetensors");
  ExpectError(root_ + "/dir.safetensors", grpc::StatusCode::INVALID_ARGUMENT, "not a regular file");
  std::ofstream(root_ + "/junk.safetensors") << "not a safetensors file at all";
  ExpectError(root_ + "/junk.safetensors", grpc::StatusCode::INVALID_ARGUMENT, "junk.safetensors");
  // An index inside the root whose shard is a link out of it.
  fs::create_directories(root_ + "/sharded");
  const std::string shard_src = testing::ModelPath("sotu-bytelm-14m-f16");
  for (const auto& e : fs::directory_iterator(shard_src)) {
    const std::string name = e.path().filename();
    if (absl::EndsWith(name, ".json")) {
      fs::copy_file(e.path(), root_ + "/sharded/" + name);
    } else {
      fs::copy_file(e.path(), dir_ + "/outside/" + name);
      fs::create_symlink(dir_ + "/outside/" + name, root_ + "/sharded/" + name);
    }
  }
  ExpectError(root_ + "/sharded/model.safetensors.index.json", grpc::StatusCode::PERMISSION_DENIED,
              "outside the server's input directories");
  // A file header after a server_path Start.
  CompressRequest file;
  file.mutable_file()->set_name("m.safetensors");
  file.mutable_file()->set_size(16);
  grpc::Status s = RawCompress(stub_.get(), {Start(root_ + "/fmnist.safetensors"), file, End()});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("takes no uploaded file"));
}

TEST_F(ServerInputTest, ArtifactWrittenInPlaceEqualsLocalModeAndIsNotSentBack) {
  const std::string file = root_ + "/fmnist.safetensors", out = dir_ + "/out";
  // Read and written in place: no ArtifactChunk on the stream, the file at the path, nothing
  // else left beside it.
  std::string sent;
  grpc::Status s = RawCompress(stub_.get(), {Start(file, out + "/a.hyc"), End()}, &sent);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(sent.size(), 0u);
  CompressOptions rtn;
  rtn.sync = false;
  ASSERT_TRUE(CompressModel(file, dir_ + "/local.hyc", rtn).ok());
  EXPECT_TRUE(testing::ReadAll(out + "/a.hyc") == testing::ReadAll(dir_ + "/local.hyc"));
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(out)) ++entries;
  EXPECT_EQ(entries, 1);

  // An upload written in place (the C++ client), and a sharded model into a directory,
  // replacing a file that was there.
  auto c = Client(/*server_input=*/false, /*server_output=*/true);
  ASSERT_NE(c, nullptr);
  auto summary = c->Compress(file, out + "/b.hyc", rtn);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(testing::ReadAll(out + "/b.hyc") == testing::ReadAll(dir_ + "/local.hyc"));
  std::ofstream(out + "/sharded") << "in the way";
  auto both = Client(/*server_input=*/true, /*server_output=*/true);
  const std::string index = ShardIndexPath();
  summary = both->Compress(index, out + "/sharded", rtn);
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_TRUE(CompressModel(index, dir_ + "/local-sharded", rtn).ok());
  EXPECT_EQ(summary->files_size(), ExpectSameFiles(dir_ + "/local-sharded", out + "/sharded"));

  // A job: the output is where it says; FetchArtifact serves it; DeleteJob leaves it.
  auto job = both->Submit(file, rtn, out + "/job.hyc");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->server_output_path(), out + "/job.hyc");
  auto done = both->Watch(job->id());
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->state(), hyperc::v1::Job::SUCCEEDED) << done->error();
  ASSERT_TRUE(both->Fetch(job->id(), dir_ + "/fetched.hyc").ok());
  EXPECT_TRUE(testing::ReadAll(dir_ + "/fetched.hyc") == testing::ReadAll(dir_ + "/local.hyc"));
  ASSERT_TRUE(both->Delete(job->id()).ok());
  EXPECT_TRUE(testing::ReadAll(out + "/job.hyc") == testing::ReadAll(dir_ + "/local.hyc"));
  // No hidden staging directory is left behind.
  for (const auto& e : fs::directory_iterator(out)) {
    EXPECT_FALSE(absl::StrContains(e.path().filename().string(), ".hyperc-")) << e.path();
  }
}

TEST_F(ServerInputTest, BadOutputPathsAreRefusedByName) {
  const std::string file = root_ + "/fmnist.safetensors";
  ExpectError(file, grpc::StatusCode::INVALID_ARGUMENT, "not an absolute path", "x.hyc");
  ExpectError(file, grpc::StatusCode::PERMISSION_DENIED, "outside the server's output directories",
              dir_ + "/outside/x.hyc");
  ExpectError(file, grpc::StatusCode::PERMISSION_DENIED, "outside the server's output directories",
              dir_ + "/out/../outside/x.hyc");
  ExpectError(file, grpc::StatusCode::NOT_FOUND, "its directory", dir_ + "/out/no/such/dir/x.hyc");
  fs::create_symlink(dir_ + "/outside/x.hyc", dir_ + "/out/link.hyc");
  ExpectError(file, grpc::StatusCode::INVALID_ARGUMENT, "symbolic link", dir_ + "/out/link.hyc");
  EXPECT_FALSE(fs::exists(dir_ + "/outside/x.hyc"));
  auto plain = StartServer({root_});
  ASSERT_NE(plain, nullptr);
  auto stub = hyperc::v1::Compressor::NewStub(
      grpc::CreateChannel(plain->address(), grpc::InsecureChannelCredentials()));
  grpc::Status s = RawCompress(stub.get(), {Start(file, dir_ + "/out/x.hyc"), End()});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("--output-root"));
}

TEST_F(ServerInputTest, AServerWithoutInputRootsRefusesEveryPath) {
  auto plain = StartServer({});
  ASSERT_NE(plain, nullptr);
  auto stub = hyperc::v1::Compressor::NewStub(
      grpc::CreateChannel(plain->address(), grpc::InsecureChannelCredentials()));
  grpc::Status s = RawCompress(stub.get(), {Start(root_ + "/fmnist.safetensors"), End()});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("--input-root"));
}

TEST(ServerInputOptionsTest, InputRootsMustBeAbsoluteExistingDirectories) {
  const std::string dir = testing::ScratchDir("server_input_options");
  server::JobManagerOptions o;
  o.spool_dir = dir + "/spool";
  o.input_roots = {"relative/dir"};
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("not an absolute path"));
  o.input_roots = {dir + "/does-not-exist"};
  auto m = server::JobManager::Create(o);
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("does-not-exist"));
}

}  // namespace
}  // namespace hc
