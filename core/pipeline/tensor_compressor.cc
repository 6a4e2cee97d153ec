#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include <re2/re2.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/base/crc32c.h"
#include "core/base/status_macros.h"
#include "core/codec/hc2.h"
#include "core/pipeline/pipeline.h"
#include "core/quality/stats.h"

namespace hc {
namespace {

TensorRecord BaseRecord(const TensorInfo& info) {
  TensorRecord r;
  r.name = info.name;
  r.dtype = info.dtype;
  r.shape = info.shape;
  r.numel = info.numel;
  return r;
}

// Codec options of an override spec "key=value[,key=value...]" on top of `base`.
absl::StatusOr<CodecOptions> ParseOverrideOptions(absl::string_view spec, const CodecOptions& base,
                                                  absl::string_view rule) {
  CodecOptions o = base;
  for (absl::string_view kv : absl::StrSplit(spec, ',')) {
    const size_t eq = kv.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--override \"", rule, "\": expected REGEX=raw or REGEX=key=value[,key=value...]"));
    }
    o.Set(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return o;
}

}  // namespace

struct TensorCompressor::Override {
  std::unique_ptr<RE2> re;
  std::unique_ptr<Codec> codec;  // nullptr: raw
  CodecOptions options;
};

absl::Status CompressOptions::Validate() const {
  if (!(target_bpw == 0 || (target_bpw >= 0.25 && target_bpw <= 32))) {
    return absl::InvalidArgumentError(
        absl::StrCat("target bits per weight must be 0 (off) or in [0.25, 32], got ", target_bpw));
  }
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
  for (const std::string& rule : options.overrides) {
    const size_t eq = rule.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--override \"", rule, "\": expected REGEX=raw or REGEX=key=value[,key=value...]"));
    }
    Override o;
    RE2::Options ro;
    ro.set_log_errors(false);
    o.re = std::make_unique<RE2>(rule.substr(0, eq), ro);
    if (!o.re->ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--override \"", rule,
                                                     "\": not a valid regex: ", o.re->error()));
    }
    const std::string spec = rule.substr(eq + 1);
    if (spec != "raw") {
      HC_ASSIGN_OR_RETURN(o.options, ParseOverrideOptions(spec, options.codec_options, rule));
      HC_ASSIGN_OR_RETURN(o.codec, CreateCodec(options.codec, o.options),
                          Annotate(_, absl::StrCat("--override \"", rule, "\"")));
    }
    c->overrides_.push_back(std::move(o));
  }
  c->options_ = options;
  if (options.target_bpw > 0) {
    const auto rate = options.codec_options.Get("mode");
    if (options.codec != "hc2" || (rate && *rate != "ec")) {
      return absl::InvalidArgumentError(
          "a target bits per weight needs --codec hc2 in its entropy-coded mode (mode ec)");
    }
  }
  return c;
}

