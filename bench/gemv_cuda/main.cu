// hyperc-gemv-cuda: checks and times the fused decode + GEMV kernels of
// core/infer/cuda/hc_gemv_cuda.cuh on the GPU. Standalone (CUDA runtime only).
//
//   hyperc-gemv-cuda [--vectors FILE] [--check-only] [--layer] [--json FILE] [--shapes R1xC1,...]
//
// 1. With --vectors (written by hyperc-gemv-vectors from the real hc2 fixed / rtn encoders): each
//    record's y is computed on the GPU for batch 1, 4 and 16 and compared with the record's y_ref
//    (the codec's DecodeRange, then the product in double); the standalone host decoder below is
//    compared with y_ref too.
// 2. For each shape (default 4096x4096 and 11008x4096) with random codes and scales: the GPU result
//    against this file's host decode-then-multiply in double, batch 1, 4, 16.
// 3. Timings (unless --check-only): CUDA graphs of back-to-back launches cycling over enough
//    weight copies to exceed the L2 cache, median over trials; one JSON object per line.
// 4. With --layer: a LLaMA-7B layer's 7 matrices in rtn through RtnGemvMma in one graph (RunLayer).
// Error metric: max_i |y_i - ref_i| / rms(ref). Exit codes: 0 all checks passed, 1 a check failed
// or a CUDA error, 77 no CUDA device (ctest reports the test as skipped).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/infer/cuda/hc_gemv_cuda.cuh"

namespace {

using hc::cuda::Hc2Lut;

#define CHECK_CUDA(expr)                                                                   \
  do {                                                                                     \
    const cudaError_t e_ = (expr);                                                         \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
                   __LINE__, #expr);                                                       \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

constexpr double kTolF32 = 1e-4;  // float32 codebook / rtn: float32 rounding only
constexpr double kTolF16 = 2e-3;  // F16 codebook: relative rounding of each value <= 2^-12

FILE* g_json = nullptr;
int g_failures = 0;

void Emit(const std::string& line) {
  std::printf("%s\n", line.c_str());
  if (g_json != nullptr) std::fprintf(g_json, "%s\n", line.c_str());
}

float HalfToFloat(uint16_t h) { return __half2float(__ushort_as_half(h)); }
uint16_t FloatToHalf(float f) { return __half_as_ushort(__float2half_rn(f)); }

// ---------------------------------------------------------------------------------------------
// Host reference decoders (double), written from spec-hc2.md section 4 and rtn.h.

struct HostMatrix {
  int kind = 0;  // 0 hc2 fixed, 1 rtn 4-bit g128
  int bits = 4;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scales;
};

uint32_t Symbol(const std::vector<uint8_t>& codes, uint64_t i, int bits) {
  const uint64_t bit = i * bits;
  const uint32_t two = codes[bit / 8] | (bit / 8 + 1 < codes.size() ? codes[bit / 8 + 1] << 8 : 0);
  return (two >> (bit % 8)) & ((1u << bits) - 1);
}

// Row `r` of W decoded in double.
void DecodeRow(const HostMatrix& m, const std::vector<float>& cb, int64_t r, double* out) {
  const uint64_t base = static_cast<uint64_t>(r) * m.cols;
  if (m.kind == 1) {
    for (int64_t c = 0; c < m.cols; ++c) {
      const uint64_t g = (base + c) / 128;
      out[c] = Symbol(m.codes, base + c, 4) * static_cast<double>(HalfToFloat(m.scales[2 * g])) +
               HalfToFloat(m.scales[2 * g + 1]);
    }
    return;
  }
  for (int64_t c0 = 0; c0 < m.cols; c0 += 128) {
    const uint64_t blk = (base + c0) / 128;
    const double s = HalfToFloat(m.scales[blk]);
    double z[128];
    uint32_t w = 0;
    for (int i = 0; i < 128; ++i) {
      w = (w >> m.bits) | (Symbol(m.codes, blk * 128 + i, m.bits) << (12 - m.bits));
      z[i] = s * cb[w];
    }
    for (int h = 1; h < 128; h *= 2) {
      for (int i = 0; i < 128; i += 2 * h) {
        for (int j = i; j < i + h; ++j) {
          const double a = z[j], b = z[j + h];
          z[j] = a + b;
          z[j + h] = a - b;
        }
      }
    }
    const uint64_t pat[2] = {0x9E3779B97F4A7C15ull, 0xBF58476D1CE4E5B9ull};
    for (int i = 0; i < 128; ++i) {
      const double sign = (pat[i >> 6] >> (i & 63)) & 1 ? -1.0 : 1.0;
      out[c0 + i] = sign * z[i] / 128.0;
    }
  }
}

// y_ref[b][r] = sum_c W[r][c] x[b][c], in double.
std::vector<double> HostGemv(const HostMatrix& m, const std::vector<float>& cb,
                             const std::vector<float>& x, int batch) {
  std::vector<double> y(static_cast<size_t>(batch) * m.rows), row(m.cols);
  for (int64_t r = 0; r < m.rows; ++r) {
    DecodeRow(m, cb, r, row.data());
    for (int b = 0; b < batch; ++b) {
      double acc = 0;
      const float* xb = x.data() + static_cast<size_t>(b) * m.cols;
      for (int64_t c = 0; c < m.cols; ++c) acc += row[c] * xb[c];
      y[static_cast<size_t>(b) * m.rows + r] = acc;
    }
  }
  return y;
}

double RelMaxErr(const float* y, const double* ref, size_t n) {
  double ss = 0, mx = 0;
  for (size_t i = 0; i < n; ++i) ss += ref[i] * ref[i];
  const double rms = std::sqrt(ss / static_cast<double>(n));
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(y[i]) - ref[i]);
    if (!(d <= mx)) mx = std::isnan(d) ? INFINITY : d;
  }
  return rms > 0 ? mx / rms : mx;
}

