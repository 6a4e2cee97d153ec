// Fused decode + GEMV on NVIDIA GPUs (sm_90, the H200): y = W x for a weight matrix stored in
// hc2's fixed mode (core/format/spec-hc2.md, section 4) or in rtn 4-bit group-128
// (core/codec/rtn.h), without ever writing the decoded weights to memory.
//
// Standalone on purpose: this header and hc_gemv_cuda.cu use only the CUDA runtime (no abseil, no
// core/), so the device machine, which has nvcc but none of the project's libraries, builds them
// with bench/gemv_cuda/main.cu alone. Errors are cudaError_t (cudaErrorInvalidValue for a shape or
// option the kernels do not support).
//
// Layouts (all device pointers, row-major, little-endian, exactly the codecs' stored parts):
//  - W has `rows` x `cols` elements, flattened row-major; cols must be a multiple of the warp step
//    (32 lanes x 4 words x 32 bits of codes: 1024 columns at 4 bits, 2048 at 2 bits), so every
//    128-weight block lies inside one row.
//  - x is [batch][cols] float32, y is [batch][rows] float32; the weights are read once per launch,
//    and a launch takes 1, 4 or 16 vectors (other batches up to 16 run as several launches).
//
// hc2 fixed: block b of 128 rotated coefficients decodes to s_b * C_k[w_i] (w_i the 12-bit window
// of the LSB-first symbol stream), then the inverse random-sign Walsh-Hadamard rotation. As the
// rotation is orthonormal up to 1/128, <w, x> over a block equals s_b * sum_i C_k[w_i] * x'_i with
// x' = Fwht(Sign * x) / 128 per 128-chunk of x. So a call first rotates x once (a small kernel,
// Hc2RotateActivations, which also permutes x' into the GEMV lanes' order) and the GEMV kernel does one codebook lookup and one FMA per weight and
// batch; the two are chained with programmatic dependent launch so the GEMV's prologue (code
// prefetch, codebook copy to shared memory) overlaps the rotation.
//
// The 4096-entry codebook lives in shared memory, in one of two layouts (Hc2Lut):
//  - kF32: the normative float32 table, 16 KiB; 32 random lookups of a warp collide in banks
//    (about 3.5 requests on the busiest bank), so a lookup costs several shared-memory cycles.
//  - kF16x16: the table rounded to F16 and replicated 16 times (128 KiB), lane l reading copy
//    l mod 16, which owns 2 of the 32 banks: at most lanes l and l + 16 collide (2.0 wavefronts
//    per lookup measured with ncu).
//    Values differ from the normative ones by the F16 rounding (relative 2^-12 at most).
#ifndef HC_CORE_INFER_CUDA_HC_GEMV_CUDA_CUH_
#define HC_CORE_INFER_CUDA_HC_GEMV_CUDA_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace hc::cuda {

/// Entries of an hc2 fixed-mode codebook (2^12, the window of spec-hc2.md section 4).
inline constexpr int kHc2Codebook = 4096;
/// Largest batch the kernels take.
inline constexpr int kMaxBatch = 16;

/// The shared-memory layout of the hc2 codebook (see the file comment).
enum class Hc2Lut { kF32, kF16x16 };

/// A codebook on the device in both layouts' source forms: `f32` the 4096 normative float32
/// values, `f16` the same rounded to F16 (bits as uint16_t). Made by Hc2UploadCodebook.
struct Hc2DeviceCodebook {
  int bits = 4;
  float* f32 = nullptr;
  uint16_t* f16 = nullptr;
};

/// Copies the host codebook `cb` (kHc2Codebook float32 values, e.g.
/// hc::hc2::TrellisCodebook(bits, codebook)) to the device, with its F16 rounding. `bits` must
/// be 2 or 4 (3 is not supported: its symbols straddle 32-bit words). Free with
/// Hc2FreeCodebook.
cudaError_t Hc2UploadCodebook(const float* cb, int bits, Hc2DeviceCodebook* out);
/// Frees what Hc2UploadCodebook allocated (null pointers are fine).
void Hc2FreeCodebook(Hc2DeviceCodebook* cb);