absl::Status TensorCompressor::Plan(absl::Span<const TensorInfo> tensors) {
  if (options_.target_bpw <= 0) return absl::OkStatus();
  // Costs in bits of every tensor that does not take the shared rate.
  double total_weights = 0, fixed_bits = 0, shared_weights = 0, sensitive_weights = 0;
  // The part of fixed_bits that overrides with a rate of their own chose explicitly.
  double rated_bits = 0;
  // Tensors sharing a rate, with the override (without a rate of its own) that matched them.
  std::vector<std::pair<const TensorInfo*, const Override*>> shared, sensitive;
  for (const TensorInfo& t : tensors) {
    total_weights += static_cast<double>(t.numel);
    const double raw_bits = 8.0 * static_cast<double>(t.nbytes());
    // Rank <= 1 tensors (biases, norm and batch-norm parameters) stay raw: they are few, and a
    // batch-norm variance needs relative, not absolute, precision.
    bool skipped = !IsCompressibleFloat(t.dtype) || t.numel < kHc2MinNumel || t.shape.size() <= 1;
    for (const auto& re : skip_) skipped = skipped || RE2::PartialMatch(t.name, *re);
    if (skipped) {
      fixed_bits += raw_bits;
      continue;
    }
    const Override* ov = nullptr;
    for (const Override& o : overrides_) {
      if (RE2::PartialMatch(t.name, *o.re)) {
        ov = &o;
        break;
      }
    }
    if (ov != nullptr) {
      if (ov->codec == nullptr) {
        fixed_bits += raw_bits;
        continue;
      }
      // An override with its own rate (or fixed-rate mode) is charged at that rate.
      const auto mode = ov->options.Get("mode");
      if (mode && *mode == "fixed") {
        HC_ASSIGN_OR_RETURN(const int64_t bits, ov->options.GetInt("bits", 4));
        const double b = (static_cast<double>(bits) + 16.0 / 128 + 0.01) * t.numel + 64;
        fixed_bits += b;
        rated_bits += b;
        continue;
      }
      if (ov->options.Get("bpw")) {
        HC_ASSIGN_OR_RETURN(const double bpw, ov->options.GetDouble("bpw", 0));
        fixed_bits += bpw * static_cast<double>(t.numel);
        rated_bits += bpw * static_cast<double>(t.numel);
        continue;
      }
    }
    if (t.numel < kSensitiveNumel) {
      sensitive.emplace_back(&t, ov);
      sensitive_weights += static_cast<double>(t.numel);
    } else {
      shared.emplace_back(&t, ov);
      shared_weights += static_cast<double>(t.numel);
    }
  }
  const double budget = options_.target_bpw * total_weights;
  double sens_bpw = kSensitiveBpw;
  // Small models whose budget the sensitive tensors would eat: they share the rate too. Only
  // what the model itself forces (raw tensors) counts against the sensitive tensors' share, out
  // of the budget left after the overrides that chose a rate: an override that spends bits on
  // some tensors must not take the 8-bit protection away from the small ones.
  if (fixed_bits - rated_bits + sens_bpw * sensitive_weights > 0.25 * (budget - rated_bits)) {
    sens_bpw = 0;
    shared_weights += sensitive_weights;
    shared.insert(shared.end(), sensitive.begin(), sensitive.end());
    sensitive.clear();
  }
  const double left = budget - fixed_bits - sens_bpw * sensitive_weights;
  const double rate = shared_weights > 0 ? left / shared_weights : 0;
  if ((shared_weights > 0 && rate < 0.25) || (shared_weights == 0 && left < 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target ", options_.target_bpw, " bits per weight cannot be met: raw and overridden ",
        "tensors alone take ", fixed_bits / total_weights, " bits per weight"));
  }
  // One codec per (rate, override) pair.
  std::map<std::pair<double, const Override*>, const Codec*> made;
  auto assign = [&](double bpw, const TensorInfo* t, const Override* ov) -> absl::Status {
    auto& slot = made[{bpw, ov}];
    if (slot == nullptr) {
      CodecOptions o = ov != nullptr ? ov->options : options_.codec_options;
      o.Set("bpw", absl::StrCat(std::min(32.0, std::floor(bpw * 1e6) / 1e6)));
      HC_ASSIGN_OR_RETURN(auto codec, CreateCodec(options_.codec, o));
      planned_codecs_.push_back(std::move(codec));
      slot = planned_codecs_.back().get();
    }
    plan_[t->name] = slot;
    return absl::OkStatus();
  };
  for (const auto& [t, ov] : shared) HC_RETURN_IF_ERROR(assign(rate, t, ov));
  for (const auto& [t, ov] : sensitive) HC_RETURN_IF_ERROR(assign(sens_bpw, t, ov));
  planned_ = true;
  return absl::OkStatus();
}

const Codec* TensorCompressor::CodecFor(const TensorInfo& info) const {
  if (planned_) {
    if (auto it = plan_.find(info.name); it != plan_.end()) return it->second;
    if (info.shape.size() <= 1) return nullptr;
  }
  for (const Override& o : overrides_) {
    if (RE2::PartialMatch(info.name, *o.re)) return o.codec.get();
  }
  return codec_.get();
}