// ---------------------------------------------------------------------------------------------
// Device copies.

struct DeviceMatrix {
  uint8_t* codes = nullptr;
  uint16_t* scales = nullptr;
  int64_t rows = 0, cols = 0;
  int bits = 4;
  int kind = 0;
  hc::cuda::Hc2Matrix hc2() const { return {codes, scales, rows, cols, bits}; }
  hc::cuda::RtnMatrix rtn() const { return {codes, scales, rows, cols}; }
  size_t bytes() const {
    return static_cast<size_t>(rows * cols * bits / 8) +
           static_cast<size_t>(rows * cols / 128) * (kind == 1 ? 4 : 2);
  }
};

DeviceMatrix Upload(const HostMatrix& m) {
  DeviceMatrix d;
  d.rows = m.rows;
  d.cols = m.cols;
  d.bits = m.bits;
  d.kind = m.kind;
  CHECK_CUDA(cudaMalloc(&d.codes, m.codes.size()));
  CHECK_CUDA(cudaMalloc(&d.scales, m.scales.size() * 2));
  CHECK_CUDA(cudaMemcpy(d.codes, m.codes.data(), m.codes.size(), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d.scales, m.scales.data(), m.scales.size() * 2, cudaMemcpyHostToDevice));
  return d;
}

void Free(DeviceMatrix& d) {
  CHECK_CUDA(cudaFree(d.codes));
  CHECK_CUDA(cudaFree(d.scales));
}

struct Variant {
  const char* name;
  int kind;  // 0 hc2, 1 rtn (float32 CUDA cores), 2 rtn on the tensor cores (RtnGemvMma)
  Hc2Lut lut;
  int MatrixKind() const { return kind == 0 ? 0 : 1; }
  // The column multiple the variant takes for `bits`.
  int64_t ColumnStep(int bits) const { return kind == 2 ? 256 : hc::cuda::ColumnStep(bits); }
  // Tolerance of the max-error metric: float32 rounding, or an F16 codebook / F16 activations.
  double Tol() const {
    return kind == 2 || (kind == 0 && lut == Hc2Lut::kF16x16) ? kTolF16 : kTolF32;
  }
};
constexpr Variant kVariants[] = {{"hc2_f16x16", 0, Hc2Lut::kF16x16},
                                 {"hc2_f32", 0, Hc2Lut::kF32},
                                 {"rtn", 1, Hc2Lut::kF32},
                                 {"rtn_mma", 2, Hc2Lut::kF32}};

// y = W x on the GPU for the variant (the full fused path for hc2: rotation, then the GEMV).
void RunGpu(const Variant& v, const DeviceMatrix& d, const hc::cuda::Hc2DeviceCodebook& cb,
            const float* x, float* scratch, int batch, float* y, cudaStream_t s) {
  hc::cuda::GemvOptions o;
  o.lut = v.lut;
  if (v.kind == 0) {
    CHECK_CUDA(hc::cuda::Hc2Gemv(d.hc2(), cb, x, batch, scratch, y, o, s));
  } else if (v.kind == 1) {
    CHECK_CUDA(hc::cuda::RtnGemv(d.rtn(), x, batch, y, s));
  } else {
    // scratch holds batch * cols floats, more than RtnMmaScratchBytes(batch, cols).
    CHECK_CUDA(hc::cuda::RtnGemvMma(d.rtn(), x, batch, scratch, y, {}, s));
  }
}

