#include "core/codec/codec.h"

#include <charconv>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace hc {

void CodecOptions::Set(std::string key, std::string value) {
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(std::move(key), std::move(value));
}

std::optional<std::string> CodecOptions::Get(absl::string_view key) const {
  for (const auto& [k, v] : kv_) {
    if (k == key) return v;
  }
  return std::nullopt;
}

absl::StatusOr<int64_t> CodecOptions::GetInt(absl::string_view key, int64_t def) const {
  auto v = Get(key);
  if (!v) return def;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("option ", key, "=\"", *v, "\" is not an integer"));
  }
  return out;
}

absl::StatusOr<double> CodecOptions::GetDouble(absl::string_view key, double def) const {
  auto v = Get(key);
  if (!v) return def;
  double out;
  if (!absl::SimpleAtod(*v, &out) || !std::isfinite(out)) {
    return absl::InvalidArgumentError(absl::StrCat("option ", key, "=\"", *v, "\" is not a number"));
  }
  return out;
}

absl::StatusOr<bool> CodecOptions::GetBool(absl::string_view key, bool def) const {
  auto v = Get(key);
  if (!v) return def;
  bool out;
  if (!absl::SimpleAtob(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("option ", key, "=\"", *v, "\" is not a boolean"));
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> CodecOptions::GetIntList(absl::string_view key,
                                                              std::vector<int64_t> def) const {
  auto v = Get(key);
  if (!v) return def;
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(*v, ',')) {
    int64_t x;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &x)) {
      return absl::InvalidArgumentError(
          absl::StrCat("option ", key, "=\"", *v, "\" is not a comma-separated list of integers"));
    }
    out.push_back(x);
  }
  return out;
}

absl::Status CodecOptions::CheckKnown(absl::string_view codec,
                                      absl::Span<const absl::string_view> known) const {
  for (const auto& [k, v] : kv_) {
    bool ok = false;
    for (absl::string_view n : known) ok = ok || n == k;
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat("codec ", codec, " has no option \"", k, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckEncodeInput(absl::string_view codec, const TensorInfo& info,
                              absl::Span<const uint8_t> data) {
  if (!IsCompressibleFloat(info.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(codec, ": cannot encode dtype ", DTypeName(info.dtype)));
  }
  if (data.size() != info.numel * DTypeSize(info.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(codec, ": tensor ", info.name, " has ",
                                                   data.size(), " bytes, expected ",
                                                   info.numel * DTypeSize(info.dtype)));
  }
  return absl::OkStatus();
}

const PartView* FindPart(absl::Span<const PartView> parts, absl::string_view suffix) {
  for (const PartView& p : parts) {
    if (p.suffix == suffix) return &p;
  }
  return nullptr;
}

std::vector<PartView> PartViews(const EncodedTensor& enc) {
  std::vector<PartView> v;
  v.reserve(enc.parts.size());
  for (const EncodedPart& p : enc.parts) v.push_back({p.suffix, p.dtype, p.shape, p.bytes});
  return v;
}

}  // namespace hc
