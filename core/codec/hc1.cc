#include "core/codec/hc1.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/codec/hc1_geometry.h"
#include "core/codec/hc1_grid.h"
#include "core/codec/hc1_simd.h"
#include "core/io/bit_pack.h"

namespace hc {
namespace {

using hc1::Codebook;
using hc1::Geometry;
using hc1::GridResult;
using hc1::kUnitPairs;
using hc1::Layout;

constexpr absl::string_view kKeys[] = {
    "preset", "L", "n", "class_max", "loss_max", "loss_threshold", "fallback_mae"};
constexpr uint64_t kMinNumel = 10;
constexpr int64_t kMaxN = 65536;
constexpr int kMaxClass = hc1::kMaxRings;
constexpr size_t kMaxNList = 16;

int BitLength(uint32_t v) { return v == 0 ? 1 : 32 - std::countl_zero(v); }

// The decoder: a table of every index's float32 output, then one lookup per element.
class Hc1Decoder final : public TensorDecoder {
 public:
  Hc1Decoder(std::vector<float> table, absl::Span<const uint8_t> codes, int w, int z)
      : entries_(table.size() / 2), table_(std::move(table)), codes_(codes), w_(w), z_(z) {
    // One NaN pair past the entries: an index beyond them (a corrupt stream) decodes to NaN.
    table_.push_back(std::numeric_limits<float>::quiet_NaN());
    table_.push_back(std::numeric_limits<float>::quiet_NaN());
  }

  // Whole pairs in a tight loop (the index from one unaligned 8-byte load while it lies inside
  // the codes, both values copied at once); a leading or trailing single element, and the last
  // few pairs near the end of the codes, go through Read().
  void DecodeRange(uint64_t begin, absl::Span<float> out) const override {
    size_t i = 0;
    uint64_t e = begin;
    if (e & 1) {
      out[i++] = table_[2 * Clamp(Read(e >> 1)) + 1];
      ++e;
    }
    const uint64_t w = static_cast<uint64_t>(w_);
    uint64_t bit = static_cast<uint64_t>(z_) + (e >> 1) * w;
    const uint64_t limit = codes_.size() >= 8 ? codes_.size() - 8 : 0;  // last fast byte
    const uint8_t* codes = codes_.data();
    const float* table = table_.data();
    if (codes_.size() >= 8) {
      for (; i + 1 < out.size() && (bit >> 3) <= limit; i += 2, e += 2, bit += w) {
        uint64_t v;
        std::memcpy(&v, codes + (bit >> 3), 8);
        v = __builtin_bswap64(v);  // little-endian host (x86-64, arm64)
        const uint64_t I = Clamp((v << (bit & 7)) >> (64 - w_));
        std::memcpy(out.data() + i, table + 2 * I, 2 * sizeof(float));
      }
    }
    for (; i < out.size(); ++i, ++e) out[i] = table_[2 * Clamp(Read(e >> 1)) + (e & 1)];
  }

 private:
  uint64_t Clamp(uint64_t I) const { return I < entries_ ? I : entries_; }
  uint64_t Read(uint64_t pair) const {
    const uint64_t bit = static_cast<uint64_t>(z_) + pair * static_cast<uint64_t>(w_);
    const uint64_t byte = bit >> 3;
    uint64_t v = 0;
    if (byte + 8 <= codes_.size()) {
      std::memcpy(&v, codes_.data() + byte, 8);
      v = __builtin_bswap64(v);  // little-endian host (x86-64, arm64)
    } else {
      for (uint64_t k = 0; k < 8; ++k) {
        v = (v << 8) | (byte + k < codes_.size() ? codes_[byte + k] : 0u);
      }
    }
    return (v << (bit & 7)) >> (64 - w_);
  }

  uint64_t entries_;
  std::vector<float> table_;
  absl::Span<const uint8_t> codes_;
  int w_;
  int z_;
};

float LoadF32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

class Hc1Codec final : public Codec {
 public:
  explicit Hc1Codec(Hc1Options o) : o_(std::move(o)) {}
  absl::string_view name() const override { return "hc1"; }

