// Fused linear layers: Y = W X computed straight from a tensor's stored codes (no decoded copy of
// W), plus plain F16/F32 baselines with the same interface.
//
// The fused-kernel contract:
//  - W is a 2-D weight [rows, cols] (any record whose shape is [rows, cols]; a 1-D tensor is
//    rejected). X is [batch, cols] row-major with a row stride `ldx` >= cols, Y is [batch, rows]
//    with a row stride `ldy` >= rows, batch in [1, kMaxBatch].
//  - The codec's groups must lie inside rows (core/format/SPEC.md, "Groups inside rows"):
//      hc2 fixed mode: cols % 128 == 0 (every rotated block is a row slice);
//      rtn: cols % group_size == 0 and group_size % 16 == 0;
//      hc1: cols even (pair j of row r is elements 2j, 2j+1 of that row).
//    Other layouts, hc2's entropy-coded mode and raw non-float records give Unimplemented or
//    InvalidArgument; decode them with core/infer/model_reader.h and multiply instead.
//  - Result: for each output y[b][r], the float32 dot product of the decoded row r (exactly as
//    TensorDecoder::DecodeRange would produce it, up to rounding) with x[b]. The arithmetic
//    differs from decode-then-multiply only in rounding: hc2 multiplies the codebook values by
//    Rot(x) / 128 instead of unrotating the codes, rtn sums s * sum(q x) + m * sum(x) per group.
//    Tests hold |y - y_ref| <= 1e-5 * ||w_r||_2 * ||x_b||_2 against a float64 reference.
//    The integer kernels (LinearOptions::hc2_integer, rtn_integer) also round X (hc2: Rot(X) /
//    128) to integers in [-32639, 32639] per block or group, an error of at most 1/65278 of
//    its largest value per element, which the same tolerance covers (an error of 1e-5 * ||w||
//    * ||x|| needs all the rounding errors aligned with w; rtn centres its codes on each
//    group's zero point so that the errors are weighted by the weights, not by the codes).
//  - Blocking: columns are cut into blocks of about 16 KB of X for the whole batch (4096
//    columns at batch 1, 256 at batch 16, on the codec's group boundaries), each block's X
//    packed contiguously so every batch row of it stays in L1; rows are cut into tiles of 16,
//    the parallel units. Each output is the sum of its column blocks' partial dot products,
//    in block order.
//  - Determinism: every y[b][r] is computed by one thread with an operation order fixed by
//    (cols, batch, codec, SIMD path), so results do not depend on the Executor's thread count
//    or on which rows are computed together; different batch sizes may round differently (the
//    column blocks depend on the batch). The SIMD and scalar paths differ in rounding only
//    (same tolerance).
//  - Kernels: AVX-512 (F, BW, VL, VBMI) where the CPU has it and SimdAllowed(), else scalar
//    reference loops (there is no AVX2-only path yet). With GFNI and VNNI too, hc2 fixed at 4
//    bits with codebook 2 and rtn at 4 bits (groups of multiples of 64) take integer kernels:
//    codes as bytes (hc2's computed by byte shuffles and a GF(2) affine instruction) times X's
//    high and low bytes by vpdpbusd, exact int32 sums per block or group (2 to 2.6x F16 GEMV at
//    batch 1, docs/perf-gemv-cpu.md). Otherwise rtn and hc1 codes and hc2's gather kernel
//    unpack 16 fields at once in registers (VBMI byte permute + variable shift); hc1's pair
//    table and hc2's 16 KB codebook are read by vector gathers; hc2's pair-table kernel reads
//    two windows per scalar load (LinearOptions). Each decoded vector of weights is used for
//    every row of X in the batch.
//  - A Linear keeps views of the stored parts: the bytes must outlive it.
#ifndef HC_CORE_INFER_LINEAR_H_
#define HC_CORE_INFER_LINEAR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/base/dtype.h"
#include "core/base/json.h"
#include "core/base/parallel.h"
#include "core/codec/codec.h"

namespace hc {

/// Largest batch one Apply() call takes.
inline constexpr int kMaxBatch = 16;

/// One stored weight as the fused kernels see it: a tensor record's codec, dtype, shape,
/// params and part views (for a raw record: codec "raw" and one part holding its bytes).
struct LinearWeight {
  std::string codec;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  JsonValue params = JsonValue::Object();
  std::vector<PartView> parts;
};

/// A linear layer y = W x over one stored weight. Thread-safe (Apply is const).
class Linear {
 public:
  virtual ~Linear() = default;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  /// What the kernel is ("hc2-fixed-4", "rtn-4-g128", "hc1", "f16", "f32").
  virtual std::string kind() const = 0;
  /// Bytes of stored weight data one Apply() reads (codes, scales, tables).
  virtual uint64_t weight_bytes() const = 0;

