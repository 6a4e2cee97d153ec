#include "core/format/artifact.h"

#include <algorithm>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/base/crc32c.h"
#include "core/base/status_macros.h"
#include "core/codec/codec.h"

namespace hc {
namespace {

JsonValue ShapeJson(const std::vector<int64_t>& shape) {
  JsonValue a = JsonValue::Array();
  for (int64_t d : shape) a.Push(JsonValue::Int(d));
  return a;
}

}  // namespace

JsonValue TensorRecordToJson(const TensorRecord& r) {
  JsonValue parts = JsonValue::Array();
  for (const StoredPart& p : r.parts) {
    parts.Push(JsonValue::Object()
                   .Add("suffix", JsonValue::String(p.suffix))
                   .Add("dtype", JsonValue::String(std::string(DTypeName(p.dtype))))
                   .Add("shape", ShapeJson(p.shape))
                   .Add("crc32c", JsonValue::Int(p.crc32c)));
  }
  JsonValue o = JsonValue::Object();
  o.Add("name", JsonValue::String(r.name))
      .Add("dtype", JsonValue::String(std::string(DTypeName(r.dtype))))
      .Add("shape", ShapeJson(r.shape))
      .Add("codec", JsonValue::String(r.codec));
  if (!r.raw_reason.empty()) o.Add("raw_reason", JsonValue::String(r.raw_reason));
  o.Add("params", r.params).Add("parts", std::move(parts)).Add("stats", StatsToJson(r.stats));
  return o;
}

namespace {

// CRC-32C over "key\0value\0" of every pair except the checksum itself, in stored order.
}  // namespace

uint32_t ArtifactMetadataChecksum(const StringMap& pairs) {
  uint32_t crc = 0;
  const uint8_t zero = 0;
  for (const auto& [k, v] : pairs) {
    if (k == kChecksumKey) continue;
    crc = Crc32c(crc, absl::MakeSpan(reinterpret_cast<const uint8_t*>(k.data()), k.size()));
    crc = Crc32c(crc, absl::MakeSpan(&zero, 1));
    crc = Crc32c(crc, absl::MakeSpan(reinterpret_cast<const uint8_t*>(v.data()), v.size()));
    crc = Crc32c(crc, absl::MakeSpan(&zero, 1));
  }
  return crc;
}

namespace {

absl::Status Corrupt(absl::string_view source, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(source, ": corrupt artifact metadata: ", what));
}

absl::StatusOr<std::vector<int64_t>> ShapeFromJson(const JsonValue* v) {
  if (v == nullptr || !v->is_array()) return absl::DataLossError("shape is not a list");
  std::vector<int64_t> shape;
  for (const JsonValue& d : v->items()) {
    auto u = d.as_uint64();
    if (!u || *u > static_cast<uint64_t>(INT64_MAX)) {
      return absl::DataLossError("shape holds a non-integer");
    }
    shape.push_back(static_cast<int64_t>(*u));
  }
  return shape;
}

absl::StatusOr<DType> DTypeFromJson(const JsonValue* v) {
  if (v == nullptr || !v->is_string()) return absl::DataLossError("dtype is not a string");
  auto d = ParseDType(v->string_value());
  if (!d) return absl::DataLossError(absl::StrCat("unknown dtype \"", v->string_value(), "\""));
  return *d;
}

double NumberOr(const JsonValue* o, absl::string_view key) {
  const JsonValue* v = o ? o->Find(key) : nullptr;
  return v && v->is_number() ? v->number() : 0.0;
}

}  // namespace

