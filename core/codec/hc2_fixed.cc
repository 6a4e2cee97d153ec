#include "core/codec/hc2_fixed.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/dtype.h"
#include "core/base/simd.h"
#include "core/base/status_macros.h"
#include "core/codec/hc2_transform.h"
#include "core/io/bit_pack.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HC_FIXED_X86 1
#endif

namespace hc::hc2 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int kMaxN = 128;

// Backpointers of one search: the predecessor's top k bits h for each (step, state).
uint8_t* BackBuffer() {
  thread_local std::vector<uint8_t> back(static_cast<size_t>(kMaxN) << (kTrellisWindow - 2));
  return back.data();
}

// The end of a search: the first cheapest final state, then back along the stored choices.
// State s after step i is w_i mod 2^(12-k); its predecessor is h * 2^(12-2k) + (s >> k).
template <int K>
float Traceback(const float* cost, const uint8_t* back, int n, uint8_t* sym) {
  constexpr int S = 1 << (kTrellisWindow - K), P = S >> K;
  int s = 0;
  for (int j = 1; j < S; ++j) {
    if (cost[j] < cost[s]) s = j;
  }
  const float best = cost[s];
  for (int i = n - 1; i >= 0; --i) {
    sym[i] = static_cast<uint8_t>(s & ((1 << K) - 1));
    s = back[static_cast<size_t>(i) * S + s] * P + (s >> K);
  }
  return best;
}

// The scalar reference. Step i: every window w = h * 2^(12-k) + s' (h the top k bits, s' the
// new state) extends the path ending in state w >> k by the value cb[w]; each new state keeps
// its cheapest extension, the lowest h on ties.
template <int K>
float SearchScalar(const float* u, int n, const float* cb, uint8_t* sym) {
  constexpr int S = 1 << (kTrellisWindow - K), T = 1 << K;
  float cost[S], next[S];
  uint8_t* back = BackBuffer();
  std::fill(cost, cost + S, kInf);
  cost[0] = 0;
  for (int i = 0; i < n; ++i) {
    const float z = u[i];
    uint8_t* arg = back + static_cast<size_t>(i) * S;
    std::fill(next, next + S, kInf);
    std::fill(arg, arg + S, 0);
    for (int h = 0; h < T; ++h) {
      for (int s = 0; s < S; ++s) {
        const int w = h * S + s;
        const float d = z - cb[w];
        const float v = cost[w >> K] + d * d;
        if (v < next[s]) {
          next[s] = v;
          arg[s] = static_cast<uint8_t>(h);
        }
      }
    }
    std::copy(next, next + S, cost);
  }
  return Traceback<K>(cost, back, n, sym);
}

#ifdef HC_FIXED_X86
#define HC_AVX2 __attribute__((target("avx2")))

// The costs cost[w >> k] of the 8 windows w0..w0+7 (w0 a multiple of 8): one value for k >= 3,
// two for k = 2.
template <int K>
HC_AVX2 inline __m256 PredCost8(const float* cost, int w0) {
  if constexpr (K >= 3) {
    return _mm256_set1_ps(cost[w0 >> K]);
  } else {
    return _mm256_set_m128(_mm_set1_ps(cost[(w0 >> K) + 1]), _mm_set1_ps(cost[w0 >> K]));
  }
}

// The scalar search with 8 states per vector; the same operations in the same order per state.
template <int K>
HC_AVX2 float SearchAvx2(const float* u, int n, const float* cb, uint8_t* sym) {
  constexpr int S = 1 << (kTrellisWindow - K), T = 1 << K;
  alignas(32) float cost[S];
  alignas(32) int32_t args[8];
  uint8_t* back = BackBuffer();
  std::fill(cost, cost + S, kInf);
  cost[0] = 0;
  alignas(32) float next[S];
  for (int i = 0; i < n; ++i) {
    const __m256 z = _mm256_set1_ps(u[i]);
    uint8_t* arg = back + static_cast<size_t>(i) * S;
    for (int s0 = 0; s0 < S; s0 += 8) {
      __m256 best = _mm256_set1_ps(kInf);
      __m256i bh = _mm256_setzero_si256();
      for (int h = 0; h < T; ++h) {
        const int w0 = h * S + s0;
        const __m256 d = _mm256_sub_ps(z, _mm256_loadu_ps(cb + w0));
        const __m256 v = _mm256_add_ps(PredCost8<K>(cost, w0), _mm256_mul_ps(d, d));
        const __m256 lt = _mm256_cmp_ps(v, best, _CMP_LT_OQ);
        best = _mm256_blendv_ps(best, v, lt);
        bh = _mm256_castps_si256(_mm256_blendv_ps(
            _mm256_castsi256_ps(bh), _mm256_castsi256_ps(_mm256_set1_epi32(h)), lt));
      }
      _mm256_store_ps(next + s0, best);
      _mm256_store_si256(reinterpret_cast<__m256i*>(args), bh);
      for (int j = 0; j < 8; ++j) arg[s0 + j] = static_cast<uint8_t>(args[j]);
    }
    std::memcpy(cost, next, sizeof(cost));
  }
  return Traceback<K>(cost, back, n, sym);
}

