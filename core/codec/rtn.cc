#include "core/codec/rtn.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/io/bit_pack.h"

namespace hc {
namespace {

constexpr absl::string_view kKeys[] = {"bits", "group_size"};

// Elements per parallel unit: a multiple of 8 * group_size, so each unit's codes start on a
// byte boundary and its scales on a group boundary.
uint64_t UnitElems(int64_t group_size) {
  const uint64_t g8 = 8 * static_cast<uint64_t>(group_size);
  return std::max<uint64_t>(1, kChunkElems / g8) * g8;
}

class RtnDecoder final : public TensorDecoder {
 public:
  RtnDecoder(int bits, int64_t group, absl::Span<const uint8_t> codes,
             absl::Span<const uint8_t> scales)
      : bits_(bits), group_(group), codes_(codes), scales_(scales) {}

  void DecodeRange(uint64_t begin, absl::Span<float> out) const override {
    std::vector<uint32_t> q(std::min<size_t>(out.size(), 4096));
    size_t done = 0;
    while (done < out.size()) {
      const size_t n = std::min(q.size(), out.size() - done);
      UnpackLsbFirst(codes_, bits_, begin + done, absl::MakeSpan(q.data(), n));
      for (size_t i = 0; i < n; ++i) {
        const uint64_t g = (begin + done + i) / static_cast<uint64_t>(group_);
        const float s = HalfToFloat(Load16(4 * g));
        const float m = HalfToFloat(Load16(4 * g + 2));
        out[done + i] = static_cast<float>(q[i]) * s + m;
      }
      done += n;
    }
  }

 private:
  uint16_t Load16(uint64_t off) const {
    return static_cast<uint16_t>(scales_[off] | (scales_[off + 1] << 8));
  }
  int bits_;
  int64_t group_;
  absl::Span<const uint8_t> codes_;
  absl::Span<const uint8_t> scales_;
};

class RtnCodec final : public Codec {
 public:
  explicit RtnCodec(RtnOptions o) : o_(o) {}
  absl::string_view name() const override { return "rtn"; }

  JsonValue OptionsJson() const override {
    return JsonValue::Object()
        .Add("bits", JsonValue::Int(o_.bits))
        .Add("group_size", JsonValue::Int(o_.group_size));
  }

  // Encode: units of whole groups run in parallel; each group is widened to float, its range
  // rounded to F16, and its codes packed into the unit's own byte range.
  absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, absl::Span<const uint8_t> data,
                                       Executor& executor) const override {
    const uint64_t n = info.numel;
    const uint64_t g = static_cast<uint64_t>(o_.group_size);
    const uint64_t groups = (n + g - 1) / g;
    const uint64_t unit = UnitElems(o_.group_size);
    const uint64_t units = (n + unit - 1) / unit;
    const size_t esize = DTypeSize(info.dtype);
    const uint32_t qmax = (1u << o_.bits) - 1;

    EncodedTensor enc;
    enc.params.Add("bits", JsonValue::Int(o_.bits)).Add("group_size", JsonValue::Int(o_.group_size));
    EncodedPart codes{"codes", DType::kU8, {}, std::vector<uint8_t>(PackedBytes(n, o_.bits))};
    codes.shape = {static_cast<int64_t>(codes.bytes.size())};
    EncodedPart scales{"scales", DType::kF16, {static_cast<int64_t>(groups), 2},
                       std::vector<uint8_t>(groups * 4)};
    std::atomic<bool> overflow{false};  // a scale or zero beyond F16 range

    executor.ParallelFor(static_cast<int64_t>(units), [&](int64_t u) {
      const uint64_t b = static_cast<uint64_t>(u) * unit;
      const uint64_t e = std::min(n, b + unit);
      std::vector<float> x(e - b);
      std::vector<uint32_t> q(e - b);
      WidenToF32(info.dtype, data.data() + b * esize, e - b, x.data());
      for (uint64_t gb = b; gb < e; gb += g) {
        const uint64_t ge = std::min(e, gb + g);
        float lo = x[gb - b], hi = lo;
        for (uint64_t i = gb; i < ge; ++i) {
          lo = std::min(lo, x[i - b]);
          hi = std::max(hi, x[i - b]);
        }
        const uint16_t sh = FloatToHalf((hi - lo) / static_cast<float>(qmax));
        const uint16_t mh = FloatToHalf(lo);
        const float s = HalfToFloat(sh), m = HalfToFloat(mh);
        if (!std::isfinite(s) || !std::isfinite(m)) overflow.store(true, std::memory_order_relaxed);
        const float inv = s > 0 && std::isfinite(s) ? 1.0f / s : 0.0f;
        for (uint64_t i = gb; i < ge; ++i) {
          // NaN-safe clamp: a NaN (non-finite input, or an overflowed zero) becomes code 0
          // instead of an undefined float-to-integer conversion.
          float v = (x[i - b] - m) * inv;
          v = v > 0.0f ? std::min(v, static_cast<float>(qmax)) : 0.0f;
          q[i - b] = static_cast<uint32_t>(v + 0.5f);
        }
        const uint64_t gi = gb / g;
        scales.bytes[4 * gi] = static_cast<uint8_t>(sh);
        scales.bytes[4 * gi + 1] = static_cast<uint8_t>(sh >> 8);
        scales.bytes[4 * gi + 2] = static_cast<uint8_t>(mh);
        scales.bytes[4 * gi + 3] = static_cast<uint8_t>(mh >> 8);
      }
      const uint64_t byte0 = b * static_cast<uint64_t>(o_.bits) / 8;
      const uint64_t nbytes = PackedBytes(e - b, o_.bits);
      PackLsbFirst(q, o_.bits, absl::MakeSpan(codes.bytes.data() + byte0, nbytes));
    });
    if (overflow.load()) {
      enc.raw = true;
      enc.raw_reason = "values beyond the F16 range of rtn scales";
      return enc;
    }
    enc.parts.push_back(std::move(codes));
    enc.parts.push_back(std::move(scales));
    return enc;
  }

