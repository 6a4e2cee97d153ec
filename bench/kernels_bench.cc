// hyperc-kernels-bench: Google Benchmark microbenchmarks of every codec's encode and decode
// through the public Codec interface, and of every SIMD kernel next to its scalar path
// (issue 7, point 4). Run by hand (docs/performance.md, "Kernel microbenchmarks"); ctest only
// runs a smoke subset with a tiny --benchmark_min_time, so that the binary cannot rot.
//
// Data: deterministic pseudo-random Gaussian weights (sigma 0.02, one weight in 4096 an outlier
// at 8 to 16 sigma), 64Ki and 4Mi weights. Every kernel runs single-threaded: codecs get an
// InlineExecutor. items/s are weights/s; bytes/s, where given, count the bytes the kernel reads
// (decode: the float32 bytes it writes). A `simd:0` variant runs the same public function with
// the scalar path forced (ScopedScalarOnly or the kernel's allow_simd flag); `simd:1` takes the
// vector path where the CPU has it (the context lines at the top say what the CPU has).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "core/base/dtype.h"
#include "core/base/parallel.h"
#include "core/base/simd.h"
#include "core/codec/codec.h"
#include "core/codec/hc1_geometry.h"
#include "core/codec/hc1_grid.h"
#include "core/codec/hc1_simd.h"
#include "core/codec/hc2_entropy.h"
#include "core/codec/hc2_fixed.h"
#include "core/codec/hc2_quant.h"
#include "core/codec/hc2_transform.h"
#include "core/io/bit_pack.h"
#include "core/io/safetensors.h"
#include "core/quality/stats.h"

namespace hc {
namespace {

constexpr int64_t kSmall = int64_t{1} << 16;
constexpr int64_t kLarge = int64_t{1} << 22;
constexpr float kSigma = 0.02f;

// ---------------------------------------------------------------------------------------------
// Data, made once per size and kept for the whole run.

// n Gaussian weights of standard deviation kSigma with an outlier every 4096 weights.
const std::vector<float>& Weights(int64_t n) {
  static auto* cache = new std::map<int64_t, std::vector<float>>();
  auto it = cache->find(n);
  if (it != cache->end()) return it->second;
  std::vector<float> w(static_cast<size_t>(n));
  std::mt19937_64 rng(0x6b65726e656c73ull + static_cast<uint64_t>(n));
  std::normal_distribution<float> gauss(0.0f, kSigma);
  std::uniform_real_distribution<float> big(8.0f, 16.0f);
  for (int64_t i = 0; i < n; ++i) {
    w[i] = gauss(rng);
    if (rng() % 4096 == 0) w[i] = (w[i] < 0 ? -kSigma : kSigma) * big(rng);
  }
  return cache->emplace(n, std::move(w)).first->second;
}

// The same weights divided by kSigma: unit-rms blocks, as hc2's quantisers see them.
const std::vector<float>& UnitWeights(int64_t n) {
  static auto* cache = new std::map<int64_t, std::vector<float>>();
  auto it = cache->find(n);
  if (it != cache->end()) return it->second;
  std::vector<float> u = Weights(n);
  for (float& v : u) v /= kSigma;
  return cache->emplace(n, std::move(u)).first->second;
}

// Weights(n) as F16 bytes (F16 input), or as F32 bytes.
const std::vector<uint8_t>& WeightBytes(int64_t n, DType dtype) {
  static auto* cache = new std::map<std::pair<int64_t, DType>, std::vector<uint8_t>>();
  const auto key = std::make_pair(n, dtype);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  const std::vector<float>& w = Weights(n);
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * DTypeSize(dtype));
  NarrowFromF32(dtype, w.data(), w.size(), bytes.data());
  return cache->emplace(key, std::move(bytes)).first->second;
}

// Marks the run as weights/s (and bytes/s when `bytes_per_iter` > 0).
void SetThroughput(benchmark::State& state, int64_t weights_per_iter, int64_t bytes_per_iter) {
  state.SetItemsProcessed(state.iterations() * weights_per_iter);
  if (bytes_per_iter > 0) state.SetBytesProcessed(state.iterations() * bytes_per_iter);
}

// Forces the scalar paths of kernels that follow SimdAllowed() when `simd` is 0.
class ScalarUnless {
 public:
  explicit ScalarUnless(int64_t simd) {
    if (simd == 0) guard_.emplace();
  }

