#include "core/infer/linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/simd.h"
#include "core/base/status_macros.h"
#include "core/codec/hc1.h"
#include "core/codec/hc2_fixed.h"
#include "core/codec/hc2_transform.h"
#include "core/infer/linear_kernels.h"

namespace hc {
namespace {

using infer::Hc1Args;
using infer::Hc2Args;
using infer::RtnArgs;

// Rows per parallel unit: fixed, so the split never depends on the thread count.
constexpr int64_t kTileRows = 16;
// Largest batch for which hc2 uses its pair-table kernel (LinearOptions::hc2_pair_table).
constexpr int kPairTableMaxBatch = 2;

bool UseSimd() { return LinearHasAvx512() && SimdAllowed(); }

// Calls f(integral_constant<int, NB>, b0) for batch chunks [b0, b0 + NB) covering [0, batch),
// NB in {16, 8, 4, 2, 1} up to `max_width`: every batch size runs through kernels compiled for a
// fixed width. (The integer kernels keep three accumulators per batch row: at width 16 they
// would spill, so they take chunks of at most 8.)
template <typename F>
void ForBatchChunks(int batch, F&& f, int max_width = 16) {
  int b0 = 0;
  while (b0 < batch) {
    const int left = batch - b0;
    if (left >= 16 && max_width >= 16) {
      f(std::integral_constant<int, 16>(), b0), b0 += 16;
    } else if (left >= 8) {
      f(std::integral_constant<int, 8>(), b0), b0 += 8;
    } else if (left >= 4) {
      f(std::integral_constant<int, 4>(), b0), b0 += 4;
    } else if (left >= 2) {
      f(std::integral_constant<int, 2>(), b0), b0 += 2;
    } else {
      f(std::integral_constant<int, 1>(), b0), b0 += 1;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dense F16 / F32.

class DenseLinear final : public Linear {
 public:
  DenseLinear(DType dtype, int64_t rows, int64_t cols, const uint8_t* data)
      : Linear(rows, cols), dtype_(dtype), data_(data) {}
  std::string kind() const override { return dtype_ == DType::kF16 ? "f16" : "f32"; }
  uint64_t weight_bytes() const override {
    return static_cast<uint64_t>(rows() * cols()) * DTypeSize(dtype_);
  }

 protected:
  int64_t ColumnUnit() const override { return 16; }
  void Rows(const float* x, int64_t ldx, const Scratch&, int batch, int64_t r0,
            int64_t r1, int64_t c0, int64_t c1, bool add, float* y, int64_t ldy) const override {
    const bool simd = UseSimd();
    const bool f16 = dtype_ == DType::kF16;
    ForBatchChunks(batch, [&](auto nb, int b0) {
      infer::DenseArgs a{.w = data_,
                         .cols = cols(),
                         .f16 = f16,
                         .x = x + b0 * ldx,
                         .ldx = ldx,
                         .r0 = r0,
                         .r1 = r1,
                         .c0 = c0,
                         .c1 = c1,
                         .add = add,
                         .y = y + b0 * ldy,
                         .ldy = ldy};
      if (simd) {
        infer::DenseAvx512(a, decltype(nb)::value);
      } else {
        infer::DenseScalar(a, decltype(nb)::value);
      }
    });
  }

 private:
  DType dtype_;
  const uint8_t* data_;
};

// ---------------------------------------------------------------------------------------------
// hc2 fixed mode. Block j of row r is W[r][128j, 128j + 128) = Sign . H (s C[w]) / 128, H the
// symmetric Walsh-Hadamard matrix, so its dot product with x is s <C[w], H (Sign . x) / 128> =
// s <C[w], Rotate(x) / 128>: X is rotated once per call (scratch) and every weight then costs
// one codebook lookup and one multiply-add per batch row.

class Hc2FixedLinear final : public Linear {
 public:
  Hc2FixedLinear(int64_t rows, int64_t cols, const hc2::FixedRecord& rec,
                 const LinearOptions& options)
      : Linear(rows, cols),
        bits_(rec.bits),
        cb_(hc2::TrellisCodebook(rec.bits, rec.codebook)),
        codes_(rec.symbols),
        scales_(rec.scales) {
    if (options.hc2_integer && rec.bits == 4 && rec.codebook == hc2::kCodebookStructured &&
        infer::Hc2IntAvailable()) {
      integer_ = true;
      st_ = hc2::TrellisStructure(rec.bits);
    } else if (options.hc2_pair_table && LinearHasAvx512()) {
      pairs_ = infer::Hc2PairTable(rec.bits, rec.codebook);
    }
  }
  std::string kind() const override {
    return absl::StrCat("hc2-fixed-", bits_, integer_ ? "-int" : pairs_ ? "-pairs" : "-gather");
  }
  uint64_t weight_bytes() const override { return codes_.size() + scales_.size(); }

 protected:
  int64_t ColumnUnit() const override { return hc2::kBlock; }
  // The rotated X / 128 in scratch.f [batch, cols]. On the integer path also each block of it
  // by QuantizeX16, block-major ([cols / 128, batch]): its bytes (scratch.q, 256 per block),
  // the per-lane corrections -128 * sum(q) (scratch.c, 16 per block, see Hc2Args) and the
  // scale after the rotated X in scratch.f.
  const float* Prepare(const float* x, int64_t ldx, int batch, Scratch& scratch,
                       int64_t& ld) const override {
    const int64_t c = cols(), nblk = c / hc2::kBlock;
    scratch.f.resize(static_cast<size_t>(batch * (c + (integer_ ? nblk : 0))));
    if (integer_) {
      scratch.q.resize(static_cast<size_t>(batch * c * 2));
      scratch.c.resize(static_cast<size_t>(batch * nblk * 16));
    }
    for (int b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < c; j += hc2::kBlock) {
        float* v = scratch.f.data() + b * c + j;
        hc2::Rotate(x + b * ldx + j, hc2::kBlock, hc2::kBlock, v);
        for (int i = 0; i < hc2::kBlock; ++i) v[i] *= 1.0f / hc2::kBlock;
        if (!integer_) continue;
        const int64_t blk = j / hc2::kBlock;
        int32_t* corr = scratch.c.data() + (blk * batch + b) * 16;
        scratch.f[batch * c + blk * batch + b] = infer::QuantizeX16(
            v, hc2::kBlock, false, scratch.q.data() + (blk * batch + b) * 2 * hc2::kBlock, corr);
        for (int l = 0; l < 16; ++l) corr[l] *= -128;
      }
    }
    ld = c;
    return scratch.f.data();
  }
  void Rows(const float* xr, int64_t ldx, const Scratch& scratch, int batch, int64_t r0,
            int64_t r1, int64_t c0, int64_t c1, bool add, float* y, int64_t ldy) const override {
    const bool simd = UseSimd();
    const int64_t c = cols();
    ForBatchChunks(batch, [&](auto nb, int b0) {
      Hc2Args a{.codes = codes_.data(),
                .codes_size = codes_.size(),
                .scales = scales_.data(),
                .cb = cb_,
                .pairs = batch <= kPairTableMaxBatch ? pairs_ : nullptr,
                .bits = bits_,
                .cols = c,
                .xr = xr + b0 * ldx,
                .ldx = ldx,
                .r0 = r0,
                .r1 = r1,
                .c0 = c0,
                .c1 = c1,
                .add = add,
                .y = y + b0 * ldy,
                .ldy = ldy};
      if (integer_) {
        a.xb = scratch.q.data() + b0 * 2 * hc2::kBlock;
        a.xb_block = batch * 2 * hc2::kBlock;
        a.xc = scratch.c.data() + b0 * 16;
        a.xc_block = batch * 16;
        a.xs = scratch.f.data() + batch * c + b0;
        a.xs_block = batch;
        a.g = st_.g;
        a.d = st_.d;
        if (simd) {
          infer::Hc2IntAvx512(a, decltype(nb)::value);
        } else {
          infer::Hc2IntScalar(a, decltype(nb)::value);
        }
      } else if (simd) {
        infer::Hc2Avx512(a, decltype(nb)::value);
      } else {
        infer::Hc2Scalar(a, decltype(nb)::value);
      }
    }, integer_ ? 8 : 16);
  }

 private:
  int bits_;
  const float* cb_;
  absl::Span<const uint8_t> codes_, scales_;
  const float* pairs_ = nullptr;
  bool integer_ = false;
  hc2::StructuredCodebook st_{};
};

// ---------------------------------------------------------------------------------------------
// rtn: W[r][c] = q s_g + m_g, so a group's dot product is s_g sum(q x) + m_g sum(x); the sums of
// X per group are made once per call (scratch).

class RtnLinear final : public Linear {
 public:
  RtnLinear(int64_t rows, int64_t cols, int bits, int64_t group, absl::Span<const uint8_t> codes,
            absl::Span<const uint8_t> scales, const LinearOptions& options)
      : Linear(rows, cols),
        bits_(bits),
        group_(group),
        codes_(codes),
        scales_(scales),
        integer_(options.rtn_integer && bits == 4 && group % 64 == 0 &&
                 infer::Hc2IntAvailable()) {}
  std::string kind() const override {
    return absl::StrCat("rtn-", bits_, "-g", group_, integer_ ? "-int" : "");
  }
  uint64_t weight_bytes() const override { return codes_.size() + scales_.size(); }

 protected:
  int64_t ColumnUnit() const override { return group_; }
  const float* Prepare(const float* x, int64_t ldx, int batch, Scratch& scratch,
                       int64_t& ld) const override {
    // The sums of X per group in scratch.f [batch, groups]; on the integer path then each group
    // by QuantizeX16 (even_odd), group-major: its scale after the sums in scratch.f [groups,
    // batch], its bytes in scratch.q [groups, batch, 2 * group], the sum of its rounded values
    // in scratch.c [groups, batch].
    const int64_t g = cols() / group_;
    scratch.f.resize(static_cast<size_t>(batch * g * (integer_ ? 2 : 1)));
    if (integer_) {
      scratch.q.resize(static_cast<size_t>(batch * cols() * 2));
      scratch.c.resize(static_cast<size_t>(batch * g));
    }
    for (int b = 0; b < batch; ++b) {
      for (int64_t j = 0; j < g; ++j) {
        const float* v = x + b * ldx + j * group_;
        float s = 0;
        for (int64_t i = 0; i < group_; ++i) s += v[i];
        scratch.f[b * g + j] = s;
        if (integer_) {
          int32_t lanes[16];
          scratch.f[batch * g + j * batch + b] = infer::QuantizeX16(
              v, static_cast<int>(group_), true,
              scratch.q.data() + (j * batch + b) * 2 * group_, lanes);
          int32_t sum = 0;
          for (int32_t l : lanes) sum += l;
          scratch.c[j * batch + b] = sum;
        }
      }
    }
    return x;
  }
  void Rows(const float* x, int64_t ldx, const Scratch& scratch, int batch, int64_t r0,
            int64_t r1, int64_t c0, int64_t c1, bool add, float* y, int64_t ldy) const override {
    const bool simd = UseSimd();
    const int64_t g = cols() / group_;
    ForBatchChunks(batch, [&](auto nb, int b0) {
      RtnArgs a{.codes = codes_.data(),
                .codes_size = codes_.size(),
                .scales = scales_.data(),
                .bits = bits_,
                .group = group_,
                .cols = cols(),
                .x = x + b0 * ldx,
                .ldx = ldx,
                .xsum = scratch.f.data() + b0 * g,
                .r0 = r0,
                .r1 = r1,
                .c0 = c0,
                .c1 = c1,
                .add = add,
                .y = y + b0 * ldy,
                .ldy = ldy};
      if (integer_) {
        a.xb = scratch.q.data() + b0 * 2 * group_;
        a.xb_block = batch * 2 * group_;
        a.xc = scratch.c.data() + b0;
        a.xc_block = batch;
        a.xs = scratch.f.data() + batch * g + b0;
        a.xs_block = batch;
        if (simd) {
          infer::RtnIntAvx512(a, decltype(nb)::value);
        } else {
          infer::RtnIntScalar(a, decltype(nb)::value);
        }
      } else if (simd) {
        infer::RtnAvx512(a, decltype(nb)::value);
      } else {
        infer::RtnScalar(a, decltype(nb)::value);
      }
    }, integer_ ? 8 : 16);
  }

 private:
  int bits_;
  int64_t group_;
  absl::Span<const uint8_t> codes_, scales_;
  bool integer_;
};

// ---------------------------------------------------------------------------------------------
// hc1: pair j of row r is elements (2j, 2j + 1); its index selects two floats of the table.

class Hc1Linear final : public Linear {
 public:
  Hc1Linear(int64_t rows, int64_t cols, Hc1DecodeTable t) : Linear(rows, cols), t_(std::move(t)) {
    // One NaN pair after the last entry: kernels clamp bad indices to it (as the decoder does).
    entries_ = t_.table.size() / 2;
    t_.table.push_back(std::numeric_limits<float>::quiet_NaN());
    t_.table.push_back(std::numeric_limits<float>::quiet_NaN());
  }
  std::string kind() const override { return "hc1"; }
  uint64_t weight_bytes() const override {
    return t_.codes.size() + t_.table.size() * sizeof(float);
  }

 protected:
  int64_t ColumnUnit() const override { return 2; }
  void Rows(const float* x, int64_t ldx, const Scratch&, int batch, int64_t r0,
            int64_t r1, int64_t c0, int64_t c1, bool add, float* y, int64_t ldy) const override {
    const bool simd = UseSimd();
    ForBatchChunks(batch, [&](auto nb, int b0) {
      Hc1Args a{.codes = t_.codes.data(),
                .codes_size = t_.codes.size(),
                .table = t_.table.data(),
                .entries = entries_,
                .width = t_.width,
                .prefix = t_.prefix_bits,
                .cols = cols(),
                .x = x + b0 * ldx,
                .ldx = ldx,
                .r0 = r0,
                .r1 = r1,
                .c0 = c0,
                .c1 = c1,
                .add = add,
                .y = y + b0 * ldy,
                .ldy = ldy};
      if (simd) {
        infer::Hc1Avx512(a, decltype(nb)::value);
      } else {
        infer::Hc1Scalar(a, decltype(nb)::value);
      }
    });
  }

 private:
  Hc1DecodeTable t_;
  uint64_t entries_ = 0;
};

absl::Status Unsupported(const LinearWeight& w, absl::string_view why) {
  return absl::UnimplementedError(absl::StrCat("no fused kernel for codec ", w.codec,
                                               " with shape [", w.shape[0], ", ", w.shape[1],
                                               "]: ", why));
}

}  // namespace

bool LinearHasHc2Integer() { return infer::Hc2IntAvailable(); }

bool LinearHasAvx512() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

absl::Status Linear::Apply(absl::Span<const float> x, int64_t ldx, int batch, absl::Span<float> y,
                           int64_t ldy, Executor& executor) const {
  if (batch < 1 || batch > kMaxBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("linear: batch ", batch, " is outside [1, ", kMaxBatch, "]"));
  }
  if (ldx < cols_ || ldy < rows_) {
    return absl::InvalidArgumentError(absl::StrCat("linear: strides ldx ", ldx, " / ldy ", ldy,
                                                   " below cols ", cols_, " / rows ", rows_));
  }
  const uint64_t nx = static_cast<uint64_t>((batch - 1) * ldx + cols_);
  const uint64_t ny = static_cast<uint64_t>((batch - 1) * ldy + rows_);
  if (x.size() < nx || y.size() < ny) {
    return absl::InvalidArgumentError(absl::StrCat("linear: x holds ", x.size(), " floats (needs ",
                                                   nx, "), y ", y.size(), " (needs ", ny, ")"));
  }
  Scratch scratch;
  int64_t ld = ldx;
  const float* src = Prepare(x.data(), ldx, batch, scratch, ld);
  // Column blocks of about 16 KB of X for the whole batch, on the codec's unit; each block's X
  // is packed as [batch][width] so that all its rows stay in L1 (and never alias in its sets).
  const int64_t unit = ColumnUnit();
  const int64_t width = std::max(unit, std::max<int64_t>(256, 4096 / batch) / unit * unit);
  const int64_t nblocks = (cols_ + width - 1) / width;
  std::vector<float> packed(static_cast<size_t>(nblocks * batch * width));
  for (int64_t k = 0; k < nblocks; ++k) {
    const int64_t c0 = k * width, n = std::min(cols_, c0 + width) - c0;
    for (int b = 0; b < batch; ++b) {
      std::copy(src + b * ld + c0, src + b * ld + c0 + n, packed.begin() + (k * batch + b) * width);
    }
  }
  const int64_t tiles = (rows_ + kTileRows - 1) / kTileRows;
  executor.ParallelFor(tiles, [&](int64_t t) {
    const int64_t r0 = t * kTileRows, r1 = std::min(rows_, r0 + kTileRows);
    for (int64_t k = 0; k < nblocks; ++k) {
      const int64_t c0 = k * width, c1 = std::min(cols_, c0 + width);
      Rows(packed.data() + k * batch * width, width, scratch, batch, r0, r1, c0, c1, k > 0,
           y.data(), ldy);
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Linear>> CreateDenseLinear(DType dtype, int64_t rows, int64_t cols,
                                                          absl::Span<const uint8_t> data) {
  if (dtype != DType::kF16 && dtype != DType::kF32) {
    return absl::InvalidArgumentError(
        absl::StrCat("dense linear: dtype ", DTypeName(dtype), " is not F16 or F32"));
  }
  if (rows < 1 || cols < 1 ||
      data.size() != static_cast<uint64_t>(rows * cols) * DTypeSize(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("dense linear: ", data.size(),
                                                   " bytes do not hold [", rows, ", ", cols, "] ",
                                                   DTypeName(dtype)));
  }
  return std::unique_ptr<Linear>(new DenseLinear(dtype, rows, cols, data.data()));
}

absl::Status LinearOptions::Validate() const { return absl::OkStatus(); }

absl::StatusOr<std::unique_ptr<Linear>> CreateLinear(const LinearWeight& w,
                                                     const LinearOptions& options) {
  HC_RETURN_IF_ERROR(options.Validate());
  if (w.shape.size() != 2 || w.shape[0] < 1 || w.shape[1] < 1) {
    return absl::InvalidArgumentError(absl::StrCat("linear: weight of codec ", w.codec,
                                                   " must have a 2-D shape [rows, cols], got rank ",
                                                   w.shape.size()));
  }
  const int64_t rows = w.shape[0], cols = w.shape[1];
  TensorInfo info;
  info.dtype = w.dtype;
  info.shape = w.shape;
  info.numel = static_cast<uint64_t>(rows * cols);
  info.end = info.numel * DTypeSize(w.dtype);
  if (w.codec == "raw") {
    if (w.parts.size() != 1) return absl::InvalidArgumentError("linear: a raw weight has one part");
    if (w.dtype != DType::kF16 && w.dtype != DType::kF32) {
      return Unsupported(w, absl::StrCat("raw dtype ", DTypeName(w.dtype)));
    }
    return CreateDenseLinear(w.dtype, rows, cols, w.parts[0].bytes);
  }
  if (w.codec == "hc2") {
    const JsonValue* mode = w.params.Find("mode");
    if (mode == nullptr || !mode->is_string() || mode->string_value() != "fixed") {
      return Unsupported(w, "hc2 has fused kernels for mode \"fixed\" only");
    }
    if (cols % hc2::kBlock != 0) {
      return Unsupported(w, "hc2 blocks lie inside rows only when cols % 128 == 0");
    }
    HC_ASSIGN_OR_RETURN(
        hc2::FixedRecord rec,
        hc2::ParseFixedRecord(static_cast<int64_t>(info.numel), w.params, w.parts));
    return std::unique_ptr<Linear>(new Hc2FixedLinear(rows, cols, rec, options));
  }
  if (w.codec == "rtn") {
    HC_ASSIGN_OR_RETURN(std::unique_ptr<Codec> codec, CreateCodec("rtn", {}));
    HC_RETURN_IF_ERROR(codec->PrepareDecoder(info, w.params, w.parts).status());
    const int bits = static_cast<int>(*w.params.Find("bits")->as_int64());
    const int64_t group = *w.params.Find("group_size")->as_int64();
    if (cols % group != 0 || group % 16 != 0) {
      return Unsupported(w, absl::StrCat("rtn groups of ", group,
                                         " must divide the rows and be a multiple of 16"));
    }
    return std::unique_ptr<Linear>(new RtnLinear(rows, cols, bits, group,
                                                 FindPart(w.parts, "codes")->bytes,
                                                 FindPart(w.parts, "scales")->bytes, options));
  }
  if (w.codec == "hc1") {
    if (cols % 2 != 0) return Unsupported(w, "hc1 pairs lie inside rows only when cols is even");
    HC_ASSIGN_OR_RETURN(Hc1DecodeTable t, PrepareHc1DecodeTable(info, w.params, w.parts));
    return std::unique_ptr<Linear>(new Hc1Linear(rows, cols, std::move(t)));
  }
  return absl::UnimplementedError(absl::StrCat("linear: no fused kernel for codec ", w.codec));
}

}  // namespace hc
