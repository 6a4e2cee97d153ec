// rtn 4-bit group-128 GEMV on the tensor cores: RtnGemvMma (method in hc_gemv_cuda.cuh).
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "core/infer/cuda/hc_gemv_cuda.cuh"
#include "core/infer/cuda/launch.cuh"

namespace hc::cuda {
namespace {

constexpr int kGsStride = kMaxBatch;  // float2 slots per group in the group-sum table (sum x, K)

// The prologue: thread i converts word w = i mod (cols / 8) of vector b = i / (cols / 8), i.e. the
// 8 columns 8w..8w+7, to the half2 (x0, x4), (x1/16, x5/16), (x2, x6), (x3/16, x7/16) (the order
// the GEMV decodes nibbles in), and adds its part of the group's sum(x) and K (see the header)
// over the 16 words of the group with shuffles. Both sums are of the F16-rounded x, the values the
// mma multiplies, so that the terms s * sum (q - 8) x and (m + 8 s) * sum(x), which cancel in
// part, round alike: the error is then sum w (x_F16 - x), one F16 rounding per weight (with the
// float32 x in sum(x) the error was twice as large on the codec-made vectors). It also zeroes y,
// which the GEMV accumulates into.
__global__ void RtnMmaPrepKernel(const float* __restrict__ x, int batch, int64_t cols,
                                 int64_t rows, uint4* __restrict__ xh, float2* __restrict__ gs,
                                 float* __restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // The GEMV may launch now (it waits for this grid before reading what it writes); this grid
  // waits for the preceding kernel (e.g. the GEMV that produced x) when launched as its
  // programmatic dependent, and not at all otherwise.
  cudaTriggerProgrammaticLaunchCompletion();
  cudaGridDependencySynchronize();
#endif
  const int64_t words = cols / 8, n = batch * words;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float sx = 0.0f, k = 0.0f;
  if (i < n) {
    const int64_t b = i / words, w = i % words;
    const float4* p = reinterpret_cast<const float4*>(x + b * cols + 8 * w);
    const float4 lo = p[0], hi = p[1];
    const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    __half h[8];
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      h[c] = __float2half_rn(v[c]);
      sx += __half2float(h[c]);
      if (c & 1) h[c] = __hmul(h[c], __float2half_rn(0.0625f));
      k += (c & 1 ? 1152.0f : 1032.0f) * __half2float(h[c]);
    }
    uint4 o;
    o.x = __half_as_ushort(h[0]) | static_cast<uint32_t>(__half_as_ushort(h[4])) << 16;
    o.y = __half_as_ushort(h[1]) | static_cast<uint32_t>(__half_as_ushort(h[5])) << 16;
    o.z = __half_as_ushort(h[2]) | static_cast<uint32_t>(__half_as_ushort(h[6])) << 16;
    o.w = __half_as_ushort(h[3]) | static_cast<uint32_t>(__half_as_ushort(h[7])) << 16;
    xh[i] = o;
  }
  // 16 consecutive threads hold one group (words is a multiple of 16).
#pragma unroll
  for (int m = 8; m > 0; m >>= 1) {
    sx += __shfl_xor_sync(0xffffffffu, sx, m);
    k += __shfl_xor_sync(0xffffffffu, k, m);
  }
  if (i < n && (i & 15) == 0) {
    const int64_t b = i / words, grp = (i % words) / 16;
    gs[grp * kGsStride + b] = make_float2(sx, k);
  }
  for (int64_t j = i; j < batch * rows; j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[j] = 0.0f;
  }
}

__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// (w & kMask) | 0x64006400 in one LOP3 (written in PTX: the compiler splits the C form in two).
template <uint32_t kMask>
__device__ __forceinline__ uint32_t AndOr(uint32_t w) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "n"(kMask), "n"(0x64006400u));
  return r;
}

