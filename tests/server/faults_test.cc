// Faults: clients that go away mid-upload or mid-download, and deadlines. The server frees what
// the call held, keeps finished jobs fetchable, and keeps serving.
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <thread>

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

using ::hc::testing::IsOk;

class FaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir(absl::StrCat("faults_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    Start();
  }
  // (Re)starts the server with a memory budget per job and a number of running jobs.
  void Start(uint64_t budget = uint64_t{256} << 20, int max_running = 2) {
    client_.reset();
    stub_.reset();
    server_.reset();
    server::ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.metrics_address = "";
    o.jobs.spool_dir = dir_ + "/spool";
    o.jobs.sync = false;
    o.jobs.memory_budget = budget;
    o.jobs.max_running_jobs = max_running;
    o.jobs.log = [](const std::string&) {};
    auto s = server::Server::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    stub_ = hyperc::v1::Compressor::NewStub(grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    client::RemoteOptions c;
    c.server = server_->address();
    client_ = *client::RemoteClient::Connect(c);
    model_ = testing::ReadAll(testing::ModelPath("movenet-thunder-f16.safetensors"));
  }
  // Job directories left in the spool.
  size_t SpoolJobs() {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/spool/jobs")) n += e.is_directory();
    return n;
  }
  // Up to 20 s: a loaded 2-core CI machine can take seconds to tear a cancelled call down.
  bool WaitUntil(const std::function<bool()>& pred) {
    for (int i = 0; i < 2000 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return pred();
  }
  template <typename Stream>
  void SendHalf(Stream* s) {
    hyperc::v1::CompressRequest r;
    r.mutable_start()->set_model_name("half");
    ASSERT_TRUE(s->Write(r));
    r.Clear();
    r.mutable_file()->set_name("m.safetensors");
    r.mutable_file()->set_size(model_.size());
    ASSERT_TRUE(s->Write(r));
    r.Clear();
    r.set_chunk(model_.substr(0, model_.size() / 2));
    ASSERT_TRUE(s->Write(r));
  }
  std::string dir_, model_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<hyperc::v1::Compressor::Stub> stub_;
  std::unique_ptr<client::RemoteClient> client_;
};

TEST_F(FaultsTest, CompressClientGoesAwayMidUpload) {
  {
    grpc::ClientContext ctx;
    auto stream = stub_->Compress(&ctx);
    SendHalf(stream.get());
    ASSERT_TRUE(WaitUntil([&] { return server_->jobs().running() == 1; }));
    ctx.TryCancel();
    stream->Finish().IgnoreError();
  }
  EXPECT_TRUE(WaitUntil([&] { return server_->jobs().running() == 0 && SpoolJobs() == 0; }))
      << "running " << server_->jobs().running() << ", spool jobs " << SpoolJobs();
  EXPECT_THAT(client_->Compress(testing::ModelPath("fmnist-cnn-f32.safetensors"), dir_ + "/ok.hyc", {}), IsOk());
}

TEST_F(FaultsTest, SubmitClientGoesAwayMidUpload) {
  {
    grpc::ClientContext ctx;
    hyperc::v1::Job job;
    auto writer = stub_->SubmitJob(&ctx, &job);
    SendHalf(writer.get());
    ASSERT_TRUE(WaitUntil([&] { return SpoolJobs() == 1; }));
    ctx.TryCancel();
    writer->Finish().IgnoreError();
  }
  EXPECT_TRUE(WaitUntil([&] { return server_->jobs().running() == 0 && SpoolJobs() == 0; }));
  auto jobs = client_->List();
  ASSERT_THAT(jobs, IsOk());
  EXPECT_TRUE(jobs->empty()) << "a half-uploaded job must not be listed";
}

TEST_F(FaultsTest, ClientGoesAwayMidDownloadThenFetchesAgain) {
  auto job = client_->Submit(testing::ModelPath("movenet-thunder-f16.safetensors"), {});
  ASSERT_THAT(job, IsOk());
  ASSERT_THAT(client_->Watch(job->id()), IsOk());
  {
    grpc::ClientContext ctx;
    hyperc::v1::FetchArtifactRequest req;
    req.set_id(job->id());
    auto reader = stub_->FetchArtifact(&ctx, req);
    hyperc::v1::ArtifactChunk chunk;
    ASSERT_TRUE(reader->Read(&chunk));
    ctx.TryCancel();
    while (reader->Read(&chunk)) {
    }
    reader->Finish().IgnoreError();
  }
  HC_ASSERT_OK(client_->Fetch(job->id(), dir_ + "/a.hyc"));
  HC_ASSERT_OK(CompressModel(testing::ModelPath("movenet-thunder-f16.safetensors"), dir_ + "/l.hyc", {}).status());
  EXPECT_TRUE(testing::ReadAll(dir_ + "/a.hyc") == testing::ReadAll(dir_ + "/l.hyc"));
}

TEST_F(FaultsTest, CompressDeadlineExceeded) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto stream = stub_->Compress(&ctx);
  SendHalf(stream.get());  // never finishes the upload
  hyperc::v1::CompressResponse resp;
  while (stream->Read(&resp)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitUntil([&] { return server_->jobs().running() == 0 && SpoolJobs() == 0; }));
  EXPECT_THAT(client_->Compress(testing::ModelPath("fmnist-cnn-f32.safetensors"), dir_ + "/ok.hyc", {}), IsOk());
}

// A Compress call's upload is held in memory, not spooled, and read no faster than the job
// takes it. With a 1 MiB budget the server holds at most 128 KiB ahead of the job, or the one
// larger tensor it waits for: a slow upload in small chunks still gives the local artifact.
TEST_F(FaultsTest, HeldUploadUnderBackpressureGivesTheLocalArtifact) {
  Start(/*budget=*/1 << 20);
  grpc::ClientContext ctx;
  auto stream = stub_->Compress(&ctx);
  std::thread writer([&] {
    hyperc::v1::CompressRequest r;
    r.mutable_start()->set_model_name("slow");
    (*r.mutable_start()->mutable_options()->mutable_codec_options())["bits"] = "4";
    ASSERT_TRUE(stream->Write(r));
    r.Clear();
    r.mutable_file()->set_name("m.safetensors");
    r.mutable_file()->set_size(model_.size());
    ASSERT_TRUE(stream->Write(r));
    // Odd chunk sizes (the 8-byte header length split over two chunks), a pause now and then.
    size_t pos = 0, k = 0;
    for (size_t n : {size_t{3}, size_t{9}, size_t{1000}}) {
      r.Clear();
      r.set_chunk(model_.substr(pos, n));
      ASSERT_TRUE(stream->Write(r));
      pos += n;
    }
    while (pos < model_.size()) {
      const size_t n = std::min<size_t>(model_.size() - pos, 40000 + 777 * (k % 50));
      r.Clear();
      r.set_chunk(model_.substr(pos, n));
      ASSERT_TRUE(stream->Write(r));
      pos += n;
      if (++k % 64 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    r.Clear();
    r.mutable_end();
    ASSERT_TRUE(stream->Write(r));
    stream->WritesDone();
  });
  std::string artifact;
  bool summary = false;
  hyperc::v1::CompressResponse resp;
  while (stream->Read(&resp)) {
    if (resp.has_artifact()) {
      ASSERT_EQ(resp.artifact().offset(), artifact.size());
      artifact += resp.artifact().data();
    }
    summary = summary || resp.has_summary();
  }
  writer.join();
  const grpc::Status st = stream->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(summary);
  CompressOptions local;
  local.codec_options = {{"bits", "4"}};
  local.sync = false;
  HC_ASSERT_OK(CompressModel(testing::ModelPath("movenet-thunder-f16.safetensors"), dir_ + "/l.hyc", local).status());
  EXPECT_TRUE(artifact == testing::ReadAll(dir_ + "/l.hyc")) << "artifact differs from local mode";
  EXPECT_TRUE(WaitUntil([&] { return SpoolJobs() == 0; }));
}

// With a 2 MiB budget the two movenet tensors over 1 MiB (half the budget) are staged into the
// spool file and mapped; the others are copied into memory. hc1 copies its input and drops a
// mapped one early. Through Compress (held upload) and SubmitJob (spooled upload, every tensor
// mapped) the artifact is still local mode's, byte for byte.
TEST_F(FaultsTest, StagedAndMappedTensorsGiveTheLocalArtifact) {
  Start(/*budget=*/2 << 20);
  const std::string model = testing::ModelPath("movenet-thunder-f16.safetensors");
  CompressOptions o;
  o.codec = "hc1";
  HC_ASSERT_OK(client_->Compress(model, dir_ + "/held.hyc", o).status());
  auto job = client_->Submit(model, o);
  HC_ASSERT_OK(job.status());
  auto done = client_->Watch(job->id());
  HC_ASSERT_OK(done.status());
  ASSERT_EQ(done->state(), hyperc::v1::Job::SUCCEEDED) << done->error();
  HC_ASSERT_OK(client_->Fetch(job->id(), dir_ + "/spooled.hyc"));
  CompressOptions local = o;
  local.sync = false;
  HC_ASSERT_OK(CompressModel(model, dir_ + "/local.hyc", local).status());
  const std::string want = testing::ReadAll(dir_ + "/local.hyc");
  EXPECT_TRUE(testing::ReadAll(dir_ + "/held.hyc") == want) << "held upload: artifact differs from local mode";
  EXPECT_TRUE(testing::ReadAll(dir_ + "/spooled.hyc") == want) << "spooled upload: artifact differs from local mode";
}

// A call whose reads the server has paused (its job waits for the only worker slot, so nothing
// takes the held bytes) and whose client then goes away: the job is freed, the call holding
// the slot is not disturbed, and the server goes on.
TEST_F(FaultsTest, HeldUploadPausedThenCancelled) {
  Start(/*budget=*/1 << 20, /*max_running=*/1);
  grpc::ClientContext first_ctx;
  auto first = stub_->Compress(&first_ctx);
  SendHalf(first.get());  // runs, then waits for the rest
  ASSERT_TRUE(WaitUntil([&] { return server_->jobs().running() == 1; }));
  {
    grpc::ClientContext ctx;
    auto stream = stub_->Compress(&ctx);
    SendHalf(stream.get());  // 6 MB against a 128 KiB limit: the server stops reading
    ASSERT_TRUE(WaitUntil([&] { return server_->jobs().queued() == 1 && SpoolJobs() == 2; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ctx.TryCancel();
    stream->Finish().IgnoreError();
  }
  EXPECT_TRUE(WaitUntil([&] { return server_->jobs().queued() == 0 && SpoolJobs() == 1; }))
      << "queued " << server_->jobs().queued() << ", spool jobs " << SpoolJobs();
  EXPECT_EQ(server_->jobs().running(), 1);
  first_ctx.TryCancel();
  first->Finish().IgnoreError();
  EXPECT_TRUE(WaitUntil([&] { return server_->jobs().running() == 0 && SpoolJobs() == 0; }))
      << "running " << server_->jobs().running() << ", spool jobs " << SpoolJobs();
  const std::string model = testing::ModelPath("movenet-thunder-f16.safetensors");
  HC_ASSERT_OK(client_->Compress(model, dir_ + "/ok.hyc", {}).status());
  HC_ASSERT_OK(CompressModel(model, dir_ + "/l.hyc", {}).status());
  EXPECT_TRUE(testing::ReadAll(dir_ + "/ok.hyc") == testing::ReadAll(dir_ + "/l.hyc"));
}

}  // namespace
}  // namespace hc
