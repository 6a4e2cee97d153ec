#include "core/codec/hc2.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "core/codec/hc2_entropy.h"
#include "core/codec/hc2_fixed.h"
#include "core/codec/hc2_quant.h"
#include "core/codec/hc2_rows.h"
#include "core/codec/hc2_tables.h"
#include "core/codec/hc2_transform.h"
#include "core/io/bit_pack.h"

namespace hc {
namespace {

using hc2::AddRowOffsets;
using hc2::ApplyRows;
using hc2::DcByte;
using hc2::DcUnit;
using hc2::DcUnits;
using hc2::kBlock;
using hc2::RowCount;
using hc2::RowMultiplier;
using hc2::RowMultiplierTable;
using hc2::ShortRowsPay;

constexpr absl::string_view kKeys[] = {"mode", "bpw", "bits", "relative", "tcq", "dc"};
// Blocks per entropy-coded chunk (65536 weights: the pipeline's decode unit).
constexpr int64_t kChunkBlocks = 512;
// log2 of the smallest step the encoder writes: FLT_MIN, so that 1 / step stays finite.
constexpr double kMinLog2Step = -126.0;
// The largest |q| the encoder produces (exact in float32).
constexpr float kInfF = std::numeric_limits<float>::infinity();

// Blocks of a tensor (hc2_transform.h), grouped into entropy-coded chunks.
struct BlockPlan : hc2::Blocks {
  using Blocks::Blocks;
  int64_t chunks() const { return (blocks + kChunkBlocks - 1) / kChunkBlocks; }
  // Weights of chunk c.
  int64_t chunk_elems(int64_t c) const {
    const int64_t b0 = c * kChunkBlocks, b1 = std::min(blocks, b0 + kChunkBlocks);
    return std::min(numel, b1 * kBlock) - b0 * kBlock;
  }
  // Revision 1: rANS states of the chunk, 4 when it holds >= 4096 weights.
  int states(int64_t c) const { return chunk_elems(c) >= 4096 ? 4 : 1; }
  // Revision 2: whether chunk c is a lane stream (else coded as in revision 1).
  bool lane_chunk(int64_t c) const { return chunk_elems(c) >= hc2::kMinLaneChunk; }
  // States at the start of chunk c's stream in revision 2.
  int stream_states(int64_t c) const { return lane_chunk(c) ? hc2::kLanes : states(c); }
};

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Entropy-coded mode.

// The ec stream revision this encoder writes (params "stream"; absent means 1).
constexpr int kEcStream = 2;

class EcDecoder final : public TensorDecoder {
 public:
  EcDecoder(BlockPlan plan, int revision, float step, bool tcq, absl::Span<const uint8_t> data,
            std::vector<uint64_t> ends, absl::Span<const uint8_t> rows, std::vector<float> dc,
            uint64_t row_len)
      : plan_(plan), revision_(revision), step_(step), tcq_(tcq), data_(data),
        ends_(std::move(ends)), rows_(rows), dc_(std::move(dc)), row_len_(row_len) {}

  void DecodeRange(uint64_t begin, absl::Span<float> out) const override {
    constexpr uint64_t kChunk = kChunkBlocks * kBlock;
    std::vector<float> tmp;
    uint64_t e = begin;
    const uint64_t end = begin + out.size();
    while (e < end) {
      const int64_t c = static_cast<int64_t>(e / kChunk);
      const uint64_t c0 = c * kChunk, c1 = std::min<uint64_t>(plan_.numel, c0 + kChunk);
      if (c1 <= e) break;  // past the tensor: callers never ask, but never loop
      float* dst;
      if (e == c0 && c1 <= end) {
        dst = out.data() + (e - begin);
      } else {
        tmp.resize(c1 - c0);
        dst = tmp.data();
      }
      DecodeChunk(c, dst);
      if (dst != out.data() + (e - begin)) {
        const uint64_t stop = std::min(end, c1);
        std::copy(tmp.begin() + (e - c0), tmp.begin() + (stop - c0), out.begin() + (e - begin));
      }
      e = std::min(end, c1);
    }
  }

 private:
  // Decodes chunk c into out[0..chunk_elems(c)), row multipliers and dc corrections applied.
  void DecodeChunk(int64_t c, float* out) const {
    const hc2::ClassTables& t = hc2::ClassTables::Get();
    const uint64_t s = c == 0 ? 0 : ends_[c - 1];
    const absl::Span<const uint8_t> stream = data_.subspan(s, ends_[c] - s);
    const int64_t b0 = c * kChunkBlocks, b1 = std::min(plan_.blocks, b0 + kChunkBlocks);
    // Each block gets its row multipliers and corrections in its inverse rotation
    // (UnrotateBlock).
    if (revision_ == 2 && plan_.lane_chunk(c)) {
      // Runs of up to kRun full blocks per decoder call, then their inverse rotations.
      constexpr int kRun = 8;
      alignas(64) float zs[kRun * kBlock];
      hc2::LaneDecoder d(stream);
      for (int64_t b = b0; b < b1;) {
        const int n = plan_.n(b);
        int run = 1;
        while (n == kBlock && run < kRun && b + run < b1 && plan_.n(b + run) == kBlock) ++run;
        d.DecodeBlocks(run, n, step_, tcq_, zs);
        for (int i = 0; i < run; ++i, ++b) {
          UnrotateBlock(b, n, zs + i * kBlock, out + (b - b0) * kBlock);
        }
      }
      return;
    }
    float z[kBlock];
    hc2::RansDecoder d(stream, plan_.states(c));
    for (int64_t b = b0; b < b1; ++b) {
      const int n = plan_.n(b);
      float* const o = out + (b - b0) * kBlock;
      hc2::DecodeBlockRev1(d, t, n, step_, tcq_, z);
      UnrotateBlock(b, n, z, o);
    }
  }