// The 8 nibbles of a code word as the half2 (1024 + q0, 1024 + q4), (1024 + 16 q1, 1024 + 16 q5),
// (1024 + q2, 1024 + q6), (1024 + 16 q3, 1024 + 16 q7): one shift and four LOP3 (the offsets are
// removed after the mma, with K).
__device__ __forceinline__ void Decode(uint32_t w, uint32_t (&h)[4]) {
  const uint32_t w8 = w >> 8;
  h[0] = AndOr<0x000F000Fu>(w);
  h[1] = AndOr<0x00F000F0u>(w);
  h[2] = AndOr<0x000F000Fu>(w8);
  h[3] = AndOr<0x00F000F0u>(w8);
}

// Asynchronous global -> shared copies (cp.async: 16 bytes through L2 only, 8 bytes through L1).
__device__ __forceinline__ void CopyAsync16(uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void CopyAsync8(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void CopyCommit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void CopyWait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
}

// A unit is 16 rows x 256 columns (two groups): 2 KiB of codes, staged in shared memory as 16 rows
// of 128 bytes (row r's 16-byte chunk c at chunk c ^ 4 (r & 1), so that the mma-layout reads of
// rows g and g + 1 fall in different banks), then the 16 rows' two (scale, zero) pairs.
constexpr int kUnitCodeBytes = 2048;
constexpr int kUnitBytes = kUnitCodeBytes + 16 * 8;

// The GEMV. Each warp walks units u in [u0, u1) of the grid-wide order (tile-major, pair-minor)
// through a kStages-deep ring of shared-memory stages filled by cp.async: a unit's copy is 4
// coalesced 16-byte copies per lane (lane l copies chunk l mod 8 of rows 4 i + l / 8, i.e. 4 rows x
// 128 contiguous bytes per instruction) and 16 lanes' 8-byte scale copies. Per group of the unit
// and 32-column word j, thread (g, t) = lane 4 g + t decodes its word of rows g and g + 8 and
// issues two mma.m16n8k16 (A: the 16 rows' 16 k-slots, B: x of vector n = g (+ 8 for the second
// n-tile); thread t's k-slots are the columns of its own words, in the prologue's order; two
// accumulator chains, even and odd words). At the group's end, C (rows g, g + 8 x vectors 2t,
// 2t + 1) is scaled into float32 sums, which go to y with one atomic add per row and vector when
// the tile changes. kNt: n-tiles of 8 vectors (1 or 2); kOne: batch is 1 (only c[0] and c[2] of
// lanes t = 0 count). kTiles: tiles of 16 rows per unit (1 or 2): with 2, each x load serves 32
// rows and a warp has two independent mma chains per group.
template <int kNt, bool kOne, int kWarps, int kStages, int kTiles>
__global__ void __launch_bounds__(kWarps * 32, 1)
    RtnMmaKernel(const uint8_t* __restrict__ codes, const uint32_t* __restrict__ scales,
                 int64_t rows, int64_t cols, int batch, const uint4* __restrict__ xh,
                 const float2* __restrict__ gs, float* __restrict__ y) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, warp = threadIdx.x >> 5;
  const int64_t groups = cols / 128, pairs = groups / 2;
  const int64_t tiles = (rows + 16 * kTiles - 1) / (16 * kTiles);  // of 16 kTiles rows
  const int64_t units = tiles * pairs;
  constexpr int kStageBytes = kTiles * kUnitBytes;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const int64_t u0 = units * gw / warps, u1 = units * (gw + 1) / warps;
  const int64_t row_bytes = cols / 2;
  const int npairs = static_cast<int>(pairs);
  const int count = static_cast<int>(u1 - u0);
  const uint32_t ring =
      static_cast<uint32_t>(__cvta_generic_to_shared(smem)) + warp * kStages * kStageBytes;

  // The copy cursor: this lane's 4 code rows (4 i + lane / 8) and scale row (lane, lanes < 16) of
  // each 16-row tile, at the next unit to copy; moved by one pair per unit, recomputed at a change
  // of tile (rows past the end read the last row).
  int ltile = static_cast<int>(u0 / pairs), lpair = static_cast<int>(u0 % pairs);
  const uint8_t* src[kTiles][4];
  const uint32_t* ssrc[kTiles];
  auto seek = [&]() {
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
      const int64_t r0 = (int64_t{ltile} * kTiles + tt) * 16;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t r = min(r0 + 4 * i + (lane >> 3), rows - 1);
        src[tt][i] = codes + r * row_bytes + lpair * 128 + (lane & 7) * 16;
      }
      ssrc[tt] = scales + min(r0 + (lane & 15), rows - 1) * groups + 2 * lpair;
    }
  };
  seek();
  int slot = 0;  // the stage the next copy goes to
  auto copy = [&]() {
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
      const uint32_t st = ring + slot * kStageBytes + tt * kUnitBytes;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = 4 * i + (lane >> 3);
        CopyAsync16(st + r * 128 + (((lane & 7) ^ ((r & 1) << 2)) << 4), src[tt][i]);
      }
      if (lane < 16) CopyAsync8(st + kUnitCodeBytes + lane * 8, ssrc[tt]);
    }
    if (++slot == kStages) slot = 0;
    if (++lpair == npairs) {
      lpair = 0;
      ++ltile;
      seek();
    } else {
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) src[tt][i] += 128;
        ssrc[tt] += 2;
      }
    }
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < count) copy();
    CopyCommit();
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // A following prologue may launch now: it waits for this grid's end before it reads or writes.
  cudaTriggerProgrammaticLaunchCompletion();
  cudaGridDependencySynchronize();  // xh, gs and the zeroed y come from the prologue