  JsonValue OptionsJson() const override {
    JsonValue ns = JsonValue::Array();
    for (int64_t n : o_.n) ns.Push(JsonValue::Int(n));
    return JsonValue::Object()
        .Add("preset", JsonValue::String(o_.preset))
        .Add("L", JsonValue::Number(o_.L))
        .Add("n", std::move(ns))
        .Add("class_max", JsonValue::Int(o_.class_max))
        .Add("loss_max", JsonValue::Number(o_.loss_max))
        .Add("loss_threshold", JsonValue::Number(o_.loss_threshold))
        .Add("fallback_mae", JsonValue::Number(o_.fallback_mae));
  }

  absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, absl::Span<const uint8_t> data,
                                       Executor& ex, const EncodeHooks& hooks) const override;

  // Peak while packing: the codes (2 bytes a pair, 4 when an index can exceed 16 bits) and
  // the packed stream (at most the widest index the options allow). The input is read in
  // place, a unit at a time. Idle code buffers kept between tensors (hc1::PairCodes, at most
  // PairCodes::kPoolBytes for the process) are not counted.
  // The centre pass checks every value (and tiny tensors are checked before they go raw).
  bool ChecksNonFinite() const override { return true; }

  uint64_t EncodeMemory(const TensorInfo& info) const override {
    const uint64_t pairs = (info.numel + 1) / 2;
    int64_t n_max = 1;
    for (int64_t n : o_.n) n_max = std::max(n_max, n);
    const uint32_t top = static_cast<uint32_t>((n_max + 1) * (o_.class_max + 1) - 1);
    return pairs * (hc1::WideCodes(o_) ? 4 : 2) + (pairs * BitLength(top) + 7) / 8;
  }

  absl::StatusOr<std::unique_ptr<TensorDecoder>> PrepareDecoder(
      const TensorInfo& info, const JsonValue& params,
      absl::Span<const PartView> parts) const override;