  // Block b's inverse rotation from z into o, its row's multiplier then its dc correction
  // applied: in the same pass where the block lies in one row (the same float32 operations as
  // Unrotate, then ApplyRows, then AddRowOffsets).
  void UnrotateBlock(int64_t b, int n, float* z, float* o) const {
    const int r = plan_.r(b);
    if (rows_.empty() && dc_.empty()) {
      hc2::Unrotate(z, r, n, o);
      return;
    }
    const uint64_t e = static_cast<uint64_t>(b) * kBlock, row = e / row_len_;
    if (e + static_cast<uint64_t>(r) <= (row + 1) * row_len_) {
      const float m = rows_.empty() ? 1.0f : RowMultiplierTable()[rows_[row]];
      if (dc_.empty()) {
        hc2::UnrotateScaled(z, r, n, m, o);
      } else {
        hc2::UnrotateScaledOffset(z, r, n, m, dc_[row], o);
      }
      return;
    }
    hc2::Unrotate(z, r, n, o);
    ApplyRows(rows_, row_len_, e, absl::MakeSpan(o, r));
    AddRowOffsets(dc_, row_len_, e, absl::MakeSpan(o, r));
  }

  BlockPlan plan_;
  int revision_;
  float step_;
  bool tcq_;
  absl::Span<const uint8_t> data_;
  std::vector<uint64_t> ends_;
  absl::Span<const uint8_t> rows_;
  std::vector<float> dc_;  // per row: DcUnits(dc[r]) * DcUnit (empty without a dc part)
  uint64_t row_len_;
};

// The tensor's values as float32, read a few at a time instead of from a tensor-sized copy:
// widened from the input's dtype and, with row multipliers, divided by them (x / m_r, the same
// float32 operations a whole-tensor pass would do, so the values are bit-identical).
class ValueSource {
 public:
  ValueSource(DType dtype, const uint8_t* data, absl::Span<const uint8_t> rows = {},
              int64_t row_len = 0)
      : dtype_(dtype), esize_(DTypeSize(dtype)), data_(data), rows_(rows), row_len_(row_len) {}
  // Elements [begin, begin + n): a pointer into the input (aligned F32 without rows) or into
  // `scratch` (room for n floats).
  const float* Get(int64_t begin, int64_t n, float* scratch) const {
    const uint8_t* p = data_ + begin * static_cast<int64_t>(esize_);
    if (dtype_ == DType::kF32 && rows_.empty() &&
        reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
      return reinterpret_cast<const float*>(p);
    }
    WidenToF32(dtype_, p, static_cast<size_t>(n), scratch);
    for (int64_t i = 0; i < n && !rows_.empty();) {
      const int64_t r = (begin + i) / row_len_;
      const int64_t end = std::min(n, (r + 1) * row_len_ - begin);
      const float m = RowMultiplier(rows_[r]);
      for (; i < end; ++i) scratch[i] = scratch[i] / m;
    }
    return scratch;
  }

 private:
  DType dtype_;
  size_t esize_;
  const uint8_t* data_;
  absl::Span<const uint8_t> rows_;
  int64_t row_len_;
};

class Hc2Codec final : public Codec {
 public:
  explicit Hc2Codec(Hc2Options o) : o_(std::move(o)) {}
  absl::string_view name() const override { return "hc2"; }

  JsonValue OptionsJson() const override {
    JsonValue j = JsonValue::Object();
    j.Add("mode", JsonValue::String(o_.mode))
        .Add("bpw", JsonValue::Number(o_.bpw))
        .Add("bits", JsonValue::Int(o_.bits))
        .Add("relative", JsonValue::Number(o_.relative))
        .Add("tcq", JsonValue::Bool(o_.tcq));
    // Listed only when on (ec), so that dc=false writes the metadata of earlier encoders.
    if (o_.dc && o_.mode == "ec") j.Add("dc", JsonValue::Bool(true));
    return j;
  }

  absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, absl::Span<const uint8_t> data,
                                       Executor& ex, const EncodeHooks& hooks) const override;
  uint64_t EncodeMemory(const TensorInfo& info) const override;
  bool ChecksNonFinite() const override { return true; }
  absl::StatusOr<std::unique_ptr<TensorDecoder>> PrepareDecoder(
      const TensorInfo& info, const JsonValue& params,
      absl::Span<const PartView> parts) const override;