 private:
  std::optional<ScopedScalarOnly> guard_;
};

// Both sizes, each with `flag` 0 and 1.
void SizeFlagArgs(benchmark::internal::Benchmark* b, const char* flag, benchmark::TimeUnit unit) {
  b->ArgNames({"n", flag})->ArgsProduct({{kSmall, kLarge}, {0, 1}})->Unit(unit);
}
void CodecArgs(benchmark::internal::Benchmark* b) {
  SizeFlagArgs(b, "f16", benchmark::kMillisecond);
}
void SimdArgs(benchmark::internal::Benchmark* b) {
  SizeFlagArgs(b, "simd", benchmark::kMicrosecond);
}
void SimdArgsMs(benchmark::internal::Benchmark* b) {
  SizeFlagArgs(b, "simd", benchmark::kMillisecond);
}
void SizeArgs(benchmark::internal::Benchmark* b) {
  b->ArgName("n")->Arg(kSmall)->Arg(kLarge)->Unit(benchmark::kMicrosecond);
}

// ---------------------------------------------------------------------------------------------
// Codecs through the public interface: CreateCodec, Encode, PrepareDecoder, DecodeRange.

enum CodecId { kRtn, kHc1, kHc2Ec, kHc2Fixed };

std::unique_ptr<Codec> MakeCodec(CodecId id) {
  CodecOptions o;
  const char* name = "rtn";
  switch (id) {
    case kRtn:
      o = {{"bits", "4"}, {"group_size", "128"}};
      break;
    case kHc1:
      name = "hc1";
      o = {{"preset", "llm"}};
      break;
    case kHc2Ec:
      name = "hc2";
      o = {{"mode", "ec"}, {"bpw", "4.25"}};
      break;
    case kHc2Fixed:
      name = "hc2";
      o = {{"mode", "fixed"}, {"bits", "4"}};
      break;
  }
  auto codec = CreateCodec(name, o);
  return codec.ok() ? std::move(*codec) : nullptr;
}

// A 2-D tensor of n weights, rows of 1024 (a multiple of every block and group size).
TensorInfo MakeInfo(int64_t n, DType dtype) {
  TensorInfo info;
  info.name = "bench.weight";
  info.dtype = dtype;
  info.shape = {n / 1024, 1024};
  info.numel = static_cast<uint64_t>(n);
  info.begin = 0;
  info.end = static_cast<uint64_t>(n) * DTypeSize(dtype);
  return info;
}

DType ArgDType(int64_t f16) { return f16 != 0 ? DType::kF16 : DType::kF32; }

uint64_t StoredBytes(const EncodedTensor& e) {
  uint64_t b = 0;
  for (const EncodedPart& p : e.parts) b += p.bytes.size();
  return b;
}

// Args: {weights, f16}.
void BM_Encode(benchmark::State& state, CodecId id) {
  const int64_t n = state.range(0);
  const DType dtype = ArgDType(state.range(1));
  const std::unique_ptr<Codec> codec = MakeCodec(id);
  if (codec == nullptr) return state.SkipWithError("CreateCodec failed");
  const TensorInfo info = MakeInfo(n, dtype);
  const std::vector<uint8_t>& data = WeightBytes(n, dtype);
  InlineExecutor ex;
  uint64_t stored = 0;
  for (auto _ : state) {
    absl::StatusOr<EncodedTensor> e = codec->Encode(info, data, ex);
    if (!e.ok()) return state.SkipWithError(std::string(e.status().message()).c_str());
    if (e->raw) return state.SkipWithError(("kept raw: " + e->raw_reason).c_str());
    stored = StoredBytes(*e);
    benchmark::DoNotOptimize(e->parts.data());
  }
  SetThroughput(state, n, static_cast<int64_t>(data.size()));
  state.counters["bpw"] = 8.0 * static_cast<double>(stored) / static_cast<double>(n);
}

// One encoding per (codec, size, dtype), made on first use (outside the timed loops).
const EncodedTensor* Encoded(const Codec& codec, CodecId id, int64_t n, DType dtype) {
  static auto* cache = new std::map<std::tuple<int, int64_t, DType>, EncodedTensor>();
  const auto key = std::make_tuple(static_cast<int>(id), n, dtype);
  auto it = cache->find(key);
  if (it != cache->end()) return &it->second;
  InlineExecutor ex;
  absl::StatusOr<EncodedTensor> e = codec.Encode(MakeInfo(n, dtype), WeightBytes(n, dtype), ex);
  if (!e.ok() || e->raw) return nullptr;
  return &cache->emplace(key, std::move(*e)).first->second;
}

// Decoding as the pipeline does it for one tensor: PrepareDecoder (part validation, tables),
// then DecodeRange over consecutive kChunkElems chunks. Args: {weights, f16}.
void BM_Decode(benchmark::State& state, CodecId id) {
  const int64_t n = state.range(0);
  const DType dtype = ArgDType(state.range(1));
  const std::unique_ptr<Codec> codec = MakeCodec(id);
  if (codec == nullptr) return state.SkipWithError("CreateCodec failed");
  const EncodedTensor* enc = Encoded(*codec, id, n, dtype);
  if (enc == nullptr) return state.SkipWithError("encoding failed or kept raw");
  const TensorInfo info = MakeInfo(n, dtype);
  std::vector<PartView> views;
  for (const EncodedPart& p : enc->parts) views.push_back({p.suffix, p.dtype, p.shape, p.bytes});
  std::vector<float> out(static_cast<size_t>(n));
  for (auto _ : state) {
    auto dec = codec->PrepareDecoder(info, enc->params, views);
    if (!dec.ok()) return state.SkipWithError(std::string(dec.status().message()).c_str());
    for (uint64_t b = 0; b < out.size(); b += kChunkElems) {
      const uint64_t len = std::min<uint64_t>(kChunkElems, out.size() - b);
      (*dec)->DecodeRange(b, absl::MakeSpan(out.data() + b, len));
    }
    benchmark::ClobberMemory();
  }
  SetThroughput(state, n, n * 4);
}

BENCHMARK_CAPTURE(BM_Encode, rtn, kRtn)->Apply(CodecArgs);
BENCHMARK_CAPTURE(BM_Decode, rtn, kRtn)->Apply(CodecArgs);
BENCHMARK_CAPTURE(BM_Encode, hc1, kHc1)->Apply(CodecArgs);
BENCHMARK_CAPTURE(BM_Decode, hc1, kHc1)->Apply(CodecArgs);
BENCHMARK_CAPTURE(BM_Encode, hc2_ec, kHc2Ec)->Apply(CodecArgs);
BENCHMARK_CAPTURE(BM_Decode, hc2_ec, kHc2Ec)->Apply(CodecArgs);
BENCHMARK_CAPTURE(BM_Encode, hc2_fixed, kHc2Fixed)->Apply(CodecArgs);
BENCHMARK_CAPTURE(BM_Decode, hc2_fixed, kHc2Fixed)->Apply(CodecArgs);

// ---------------------------------------------------------------------------------------------
// Base, quality and io kernels. Args: {weights, simd} or {weights}.

void BM_WidenToF32_F16(benchmark::State& state) {
  const int64_t n = state.range(0);
  const ScalarUnless scalar(state.range(1));
  const std::vector<uint8_t>& src = WeightBytes(n, DType::kF16);
  std::vector<float> dst(static_cast<size_t>(n));
  for (auto _ : state) {
    WidenToF32(DType::kF16, src.data(), dst.size(), dst.data());
    benchmark::ClobberMemory();
  }
  SetThroughput(state, n, n * 2);
}
BENCHMARK(BM_WidenToF32_F16)->Apply(SimdArgs);

void BM_NarrowFromF32_F16(benchmark::State& state) {
  const int64_t n = state.range(0);
  const ScalarUnless scalar(state.range(1));
  const std::vector<float>& src = Weights(n);
  std::vector<uint8_t> dst(static_cast<size_t>(n) * 2);
  for (auto _ : state) {
    NarrowFromF32(DType::kF16, src.data(), src.size(), dst.data());
    benchmark::ClobberMemory();
  }
  SetThroughput(state, n, n * 4);
}
BENCHMARK(BM_NarrowFromF32_F16)->Apply(SimdArgs);

// In place: after the first iteration the values are already F16 values; the work is the same.
void BM_RoundTripThroughDType_F16(benchmark::State& state) {
  const int64_t n = state.range(0);
  const ScalarUnless scalar(state.range(1));
  std::vector<float> v = Weights(n);
  for (auto _ : state) {
    RoundTripThroughDType(DType::kF16, absl::MakeSpan(v));
    benchmark::ClobberMemory();
  }
  SetThroughput(state, n, n * 4);
}
BENCHMARK(BM_RoundTripThroughDType_F16)->Apply(SimdArgs);

// As the pipeline does it: one accumulator per kChunkElems chunk, merged in order.
void BM_ErrorAccumulatorAdd(benchmark::State& state) {
  const int64_t n = state.range(0);
  const ScalarUnless scalar(state.range(1));
  const std::vector<float>& orig = Weights(n);
  std::vector<float> recon = orig;
  for (size_t i = 0; i < recon.size(); ++i) recon[i] += (i % 7 == 0 ? 1e-3f : -4e-4f);
  for (auto _ : state) {
    ErrorAccumulator total;
    for (size_t b = 0; b < orig.size(); b += kChunkElems) {
      const size_t len = std::min<size_t>(kChunkElems, orig.size() - b);
      ErrorAccumulator chunk;
      chunk.Add(absl::MakeConstSpan(orig.data() + b, len),
                absl::MakeConstSpan(recon.data() + b, len));
      total.Merge(chunk);
    }
    benchmark::DoNotOptimize(total.Finish(static_cast<uint64_t>(n) / 2));
  }
  SetThroughput(state, n, n * 8);
}
BENCHMARK(BM_ErrorAccumulatorAdd)->Apply(SimdArgs);

// rtn-like 4-bit codes of the weights.
std::vector<uint32_t> Codes4(int64_t n) {
  const std::vector<float>& w = Weights(n);
  std::vector<uint32_t> c(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    c[i] = static_cast<uint32_t>(std::clamp(std::lround(w[i] / kSigma * 2.0f + 8.0f), 0L, 15L));
  }
  return c;
}

// Bit packing has no scalar/SIMD switch: width 4 takes a byte loop that the compiler vectorises
// (always on), so only the public function is measured. Args: {weights}.
void BM_PackLsbFirst4(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<uint32_t> codes = Codes4(n);
  std::vector<uint8_t> out(PackedBytes(codes.size(), 4));
  for (auto _ : state) {
    PackLsbFirst(codes, 4, absl::MakeSpan(out));
    benchmark::ClobberMemory();
  }
  SetThroughput(state, n, n * 4);
}
BENCHMARK(BM_PackLsbFirst4)->Apply(SizeArgs);

void BM_UnpackLsbFirst4(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<uint32_t> codes = Codes4(n);
  std::vector<uint8_t> packed(PackedBytes(codes.size(), 4));
  PackLsbFirst(codes, 4, absl::MakeSpan(packed));
  std::vector<uint32_t> out(codes.size());
  for (auto _ : state) {
    UnpackLsbFirst(packed, 4, 0, absl::MakeSpan(out));
    benchmark::ClobberMemory();
  }
  SetThroughput(state, n, n / 2);
}
BENCHMARK(BM_UnpackLsbFirst4)->Apply(SizeArgs);

// ---------------------------------------------------------------------------------------------
// hc2 kernels, on unit-rms blocks of kBlock (128) weights. Args: {weights, simd}.

// The fixed mode's Viterbi search, bits 4, one block of 128 at a time, on each code path (path:
// 0 scalar, 1 AVX2, 2 AVX-512). 64Ki weights only: the scalar search runs at about 0.1 M
// weights/s (4Mi would take some 45 s a run), and blocks are independent with their state in L1,
// so the throughput does not depend on the size.
void BM_Hc2TrellisSearch4(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto path = static_cast<hc2::SearchPath>(state.range(1));
  const std::vector<float>& u = UnitWeights(n);
  const float* cb = hc2::TrellisSearchCodebook(4, hc2::kCodebookStructured);
  uint8_t sym[hc2::kBlock];
  float e = 0;
  if (!hc2::TrellisSearchOn(path, u.data(), hc2::kBlock, 4, cb, sym, &e)) {
    state.SkipWithError("this CPU lacks the path");
    return;
  }
  for (auto _ : state) {
    float err = 0;
    for (int64_t b = 0; b < n; b += hc2::kBlock) {
      hc2::TrellisSearchOn(path, u.data() + b, hc2::kBlock, 4, cb, sym, &e);
      err += e;
    }
    benchmark::DoNotOptimize(err);
  }
  SetThroughput(state, n, 0);
}

// The ec mode's trellis-coded quantiser, 8 blocks at a time (one per vector lane with simd:1).
// Step 1/8 of the rms: about 4 bits per weight, as hc2 ec at bpw 4.25.
constexpr float kTcqStep = 0.125f;

void BM_Hc2QuantiseTcq8(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool simd = state.range(1) != 0;
  const std::vector<float>& u = UnitWeights(n);
  const hc2::ClassTables& t = hc2::ClassTables::Get();
  std::vector<hc2::QuantBlock> qb(8);
  for (auto _ : state) {
    for (int64_t b = 0; b < n; b += 8 * hc2::kBlock) {
      const float* z[8];
      for (int l = 0; l < 8; ++l) z[l] = u.data() + b + l * hc2::kBlock;
      hc2::QuantiseTcq8(z, kTcqStep, hc2::kDefaultMu, t, qb.data(), simd);
      benchmark::DoNotOptimize(qb[7].bits);
    }
  }
  SetThroughput(state, n, 0);
}

// The one-block scalar quantiser (what hc2 uses for a tensor's last, partial group). Args:
// {weights}.
void BM_Hc2QuantiseTcq(benchmark::State& state) {
  const int64_t n = state.range(0);
  const std::vector<float>& u = UnitWeights(n);
  const hc2::ClassTables& t = hc2::ClassTables::Get();
  hc2::QuantBlock qb;
  for (auto _ : state) {
    for (int64_t b = 0; b < n; b += hc2::kBlock) {
      hc2::QuantiseTcq(u.data() + b, hc2::kBlock, kTcqStep, hc2::kDefaultMu, t, qb);
      benchmark::DoNotOptimize(qb.bits);
    }
  }
  SetThroughput(state, n, 0);
}

// The 128-point Walsh-Hadamard transform: Fwht (AVX-512, else AVX2, where the CPU has it)
// against its public scalar reference FwhtScalar. Each block is copied into a local buffer first
// (both variants), as Rotate does.
void BM_Hc2Fwht128(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool simd = state.range(1) != 0;
  const std::vector<float>& u = UnitWeights(n);
  alignas(64) float v[hc2::kBlock];
  for (auto _ : state) {
    float acc = 0;
    for (int64_t b = 0; b < n; b += hc2::kBlock) {
      std::memcpy(v, u.data() + b, sizeof(v));
      if (simd) {
        hc2::Fwht(v, hc2::kBlock);
      } else {
        hc2::FwhtScalar(v, hc2::kBlock);
      }
      acc += v[0];
    }
    benchmark::DoNotOptimize(acc);
  }
  SetThroughput(state, n, n * 4);
}

// hc2's inverse rotation of 128-weight blocks as the decoders call it: Unrotate (the fused
// AVX-512 transform, sign and scale) against its scalar path (ScopedScalarOnly: FwhtScalar,
// then the sign-and-scale loop). Each block is copied into a scratch buffer first.
void BM_Hc2Unrotate128(benchmark::State& state) {
  const int64_t n = state.range(0);
  const ScalarUnless scalar(state.range(1));
  const std::vector<float>& u = UnitWeights(n);
  std::vector<float> out(static_cast<size_t>(n));
  alignas(64) float z[hc2::kBlock];
  for (auto _ : state) {
    for (int64_t b = 0; b < n; b += hc2::kBlock) {
      std::memcpy(z, u.data() + b, sizeof(z));
      hc2::Unrotate(z, hc2::kBlock, hc2::kBlock, out.data() + b);
    }
    benchmark::ClobberMemory();
  }
  SetThroughput(state, n, n * 4);
}

// hc2's lane stream decoder alone (tokens, signs, TCQ levels; no rotation): one chunk of 512
// blocks of indices ~ round(N(0, 4.6^2)) (about 4.1 bits each, the 4.25 bpw regime), decoded
// 8 blocks per call. Args: {simd}.
void BM_Hc2LaneDecode(benchmark::State& state) {
  const bool simd = state.range(0) != 0;
  const hc2::ClassTables& t = hc2::ClassTables::Get();
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 4.6f);
  constexpr int kBlocks = 512;
  std::vector<hc2::QuantBlock> qbs(kBlocks);
  std::vector<hc2::CodedBlock> blocks;
  for (hc2::QuantBlock& qb : qbs) {
    for (int i = 0; i < hc2::kBlock; ++i) qb.q[i] = static_cast<int32_t>(std::lround(g(rng)));
    hc2::PriceBlock(hc2::kBlock, t, qb);
    blocks.push_back({qb.q, hc2::kBlock, qb.cls});
  }
  std::vector<uint8_t> stream;
  hc2::LaneEncodeBlocks(blocks, stream);
  constexpr int kRun = 8;  // blocks per call, as hc2.cc's decoder does
  std::vector<float> z(kRun * hc2::kBlock);
  for (auto _ : state) {
    hc2::LaneDecoder d(stream);
    for (int b = 0; b < kBlocks; b += kRun) {
      d.DecodeBlocks(kRun, hc2::kBlock, 0.01f, true, z.data(), simd);
      benchmark::DoNotOptimize(z.data());
    }
  }
  SetThroughput(state, int64_t{kBlocks} * hc2::kBlock, 0);
  state.counters["bpw"] = 8.0 * static_cast<double>(stream.size()) / (kBlocks * hc2::kBlock);
}
BENCHMARK(BM_Hc2LaneDecode)->ArgName("simd")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