 private:
  Hc1Options o_;
};

absl::StatusOr<EncodedTensor> Hc1Codec::Encode(const TensorInfo& info,
                                               absl::Span<const uint8_t> data, Executor& ex,
                                               const EncodeHooks& hooks) const {
  HC_RETURN_IF_ERROR(CheckEncodeInput("hc1", info, data));
  EncodedTensor enc;
  if (info.numel < kMinNumel) {
    enc.raw = true;
    enc.raw_reason = HasNonFiniteValues(info.dtype, data.data(), info.numel) ? "non-finite values"
                                                                             : "numel<10";
    return enc;
  }
  Geometry g;
  g.L = o_.L;
  g.numel = static_cast<int64_t>(info.numel);
  g.M = (g.numel + 1) / 2;
  const int64_t M = g.M;

  // Values read per range as float32 (F16/BF16 widened exactly, into small scratch buffers);
  // an odd length is padded with numpy's float32 mean (chunk sums in parallel, added in order).
  g.src = {data.data(), info.dtype, g.numel, 0.0f};
  if (g.numel % 2 == 1) {
    const size_t esize = DTypeSize(info.dtype);
    const int64_t chunks = (g.numel + hc1::kNumpyChunk - 1) / hc1::kNumpyChunk;
    std::vector<float> sums(chunks);
    ex.ParallelFor(chunks, [&](int64_t c) {
      const int64_t b = c * hc1::kNumpyChunk, n = std::min(hc1::kNumpyChunk, g.numel - b);
      std::unique_ptr<float[]> x(new float[hc1::kNumpyChunk]);
      WidenToF32(info.dtype, data.data() + b * esize, n, x.get());
      sums[c] = hc1::PairwiseSumF32(x.get(), n, 1);
    });
    float s = 0.0f;
    for (float v : sums) s += v;
    g.src.pad = static_cast<float>(static_cast<double>(s) / static_cast<double>(g.numel));
  }

  // Centre: numpy's mean of the x lane and of the y lane (chunk sums in parallel, added in
  // order), plus a finiteness check of every value.
  const int64_t cchunks = (M + hc1::kNumpyChunk - 1) / hc1::kNumpyChunk;
  std::vector<float> sx(cchunks), sy(cchunks);
  std::vector<uint8_t> finite(cchunks, 1);
  ex.ParallelFor(cchunks, [&](int64_t c) {
    const int64_t b = c * hc1::kNumpyChunk, n = std::min(hc1::kNumpyChunk, M - b);
    if (const uint16_t* h = g.src.F16(b, b + n); h != nullptr) {
      finite[c] = hc1::PairSumsF16Avx512(h, n, &sx[c], &sy[c]);
      return;
    }
    std::unique_ptr<float[]> scratch(new float[2 * hc1::kNumpyChunk]);
    const float* x = g.src.Read(b, b + n, scratch.get());
    sx[c] = hc1::PairwiseSumF32(x, n, 2);
    sy[c] = hc1::PairwiseSumF32(x + 1, n, 2);
    finite[c] = !HasNonFiniteValues(DType::kF32, reinterpret_cast<const uint8_t*>(x), 2 * n);
  });
  float tx = 0.0f, ty = 0.0f;
  bool all_finite = true;
  for (int64_t c = 0; c < cchunks; ++c) {
    tx += sx[c];
    ty += sy[c];
    all_finite = all_finite && finite[c];
  }
  g.cx = static_cast<float>(static_cast<double>(tx) / static_cast<double>(M));
  g.cy = static_cast<float>(static_cast<double>(ty) / static_cast<double>(M));
  if (!all_finite || !std::isfinite(g.cx) || !std::isfinite(g.cy)) {
    enc.raw = true;
    enc.raw_reason = "non-finite values";
    return enc;
  }
  const double h = o_.L / 2;
  g.lox = static_cast<float>(static_cast<double>(g.cx) - h);
  g.hix = static_cast<float>(static_cast<double>(g.cx) + h);
  g.loy = static_cast<float>(static_cast<double>(g.cy) - h);
  g.hiy = static_cast<float>(static_cast<double>(g.cy) + h);

  // Distances to the centre (float32): the farthest pair and the inner count. The maximum is
  // taken on squared distances (sqrt is monotonic); the first pair whose rounded distance
  // equals D is then looked for in the first unit that reaches it.
  const int64_t units = g.units();
  struct Far {
    float s = -1;
    uint32_t inner = 0;
  };
  std::vector<Far> fars(units);
  const hc1::ScanFn scan = hc1::BestScan();
  ex.ParallelFor(units, [&](int64_t u) {
    Far& f = fars[u];
    const int64_t b = u * kUnitPairs, e = std::min(M, b + kUnitPairs);
    int64_t ni = 0;
    if (const uint16_t* h = g.src.F16(b, e); h != nullptr) {
      hc1::ScanF16Avx512(h, e - b, g.cx, g.cy, g.square(), &f.s, &ni);
    } else {
      std::unique_ptr<float[]> scratch(new float[2 * kUnitPairs]);
      scan(g.src.Read(b, e, scratch.get()), e - b, g.cx, g.cy, g.square(), &f.s, &ni);
    }
    f.inner = static_cast<uint32_t>(ni);
  });
  float smax = -1;
  for (const Far& f : fars) {
    smax = std::max(smax, f.s);
    g.inner += f.inner;
  }
  g.outer = M - g.inner;
  g.D = std::sqrt(smax);
  if (!std::isfinite(g.D)) {
    enc.raw = true;
    enc.raw_reason = "non-finite values";
    return enc;
  }
  float far_xy[2] = {0, 0};
  for (int64_t u = 0; u < units; ++u) {
    if (std::sqrt(fars[u].s) != g.D) continue;
    const int64_t b = u * kUnitPairs, e = std::min(M, b + kUnitPairs);
    std::unique_ptr<float[]> scratch(new float[2 * kUnitPairs]);
    const float* x = g.src.Read(b, e, scratch.get());
    for (int64_t i = 0;; ++i) {
      const float dx = x[2 * i] - g.cx, dy = x[2 * i + 1] - g.cy;
      if (std::sqrt(dx * dx + dy * dy) == g.D) {
        g.far = b + i;
        far_xy[0] = x[2 * i];
        far_xy[1] = x[2 * i + 1];
        break;
      }
    }
    break;
  }

  // One full encode per codebook size: the first whose error is within loss_max wins, else the
  // smallest error (the earliest on ties).
  // With the fallback on, a codebook size may stop early once its mean error provably exceeds
  // fallback_mae (GridResult::above): it then counts as an infinite error. That changes no
  // decision when there is one n, or when loss_max <= fallback_mae (such an n is never within
  // loss_max, and is the smallest error only when every n exceeds fallback_mae).
  const double raw_above =
      o_.fallback_mae > 0 && (o_.n.size() == 1 || o_.loss_max <= o_.fallback_mae)
          ? o_.fallback_mae
          : 0.0;
  GridResult chosen;
  double chosen_mae = 0;
  size_t chosen_index = 0;
  for (size_t k = 0; k < o_.n.size(); ++k) {
    GridResult r = hc1::EncodeGrid(g, o_.n[k], o_, raw_above, ex);
    const double mae = r.above ? std::numeric_limits<double>::infinity() : r.mae;
    const bool within = mae <= o_.loss_max;
    if (k == 0 || within || mae < chosen_mae) {
      chosen = std::move(r);
      chosen_mae = mae;
      chosen_index = k;
    }
    if (within) break;
  }
  // The input is not read again.
  if (hooks.input_copied) hooks.input_copied();

  if (chosen.above) {
    enc.raw = true;
    enc.raw_reason =
        absl::StrCat("mean error > fallback_mae ", o_.fallback_mae, " (lower bound ", chosen.bound,
                     " after ", chosen.pairs_seen, " of ", M, " pairs)");
    return enc;
  }
  if (o_.fallback_mae > 0 && chosen.mae > o_.fallback_mae) {
    enc.raw = true;
    enc.raw_reason = absl::StrCat("mean error ", chosen.mae, " > fallback_mae ", o_.fallback_mae);
    return enc;
  }

  const float sv[4] = {g.cx, g.cy, far_xy[0], far_xy[1]};
  const int w = BitLength(chosen.max_index);
  const int z = static_cast<int>((8 - (static_cast<uint64_t>(M) * w) % 8) % 8);
  EncodedPart codes{"codes", DType::kU8, {}, std::vector<uint8_t>(PackedBytes(M, w, z))};
  codes.shape = {static_cast<int64_t>(codes.bytes.size())};
  if (chosen.codes.wide()) {
    hc1::PackCodes(chosen.codes.u32(), M, w, z, absl::MakeSpan(codes.bytes), ex);
  } else {
    hc1::PackCodes(chosen.codes.u16(), M, w, z, absl::MakeSpan(codes.bytes), ex);
  }
  chosen.codes.Reset();
  EncodedPart side{"side", DType::kF32, {4}, std::vector<uint8_t>(16)};
  std::memcpy(side.bytes.data(), sv, 16);

  enc.params.Add("L", JsonValue::Number(o_.L))
      .Add("n", JsonValue::Int(chosen.n))
      .Add("K", JsonValue::Int(chosen.K))
      .Add("uint_i", JsonValue::Int(w))
      .Add("z", JsonValue::Int(z))
      .Add("num_inner_index", JsonValue::Int(static_cast<int64_t>(chosen_index)))
      .Add("mae", JsonValue::Number(chosen.mae))
      .Add("inner_pairs", JsonValue::Int(g.inner))
      .Add("outer_pairs", JsonValue::Int(g.outer));
  enc.parts.push_back(std::move(codes));
  enc.parts.push_back(std::move(side));
  return enc;
}

absl::StatusOr<std::unique_ptr<TensorDecoder>> Hc1Codec::PrepareDecoder(
    const TensorInfo& info, const JsonValue& params, absl::Span<const PartView> parts) const {
  HC_ASSIGN_OR_RETURN(Hc1DecodeTable t, PrepareHc1DecodeTable(info, params, parts));
  return std::unique_ptr<TensorDecoder>(
      new Hc1Decoder(std::move(t.table), t.codes, t.width, t.prefix_bits));
}

}  // namespace