 private:
  // `side_bits`: bits stored outside the stream (row multipliers, dc bytes), charged to the
  // budget.
  EncodedTensor EncodeEc(const ValueSource& x, const BlockPlan& plan, double side_bits,
                         Executor& ex) const;
  // The dc bytes (spec-hc2.md 5.6) of `enc` (ec, without a dc part yet) for the R rows of the
  // tensor whose values are `x`.
  absl::StatusOr<std::vector<uint8_t>> DcBytes(const TensorInfo& info, const EncodedTensor& enc,
                                               const ValueSource& x, int64_t R,
                                               absl::Span<const uint8_t> rows, Executor& ex) const;
  Hc2Options o_;
};

// The entropy-coded mode holds its stream about twice (per-chunk pieces, then one part), the
// rotated blocks of tensors up to 2^14 blocks and two arrays of quantised sample blocks; the
// fixed mode its output and, unless the input is aligned float32, a float32 copy.
uint64_t Hc2Codec::EncodeMemory(const TensorInfo& info) const {
  const uint64_t n = info.numel;
  if (o_.mode == "fixed") {
    const uint64_t copy = info.dtype == DType::kF32 ? 0 : 4 * n;
    return copy + 2 * (n * static_cast<uint64_t>(o_.bits) / 8 + n / 32);
  }
  const uint64_t blocks = std::min<uint64_t>((n + kBlock - 1) / kBlock, uint64_t{1} << 14);
  const double stream = std::max(o_.bpw, 1.0) / 8 * static_cast<double>(n);
  return static_cast<uint64_t>(2 * stream) + blocks * (4 * kBlock + 2 * sizeof(hc2::QuantBlock));
}

absl::StatusOr<EncodedTensor> Hc2Codec::Encode(const TensorInfo& info,
                                               absl::Span<const uint8_t> data, Executor& ex,
                                               const EncodeHooks& /*hooks*/) const {
  HC_RETURN_IF_ERROR(CheckEncodeInput("hc2", info, data));
  EncodedTensor enc;
  // The pipeline relies on this check (ChecksNonFinite): it comes first.
  if (HasNonFiniteValues(info.dtype, data, ex)) {
    enc.raw = true;
    enc.raw_reason = "non-finite values";
    return enc;
  }
  if (info.numel < kHc2MinNumel) {
    enc.raw = true;
    enc.raw_reason = absl::StrCat("numel<", kHc2MinNumel);
    return enc;
  }
  const BlockPlan plan(static_cast<int64_t>(info.numel));
  if (o_.mode == "fixed") {
    // The fixed-rate trellis reads the whole tensor as float32.
    std::vector<float> buf;
    const float* x;
    if (info.dtype == DType::kF32 &&
        reinterpret_cast<uintptr_t>(data.data()) % alignof(float) == 0) {
      x = reinterpret_cast<const float*>(data.data());
    } else {
      buf.resize(info.numel);
      const size_t es = DTypeSize(info.dtype);
      const int64_t pieces = (plan.numel + kChunkElems - 1) / kChunkElems;
      ex.ParallelFor(pieces, [&](int64_t p) {
        const int64_t b = p * kChunkElems, n = std::min<int64_t>(kChunkElems, plan.numel - b);
        WidenToF32(info.dtype, data.data() + b * es, n, buf.data() + b);
      });
      x = buf.data();
    }
    return hc2::EncodeFixedTensor(x, plan.numel, o_.bits, ex);
  }
  // The entropy-coded mode reads values block by block (ValueSource): no float32 copy of the
  // tensor is made.
  const ValueSource raw(info.dtype, data.data());
  // Relative precision per row: each row is divided by its multiplier m_r ~ rms_r^relative
  // (quarter powers of two), coded with one step, and multiplied back on decoding.
  int64_t R = o_.relative > 0 ? RowCount(info) : 0;
  std::vector<uint8_t> rows;
  if (R > 0) {
    const int64_t C = plan.numel / R;
    std::vector<double> lr(R, 0.0);
    std::vector<uint8_t> nz(R, 0);
    ex.ParallelFor(R, [&](int64_t r) {
      constexpr int64_t kPiece = 4096;
      std::unique_ptr<float[]> scratch(new float[std::min(C, kPiece)]);
      double s = 0;
      for (int64_t b = r * C; b < (r + 1) * C; b += kPiece) {
        const int64_t n = std::min(kPiece, (r + 1) * C - b);
        const float* x = raw.Get(b, n, scratch.get());
        for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
      }
      nz[r] = s > 0;
      lr[r] = s > 0 ? 0.5 * std::log2(s / C) : 0.0;
    });
    double sum = 0;
    int64_t cnt = 0;
    for (int64_t r = 0; r < R; ++r) {
      if (nz[r]) sum += lr[r], ++cnt;
    }
    const double ref = cnt > 0 ? sum / cnt : 0.0;
    rows.resize(R);
    for (int64_t r = 0; r < R; ++r) {
      const long k = nz[r] ? std::lround(4 * o_.relative * (lr[r] - ref)) : 0;
      rows[r] = static_cast<uint8_t>(std::clamp<long>(k, -32, 31) + 32);
    }
    if (!ShortRowsPay(rows, C)) {
      R = 0;
      rows.clear();
    }
  }
  // One dc byte per row (5.6), charged to the budget with the row multipliers.
  const int64_t R_dc = o_.dc ? RowCount(info) : 0;
  const ValueSource x(info.dtype, data.data(), rows, R > 0 ? plan.numel / R : 0);
  EncodedTensor out = EncodeEc(x, plan, 8.0 * static_cast<double>(R + R_dc), ex);
  if (out.raw) return out;
  if (R > 0) out.parts.push_back({"rows", DType::kU8, {R}, rows});
  if (R_dc > 0) {
    HC_ASSIGN_OR_RETURN(std::vector<uint8_t> dc, DcBytes(info, out, raw, R_dc, rows, ex));
    out.parts.push_back({"dc", DType::kI8, {R_dc}, std::move(dc)});
  }
  return out;
}

// Decodes the tensor chunk by chunk (in parallel) and sums each row's error x^ - x in double,
// per chunk; the chunks' sums are then added in chunk order, so the bytes are the same whatever
// the thread count. dc[r] is the byte whose units are nearest to -(mean error) / u_r.
absl::StatusOr<std::vector<uint8_t>> Hc2Codec::DcBytes(const TensorInfo& info,
                                                       const EncodedTensor& enc,
                                                       const ValueSource& x, int64_t R,
                                                       absl::Span<const uint8_t> rows,
                                                       Executor& ex) const {
  HC_ASSIGN_OR_RETURN(std::unique_ptr<TensorDecoder> dec,
                      PrepareDecoder(info, enc.params, PartViews(enc)));
  const BlockPlan plan(static_cast<int64_t>(info.numel));
  const int64_t L = plan.numel / R, nc = plan.chunks();
  constexpr int64_t kChunk = kChunkBlocks * kBlock, kPiece = 4096;
  std::vector<std::vector<double>> partial(nc);  // chunk c: rows e0 / L .. (e1 - 1) / L
  ex.ParallelFor(nc, [&](int64_t c) {
    const int64_t e0 = c * kChunk, e1 = std::min(plan.numel, e0 + kChunk), r0 = e0 / L;
    std::vector<float> y(e1 - e0);
    std::unique_ptr<float[]> scratch(new float[kPiece]);
    dec->DecodeRange(e0, absl::MakeSpan(y));
    std::vector<double>& sum = partial[c];
    sum.assign((e1 - 1) / L - r0 + 1, 0.0);
    for (int64_t p = e0; p < e1; p += kPiece) {
      const int64_t n = std::min(kPiece, e1 - p);
      const float* v = x.Get(p, n, scratch.get());
      for (int64_t i = 0; i < n; ++i) {
        sum[(p + i) / L - r0] += static_cast<double>(y[p - e0 + i]) - v[i];
      }
    }
  });
  std::vector<double> err(R, 0.0);
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t r0 = c * kChunk / L;
    for (size_t k = 0; k < partial[c].size(); ++k) err[r0 + k] += partial[c][k];
  }
  const float step = static_cast<float>(enc.params.Find("step")->number());
  std::vector<uint8_t> out(R);
  for (int64_t r = 0; r < R; ++r) {
    const float u = DcUnit(step, rows.empty() ? 1.0f : RowMultiplier(rows[r]), L);
    const double q = u > 0 ? -err[r] / static_cast<double>(L) / u : 0.0;
    out[r] = static_cast<uint8_t>(std::isfinite(q) ? DcByte(q) : 0);
  }
  return out;
}

