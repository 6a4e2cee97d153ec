// Property: ValidateSafetensorsHeader and SafetensorsStreamParser never crash on arbitrary bytes fed in any chunking, fail only with InvalidArgument, agree with each other, and every accepted header tiles its data region exactly with correctly sized tensors.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/base/dtype.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_stream.h"
#include "tests/fuzz/fuzz_util.h"

namespace hc::fuzz {
namespace {

// Checks the invariants ValidateSafetensorsHeader promises for an accepted header.
void CheckHeader(const SafetensorsHeader& h, std::optional<uint64_t> data_bytes) {
  uint64_t pos = 0;
  std::set<std::string> names;
  for (const TensorInfo& t : h.tensors) {
    HC_FUZZ_CHECK(!t.name.empty() && t.name != "__metadata__", t.name);
    HC_FUZZ_CHECK(names.insert(t.name).second, "duplicate name " + t.name);
    HC_FUZZ_CHECK(t.begin <= t.end, t.name);
    HC_FUZZ_CHECK(t.begin == pos, "gap or overlap before " + t.name);
    pos = t.end;
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      HC_FUZZ_CHECK(d >= 0, t.name);
      HC_FUZZ_CHECK(d == 0 || numel <= UINT64_MAX / static_cast<uint64_t>(d), t.name);
      numel *= static_cast<uint64_t>(d);
    }
    HC_FUZZ_CHECK(numel == t.numel, t.name);
    const std::optional<uint64_t> bytes = CheckedByteSize(t.shape, DTypeSize(t.dtype));
    HC_FUZZ_CHECK(bytes.has_value() && *bytes == t.nbytes(), t.name);
  }
  HC_FUZZ_CHECK(pos == h.data_bytes, "tensors do not cover the data region");
  if (data_bytes) HC_FUZZ_CHECK(h.data_bytes == *data_bytes, "data region size");
  HC_FUZZ_CHECK(h.header_bytes <= kMaxHeaderBytes, "header size");
}

uint64_t Fnv1a(const uint8_t* data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

}  // namespace
}  // namespace hc::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hc;
  using namespace hc::fuzz;
  const absl::Span<const uint8_t> input(data, size);

  // 1. The whole input as a file: length prefix, header, data region.
  std::optional<SafetensorsHeader> file_header;
  if (size >= 8) {
    auto n = ParseHeaderLength(data, size, "fuzz");
    HC_FUZZ_CHECK(n.ok() || n.status().code() == absl::StatusCode::kInvalidArgument,
                  n.status().ToString());
    if (n.ok()) {
      HC_FUZZ_CHECK(*n <= size - 8, "header length past the end");
      const absl::string_view json(reinterpret_cast<const char*>(data + 8), *n);
      auto h = ValidateSafetensorsHeader(json, size - 8 - *n, "fuzz");
      HC_FUZZ_CHECK(h.ok() || h.status().code() == absl::StatusCode::kInvalidArgument,
                    h.status().ToString());
      if (h.ok()) {
        HC_FUZZ_CHECK(h->header_bytes == *n, "header_bytes");
        CheckHeader(*h, size - 8 - *n);
        HC_FUZZ_CHECK(h->file_size() == size, "file size");
        file_header = *std::move(h);
      }
      // The same header as a stream header (data region unknown).
      auto hs = ValidateSafetensorsHeader(json, std::nullopt, "fuzz");
      HC_FUZZ_CHECK(hs.ok() || hs.status().code() == absl::StatusCode::kInvalidArgument,
                    hs.status().ToString());
      if (hs.ok()) CheckHeader(*hs, std::nullopt);
      if (file_header) HC_FUZZ_CHECK(hs.ok(), "file header accepted, stream header rejected");
    }
  }

  // 2. The whole input as a stream, in two chunkings derived from the input: one chunk, and
  //    pseudo-random chunks of 0..(2^k) bytes.
  for (int pass = 0; pass < 2; ++pass) {
    SafetensorsStreamParser parser("fuzz", {});
    bool header_seen = false;
    parser.OnHeader([&](const SafetensorsHeader& h) {
      HC_FUZZ_CHECK(!header_seen, "header callback twice");
      header_seen = true;
      CheckHeader(h, std::nullopt);
      return absl::OkStatus();
    });
    size_t next = 0;
    uint64_t delivered = 0;
    auto on_tensor = [&](const TensorInfo& t, absl::Span<const uint8_t> bytes) {
      HC_FUZZ_CHECK(header_seen, "tensor before header");
      const auto& tensors = parser.header().tensors;
      HC_FUZZ_CHECK(next < tensors.size(), "too many tensors");
      HC_FUZZ_CHECK(tensors[next].name == t.name, "tensor order");
      HC_FUZZ_CHECK(bytes.size() == t.nbytes(), "tensor size " + t.name);
      const uint64_t at = parser.header().data_start() + t.begin;
      HC_FUZZ_CHECK(at + bytes.size() <= size, "tensor past the input");
      HC_FUZZ_CHECK(bytes.empty() || std::equal(bytes.begin(), bytes.end(), data + at),
                    "tensor bytes differ from the input " + t.name);
      ++next;
      delivered += bytes.size();
      return absl::OkStatus();
    };
    uint64_t rng = Fnv1a(data, size) | 1;
    absl::Status s;
    size_t pos = 0;
    while (pos < size && s.ok()) {
      size_t chunk = size - pos;
      if (pass == 1) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        chunk = std::min<size_t>(chunk, rng % (size_t{1} << (rng >> 60) % 12));
      }
      s = parser.Feed(input.subspan(pos, chunk), on_tensor);
      pos += chunk;
    }
    if (s.ok()) s = parser.Finish();
    HC_FUZZ_CHECK(s.ok() || s.code() == absl::StatusCode::kInvalidArgument, s.ToString());
    if (s.ok()) {
      HC_FUZZ_CHECK(file_header.has_value(), "stream accepted, file rejected");
      HC_FUZZ_CHECK(parser.bytes_consumed() == size, "consumed");
      HC_FUZZ_CHECK(next == parser.header().tensors.size(), "not every tensor delivered");
      HC_FUZZ_CHECK(delivered == parser.header().data_bytes, "delivered bytes");
      HC_FUZZ_CHECK(parser.header().tensors.size() == file_header->tensors.size(), "count");
    } else {
      // A stream is only rejected for what makes the file invalid too (no limits are set here).
      HC_FUZZ_CHECK(!file_header.has_value(), "file accepted, stream rejected: " + s.ToString());
    }
  }
  return 0;
}
