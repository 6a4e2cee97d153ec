#include "core/codec/rtn.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "absl/strings/str_cat.h"
#include "core/base/simd.h"
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

// out[i] = float(q[i]) * s + m (codes are at most 8 bits, exact in float).
void DequantScalar(const uint32_t* q, size_t n, float s, float m, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int32_t>(q[i])) * s + m;
}

// The range [lo, hi] of x[0..n) as one running std::min / std::max from x[0] would give it.
void RangeScalar(const float* x, int n, float* lo, float* hi) {
  float l = x[0], h = x[0];
  for (int i = 1; i < n; ++i) {
    l = std::min(l, x[i]);
    h = std::max(h, x[i]);
  }
  *lo = l;
  *hi = h;
}

// q[i] = round((x[i] - m) * inv) clamped to [0, top]; NaN-safe: a NaN (non-finite input, or an
// overflowed zero) becomes code 0 instead of an undefined float-to-integer conversion.
void CodesScalar(const float* x, int n, float m, float inv, float top, uint32_t* q) {
  for (int i = 0; i < n; ++i) {
    float v = (x[i] - m) * inv;
    v = v > 0.0f ? std::min(v, top) : 0.0f;
    q[i] = static_cast<uint32_t>(v + 0.5f);
  }
}

#if defined(__x86_64__)
#define HC_RTN_AVX2 __attribute__((target("avx2")))
// AVX2 versions, equal to the scalar ones for every input: min_ps(x, acc) is (x < acc ? x :
// acc), std::min(acc, x) exactly, NaN included; lanes keep their first element on ties, and the
// lanes fold in order. Two cases differ and go to the scalar loop: a NaN among the first eight
// (the scalar loop skips it unless it comes first, a lane starting with it would stick to it;
// later NaNs are skipped by both) and a range touching zero (with -0 and +0 both the minimum the
// scalar loop keeps whichever came first, lanes may not).
HC_RTN_AVX2 void RangeAvx2(const float* x, int n, float* lo, float* hi) {
  if (n < 16) return RangeScalar(x, n, lo, hi);
  __m256 l = _mm256_loadu_ps(x), h = l;
  if (_mm256_movemask_ps(_mm256_cmp_ps(l, l, _CMP_UNORD_Q)) != 0) {
    return RangeScalar(x, n, lo, hi);
  }
  const int body = n - n % 8;
  for (int i = 8; i < body; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    l = _mm256_min_ps(v, l);
    h = _mm256_max_ps(v, h);
  }
  alignas(32) float lv[8], hv[8];
  _mm256_store_ps(lv, l);
  _mm256_store_ps(hv, h);
  float a = x[0], c = x[0];
  for (int j = 0; j < 8; ++j) {
    a = std::min(a, lv[j]);
    c = std::max(c, hv[j]);
  }
  for (int i = body; i < n; ++i) {
    a = std::min(a, x[i]);
    c = std::max(c, x[i]);
  }
  if (a == 0.0f || c == 0.0f) return RangeScalar(x, n, lo, hi);
  *lo = a;
  *hi = c;
}

HC_RTN_AVX2 void CodesAvx2(const float* x, int n, float m, float inv, float top, uint32_t* q) {
  const __m256 mv = _mm256_set1_ps(m), iv = _mm256_set1_ps(inv), tv = _mm256_set1_ps(top);
  const __m256 zero = _mm256_setzero_ps(), half = _mm256_set1_ps(0.5f);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), iv);
    // v > 0 ? min(v, top) : 0, with min(v, top) = (top < v ? top : v) = min_ps(top, v).
    const __m256 c = _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_min_ps(tv, v));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_cvttps_epi32(_mm256_add_ps(c, half)));
  }
  CodesScalar(x + i, n - i, m, inv, top, q + i);
}

// out[i] = float(q[i]) * s + m, eight at a time: a multiply then an add, never fused (the
// target has no FMA), as the scalar loop does.
HC_RTN_AVX2 void DequantAvx2(const uint32_t* q, size_t n, float s, float m, float* out) {
  const __m256 sv = _mm256_set1_ps(s), mv = _mm256_set1_ps(m);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i)));
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_mul_ps(v, sv), mv));
  }
  DequantScalar(q + i, n - i, s, m, out + i);
}

bool RtnAvx2() { return CpuHasAvx2() && SimdAllowed(); }
#else
void DequantAvx2(const uint32_t* q, size_t n, float s, float m, float* out) {
  DequantScalar(q, n, s, m, out);
}
bool RtnAvx2() { return false; }
void RangeAvx2(const float* x, int n, float* lo, float* hi) { RangeScalar(x, n, lo, hi); }
void CodesAvx2(const float* x, int n, float m, float inv, float top, uint32_t* q) {
  CodesScalar(x, n, m, inv, top, q);
}
#endif

