#include "core/infer/model_reader.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/base/status_macros.h"
#include "core/codec/codec.h"
#include "core/pipeline/pipeline.h"

namespace hc {

// A tensor ready to decode: its checked parts and, for a coded tensor, its decoder.
struct ModelReader::Prepared {
  const TensorRecord* record = nullptr;
  std::vector<PartView> parts;
  std::unique_ptr<Codec> codec;
  std::unique_ptr<TensorDecoder> decoder;  // null for a raw tensor
  int64_t rows = 1, row_len = 1;

  // Elements [begin, begin + out.size()) as float32.
  void Decode(uint64_t begin, absl::Span<float> out) const {
    if (decoder) {
      decoder->DecodeRange(begin, out);
    } else {
      const size_t es = DTypeSize(record->dtype);
      WidenToF32(record->dtype, parts[0].bytes.data() + begin * es, out.size(), out.data());
    }
  }
};

ModelReader::~ModelReader() = default;

absl::StatusOr<std::unique_ptr<ModelReader>> ModelReader::Open(const std::string& artifact) {
  HC_ASSIGN_OR_RETURN(std::vector<std::string> files, ResolveArtifactFiles(artifact));
  std::unique_ptr<ModelReader> m(new ModelReader());
  for (const std::string& f : files) {
    HC_ASSIGN_OR_RETURN(std::unique_ptr<ArtifactReader> r, ArtifactReader::Open(f));
    const auto& recs = r->metadata().tensors;
    for (size_t i = 0; i < recs.size(); ++i) {
      if (!m->index_.emplace(recs[i].name, Location{m->files_.size(), i}).second) {
        return absl::DataLossError(
            absl::StrCat(f, ": tensor \"", recs[i].name, "\" also appears in an earlier shard"));
      }
      m->names_.push_back(recs[i].name);
    }
    m->files_.push_back(std::move(r));
  }
  return m;
}

std::vector<std::string> ModelReader::TensorNames() const { return names_; }

absl::StatusOr<ModelReader::Location> ModelReader::Locate(absl::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat("no tensor \"", name, "\" in the artifact"));
  }
  return it->second;
}

absl::StatusOr<const TensorRecord*> ModelReader::Find(absl::string_view name) const {
  HC_ASSIGN_OR_RETURN(const Location loc, Locate(name));
  return &files_[loc.file]->metadata().tensors[loc.record];
}

absl::StatusOr<std::pair<int64_t, int64_t>> ModelReader::RowShape(absl::string_view name) const {
  HC_ASSIGN_OR_RETURN(const TensorRecord* rec, Find(name));
  const int64_t rows = rec->shape.empty() ? 1 : rec->shape[0];
  return std::make_pair(rows, rows == 0 ? int64_t{0} : static_cast<int64_t>(rec->numel) / rows);
}

absl::StatusOr<std::shared_ptr<const ModelReader::Prepared>> ModelReader::Prepare(
    absl::string_view name) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = prepared_.find(name);
    if (it != prepared_.end()) return it->second;
  }
  HC_ASSIGN_OR_RETURN(const Location loc, Locate(name));
  const ArtifactReader& file = *files_[loc.file];
  auto p = std::make_shared<Prepared>();
  p->record = &file.metadata().tensors[loc.record];
  const TensorRecord& rec = *p->record;
  HC_ASSIGN_OR_RETURN(p->parts, file.Parts(loc.record));
  HC_ASSIGN_OR_RETURN(std::tie(p->rows, p->row_len), RowShape(name));
  if (rec.codec == kRawCodec) {
    if (rec.dtype != DType::kF32 && rec.dtype != DType::kF16 && rec.dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", rec.name, "\" is raw ",
                                                     DTypeName(rec.dtype), ", not float data"));
    }
  } else {
    auto error = [&](const absl::Status& s) {
      return absl::DataLossError(
          absl::StrCat(file.file().path(), ": tensor \"", rec.name, "\": ", s.message()));
    };
    auto codec = CreateCodec(rec.codec, {});
    if (!codec.ok()) return error(codec.status());
    p->codec = std::move(*codec);
    TensorInfo info;
    info.name = rec.name;
    info.dtype = rec.dtype;
    info.shape = rec.shape;
    info.numel = rec.numel;
    info.end = rec.numel * DTypeSize(rec.dtype);
    auto dec = p->codec->PrepareDecoder(info, rec.params, p->parts);
    if (!dec.ok()) return error(dec.status());
    p->decoder = std::move(*dec);
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Another thread may have prepared it meanwhile: keep the first.
  auto [it, inserted] = prepared_.emplace(std::string(name), std::move(p));
  return it->second;
}