#endif

  // This thread's x pointers (B fragment: vector g, + 8 for the second n-tile, clamped into the
  // batch) and its C entries' vectors (2t, 2t + 1, + 8): clamped ones are computed, not written.
  const uint4* px[kNt];
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) px[nt] = xh + min(8 * nt + g, batch - 1) * (cols / 8) + 4 * t;
  const float2* pg[kNt][2];
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) pg[nt][e] = gs + (kOne ? 0 : min(8 * nt + 2 * t + e, batch - 1));

  float acc[kTiles][kNt][4];
#pragma unroll
  for (int tt = 0; tt < kTiles; ++tt)
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[tt][nt][e] = 0.0f;
  int ctile = static_cast<int>(u0 / pairs), cpair = static_cast<int>(u0 % pairs);
  int cur_tile = ctile;

  auto flush = [&](int tile) {
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
      const int64_t ra = (int64_t{tile} * kTiles + tt) * 16 + g, rb = ra + 8;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int n = 8 * nt + 2 * t + (e & 1);
          const int64_t r = e < 2 ? ra : rb;
          const bool used = kOne ? (t == 0 && (e & 1) == 0) : n < batch;
          if (used && r < rows) atomicAdd(y + n * rows + r, acc[tt][nt][e]);
          acc[tt][nt][e] = 0.0f;
        }
      }
    }
  };

  // One group h of the 16-row tile staged at `st`, with its x (xv) and sums of x (sxv).
  auto group = [&](const unsigned char* st, int h, const uint4 (&xv)[4][kNt],
                   const float2 (&sxv)[kNt][2], float (&acc)[kNt][4]) {
    const uint32_t chunk = static_cast<uint32_t>(((h * 4 + t) ^ ((g & 1) << 2)) << 4);
    const uint4 ca = *reinterpret_cast<const uint4*>(st + g * 128 + chunk);
    const uint4 cb = *reinterpret_cast<const uint4*>(st + (g + 8) * 128 + chunk);
    const uint32_t sa32 = *reinterpret_cast<const uint32_t*>(st + kUnitCodeBytes + g * 8 + h * 4);
    const uint32_t sb32 =
        *reinterpret_cast<const uint32_t*>(st + kUnitCodeBytes + (g + 8) * 8 + h * 4);
    float cc[2][kNt][4];
#pragma unroll
    for (int k = 0; k < 2; ++k)
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) cc[k][nt][e] = 0.0f;
    const uint32_t wa[4] = {ca.x, ca.y, ca.z, ca.w};
    const uint32_t wb[4] = {cb.x, cb.y, cb.z, cb.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      uint32_t ha[4], hb[4];
      Decode(wa[j], ha);
      Decode(wb[j], hb);
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        Mma(cc[j & 1][nt], ha[0], hb[0], ha[1], hb[1], xv[j][nt].x, xv[j][nt].y);
        Mma(cc[j & 1][nt], ha[2], hb[2], ha[3], hb[3], xv[j][nt].z, xv[j][nt].w);
      }
    }
    const float2 fa = __half22float2(*reinterpret_cast<const __half2*>(&sa32));
    const float2 fb = __half22float2(*reinterpret_cast<const __half2*>(&sb32));
    const float sa = fa.x, ma = fmaf(8.0f, fa.x, fa.y), sb = fb.x, mb = fmaf(8.0f, fb.x, fb.y);
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < (kOne ? 1 : 2); ++e) {
        const float sx = sxv[nt][e].x, k = sxv[nt][e].y;  // sum of x over the group, K
        acc[nt][e] = fmaf(sa, (cc[0][nt][e] + cc[1][nt][e]) - k, fmaf(ma, sx, acc[nt][e]));
        acc[nt][e + 2] =
            fmaf(sb, (cc[0][nt][e + 2] + cc[1][nt][e + 2]) - k, fmaf(mb, sx, acc[nt][e + 2]));
      }
    }
  };

  // Unit i: copy unit i + kStages - 1 into the stage unit i - 1 used, load unit i's x (L1), wait
  // for unit i's copies, make them visible to the warp, compute, and let the warp finish reading
  // before the next copy.
  int cslot = 0;