BENCHMARK(BM_Hc2TrellisSearch4)
    ->ArgNames({"n", "path"})
    ->ArgsProduct({{kSmall}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Hc2QuantiseTcq8)->Apply(SimdArgsMs);
BENCHMARK(BM_Hc2QuantiseTcq)->Apply(SizeArgs)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Hc2Fwht128)->Apply(SimdArgs);
BENCHMARK(BM_Hc2Unrotate128)->Apply(SimdArgs);

// ---------------------------------------------------------------------------------------------
// hc1's outer class trial (hc1_simd.h), as hc1_grid.cc calls it: blocks of 128 outer pairs,
// preset llm (L 0.1, n 1600, 3 rings). The weights are scaled to sigma L/2, so that about half
// the pairs fall outside the codebook square; only those are kept. Args: {weights, simd}; items
// are the weights of the outer pairs.

constexpr double kHc1L = 0.1;
constexpr int64_t kHc1N = 1600;
constexpr int kHc1Rings = 3;
constexpr int kHc1Block = 128;

struct OuterPairs {
  std::vector<double> dx, dy, d, px, py;
  double D = 0;
};

const OuterPairs& Hc1Outer(int64_t n) {
  static auto* cache = new std::map<int64_t, OuterPairs>();
  auto it = cache->find(n);
  if (it != cache->end()) return it->second;
  OuterPairs o;
  const std::vector<float>& w = Weights(n);
  const float h = static_cast<float>(kHc1L / 2), scale = h / kSigma;
  for (size_t i = 0; i + 1 < w.size(); i += 2) {
    const float x = w[i] * scale, y = w[i + 1] * scale;  // centre (0, 0)
    if (x >= -h && x <= h && y >= -h && y <= h) continue;  // inner pair
    const float d = std::sqrt(x * x + y * y);
    o.dx.push_back(x);
    o.dy.push_back(y);
    o.d.push_back(d);
    o.px.push_back(x);
    o.py.push_back(y);
    o.D = std::max(o.D, static_cast<double>(d));
  }
  return cache->emplace(n, std::move(o)).first->second;
}