#define HC_AVX512_SEARCH __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
// GCC 12 warns about the unmasked AVX-512 intrinsics' internal undefined operand.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The costs cost[w >> k] of the 16 windows w0..w0+15 (w0 a multiple of 16): one value for k = 4,
// two for k = 3, four for k = 2.
template <int K>
HC_AVX512_SEARCH inline __m512 PredCost16(const float* cost, int w0) {
  if constexpr (K == 4) {
    return _mm512_set1_ps(cost[w0 >> K]);
  } else if constexpr (K == 3) {
    return _mm512_insertf32x8(_mm512_set1_ps(cost[w0 >> K]), _mm256_set1_ps(cost[(w0 >> K) + 1]),
                              1);
  } else {
    const int p = w0 >> K;
    return _mm512_permutexvar_ps(
        _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
        _mm512_broadcast_f32x4(_mm_loadu_ps(cost + p)));
  }
}

// The scalar search with 16 states per vector: the same operations in the same order per state
// (subtract, multiply, add, strict less-than keeping the lowest h), the choices as mask moves.
template <int K>
HC_AVX512_SEARCH float SearchAvx512(const float* u, int n, const float* cb, uint8_t* sym) {
  constexpr int S = 1 << (kTrellisWindow - K), T = 1 << K;
  alignas(64) float cost[S + 16];  // + 16: PredCost16<2> reads 4 floats from cost + p
  alignas(64) float next[S];
  uint8_t* back = BackBuffer();
  std::fill(cost, cost + S + 16, kInf);
  cost[0] = 0;
  for (int i = 0; i < n; ++i) {
    const __m512 z = _mm512_set1_ps(u[i]);
    uint8_t* arg = back + static_cast<size_t>(i) * S;
    for (int s0 = 0; s0 < S; s0 += 16) {
      __m512 best = _mm512_set1_ps(kInf);
      __m512i bh = _mm512_setzero_si512();
      for (int h = 0; h < T; ++h) {
        const int w0 = h * S + s0;
        const __m512 d = _mm512_sub_ps(z, _mm512_loadu_ps(cb + w0));
        const __m512 v = _mm512_add_ps(PredCost16<K>(cost, w0), _mm512_mul_ps(d, d));
        const __mmask16 lt = _mm512_cmp_ps_mask(v, best, _CMP_LT_OQ);
        best = _mm512_mask_mov_ps(best, lt, v);
        bh = _mm512_mask_mov_epi32(bh, lt, _mm512_set1_epi32(h));
      }
      _mm512_store_ps(next + s0, best);
      _mm512_mask_cvtepi32_storeu_epi8(arg + s0, 0xFFFF, bh);
    }
    std::memcpy(cost, next, sizeof(next));
  }
  return Traceback<K>(cost, back, n, sym);
}
#pragma GCC diagnostic pop

#endif

}  // namespace

float TrellisSearch(const float* u, int n, int bits, const float* cb, uint8_t* sym,
                    bool allow_simd) {
#ifdef HC_FIXED_X86
  if (allow_simd && CpuHasAvx512()) {
    switch (bits) {
      case 2: return SearchAvx512<2>(u, n, cb, sym);
      case 3: return SearchAvx512<3>(u, n, cb, sym);
      default: return SearchAvx512<4>(u, n, cb, sym);
    }
  }
  if (allow_simd && CpuHasAvx2()) {
    switch (bits) {
      case 2: return SearchAvx2<2>(u, n, cb, sym);
      case 3: return SearchAvx2<3>(u, n, cb, sym);
      default: return SearchAvx2<4>(u, n, cb, sym);
    }
  }
#endif
  (void)allow_simd;
  switch (bits) {
    case 2: return SearchScalar<2>(u, n, cb, sym);
    case 3: return SearchScalar<3>(u, n, cb, sym);
    default: return SearchScalar<4>(u, n, cb, sym);
  }
}