// The step search: a first guess from the blocks' rms under the Gaussian model, then full
// encodes, each correcting log2(step) by the measured rate error, keeping the best encoding
// within the budget. Every encode is parallel over chunks and deterministic.
EncodedTensor Hc2Codec::EncodeEc(const ValueSource& x, const BlockPlan& plan, double side_bits,
                                Executor& ex) const {
  const int64_t nb = plan.blocks, nc = plan.chunks();
  std::vector<double> rms(nb), log2rms(nb);  // log2rms: where rms > 0 (the model's input)
  std::vector<float> maxabs(nc, 0.0f);
  // Tensors up to kKeepMaxBlocks blocks keep their rotated blocks for the step search
  // (Rotate is a pure function: the same values as rotating again).
  // (Buffers here are left uninitialised: every value read was written first.)
  constexpr int64_t kKeepMaxBlocks = int64_t{1} << 14;  // 8 MiB of rotated values
  std::unique_ptr<float[]> rotated(nb <= kKeepMaxBlocks ? new float[nb * kBlock] : nullptr);
  ex.ParallelFor(nc, [&](int64_t c) {
    float tmp[kBlock], in[kBlock];
    for (int64_t b = c * kChunkBlocks; b < std::min(nb, (c + 1) * kChunkBlocks); ++b) {
      const int n = plan.n(b);
      float* z = rotated ? rotated.get() + b * kBlock : tmp;
      hc2::Rotate(x.Get(b * kBlock, plan.r(b), in), plan.r(b), n, z);
      double s = 0;
      for (int i = 0; i < n; ++i) {
        s += static_cast<double>(z[i]) * z[i];
        // NaN (inf - inf in the butterflies) must not slip past std::max: count it as inf.
        const float a = std::abs(z[i]);
        maxabs[c] = a <= maxabs[c] ? maxabs[c] : (a == a ? a : kInfF);
      }
      rms[b] = std::sqrt(s / n);
      log2rms[b] = rms[b] > 0 ? std::log2(rms[b]) : 0.0;
    }
  });
  const float zmax = *std::max_element(maxabs.begin(), maxabs.end());
  // Decoding sums 128 coefficients again: keep them far from the float range, else raw.
  if (!std::isfinite(zmax) || zmax > 1e36f) {
    EncodedTensor enc;
    enc.raw = true;
    enc.raw_reason = "values too large for the rotation (float32 overflow)";
    return enc;
  }
  const double budget = o_.bpw * static_cast<double>(plan.numel) - side_bits;  // bits
  // The estimates below charge each chunk revision 1's state words (plan.states), not the lane
  // stream's: the search then settles on the steps revision 1 chose, i.e. the same quantisation
  // and SNR; the lane stream's 48 more bytes per chunk (0.006 bits per weight) come on top, and
  // the final encode still holds the stream to the budget.
  // (the estimate below counts each chunk's states and end offset; the coder adds a byte or two)
  // Fixed costs: class fields, chunk ends, states.
  double fixed_bits = 5.0 * nb + 32.0 * nc;
  for (int64_t c = 0; c < nc; ++c) fixed_bits += 32.0 * plan.states(c);
  auto model_bits = [&](double log2step) {
    double bits = fixed_bits;
    for (int64_t b = 0; b < nb; ++b) {
      if (rms[b] > 0) {
        bits += plan.n(b) * hc2::GaussianIndexBits(log2rms[b] - log2step - (o_.tcq ? 1 : 0));
      }
    }
    return bits;
  };
  const double min_log2 = zmax > 0 ? std::log2(zmax / hc2::kMaxQ) : 0.0;
  double lo = min_log2, hi = zmax > 0 ? std::log2(zmax) + 2 : 1.0;
  for (int it = 0; it < 50; ++it) {
    const double mid = 0.5 * (lo + hi);
    (model_bits(mid) > budget ? lo : hi) = mid;
  }

  const hc2::ClassTables& t = hc2::ClassTables::Get();
  constexpr float kMu = hc2::kDefaultMu;
  auto quantise = [&](const float* z, int n, float step, hc2::QuantBlock& qb) {
    if (o_.tcq) {
      hc2::QuantiseTcq(z, n, step, kMu, t, qb);
    } else {
      hc2::Quantise(z, n, step, t, qb);
    }
  };
  // Quantises the blocks listed in `blocks` (in order) and hands each result to `sink(b, qb)`,
  // in the same order. With tcq, groups of up to 8 blocks (any lengths) go through the 8-lane
  // trellis (bit-identical to the one-block one); a lone block takes the scalar path.
  auto quantise_blocks = [&](const std::vector<int64_t>& blocks, float step, auto&& sink) {
    std::vector<float> zs(rotated ? 0 : 8 * kBlock);
    float in[kBlock];
    // Block b rotated: kept, or rotated into lane l's scratch.
    auto rotate = [&](int64_t b, int l) -> const float* {
      if (rotated) return rotated.get() + b * kBlock;
      hc2::Rotate(x.Get(b * kBlock, plan.r(b), in), plan.r(b), plan.n(b), zs.data() + l * kBlock);
      return zs.data() + l * kBlock;
    };
    hc2::QuantBlock qbs[8];
    size_t k = 0;
    while (k < blocks.size()) {
      const int run = o_.tcq ? static_cast<int>(std::min<size_t>(8, blocks.size() - k)) : 1;
      if (run >= 2) {
        const float* zp[8];
        int ns[8];
        for (int l = 0; l < run; ++l) {
          const int64_t b = blocks[k + l];
          ns[l] = plan.n(b);
          zp[l] = rotate(b, l);
        }
        hc2::QuantiseTcqLanes(zp, ns, run, step, kMu, t, qbs);
        for (int l = 0; l < run; ++l) sink(blocks[k + l], qbs[l]);
        k += run;
        continue;
      }
      const int64_t b = blocks[k++];
      quantise(rotate(b, 0), plan.n(b), step, qbs[0]);
      sink(b, qbs[0]);
    }
  };
  // Bits of the whole tensor at `step` from the code lengths (no coding): within a few bytes
  // per chunk of what rANS writes.
  std::vector<double> cbits(nc);
  // Larger tensors estimate on every stride-th block (a fixed sample: deterministic), scaled
  // up; the final encode then checks the real size.
  const int64_t stride = nb >= 2048 ? 8 : nb >= 512 ? 4 : nb >= 128 ? 2 : 1;
  // The sample of each chunk (a pseudo-random 1/stride of its blocks: a regular stride would
  // keep hitting the same column of every row), in block order; sample_at[c]: its first index
  // in the flat list of all chunks' samples.
  std::vector<std::vector<int64_t>> sample(nc);
  std::vector<int64_t> sample_at(nc + 1, 0);
  for (int64_t c = 0; c < nc; ++c) {
    for (int64_t b = c * kChunkBlocks; b < std::min(nb, (c + 1) * kChunkBlocks); ++b) {
      if (stride > 1 && (static_cast<uint32_t>(b) * 2654435761u >> 24) % stride != 0) continue;
      sample[c].push_back(b);
    }
    sample_at[c + 1] = sample_at[c] + static_cast<int64_t>(sample[c].size());
  }
  // Quantised sample blocks, kept (up to kKeepMaxBlocks, about 10 MiB each) so that the
  // final encode at the best estimate's step reuses them: a block's quantisation depends only
  // on it and the step. `cur` is filled by each estimate, `kept` holds the best one's (its
  // step in kept_step).
  const bool keep = sample_at[nc] <= kKeepMaxBlocks;
  std::unique_ptr<hc2::QuantBlock[]> cur(keep ? new hc2::QuantBlock[sample_at[nc]] : nullptr);
  std::unique_ptr<hc2::QuantBlock[]> kept(keep ? new hc2::QuantBlock[sample_at[nc]] : nullptr);
  float kept_step = 0;
  bool have_kept = false;
  auto estimate = [&](float step) {
    ex.ParallelFor(nc, [&](int64_t c) {
      double bits = 0;
      int64_t sampled = 0;
      const int64_t b0 = c * kChunkBlocks, b1 = std::min(nb, (c + 1) * kChunkBlocks);
      hc2::QuantBlock* out = keep ? cur.get() + sample_at[c] : nullptr;
      quantise_blocks(sample[c], step, [&](int64_t b, const hc2::QuantBlock& qb) {
        bits += qb.bits;
        sampled += plan.n(b);
        if (out != nullptr) *out++ = qb;
      });
      int64_t all = 0;
      for (int64_t b = b0; b < b1; ++b) all += plan.n(b);
      cbits[c] = 32.0 * plan.states(c) + 32.0 +
                 (sampled > 0 ? bits * static_cast<double>(all) / sampled : 0.0);
    });
    double total = 0;
    for (double v : cbits) total += v;
    return total;
  };
  auto encode = [&](float step, std::vector<std::vector<uint8_t>>& chunks) {
    chunks.assign(nc, {});
    const bool reuse = have_kept && kept_step == step;
    ex.ParallelFor(nc, [&](int64_t c) {
      const int64_t b0 = c * kChunkBlocks, b1 = std::min(nb, (c + 1) * kChunkBlocks);
      // The blocks not kept from the estimate are quantised first, then every block's ops
      // are appended in block order.
      const std::vector<int64_t>& done = sample[c];
      std::vector<int64_t> todo;
      todo.reserve(b1 - b0);
      size_t j = 0;
      for (int64_t b = b0; b < b1; ++b) {
        if (reuse && j < done.size() && done[j] == b) {
          ++j;
        } else {
          todo.push_back(b);
        }
      }
      std::unique_ptr<hc2::QuantBlock[]> fresh(new hc2::QuantBlock[todo.size()]);
      size_t f = 0;
      quantise_blocks(todo, step, [&](int64_t, const hc2::QuantBlock& qb) { fresh[f++] = qb; });
      std::vector<hc2::CodedBlock> coded;
      coded.reserve(b1 - b0);
      const hc2::QuantBlock* old = reuse ? kept.get() + sample_at[c] : nullptr;
      j = 0, f = 0;
      for (int64_t b = b0; b < b1; ++b) {
        const hc2::QuantBlock& qb =
            reuse && j < done.size() && done[j] == b ? old[j++] : fresh[f++];
        coded.push_back({qb.q, plan.n(b), qb.cls});
      }
      if (plan.lane_chunk(c)) {
        hc2::LaneEncodeBlocks(coded, chunks[c]);
      } else {
        hc2::RansEncodeBlocks(coded, plan.states(c), chunks[c]);
      }
    });
    uint64_t bits = 0;
    for (const auto& ch : chunks) bits += 8 * (ch.size() + 4);
    return bits;
  };
  // Float steps only: the decoder multiplies by the float32 step. Never below the smallest
  // normal float (2^-126): a tensor of subnormal values would otherwise get a step whose
  // reciprocal, which the quantisers multiply by, is infinite (0 * inf = NaN, then NaN as an
  // index: a crash), or a step of 0, which no decoder accepts.
  auto to_step = [&](double log2s) {
    return static_cast<float>(std::exp2(std::max({log2s, min_log2 + 1e-6, kMinLog2Step})));
  };
  // The step search on estimates: secant steps on log2(step) until a bracket is found, then
  // regula falsi inside it, keeping the finest step that fits (with a margin for the coder's
  // few bytes of overhead per chunk). Small tensors accept a looser fit.
  const double target = budget - 16.0 * nc - (stride > 1 ? 0.002 * budget : 0.0);
  const double tol = plan.numel >= 65536 ? 0.004 : plan.numel >= 4096 ? 0.01 : 0.03;
  double log2s = hi + 0.06, best_log2 = 0;  // the model is a little optimistic
  bool have = false;
  double best_bits = -1;
  double fit_x = 0, fit_e = 0, over_x = 0, over_e = 0;
  bool has_fit = false, has_over = false;
  for (int it = 0; it < 12; ++it) {
    const float est_step = to_step(log2s);
    const double bits = estimate(est_step);
    const double err = (bits - target) / plan.numel;  // bits per weight
    if (bits <= target) {
      if (bits > best_bits) {
        best_bits = bits;
        best_log2 = log2s;
        have = true;
        if (keep) {
          cur.swap(kept);
          kept_step = est_step;
          have_kept = true;
        }
      }
      if (err > -tol) break;
      fit_x = log2s, fit_e = err, has_fit = true;
    } else {
      over_x = log2s, over_e = err, has_over = true;
    }
    const double goal = -tol / 2;
    if (has_fit && has_over) {
      double x = over_x + (goal - over_e) * (fit_x - over_x) / (fit_e - over_e);
      const double w = fit_x - over_x;  // > 0: a larger step fits
      x = std::clamp(x, over_x + 0.1 * w, fit_x - 0.1 * w);
      log2s = x;
    } else {
      log2s += err - goal + (bits > target ? 0.002 : 0.0);  // about 1 bit per halving
    }
  }
  if (!have) best_log2 = std::log2(std::max(zmax, 1e-30f)) + 2;  // the coarsest step
  std::vector<std::vector<uint8_t>> chunks;
  float step = to_step(best_log2);
  uint64_t bits = encode(step, chunks);
  for (int it = 0; it < 24 && static_cast<double>(bits) > budget; ++it) {
    // The estimate was short (rare): about a bit per weight per doubling of the step, then
    // faster and faster.
    const double over = (static_cast<double>(bits) - budget) / plan.numel;
    step = to_step(std::log2(step) + 1.1 * over + 0.002 * (1 << std::min(it, 10)));
    bits = encode(step, chunks);
  }
  if (static_cast<double>(bits) > budget) {
    EncodedTensor enc;
    enc.raw = true;
    enc.raw_reason = absl::StrCat("cannot meet ", o_.bpw, " bits per weight");
    return enc;
  }
  struct {
    float step;
    uint64_t bits;
    std::vector<std::vector<uint8_t>>& chunks;
  } best{step, bits, chunks};

  EncodedTensor enc;
  if (best.bits / 8 > std::numeric_limits<uint32_t>::max()) {
    enc.raw = true;  // chunk ends are 32-bit offsets
    enc.raw_reason = "stream over 4 GiB";
    return enc;
  }
  EncodedPart dpart{"stream", DType::kU8, {}, {}};
  EncodedPart ipart{"index", DType::kU32, {nc}, std::vector<uint8_t>(4 * nc)};
  uint64_t total = 0;
  for (int64_t c = 0; c < nc; ++c) {
    total += best.chunks[c].size();
    const uint32_t e = static_cast<uint32_t>(total);
    std::memcpy(ipart.bytes.data() + 4 * c, &e, 4);
  }
  dpart.bytes.reserve(total);
  for (auto& ch : best.chunks) {  // each chunk freed once copied: the stream is held once
    dpart.bytes.insert(dpart.bytes.end(), ch.begin(), ch.end());
    std::vector<uint8_t>().swap(ch);
  }
  dpart.shape = {static_cast<int64_t>(dpart.bytes.size())};
  enc.params.Add("mode", JsonValue::String("ec"))
      .Add("stream", JsonValue::Int(kEcStream))
      .Add("step", JsonValue::Number(best.step))
      .Add("tcq", JsonValue::Bool(o_.tcq))
      .Add("target_bpw", JsonValue::Number(o_.bpw));
  enc.parts.push_back(std::move(dpart));
  enc.parts.push_back(std::move(ipart));
  return enc;
}

