// The zero-copy upload messages: the bytes a raw ByteBuffer chunk puts on the wire must be
// exactly those of the typed CompressRequest, and the mapping must outlive the messages.
#include "client/mapped_upload.h"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <grpcpp/support/proto_buffer_reader.h>

#include "gtest/gtest.h"
#include "hyperc/v1/hyperc.pb.h"

namespace hc::client {
namespace {

std::string Flatten(const grpc::ByteBuffer& bb) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(bb.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

class ClientMappedUploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/mapped_upload_" + std::to_string(::getpid()) + ".bin";
    // Not a multiple of the page size, with a pattern that shows any shift.
    bytes_.resize((5 << 20) + 12345);
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<char>((i * 131 + i / 4099) & 0xff);
    FILE* f = std::fopen(path_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes_.data(), 1, bytes_.size(), f), bytes_.size());
    std::fclose(f);
  }
  void TearDown() override { std::remove(path_.c_str()); }
  std::string path_;
  std::string bytes_;
};

TEST_F(ClientMappedUploadTest, ChunkBytesEqualTheTypedMessage) {
  auto file = MappedFile::Open(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->size(), bytes_.size());
  // Lengths around the varint boundaries, offsets on and off page boundaries, the file's tail.
  const std::vector<std::pair<uint64_t, uint64_t>> ranges = {
      {0, 0},       {0, 1},       {7, 127},          {4096, 128},          {1, 16383},
      {4095, 16384}, {0, 4 << 20}, {12345, 2097152}, {bytes_.size() - 3, 3}, {(1 << 20) + 1, 4 << 20}};
  for (const auto& [off, n] : ranges) {
    hyperc::v1::CompressRequest typed;
    typed.set_chunk(bytes_.substr(off, n));
    const grpc::ByteBuffer raw = ChunkMessage(*file, off, n);
    EXPECT_EQ(raw.Length(), typed.ByteSizeLong()) << off << "+" << n;
    EXPECT_EQ(Flatten(raw), typed.SerializeAsString()) << off << "+" << n;
    // And the server's parser reads it back as that chunk.
    hyperc::v1::CompressRequest parsed;
    grpc::ByteBuffer copy(raw);
    grpc::ProtoBufferReader reader(&copy);
    ASSERT_TRUE(parsed.ParseFromZeroCopyStream(&reader));
    ASSERT_EQ(parsed.msg_case(), hyperc::v1::CompressRequest::kChunk);
    EXPECT_TRUE(parsed.chunk() == bytes_.substr(off, n)) << off << "+" << n;
  }
}

TEST_F(ClientMappedUploadTest, MessagesKeepTheMappingAliveAndDroppingKeepsTheBytes) {
  grpc::ByteBuffer a, b;
  {
    auto file = MappedFile::Open(path_);
    ASSERT_TRUE(file.ok()) << file.status();
    a = ChunkMessage(*file, 100, 3 << 20);
    b = ChunkMessage(*file, 3 << 20, 1 << 20);
    // Dropping pages only unmaps them from the process: they read back the same.
    (*file)->Prefault(0, (*file)->size());
    (*file)->Drop(0, (*file)->size());
  }  // the file handle is gone; the messages still point into the mapping
  hyperc::v1::CompressRequest typed;
  typed.set_chunk(bytes_.substr(100, 3 << 20));
  EXPECT_EQ(Flatten(a), typed.SerializeAsString());
  a.Clear();  // releases its slice (and drops its pages) while b still uses the mapping
  typed.set_chunk(bytes_.substr(3 << 20, 1 << 20));
  EXPECT_EQ(Flatten(b), typed.SerializeAsString());
}

TEST_F(ClientMappedUploadTest, EmptyAndMissingFiles) {
  EXPECT_EQ(MappedFile::Open(path_ + ".missing").status().code(), absl::StatusCode::kNotFound);
  const std::string empty = path_ + ".empty";
  std::fclose(std::fopen(empty.c_str(), "wb"));
  auto file = MappedFile::Open(empty);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->size(), 0u);
  std::remove(empty.c_str());
}

TEST_F(ClientMappedUploadTest, SmallMessagesSerialiseAsProtobuf) {
  hyperc::v1::CompressRequest req;
  req.mutable_file()->set_name("model.safetensors");
  req.mutable_file()->set_size(123456789);
  EXPECT_EQ(Flatten(MessageBuffer(req)), req.SerializeAsString());
}

}  // namespace
}  // namespace hc::client
