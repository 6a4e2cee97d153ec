#include "core/io/safetensors.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/json.h"
#include "core/base/status_macros.h"

namespace hc {
namespace {

absl::Status Bad(absl::string_view source, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}
absl::Status BadTensor(absl::string_view source, absl::string_view tensor, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": tensor \"", tensor, "\": ", what));
}

absl::StatusOr<TensorInfo> ParseTensorEntry(absl::string_view source, const std::string& name,
                                            const JsonValue& v) {
  if (name.empty()) return Bad(source, "a tensor has an empty name");
  if (!v.is_object()) return BadTensor(source, name, "entry is not a JSON object");
  const JsonValue* dtype = nullptr;
  const JsonValue* shape = nullptr;
  const JsonValue* offsets = nullptr;
  for (const auto& [key, value] : v.members()) {
    if (key == "dtype") dtype = &value;
    else if (key == "shape") shape = &value;
    else if (key == "data_offsets") offsets = &value;
    else return BadTensor(source, name, absl::StrCat("unknown key \"", key, "\""));
  }
  if (dtype == nullptr) return BadTensor(source, name, "missing \"dtype\"");
  if (shape == nullptr) return BadTensor(source, name, "missing \"shape\"");
  if (offsets == nullptr) return BadTensor(source, name, "missing \"data_offsets\"");

  TensorInfo t;
  t.name = name;
  if (!dtype->is_string()) return BadTensor(source, name, "\"dtype\" is not a string");
  auto d = ParseDType(dtype->string_value());
  if (!d) return BadTensor(source, name, absl::StrCat("unknown dtype \"", dtype->string_value(), "\""));
  t.dtype = *d;

  if (!shape->is_array()) return BadTensor(source, name, "\"shape\" is not a list");
  for (const JsonValue& dim : shape->items()) {
    auto u = dim.as_uint64();
    if (!u || *u > static_cast<uint64_t>(INT64_MAX)) {
      return BadTensor(source, name, "\"shape\" must hold non-negative integers");
    }
    t.shape.push_back(static_cast<int64_t>(*u));
  }
  auto bytes = CheckedByteSize(t.shape, DTypeSize(t.dtype));
  if (!bytes) {
    return BadTensor(source, name, absl::StrCat("shape ", ShapeString(t.shape), " x ",
                                                DTypeName(t.dtype), " overflows 64 bits"));
  }
  t.numel = *bytes / DTypeSize(t.dtype);

  if (!offsets->is_array() || offsets->items().size() != 2) {
    return BadTensor(source, name, "\"data_offsets\" must be a list of two integers");
  }
  auto b = offsets->items()[0].as_uint64();
  auto e = offsets->items()[1].as_uint64();
  if (!b || !e) return BadTensor(source, name, "\"data_offsets\" must be non-negative integers");
  if (*b > *e) {
    return BadTensor(source, name, absl::StrCat("data_offsets [", *b, ", ", *e, "] run backwards"));
  }
  if (*e - *b != *bytes) {
    return BadTensor(source, name,
                     absl::StrCat("data_offsets [", *b, ", ", *e, "] hold ", *e - *b,
                                  " bytes but shape ", ShapeString(t.shape), " x ",
                                  DTypeName(t.dtype), " needs ", *bytes));
  }
  t.begin = *b;
  t.end = *e;
  return t;
}

}  // namespace

std::optional<uint64_t> CheckedByteSize(const std::vector<int64_t>& shape, uint64_t elem_size) {
  uint64_t n = elem_size;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<uint64_t> ParseHeaderLength(const uint8_t prefix[8],
                                           std::optional<uint64_t> file_size,
                                           absl::string_view source) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  if (n > kMaxHeaderBytes) {
    return Bad(source, absl::StrCat("header length ", n, " exceeds the ", kMaxHeaderBytes,
                                    "-byte limit"));
  }
  if (n < 2) return Bad(source, absl::StrCat("header length ", n, " is too small for a JSON object"));
  if (file_size && (*file_size < 8 || n > *file_size - 8)) {
    return Bad(source, absl::StrCat("header length ", n, " runs past the end of the file (",
                                    *file_size, " bytes)"));
  }
  return n;
}