bool TrellisSearchOn(SearchPath path, const float* u, int n, int bits, const float* search_cb,
                     uint8_t* sym, float* error) {
  switch (path) {
    case SearchPath::kScalar:
      *error = TrellisSearch(u, n, bits, search_cb, sym, false);
      return true;
#ifdef HC_FIXED_X86
    case SearchPath::kAvx2:
      if (!CpuHasAvx2()) return false;
      *error = bits == 2   ? SearchAvx2<2>(u, n, search_cb, sym)
               : bits == 3 ? SearchAvx2<3>(u, n, search_cb, sym)
                           : SearchAvx2<4>(u, n, search_cb, sym);
      return true;
    case SearchPath::kAvx512:
      if (!CpuHasAvx512()) return false;
      *error = bits == 2   ? SearchAvx512<2>(u, n, search_cb, sym)
               : bits == 3 ? SearchAvx512<3>(u, n, search_cb, sym)
                           : SearchAvx512<4>(u, n, search_cb, sym);
      return true;
#endif
    default:
      return false;
  }
}

void ToSearchOrder(const float* cb, int bits, float* out) {
  const int fields = kTrellisWindow / bits;
  const uint32_t mask = (1u << bits) - 1;
  for (uint32_t v = 0; v < kTrellisCodebook; ++v) {
    uint32_t r = 0;
    for (int f = 0; f < fields; ++f) r |= ((v >> (f * bits)) & mask) << ((fields - 1 - f) * bits);
    out[v] = cb[r];
  }
}

namespace {

// Both codebooks of every bits in window order ([codebook - 1][bits - 2]) and in search order.
struct Books {
  std::vector<float> window[2][3], search[2][3];
};

const Books& AllBooks() {
  static const Books* books = [] {
    auto* b = new Books;
    for (int k = 2; k <= 4; ++k) {
      b->window[0][k - 2].assign(TrainedCodebook(k), TrainedCodebook(k) + kTrellisCodebook);
      const StructuredCodebook st = TrellisStructure(k);
      std::vector<float>& c2 = b->window[1][k - 2];
      c2.resize(kTrellisCodebook);
      for (uint32_t w = 0; w < kTrellisCodebook; ++w) {
        c2[w] = static_cast<float>(st.g[StructuredByte(w, k, st.d)]) * 0x1p-5f;
      }
      for (int c = 0; c < 2; ++c) {
        b->search[c][k - 2].resize(kTrellisCodebook);
        ToSearchOrder(b->window[c][k - 2].data(), k, b->search[c][k - 2].data());
      }
    }
    return b;
  }();
  return *books;
}

}  // namespace

const float* TrellisCodebook(int bits, int codebook) {
  const int c = codebook == kCodebookTrained ? 0 : 1;
  return AllBooks().window[c][std::clamp(bits, 2, 4) - 2].data();
}

const float* TrellisSearchCodebook(int bits, int codebook) {
  const int c = codebook == kCodebookTrained ? 0 : 1;
  return AllBooks().search[c][std::clamp(bits, 2, 4) - 2].data();
}

void TrellisValues(const uint8_t* sym, int n, int bits, const float* cb, float* c) {
  uint32_t w = 0;
  for (int i = 0; i < n; ++i) {
    w = (w >> bits) | (static_cast<uint32_t>(sym[i]) << (kTrellisWindow - bits));
    c[i] = cb[w];
  }
}

// ---------------------------------------------------------------------------------------------
// Whole tensors.

namespace {

class FixedDecoder final : public TensorDecoder {
 public:
  FixedDecoder(Blocks plan, const FixedRecord& rec)
      : plan_(plan),
        bits_(rec.bits),
        cb_(TrellisCodebook(rec.bits, rec.codebook)),
        codes_(rec.symbols),
        scales_(rec.scales) {}