#pragma unroll 1
  for (int i = 0; i < count; ++i) {
    if (i + kStages - 1 < count) copy();
    CopyCommit();
    uint4 xv[2][4][kNt];
    float2 sxv[2][kNt][2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int grp = 2 * cpair + h;
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
        for (int j = 0; j < 4; ++j) xv[h][j][nt] = __ldg(px[nt] + grp * 16 + j);
#pragma unroll
        for (int e = 0; e < 2; ++e) sxv[h][nt][e] = __ldg(pg[nt][e] + grp * kGsStride);
      }
    }
    CopyWait<kStages - 1>();
    __syncwarp();
    if (ctile != cur_tile) {
      flush(cur_tile);
      cur_tile = ctile;
    }
    const unsigned char* st = smem + (warp * kStages + cslot) * kStageBytes;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) group(st + tt * kUnitBytes, h, xv[h], sxv[h], acc[tt]);
    if (++cslot == kStages) cslot = 0;
    if (++cpair == npairs) {
      cpair = 0;
      ++ctile;
    }
    __syncwarp();
  }
  if (count > 0) flush(cur_tile);
}

template <int kNt, bool kOne, int kWarps, int kStages, int kTiles>
cudaError_t LaunchRtnMmaT(const RtnMatrix& w, int batch, const uint4* xh, const float2* gs,
                          float* y, bool pdl, cudaStream_t stream) {
  auto* kernel = &RtnMmaKernel<kNt, kOne, kWarps, kStages, kTiles>;
  constexpr int kSmem = kWarps * kStages * kTiles * kUnitBytes;
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e == cudaSuccess) {
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  }
  if (e != cudaSuccess) return e;
  return cuda_internal::LaunchMaybePdl(kernel, dim3(sms), dim3(kWarps * 32), kSmem, stream, pdl,
                                       w.codes, reinterpret_cast<const uint32_t*>(w.scales),
                                       w.rows, w.cols, batch, xh, gs, y);
}

