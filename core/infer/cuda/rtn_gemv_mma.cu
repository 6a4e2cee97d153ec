// rtn 4-bit group-128 GEMV on the tensor cores: RtnGemvMma (method in hc_gemv_cuda.cuh).
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "core/infer/cuda/hc_gemv_cuda.cuh"

namespace hc::cuda {
namespace {

constexpr int kMmaThreads = 512;  // 16 warps, one block per SM, up to 128 registers a thread
constexpr int kMmaStages = 4;     // units of loads in flight per warp (4 KiB of codes)
constexpr int kGsStride = kMaxBatch;  // float2 slots per group in the group-sum table

// The prologue: thread i converts word w = i mod (cols / 8) of vector b = i / (cols / 8), i.e. the
// 8 columns 8w..8w+7, to the half2 (x0, x4), (x1/16, x5/16), (x2, x6), (x3/16, x7/16) (the order
// the GEMV decodes nibbles in), and adds its part of the group's sum(x) and K (see the header) over
// the 16 words of the group with shuffles. It also zeroes y, which the GEMV accumulates into.
__global__ void RtnMmaPrepKernel(const float* __restrict__ x, int batch, int64_t cols,
                                 int64_t rows, uint4* __restrict__ xh, float2* __restrict__ gs,
                                 float* __restrict__ y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaTriggerProgrammaticLaunchCompletion();
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
      if (c & 1) h[c] = __hmul(h[c], __float2half_rn(0.0625f));
      sx += v[c];
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

// One unit's loads for thread (g, t): 16 bytes of codes (32 columns, 4 words) of rows g and g + 8
// of the tile, and the two rows' (scale, zero) pairs of the group.
struct Unit {
  uint4 wa, wb;
  uint32_t sa, sb;
};

__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The 8 nibbles of a code word as the half2 (1024 + q0, 1024 + q4), (1024 + 16 q1, 1024 + 16 q5),
// (1024 + q2, 1024 + q6), (1024 + 16 q3, 1024 + 16 q7): one shift and four LOP3s.
__device__ __forceinline__ void Decode(uint32_t w, uint32_t (&h)[4]) {
  const uint32_t w8 = w >> 8;
  h[0] = (w & 0x000F000Fu) | 0x64006400u;
  h[1] = (w & 0x00F000F0u) | 0x64006400u;
  h[2] = (w8 & 0x000F000Fu) | 0x64006400u;
  h[3] = (w8 & 0x00F000F0u) | 0x64006400u;
}

// The GEMV. Each warp walks units u in [u0, u1) of the grid-wide order (tile-major, group-minor),
// kMmaStages units of loads ahead. Per unit and 32-column word j, thread (g, t) decodes its word
// of row g and of row g + 8 and issues two mma.m16n8k16 (A: the 16 rows' 16 k-slots, B: x of
// vector n = g (+ 8 for the second n-tile); thread t's k-slots are the columns of its own words,
// in the prologue's order). At the group's end, C (rows g, g + 8 x vectors 2t, 2t + 1) is scaled
// into float32 sums, which go to y with one atomic add per row and vector when the tile changes.
// kNt: n-tiles of 8 vectors (1 or 2); kOne: batch is 1 (only c[0] and c[2] of lanes t = 0 count).
template <int kNt, bool kOne>
__global__ void __launch_bounds__(kMmaThreads, 1)
    RtnMmaKernel(const uint4* __restrict__ codes, const uint32_t* __restrict__ scales,
                 int64_t rows, int64_t cols, int batch, const uint4* __restrict__ xh,
                 const float2* __restrict__ gs, float* __restrict__ y) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t groups = cols / 128, tiles = (rows + 15) / 16, units = tiles * groups;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kMmaThreads / 32);
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * (kMmaThreads / 32) + (threadIdx.x >> 5);
  const int64_t u0 = units * gw / warps, u1 = units * (gw + 1) / warps;
  const int64_t row_u4 = cols / 32;  // uint4 of codes per row

  // Units are visited in order, so (tile, group) advance as counters (no 64-bit divisions).
  struct Pos {
    int tile, grp;
    __device__ void Next(int groups) {
      if (++grp == groups) {
        grp = 0;
        ++tile;
      }
    }
  };
  const int ngroups = static_cast<int>(groups);
  auto load = [&](const Pos& p, Unit& c) {
    const int64_t ra = min(int64_t{p.tile} * 16 + g, rows - 1);
    const int64_t rb = min(int64_t{p.tile} * 16 + g + 8, rows - 1);
    c.wa = __ldcs(codes + ra * row_u4 + p.grp * 4 + t);
    c.wb = __ldcs(codes + rb * row_u4 + p.grp * 4 + t);
    c.sa = __ldg(scales + ra * groups + p.grp);
    c.sb = __ldg(scales + rb * groups + p.grp);
  };
  const int count = static_cast<int>(u1 - u0);
  Pos lp{static_cast<int>(u0 / groups), static_cast<int>(u0 % groups)};
  const Pos first = lp;

