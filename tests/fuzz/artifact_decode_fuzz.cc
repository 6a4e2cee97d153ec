// Property: any bytes opened as an artifact with ArtifactReader::Open, and every record decoded, never crash and fail only with InvalidArgument, DataLoss or FailedPrecondition (also after the harness repairs the metadata and part checksums, so mutations reach the record and codec checks).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/base/crc32c.h"
#include "core/base/dtype.h"
#include "core/base/parallel.h"
#include "core/format/artifact.h"
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

namespace hc::fuzz {
namespace {

// Records larger than this are not decoded (the harness would only measure allocation).
constexpr uint64_t kMaxDecodeBytes = uint64_t{16} << 20;

// A file in a tmpfs directory when there is one: ArtifactReader only opens paths. Removed when
// the process exits normally (libFuzzer's runs and the replay end with exit); a crash leaves
// it.
const std::string& ScratchPath() {
  static const std::string* path = [] {
    const char* dir = std::getenv("HC_FUZZ_TMPDIR");
    std::string d = dir ? dir : (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    auto* p = new std::string(absl::StrCat(d, "/hc-artifact-fuzz-", getpid(), ".hyc"));
    std::atexit([] { std::remove(ScratchPath().c_str()); });
    return p;
  }();
  return *path;
}

void CheckCode(const absl::Status& s) {
  HC_FUZZ_CHECK(CodeIn(s, {absl::StatusCode::kInvalidArgument, absl::StatusCode::kDataLoss,
                           absl::StatusCode::kFailedPrecondition}),
                s.ToString());
}

// Opens `bytes` as an artifact and decodes every record. Returns true if everything decoded.
bool OpenAndDecode(absl::string_view bytes) {
  {
    std::ofstream out(ScratchPath(), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    HC_FUZZ_CHECK(out.good(), "cannot write " + ScratchPath());
  }
  auto reader = ArtifactReader::Open(ScratchPath());
  if (!reader.ok()) {
    CheckCode(reader.status());
    return false;
  }
  InlineExecutor executor;
  bool all_ok = true;
  const auto& records = (*reader)->metadata().tensors;
  for (size_t i = 0; i < records.size(); ++i) {
    const TensorRecord& r = records[i];
    const uint64_t esize = DTypeSize(r.dtype);
    if (r.numel > kMaxDecodeBytes / esize) continue;
    std::vector<uint8_t> out(r.numel * esize);
    const absl::Status s = (*reader)->DecodeTensor(i, absl::MakeSpan(out), executor);
    if (!s.ok()) {
      CheckCode(s);
      all_ok = false;
    }
    (*reader)->Release(i);
  }
  return all_ok;
}

// `header` and the data region of the validated file `bytes` as file bytes.
std::string Rebuild(const SafetensorsHeader& h, const StringMap& metadata, absl::string_view bytes) {
  const std::string json = EncodeSafetensorsHeader(h.tensors, metadata);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((uint64_t{json.size()} >> (8 * i)) & 0xff);
  out.append(json);
  const absl::string_view data = bytes.substr(h.data_start());
  out.append(data.data(), data.size());
  return out;
}

}  // namespace
}  // namespace hc::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hc;
  using namespace hc::fuzz;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  OpenAndDecode(bytes);

  // Repair 1: a valid safetensors file gets a correct metadata checksum.
  if (size < 8) return 0;
  auto n = ParseHeaderLength(data, size, "fuzz");
  if (!n.ok()) return 0;
  auto h = ValidateSafetensorsHeader(bytes.substr(8, *n), size - 8 - *n, "fuzz");
  if (!h.ok()) return 0;
  StringMap meta = h->metadata;
  bool has_checksum = false;
  for (auto& [k, v] : meta) {
    if (k == kChecksumKey) {
      v = absl::StrCat(ArtifactMetadataChecksum(meta));
      has_checksum = true;
    }
  }
  if (!has_checksum) return 0;
  const std::string fixed = Rebuild(*h, meta, bytes);
  if (fixed != bytes) OpenAndDecode(fixed);

  // Repair 2: well-formed metadata gets correct part checksums.
  SafetensorsHeader h2 = *h;
  h2.metadata = meta;
  auto decoded = DecodeArtifactMetadata(h2, "fuzz");
  if (!decoded.ok()) {
    CheckCode(decoded.status());
    return 0;
  }
  bool changed = false;
  for (TensorRecord& r : decoded->tensors) {
    for (StoredPart& p : r.parts) {
      const std::string stored = r.StoredName(p);
      for (const TensorInfo& t : h->tensors) {
        if (t.name != stored) continue;
        const uint32_t crc = Crc32c(
            0, absl::MakeConstSpan(data + h->data_start() + t.begin, t.nbytes()));
        changed |= crc != p.crc32c;
        p.crc32c = crc;
      }
    }
  }
  if (changed) OpenAndDecode(Rebuild(*h, EncodeArtifactMetadata(*decoded), bytes));
  return 0;
}
