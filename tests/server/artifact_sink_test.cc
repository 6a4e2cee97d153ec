// The client's artifact sink: staged O_DIRECT writes must give exactly the bytes sent, whatever
// the chunk sizes, and a failed or uncommitted sink leaves no file.
#include "client/artifact_sink.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc::client {
namespace {

std::string Pattern(size_t n, int seed) {
  std::string s(n, 0);
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 2654435761u + seed) >> 7);
  return s;
}

hyperc::v1::Summary SummaryOf(const std::vector<std::pair<std::string, uint64_t>>& files) {
  hyperc::v1::Summary s;
  for (const auto& [name, size] : files) {
    auto* f = s.add_files();
    f->set_name(name);
    f->set_size(size);
  }
  return s;
}

// Sends `bytes` as file `name` in chunks of varying sizes (some past the stage, some tiny).
absl::Status Send(ArtifactSink& sink, const std::string& name, const std::string& bytes) {
  const size_t sizes[] = {1, 4095, 4097, 1 << 20, 3, (9 << 20) + 5, 65536};
  size_t pos = 0;
  for (size_t k = 0; pos < bytes.size(); ++k) {
    const size_t n = std::min(bytes.size() - pos, sizes[k % 7]);
    hyperc::v1::ArtifactChunk c;
    c.set_file(name);
    c.set_file_size(bytes.size());
    c.set_offset(pos);
    c.set_data(bytes.substr(pos, n));
    if (absl::Status s = sink.Write(c); !s.ok()) return s;
    pos += n;
  }
  return absl::OkStatus();
}

TEST(ClientArtifactSinkTest, StagedWritesGiveTheBytesSent) {
  const std::string dir = testing::ScratchDir("artifact_sink_staged");
  // Larger than the stage and not a multiple of the block; smaller than the stage; empty.
  const std::string big = Pattern((20 << 20) + 1234, 1), small = Pattern(70000, 2);
  {
    ArtifactSink sink(dir + "/out", /*directory=*/true);
    HC_ASSERT_OK(Send(sink, "a.safetensors", big));
    HC_ASSERT_OK(Send(sink, "b.safetensors", small));
    hyperc::v1::ArtifactChunk empty;
    empty.set_file("c.json");
    HC_ASSERT_OK(sink.Write(empty));
    HC_ASSERT_OK(sink.Commit(SummaryOf({{"a.safetensors", big.size()}, {"b.safetensors", small.size()}, {"c.json", 0}})));
  }
  EXPECT_TRUE(testing::ReadAll(dir + "/out/a.safetensors") == big);
  EXPECT_TRUE(testing::ReadAll(dir + "/out/b.safetensors") == small);
  EXPECT_EQ(std::filesystem::file_size(dir + "/out/c.json"), 0u);
  EXPECT_FALSE(std::filesystem::exists(dir + "/out/a.safetensors.part"));
}

TEST(ClientArtifactSinkTest, IncompleteOrDisorderedArtifactsLeaveNothing) {
  const std::string dir = testing::ScratchDir("artifact_sink_bad");
  const std::string big = Pattern((10 << 20) + 7, 3);
  {
    ArtifactSink sink(dir + "/short.hyc", /*directory=*/false);
    hyperc::v1::ArtifactChunk c;
    c.set_file("m.hyc");
    c.set_file_size(big.size());
    c.set_data(big.substr(0, 9 << 20));
    HC_ASSERT_OK(sink.Write(c));
    EXPECT_EQ(sink.Commit(SummaryOf({{"m.hyc", big.size()}})).code(), absl::StatusCode::kDataLoss);
    c.set_offset(1);  // not where the last chunk ended
    EXPECT_EQ(sink.Write(c).code(), absl::StatusCode::kDataLoss);
    c.set_offset(9 << 20);
    c.set_data(big.substr(9 << 20) + "x");  // past the announced size
    EXPECT_EQ(sink.Write(c).code(), absl::StatusCode::kDataLoss);
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/short.hyc"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/short.hyc.part"));
}

}  // namespace
}  // namespace hc::client