// Runs the variant on the GPU (output poisoned with NaN first) and returns the error vs ref.
double CheckGpu(const Variant& v, const DeviceMatrix& d, const hc::cuda::Hc2DeviceCodebook& cb,
                const std::vector<float>& x, int batch, const double* ref) {
  float *dx = nullptr, *dxr = nullptr, *dy = nullptr;
  const size_t ny = static_cast<size_t>(batch) * d.rows;
  CHECK_CUDA(cudaMalloc(&dx, static_cast<size_t>(batch) * d.cols * 4));
  CHECK_CUDA(cudaMalloc(&dxr, static_cast<size_t>(batch) * d.cols * 4));
  CHECK_CUDA(cudaMalloc(&dy, ny * 4));
  CHECK_CUDA(cudaMemcpy(dx, x.data(), static_cast<size_t>(batch) * d.cols * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemset(dy, 0xFF, ny * 4));  // NaN: every element must be written
  RunGpu(v, d, cb, dx, dxr, batch, dy, 0);
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> y(ny);
  CHECK_CUDA(cudaMemcpy(y.data(), dy, ny * 4, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaFree(dx));
  CHECK_CUDA(cudaFree(dxr));
  CHECK_CUDA(cudaFree(dy));
  return RelMaxErr(y.data(), ref, ny);
}

void Report(const char* source, const char* variant, int bits, int64_t rows, int64_t cols,
            int batch, double err, double tol) {
  const bool ok = err <= tol;
  if (!ok) ++g_failures;
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "{\"check\":\"%s\",\"variant\":\"%s\",\"bits\":%d,\"rows\":%lld,\"cols\":%lld,"
                "\"batch\":%d,\"max_err_over_rms\":%.3e,\"tol\":%.1e,\"ok\":%s}",
                source, variant, bits, static_cast<long long>(rows), static_cast<long long>(cols),
                batch, err, tol, ok ? "true" : "false");
  Emit(buf);
}

// ---------------------------------------------------------------------------------------------
// The vectors file (bench/gemv_vectors.cc): "HCGV0001", u32 count, then per record u32 kind,
// bits, rows, cols, batch; u64 + bytes of codes; u64 + bytes of scales; f32 codebook[4096] (hc2
// only); f32 x[batch][cols]; f64 y_ref[batch][rows].

struct Record {
  HostMatrix m;
  int batch = 0;
  std::vector<float> cb, x;
  std::vector<double> yref;
};

template <typename T>
bool ReadVec(FILE* f, std::vector<T>& v, size_t n) {
  v.resize(n);
  return std::fread(v.data(), sizeof(T), n, f) == n;
}

bool ReadVectors(const char* path, std::vector<Record>* out) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  char magic[8];
  uint32_t count = 0;
  bool ok = std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, "HCGV0001", 8) == 0 &&
            std::fread(&count, 4, 1, f) == 1;
  for (uint32_t i = 0; ok && i < count; ++i) {
    Record r;
    uint32_t h[5];
    uint64_t nc = 0, ns = 0;
    ok = std::fread(h, 4, 5, f) == 5 && std::fread(&nc, 8, 1, f) == 1 && ReadVec(f, r.m.codes, nc) &&
         std::fread(&ns, 8, 1, f) == 1 && ReadVec(f, r.m.scales, ns / 2);
    if (!ok) break;
    r.m.kind = static_cast<int>(h[0]);
    r.m.bits = static_cast<int>(h[1]);
    r.m.rows = h[2];
    r.m.cols = h[3];
    r.batch = static_cast<int>(h[4]);
    if (r.m.kind == 0) ok = ReadVec(f, r.cb, 4096);
    ok = ok && ReadVec(f, r.x, static_cast<size_t>(r.batch) * r.m.cols) &&
         ReadVec(f, r.yref, static_cast<size_t>(r.batch) * r.m.rows);
    out->push_back(std::move(r));
  }
  std::fclose(f);
  return ok;
}

