#include "core/infer/cuda/hc_gemv_cuda.cuh"
#include "core/infer/cuda/launch.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <vector>

namespace hc::cuda {
namespace {

// One block per SM (the F16 table takes 128 KiB); 32 warps at batch 1 (64 registers each), 16
// warps with 128 registers for the 4 or 16 sums per row of larger batches.
constexpr int ThreadsFor(int batch) { return batch == 1 ? 1024 : 512; }
constexpr int kWordsPerStep = 128;  // 32 lanes x 4 words of codes per row and warp step
constexpr int kF16Copies = 16;

// Rows a warp decodes at once (sharing each x load): more rows, fewer x loads per weight, more
// registers.
constexpr int RowsPerWarp(int bits, int batch) { return batch == 16 || bits == 2 ? 1 : 2; }

// The rows of block `blk` out of `grid`: a balanced contiguous range.
struct RowRange {
  int64_t begin, end;
};
__device__ inline RowRange BlockRows(int64_t rows) {
  const int64_t g = gridDim.x, b = blockIdx.x;
  return {rows * b / g, rows * (b + 1) / g};
}

__device__ inline float WarpSum(float v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

__device__ inline float HalfBits(unsigned short h) { return __half2float(__ushort_as_half(h)); }

// Shift left by n (right for negative n); n is a constant once the callers' loops are unrolled.
__device__ __forceinline__ uint32_t ShiftLeft(uint32_t x, int n) {
  return n >= 0 ? x << n : x >> -n;
}

// The shared-space address of the codebook entry of symbol u of the 32-bit code word `cur`
// (`prev` the word before it, 0 at a block start). The window w holds bits [K u - (12 - K),
// K u + K) of the stream: of `cur` alone when that start p >= 0, else of the pair prev:cur (one
// funnel shift). The offset is built from the word directly, without extracting w first:
//  - kF32: 4 w (one shift, one mask);
//  - kF16x16: copy c = lane mod 16 holds entry w at half index (w / 4) * 64 + c * 4 + w mod 4, so
//    copy c lives in banks 2c, 2c + 1 and lanes l, l + 16 collide at most: the byte offset is
//    ((w << 5) & 0x1FF80) | (lane mod 16) * 8 | ((w << 1) & 6) (two shifts, two three-input
//    logic operations).
// u is a constant after unrolling, so every shift is by a constant.
template <int K, bool kF16>
__device__ __forceinline__ uint32_t LutAddress(uint32_t prev, uint32_t cur, int u, uint32_t base) {
  const int p = K * u - (12 - K);
  uint32_t x = cur;
  int q = p;
  if (p < 0) {
    x = __funnelshift_r(prev, cur, 32 + p);
    q = 0;
  }
  // `base` is the table's shared-space address (plus (lane mod 16) * 8 for kF16x16): one
  // three-input add joins the fields.
  if constexpr (kF16) {
    return (ShiftLeft(x, 5 - q) & 0x1FF80u) + (ShiftLeft(x, 1 - q) & 6u) + base;
  } else {
    return (ShiftLeft(x, 2 - q) & 0x3FFCu) + base;
  }
}

// A codebook value at a shared-space address (32-bit, so no generic-address conversion).
template <bool kF16>
__device__ __forceinline__ float LutValue(uint32_t addr) {
  if constexpr (kF16) {
    unsigned short h;
    asm volatile("ld.shared.u16 %0, [%1];" : "=h"(h) : "r"(addr));
    return __half2float(__ushort_as_half(h));
  } else {
    float f;
    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(f) : "r"(addr));
    return f;
  }
}

// ---------------------------------------------------------------------------------------------
// The rotation of x: one warp per 128-chunk, 4 values per lane; Walsh-Hadamard stages h = 1, 2 in
// registers, h = 4..64 through shuffles, each output one float32 add or subtract in the order of
// hc2::FwhtScalar (so the same bits as the CPU's Rotate), then the exact scaling by 1/128.
// The output is permuted for the GEMV's lanes (XrIndex), so that their x loads are coalesced.
//
// XrIndex: in warp step st (4096 / K columns), lane l holds the 128 / K consecutive columns
// l * 128 / K.. as 4 code words j of kSpw = 32 / K symbols, read as kSpw / 4 float4 q each; the
// float4 (st, j, q) of all 32 lanes are stored together: float4 index ((st * 4 + j) * Q + q) * 32 + l.
template <int K>
__device__ inline int64_t XrIndex(int64_t c) {
  constexpr int kStep = 4096 / K, kPerLane = 128 / K, kSpw = 32 / K, kQ = kSpw / 4;
  const int64_t st = c / kStep;
  const int cc = static_cast<int>(c % kStep), l = cc / kPerLane, r = cc % kPerLane;
  const int j = r / kSpw, q = (r % kSpw) / 4;
  return 4 * (((st * 4 + j) * kQ + q) * 32 + l) + (r & 3);
}

template <int K>
__global__ void RotateKernel(const float* __restrict__ x, int64_t chunks, int64_t cols,
                             float* __restrict__ xr) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaTriggerProgrammaticLaunchCompletion();
#endif
  const int lane = threadIdx.x & 31;
  const int64_t chunk = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (chunk >= chunks) return;
  float4 v = reinterpret_cast<const float4*>(x + chunk * 128)[lane];
  const uint64_t pattern = lane < 16 ? 0x9E3779B97F4A7C15ull : 0xBF58476D1CE4E5B9ull;
  const uint32_t sgn = static_cast<uint32_t>(pattern >> ((4 * lane) & 63)) & 0xF;
  if (sgn & 1) v.x = -v.x;
  if (sgn & 2) v.y = -v.y;
  if (sgn & 4) v.z = -v.z;
  if (sgn & 8) v.w = -v.w;
  float a = v.x + v.y, b = v.x - v.y, c = v.z + v.w, d = v.z - v.w;
  v = make_float4(a + c, b + d, a - c, b - d);
#pragma unroll
  for (int m = 1; m < 32; m <<= 1) {
    const bool upper = lane & m;
    float4 o;
    o.x = __shfl_xor_sync(0xffffffffu, v.x, m);
    o.y = __shfl_xor_sync(0xffffffffu, v.y, m);
    o.z = __shfl_xor_sync(0xffffffffu, v.z, m);
    o.w = __shfl_xor_sync(0xffffffffu, v.w, m);
    v = upper ? make_float4(o.x - v.x, o.y - v.y, o.z - v.z, o.w - v.w)
              : make_float4(v.x + o.x, v.y + o.y, v.z + o.z, v.w + o.w);
  }
  constexpr float kInv = 1.0f / 128.0f;
  const int64_t per_row = cols / 128, b_row = chunk / per_row;
  const int64_t col = (chunk % per_row) * 128 + 4 * lane;
  *reinterpret_cast<float4*>(xr + b_row * cols + XrIndex<K>(col)) =
      make_float4(v.x * kInv, v.y * kInv, v.z * kInv, v.w * kInv);
}

// ---------------------------------------------------------------------------------------------
// The GEMV kernels. Work split: block b owns a contiguous range of rows; its tasks are (group of R
// rows, warp step of 128 code words per row) pairs, dealt to the warps in contiguous runs, so a
// warp mostly walks the steps of one row group and keeps its sums in registers; at a change of
// group it reduces them across the warp into a shared per-row array, written out at the end.
// The next task's codes and scales are loaded before the current one is computed. x is read
// through L1 (it is the same for every row). Measured limits: docs/perf-gemv-cuda.md.

// hc2 fixed, K bits, batch B, R rows per warp, kF16 the table layout. A lane's step is one 16-byte
// load per row: 128 / K consecutive symbols of one block (one scale), the word before its first
// word from the previous lane (0 at a block start).
template <int K, int B, int R, bool kF16, int kThreads>
__global__ void __launch_bounds__(kThreads, 1)
    Hc2GemvKernel(const uint32_t* __restrict__ codes, const unsigned short* __restrict__ scales,
                  int64_t rows, int64_t cols, const float* __restrict__ cb32,
                  const uint16_t* __restrict__ cb16, const float* __restrict__ xr,
                  float* __restrict__ y) {
  constexpr int kSpw = 32 / K, kQ = kSpw / 4;  // symbols and float4 of x per word
  constexpr int kWarps = kThreads / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  const uint32_t lut = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  float* ypart = reinterpret_cast<float*>(smem + (kF16 ? 2 * 4096 * kF16Copies : 4 * 4096));

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const RowRange rr = BlockRows(rows);
  const int nrows = static_cast<int>(rr.end - rr.begin);
  const int64_t words_per_row = cols * K / 32, blocks_per_row = cols / 128;
  const int steps = static_cast<int>(words_per_row / kWordsPerStep);
  const int groups = (nrows + R - 1) / R;
  const int tasks = groups * steps;
  const int t0 = static_cast<int>(static_cast<int64_t>(tasks) * warp / kWarps);
  const int t1 = static_cast<int>(static_cast<int64_t>(tasks) * (warp + 1) / kWarps);

  struct Task {
    uint4 w[R];
    unsigned short s[R];
  };
  auto load = [&](int t, Task& c) {
    const int g = t / steps, st = t % steps;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = min(rr.begin + g * R + r, rr.end - 1);
      c.w[r] = __ldcs(reinterpret_cast<const uint4*>(codes + row * words_per_row +
                                                     st * kWordsPerStep) + lane);
      c.s[r] = __ldg(scales + row * blocks_per_row + st * (32 / K) + lane / K);
    }
  };