absl::StatusOr<std::unique_ptr<TensorDecoder>> Hc2Codec::PrepareDecoder(
    const TensorInfo& info, const JsonValue& params, absl::Span<const PartView> parts) const {
  if (info.numel < kHc2MinNumel) {
    return absl::DataLossError(absl::StrCat("hc2: tensors under ", kHc2MinNumel,
                                            " elements are never encoded"));
  }
  const BlockPlan plan(static_cast<int64_t>(info.numel));
  const JsonValue* mode = params.Find("mode");
  if (mode == nullptr || !mode->is_string() ||
      (mode->string_value() != "ec" && mode->string_value() != "fixed")) {
    return absl::DataLossError("hc2: params need a mode \"ec\" or \"fixed\"");
  }
  if (mode->string_value() == "fixed") {
    return hc2::PrepareFixedDecoder(static_cast<int64_t>(info.numel), params, parts);
  }
  const int64_t R = RowCount(info);
  const PartView* rows = FindPart(parts, "rows");
  if (rows != nullptr && (R == 0 || rows->dtype != DType::kU8 ||
                          rows->bytes.size() != static_cast<uint64_t>(R))) {
    return absl::DataLossError(absl::StrCat("hc2: \"rows\" must be U8 [", R, "]"));
  }
  for (size_t i = 0; rows != nullptr && i < rows->bytes.size(); ++i) {
    if (rows->bytes[i] > 63) return absl::DataLossError("hc2: row multipliers must be <= 63");
  }
  const PartView* dcp = FindPart(parts, "dc");
  if (dcp != nullptr && R == 0) {
    return absl::DataLossError(
        "hc2: \"dc\" on a tensor without rows (rank >= 2, shape[0] >= 2, rows of >= 8 elements)");
  }
  if (dcp != nullptr &&
      (dcp->dtype != DType::kI8 || dcp->bytes.size() != static_cast<uint64_t>(R))) {
    return absl::DataLossError(absl::StrCat("hc2: \"dc\" must be I8 [", R, "]"));
  }
  for (size_t i = 0; dcp != nullptr && i < dcp->bytes.size(); ++i) {
    if (dcp->bytes[i] == 0x80) return absl::DataLossError("hc2: dc corrections must be >= -127");
  }
  if (parts.size() != 2u + (rows != nullptr) + (dcp != nullptr)) {
    return absl::DataLossError(
        "hc2: expected two parts, data and index (and rows, dc for a tensor of rows)");
  }
  const JsonValue* sv = params.Find("step");
  if (sv == nullptr || !sv->is_number()) return absl::DataLossError("hc2: params need a step");
  const float step = static_cast<float>(sv->number());
  if (!(step > 0) || !std::isfinite(step) || static_cast<double>(step) != sv->number()) {
    return absl::DataLossError("hc2: step must be a finite positive float32");
  }
  // Revision 1 streams (no "stream" key) are in part "data", revision 2 ones in part "stream"
  // (which decoders of revision 1 reject as a missing "data").
  const JsonValue* rv = params.Find("stream");
  int revision = 1;
  if (rv != nullptr) {
    if (!rv->is_number() || rv->number() != kEcStream) {
      return absl::DataLossError(absl::StrCat(
          "hc2: unknown ec stream revision (this decoder reads 1 and ", kEcStream, ")"));
    }
    revision = kEcStream;
  }
  const char* data_name = revision == 1 ? "data" : "stream";
  const PartView* data = FindPart(parts, data_name);
  const PartView* index = FindPart(parts, "index");
  const int64_t nc = plan.chunks();
  if (data == nullptr || data->dtype != DType::kU8) {
    return absl::DataLossError(absl::StrCat("hc2: missing U8 part \"", data_name, "\""));
  }
  if (index == nullptr || index->dtype != DType::kU32 ||
      index->bytes.size() != 4 * static_cast<uint64_t>(nc)) {
    return absl::DataLossError(absl::StrCat("hc2: \"index\" must be U32 [", nc, "]"));
  }
  std::vector<uint64_t> ends(nc);
  uint64_t prev = 0;
  for (int64_t c = 0; c < nc; ++c) {
    ends[c] = LoadU32(index->bytes.data() + 4 * c);
    const int states = revision == 1 ? plan.states(c) : plan.stream_states(c);
    if (ends[c] < prev + 4 * static_cast<uint64_t>(states)) {
      return absl::DataLossError(absl::StrCat("hc2: chunk ", c, " is shorter than its states"));
    }
    prev = ends[c];
  }
  if (prev != data->bytes.size()) {
    return absl::DataLossError("hc2: \"index\" does not end at the size of \"data\"");
  }
  const JsonValue* tv = params.Find("tcq");
  if (tv == nullptr || !tv->is_bool()) return absl::DataLossError("hc2: params need a bool tcq");
  const uint64_t row_len = R > 0 ? plan.numel / R : 1;
  std::vector<float> dc;
  if (dcp != nullptr) {
    dc.resize(R);
    for (int64_t r = 0; r < R; ++r) {
      const float m = rows != nullptr ? RowMultiplierTable()[rows->bytes[r]] : 1.0f;
      dc[r] = static_cast<float>(DcUnits(static_cast<int8_t>(dcp->bytes[r]))) *
              DcUnit(step, m, row_len);
    }
  }
  return std::unique_ptr<TensorDecoder>(
      new EcDecoder(plan, revision, step, tv->bool_value(), data->bytes, std::move(ends),
                    rows != nullptr ? rows->bytes : absl::Span<const uint8_t>(), std::move(dc),
                    row_len));
}

}  // namespace