  // Per block: the symbols as bytes, every window from its 12/k newest symbols (independent
  // element loops, no carried state), the lookups times the scale, then the unrotation.
  void DecodeRange(uint64_t begin, absl::Span<float> out) const override {
    const float* cb = cb_;
    const int k = bits_;
    float z[kBlock], x[kBlock];
    uint32_t w[kBlock];
    uint8_t padded[kBlock + 8] = {};  // 8 zero symbols before the block
    uint8_t* sym = padded + 8;
    const uint64_t end = begin + out.size();
    for (int64_t b = static_cast<int64_t>(begin / kBlock); b * kBlock < static_cast<int64_t>(end);
         ++b) {
      const int n = plan_.n(b), r = plan_.r(b);
      uint16_t h;
      std::memcpy(&h, scales_.data() + 2 * b, 2);
      const float s = HalfToFloat(h);
      const uint8_t* p = codes_.data() + static_cast<uint64_t>(b) * (kBlock / 8) * k;
      if (n < kBlock) {  // the last, short block (its bytes may end mid-byte)
        uint32_t s32[kBlock];
        UnpackLsbFirst(codes_, k, static_cast<uint64_t>(b) * kBlock, absl::MakeSpan(s32, n));
        for (int i = 0; i < n; ++i) sym[i] = static_cast<uint8_t>(s32[i]);
      } else if (k == 4) {
        for (int j = 0; j < kBlock / 2; ++j) {
          sym[2 * j] = p[j] & 15u;
          sym[2 * j + 1] = p[j] >> 4;
        }
      } else if (k == 2) {
        for (int j = 0; j < kBlock / 4; ++j) {
          for (int q = 0; q < 4; ++q) sym[4 * j + q] = (p[j] >> (2 * q)) & 3u;
        }
      } else {  // k == 3: every 8 symbols fill 3 whole bytes
        for (int j = 0; j < kBlock / 8; ++j) {
          const uint32_t v = p[3 * j] | p[3 * j + 1] << 8 | p[3 * j + 2] << 16;
          for (int q = 0; q < 8; ++q) sym[8 * j + q] = (v >> (3 * q)) & 7u;
        }
      }
      if (k == 4) {
        for (int i = 0; i < n; ++i) w[i] = sym[i] << 8 | sym[i - 1] << 4 | sym[i - 2];
      } else if (k == 2) {
        for (int i = 0; i < n; ++i) {
          w[i] = sym[i] << 10 | sym[i - 1] << 8 | sym[i - 2] << 6 | sym[i - 3] << 4 |
                 sym[i - 4] << 2 | sym[i - 5];
        }
      } else {
        for (int i = 0; i < n; ++i) {
          w[i] = sym[i] << 9 | sym[i - 1] << 6 | sym[i - 2] << 3 | sym[i - 3];
        }
      }
      for (int i = 0; i < n; ++i) z[i] = cb[w[i]] * s;
      const uint64_t b0 = static_cast<uint64_t>(b) * kBlock;
      const uint64_t lo = std::max(begin, b0), hi = std::min(end, b0 + r);
      if (lo == b0 && hi == b0 + r) {
        Unrotate(z, r, n, out.data() + (b0 - begin));
      } else {
        Unrotate(z, r, n, x);
        std::copy(x + (lo - b0), x + (hi - b0), out.begin() + (lo - begin));
      }
    }
  }

 private:
  Blocks plan_;
  int bits_;
  const float* cb_;
  absl::Span<const uint8_t> codes_;
  absl::Span<const uint8_t> scales_;
};

}  // namespace

EncodedTensor EncodeFixedTensor(const float* x, int64_t numel, int bits, Executor& ex,
                                int codebook) {
  const Blocks plan(numel);
  const int64_t nb = plan.blocks;
  const bool v1 = codebook == kCodebookTrained;
  const float* cb = TrellisCodebook(bits, codebook);
  const float* search_cb = TrellisSearchCodebook(bits, codebook);
  std::vector<uint16_t> scales(nb);
  std::vector<uint32_t> codes(static_cast<size_t>(nb) * kBlock, 0);
  std::vector<uint8_t> bad(nb, 0);  // a block whose scale F16 cannot hold
  ex.ParallelFor(nb, [&](int64_t b) {
    float z[kBlock], u[kBlock] = {}, c[kBlock];
    uint8_t sym[kBlock];
    const int n = plan.n(b);
    Rotate(x + b * kBlock, plan.r(b), n, z);
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(z[i]) * z[i];
    const float rms = static_cast<float>(std::sqrt(ss / n));
    // Beyond F16 (or not finite): the tensor goes raw. Below it the block is simply 0.
    if (!(rms <= 32768.0f)) {
      bad[b] = 1;
      return;
    }
    if (!(rms > 0)) return;
    for (int i = 0; i < n; ++i) u[i] = z[i] / rms;
    TrellisSearch(u, n, bits, search_cb, sym);
    TrellisValues(sym, n, bits, cb, c);
    double zc = 0, cc = 0;
    for (int i = 0; i < n; ++i) {
      zc += static_cast<double>(z[i]) * c[i];
      cc += static_cast<double>(c[i]) * c[i];
    }
    const double s = cc > 0 && zc > 0 ? zc / cc : rms;
    scales[b] = FloatToHalf(static_cast<float>(s));
    std::copy(sym, sym + n, codes.begin() + b * kBlock);
  });
  EncodedTensor enc;
  if (std::find(bad.begin(), bad.end(), 1) != bad.end()) {
    enc.raw = true;
    enc.raw_reason = "a block scale beyond the F16 range";
    return enc;
  }
  const uint64_t count = plan.padded();  // one symbol per coefficient
  codes.resize(count);
  EncodedPart cpart{v1 ? "codes" : "symbols", DType::kU8, {},
                    std::vector<uint8_t>(PackedBytes(count, bits))};
  PackLsbFirst(codes, bits, absl::MakeSpan(cpart.bytes));
  cpart.shape = {static_cast<int64_t>(cpart.bytes.size())};
  EncodedPart spart{"scales", DType::kF16, {nb}, std::vector<uint8_t>(2 * nb)};
  std::memcpy(spart.bytes.data(), scales.data(), 2 * nb);
  enc.params.Add("mode", JsonValue::String("fixed"))
      .Add("bits", JsonValue::Int(bits))
      .Add("window", JsonValue::Int(kTrellisWindow));
  if (!v1) enc.params.Add("codebook", JsonValue::Int(kCodebookStructured));
  enc.parts.push_back(std::move(cpart));
  enc.parts.push_back(std::move(spart));
  return enc;
}