absl::StatusOr<Hc1DecodeTable> PrepareHc1DecodeTable(const TensorInfo& info,
                                                     const JsonValue& params,
                                                     absl::Span<const PartView> parts) {
  auto get_int = [&](absl::string_view key, int64_t lo, int64_t hi) -> absl::StatusOr<int64_t> {
    const JsonValue* v = params.Find(key);
    const std::optional<int64_t> i = v ? v->as_int64() : std::nullopt;
    if (!i || *i < lo || *i > hi) {
      return absl::DataLossError(
          absl::StrCat("hc1: params need an integer ", key, " in [", lo, ", ", hi, "]"));
    }
    return *i;
  };
  const JsonValue* Lv = params.Find("L");
  if (Lv == nullptr || !Lv->is_number() || !(Lv->number() > 0) || !std::isfinite(Lv->number())) {
    return absl::DataLossError("hc1: params need a finite number L > 0");
  }
  const double L = Lv->number();
  HC_ASSIGN_OR_RETURN(const int64_t n, get_int("n", 1, kMaxN));
  HC_ASSIGN_OR_RETURN(const int64_t K, get_int("K", 0, kMaxClass));
  HC_ASSIGN_OR_RETURN(const int64_t w, get_int("uint_i", 1, 32));
  HC_ASSIGN_OR_RETURN(const int64_t z, get_int("z", 0, 7));
  if (info.numel < kMinNumel) {
    return absl::DataLossError("hc1: tensors under 10 elements are never encoded");
  }
  const uint64_t M = (info.numel + 1) / 2;
  const uint64_t entries = static_cast<uint64_t>(n + 1) * static_cast<uint64_t>(K + 1);
  if (w > BitLength(static_cast<uint32_t>(entries - 1))) {
    return absl::DataLossError(absl::StrCat("hc1: uint_i ", w, " exceeds the bits of the largest ",
                                            "index for n ", n, " and K ", K));
  }
  if (static_cast<uint64_t>(z) != (8 - (M * w) % 8) % 8) {
    return absl::DataLossError(
        absl::StrCat("hc1: z ", z, " does not pad ", M, " codes of ", w, " bits to whole bytes"));
  }
  const PartView* codes = FindPart(parts, "codes");
  const PartView* side = FindPart(parts, "side");
  if (codes == nullptr || side == nullptr || parts.size() != 2) {
    return absl::DataLossError("hc1: expected exactly the parts \"codes\" and \"side\"");
  }
  const uint64_t nbytes = PackedBytes(M, static_cast<int>(w), z);
  if (codes->dtype != DType::kU8 || codes->bytes.size() != nbytes) {
    return absl::DataLossError(absl::StrCat("hc1: \"codes\" must be U8 of ", nbytes, " bytes"));
  }
  if (side->dtype != DType::kF32 || side->bytes.size() != 16) {
    return absl::DataLossError("hc1: \"side\" must be F32 [4]");
  }
  const float cx = LoadF32(side->bytes.data()), cy = LoadF32(side->bytes.data() + 4);
  const float fx = LoadF32(side->bytes.data() + 8), fy = LoadF32(side->bytes.data() + 12);
  if (!std::isfinite(cx) || !std::isfinite(cy) || !std::isfinite(fx) || !std::isfinite(fy)) {
    return absl::DataLossError("hc1: \"side\" holds non-finite values");
  }

  // Table of every index: out = (CB[j] - c) / ((L/2) / (L/2 + k * each)) + c in float64, each =
  // (D' - L/2) / K with D' the float32 distance from c to p_far; K = 0 gives CB[j].
  const Codebook cb(Layout::Get(L, n), cx, cy);
  const double h = L / 2;
  const float ddx = cx - fx, ddy = cy - fy;
  const double Dp = std::sqrt(ddx * ddx + ddy * ddy);
  std::vector<float> table(2 * entries);
  for (int64_t k = 0; k <= K; ++k) {
    const double f = K == 0 ? 1.0 : h / (h + static_cast<double>(k) * ((Dp - h) / K));
    for (int64_t j = 0; j <= n; ++j) {
      const size_t I = static_cast<size_t>(j + (n + 1) * k);
      if (K == 0) {
        table[2 * I] = static_cast<float>(cb.x(j));
        table[2 * I + 1] = static_cast<float>(cb.y(j));
      } else {
        table[2 * I] = static_cast<float>((cb.x(j) - cb.cx()) / f + cb.cx());
        table[2 * I + 1] = static_cast<float>((cb.y(j) - cb.cy()) / f + cb.cy());
      }
    }
  }
  Hc1DecodeTable t;
  t.table = std::move(table);
  t.codes = codes->bytes;
  t.width = static_cast<int>(w);
  t.prefix_bits = static_cast<int>(z);
  return t;
}

