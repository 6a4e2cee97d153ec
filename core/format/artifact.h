// The hyperc artifact: a safetensors file whose "__metadata__" describes how to restore the
// original tensors. Normative description: core/format/SPEC.md.
#ifndef HC_CORE_FORMAT_ARTIFACT_H_
#define HC_CORE_FORMAT_ARTIFACT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/base/json.h"
#include "core/base/parallel.h"
#include "core/codec/codec.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_file.h"
#include "core/quality/stats.h"

namespace hc {

/// Metadata key holding the format name; its value is kArtifactFormatName.
inline constexpr absl::string_view kFormatKey = "hyperc.format";
inline constexpr absl::string_view kArtifactFormatName = "hyperc-artifact";
/// Metadata key holding the format version (decimal). Frozen meaning per SPEC.md.
inline constexpr absl::string_view kVersionKey = "hyperc.format_version";
/// The version this build writes, and the only one it reads.
inline constexpr int kArtifactFormatVersion = 1;
/// Metadata key of the producer string ("hyperc 0.1.0").
inline constexpr absl::string_view kProducerKey = "hyperc.producer";
/// Metadata key of the default codec and its resolved options (JSON object).
inline constexpr absl::string_view kCodecKey = "hyperc.codec";
/// Metadata key of the tensor records (JSON array, one per original tensor, original order).
inline constexpr absl::string_view kTensorsKey = "hyperc.tensors";
/// Metadata key of the source file's own "__metadata__" (JSON object of strings).
inline constexpr absl::string_view kSourceMetadataKey = "hyperc.source_metadata";
/// Metadata key of the CRC-32C (decimal) over every other metadata pair, see SPEC.md.
inline constexpr absl::string_view kChecksumKey = "hyperc.metadata_crc32c";
/// Separator between a tensor name and a part suffix in stored names ("w#codes").
inline constexpr char kPartSeparator = '#';
/// The codec name recorded for tensors stored as they were.
inline constexpr absl::string_view kRawCodec = "raw";

/// One stored safetensors tensor belonging to a record.
struct StoredPart {
  /// "" for a raw tensor (stored under the original name), else the codec's suffix.
  std::string suffix;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  uint64_t nbytes = 0;
  uint32_t crc32c = 0;
};

/// How one original tensor is stored.
struct TensorRecord {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t numel = 0;
  /// kRawCodec or a codec name.
  std::string codec;
  /// Why the tensor is raw ("dtype I32", "skipped by --skip", "numel<10", ...); empty if coded.
  std::string raw_reason;
  /// Codec parameters (a JSON object; empty for raw).
  JsonValue params = JsonValue::Object();
  std::vector<StoredPart> parts;
  TensorStats stats;

  /// The safetensors name of `part`.
  std::string StoredName(const StoredPart& part) const;
};

/// Everything "__metadata__" says about an artifact.
struct ArtifactMetadata {
  int version = kArtifactFormatVersion;
  std::string producer;
  /// {"name": "rtn", "options": {...}}
  JsonValue codec = JsonValue::Object();
  std::vector<TensorRecord> tensors;
  StringMap source_metadata;
};

/// Serialises metadata into "__metadata__" string pairs.
StringMap EncodeArtifactMetadata(const ArtifactMetadata& meta);

/// The value of kChecksumKey for `pairs` (the pair with kChecksumKey itself is skipped).
uint32_t ArtifactMetadataChecksum(const StringMap& pairs);

/// Parses and validates an artifact's "__metadata__" against its safetensors header: the format
/// name and version, every record well formed, every part present in the header with the
/// recorded dtype, shape and size, and every stored tensor owned by exactly one record.
/// Errors: InvalidArgument "not a hyperc artifact" when the format key is missing,
/// FailedPrecondition for an unsupported version, DataLoss for anything inconsistent.
absl::StatusOr<ArtifactMetadata> DecodeArtifactMetadata(const SafetensorsHeader& header,
                                                        absl::string_view source);

/// A tensor record as the JSON object stored in kTensorsKey, and back (validated as
/// DecodeArtifactMetadata does for one record; errors are DataLoss).
JsonValue TensorRecordToJson(const TensorRecord& r);
absl::StatusOr<TensorRecord> TensorRecordFromJson(const JsonValue& j);

/// A record's statistics as a JSON object (the keys `hyperc inspect --json` prints).
JsonValue StatsToJson(const TensorStats& s);

/// An open artifact file, ready to decode tensors.
class ArtifactReader {
 public:
  /// Opens and validates `path` (safetensors rules, then DecodeArtifactMetadata).
  static absl::StatusOr<std::unique_ptr<ArtifactReader>> Open(const std::string& path);

  const ArtifactMetadata& metadata() const { return meta_; }
  const SafetensorsFile& file() const { return *file_; }

  /// Decodes record `i` into `out` (record.numel elements in the record's dtype, little-endian).
  /// Verifies each part's CRC-32C first. Raw records are copied bit for bit.
  /// Errors: DataLoss on a checksum mismatch or inconsistent parts; InvalidArgument for a
  /// wrong-sized `out`.
  absl::Status DecodeTensor(size_t i, absl::Span<uint8_t> out, Executor& executor) const;
  /// The stored parts of record `i` (in record order) as views into the mapped file, valid
  /// while the reader lives, each checked against its CRC-32C. A raw record has one part, its
  /// original bytes. Errors: DataLoss on a checksum mismatch.
  absl::StatusOr<std::vector<PartView>> Parts(size_t i) const;
  /// Returns pages of record `i`'s parts to the kernel (see SafetensorsFile::Release).
  void Release(size_t i) const;

 private:
  ArtifactReader() = default;
  std::unique_ptr<SafetensorsFile> file_;
  ArtifactMetadata meta_;
  /// For each record, for each part, the index in file_->header().tensors.
  std::vector<std::vector<size_t>> part_index_;
};

}  // namespace hc

#endif  // HC_CORE_FORMAT_ARTIFACT_H_
