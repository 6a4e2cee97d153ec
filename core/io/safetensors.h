// safetensors: the header model and its strict validation.
//
// A safetensors file is: an unsigned 64-bit little-endian header length N, N bytes of a UTF-8 JSON
// object, then the data region. Each JSON member other than "__metadata__" describes a tensor:
// {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, offsets relative to the data
// region. "__metadata__", if present, maps strings to strings.
//
// ValidateSafetensorsHeader enforces (each error names the source, the tensor and the rule):
//   - N <= kMaxHeaderBytes (100 MB) and N fits in the file;
//   - the header is one JSON object, valid UTF-8, with no duplicate keys and nothing after it but
//     JSON whitespace (writers pad with spaces);
//   - every tensor entry has exactly dtype, shape and data_offsets; the dtype is known; the shape
//     is a list of non-negative integers whose product times the dtype size does not overflow;
//     the offsets are two integers begin <= end with end - begin equal to that byte size;
//   - tensor byte ranges lie inside the data region, do not overlap, and together cover it
//     exactly (no gaps, no trailing bytes);
//   - names are non-empty; "__metadata__" is an object of string values.
#ifndef HC_CORE_IO_SAFETENSORS_H_
#define HC_CORE_IO_SAFETENSORS_H_

#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/dtype.h"

namespace hc {

/// Largest accepted JSON header, in bytes.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

/// One tensor as described by a safetensors header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  /// Byte range inside the data region: [begin, end).
  uint64_t begin = 0;
  uint64_t end = 0;

  uint64_t nbytes() const { return end - begin; }
};

/// The ordered (key, value) pairs of "__metadata__".
using StringMap = std::vector<std::pair<std::string, std::string>>;

/// A validated safetensors header.
struct SafetensorsHeader {
  /// Tensors in data order (ascending `begin`; ties between empty tensors by header order).
  std::vector<TensorInfo> tensors;
  StringMap metadata;
  /// N, the JSON header length in bytes.
  uint64_t header_bytes = 0;
  /// Length of the data region (the sum of all tensor sizes).
  uint64_t data_bytes = 0;

  /// File offset of the data region.
  uint64_t data_start() const { return 8 + header_bytes; }
  /// Total file size.
  uint64_t file_size() const { return data_start() + data_bytes; }
};

/// Parses and validates a header. `header_json` is the N header bytes; `data_bytes` the size of
/// the data region when known (a file), or nullopt for a stream, where the region is then taken
/// to end where the last tensor ends. `source` names the file in error messages.
/// Errors: InvalidArgument naming the source, the tensor and the broken rule.
absl::StatusOr<SafetensorsHeader> ValidateSafetensorsHeader(absl::string_view header_json,
                                                            std::optional<uint64_t> data_bytes,
                                                            absl::string_view source);

/// Decodes the 8-byte little-endian header length and checks it against kMaxHeaderBytes and,
/// when known, the file size. Errors: InvalidArgument naming `source`.
absl::StatusOr<uint64_t> ParseHeaderLength(const uint8_t prefix[8],
                                           std::optional<uint64_t> file_size,
                                           absl::string_view source);

/// Product of `shape` times `elem_size`, or nullopt on overflow of uint64.
std::optional<uint64_t> CheckedByteSize(const std::vector<int64_t>& shape, uint64_t elem_size);

/// "[2, 3]" style rendering of a shape, for messages and reports.
std::string ShapeString(const std::vector<int64_t>& shape);

/// Serialises a header for the given tensors (in the given order, offsets as stored) and
/// metadata. The text is padded with spaces so that 8 + its length is a multiple of 8, or, when
/// `pad_to` is given and not smaller than the text, to exactly `pad_to` bytes.
std::string EncodeSafetensorsHeader(const std::vector<TensorInfo>& tensors,
                                    const StringMap& metadata,
                                    std::optional<uint64_t> pad_to = std::nullopt);

}  // namespace hc

#endif  // HC_CORE_IO_SAFETENSORS_H_