  Task cur;
  if (t0 < t1) load(t0, cur);
  // The codebook into shared memory (while the first codes are in flight), and ypart zeroed. All
  // of a thread's loads are issued before its stores (one L2 latency, not one per entry); a
  // warp's stores are consecutive 8-byte slots (no bank conflicts).
  if constexpr (kF16) {
    const uint2* src = reinterpret_cast<const uint2*>(cb16);
    uint2* dst = reinterpret_cast<uint2*>(smem);
    constexpr int kPerThread = 1024 * kF16Copies / kThreads;
    uint2 tmp[kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) tmp[i] = __ldg(src + (threadIdx.x + i * kThreads) / kF16Copies);
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) dst[threadIdx.x + i * kThreads] = tmp[i];
  } else {
    const float4* src = reinterpret_cast<const float4*>(cb32);
    float4* dst = reinterpret_cast<float4*>(smem);
    for (int k = threadIdx.x; k < 1024; k += kThreads) dst[k] = src[k];
  }
  for (int k = threadIdx.x; k < nrows * B; k += kThreads) ypart[k] = 0.0f;
  __syncthreads();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();  // xr comes from the preceding rotation
#endif

  const uint32_t base = lut + (kF16 ? (lane & (kF16Copies - 1)) << 3 : 0);
  const bool block_start = (lane % K) == 0;
  float acc[R][B];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < B; ++b) acc[r][b] = 0.0f;
  int gcur = t0 < t1 ? t0 / steps : 0;

  auto flush = [&](int g) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int b = 0; b < B; ++b) {
        const float v = WarpSum(acc[r][b]);
        acc[r][b] = 0.0f;
        if (lane == 0 && g * R + r < nrows) atomicAdd(&ypart[(g * R + r) * B + b], v);
      }
    }
  };

  const float4* xr4 = reinterpret_cast<const float4*>(xr);
  const int64_t cols4 = cols / 4;