absl::StatusOr<Hc1Options> Hc1Options::Preset(absl::string_view name) {
  Hc1Options o;
  o.preset = std::string(name);
  if (name == "llm") return o;
  if (name == "unet") {
    o.n = {225};
    o.fallback_mae = 0;
    return o;
  }
  if (name == "mobilenet") {
    o.L = 0.8;
    o.class_max = 4;
    o.fallback_mae = 0;
    return o;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("hc1: option preset must be one of llm, unet, mobilenet, got \"", name, "\""));
}

absl::Status Hc1Options::Validate() const {
  auto bad = [](absl::string_view key, absl::string_view rule, auto value) {
    return absl::InvalidArgumentError(
        absl::StrCat("hc1: option ", key, " must be ", rule, ", got ", value));
  };
  if (!(L > 0) || !std::isfinite(L)) return bad("L", "a finite number > 0", L);
  if (n.empty() || n.size() > kMaxNList) {
    return bad("n", "a list of 1 to 16 codebook sizes", absl::StrJoin(n, ","));
  }
  for (int64_t v : n) {
    if (v < 1 || v > kMaxN) return bad("n", "a list of integers in [1, 65536]", v);
  }
  if (class_max < 1 || class_max > kMaxClass) return bad("class_max", "in [1, 32]", class_max);
  if (!(loss_max >= 0) || !std::isfinite(loss_max)) {
    return bad("loss_max", "a finite number >= 0", loss_max);
  }
  if (!(loss_threshold >= 0) || !std::isfinite(loss_threshold)) {
    return bad("loss_threshold", "a finite number >= 0", loss_threshold);
  }
  if (!(fallback_mae >= 0) || !std::isfinite(fallback_mae)) {
    return bad("fallback_mae", "a finite number >= 0 (0 = off)", fallback_mae);
  }
  return absl::OkStatus();
}

