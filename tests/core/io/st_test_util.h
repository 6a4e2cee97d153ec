// Helpers for the core/io tests: building raw safetensors bytes, scratch files, and running the
// stream parser over a byte string in a given chunking.
#ifndef HC_TESTS_CORE_IO_ST_TEST_UTIL_H_
#define HC_TESTS_CORE_IO_ST_TEST_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_stream.h"

namespace hc::testing {

/// 8-byte little-endian length.
inline std::string LengthPrefix(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out;
}

/// A safetensors file image: the length of `header`, `header`, then `data`.
inline std::string MakeSafetensors(absl::string_view header, absl::string_view data = "") {
  std::string out = LengthPrefix(header.size());
  out.append(header.data(), header.size());
  out.append(data.data(), data.size());
  return out;
}

/// `n` bytes of data with a recognisable pattern.
inline std::string PatternBytes(size_t n, uint8_t seed = 1) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(seed + 7 * i);
  return out;
}

inline void WriteFile(const std::string& path, absl::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

/// A tensor as the stream parser delivered it.
struct StreamedTensor {
  TensorInfo info;
  std::string data;
};

/// Feeds `bytes` to a fresh parser in chunks of the given sizes (the last chunk takes the rest;
/// an empty `chunks` means one chunk), then calls Finish(). Returns the first error (from Feed or
/// Finish) and fills `out` with the tensors delivered.
inline absl::Status StreamParse(absl::string_view bytes, const std::string& source,
                                const std::vector<size_t>& chunks,
                                std::vector<StreamedTensor>* out = nullptr,
                                StreamParserOptions options = {}) {
  SafetensorsStreamParser p(source, options);
  auto cb = [&](const TensorInfo& t, absl::Span<const uint8_t> d) -> absl::Status {
    if (out != nullptr) {
      out->push_back({t, std::string(reinterpret_cast<const char*>(d.data()), d.size())});
    }
    return absl::OkStatus();
  };
  size_t pos = 0;
  size_t ci = 0;
  while (pos < bytes.size()) {
    size_t n = bytes.size() - pos;
    if (ci < chunks.size()) n = std::min(n, chunks[ci++]);
    absl::Status s = p.Feed(AsBytes(bytes.substr(pos, n)), cb);
    if (!s.ok()) {
      // The error is sticky.
      absl::Status again = p.Feed(AsBytes("x"), cb);
      if (again != s) return absl::InternalError("error not sticky: " + again.ToString());
      if (p.Finish() != s) return absl::InternalError("Finish after error differs");
      return s;
    }
    pos += n;
  }
  return p.Finish();
}

/// Chunk sizes: one byte at a time.
inline std::vector<size_t> ByteByByte(size_t n) { return std::vector<size_t>(n, 1); }

/// Random chunk sizes covering `n` bytes: mostly small, sometimes large.
inline std::vector<size_t> RandomChunks(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<size_t> out;
  size_t total = 0;
  while (total < n) {
    size_t c;
    switch (rng() % 4) {
      case 0: c = 1 + rng() % 7; break;
      case 1: c = 1 + rng() % 300; break;
      case 2: c = 1 + rng() % 70000; break;
      default: c = 1 + rng() % 3000000; break;
    }
    out.push_back(c);
    total += c;
  }
  return out;
}

}  // namespace hc::testing

#endif  // HC_TESTS_CORE_IO_ST_TEST_UTIL_H_