#pragma unroll 1
  for (int t = t0; t < t1; ++t) {
    Task nxt;
    if (t + 1 < t1) load(t + 1, nxt);
    const int g = t / steps, st = t % steps;
    if (g != gcur) {
      flush(gcur);
      gcur = g;
    }
    uint32_t w[R][5];  // w[r][0]: the word before the lane's first word
#pragma unroll
    for (int r = 0; r < R; ++r) {
      w[r][1] = cur.w[r].x;
      w[r][2] = cur.w[r].y;
      w[r][3] = cur.w[r].z;
      w[r][4] = cur.w[r].w;
      const uint32_t up = __shfl_up_sync(0xffffffffu, w[r][4], 1);
      w[r][0] = block_start ? 0u : up;
    }
    float part[R][B];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int b = 0; b < B; ++b) part[r][b] = 0.0f;
    const float4* px = xr4 + static_cast<int64_t>(st) * 4 * kQ * 32 + lane;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float v[R][kSpw];
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < kSpw; ++u) {
          v[r][u] = LutValue<kF16>(LutAddress<K, kF16>(w[r][j], w[r][j + 1], u, base));
        }
      }
#pragma unroll
      for (int b = 0; b < B; ++b) {
        float xv[kSpw];
#pragma unroll
        for (int q = 0; q < kQ; ++q) {
          const float4 f = __ldg(px + b * cols4 + (j * kQ + q) * 32);
          xv[4 * q] = f.x;
          xv[4 * q + 1] = f.y;
          xv[4 * q + 2] = f.z;
          xv[4 * q + 3] = f.w;
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float d0 = 0.0f, d1 = 0.0f;  // two chains: half the FMA latency per word
#pragma unroll
          for (int u = 0; u < kSpw; u += 2) {
            d0 = fmaf(v[r][u], xv[u], d0);
            d1 = fmaf(v[r][u + 1], xv[u + 1], d1);
          }
          part[r][b] += d0 + d1;
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float sc = HalfBits(cur.s[r]);
#pragma unroll
      for (int b = 0; b < B; ++b) acc[r][b] = fmaf(sc, part[r][b], acc[r][b]);
    }
    cur = nxt;
  }
  if (t0 < t1) flush(gcur);
  __syncthreads();
  for (int k = threadIdx.x; k < nrows * B; k += kThreads) {
    const int b = k / nrows, lr = k % nrows;
    y[b * rows + rr.begin + lr] = ypart[lr * B + b];
  }
}

