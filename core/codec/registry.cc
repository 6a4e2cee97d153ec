// The codec registry: one line per codec.
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/codec/codec.h"
#include "core/codec/hc1.h"
#include "core/codec/hc2.h"
#include "core/codec/rtn.h"

namespace hc {
namespace {

struct Entry {
  std::function<CodecDescription()> describe;
  std::function<absl::StatusOr<std::unique_ptr<Codec>>(const CodecOptions&)> create;
};

const std::vector<Entry>& Registry() {
  static const auto* entries = new std::vector<Entry>{
      {DescribeRtnCodec, CreateRtnCodec},
      {DescribeHc1Codec, CreateHc1Codec},
      {DescribeHc2Codec, CreateHc2Codec},
  };
  return *entries;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Codec>> CreateCodec(absl::string_view name,
                                                   const CodecOptions& options) {
  std::vector<std::string> names;
  for (const Entry& e : Registry()) {
    CodecDescription d = e.describe();
    if (d.name == name) return e.create(options);
    names.push_back(d.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown codec \"", name, "\" (known: ", absl::StrJoin(names, ", "), ")"));
}

std::vector<CodecDescription> ListCodecs() {
  std::vector<CodecDescription> out;
  for (const Entry& e : Registry()) out.push_back(e.describe());
  return out;
}

}  // namespace hc
