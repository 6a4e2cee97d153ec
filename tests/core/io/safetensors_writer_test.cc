#include "core/io/safetensors_writer.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/io/safetensors_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/io/st_test_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

namespace fs = std::filesystem;
using ::hc::testing::AsBytes;
using ::hc::testing::IsOk;
using ::hc::testing::PatternBytes;
using ::hc::testing::ReadFile;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

struct Spec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string data;
};

std::vector<Spec> SampleTensors() {
  std::vector<Spec> s;
  s.push_back({"model.embed.weight", DType::kF32, {3, 5}, PatternBytes(60, 1)});
  s.push_back({"b", DType::kF16, {7}, PatternBytes(14, 2)});  // 14 bytes: later offsets unaligned
  s.push_back({"empty", DType::kBF16, {0, 4}, ""});
  s.push_back({"scalar", DType::kI64, {}, PatternBytes(8, 3)});
  s.push_back({"u8 with \"quotes\" and \xc3\xa9", DType::kU8, {3}, PatternBytes(3, 4)});
  s.push_back({"a", DType::kBF16, {2, 2}, PatternBytes(8, 5)});  // name sorts first: Add order kept
  return s;
}
const StringMap kMeta = {{"format", "pt"}, {"note", "line\nbreak"}};

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status WriteAll(const std::string& path, const std::vector<Spec>& specs,
                      const StringMap& meta, SafetensorsWriterOptions opts = {}) {
  auto w = SafetensorsWriter::Create(path, opts);
  if (!w.ok()) return w.status();
  for (const Spec& s : specs) {
    if (absl::Status st = (*w)->Add(s.name, s.dtype, s.shape, AsBytes(s.data)); !st.ok()) return st;
  }
  return (*w)->Finish(meta);
}

void ExpectReadsBack(const std::string& path, const std::vector<Spec>& specs, const StringMap& meta) {
  auto f = SafetensorsFile::Open(path);
  ASSERT_THAT(f, IsOk());
  const SafetensorsHeader& h = (*f)->header();
  EXPECT_EQ(h.data_start() % 8, 0u) << "data region must start 8-byte aligned";
  EXPECT_EQ(h.metadata, meta);
  ASSERT_EQ(h.tensors.size(), specs.size());
  uint64_t off = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo& t = h.tensors[i];
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.dtype, specs[i].dtype);
    EXPECT_EQ(t.shape, specs[i].shape);
    EXPECT_EQ(t.begin, off);
    off += specs[i].data.size();
    EXPECT_EQ(t.end, off);
    auto d = (*f)->TensorData(i);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(d.data()), d.size()), specs[i].data)
        << specs[i].name;
  }
  EXPECT_EQ(h.file_size(), fs::file_size(path));
}

TEST(SafetensorsWriter, RoundTrip) {
  const std::string dir = hc::testing::ScratchDir("writer/roundtrip");
  const std::string path = dir + "/out.safetensors";
  ASSERT_THAT(WriteAll(path, SampleTensors(), kMeta), IsOk());
  ExpectReadsBack(path, SampleTensors(), kMeta);
  EXPECT_THAT(DirEntries(dir), ::testing::ElementsAre("out.safetensors"));  // no temp file left
  // The stream parser reads it too.
  EXPECT_THAT(hc::testing::StreamParse(ReadFile(path), "s", {}), IsOk());
}

TEST(SafetensorsWriter, NoTensorsNoMetadata) {
  const std::string path = hc::testing::ScratchDir("writer/none") + "/out.safetensors";
  ASSERT_THAT(WriteAll(path, {}, {}), IsOk());
  ExpectReadsBack(path, {}, {});
  EXPECT_EQ(ReadFile(path), hc::testing::MakeSafetensors("{}      "));
}

TEST(SafetensorsWriter, DeterministicBytes) {
  const std::string dir = hc::testing::ScratchDir("writer/determinism");
  ASSERT_THAT(WriteAll(dir + "/1.safetensors", SampleTensors(), kMeta), IsOk());
  ASSERT_THAT(WriteAll(dir + "/2.safetensors", SampleTensors(), kMeta), IsOk());
  EXPECT_EQ(ReadFile(dir + "/1.safetensors"), ReadFile(dir + "/2.safetensors"));
  // Spilled writes are deterministic too.
  SafetensorsWriterOptions spill;
  spill.memory_limit = 16;
  spill.reserve_header_bytes = 4096;
  ASSERT_THAT(WriteAll(dir + "/3.safetensors", SampleTensors(), kMeta, spill), IsOk());
  ASSERT_THAT(WriteAll(dir + "/4.safetensors", SampleTensors(), kMeta, spill), IsOk());
  EXPECT_EQ(ReadFile(dir + "/3.safetensors"), ReadFile(dir + "/4.safetensors"));
}