// rtn 4-bit group 128: per word of 8 codes q and 8 x values, sum q x (table-free decode:
// (q | 0x4B000000) as a float is 2^23 + q) and, once per word and batch for all R rows, sum x;
// the group's scale and zero then give s * sum(q x) + m * sum(x).
// In a step, rtn's lane l reads words l, l + 32, l + 64, l + 96 (coalesced 128-byte rows), each
// with its 8 consecutive x values in natural order (two float4; no pre-kernel).
template <int B, int R, int kThreads>
__global__ void __launch_bounds__(kThreads, 1)
    RtnGemvKernel(const uint32_t* __restrict__ codes, const uint32_t* __restrict__ scales,
                  int64_t rows, int64_t cols, const float* __restrict__ x,
                  float* __restrict__ y) {
  constexpr int K = 4, kSpw = 8, kWordsPerGroup = 16, kWarps = kThreads / 32;
  extern __shared__ __align__(16) unsigned char smem[];
  float* ypart = reinterpret_cast<float*>(smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const RowRange rr = BlockRows(rows);
  const int nrows = static_cast<int>(rr.end - rr.begin);
  const int64_t words_per_row = cols * K / 32, groups_per_row = cols / 128;
  const int steps = static_cast<int>(words_per_row / kWordsPerStep);
  const int groups = (nrows + R - 1) / R;
  const int tasks = groups * steps;
  const int t0 = static_cast<int>(static_cast<int64_t>(tasks) * warp / kWarps);
  const int t1 = static_cast<int>(static_cast<int64_t>(tasks) * (warp + 1) / kWarps);

  struct RtnCodes {
    uint32_t w[R][4];
    uint32_t sm[R][4];  // F16 scale (low half) and zero (high half)
  };
  auto load = [&](int t, RtnCodes& c) {
    const int g = t / steps, st = t % steps;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = min(rr.begin + g * R + r, rr.end - 1);
      const uint32_t* p = codes + row * words_per_row + st * kWordsPerStep + lane;
      const uint32_t* ps = scales + row * groups_per_row;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        c.w[r][j] = __ldcs(p + 32 * j);
        c.sm[r][j] = __ldg(ps + (st * kWordsPerStep + 32 * j + lane) / kWordsPerGroup);
      }
    }
  };

  RtnCodes cur;
  if (t0 < t1) load(t0, cur);
  for (int k = threadIdx.x; k < nrows * B; k += kThreads) ypart[k] = 0.0f;
  __syncthreads();

  float acc[R][B];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < B; ++b) acc[r][b] = 0.0f;
  int gcur = t0 < t1 ? t0 / steps : 0;
  auto flush = [&](int g) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int b = 0; b < B; ++b) {
        const float v = WarpSum(acc[r][b]);
        acc[r][b] = 0.0f;
        if (lane == 0 && g * R + r < nrows) atomicAdd(&ypart[(g * R + r) * B + b], v);
      }
    }
  };

  for (int t = t0; t < t1; ++t) {
    RtnCodes nxt;
    if (t + 1 < t1) load(t + 1, nxt);
    const int g = t / steps, st = t % steps;
    if (g != gcur) {
      flush(gcur);
      gcur = g;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float q[R][kSpw];
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int u = 0; u < kSpw; ++u) {
          q[r][u] = __uint_as_float(((cur.w[r][j] >> (4 * u)) & 0xFu) | 0x4B000000u) - 8388608.0f;
        }
      }
      const int64_t col = static_cast<int64_t>(st) * 1024 + (32 * j + lane) * kSpw;