absl::StatusOr<Hc1Options> Hc1Options::FromCodecOptions(const CodecOptions& options) {
  HC_RETURN_IF_ERROR(options.CheckKnown("hc1", kKeys));
  const auto annotate = [](const absl::Status& s) { return Annotate(s, "hc1"); };
  HC_ASSIGN_OR_RETURN(Hc1Options o, Preset(options.Get("preset").value_or("llm")));
  HC_ASSIGN_OR_RETURN(o.L, options.GetDouble("L", o.L), annotate(_));
  HC_ASSIGN_OR_RETURN(o.n, options.GetIntList("n", o.n), annotate(_));
  HC_ASSIGN_OR_RETURN(const int64_t class_max, options.GetInt("class_max", o.class_max),
                      annotate(_));
  if (class_max < 1 || class_max > kMaxClass) {
    return absl::InvalidArgumentError(
        absl::StrCat("hc1: option class_max must be in [1, 32], got ", class_max));
  }
  o.class_max = static_cast<int>(class_max);
  HC_ASSIGN_OR_RETURN(o.loss_max, options.GetDouble("loss_max", o.loss_max), annotate(_));
  HC_ASSIGN_OR_RETURN(o.loss_threshold, options.GetDouble("loss_threshold", o.loss_threshold),
                      annotate(_));
  HC_ASSIGN_OR_RETURN(o.fallback_mae, options.GetDouble("fallback_mae", o.fallback_mae),
                      annotate(_));
  HC_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<std::unique_ptr<Codec>> CreateHc1Codec(const CodecOptions& options) {
  HC_ASSIGN_OR_RETURN(Hc1Options o, Hc1Options::FromCodecOptions(options));
  return std::unique_ptr<Codec>(new Hc1Codec(std::move(o)));
}

CodecDescription DescribeHc1Codec() {
  return {"hc1",
          "Hyper-Compression as the paper's reference runs it: pairs mapped onto a sheared-grid "
          "codebook in an L x L square, radial rings for outliers",
          {{"preset", "llm (default), unet or mobilenet: the reference scripts' settings"},
           {"L", "side of the codebook square (llm/unet 0.1, mobilenet 0.8)"},
           {"n", "codebook sizes, comma list (llm/mobilenet 1600, unet 225)"},
           {"class_max", "most radial rings for outliers, 1..32 (llm/unet 3, mobilenet 4)"},
           {"loss_max", "mean error accepted when choosing among several n (default 0.001)"},
           {"loss_threshold", "ring search stops at this mean error (default 0.001)"},
           {"fallback_mae", "keep tensors raw above this mean error; 0 = off (llm 0.006)"}}};
}

}  // namespace hc