absl::StatusOr<TensorRecord> TensorRecordFromJson(const JsonValue& j) {
  if (!j.is_object()) return absl::DataLossError("record is not an object");
  TensorRecord r;
  const JsonValue* name = j.Find("name");
  if (name == nullptr || !name->is_string() || name->string_value().empty()) {
    return absl::DataLossError("record without a name");
  }
  r.name = name->string_value();
  auto fail = [&](const absl::Status& s) { return Annotate(s, absl::StrCat("tensor \"", r.name, "\"")); };
  HC_ASSIGN_OR_RETURN(r.dtype, DTypeFromJson(j.Find("dtype")), fail(_));
  HC_ASSIGN_OR_RETURN(r.shape, ShapeFromJson(j.Find("shape")), fail(_));
  auto bytes = CheckedByteSize(r.shape, DTypeSize(r.dtype));
  if (!bytes) return fail(absl::DataLossError("shape overflows"));
  r.numel = *bytes / DTypeSize(r.dtype);
  const JsonValue* codec = j.Find("codec");
  if (codec == nullptr || !codec->is_string() || codec->string_value().empty()) {
    return fail(absl::DataLossError("codec is not a string"));
  }
  r.codec = codec->string_value();
  if (const JsonValue* why = j.Find("raw_reason"); why && why->is_string()) {
    r.raw_reason = why->string_value();
  }
  const JsonValue* params = j.Find("params");
  if (params == nullptr || !params->is_object()) return fail(absl::DataLossError("params is not an object"));
  r.params = *params;
  const JsonValue* parts = j.Find("parts");
  if (parts == nullptr || !parts->is_array() || parts->items().empty()) {
    return fail(absl::DataLossError("parts is not a non-empty list"));
  }
  for (const JsonValue& pj : parts->items()) {
    StoredPart p;
    const JsonValue* suffix = pj.Find("suffix");
    if (suffix == nullptr || !suffix->is_string()) return fail(absl::DataLossError("part without suffix"));
    p.suffix = suffix->string_value();
    HC_ASSIGN_OR_RETURN(p.dtype, DTypeFromJson(pj.Find("dtype")), fail(_));
    HC_ASSIGN_OR_RETURN(p.shape, ShapeFromJson(pj.Find("shape")), fail(_));
    auto pb = CheckedByteSize(p.shape, DTypeSize(p.dtype));
    if (!pb) return fail(absl::DataLossError("part shape overflows"));
    p.nbytes = *pb;
    const JsonValue* crc = pj.Find("crc32c");
    auto c = crc ? crc->as_uint64() : std::nullopt;
    if (!c || *c > 0xffffffffu) return fail(absl::DataLossError("part without a valid crc32c"));
    p.crc32c = static_cast<uint32_t>(*c);
    r.parts.push_back(std::move(p));
  }
  const bool raw = r.codec == kRawCodec;
  if (raw) {
    const StoredPart& p = r.parts[0];
    if (r.parts.size() != 1 || !p.suffix.empty() || p.dtype != r.dtype || p.shape != r.shape) {
      return fail(absl::DataLossError("a raw tensor must be one part with its own dtype and shape"));
    }
  } else {
    if (!IsCompressibleFloat(r.dtype)) {
      return fail(absl::DataLossError(absl::StrCat("codec ", r.codec, " on dtype ", DTypeName(r.dtype))));
    }
    for (const StoredPart& p : r.parts) {
      if (p.suffix.empty()) return fail(absl::DataLossError("a coded part has an empty suffix"));
    }
  }
  const JsonValue* st = j.Find("stats");
  r.stats.numel = r.numel;
  for (const StoredPart& p : r.parts) r.stats.stored_bytes += p.nbytes;
  r.stats.bits_per_weight = NumberOr(st, "bits_per_weight");
  r.stats.mae = NumberOr(st, "mae");
  r.stats.max_abs_err = NumberOr(st, "max_abs_err");
  r.stats.rel_mse = NumberOr(st, "rel_mse");
  r.stats.snr_db = NumberOr(st, "snr_db");
  r.stats.db_above_rd = NumberOr(st, "db_above_rd");
  r.stats.variance = NumberOr(st, "variance");
  return r;
}


std::string TensorRecord::StoredName(const StoredPart& part) const {
  if (part.suffix.empty()) return name;
  return absl::StrCat(name, std::string(1, kPartSeparator), part.suffix);
}

JsonValue StatsToJson(const TensorStats& s) {
  return JsonValue::Object()
      .Add("numel", JsonValue::Int(static_cast<int64_t>(s.numel)))
      .Add("stored_bytes", JsonValue::Int(static_cast<int64_t>(s.stored_bytes)))
      .Add("bits_per_weight", JsonValue::Number(s.bits_per_weight))
      .Add("mae", JsonValue::Number(s.mae))
      .Add("max_abs_err", JsonValue::Number(s.max_abs_err))
      .Add("rel_mse", JsonValue::Number(s.rel_mse))
      .Add("snr_db", JsonValue::Number(s.snr_db))
      .Add("db_above_rd", JsonValue::Number(s.db_above_rd))
      .Add("variance", JsonValue::Number(s.variance));
}