void BM_Hc1OuterTrial(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool simd = state.range(1) != 0;
  if (simd && !hc1::HaveAvx512()) return state.SkipWithError("no AVX-512 on this CPU");
  const hc1::OuterTrialFn trial = simd ? hc1::OuterTrialAvx512 : hc1::OuterTrialScalar;
  const OuterPairs& o = Hc1Outer(n);
  const hc1::Codebook cb(hc1::Layout::Get(kHc1L, kHc1N), 0.0f, 0.0f);
  const hc1::Rings rings(o.D, kHc1L, kHc1Rings);
  const uint32_t stride = static_cast<uint32_t>(kHc1N + 1);
  const int64_t pairs = static_cast<int64_t>(o.d.size());
  uint32_t code[kHc1Block];
  double ex[kHc1Block], ey[kHc1Block];
  for (auto _ : state) {
    for (int64_t k = 0; k < pairs; k += kHc1Block) {
      const int cnt = static_cast<int>(std::min<int64_t>(kHc1Block, pairs - k));
      const hc1::OuterBlock b{o.dx.data() + k, o.dy.data() + k, o.d.data() + k,
                              o.px.data() + k, o.py.data() + k, cnt};
      trial(cb, b, rings, stride, code, ex, ey);
      benchmark::DoNotOptimize(code[0]);
    }
  }
  SetThroughput(state, 2 * pairs, 0);
  state.counters["outer_share"] = static_cast<double>(2 * pairs) / static_cast<double>(n);
}
BENCHMARK(BM_Hc1OuterTrial)->Apply(SimdArgs);