// y_ref rows for the first `batch` vectors of a record ([batch][rows] is a prefix).
void CheckVectors(const std::vector<Record>& recs) {
  for (const Record& r : recs) {
    hc::cuda::Hc2DeviceCodebook cb;
    if (r.m.kind == 0) CHECK_CUDA(hc::cuda::Hc2UploadCodebook(r.cb.data(), r.m.bits, &cb));
    DeviceMatrix d = Upload(r.m);
    // The standalone host decoder against the codec's own decode.
    const std::vector<double> host = HostGemv(r.m, r.cb, r.x, r.batch);
    std::vector<float> hostf(host.begin(), host.end());
    Report("vectors_host_decoder", r.m.kind == 0 ? "hc2" : "rtn", r.m.bits, r.m.rows, r.m.cols,
           r.batch, RelMaxErr(hostf.data(), r.yref.data(), host.size()), 1e-5);
    for (const Variant& v : kVariants) {
      if (v.MatrixKind() != r.m.kind) continue;
      for (int batch : {1, 3, 4, 9, 16}) {
        if (batch > r.batch || (v.kind != 2 && batch != 1 && batch != 4 && batch != 16)) continue;
        const double err = CheckGpu(v, d, cb, r.x, batch, r.yref.data());
        Report("vectors_gpu", v.name, r.m.bits, r.m.rows, r.m.cols, batch, err, v.Tol());
      }
    }
    Free(d);
    hc::cuda::Hc2FreeCodebook(&cb);
  }
}

// ---------------------------------------------------------------------------------------------
// Reference points for the timings: an empty kernel (the launch floor in a graph) and a plain
// streaming read of the same bytes as the weights (16-byte loads, one block per SM x 4), the
// speed any kernel reading them could reach at this size.

__global__ void EmptyKernel() {}

__global__ void ReadKernel(const uint4* __restrict__ p, size_t n, uint32_t* __restrict__ out) {
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcs(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;  // keeps the loads
}

// The same read with all of a thread's loads issued before the first use (kLoads 16-byte loads a
// thread, one pass, no grid-stride loop): the most memory-level parallelism per thread.
template <int kLoads>
__global__ void ReadAllKernel(const uint4* __restrict__ p, size_t n, uint32_t* __restrict__ out) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t i0 = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  uint4 v[kLoads];
#pragma unroll
  for (int k = 0; k < kLoads; ++k) {
    v[k] = i0 + k * stride < n ? __ldcs(p + i0 + k * stride) : uint4{};
  }
  uint32_t acc = 0;
#pragma unroll
  for (int k = 0; k < kLoads; ++k) acc ^= v[k].x ^ v[k].y ^ v[k].z ^ v[k].w;
  if (acc == 0x12345678u) out[0] = acc;
}

// The rtn codes read in the first RtnGemvMma version's pattern (registers, no shared staging) and
// nothing else: 16 warps per SM, each warp a balanced run of 16-row x 128-column units, lane
// 4 g + t loading 16 bytes of rows g and g + 8 per unit (64 contiguous bytes per row), 4 units in
// flight. Against ReadAllKernel it shows what that access pattern costs.
__global__ void __launch_bounds__(512, 1)
    ReadMmaPatternKernel(const uint4* __restrict__ codes, int64_t rows, int64_t cols,
                         uint32_t* __restrict__ out) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t groups = cols / 128, units = (rows + 15) / 16 * groups;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * 16;
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * 16 + (threadIdx.x >> 5);
  const int64_t u0 = units * gw / warps, u1 = units * (gw + 1) / warps;
  uint32_t acc = 0;
  constexpr int kStages = 4;
  uint4 st[kStages][2];
  auto ptr = [&](int64_t u, int r) {
    const int64_t tile = u / groups, grp = u % groups;
    return codes + min(tile * 16 + g + r, rows - 1) * (cols / 32) + grp * 4 + t;
  };
#pragma unroll
  for (int s = 0; s < kStages; ++s) {
    if (u0 + s < u1) {
      st[s][0] = __ldcs(ptr(u0 + s, 0));
      st[s][1] = __ldcs(ptr(u0 + s, 8));
    }
  }
  for (int64_t b = u0; b < u1; b += kStages) {
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      if (b + s < u1) {
        acc ^= st[s][0].x ^ st[s][0].y ^ st[s][1].z ^ st[s][1].w;
        if (b + s + kStages < u1) {
          st[s][0] = __ldcs(ptr(b + s + kStages, 0));
          st[s][1] = __ldcs(ptr(b + s + kStages, 8));
        }
      }
    }
  }
  if (acc == 0x12345678u) out[0] = acc;
}

// ---------------------------------------------------------------------------------------------
// Random full-size matrices.

