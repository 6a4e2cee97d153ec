// Bad input over gRPC: each case gets the right status code and a message naming the problem,
// and a good request right after it succeeds (the server keeps serving).
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hyperc/v1/hyperc.grpc.pb.h"
#include "server/server.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using hyperc::v1::CompressRequest;
using ::testing::HasSubstr;

CompressRequest Start(const std::string& codec = "rtn", std::map<std::string, std::string> opts = {}) {
  CompressRequest r;
  r.mutable_start()->set_model_name("t");
  r.mutable_start()->mutable_options()->set_codec(codec);
  for (auto& [k, v] : opts) (*r.mutable_start()->mutable_options()->mutable_codec_options())[k] = v;
  return r;
}
CompressRequest File(const std::string& name, uint64_t size) {
  CompressRequest r;
  r.mutable_file()->set_name(name);
  r.mutable_file()->set_size(size);
  return r;
}
CompressRequest Chunk(const std::string& bytes) {
  CompressRequest r;
  r.set_chunk(bytes);
  return r;
}
// A valid one-tensor safetensors file.
std::string Tiny() {
  const std::string json = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string out(8, '\0');
  out[0] = static_cast<char>(json.size());
  return out + json + std::string(16, '\0');
}
CompressRequest End() {
  CompressRequest r;
  r.mutable_end();
  return r;
}

class ServerErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir(absl::StrCat("server_errors_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    std::ofstream(dir_ + "/token") << "s3cret\n";
    server::ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_address = "127.0.0.1:0";
    o.jobs.spool_dir = dir_ + "/spool";
    o.jobs.sync = false;
    o.jobs.max_upload_bytes = 8 << 20;
    o.jobs.max_tensor_bytes = 3 << 20;
    o.jobs.log = [](const std::string&) {};
    o.auth_token = "s3cret";
    auto s = server::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = hyperc::v1::Compressor::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    model_ = testing::ReadAll(testing::ModelPath("faceres-f16.safetensors"));
  }

  void Auth(grpc::ClientContext* ctx, const std::string& token = "s3cret") {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  }

  // Runs a Compress stream with exactly `msgs`; returns the final status and the number of
  // artifact bytes received.
  grpc::Status RawCompress(const std::vector<CompressRequest>& msgs, const std::string& token = "s3cret",
                           uint64_t* artifact_bytes = nullptr) {
    grpc::ClientContext ctx;
    Auth(&ctx, token);
    auto stream = stub_->Compress(&ctx);
    for (const auto& m : msgs) {
      if (!stream->Write(m)) break;
    }
    stream->WritesDone();
    hyperc::v1::CompressResponse resp;
    uint64_t n = 0;
    while (stream->Read(&resp)) {
      if (resp.has_artifact()) n += resp.artifact().data().size();
    }
    if (artifact_bytes) *artifact_bytes = n;
    return stream->Finish();
  }

  std::vector<CompressRequest> Good() {
    return {Start(), File("m.safetensors", model_.size()), Chunk(model_), End()};
  }

  // The server still works: a good Compress call succeeds and returns an artifact.
  void ExpectStillServing() {
    uint64_t bytes = 0;
    grpc::Status s = RawCompress(Good(), "s3cret", &bytes);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(bytes, 0u);
  }

  void ExpectError(const std::vector<CompressRequest>& msgs, grpc::StatusCode code,
                   const std::string& message, const std::string& token = "s3cret") {
    grpc::Status s = RawCompress(msgs, token);
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(message));
    ExpectStillServing();
  }

  std::string dir_, model_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<hyperc::v1::Compressor::Stub> stub_;
};

TEST_F(ServerErrorsTest, GoodRequestWorks) { ExpectStillServing(); }

TEST_F(ServerErrorsTest, MalformedHeader) {
  const std::string json = "{\"a\": not json}";
  std::string junk(8, '\0');
  junk[0] = static_cast<char>(json.size());
  junk += json;
  ExpectError({Start(), File("m.safetensors", junk.size()), Chunk(junk), End()},
              grpc::StatusCode::INVALID_ARGUMENT, "m.safetensors: header");
}

TEST_F(ServerErrorsTest, TruncatedUpload) {
  ExpectError({Start(), File("m.safetensors", model_.size()), Chunk(model_.substr(0, 1000)), End()},
              grpc::StatusCode::INVALID_ARGUMENT, "ended after 1000 of its");
}

TEST_F(ServerErrorsTest, StreamClosedBeforeEnd) {
  ExpectError({Start(), File("m.safetensors", model_.size()), Chunk(model_)},
              grpc::StatusCode::INVALID_ARGUMENT, "closed before End");
}

TEST_F(ServerErrorsTest, ChunksPastTheDeclaredEnd) {
  ExpectError({Start(), File("m.safetensors", model_.size()), Chunk(model_), Chunk("xx"), End()},
              grpc::StatusCode::INVALID_ARGUMENT, "beyond its declared");
}