absl::Status Hc2Options::Validate() const {
  if (mode != "ec" && mode != "fixed") {
    return absl::InvalidArgumentError(
        absl::StrCat("hc2: mode must be \"ec\" or \"fixed\", got \"", mode, "\""));
  }
  if (!(bpw >= 0.25 && bpw <= 32)) {
    return absl::InvalidArgumentError(absl::StrCat("hc2: bpw must be in [0.25, 32], got ", bpw));
  }
  if (bits < 2 || bits > 4) {
    return absl::InvalidArgumentError(absl::StrCat("hc2: bits must be in [2, 4], got ", bits));
  }
  if (!(relative >= 0 && relative <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("hc2: relative must be in [0, 1], got ", relative));
  }
  return absl::OkStatus();
}

absl::StatusOr<Hc2Options> Hc2Options::FromCodecOptions(const CodecOptions& options) {
  HC_RETURN_IF_ERROR(options.CheckKnown("hc2", kKeys));
  Hc2Options o;
  if (auto m = options.Get("mode")) o.mode = *m;
  HC_ASSIGN_OR_RETURN(o.bpw, options.GetDouble("bpw", o.bpw));
  HC_ASSIGN_OR_RETURN(o.relative, options.GetDouble("relative", o.relative));
  HC_ASSIGN_OR_RETURN(o.tcq, options.GetBool("tcq", o.tcq));
  HC_ASSIGN_OR_RETURN(o.dc, options.GetBool("dc", o.dc));
  HC_ASSIGN_OR_RETURN(const int64_t bits, options.GetInt("bits", o.bits));
  if (bits < 2 || bits > 4) {
    return absl::InvalidArgumentError(absl::StrCat("hc2: bits must be in [2, 4], got ", bits));
  }
  o.bits = static_cast<int>(bits);
  HC_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<std::unique_ptr<Codec>> CreateHc2Codec(const CodecOptions& options) {
  HC_ASSIGN_OR_RETURN(Hc2Options o, Hc2Options::FromCodecOptions(options));
  return std::unique_ptr<Codec>(new Hc2Codec(std::move(o)));
}

CodecDescription DescribeHc2Codec() {
  return {"hc2",
          "rotated blocks of 128 on a lattice (entropy-coded) or a bitshift trellis (fixed rate)",
          {{"mode", "ec (entropy-coded, default) or fixed (fixed rate, for inference kernels)"},
           {"bpw", "ec: most bits per weight, stored bytes counted, 0.25..32 (default 4.25)"},
           {"bits", "fixed: code bits per weight 2..4, plus 0.125 for scales (default 4)"},
           {"tcq", "ec: trellis-coded (4-state dependent) quantisation, true/false (default true)"},
           {"relative", "ec: rows' precision follows rms^relative, 0..1 (default 1)"},
           {"dc", "ec: a byte per row cancelling its mean error, true/false (default false)"}}};
}

}  // namespace hc