absl::Status ModelReader::DecodeTensor(absl::string_view name, absl::Span<float> out,
                                       Executor& executor) const {
  HC_ASSIGN_OR_RETURN(std::shared_ptr<const Prepared> p, Prepare(name));
  const uint64_t n = p->record->numel;
  if (out.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\": output holds ", out.size(), " floats, needs ", n));
  }
  const uint64_t units = (n + kChunkElems - 1) / kChunkElems;
  executor.ParallelFor(static_cast<int64_t>(units), [&](int64_t u) {
    const uint64_t b = static_cast<uint64_t>(u) * kChunkElems;
    p->Decode(b, out.subspan(b, std::min(n, b + kChunkElems) - b));
  });
  return absl::OkStatus();
}

namespace {

absl::Status CheckRows(absl::string_view name, int64_t r0, int64_t r1, int64_t rows,
                       int64_t row_len, size_t out_size) {
  if (r0 < 0 || r1 < r0 || r1 > rows) {
    return absl::OutOfRangeError(absl::StrCat("tensor \"", name, "\": rows [", r0, ", ", r1,
                                              ") are not inside [0, ", rows, ")"));
  }
  if (out_size != static_cast<uint64_t>((r1 - r0) * row_len)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\": output holds ", out_size,
                                                   " values, rows [", r0, ", ", r1, ") need ",
                                                   (r1 - r0) * row_len));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelReader::DecodeRows(absl::string_view name, int64_t r0, int64_t r1,
                                     absl::Span<float> out) const {
  HC_ASSIGN_OR_RETURN(std::shared_ptr<const Prepared> p, Prepare(name));
  HC_RETURN_IF_ERROR(CheckRows(name, r0, r1, p->rows, p->row_len, out.size()));
  if (!out.empty()) p->Decode(static_cast<uint64_t>(r0 * p->row_len), out);
  return absl::OkStatus();
}

absl::Status ModelReader::DecodeRowsF16(absl::string_view name, int64_t r0, int64_t r1,
                                        absl::Span<uint16_t> out) const {
  HC_ASSIGN_OR_RETURN(std::shared_ptr<const Prepared> p, Prepare(name));
  HC_RETURN_IF_ERROR(CheckRows(name, r0, r1, p->rows, p->row_len, out.size()));
  // Through a float32 buffer of at most kChunkElems elements.
  std::vector<float> buf(std::min<uint64_t>(out.size(), kChunkElems));
  const uint64_t begin = static_cast<uint64_t>(r0 * p->row_len);
  for (uint64_t done = 0; done < out.size(); done += buf.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), out.size() - done));
    p->Decode(begin + done, absl::MakeSpan(buf.data(), n));
    NarrowFromF32(DType::kF16, buf.data(), n, reinterpret_cast<uint8_t*>(out.data() + done));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Linear>> ModelReader::CreateLinear(absl::string_view name) const {
  HC_ASSIGN_OR_RETURN(std::shared_ptr<const Prepared> p, Prepare(name));
  LinearWeight w;
  w.codec = p->record->codec;
  w.dtype = p->record->dtype;
  w.shape = p->record->shape;
  w.params = p->record->params;
  w.parts = p->parts;
  auto lin = hc::CreateLinear(w);
  if (!lin.ok()) {
    return absl::Status(lin.status().code(),
                        absl::StrCat("tensor \"", name, "\": ", lin.status().message()));
  }
  return lin;
}

}  // namespace hc