TEST_F(ServerErrorsTest, OversizeUpload) {
  ExpectError({Start(), File("m.safetensors", 9 << 20)}, grpc::StatusCode::RESOURCE_EXHAUSTED,
              "exceeds the server limit of 8388608 bytes");
}

TEST_F(ServerErrorsTest, TensorOverTheLimit) {
  const std::string big = testing::ReadAll(testing::ModelPath("fmnist-cnn-f32.safetensors"));
  ExpectError({Start(), File("m.safetensors", big.size()), Chunk(big), End()},
              grpc::StatusCode::RESOURCE_EXHAUSTED, "over the server limit of 3145728");
}

TEST_F(ServerErrorsTest, UnknownCodec) {
  ExpectError({Start("zstd")}, grpc::StatusCode::INVALID_ARGUMENT, "unknown codec \"zstd\"");
}

TEST_F(ServerErrorsTest, BadOptionValues) {
  ExpectError({Start("rtn", {{"bits", "1"}})}, grpc::StatusCode::INVALID_ARGUMENT, "bits must be in [2, 8]");
  ExpectError({Start("rtn", {{"colour", "red"}})}, grpc::StatusCode::INVALID_ARGUMENT, "has no option \"colour\"");
  ExpectError({Start("rtn", {{"group_size", "many"}})}, grpc::StatusCode::INVALID_ARGUMENT, "not an integer");
}

TEST_F(ServerErrorsTest, ProtocolOrder) {
  ExpectError({File("m.safetensors", 10)}, grpc::StatusCode::INVALID_ARGUMENT, "first message must be Start");
  ExpectError({Start(), Start()}, grpc::StatusCode::INVALID_ARGUMENT, "Start sent twice");
  ExpectError({Start(), Chunk("abc")}, grpc::StatusCode::INVALID_ARGUMENT, "data before any file header");
  ExpectError({Start(), End()}, grpc::StatusCode::INVALID_ARGUMENT, "no .safetensors file");
}

TEST_F(ServerErrorsTest, BadFileNames) {
  ExpectError({Start(), File("../evil.safetensors", 10)}, grpc::StatusCode::INVALID_ARGUMENT, "not a plain file name");
  ExpectError({Start(), File("notes.txt", 10)}, grpc::StatusCode::INVALID_ARGUMENT, "only .safetensors files");
  ExpectError({Start(), File("a.safetensors", Tiny().size()), Chunk(Tiny()), File("b.safetensors", Tiny().size()),
               Chunk(Tiny()), End()},
              grpc::StatusCode::INVALID_ARGUMENT, "need their shard index");
}

TEST_F(ServerErrorsTest, MissingOrWrongToken) {
  ExpectError(Good(), grpc::StatusCode::UNAUTHENTICATED, "missing bearer token", "");
  ExpectError(Good(), grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token", "guess");
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  hyperc::v1::ListJobsResponse resp;
  EXPECT_EQ(stub_->ListJobs(&ctx, {}, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ServerErrorsTest, UnknownJobId) {
  hyperc::v1::JobRef ref;
  ref.set_id("does-not-exist");
  hyperc::v1::Job job;
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    grpc::Status s = stub_->GetJob(&ctx, ref, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("no job \"does-not-exist\""));
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    EXPECT_EQ(stub_->CancelJob(&ctx, ref, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    hyperc::v1::DeleteJobResponse d;
    EXPECT_EQ(stub_->DeleteJob(&ctx, ref, &d).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    hyperc::v1::FetchArtifactRequest req;
    req.set_id("does-not-exist");
    auto reader = stub_->FetchArtifact(&ctx, req);
    hyperc::v1::ArtifactChunk c;
    while (reader->Read(&c)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Auth(&ctx);
    auto reader = stub_->WatchJob(&ctx, ref);
    while (reader->Read(&job)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  ExpectStillServing();
}

TEST_F(ServerErrorsTest, FetchBeyondTheEndAndUnknownFile) {
  client::RemoteOptions o;
  o.server = server_->address();
  o.token = "s3cret";
  auto c = client::RemoteClient::Connect(o);
  ASSERT_TRUE(c.ok());
  auto job = (*c)->Submit(testing::ModelPath("faceres-f16.safetensors"), {});
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE((*c)->Watch(job->id()).ok());
  grpc::ClientContext ctx;
  Auth(&ctx);
  hyperc::v1::FetchArtifactRequest req;
  req.set_id(job->id());
  req.set_offset(1ull << 40);
  auto reader = stub_->FetchArtifact(&ctx, req);
  hyperc::v1::ArtifactChunk chunk;
  while (reader->Read(&chunk)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(), HasSubstr("past the end"));
  grpc::ClientContext ctx2;
  Auth(&ctx2);
  req.set_offset(0);
  req.set_file("other.safetensors");
  auto reader2 = stub_->FetchArtifact(&ctx2, req);
  while (reader2->Read(&chunk)) {
  }
  EXPECT_EQ(reader2->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  ExpectStillServing();
}

}  // namespace
}  // namespace hc