TEST(SafetensorsWriter, DataRegionAlignedForEveryHeaderLength) {
  const std::string dir = hc::testing::ScratchDir("writer/aligned");
  for (int len = 1; len <= 16; ++len) {
    const std::string path = absl::StrCat(dir, "/", len, ".safetensors");
    std::vector<Spec> specs = {{std::string(len, 'n'), DType::kU8, {1}, "x"}};
    ASSERT_THAT(WriteAll(path, specs, {}), IsOk());
    const std::string bytes = ReadFile(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    EXPECT_EQ((8 + n) % 8, 0u) << len;
    // Padding is spaces only.
    const std::string header = bytes.substr(8, n);
    EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
    ExpectReadsBack(path, specs, {});
  }
}

// With memory_limit tiny, data spills to disk after a reserved header area. The header then
// fills the whole reservation (padded with spaces), so the file is not byte-identical to the
// in-memory path, but it must decode identically and its data region must be identical.
TEST(SafetensorsWriter, SpillPathDecodesIdenticallyToMemoryPath) {
  const std::string dir = hc::testing::ScratchDir("writer/spill");
  ASSERT_THAT(WriteAll(dir + "/mem.safetensors", SampleTensors(), kMeta), IsOk());
  SafetensorsWriterOptions spill;
  spill.memory_limit = 16;
  spill.reserve_header_bytes = 4096;
  ASSERT_THAT(WriteAll(dir + "/spill.safetensors", SampleTensors(), kMeta, spill), IsOk());
  ExpectReadsBack(dir + "/spill.safetensors", SampleTensors(), kMeta);
  HC_ASSERT_OK_AND_ASSIGN(auto mem, SafetensorsFile::Open(dir + "/mem.safetensors"));
  HC_ASSERT_OK_AND_ASSIGN(auto sp, SafetensorsFile::Open(dir + "/spill.safetensors"));
  EXPECT_EQ(sp->header().header_bytes, 4096u);  // the reservation, exactly
  const std::string a = ReadFile(dir + "/mem.safetensors");
  const std::string b = ReadFile(dir + "/spill.safetensors");
  EXPECT_EQ(a.substr(mem->header().data_start()), b.substr(sp->header().data_start()));
  // Same JSON text once the padding is stripped.
  auto trimmed = [](std::string s) { return s.substr(0, s.find_last_not_of(' ') + 1); };
  EXPECT_EQ(trimmed(a.substr(8, mem->header().header_bytes)),
            trimmed(b.substr(8, sp->header().header_bytes)));
  EXPECT_THAT(DirEntries(dir), ::testing::ElementsAre("mem.safetensors", "spill.safetensors"));
  // memory_limit 0: every byte spills.
  spill.memory_limit = 0;
  ASSERT_THAT(WriteAll(dir + "/zero.safetensors", SampleTensors(), kMeta, spill), IsOk());
  EXPECT_EQ(ReadFile(dir + "/zero.safetensors"), b);
}

// When the header is larger than reserve_header_bytes the data is moved up at Finish().
TEST(SafetensorsWriter, HeaderOutgrowsReservation) {
  const std::string dir = hc::testing::ScratchDir("writer/outgrow");
  std::vector<Spec> specs;
  for (int i = 0; i < 200; ++i) {
    specs.push_back({absl::StrCat("layers.", i, ".weight"), i % 2 ? DType::kF16 : DType::kF32,
                     {i % 5, 3}, PatternBytes((i % 5) * 3 * (i % 2 ? 2 : 4), static_cast<uint8_t>(i))});
  }
  SafetensorsWriterOptions opts;
  opts.memory_limit = 16;
  opts.reserve_header_bytes = 8;
  ASSERT_THAT(WriteAll(dir + "/small.safetensors", specs, kMeta, opts), IsOk());
  ExpectReadsBack(dir + "/small.safetensors", specs, kMeta);
  // Identical to the in-memory path: the header is padded the same way once it outgrows.
  ASSERT_THAT(WriteAll(dir + "/mem.safetensors", specs, kMeta), IsOk());
  EXPECT_EQ(ReadFile(dir + "/small.safetensors"), ReadFile(dir + "/mem.safetensors"));
  EXPECT_THAT(DirEntries(dir), ::testing::ElementsAre("mem.safetensors", "small.safetensors"));
}

TEST(SafetensorsWriter, LargeDataSpills) {
  const std::string dir = hc::testing::ScratchDir("writer/large");
  std::vector<Spec> specs;
  for (int i = 0; i < 5; ++i) {
    specs.push_back({absl::StrCat("t", i), DType::kF32, {1000, 100 + i},
                     PatternBytes(4 * 1000 * (100 + i), static_cast<uint8_t>(i))});
  }
  SafetensorsWriterOptions opts;
  opts.memory_limit = 1 << 20;
  opts.reserve_header_bytes = 64;  // too small: forces the copy after spilling 2 MB
  ASSERT_THAT(WriteAll(dir + "/a.safetensors", specs, {}, opts), IsOk());
  ExpectReadsBack(dir + "/a.safetensors", specs, {});
  opts.sync = false;
  opts.reserve_header_bytes = 1024;
  ASSERT_THAT(WriteAll(dir + "/b.safetensors", specs, {}, opts), IsOk());
  ExpectReadsBack(dir + "/b.safetensors", specs, {});
}

// Direct I/O (the default once data spills) writes the same bytes as buffered writes: data
// over several 8 MiB stages with odd tensor sizes, a last partial stage, a header that fits its
// reservation and one that outgrows it (the copy after the direct writes), and a tmpfs target
// where the kernel may refuse O_DIRECT (the fallback).
TEST(SafetensorsWriter, DirectIoWritesTheSameBytes) {
  const std::string dir = hc::testing::ScratchDir("writer/direct");
  std::vector<Spec> specs;
  const size_t stage = SafetensorsWriter::kDirectBlock;
  for (int i = 0; i < 7; ++i) {
    const int64_t n = static_cast<int64_t>(stage / 3) + 1001 * i + 3;  // stage-straddling
    specs.push_back({absl::StrCat("w", i), DType::kU8, {n}, PatternBytes(n, static_cast<uint8_t>(i))});
  }
  specs.push_back({"tail", DType::kF16, {3}, PatternBytes(6, 9)});
  std::vector<std::string> dirs = {dir};
  if (fs::is_directory("/dev/shm")) {
    const std::string shm = absl::StrCat("/dev/shm/hc_writer_direct_", ::getpid());
    fs::create_directories(shm);
    dirs.push_back(shm);
  }
  for (const std::string& d : dirs) {
    SCOPED_TRACE(d);
    for (uint64_t reserve : {uint64_t{1} << 20, uint64_t{8}}) {
      SafetensorsWriterOptions buffered;
      buffered.memory_limit = 1 << 16;
      buffered.reserve_header_bytes = reserve;
      buffered.direct_io = false;
      SafetensorsWriterOptions direct = buffered;
      direct.direct_io = true;
      ASSERT_THAT(WriteAll(d + "/b.safetensors", specs, kMeta, buffered), IsOk());
      ASSERT_THAT(WriteAll(d + "/d.safetensors", specs, kMeta, direct), IsOk());
      ExpectReadsBack(d + "/d.safetensors", specs, kMeta);
      EXPECT_TRUE(ReadFile(d + "/b.safetensors") == ReadFile(d + "/d.safetensors"))
          << "reserve " << reserve;
    }
    EXPECT_THAT(DirEntries(d), ::testing::ElementsAre("b.safetensors", "d.safetensors"));
  }
  if (dirs.size() > 1) fs::remove_all(dirs[1]);
}

TEST(SafetensorsWriter, DestroyedWithoutFinishLeavesNothing) {
  const std::string dir = hc::testing::ScratchDir("writer/abandon");
  {
    HC_ASSERT_OK_AND_ASSIGN(auto w, SafetensorsWriter::Create(dir + "/x.safetensors"));
    ASSERT_THAT(w->Add("a", DType::kU8, {3}, AsBytes("abc")), IsOk());
    EXPECT_EQ(DirEntries(dir).size(), 1u);  // the temp file exists while writing
  }
  EXPECT_TRUE(DirEntries(dir).empty());
  {
    SafetensorsWriterOptions opts;
    opts.memory_limit = 1;
    HC_ASSERT_OK_AND_ASSIGN(auto w, SafetensorsWriter::Create(dir + "/y.safetensors", opts));
    ASSERT_THAT(w->Add("a", DType::kU8, {3}, AsBytes("abc")), IsOk());  // spilled
    ASSERT_THAT(w->Add("b", DType::kU8, {3}, AsBytes("def")), IsOk());
  }
  EXPECT_TRUE(DirEntries(dir).empty());
  {
    HC_ASSERT_OK_AND_ASSIGN(auto w, SafetensorsWriter::Create(dir + "/z.safetensors"));
  }
  EXPECT_TRUE(DirEntries(dir).empty());
}

TEST(SafetensorsWriter, ReplacesAnExistingFileOnlyAtFinish) {
  const std::string dir = hc::testing::ScratchDir("writer/replace");
  const std::string path = dir + "/x.safetensors";
  hc::testing::WriteFile(path, "old");
  {
    HC_ASSERT_OK_AND_ASSIGN(auto w, SafetensorsWriter::Create(path));
    ASSERT_THAT(w->Add("a", DType::kU8, {1}, AsBytes("z")), IsOk());
  }
  EXPECT_EQ(ReadFile(path), "old");
  ASSERT_THAT(WriteAll(path, SampleTensors(), kMeta), IsOk());
  ExpectReadsBack(path, SampleTensors(), kMeta);
}

TEST(SafetensorsWriter, AddErrors) {
  const std::string dir = hc::testing::ScratchDir("writer/errors");
  const std::string path = dir + "/x.safetensors";
  HC_ASSERT_OK_AND_ASSIGN(auto w, SafetensorsWriter::Create(path));
  ASSERT_THAT(w->Add("a", DType::kF32, {2}, AsBytes(PatternBytes(8))), IsOk());
  EXPECT_THAT(w->Add("a", DType::kF32, {2}, AsBytes(PatternBytes(8))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr(path), HasSubstr("duplicate tensor name \"a\""))));
  EXPECT_THAT(w->Add("b", DType::kF32, {3}, AsBytes(PatternBytes(8))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("tensor \"b\" has 8 bytes"),
                                        HasSubstr("[3] x F32 needs 12"))));
  EXPECT_THAT(w->Add("c", DType::kU8, {-1}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor \"c\"")));
  EXPECT_THAT(w->Add("d", DType::kU8, {int64_t{1} << 62, 8}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor \"d\"")));
  EXPECT_THAT(w->Add("", DType::kU8, {0}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid tensor name")));
  EXPECT_THAT(w->Add("__metadata__", DType::kU8, {0}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid tensor name")));
  // Failed Adds leave no trace: the file has only "a".
  EXPECT_EQ(w->data_bytes(), 8u);
  ASSERT_THAT(w->Finish({}), IsOk());
  EXPECT_THAT(w->Add("z", DType::kU8, {0}, {}), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("finished")));
  EXPECT_THAT(w->Finish({}), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("finished")));
  HC_ASSERT_OK_AND_ASSIGN(auto f, SafetensorsFile::Open(path));
  ASSERT_EQ(f->header().tensors.size(), 1u);
  EXPECT_EQ(f->header().tensors[0].name, "a");
}

TEST(SafetensorsWriter, OptionsAndCreateErrors) {
  SafetensorsWriterOptions o;
  EXPECT_THAT(o.Validate(), IsOk());
  for (uint64_t bad : {uint64_t{0}, uint64_t{7}, uint64_t{12}, uint64_t{100'000'008}}) {
    o.reserve_header_bytes = bad;
    EXPECT_THAT(o.Validate(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reserve_header_bytes")))
        << bad;
    EXPECT_THAT(SafetensorsWriter::Create(hc::testing::ScratchDir("writer/opts") + "/x", o),
                StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
  EXPECT_THAT(SafetensorsWriter::Create("/nonexistent/dir/x.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/dir/x.safetensors")));
}

// Whatever the writer accepts, it must be able to read back: a name that is not valid UTF-8
// must be rejected by Add (or Finish), not written into a file no reader accepts.
TEST(SafetensorsWriter, NameWithInvalidUtf8IsRejectedOrReadable) {
  const std::string path = hc::testing::ScratchDir("writer/utf8") + "/x.safetensors";
  absl::Status s = WriteAll(path, {{"bad\xff", DType::kU8, {1}, "x"}}, {});
  if (s.ok()) {
    EXPECT_THAT(SafetensorsFile::Open(path), IsOk())
        << "SafetensorsWriter wrote a header that SafetensorsFile rejects";
  } else {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
}

// Likewise metadata with a repeated key, or a metadata value that is not valid UTF-8.
void ExpectMetadataRejectedOrReadable(const std::string& name, const StringMap& meta) {
  const std::string path = hc::testing::ScratchDir("writer/" + name) + "/x.safetensors";
  absl::Status s = WriteAll(path, {{"a", DType::kU8, {1}, "x"}}, meta);
  if (s.ok()) {
    EXPECT_THAT(SafetensorsFile::Open(path), IsOk())
        << "SafetensorsWriter wrote a header that SafetensorsFile rejects";
  } else {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  }
}

TEST(SafetensorsWriter, DuplicateMetadataKeyIsRejectedOrReadable) {
  ExpectMetadataRejectedOrReadable("meta_dup", {{"k", "1"}, {"k", "2"}});
}

TEST(SafetensorsWriter, MetadataWithInvalidUtf8IsRejectedOrReadable) {
  ExpectMetadataRejectedOrReadable("meta_utf8", {{"k", "\xc0\xaf"}});
}

}  // namespace
}  // namespace hc
