// Issue 8, acceptance 5: single-bit flips anywhere in a real artifact (header included) are
// detected (an error from ArtifactReader::Open or DecodeTensor) or harmless (every tensor decodes
// byte-identical to the unflipped artifact); none crashes or silently changes the weights.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/base/parallel.h"
#include "core/format/artifact.h"
#include "core/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::ModelPath;
using ::hc::testing::ReadAll;
using ::hc::testing::ScratchDir;

// What an artifact decodes to: each record's name, dtype, shape and bytes.
struct Decoded {
  std::vector<std::string> names;
  std::vector<std::string> layouts;
  std::vector<std::vector<uint8_t>> bytes;
  bool operator==(const Decoded&) const = default;
};

// Opens and decodes every record of `path`, or returns the first error (`*at_open` tells
// whether ArtifactReader::Open gave it).
absl::StatusOr<Decoded> DecodeAll(const std::string& path, bool* at_open = nullptr) {
  auto reader = ArtifactReader::Open(path);
  if (at_open != nullptr) *at_open = !reader.ok();
  if (!reader.ok()) return reader.status();
  InlineExecutor executor;
  Decoded d;
  const auto& records = (*reader)->metadata().tensors;
  for (size_t i = 0; i < records.size(); ++i) {
    const TensorRecord& r = records[i];
    std::vector<uint8_t> out(r.numel * DTypeSize(r.dtype));
    if (absl::Status s = (*reader)->DecodeTensor(i, absl::MakeSpan(out), executor); !s.ok()) {
      return s;
    }
    d.names.push_back(r.name);
    d.layouts.push_back(std::string(DTypeName(r.dtype)) + ShapeString(r.shape));
    d.bytes.push_back(std::move(out));
  }
  return d;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

struct Outcomes {
  int detected = 0;  // of which:
  int detected_at_open = 0;
  int detected_at_decode = 0;
  int harmless = 0;
  int undetected_different = 0;
};

class BitFlipTest : public ::testing::TestWithParam<const char*> {};

// Flips `flips` random bits (one at a time) among the first `range_bytes` bytes of `art`.
Outcomes FlipAndCheck(const std::string& art, const Decoded& want, uint64_t range_bytes,
                      int flips, uint64_t seed, const std::string& path) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> bit(0, range_bytes * 8 - 1);
  Outcomes o;
  std::string flipped = art;
  for (int i = 0; i < flips; ++i) {
    const uint64_t b = bit(rng);
    flipped[b / 8] ^= static_cast<char>(1 << (b % 8));
    WriteFile(path, flipped);
    bool at_open = false;
    absl::StatusOr<Decoded> got = DecodeAll(path, &at_open);
    flipped[b / 8] = art[b / 8];
    if (!got.ok()) {
      EXPECT_THAT(got.status().code(),
                  ::testing::AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kDataLoss,
                                   absl::StatusCode::kFailedPrecondition))
          << "bit " << b << ": " << got.status();
      ++o.detected;
      ++(at_open ? o.detected_at_open : o.detected_at_decode);
    } else if (*got == want) {
      ++o.harmless;
    } else {
      ADD_FAILURE() << "bit " << b << " (byte " << b / 8 << ", value 0x" << std::hex
                    << (static_cast<unsigned>(static_cast<uint8_t>(art[b / 8]))) << std::dec
                    << ") decodes to different weights without an error";
      ++o.undetected_different;
    }
  }
  return o;
}

TEST_P(BitFlipTest, SingleBitFlipsAreDetectedOrHarmless) {
  const std::string codec = GetParam();
  const std::string dir = ScratchDir("bitflip_" + codec);
  CompressOptions options;
  options.codec = codec;
  options.sync = false;
  const std::string art_path = dir + "/fmnist." + codec + ".hyc";
  HC_ASSERT_OK(CompressModel(ModelPath("fmnist-cnn-f32.safetensors"), art_path, options));
  HC_ASSERT_OK_AND_ASSIGN(const Decoded want, DecodeAll(art_path));
  const std::string art = ReadAll(art_path);
  uint64_t header_end = 0;
  for (int i = 0; i < 8; ++i) header_end |= uint64_t{static_cast<uint8_t>(art[i])} << (8 * i);
  header_end += 8;
  ASSERT_LT(header_end, art.size());

  const std::string path = dir + "/flipped.hyc";
  // 1000 flips over the whole file (as issue 8 asks), then 1000 inside the length prefix and
  // JSON header, where uniform flips rarely land.
  const Outcomes whole = FlipAndCheck(art, want, art.size(), 1000, 8, path);
  const Outcomes header = FlipAndCheck(art, want, header_end, 1000, 80, path);
  for (const auto& [what, o] : {std::pair{"whole file", whole}, std::pair{"header only", header}}) {
    std::printf("bitflip %s %s (%zu bytes, header %llu): detected %d (%d by Open, %d by "
                "DecodeTensor), harmless %d, undetected-different %d\n",
                codec.c_str(), what, art.size(), static_cast<unsigned long long>(header_end),
                o.detected, o.detected_at_open, o.detected_at_decode, o.harmless,
                o.undetected_different);
    EXPECT_EQ(o.detected + o.harmless, 1000) << what;
    EXPECT_EQ(o.undetected_different, 0) << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, BitFlipTest, ::testing::Values("rtn", "hc1"));

}  // namespace
}  // namespace hc