StringMap EncodeArtifactMetadata(const ArtifactMetadata& meta) {
  JsonValue records = JsonValue::Array();
  for (const TensorRecord& r : meta.tensors) records.Push(TensorRecordToJson(r));
  JsonValue source = JsonValue::Object();
  for (const auto& [k, v] : meta.source_metadata) source.Add(k, JsonValue::String(v));
  StringMap out = {
      {std::string(kFormatKey), std::string(kArtifactFormatName)},
      {std::string(kVersionKey), absl::StrCat(meta.version)},
      {std::string(kProducerKey), meta.producer},
      {std::string(kCodecKey), meta.codec.Dump()},
      {std::string(kSourceMetadataKey), source.Dump()},
      {std::string(kTensorsKey), records.Dump()},
  };
  out.emplace_back(std::string(kChecksumKey), absl::StrCat(ArtifactMetadataChecksum(out)));
  return out;
}

absl::StatusOr<ArtifactMetadata> DecodeArtifactMetadata(const SafetensorsHeader& header,
                                                        absl::string_view source) {
  auto get = [&](absl::string_view key) -> const std::string* {
    for (const auto& [k, v] : header.metadata) {
      if (k == key) return &v;
    }
    return nullptr;
  };
  const std::string* format = get(kFormatKey);
  if (format == nullptr || *format != kArtifactFormatName) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a hyperc artifact (no \"", kFormatKey, "\": \"",
                     kArtifactFormatName, "\" in __metadata__)"));
  }
  ArtifactMetadata meta;
  const std::string* version = get(kVersionKey);
  if (version == nullptr || !absl::SimpleAtoi(*version, &meta.version)) {
    return Corrupt(source, absl::StrCat("missing or non-integer ", kVersionKey));
  }
  if (meta.version != kArtifactFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(source, ": artifact format version ", meta.version,
                     " is not supported (this build reads version ", kArtifactFormatVersion, ")"));
  }
  const std::string* checksum = get(kChecksumKey);
  uint32_t recorded = 0;
  if (checksum == nullptr || !absl::SimpleAtoi(*checksum, &recorded)) {
    return Corrupt(source, absl::StrCat("missing or non-integer ", kChecksumKey));
  }
  if (const uint32_t actual = ArtifactMetadataChecksum(header.metadata); actual != recorded) {
    return absl::DataLossError(absl::StrCat(source, ": artifact metadata fails its checksum (crc32c ",
                                            actual, ", recorded ", recorded, ")"));
  }
  if (const std::string* p = get(kProducerKey)) meta.producer = *p;
  if (const std::string* c = get(kCodecKey)) {
    auto j = ParseJson(*c);
    if (!j.ok() || !j->is_object()) return Corrupt(source, absl::StrCat(kCodecKey, " is not a JSON object"));
    meta.codec = *std::move(j);
  }
  if (const std::string* s = get(kSourceMetadataKey)) {
    auto j = ParseJson(*s);
    if (!j.ok() || !j->is_object()) return Corrupt(source, absl::StrCat(kSourceMetadataKey, " is not a JSON object"));
    for (const auto& [k, v] : j->members()) {
      if (!v.is_string()) return Corrupt(source, absl::StrCat(kSourceMetadataKey, " holds a non-string"));
      meta.source_metadata.emplace_back(k, v.string_value());
    }
  }
  const std::string* tensors = get(kTensorsKey);
  if (tensors == nullptr) return Corrupt(source, absl::StrCat("missing ", kTensorsKey));
  auto records = ParseJson(*tensors);
  if (!records.ok()) return Corrupt(source, records.status().message());
  if (!records->is_array()) return Corrupt(source, absl::StrCat(kTensorsKey, " is not a list"));

  std::unordered_map<std::string, size_t> stored;
  for (size_t i = 0; i < header.tensors.size(); ++i) stored.emplace(header.tensors[i].name, i);
  std::vector<bool> used(header.tensors.size(), false);
  std::unordered_map<std::string, bool> names;
  for (const JsonValue& rj : records->items()) {
    auto rec = TensorRecordFromJson(rj);
    if (!rec.ok()) return Corrupt(source, rec.status().message());
    TensorRecord& r = *rec;
    if (!names.emplace(r.name, true).second) {
      return Corrupt(source, absl::StrCat("tensor \"", r.name, "\" recorded twice"));
    }
    for (const StoredPart& p : r.parts) {
      const std::string sname = r.StoredName(p);
      auto it = stored.find(sname);
      if (it == stored.end()) {
        return Corrupt(source, absl::StrCat("stored tensor \"", sname, "\" is missing"));
      }
      const TensorInfo& t = header.tensors[it->second];
      if (t.dtype != p.dtype || t.shape != p.shape) {
        return Corrupt(source, absl::StrCat("stored tensor \"", sname, "\" is ", DTypeName(t.dtype),
                                            " ", ShapeString(t.shape), ", metadata says ",
                                            DTypeName(p.dtype), " ", ShapeString(p.shape)));
      }
      if (used[it->second]) {
        return Corrupt(source, absl::StrCat("stored tensor \"", sname, "\" claimed twice"));
      }
      used[it->second] = true;
    }
    meta.tensors.push_back(std::move(r));
  }
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i]) {
      return Corrupt(source, absl::StrCat("stored tensor \"", header.tensors[i].name,
                                          "\" belongs to no record"));
    }
  }
  return meta;
}