absl::StatusOr<SafetensorsHeader> ValidateSafetensorsHeader(absl::string_view header_json,
                                                            std::optional<uint64_t> data_bytes,
                                                            absl::string_view source) {
  if (header_json.empty() || header_json[0] != '{') {
    return Bad(source, "header does not start with '{'");
  }
  auto parsed = ParseJson(header_json);
  if (!parsed.ok()) return Bad(source, absl::StrCat("header: ", parsed.status().message()));
  const JsonValue& root = *parsed;
  if (!root.is_object()) return Bad(source, "header is not a JSON object");

  SafetensorsHeader h;
  h.header_bytes = header_json.size();
  for (const auto& [key, value] : root.members()) {
    if (key == "__metadata__") {
      if (!value.is_object()) return Bad(source, "\"__metadata__\" is not an object");
      for (const auto& [mk, mv] : value.members()) {
        if (!mv.is_string()) {
          return Bad(source, absl::StrCat("\"__metadata__\" value for \"", mk, "\" is not a string"));
        }
        h.metadata.emplace_back(mk, mv.string_value());
      }
      continue;
    }
    HC_ASSIGN_OR_RETURN(TensorInfo t, ParseTensorEntry(source, key, value));
    h.tensors.push_back(std::move(t));
  }

  // Data order; then the ranges must tile [0, data_bytes) exactly.
  std::stable_sort(h.tensors.begin(), h.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  uint64_t pos = 0;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const TensorInfo& t = h.tensors[i];
    if (t.begin < pos) {
      return BadTensor(source, t.name,
                       absl::StrCat("data_offsets [", t.begin, ", ", t.end, "] overlap tensor \"",
                                    h.tensors[i - 1].name, "\""));
    }
    if (t.begin > pos) {
      return BadTensor(source, t.name,
                       absl::StrCat("data_offsets start at ", t.begin, " leaving a gap at ", pos,
                                    " (tensors must cover the data region)"));
    }
    pos = t.end;
    if (data_bytes && pos > *data_bytes) {
      return BadTensor(source, t.name,
                       absl::StrCat("data_offsets end at ", pos, ", past the data region of ",
                                    *data_bytes, " bytes"));
    }
  }
  if (pos > UINT64_MAX - 8 - h.header_bytes) {
    return Bad(source, absl::StrCat("data region of ", pos, " bytes overflows 64-bit file offsets"));
  }
  if (data_bytes && pos != *data_bytes) {
    return Bad(source, absl::StrCat("data region has ", *data_bytes - pos,
                                    " trailing bytes no tensor covers"));
  }
  h.data_bytes = pos;
  return h;
}

std::string EncodeSafetensorsHeader(const std::vector<TensorInfo>& tensors,
                                    const StringMap& metadata, std::optional<uint64_t> pad_to) {
  std::string out = "{";
  bool first = true;
  if (!metadata.empty()) {
    out.append("\"__metadata__\":{");
    for (size_t i = 0; i < metadata.size(); ++i) {
      if (i > 0) out.push_back(',');
      AppendJsonString(metadata[i].first, &out);
      out.push_back(':');
      AppendJsonString(metadata[i].second, &out);
    }
    out.push_back('}');
    first = false;
  }
  for (const TensorInfo& t : tensors) {
    if (!first) out.push_back(',');
    first = false;
    AppendJsonString(t.name, &out);
    absl::StrAppend(&out, ":{\"dtype\":\"", DTypeName(t.dtype), "\",\"shape\":[",
                    absl::StrJoin(t.shape, ","), "],\"data_offsets\":[", t.begin, ",", t.end, "]}");
  }
  out.push_back('}');
  if (pad_to && *pad_to >= out.size()) {
    out.resize(*pad_to, ' ');
  } else {
    out.resize((out.size() + 7) / 8 * 8, ' ');
  }
  return out;
}

}  // namespace hc