HostMatrix RandomMatrix(int kind, int bits, int64_t rows, int64_t cols, std::mt19937_64& rng) {
  HostMatrix m;
  m.kind = kind;
  m.bits = bits;
  m.rows = rows;
  m.cols = cols;
  m.codes.resize(static_cast<size_t>(rows * cols * bits / 8));
  for (auto& c : m.codes) c = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  const int64_t groups = rows * cols / 128;
  if (kind == 0) {
    m.scales.resize(groups);
    for (auto& s : m.scales) s = FloatToHalf(0.02f * u(rng));
  } else {
    m.scales.resize(2 * groups);
    for (int64_t g = 0; g < groups; ++g) {
      const float s = 0.004f * u(rng);
      m.scales[2 * g] = FloatToHalf(s);
      m.scales[2 * g + 1] = FloatToHalf(-7.5f * s * u(rng));
    }
  }
  return m;
}

std::vector<float> RandomX(int batch, int64_t cols, std::mt19937_64& rng) {
  std::vector<float> x(static_cast<size_t>(batch) * cols);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& v : x) v = n(rng);
  return x;
}

// Median time in microseconds of one launch of `launch(i)` (i the copy to use): a CUDA graph of
// `per_graph` launches cycling over the copies, replayed after warm-up, `trials` timed replays.
double TimeUs(const std::function<void(int, cudaStream_t)>& launch, int copies, int per_graph,
              int trials) {
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < per_graph; ++i) launch(i % copies, s);
  CHECK_CUDA(cudaStreamEndCapture(s, &g));
  CHECK_CUDA(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 3; ++i) CHECK_CUDA(cudaGraphLaunch(ge, s));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  for (int i = 0; i < trials; ++i) {
    CHECK_CUDA(cudaEventRecord(a, s));
    CHECK_CUDA(cudaGraphLaunch(ge, s));
    CHECK_CUDA(cudaEventRecord(b, s));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(1000.0 * ms / per_graph);
  }
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  CHECK_CUDA(cudaGraphExecDestroy(ge));
  CHECK_CUDA(cudaGraphDestroy(g));
  CHECK_CUDA(cudaStreamDestroy(s));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void EmitTime(const char* variant, int bits, int64_t rows, int64_t cols, int batch, double us,
              double bytes, int copies) {
  char buf[512];
  const double gbs = bytes / (us * 1e3);
  std::snprintf(buf, sizeof(buf),
                "{\"time\":\"%s\",\"bits\":%d,\"rows\":%lld,\"cols\":%lld,\"batch\":%d,"
                "\"us\":%.3f,\"bytes\":%.0f,\"GBps\":%.1f,\"frac_4800\":%.3f,\"copies\":%d}",
                variant, bits, static_cast<long long>(rows), static_cast<long long>(cols), batch,
                us, bytes, gbs, gbs / 4800.0, copies);
  Emit(buf);
}

