// Hugging Face sharded checkpoints: `model.safetensors.index.json` plus its shard files.
#ifndef HC_CORE_IO_SHARD_INDEX_H_
#define HC_CORE_IO_SHARD_INDEX_H_

#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/json.h"

namespace hc {

/// A parsed shard index: {"metadata": {...}, "weight_map": {"tensor": "shard-file", ...}}.
struct ShardIndex {
  /// Path of the index file and its directory (shard names are relative to it).
  std::string path;
  std::string dir;
  /// The index's "metadata" object (may be null).
  JsonValue metadata;
  /// Distinct shard file names, sorted.
  std::vector<std::string> shards;
  /// (tensor name, shard file name) pairs in index order.
  std::vector<std::pair<std::string, std::string>> weight_map;

  /// Full path of shard `i`.
  std::string ShardPath(size_t i) const { return dir + "/" + shards[i]; }
};

/// True if `path` names a shard index (ends with ".json").
bool IsShardIndexPath(absl::string_view path);

/// Reads and validates an index file. Shard names must be plain file names (no '/', not "." or
/// ".."). Errors: InvalidArgument naming the file and the rule; OS errors as from open().
absl::StatusOr<ShardIndex> ReadShardIndex(const std::string& path);

/// Serialises an index with the given metadata and weight map (keys in the given order).
std::string EncodeShardIndex(const JsonValue& metadata,
                             const std::vector<std::pair<std::string, std::string>>& weight_map);

/// The directory part of `path` ("." if none).
std::string DirName(absl::string_view path);
/// The file-name part of `path`.
std::string BaseName(absl::string_view path);

}  // namespace hc

#endif  // HC_CORE_IO_SHARD_INDEX_H_