/// One weight matrix in hc2 fixed mode: `codes` the packed symbols (part "symbols", or "codes"
/// of codebook 1, rows * cols * bits / 8 bytes, 4-byte aligned), `scales` the F16 block scales
/// (part "scales", rows * cols / 128).
struct Hc2Matrix {
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int bits = 4;
};

/// One weight matrix in rtn with bits 4 and group_size 128: `codes` (rows * cols / 2 bytes,
/// LSB-first nibbles, 4-byte aligned) and `scales` (F16 pairs (scale, zero) per group).
struct RtnMatrix {
  const uint8_t* codes = nullptr;
  const uint16_t* scales = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

/// Launch options of the GEMV kernels.
struct GemvOptions {
  /// Codebook layout in shared memory (hc2 only).
  Hc2Lut lut = Hc2Lut::kF16x16;
  /// Chain the hc2 GEMV to the preceding rotation with programmatic dependent launch.
  bool pdl = true;
};

/// The column multiple the GEMV kernels require for `bits`: one warp step, 4096 / bits.
inline constexpr int64_t ColumnStep(int bits) { return 4096 / bits; }

/// x'[b] = per 128-chunk Fwht(Sign * x[b]) / 128, the rotated activations hc2's GEMV multiplies
/// with, stored in the GEMV's lane order for `bits` (a permutation within each row of xr; x and
/// xr are [batch][cols] float32, cols a multiple of ColumnStep(bits)).
cudaError_t Hc2RotateActivations(const float* x, int batch, int64_t cols, int bits, float* xr,
                                 cudaStream_t stream);

/// y = W x' for rotated activations xr (from Hc2RotateActivations with w.bits) and `batch` in
/// 1..16. With
/// options.pdl the kernel is launched as a programmatic dependent of the preceding kernel in
/// `stream` and waits for it only before its first read of xr.
cudaError_t Hc2GemvRotated(const Hc2Matrix& w, const Hc2DeviceCodebook& cb, const float* xr,
                           int batch, float* y, const GemvOptions& options, cudaStream_t stream);

/// The whole product y = W x: Hc2RotateActivations into `scratch` (batch * cols floats), then
/// Hc2GemvRotated. Equal to decoding W (hc2 DecodeRange) and multiplying, up to float32 rounding
/// (and the F16 codebook rounding with Hc2Lut::kF16x16).
cudaError_t Hc2Gemv(const Hc2Matrix& w, const Hc2DeviceCodebook& cb, const float* x, int batch,
                    float* scratch, float* y, const GemvOptions& options, cudaStream_t stream);

/// y = W x for rtn 4-bit group-128 weights: sum over groups of s * sum(q x) + m * sum(x), all in
/// float32 on the CUDA cores (the reference-precision path; slower than RtnGemvMma).
cudaError_t RtnGemv(const RtnMatrix& w, const float* x, int batch, float* y, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// rtn 4-bit group-128 on the tensor cores (rtn_gemv_mma.cu).
//
// A small prologue kernel (RtnMmaPrepare) converts x to F16 in the order the decoded weights come
// out (odd columns pre-divided by 16, see below), computes two sums per group of 128 columns and
// vector (below), and zeroes y; the GEMV kernel is chained to it with programmatic dependent
// launch, so its first weight loads overlap it. The GEMV decodes 8 nibbles of a 32-bit word into 4
// half2 with one shift and four LOP3 and no subtraction: (word & 0x000F000F) | 0x64006400 is the
// half2 (1024 + q0, 1024 + q4), and (word & 0x00F000F0) | 0x64006400 is (1024 + 16 q1,
// 1024 + 16 q5), whose x partners are stored divided by 16. mma.m16n8k16 (F16 in, float32
// accumulate; a product of two F16 values is exact in float32) then gives per row, vector and group
//   C = sum_even (1024 + q) x + sum_odd (1024 + 16 q) x / 16,
// and the group adds s * (C - K) + (m + 8 s) * sum(x) with the prologue's
// K = sum_even 1032 x + sum_odd 1152 x / 16: C - K = sum (q - 8) x, so the sum is exactly
// sum ((q s + m) x). The only rounding beyond float32 is x to F16 (relative 2^-12 at most; sum(x)
// and K are of the F16 values too), so |x| must stay below 65504; the float32 accumulation of the
// offset 1024 x inside the mma cost nothing measurable (same errors as an exact (q - 8) decode with
// four more HADD2 per word, session 5). y is accumulated with float atomics (the order of the few
// partial sums per output may vary between runs, at float32 rounding level).
//
// Work split: units of 16 rows x 256 columns (2 KiB of codes) are dealt to all warps of the grid in
// contiguous balanced runs; each warp copies its next `stages` - 1 units into its own ring of
// shared-memory stages with cp.async (4 rows x 128 contiguous bytes per copy instruction), and
// reads them in the mma layout (thread (g, t) = lane 4 g + t takes rows g and g + 8).

/// Bytes of the scratch the tensor-core rtn GEMV needs for `batch` vectors of `cols` columns.
inline constexpr int64_t RtnMmaScratchBytes(int batch, int64_t cols) {
  return int64_t{2} * batch * cols + (cols / 128) * kMaxBatch * 8;
}

/// Launch shape of the tensor-core rtn GEMV (the defaults are the tuned ones; the bench sweeps the
/// others). Valid (tiles, warps per block, stages): (1, 16, 4), (1, 16, 6), (2, 16, 3), (2, 8, 6);
/// shared memory per block: tiles x warps x stages x 2176 bytes.
struct RtnMmaOptions {
  /// 16-row tiles per unit: 2 shares each x load between 32 rows.
  int tiles = 1;
  int warps = 16;
  int stages = 4;
  /// Programmatic dependent launch: the GEMV is chained to its prologue (its weight copies start
  /// before the prologue ends), and the prologue to the preceding kernel in the stream (it waits
  /// for that kernel's end before it reads x or writes, so a GEMV that feeds the next one's x is
  /// safe; the next GEMV's first weight copies then overlap this one's last blocks).
  bool pdl = true;
  bool Valid() const;
};

/// The prologue alone: x ([batch][cols] float32) into `scratch` (RtnMmaScratchBytes(batch, cols)
/// bytes, 16-byte aligned), and y ([batch][rows]) zeroed; `pdl` as in RtnMmaOptions.
cudaError_t RtnMmaPrepare(const float* x, int batch, int64_t cols, int64_t rows, void* scratch,
                          float* y, bool pdl, cudaStream_t stream);

/// The GEMV alone: y += W x for the x prepared in `scratch` by RtnMmaPrepare (same batch and
/// cols); y must hold zeros (or partial sums to add to).
cudaError_t RtnGemvMmaPrepared(const RtnMatrix& w, int batch, const void* scratch, float* y,
                               const RtnMmaOptions& options, cudaStream_t stream);

/// y = W x for rtn 4-bit group-128 weights on the tensor cores: RtnMmaPrepare, then
/// RtnGemvMmaPrepared (two launches, any batch 1..16). cols must be a multiple of 256 (any
/// rows >= 1); `scratch` holds RtnMmaScratchBytes(batch, cols) bytes, 16-byte aligned. Equal to
/// decode-then-multiply up to the F16 rounding of x and float32 rounding.
cudaError_t RtnGemvMma(const RtnMatrix& w, const float* x, int batch, void* scratch, float* y,
                       const RtnMmaOptions& options, cudaStream_t stream);

}  // namespace hc::cuda

#endif  // HC_CORE_INFER_CUDA_HC_GEMV_CUDA_CUH_