TensorCompressor::~TensorCompressor() = default;

uint64_t TensorCompressor::EncodeMemory(const TensorInfo& info) const {
  if (!IsCompressibleFloat(info.dtype)) return 0;
  for (const auto& re : skip_) {
    if (RE2::PartialMatch(info.name, *re)) return 0;
  }
  const Codec* codec = CodecFor(info);
  return codec != nullptr ? codec->EncodeMemory(info) : 0;
}

absl::StatusOr<TensorCompressor::Result> TensorCompressor::Compress(
    const TensorInfo& info, absl::Span<const uint8_t> data, Executor& executor,
    const EncodeHooks& hooks) const {
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
  if (options_.target_bpw > 0 && !planned_) {
    return absl::FailedPreconditionError("a target bits per weight needs Plan() before Compress()");
  }
  const Codec* codec = CodecFor(info);
  if ((codec == nullptr || !codec->ChecksNonFinite()) && HasNonFiniteValues(info.dtype, data, executor)) {
    return make_raw("non-finite values");
  }
  if (codec == nullptr) {
    return make_raw(planned_ && info.shape.size() <= 1 && !plan_.count(info.name)
                        ? "rank <= 1 under --target-bpw"
                        : "matched --override raw");
  }

  // Error sums per fixed chunk, merged in chunk order at the end (deterministic). A codec that
  // reconstructs its values while encoding hands them over chunk by chunk (the input is still
  // in cache); otherwise the output is decoded again below.
  const uint64_t n = info.numel;
  const uint64_t units = (n + kChunkElems - 1) / kChunkElems;
  std::vector<ErrorAccumulator> acc(units);
  auto add_chunk = [&](uint64_t u, absl::Span<const float> x, absl::Span<float> y) {
    RoundTripThroughDType(info.dtype, y);
    acc[u].Add(x, y);
  };
  EncodeHooks with_stats = hooks;
  with_stats.chunk_reconstructed = add_chunk;
  HC_ASSIGN_OR_RETURN(EncodedTensor enc, codec->Encode(info, data, executor, with_stats),
                      Annotate(_, absl::StrCat("tensor \"", info.name, "\"")));
  if (enc.raw) return make_raw(enc.raw_reason);

  TensorRecord& r = out.record;
  r.codec = std::string(codec->name());
  r.params = std::move(enc.params);
  std::vector<PartView> views;
  uint64_t stored = 0;
  for (const EncodedPart& p : enc.parts) {
    r.parts.push_back(StoredPart{p.suffix, p.dtype, p.shape, p.bytes.size(), Crc32c(0, p.bytes)});
    views.push_back(PartView{p.suffix, p.dtype, p.shape, p.bytes});
    stored += p.bytes.size();
  }
  HC_ASSIGN_OR_RETURN(std::unique_ptr<TensorDecoder> dec,
                      codec->PrepareDecoder(info, r.params, views),
                      absl::InternalError(absl::StrCat("tensor \"", info.name, "\": codec ",
                                                       codec_->name(), " cannot decode its own output: ",
                                                       _.message())));
  // Statistics against what decompression will return: decode each fixed chunk, round it to
  // the tensor's dtype and accumulate it (unless the codec reported its reconstruction).
  if (!enc.chunks_reconstructed) {
    const size_t esize = DTypeSize(info.dtype);
    executor.ParallelFor(static_cast<int64_t>(units), [&](int64_t u) {
      const uint64_t b = static_cast<uint64_t>(u) * kChunkElems;
      const uint64_t e = std::min(n, b + kChunkElems);
      // Scratch reused by this thread (a fresh 2 x 256 KiB per chunk cost page faults).
      thread_local std::vector<float> xs, ys;
      xs.resize(kChunkElems);
      ys.resize(kChunkElems);
      const absl::Span<float> x(xs.data(), e - b), y(ys.data(), e - b);
      WidenToF32(info.dtype, data.data() + b * esize, e - b, x.data());
      dec->DecodeRange(b, y);
      add_chunk(static_cast<uint64_t>(u), x, y);
    });
  }
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