#pragma unroll
      for (int b = 0; b < B; ++b) {
        const float4* px = reinterpret_cast<const float4*>(x + b * cols + col);
        const float4 f0 = __ldg(px), f1 = __ldg(px + 1);
        const float xv[8] = {f0.x, f0.y, f0.z, f0.w, f1.x, f1.y, f1.z, f1.w};
        const float sx = ((xv[0] + xv[1]) + (xv[2] + xv[3])) + ((xv[4] + xv[5]) + (xv[6] + xv[7]));
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
          for (int u = 0; u < kSpw; u += 2) {
            d0 = fmaf(q[r][u], xv[u], d0);
            d1 = fmaf(q[r][u + 1], xv[u + 1], d1);
          }
          const float d = d0 + d1;
          const uint32_t sm = cur.sm[r][j];
          const float s = HalfBits(static_cast<unsigned short>(sm & 0xFFFF));
          const float m = HalfBits(static_cast<unsigned short>(sm >> 16));
          acc[r][b] = fmaf(s, d, fmaf(m, sx, acc[r][b]));
        }
      }
    }
    cur = nxt;
  }
  if (t0 < t1) flush(gcur);
  __syncthreads();
  for (int k = threadIdx.x; k < nrows * B; k += kThreads) {
    const int b = k / nrows, lr = k % nrows;
    y[b * rows + rr.begin + lr] = ypart[lr * B + b];
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers.

// The grid (all SMs times the blocks that fit on one) and the dynamic shared memory: `fixed`
// bytes plus the largest row range of a block times the batch for ypart (sized for a grid of one
// block per SM, which bounds every larger grid).
cudaError_t LaunchShape(const void* kernel, int threads, size_t fixed, int64_t rows, int batch,
                        int* grid, size_t* smem) {
  int dev = 0, sms = 0, per_sm = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  *smem = fixed + static_cast<size_t>((rows + sms - 1) / sms) * batch * sizeof(float);
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(*smem));
  if (e == cudaSuccess) {
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, *smem);
  }
  if (e != cudaSuccess) return e;
  *grid = sms * std::max(per_sm, 1);
  return cudaSuccess;
}