absl::StatusOr<std::unique_ptr<ArtifactReader>> ArtifactReader::Open(const std::string& path) {
  std::unique_ptr<ArtifactReader> r(new ArtifactReader());
  HC_ASSIGN_OR_RETURN(r->file_, SafetensorsFile::Open(path));
  HC_ASSIGN_OR_RETURN(r->meta_, DecodeArtifactMetadata(r->file_->header(), path));
  std::unordered_map<std::string, size_t> stored;
  const auto& tensors = r->file_->header().tensors;
  for (size_t i = 0; i < tensors.size(); ++i) stored.emplace(tensors[i].name, i);
  for (const TensorRecord& rec : r->meta_.tensors) {
    std::vector<size_t> idx;
    for (const StoredPart& p : rec.parts) idx.push_back(stored.at(rec.StoredName(p)));
    r->part_index_.push_back(std::move(idx));
  }
  return r;
}

void ArtifactReader::Release(size_t i) const {
  for (size_t k : part_index_[i]) file_->Release(k);
}

absl::StatusOr<std::vector<PartView>> ArtifactReader::Parts(size_t i) const {
  const TensorRecord& rec = meta_.tensors[i];
  std::vector<PartView> views;
  for (size_t k = 0; k < rec.parts.size(); ++k) {
    const StoredPart& p = rec.parts[k];
    absl::Span<const uint8_t> bytes = file_->TensorData(part_index_[i][k]);
    const uint32_t crc = Crc32c(0, bytes);
    if (crc != p.crc32c) {
      return absl::DataLossError(absl::StrCat(file_->path(), ": tensor \"", rec.StoredName(p),
                                              "\" fails its checksum (crc32c ", crc, ", recorded ",
                                              p.crc32c, ")"));
    }
    views.push_back(PartView{p.suffix, p.dtype, p.shape, bytes});
  }
  return views;
}

absl::Status ArtifactReader::DecodeTensor(size_t i, absl::Span<uint8_t> out,
                                          Executor& executor) const {
  const TensorRecord& rec = meta_.tensors[i];
  const uint64_t want = rec.numel * DTypeSize(rec.dtype);
  if (out.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", rec.name, "\": output buffer has ",
                                                   out.size(), " bytes, needs ", want));
  }
  HC_ASSIGN_OR_RETURN(const std::vector<PartView> views, Parts(i));
  if (rec.codec == kRawCodec) {
    std::copy(views[0].bytes.begin(), views[0].bytes.end(), out.begin());
    return absl::OkStatus();
  }
  HC_ASSIGN_OR_RETURN(std::unique_ptr<Codec> codec, CreateCodec(rec.codec, {}),
                      absl::DataLossError(absl::StrCat(file_->path(), ": tensor \"", rec.name,
                                                       "\": ", _.message())));
  TensorInfo info;
  info.name = rec.name;
  info.dtype = rec.dtype;
  info.shape = rec.shape;
  info.numel = rec.numel;
  info.end = want;
  HC_ASSIGN_OR_RETURN(std::unique_ptr<TensorDecoder> dec,
                      codec->PrepareDecoder(info, rec.params, views),
                      absl::DataLossError(absl::StrCat(file_->path(), ": tensor \"", rec.name,
                                                       "\": ", _.message())));
  // Decode in fixed chunks, each narrowed straight into its slice of `out`.
  const uint64_t n = rec.numel;
  const uint64_t units = (n + kChunkElems - 1) / kChunkElems;
  const size_t esize = DTypeSize(rec.dtype);
  executor.ParallelFor(static_cast<int64_t>(units), [&](int64_t u) {
    const uint64_t b = static_cast<uint64_t>(u) * kChunkElems;
    const uint64_t e = std::min(n, b + kChunkElems);
    std::vector<float> buf(e - b);
    dec->DecodeRange(b, absl::MakeSpan(buf));
    NarrowFromF32(rec.dtype, buf.data(), buf.size(), out.data() + b * esize);
  });
  return absl::OkStatus();
}

}  // namespace hc