template <int kNt, bool kOne>
cudaError_t LaunchRtnMma(const RtnMatrix& w, int batch, const uint4* xh, const float2* gs,
                         float* y, const RtnMmaOptions& o, cudaStream_t stream) {
  if (o.tiles == 2) {
    return o.warps == 8 ? LaunchRtnMmaT<kNt, kOne, 8, 6, 2>(w, batch, xh, gs, y, o.pdl, stream)
                        : LaunchRtnMmaT<kNt, kOne, 16, 3, 2>(w, batch, xh, gs, y, o.pdl, stream);
  }
  return o.stages == 6 ? LaunchRtnMmaT<kNt, kOne, 16, 6, 1>(w, batch, xh, gs, y, o.pdl, stream)
                       : LaunchRtnMmaT<kNt, kOne, 16, 4, 1>(w, batch, xh, gs, y, o.pdl, stream);
}

bool RtnMmaShapeOk(const RtnMatrix& w, int batch, const void* scratch) {
  return w.rows > 0 && w.cols > 0 && w.cols % 256 == 0 && batch >= 1 && batch <= kMaxBatch &&
         w.rows <= (int64_t{1} << 31) && w.rows * w.cols < (int64_t{1} << 40) &&
         scratch != nullptr && reinterpret_cast<uintptr_t>(scratch) % 16 == 0;
}

}  // namespace

bool RtnMmaOptions::Valid() const {
  return (tiles == 1 && warps == 16 && (stages == 4 || stages == 6)) ||
         (tiles == 2 && ((warps == 16 && stages == 3) || (warps == 8 && stages == 6)));
}

cudaError_t RtnMmaPrepare(const float* x, int batch, int64_t cols, int64_t rows, void* scratch,
                          float* y, bool pdl, cudaStream_t stream) {
  if (!RtnMmaShapeOk(RtnMatrix{nullptr, nullptr, rows, cols}, batch, scratch)) {
    return cudaErrorInvalidValue;
  }
  uint4* xh = static_cast<uint4*>(scratch);
  float2* gs = reinterpret_cast<float2*>(static_cast<char*>(scratch) + int64_t{2} * batch * cols);
  const int64_t work = std::max<int64_t>(batch * cols / 8, (batch * rows + 7) / 8);
  constexpr int kPrepThreads = 256;
  return cuda_internal::LaunchMaybePdl(
      &RtnMmaPrepKernel, dim3(static_cast<unsigned>((work + kPrepThreads - 1) / kPrepThreads)),
      dim3(kPrepThreads), 0, stream, pdl, x, batch, cols, rows, xh, gs, y);
}

cudaError_t RtnGemvMmaPrepared(const RtnMatrix& w, int batch, const void* scratch, float* y,
                               const RtnMmaOptions& options, cudaStream_t stream) {
  if (!RtnMmaShapeOk(w, batch, scratch) || !options.Valid()) return cudaErrorInvalidValue;
  const uint4* xh = static_cast<const uint4*>(scratch);
  const float2* gs = reinterpret_cast<const float2*>(static_cast<const char*>(scratch) +
                                                    int64_t{2} * batch * w.cols);
  if (batch == 1) return LaunchRtnMma<1, true>(w, batch, xh, gs, y, options, stream);
  if (batch <= 8) return LaunchRtnMma<1, false>(w, batch, xh, gs, y, options, stream);
  return LaunchRtnMma<2, false>(w, batch, xh, gs, y, options, stream);
}

cudaError_t RtnGemvMma(const RtnMatrix& w, const float* x, int batch, void* scratch, float* y,
                       const RtnMmaOptions& options, cudaStream_t stream) {
  if (!RtnMmaShapeOk(w, batch, scratch) || !options.Valid()) return cudaErrorInvalidValue;
  const cudaError_t e = RtnMmaPrepare(x, batch, w.cols, w.rows, scratch, y, options.pdl, stream);
  if (e != cudaSuccess) return e;
  return RtnGemvMmaPrepared(w, batch, scratch, y, options, stream);
}

}  // namespace hc::cuda