template <int K, int B, bool kF16>
cudaError_t LaunchHc2(const Hc2Matrix& w, const Hc2DeviceCodebook& cb, const float* xr, float* y,
                      bool pdl, cudaStream_t stream) {
  constexpr int kThreads = ThreadsFor(B);
  auto* kernel = &Hc2GemvKernel<K, B, RowsPerWarp(K, B), kF16, kThreads>;
  const size_t lut = kF16 ? 2 * 4096 * kF16Copies : 4 * 4096;
  int grid = 0;
  size_t smem = 0;
  const cudaError_t e =
      LaunchShape(reinterpret_cast<const void*>(kernel), kThreads, lut, w.rows, B, &grid, &smem);
  if (e != cudaSuccess) return e;
  return cuda_internal::LaunchMaybePdl(kernel, dim3(grid), dim3(kThreads), smem, stream, pdl,
                                       reinterpret_cast<const uint32_t*>(w.codes),
                                       reinterpret_cast<const unsigned short*>(w.scales), w.rows,
                                       w.cols, static_cast<const float*>(cb.f32), cb.f16, xr, y);
}

template <int K, int B>
cudaError_t DispatchLut(const Hc2Matrix& w, const Hc2DeviceCodebook& cb, const float* xr, float* y,
                        const GemvOptions& o, cudaStream_t stream) {
  return o.lut == Hc2Lut::kF16x16 ? LaunchHc2<K, B, true>(w, cb, xr, y, o.pdl, stream)
                                  : LaunchHc2<K, B, false>(w, cb, xr, y, o.pdl, stream);
}

template <int K>
cudaError_t DispatchBatch(const Hc2Matrix& w, const Hc2DeviceCodebook& cb, const float* xr, int b,
                          float* y, const GemvOptions& o, cudaStream_t stream) {
  switch (b) {
    case 1: return DispatchLut<K, 1>(w, cb, xr, y, o, stream);
    case 4: return DispatchLut<K, 4>(w, cb, xr, y, o, stream);
    default: return DispatchLut<K, 16>(w, cb, xr, y, o, stream);
  }
}

template <int B>
cudaError_t LaunchRtn(const RtnMatrix& w, const float* x, float* y, cudaStream_t stream) {
  constexpr int kThreads = ThreadsFor(B);
  auto* kernel = &RtnGemvKernel<B, B == 16 ? 2 : RowsPerWarp(4, B), kThreads>;
  int grid = 0;
  size_t smem = 0;
  const cudaError_t e =
      LaunchShape(reinterpret_cast<const void*>(kernel), kThreads, 0, w.rows, B, &grid, &smem);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kThreads, smem, stream>>>(reinterpret_cast<const uint32_t*>(w.codes),
                                           reinterpret_cast<const uint32_t*>(w.scales), w.rows,
                                           w.cols, x, y);
  return cudaGetLastError();
}

// Batches other than 1, 4 and 16 run as several launches over slices of 16, 4 and 1 (each slice
// reads the weights once).
int BatchSlice(int remaining) { return remaining >= 16 ? 16 : remaining >= 4 ? 4 : 1; }

bool ShapeOk(int64_t rows, int64_t cols, int bits, int batch) {
  return rows > 0 && cols > 0 && (bits == 2 || bits == 4) && cols % ColumnStep(bits) == 0 &&
         batch >= 1 && batch <= kMaxBatch && rows <= (int64_t{1} << 31) &&
         rows * cols < (int64_t{1} << 40);
}

}  // namespace