  absl::StatusOr<std::unique_ptr<TensorDecoder>> PrepareDecoder(
      const TensorInfo& info, const JsonValue& params,
      absl::Span<const PartView> parts) const override {
    const JsonValue* bits_v = params.Find("bits");
    const JsonValue* group_v = params.Find("group_size");
    auto bits = bits_v ? bits_v->as_int64() : std::nullopt;
    auto group = group_v ? group_v->as_int64() : std::nullopt;
    if (!bits || !group) return absl::DataLossError("rtn: params need integer bits and group_size");
    if (*bits < 2 || *bits > 8) return absl::DataLossError(absl::StrCat("rtn: bits ", *bits, " out of [2, 8]"));
    RtnOptions o{static_cast<int>(*bits), *group};
    if (absl::Status s = o.Validate(); !s.ok()) return absl::DataLossError(s.message());
    const PartView* codes = FindPart(parts, "codes");
    const PartView* scales = FindPart(parts, "scales");
    if (codes == nullptr || scales == nullptr || parts.size() != 2) {
      return absl::DataLossError("rtn: expected exactly the parts \"codes\" and \"scales\"");
    }
    const uint64_t groups = (info.numel + *group - 1) / *group;
    if (codes->dtype != DType::kU8 || codes->bytes.size() != PackedBytes(info.numel, o.bits)) {
      return absl::DataLossError(absl::StrCat("rtn: \"codes\" must be U8 of ",
                                              PackedBytes(info.numel, o.bits), " bytes"));
    }
    if (scales->dtype != DType::kF16 || scales->bytes.size() != groups * 4) {
      return absl::DataLossError(absl::StrCat("rtn: \"scales\" must be F16 [", groups, ", 2]"));
    }
    return std::unique_ptr<TensorDecoder>(
        new RtnDecoder(o.bits, o.group_size, codes->bytes, scales->bytes));
  }

 private:
  RtnOptions o_;
};

}  // namespace

absl::Status RtnOptions::Validate() const {
  if (bits < 2 || bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("rtn: bits must be in [2, 8], got ", bits));
  }
  if (group_size < 1 || group_size > (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rtn: group_size must be in [1, 1048576], got ", group_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<RtnOptions> RtnOptions::FromCodecOptions(const CodecOptions& options) {
  HC_RETURN_IF_ERROR(options.CheckKnown("rtn", kKeys));
  RtnOptions o;
  HC_ASSIGN_OR_RETURN(int64_t bits, options.GetInt("bits", o.bits));
  HC_ASSIGN_OR_RETURN(o.group_size, options.GetInt("group_size", o.group_size));
  if (bits < 2 || bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("rtn: bits must be in [2, 8], got ", bits));
  }
  o.bits = static_cast<int>(bits);
  HC_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<std::unique_ptr<Codec>> CreateRtnCodec(const CodecOptions& options) {
  HC_ASSIGN_OR_RETURN(RtnOptions o, RtnOptions::FromCodecOptions(options));
  return std::unique_ptr<Codec>(new RtnCodec(o));
}

CodecDescription DescribeRtnCodec() {
  return {"rtn",
          "group-wise asymmetric integer rounding (F16 scale and zero per group); the baseline",
          {{"bits", "bits per code, 2..8 (default 4)"},
           {"group_size", "elements per group along the flattened tensor (default 128)"}}};
}

}  // namespace hc