// One group: its range, the scale (hi - lo) / qmax and zero lo rounded to F16 (stored
// little-endian at sz[0..4), and as floats in *scale and *zero), and the codes. Returns false when the scale or zero is beyond
// F16.
bool QuantiseGroup(const float* x, int n, uint32_t qmax, uint32_t* q, uint8_t* sz,
                   float* scale, float* zero) {
  const bool simd = RtnAvx2();
  float lo, hi;
  (simd ? RangeAvx2 : RangeScalar)(x, n, &lo, &hi);
  const uint16_t sh = FloatToHalf((hi - lo) / static_cast<float>(qmax));
  const uint16_t mh = FloatToHalf(lo);
  const float s = HalfToFloat(sh), m = HalfToFloat(mh);
  const float inv = s > 0 && std::isfinite(s) ? 1.0f / s : 0.0f;
  (simd ? CodesAvx2 : CodesScalar)(x, n, m, inv, static_cast<float>(qmax), q);
  sz[0] = static_cast<uint8_t>(sh);
  sz[1] = static_cast<uint8_t>(sh >> 8);
  sz[2] = static_cast<uint8_t>(mh);
  sz[3] = static_cast<uint8_t>(mh >> 8);
  *scale = s;
  *zero = m;
  return std::isfinite(s) && std::isfinite(m);
}

class RtnDecoder final : public TensorDecoder {
 public:
  RtnDecoder(int bits, int64_t group, absl::Span<const uint8_t> codes,
             absl::Span<const uint8_t> scales)
      : bits_(bits), group_(group), codes_(codes), scales_(scales) {}

  void DecodeRange(uint64_t begin, absl::Span<float> out) const override {
    thread_local std::vector<uint32_t> q(4096);
    size_t done = 0;
    while (done < out.size()) {
      const size_t n = std::min(q.size(), out.size() - done);
      UnpackLsbFirst(codes_, bits_, begin + done, absl::MakeSpan(q.data(), n));
      // Group by group: one scale and zero, then a plain loop the compiler vectorises.
      const uint64_t base = begin + done, group = static_cast<uint64_t>(group_);
      const bool simd = RtnAvx2();
      for (size_t i = 0; i < n;) {
        const uint64_t g = (base + i) / group;
        const size_t end = static_cast<size_t>(std::min<uint64_t>(n, (g + 1) * group - base));
        const float s = HalfToFloat(Load16(4 * g));
        const float m = HalfToFloat(Load16(4 * g + 2));
        (simd ? DequantAvx2 : DequantScalar)(q.data() + i, end - i, s, m, out.data() + done + i);
        i = end;
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
                                       Executor& executor,
                                       const EncodeHooks& hooks) const override {
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
    std::atomic<bool> special{false};   // a NaN or infinity in the input
    // Units are statistics chunks when 8 * group_size divides kChunkElems.
    const bool report = hooks.chunk_reconstructed != nullptr && unit == kChunkElems;

    executor.ParallelFor(static_cast<int64_t>(units), [&](int64_t u) {
      const uint64_t b = static_cast<uint64_t>(u) * unit;
      const uint64_t e = std::min(n, b + unit);
      // Per-thread scratch, grown once (fresh pages per unit cost page faults and a memset).
      thread_local std::vector<float> xs;
      thread_local std::vector<uint32_t> qs;
      if (xs.size() < e - b) xs.resize(e - b);
      if (qs.size() < e - b) qs.resize(e - b);
      float* x = xs.data();
      // A unit with a NaN or an infinity is not quantised (the whole tensor is stored raw).
      if (WidenToF32Checked(info.dtype, data.data() + b * esize, e - b, x)) {
        special.store(true, std::memory_order_relaxed);
        return;
      }
      // With `report`, each group is also reconstructed as the decoder will (the same codes
      // and F16 scale and zero) while it is in cache, for the statistics.
      thread_local std::vector<float> ys;
      if (report && ys.size() < e - b) ys.resize(e - b);
      const bool simd = RtnAvx2();
      for (uint64_t gb = b; gb < e; gb += g) {
        const uint64_t ge = std::min(e, gb + g);
        const uint64_t gi = gb / g;
        float sc = 0, m = 0;
        if (!QuantiseGroup(x + (gb - b), static_cast<int>(ge - gb), qmax, qs.data() + (gb - b),
                           scales.bytes.data() + 4 * gi, &sc, &m)) {
          overflow.store(true, std::memory_order_relaxed);
        }
        if (report) {
          (simd ? DequantAvx2 : DequantScalar)(qs.data() + (gb - b), ge - gb, sc, m,
                                               ys.data() + (gb - b));
        }
      }
      const uint64_t byte0 = b * static_cast<uint64_t>(o_.bits) / 8;
      const uint64_t nbytes = PackedBytes(e - b, o_.bits);
      PackLsbFirst(absl::MakeConstSpan(qs.data(), e - b), o_.bits,
                   absl::MakeSpan(codes.bytes.data() + byte0, nbytes));
      if (report) {
        hooks.chunk_reconstructed(static_cast<uint64_t>(u), absl::MakeConstSpan(x, e - b),
                                  absl::MakeSpan(ys.data(), e - b));
      }
    });
    enc.chunks_reconstructed = report;
    if (special.load()) {
      enc.raw = true;
      enc.raw_reason = "non-finite values";
      return enc;
    }
    if (overflow.load()) {
      enc.raw = true;
      enc.raw_reason = "values beyond the F16 range of rtn scales";
      return enc;
    }
    enc.parts.push_back(std::move(codes));
    enc.parts.push_back(std::move(scales));
    return enc;
  }

  bool ChecksNonFinite() const override { return true; }

  // The output only: packed codes and an F16 scale and zero per group (work is per unit).
  uint64_t EncodeMemory(const TensorInfo& info) const override {
    const uint64_t groups = (info.numel + o_.group_size - 1) / o_.group_size;
    return PackedBytes(info.numel, o_.bits) + 4 * groups;
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
