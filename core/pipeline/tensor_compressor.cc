#include <chrono>
#include <cmath>
#include <cstring>

#include <re2/re2.h>

#include "absl/strings/str_cat.h"
#include "core/base/crc32c.h"
#include "core/base/status_macros.h"
#include "core/pipeline/pipeline.h"
#include "core/quality/stats.h"

namespace hc {
namespace {

// True if any element is NaN or infinite (checked on the raw bits: exponent all ones).
bool HasNonFinite(DType dtype, absl::Span<const uint8_t> data) {
  const size_t n = data.size() / DTypeSize(dtype);
  if (dtype == DType::kF32) {
    for (size_t i = 0; i < n; ++i) {
      uint32_t u;
      std::memcpy(&u, data.data() + 4 * i, 4);
      if ((u & 0x7f800000u) == 0x7f800000u) return true;
    }
    return false;
  }
  const uint16_t mask = dtype == DType::kF16 ? 0x7c00u : 0x7f80u;
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = static_cast<uint16_t>(data[2 * i] | (data[2 * i + 1] << 8));
    if ((h & mask) == mask) return true;
  }
  return false;
}

TensorRecord BaseRecord(const TensorInfo& info) {
  TensorRecord r;
  r.name = info.name;
  r.dtype = info.dtype;
  r.shape = info.shape;
  r.numel = info.numel;
  return r;
}

}  // namespace

absl::Status CompressOptions::Validate() const {
  if (threads < 0 || threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be in [0, 1024], got ", threads));
  }
  if (memory_budget < (uint64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory budget must be at least 1 MiB, got ", memory_budget, " bytes"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TensorCompressor>> TensorCompressor::Create(
    const CompressOptions& options) {
  HC_RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<TensorCompressor> c(new TensorCompressor());
  HC_ASSIGN_OR_RETURN(c->codec_, CreateCodec(options.codec, options.codec_options));
  for (const std::string& re : options.skip) {
    RE2::Options ro;
    ro.set_log_errors(false);
    auto compiled = std::make_unique<RE2>(re, ro);
    if (!compiled->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--skip \"", re, "\" is not a valid regex: ", compiled->error()));
    }
    c->skip_.push_back(std::move(compiled));
  }
  return c;
}

TensorCompressor::~TensorCompressor() = default;

absl::StatusOr<TensorCompressor::Result> TensorCompressor::Compress(
    const TensorInfo& info, absl::Span<const uint8_t> data, Executor& executor) const {
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&](Result r) {
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  };
  Result out;
  out.record = BaseRecord(info);
  auto make_raw = [&](std::string reason) {
    out.record.codec = std::string(kRawCodec);
    out.record.raw_reason = std::move(reason);
    out.record.parts = {StoredPart{"", info.dtype, info.shape, data.size(), Crc32c(0, data)}};
    out.record.stats = LosslessStats(info.numel, data.size());
    return finish(std::move(out));
  };
  if (!IsCompressibleFloat(info.dtype)) return make_raw(absl::StrCat("dtype ", DTypeName(info.dtype)));
  for (const auto& re : skip_) {
    if (RE2::PartialMatch(info.name, *re)) return make_raw("matched --skip");
  }
  if (info.numel == 0) return make_raw("empty");
  if (HasNonFinite(info.dtype, data)) return make_raw("non-finite values");

  HC_ASSIGN_OR_RETURN(EncodedTensor enc, codec_->Encode(info, data, executor),
                      Annotate(_, absl::StrCat("tensor \"", info.name, "\"")));
  if (enc.raw) return make_raw(enc.raw_reason);

  TensorRecord& r = out.record;
  r.codec = std::string(codec_->name());
  r.params = std::move(enc.params);
  std::vector<PartView> views;
  uint64_t stored = 0;
  for (const EncodedPart& p : enc.parts) {
    r.parts.push_back(StoredPart{p.suffix, p.dtype, p.shape, p.bytes.size(), Crc32c(0, p.bytes)});
    views.push_back(PartView{p.suffix, p.dtype, p.shape, p.bytes});
    stored += p.bytes.size();
  }
  HC_ASSIGN_OR_RETURN(std::unique_ptr<TensorDecoder> dec,
                      codec_->PrepareDecoder(info, r.params, views),
                      absl::InternalError(absl::StrCat("tensor \"", info.name, "\": codec ",
                                                       codec_->name(), " cannot decode its own output: ",
                                                       _.message())));
  // Statistics against what decompression will return: decode each fixed chunk, round it to
  // the tensor's dtype, accumulate per chunk, then merge the chunks in order (deterministic).
  const uint64_t n = info.numel;
  const uint64_t units = (n + kChunkElems - 1) / kChunkElems;
  const size_t esize = DTypeSize(info.dtype);
  std::vector<ErrorAccumulator> acc(units);
  executor.ParallelFor(static_cast<int64_t>(units), [&](int64_t u) {
    const uint64_t b = static_cast<uint64_t>(u) * kChunkElems;
    const uint64_t e = std::min(n, b + kChunkElems);
    std::vector<float> x(e - b), y(e - b);
    WidenToF32(info.dtype, data.data() + b * esize, e - b, x.data());
    dec->DecodeRange(b, absl::MakeSpan(y));
    RoundTripThroughDType(info.dtype, absl::MakeSpan(y));
    acc[u].Add(x, y);
  });
  ErrorAccumulator total;
  for (const ErrorAccumulator& a : acc) total.Merge(a);
  r.stats = total.Finish(stored);
  out.parts = std::move(enc.parts);
  return finish(std::move(out));
}

ModelTotals Summarize(absl::Span<const TensorRecord> records) {
  ModelTotals t;
  double snr = 0, rd = 0, mae = 0;
  for (const TensorRecord& r : records) {
    ++t.tensors;
    t.numel += r.numel;
    t.stored_bytes += r.stats.stored_bytes;
    if (r.codec == kRawCodec) continue;
    ++t.coded_tensors;
    t.coded_numel += r.numel;
    t.coded_stored_bytes += r.stats.stored_bytes;
    const double w = static_cast<double>(r.numel);
    snr += w * r.stats.snr_db;
    rd += w * r.stats.db_above_rd;
    mae += w * r.stats.mae;
  }
  if (t.numel) t.bits_per_weight = 8.0 * static_cast<double>(t.stored_bytes) / static_cast<double>(t.numel);
  if (t.coded_numel) {
    const double n = static_cast<double>(t.coded_numel);
    t.coded_bits_per_weight = 8.0 * static_cast<double>(t.coded_stored_bytes) / n;
    t.snr_db = snr / n;
    t.db_above_rd = rd / n;
    t.mae = mae / n;
  }
  return t;
}

}  // namespace hc