  /// Y[b][r] = sum_c W[r][c] X[b][c] for b < batch, r < rows. `x` holds (batch - 1) * ldx + cols
  /// floats, `y` (batch - 1) * ldy + rows. Work is split into fixed tiles of rows run through
  /// `executor`. Errors: InvalidArgument for a batch outside [1, kMaxBatch], strides below the
  /// shape or buffers too small.
  absl::Status Apply(absl::Span<const float> x, int64_t ldx, int batch, absl::Span<float> y,
                     int64_t ldy, Executor& executor) const;

 protected:
  Linear(int64_t rows, int64_t cols) : rows_(rows), cols_(cols) {}
  /// Per-call data that Prepare makes and Rows reads.
  struct Scratch {
    std::vector<float> f;
    std::vector<int8_t> q;
    std::vector<int32_t> c;
  };
  /// The column unit of the codec (hc2 128, rtn group_size, hc1 2, dense 16): column blocks
  /// start and end on multiples of it.
  virtual int64_t ColumnUnit() const = 0;
  /// Prepares per-call data: returns the X the kernels read (X itself, or e.g. hc2's rotated X
  /// in `scratch`, setting `ld` to its row stride) and may keep more in `scratch` (rtn's sums of
  /// X per group). Called once per Apply. Default: X unchanged.
  virtual const float* Prepare(const float* x, int64_t ldx, int batch, Scratch& scratch,
                               int64_t& ld) const {
    return x;
  }
  /// Partial products of rows [r0, r1) over columns [c0, c1) for `batch` (<= kMaxBatch) inputs:
  /// `x` is the prepared X of column c0 (row stride ldx); y[b * ldy + r] receives the partial
  /// sum, added to it when `add`.
  virtual void Rows(const float* x, int64_t ldx, const Scratch& scratch, int batch,
                    int64_t r0, int64_t r1, int64_t c0, int64_t c1, bool add, float* y,
                    int64_t ldy) const = 0;

 private:
  int64_t rows_, cols_;
};

/// Choices of the fused kernels.
struct LinearOptions {
  /// hc2 fixed mode, AVX-512 path: look the 12-bit windows up two at a time, in a table of
  /// 2^(12 + bits) float pairs indexed by the 12 + bits stream bits that hold both (512 KB at 4
  /// bits, made once per process, shared by all layers), one scalar 8-byte load per pair; off:
  /// one 16-lane vector gather per 16 windows from the 16 KB codebook (kind "...-gather").
  /// On AMD Zen 4, whose gathers are slow, the pair table was 1.3 to 1.8x faster at batch 1
  /// but slower from batch 4 on (docs/perf-gemv-cpu.md), so it is used for batches of at most
  /// 2 only; kind() names the batch-1 kernel. Same results within the stated tolerance.
  /// Default: true.
  bool hc2_pair_table = true;
  /// hc2 fixed mode with codebook 2 at 4 bits, on CPUs with AVX-512 VBMI, GFNI and VNNI: the
  /// integer kernel (kind "hc2-fixed-4-int"). It computes the codebook values with byte
  /// shuffles instead of looking them up, and multiplies them with X rounded to 16-bit integers
  /// per block of 128 (|error| <= max|block| / 65278 per element; the codes are exact
  /// integers), in int32. About 3.5x the pair table's speed (docs/perf-gemv-cpu.md). Takes
  /// precedence over hc2_pair_table. Default: true.
  bool hc2_integer = true;
  /// rtn at 4 bits with groups of a multiple of 64, on the same CPUs: the integer kernel (kind
  /// "rtn-4-gG-int"): X rounded to 16-bit integers per group in the same way, the 4-bit codes
  /// multiplied as bytes by vpdpbusd. Default: true.
  bool rtn_integer = true;

  absl::Status Validate() const;
};

/// The fused layer for a coded weight (hc2 fixed, rtn, hc1) or the dense layer for a raw F16 /
/// F32 one. Errors: InvalidArgument for a shape that is not [rows, cols] or inconsistent parts,
/// Unimplemented for a codec, mode or layout without a fused kernel (the message says which
/// rule of the contract above fails).
absl::StatusOr<std::unique_ptr<Linear>> CreateLinear(const LinearWeight& weight,
                                                     const LinearOptions& options = {});

/// A dense baseline over `rows` x `cols` row-major F16 or F32 bytes (`data` must outlive it).
/// Errors: InvalidArgument for another dtype or a size mismatch.
absl::StatusOr<std::unique_ptr<Linear>> CreateDenseLinear(DType dtype, int64_t rows, int64_t cols,
                                                          absl::Span<const uint8_t> data);

/// Whether the fused kernels take their AVX-512 path on this CPU (ignores SimdAllowed()).
bool LinearHasAvx512();
/// Whether hc2's integer kernel (LinearOptions::hc2_integer) can run on this CPU: AVX-512 with
/// VBMI, GFNI and VNNI (e.g. AMD Zen 4, Intel Ice Lake and later).
bool LinearHasHc2Integer();

}  // namespace hc

#endif  // HC_CORE_INFER_LINEAR_H_