// hc1's inner-pair lookups (hc1_simd.h), as hc1_grid.cc calls them: blocks of 64 inner pairs,
// preset llm's codebook, a small non-zero centre as real weights have (so float32(p - c) + c
// sometimes differs from p). Args: {weights, simd}; items are the weights of the inner pairs.
void BM_Hc1Inner(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool simd = state.range(1) != 0;
  if (simd && !hc1::HaveAvx512()) return state.SkipWithError("no AVX-512 on this CPU");
  const hc1::InnerFn inner = simd ? hc1::InnerAvx512 : hc1::InnerScalar;
  const float cx = 1e-5f, cy = -2e-5f;
  std::vector<float> px, py;
  const std::vector<float>& w = Weights(n);
  const float h = static_cast<float>(kHc1L / 2), scale = h / kSigma;
  for (size_t i = 0; i + 1 < w.size(); i += 2) {
    const float x = w[i] * scale + cx, y = w[i + 1] * scale + cy;
    if (x < cx - h || x > cx + h || y < cy - h || y > cy + h) continue;  // outer pair
    px.push_back(x);
    py.push_back(y);
  }
  const hc1::Codebook cb(hc1::Layout::Get(kHc1L, kHc1N), cx, cy);
  constexpr int kInnerBlock = 64;
  uint32_t j[kInnerBlock], jb[kInnerBlock];
  double e[4][kInnerBlock];
  const hc1::InnerOut out{j, jb, e[0], e[1], e[2], e[3]};
  const int64_t pairs = static_cast<int64_t>(px.size());
  for (auto _ : state) {
    for (int64_t k = 0; k < pairs; k += kInnerBlock) {
      const int cnt = static_cast<int>(std::min<int64_t>(kInnerBlock, pairs - k));
      inner(cb, px.data() + k, py.data() + k, cnt, cx, cy, out);
      benchmark::DoNotOptimize(j[0]);
    }
  }
  SetThroughput(state, 2 * pairs, 0);
}
BENCHMARK(BM_Hc1Inner)->Apply(SimdArgs);