// rtn_mma at batch 1: the other launch shapes (warps per block, stages), without PDL, and the
// GEMV alone on x prepared once (so the prologue's cost is the difference).
void TimeRtnMmaVariants(const std::vector<DeviceMatrix>& ds, const float* dx, float* scratch,
                        float* dy, int batch, double bytes, int per_graph) {
  const DeviceMatrix& d = ds[0];
  const int copies = static_cast<int>(ds.size());
  char name[64];
  for (const auto& [tiles, warps, stages, pdl] :
       {std::tuple{1, 16, 6, true}, std::tuple{2, 16, 3, true}, std::tuple{2, 8, 6, true},
        std::tuple{1, 16, 4, false}}) {
    hc::cuda::RtnMmaOptions o;
    o.tiles = tiles;
    o.warps = warps;
    o.stages = stages;
    o.pdl = pdl;
    const double us = TimeUs(
        [&](int i, cudaStream_t s) {
          CHECK_CUDA(hc::cuda::RtnGemvMma(ds[i].rtn(), dx, batch, scratch, dy, o, s));
        },
        copies, per_graph, 9);
    std::snprintf(name, sizeof(name), "rtn_mma_t%d_w%d_s%d%s", tiles, warps, stages,
                  pdl ? "" : "_nopdl");
    EmitTime(name, 4, d.rows, d.cols, batch, us, bytes, copies);
  }
  CHECK_CUDA(hc::cuda::RtnMmaPrepare(dx, batch, d.cols, d.rows, scratch, dy, false, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  hc::cuda::RtnMmaOptions o;
  o.pdl = false;
  const double us = TimeUs(
      [&](int i, cudaStream_t s) {
        CHECK_CUDA(hc::cuda::RtnGemvMmaPrepared(ds[i].rtn(), batch, scratch, dy, o, s));
      },
      copies, per_graph, 9);
  EmitTime("rtn_mma_gemv_only", 4, d.rows, d.cols, batch, us, bytes, copies);
  const double us_p = TimeUs(
      [&](int, cudaStream_t s) {
        CHECK_CUDA(hc::cuda::RtnMmaPrepare(dx, batch, d.cols, d.rows, scratch, dy, false, s));
      },
      1, 256, 9);
  EmitTime("rtn_mma_prep_only", 4, d.rows, d.cols, batch, us_p, 0.0, 1);
}

// Whether variant v runs on a random matrix of this kind (0 hc2, 1 rtn), bits and column count.
bool Runs(const Variant& v, int kind, int bits, int64_t cols) {
  return v.MatrixKind() == kind && cols % v.ColumnStep(bits) == 0 &&
         (bits == 4 || v.lut == Hc2Lut::kF16x16);
}

void RunShape(int64_t rows, int64_t cols, const std::vector<float>& cb4,
              const std::vector<float>& cb2, bool time_it, std::mt19937_64& rng) {
  for (int kind : {0, 1}) {
    for (int bits : {4, 2}) {
      if (kind == 1 && bits == 2) continue;
      const HostMatrix m = RandomMatrix(kind, bits, rows, cols, rng);
      const std::vector<float>& cbh = bits == 4 ? cb4 : cb2;
      hc::cuda::Hc2DeviceCodebook cb;
      if (kind == 0) CHECK_CUDA(hc::cuda::Hc2UploadCodebook(cbh.data(), bits, &cb));
      const std::vector<float> x = RandomX(16, cols, rng);
      const std::vector<double> ref = HostGemv(m, cbh, x, 16);
      DeviceMatrix d0 = Upload(m);
      for (const Variant& v : kVariants) {
        if (!Runs(v, kind, bits, cols)) continue;
        for (int batch : {1, 4, 16}) {
          // ref is [16][rows]: its prefix is the reference of the first `batch` vectors.
          std::vector<double> rb(static_cast<size_t>(batch) * rows);
          std::copy(ref.begin(), ref.begin() + rb.size(), rb.begin());
          Report("random_gpu", v.name, bits, rows, cols, batch, CheckGpu(v, d0, cb, x, batch, rb.data()),
                 v.Tol());
        }
      }
      if (time_it) {
        // Copies of the weights so that a graph's launches stream from DRAM, not the 60 MB L2.
        const int copies = static_cast<int>(std::max<size_t>(4, (512u << 20) / d0.bytes() + 1));
        std::vector<DeviceMatrix> ds(copies, d0);
        for (int i = 1; i < copies; ++i) {
          CHECK_CUDA(cudaMalloc(&ds[i].codes, m.codes.size()));
          CHECK_CUDA(cudaMalloc(&ds[i].scales, m.scales.size() * 2));
          CHECK_CUDA(cudaMemcpy(ds[i].codes, d0.codes, m.codes.size(), cudaMemcpyDeviceToDevice));
          CHECK_CUDA(cudaMemcpy(ds[i].scales, d0.scales, m.scales.size() * 2, cudaMemcpyDeviceToDevice));
        }
        float *dx = nullptr, *dxr = nullptr, *dy = nullptr;
        CHECK_CUDA(cudaMalloc(&dx, x.size() * 4));
        CHECK_CUDA(cudaMalloc(&dxr, x.size() * 4));
        CHECK_CUDA(cudaMalloc(&dy, 16 * rows * 4));
        CHECK_CUDA(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
        const int per_graph = std::max(64, std::min(1024, 200 * copies));
        if (kind == 0 && bits == 4) {
          int sms = 0;
          CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
          const double us_e = TimeUs([&](int, cudaStream_t s) { EmptyKernel<<<sms, 32, 0, s>>>(); },
                                     1, 1024, 9);
          EmitTime("empty_kernel", bits, rows, cols, 1, us_e, 0.0, 1);
          const double us_r = TimeUs(
              [&](int i, cudaStream_t s) {
                ReadKernel<<<4 * sms, 1024, 0, s>>>(reinterpret_cast<const uint4*>(ds[i].codes),
                                                    m.codes.size() / 16,
                                                    reinterpret_cast<uint32_t*>(dy));
              },
              copies, per_graph, 9);
          EmitTime("read_codes_only", bits, rows, cols, 1, us_r,
                   static_cast<double>(m.codes.size()), copies);
          const size_t n16 = m.codes.size() / 16;
          const unsigned grid_all = static_cast<unsigned>((n16 + 4 * 1024 - 1) / (4 * 1024));
          const double us_a = TimeUs(
              [&](int i, cudaStream_t s) {
                ReadAllKernel<4><<<grid_all, 1024, 0, s>>>(
                    reinterpret_cast<const uint4*>(ds[i].codes), n16,
                    reinterpret_cast<uint32_t*>(dy));
              },
              copies, per_graph, 9);
          EmitTime("read_codes_all_in_flight", bits, rows, cols, 1, us_a,
                   static_cast<double>(m.codes.size()), copies);
        }
        for (int batch : {1, 4, 16}) {
          const double bytes = static_cast<double>(d0.bytes()) + 4.0 * batch * (cols + rows);
          for (const Variant& v : kVariants) {
            if (!Runs(v, kind, bits, cols)) continue;
            const double us = TimeUs(
                [&](int i, cudaStream_t s) { RunGpu(v, ds[i], cb, dx, dxr, batch, dy, s); },
                copies, per_graph, 9);
            EmitTime(v.name, bits, rows, cols, batch, us, bytes, copies);
            if (v.kind == 2 && batch == 1) {
              TimeRtnMmaVariants(ds, dx, dxr, dy, batch, bytes, per_graph);
              int sms = 0;
              CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
              const double us_p = TimeUs(
                  [&](int i, cudaStream_t s) {
                    ReadMmaPatternKernel<<<sms, 512, 0, s>>>(
                        reinterpret_cast<const uint4*>(ds[i].codes), rows, cols,
                        reinterpret_cast<uint32_t*>(dy));
                  },
                  copies, per_graph, 9);
              EmitTime("read_codes_64B_row_chunks", 4, rows, cols, 1, us_p,
                       static_cast<double>(m.codes.size()), copies);
            }
            if (kind == 0) {
              hc::cuda::GemvOptions o;
              o.lut = v.lut;
              o.pdl = false;
              const double us_g = TimeUs(
                  [&](int i, cudaStream_t s) {
                    CHECK_CUDA(hc::cuda::Hc2GemvRotated(ds[i].hc2(), cb, dxr, batch, dy, o, s));
                  },
                  copies, per_graph, 9);
              EmitTime((std::string(v.name) + "_gemv_only").c_str(), bits, rows, cols, batch, us_g,
                       bytes, copies);
            }
          }
          if (kind == 0 && bits == 4) {
            const double us_r = TimeUs(
                [&](int, cudaStream_t s) {
                  CHECK_CUDA(hc::cuda::Hc2RotateActivations(dx, batch, cols, bits, dxr, s));
                },
                1, 256, 9);
            EmitTime("rotate_only", bits, rows, cols, batch, us_r, 8.0 * batch * cols, 1);
          }
        }
        CHECK_CUDA(cudaFree(dx));
        CHECK_CUDA(cudaFree(dxr));
        CHECK_CUDA(cudaFree(dy));
        for (int i = 1; i < copies; ++i) Free(ds[i]);
      }
      Free(d0);
      hc::cuda::Hc2FreeCodebook(&cb);
    }
  }
}

// One LLaMA-7B layer's 7 weight matrices in rtn 4/128 (q, k, v, o 4096x4096; gate, up
// 11008x4096; down 4096x11008), each multiplied by its own vector with RtnGemvMma (prologue +
// GEMV), back to back in one CUDA graph cycling over two copies of the layer (206 MB, over 3x the
// L2). First each matrix's batch-1 result is checked against the host decode-then-multiply.
void RunLayer(std::mt19937_64& rng) {
  const std::pair<int64_t, int64_t> shapes[7] = {{4096, 4096},  {4096, 4096},  {4096, 4096},
                                                 {4096, 4096},  {11008, 4096}, {11008, 4096},
                                                 {4096, 11008}};
  const Variant v = kVariants[3];
  constexpr int kCopies = 2;
  std::vector<DeviceMatrix> ds;
  std::vector<float*> xs, ys;
  void* scratch = nullptr;
  CHECK_CUDA(cudaMalloc(&scratch, hc::cuda::RtnMmaScratchBytes(1, 11008)));
  double layer_bytes = 0;
  for (int c = 0; c < kCopies; ++c) {
    for (const auto& [rows, cols] : shapes) {
      const HostMatrix m = RandomMatrix(1, 4, rows, cols, rng);
      const std::vector<float> x = RandomX(1, cols, rng);
      DeviceMatrix d = Upload(m);
      float *dx = nullptr, *dy = nullptr;
      CHECK_CUDA(cudaMalloc(&dx, cols * 4));
      CHECK_CUDA(cudaMalloc(&dy, rows * 4));
      CHECK_CUDA(cudaMemcpy(dx, x.data(), cols * 4, cudaMemcpyHostToDevice));
      if (c == 0) {
        const std::vector<double> ref = HostGemv(m, {}, x, 1);
        hc::cuda::Hc2DeviceCodebook none;
        Report("layer_gpu", v.name, 4, rows, cols, 1, CheckGpu(v, d, none, x, 1, ref.data()),
               v.Tol());
        layer_bytes += static_cast<double>(d.bytes()) + 4.0 * (rows + cols);
      }
      ds.push_back(d);
      xs.push_back(dx);
      ys.push_back(dy);
    }
  }
  const int n = static_cast<int>(ds.size());
  for (bool pdl : {true, false}) {
    const double us = TimeUs(
        [&](int i, cudaStream_t s) {
          hc::cuda::RtnMmaOptions o;
          o.pdl = pdl;
          CHECK_CUDA(hc::cuda::RtnGemvMma(ds[i].rtn(), xs[i], 1, scratch, ys[i], o, s));
        },
        n, 8 * n, 9);
    EmitTime(pdl ? "layer7_rtn_mma" : "layer7_rtn_mma_nopdl", 4, 0, 0, 1, 7 * us, layer_bytes,
             kCopies);
  }
  for (int i = 0; i < n; ++i) {
    Free(ds[i]);
    CHECK_CUDA(cudaFree(xs[i]));
    CHECK_CUDA(cudaFree(ys[i]));
  }
  CHECK_CUDA(cudaFree(scratch));
}

}  // namespace

int main(int argc, char** argv) {
  const char* vectors = nullptr;
  const char* json = nullptr;
  bool check_only = false;
  bool layer = false;
  std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {11008, 4096}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--vectors" && i + 1 < argc) {
      vectors = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else if (a == "--check-only") {
      check_only = true;
    } else if (a == "--layer") {
      layer = true;
    } else if (a == "--shapes" && i + 1 < argc) {
      shapes.clear();
      std::string s = argv[++i];
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        const std::string item = s.substr(p, q - p);
        shapes.emplace_back(std::atoll(item.c_str()), std::atoll(item.c_str() + item.find('x') + 1));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--vectors FILE] [--check-only] [--layer] [--json FILE] "
                   "[--shapes RxC,...]\n",
                   argv[0]);
      return 2;
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  if (json != nullptr) g_json = std::fopen(json, "w");
  cudaDeviceProp p;
  CHECK_CUDA(cudaGetDeviceProperties(&p, 0));
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "{\"device\":\"%s\",\"sm\":\"%d.%d\",\"sms\":%d,\"l2_bytes\":%d,"
                "\"smem_optin\":%zu,\"mem_bus_bits\":%d}",
                p.name, p.major, p.minor, p.multiProcessorCount, p.l2CacheSize,
                p.sharedMemPerBlockOptin, p.memoryBusWidth);
  Emit(buf);

  std::vector<Record> recs;
  if (vectors != nullptr) {
    if (!ReadVectors(vectors, &recs)) {
      std::fprintf(stderr, "cannot read %s\n", vectors);
      return 1;
    }
    CheckVectors(recs);
  }
  // Codebooks: from the vectors file when given (the normative tables), else random stand-ins
  // (the kernels' speed does not depend on the values).
  std::vector<float> cb4(4096), cb2(4096);
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& v : cb4) v = n(rng);
  for (auto& v : cb2) v = n(rng);
  for (const Record& r : recs) {
    if (r.m.kind == 0 && r.m.bits == 4) cb4 = r.cb;
    if (r.m.kind == 0 && r.m.bits == 2) cb2 = r.cb;
  }
  for (const auto& [rows, cols] : shapes) RunShape(rows, cols, cb4, cb2, !check_only, rng);
  if (layer) RunLayer(rng);
  std::snprintf(buf, sizeof(buf), "{\"failures\":%d}", g_failures);
  Emit(buf);
  if (g_json != nullptr) std::fclose(g_json);
  return g_failures == 0 ? 0 : 1;
}
