#include "core/io/shard_index.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/safetensors_file.h"

namespace hc {

bool IsShardIndexPath(absl::string_view path) { return absl::EndsWith(path, ".json"); }

std::string DirName(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

std::string BaseName(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return std::string(slash == absl::string_view::npos ? path : path.substr(slash + 1));
}

absl::StatusOr<ShardIndex> ReadShardIndex(const std::string& path) {
  HC_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path, uint64_t{256} << 20));
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  auto parsed = ParseJson(text);
  if (!parsed.ok()) return bad(parsed.status().message());
  if (!parsed->is_object()) return bad("index is not a JSON object");
  ShardIndex index;
  index.path = path;
  index.dir = DirName(path);
  if (const JsonValue* m = parsed->Find("metadata")) {
    if (!m->is_object() && !m->is_null()) return bad("\"metadata\" is not an object");
    index.metadata = *m;
  }
  const JsonValue* wm = parsed->Find("weight_map");
  if (wm == nullptr || !wm->is_object()) return bad("missing \"weight_map\" object");
  if (wm->members().empty()) return bad("\"weight_map\" is empty");
  for (const auto& [tensor, shard] : wm->members()) {
    if (!shard.is_string()) return bad(absl::StrCat("weight_map[\"", tensor, "\"] is not a string"));
    const std::string& f = shard.string_value();
    if (f.empty() || f == "." || f == ".." || absl::StrContains(f, "/")) {
      return bad(absl::StrCat("weight_map[\"", tensor, "\"] = \"", f, "\" is not a plain file name"));
    }
    index.weight_map.emplace_back(tensor, f);
    index.shards.push_back(f);
  }
  std::sort(index.shards.begin(), index.shards.end());
  index.shards.erase(std::unique(index.shards.begin(), index.shards.end()), index.shards.end());
  return index;
}

std::string EncodeShardIndex(const JsonValue& metadata,
                             const std::vector<std::pair<std::string, std::string>>& weight_map) {
  JsonValue wm = JsonValue::Object();
  for (const auto& [t, f] : weight_map) wm.Add(t, JsonValue::String(f));
  JsonValue root = JsonValue::Object();
  root.Add("metadata", metadata.is_null() ? JsonValue::Object() : metadata);
  root.Add("weight_map", std::move(wm));
  return root.Dump() + "\n";
}

}  // namespace hc