// hc1's per-unit split into inner and outer pair arrays and the scan for the farthest distance
// and inner count (hc1_simd.h), on units of 4096 pairs of Gaussian weights scaled as in
// BM_Hc1Inner (about half the pairs outer). Args: {weights, simd}; items are weights.
void Hc1UnitBench(benchmark::State& state, bool split) {
  const int64_t n = state.range(0);
  const bool simd = state.range(1) != 0;
  if (simd && !hc1::HaveAvx512()) return state.SkipWithError("no AVX-512 on this CPU");
  const std::vector<float>& w = Weights(n);
  const float h = static_cast<float>(kHc1L / 2), scale = h / kSigma;
  std::vector<float> x(w.size());
  for (size_t i = 0; i < w.size(); ++i) x[i] = w[i] * scale;
  const hc1::Square sq{-h, h, -h, h};
  const int64_t pairs = n / 2;
  std::vector<float> a(4 * hc1::kUnitPairs);
  std::vector<uint16_t> idx(2 * hc1::kUnitPairs);
  const hc1::SplitOut out{a.data(), a.data() + hc1::kUnitPairs, a.data() + 2 * hc1::kUnitPairs,
                          a.data() + 3 * hc1::kUnitPairs, idx.data(),
                          idx.data() + hc1::kUnitPairs};
  const hc1::SplitFn split_fn = simd ? hc1::SplitAvx512 : hc1::SplitScalar;
  const hc1::ScanFn scan_fn = simd ? hc1::ScanAvx512 : hc1::ScanScalar;
  for (auto _ : state) {
    for (int64_t b = 0; b < pairs; b += hc1::kUnitPairs) {
      const int64_t cnt = std::min(hc1::kUnitPairs, pairs - b);
      if (split) {
        benchmark::DoNotOptimize(split_fn(x.data() + 2 * b, cnt, sq, out));
      } else {
        float smax = 0;
        int64_t inner = 0;
        scan_fn(x.data() + 2 * b, cnt, 1e-5f, -2e-5f, sq, &smax, &inner);
        benchmark::DoNotOptimize(smax);
        benchmark::DoNotOptimize(inner);
      }
    }
    benchmark::ClobberMemory();
  }
  SetThroughput(state, 2 * pairs, 0);
}
void BM_Hc1Split(benchmark::State& state) { Hc1UnitBench(state, true); }
void BM_Hc1Scan(benchmark::State& state) { Hc1UnitBench(state, false); }
BENCHMARK(BM_Hc1Split)->Apply(SimdArgs);
BENCHMARK(BM_Hc1Scan)->Apply(SimdArgs);