cudaError_t Hc2UploadCodebook(const float* cb, int bits, Hc2DeviceCodebook* out) {
  if (cb == nullptr || out == nullptr || (bits != 2 && bits != 4)) return cudaErrorInvalidValue;
  std::vector<uint16_t> h(kHc2Codebook);
  for (int i = 0; i < kHc2Codebook; ++i) h[i] = __half_as_ushort(__float2half_rn(cb[i]));
  out->bits = bits;
  cudaError_t e = cudaMalloc(&out->f32, kHc2Codebook * sizeof(float));
  if (e == cudaSuccess) e = cudaMalloc(&out->f16, kHc2Codebook * sizeof(uint16_t));
  if (e == cudaSuccess) e = cudaMemcpy(out->f32, cb, kHc2Codebook * sizeof(float), cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(out->f16, h.data(), kHc2Codebook * 2, cudaMemcpyHostToDevice);
  if (e != cudaSuccess) Hc2FreeCodebook(out);
  return e;
}

void Hc2FreeCodebook(Hc2DeviceCodebook* cb) {
  if (cb == nullptr) return;
  cudaFree(cb->f32);
  cudaFree(cb->f16);
  cb->f32 = nullptr;
  cb->f16 = nullptr;
}

cudaError_t Hc2RotateActivations(const float* x, int batch, int64_t cols, int bits, float* xr,
                                 cudaStream_t stream) {
  if (batch < 1 || cols <= 0 || (bits != 2 && bits != 4) || cols % ColumnStep(bits) != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t chunks = batch * cols / 128;
  constexpr int kPerBlock = 4;
  const unsigned grid = static_cast<unsigned>((chunks + kPerBlock - 1) / kPerBlock);
  if (bits == 4) {
    RotateKernel<4><<<grid, 32 * kPerBlock, 0, stream>>>(x, chunks, cols, xr);
  } else {
    RotateKernel<2><<<grid, 32 * kPerBlock, 0, stream>>>(x, chunks, cols, xr);
  }
  return cudaGetLastError();
}

cudaError_t Hc2GemvRotated(const Hc2Matrix& w, const Hc2DeviceCodebook& cb, const float* xr,
                           int batch, float* y, const GemvOptions& options, cudaStream_t stream) {
  if (!ShapeOk(w.rows, w.cols, w.bits, batch) || cb.bits != w.bits) return cudaErrorInvalidValue;
  for (int done = 0; done < batch;) {
    const int b = BatchSlice(batch - done);
    const float* xs = xr + done * w.cols;
    float* ys = y + done * w.rows;
    const cudaError_t e = w.bits == 4 ? DispatchBatch<4>(w, cb, xs, b, ys, options, stream)
                                      : DispatchBatch<2>(w, cb, xs, b, ys, options, stream);
    if (e != cudaSuccess) return e;
    done += b;
  }
  return cudaSuccess;
}

cudaError_t Hc2Gemv(const Hc2Matrix& w, const Hc2DeviceCodebook& cb, const float* x, int batch,
                    float* scratch, float* y, const GemvOptions& options, cudaStream_t stream) {
  if (!ShapeOk(w.rows, w.cols, w.bits, batch)) return cudaErrorInvalidValue;
  const cudaError_t e = Hc2RotateActivations(x, batch, w.cols, w.bits, scratch, stream);
  if (e != cudaSuccess) return e;
  return Hc2GemvRotated(w, cb, scratch, batch, y, options, stream);
}

cudaError_t RtnGemv(const RtnMatrix& w, const float* x, int batch, float* y, cudaStream_t stream) {
  if (!ShapeOk(w.rows, w.cols, 4, batch)) return cudaErrorInvalidValue;
  for (int done = 0; done < batch;) {
    const int b = BatchSlice(batch - done);
    const float* xs = x + done * w.cols;
    float* ys = y + done * w.rows;
    cudaError_t e = cudaSuccess;
    switch (b) {
      case 1: e = LaunchRtn<1>(w, xs, ys, stream); break;
      case 4: e = LaunchRtn<4>(w, xs, ys, stream); break;
      default: e = LaunchRtn<16>(w, xs, ys, stream); break;
    }
    if (e != cudaSuccess) return e;
    done += b;
  }
  return cudaSuccess;
}

}  // namespace hc::cuda