  Unit stage[kMmaStages];
#pragma unroll
  for (int s = 0; s < kMmaStages; ++s) {
    if (s < count) {
      load(lp, stage[s]);
      lp.Next(ngroups);
    }
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();  // xh, gs and the zeroed y come from the prologue
#endif

  // The vectors of this thread's B fragment (n = g, g + 8) and of its C entries (n = 2t, 2t + 1,
  // plus 8 for the second n-tile), clamped into the batch (clamped ones are computed, not written).
  int nb[kNt];
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) nb[nt] = min(8 * nt + g, batch - 1);
  const int64_t xrow = cols / 8;  // uint4 of xh per vector

  float acc[kNt][4];
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
  Pos cp = first;
  int cur_tile = first.tile;

  auto flush = [&](int tile) {
    const int64_t ra = int64_t{tile} * 16 + g, rb = ra + 8;
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int n = 8 * nt + 2 * t + (e & 1);
        const int64_t r = e < 2 ? ra : rb;
        const bool used = kOne ? (t == 0 && (e & 1) == 0) : n < batch;
        if (used && r < rows) atomicAdd(y + n * rows + r, acc[nt][e]);
        acc[nt][e] = 0.0f;
      }
    }
  };

  auto compute = [&](const Unit& c) {
    const int grp = cp.grp;
    if (cp.tile != cur_tile) {
      flush(cur_tile);
      cur_tile = cp.tile;
    }
    float cc[kNt][4];
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) cc[nt][e] = 0.0f;
    const uint32_t wa[4] = {c.wa.x, c.wa.y, c.wa.z, c.wa.w};
    const uint32_t wb[4] = {c.wb.x, c.wb.y, c.wb.z, c.wb.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      uint32_t ha[4], hb[4];
      Decode(wa[j], ha);
      Decode(wb[j], hb);
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
        const uint4 xv = __ldg(xh + nb[nt] * xrow + grp * 16 + 4 * t + j);
        Mma(cc[nt], ha[0], hb[0], ha[1], hb[1], xv.x, xv.y);
        Mma(cc[nt], ha[2], hb[2], ha[3], hb[3], xv.z, xv.w);
      }
    }
    const float2 fa = __half22float2(*reinterpret_cast<const __half2*>(&c.sa));
    const float2 fb = __half22float2(*reinterpret_cast<const __half2*>(&c.sb));
    const float sa = fa.x, ma = fmaf(8.0f, fa.x, fa.y), sb = fb.x, mb = fmaf(8.0f, fb.x, fb.y);
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
      for (int e = 0; e < (kOne ? 1 : 2); ++e) {
        const int n = kOne ? 0 : min(8 * nt + 2 * t + e, batch - 1);
        const float2 sk = __ldg(gs + grp * kGsStride + n);  // (sum x, K)
        acc[nt][e] = fmaf(sa, cc[nt][e] - sk.y, fmaf(ma, sk.x, acc[nt][e]));
        acc[nt][e + 2] = fmaf(sb, cc[nt][e + 2] - sk.y, fmaf(mb, sk.x, acc[nt][e + 2]));
      }
    }
    cp.Next(ngroups);
  };

#pragma unroll 1
  for (int base = 0; base < count; base += kMmaStages) {
#pragma unroll
    for (int s = 0; s < kMmaStages; ++s) {
      if (base + s < count) {
        const Unit c = stage[s];
        if (base + s + kMmaStages < count) {
          load(lp, stage[s]);
          lp.Next(ngroups);
        }
        compute(c);
      }
    }
  }
  if (count > 0) flush(cur_tile);
}

template <int kNt, bool kOne>
cudaError_t LaunchRtnMma(const RtnMatrix& w, int batch, const uint4* xh, const float2* gs,
                         float* y, bool pdl, cudaStream_t stream) {
  auto* kernel = &RtnMmaKernel<kNt, kOne>;
  int dev = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(sms);
  cfg.blockDim = dim3(kMmaThreads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, reinterpret_cast<const uint4*>(w.codes),
                            reinterpret_cast<const uint32_t*>(w.scales), w.rows, w.cols, batch,
                            xh, gs, y);
}

}  // namespace

cudaError_t RtnGemvMma(const RtnMatrix& w, const float* x, int batch, void* scratch, float* y,
                       bool pdl, cudaStream_t stream) {
  if (w.rows <= 0 || w.cols <= 0 || w.cols % 128 != 0 || batch < 1 || batch > kMaxBatch ||
      w.rows > (int64_t{1} << 31) || w.rows * w.cols >= (int64_t{1} << 40) || scratch == nullptr ||
      reinterpret_cast<uintptr_t>(scratch) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  uint4* xh = static_cast<uint4*>(scratch);
  float2* gs = reinterpret_cast<float2*>(static_cast<char*>(scratch) + int64_t{2} * batch * w.cols);
  const int64_t work = std::max<int64_t>(batch * w.cols / 8, (batch * w.rows + 7) / 8);
  constexpr int kPrepThreads = 256;
  RtnMmaPrepKernel<<<static_cast<unsigned>((work + kPrepThreads - 1) / kPrepThreads),
                     kPrepThreads, 0, stream>>>(x, batch, w.cols, w.rows, xh, gs, y);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if (batch == 1) return LaunchRtnMma<1, true>(w, batch, xh, gs, y, pdl, stream);
  if (batch <= 8) return LaunchRtnMma<1, false>(w, batch, xh, gs, y, pdl, stream);
  return LaunchRtnMma<2, false>(w, batch, xh, gs, y, pdl, stream);
}

}  // namespace hc::cuda