// hc1's code packing (hc1_grid.h PackCodes: uint16 codes, 13 bits, the width of preset llm's
// codes) against core/io's general PackMsbFirst (uint32 codes). Items are codes (pairs).
void BM_Hc1PackCodes(benchmark::State& state) {
  const int64_t n = state.range(0);
  constexpr int kWidth = 13;
  std::mt19937 rng(3);
  std::vector<uint16_t> c16(n);
  for (auto& c : c16) c = static_cast<uint16_t>(rng() >> (32 - kWidth));
  const std::vector<uint32_t> c32(c16.begin(), c16.end());
  const int z = static_cast<int>((8 - (static_cast<uint64_t>(n) * kWidth) % 8) % 8);
  std::vector<uint8_t> out(PackedBytes(n, kWidth, z));
  InlineExecutor ex;
  const bool general = state.range(1) != 0;
  for (auto _ : state) {
    if (general) {
      PackMsbFirst(c32, kWidth, z, absl::MakeSpan(out));
    } else {
      hc1::PackCodes(c16.data(), n, kWidth, z, absl::MakeSpan(out), ex);
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetThroughput(state, n, 0);
}
BENCHMARK(BM_Hc1PackCodes)->Apply([](benchmark::internal::Benchmark* b) {
  SizeFlagArgs(b, "pack_msb_first", benchmark::kMicrosecond);
});

}  // namespace
}  // namespace hc

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("cpu_avx2", hc::CpuHasAvx2() ? "yes" : "no");
  benchmark::AddCustomContext("cpu_f16c", hc::CpuHasF16C() ? "yes" : "no");
  benchmark::AddCustomContext("cpu_avx512", hc::hc1::HaveAvx512() ? "yes" : "no");
  benchmark::AddCustomContext("threads", "1 (InlineExecutor)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