absl::StatusOr<FixedRecord> ParseFixedRecord(int64_t numel, const JsonValue& params,
                                             absl::Span<const PartView> parts) {
  const Blocks plan(numel);
  if (parts.size() != 2) return absl::DataLossError("hc2: expected exactly two parts");
  const JsonValue* bv = params.Find("bits");
  const std::optional<int64_t> bits = bv ? bv->as_int64() : std::nullopt;
  if (!bits || *bits < 2 || *bits > 4) {
    return absl::DataLossError("hc2: fixed mode needs an integer bits in [2, 4]");
  }
  const JsonValue* wv = params.Find("window");
  if (wv == nullptr || wv->as_int64() != std::optional<int64_t>(kTrellisWindow)) {
    return absl::DataLossError(absl::StrCat(
        "hc2: fixed mode needs window ", kTrellisWindow,
        " (the trellis of spec-hc2.md v2; v1's winding codes are no longer read)"));
  }
  // Codebook 2 (version 5) keeps its symbols in "symbols", so that version 4 decoders, which
  // look for "codes", reject it instead of decoding with codebook 1.
  const JsonValue* cv = params.Find("codebook");
  const std::optional<int64_t> codebook =
      cv == nullptr ? std::optional<int64_t>(kCodebookTrained) : cv->as_int64();
  if (codebook != kCodebookTrained && codebook != kCodebookStructured) {
    return absl::DataLossError("hc2: fixed mode's codebook must be 1 or 2 (spec-hc2.md 4)");
  }
  const char* name = *codebook == kCodebookTrained ? "codes" : "symbols";
  const PartView* codes = FindPart(parts, name);
  const PartView* scales = FindPart(parts, "scales");
  const uint64_t nbytes = PackedBytes(plan.padded(), static_cast<int>(*bits));
  if (codes == nullptr || codes->dtype != DType::kU8 || codes->bytes.size() != nbytes) {
    return absl::DataLossError(absl::StrCat("hc2: \"", name, "\" must be U8 of ", nbytes,
                                            " bytes (codebook ", *codebook, ")"));
  }
  if (scales == nullptr || scales->dtype != DType::kF16 ||
      scales->bytes.size() != 2 * static_cast<uint64_t>(plan.blocks)) {
    return absl::DataLossError(absl::StrCat("hc2: \"scales\" must be F16 [", plan.blocks, "]"));
  }
  return FixedRecord{.bits = static_cast<int>(*bits),
                     .codebook = static_cast<int>(*codebook),
                     .symbols = codes->bytes,
                     .scales = scales->bytes};
}

absl::StatusOr<std::unique_ptr<TensorDecoder>> PrepareFixedDecoder(
    int64_t numel, const JsonValue& params, absl::Span<const PartView> parts) {
  HC_ASSIGN_OR_RETURN(FixedRecord rec, ParseFixedRecord(numel, params, parts));
  return std::unique_ptr<TensorDecoder>(new FixedDecoder(Blocks(numel), rec));
}

}  // namespace hc::hc2
