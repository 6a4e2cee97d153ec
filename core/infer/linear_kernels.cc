#include "core/infer/linear_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "core/base/dtype.h"
#include "core/codec/hc2_fixed.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hc::infer {
namespace {

uint16_t LoadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

float LoadF32(const uint8_t* p) {
  float f = 0;
  std::memcpy(&f, p, 4);
  return f;
}

// Bits [bit, bit + width) of an LSB-first stream, width <= 8 (zeros past its end).
uint32_t ReadLsb(const uint8_t* s, uint64_t size, uint64_t bit, int width) {
  const uint64_t byte = bit >> 3;
  uint32_t v = s[byte];
  if (byte + 1 < size) v |= static_cast<uint32_t>(s[byte + 1]) << 8;
  return (v >> (bit & 7)) & ((1u << width) - 1);
}

// Bits [bit, bit + width) of an MSB-first stream, width <= 32 (as hc1's decoder reads them).
uint64_t ReadMsb(const uint8_t* s, uint64_t size, uint64_t bit, int width) {
  const uint64_t byte = bit >> 3;
  uint64_t v = 0;
  for (uint64_t k = 0; k < 8; ++k) v = (v << 8) | (byte + k < size ? s[byte + k] : 0u);
  return (v << (bit & 7)) >> (64 - width);
}

// Stores a partial sum.
inline void Put(float* y, bool add, float v) { *y = add ? *y + v : v; }

}  // namespace

const float* Hc2PairTable(int bits, int codebook) {
  // One table per (codebook, bits), each made on first use (0.9 MB for all six; a process that
  // reads only codebook 2 at 4 bits through the integer kernel makes none).
  static std::once_flag once[6];
  static std::vector<float>* const tables = new std::vector<float>[6];
  const int k = std::clamp(bits, 2, 4);
  const int i = (codebook == hc2::kCodebookTrained ? 0 : 3) + k - 2;
  std::call_once(once[i], [&] {
    const float* cb = hc2::TrellisCodebook(k, codebook);
    std::vector<float>& v = tables[i];
    v.resize(size_t{2} << (12 + k));
    for (uint32_t w = 0; w < (1u << (12 + k)); ++w) {
      v[2 * w] = cb[w & 0xFFF];
      v[2 * w + 1] = cb[(w >> k) & 0xFFF];
    }
  });
  return tables[i].data();
}

// ---------------------------------------------------------------------------------------------
// Scalar references: one float accumulator per output, elements in order.

void DenseScalar(const DenseArgs& a, int nb) {
  const size_t es = a.f16 ? 2 : 4;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = a.w + static_cast<size_t>(r * a.cols) * es;
    for (int b = 0; b < nb; ++b) {
      const float* x = a.x + b * a.ldx;
      float acc = 0;
      for (int64_t c = a.c0; c < a.c1; ++c) {
        const float w = a.f16 ? HalfToFloat(LoadU16(row + 2 * c)) : LoadF32(row + 4 * c);
        acc += w * x[c - a.c0];
      }
      Put(a.y + b * a.ldy + r, a.add, acc);
    }
  }
}

// Per block: the windows of spec-hc2.md section 4 (newest symbol in the high bits, as
// TrellisValues), one codebook value each, dotted with the rotated X, then scaled.
void Hc2Scalar(const Hc2Args& a, int nb) {
  const int k = a.bits;
  const int64_t nblk = a.cols / 128;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    float acc[16] = {};
    for (int64_t j = a.c0 / 128; j < a.c1 / 128; ++j) {
      const int64_t blk = r * nblk + j;
      const float s = HalfToFloat(LoadU16(a.scales + 2 * blk));
      float bacc[16] = {};
      uint32_t w = 0;
      for (int i = 0; i < 128; ++i) {
        const uint64_t bit = static_cast<uint64_t>(blk * 128 + i) * k;
        w = (w >> k) | (ReadLsb(a.codes, a.codes_size, bit, k) << (12 - k));
        const float c = a.cb[w];
        for (int b = 0; b < nb; ++b) bacc[b] += c * a.xr[b * a.ldx + j * 128 - a.c0 + i];
      }
      for (int b = 0; b < nb; ++b) acc[b] += s * bacc[b];
    }
    for (int b = 0; b < nb; ++b) Put(a.y + b * a.ldy + r, a.add, acc[b]);
  }
}

void Hc2IntScalar(const Hc2Args& a, int nb) {
  const int k = a.bits;
  const int64_t nblk = a.cols / 128;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    float acc[16] = {};
    for (int64_t j = a.c0 / 128; j < a.c1 / 128; ++j) {
      const int64_t blk = r * nblk + j;
      const float s = HalfToFloat(LoadU16(a.scales + 2 * blk));
      int32_t bacc[16] = {};
      uint32_t w = 0;
      for (int i = 0; i < 128; ++i) {
        const uint64_t bit = static_cast<uint64_t>(blk * 128 + i) * k;
        w = (w >> k) | (ReadLsb(a.codes, a.codes_size, bit, k) << (12 - k));
        const int32_t c = a.g[hc2::StructuredByte(w, k, a.d)];
        const int at = (i >> 6) * 128 + (i & 63);  // chunk i / 64: qh, then ql
        for (int b = 0; b < nb; ++b) {
          const int8_t* x = a.xb + j * a.xb_block + 256 * b;
          bacc[b] += c * (256 * x[at] + x[at + 64]);
        }
      }
      for (int b = 0; b < nb; ++b) {
        const float f = s * a.xs[j * a.xs_block + b] * 0x1p-5f;
        acc[b] += static_cast<float>(bacc[b]) * f;
      }
    }
    for (int b = 0; b < nb; ++b) Put(a.y + b * a.ldy + r, a.add, acc[b]);
  }
}

float QuantizeX16(const float* v, int n, bool even_odd, int8_t* out, int32_t* lane_sums) {
  constexpr int32_t kQ = 32639;
  if (lane_sums != nullptr) std::fill(lane_sums, lane_sums + 16, 0);
  float m = 0;
  bool finite = true;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(v[i]);
    finite &= a <= std::numeric_limits<float>::max();
    m = std::max(m, a);
  }
  if (!finite) {
    std::fill(out, out + 2 * n, int8_t{0});
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float inv = m > 0 ? static_cast<float>(kQ) / m : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int32_t q = static_cast<int32_t>(std::clamp<long>(std::lrint(v[i] * inv), -kQ, kQ));
    const int32_t hi = (q + 128) >> 8;  // round(q / 256): q - 256 hi in [-128, 127]
    const int k = i & 63;
    const int pos = even_odd ? (k & 1) * 32 + (k >> 1) : k;
    int8_t* chunk = out + (i >> 6) * 128;
    chunk[pos] = static_cast<int8_t>(hi);
    chunk[64 + pos] = static_cast<int8_t>(q - 256 * hi);
    if (lane_sums != nullptr) lane_sums[pos >> 2] += q;
  }
  return m / static_cast<float>(kQ);
}

void RtnIntScalar(const RtnArgs& a, int nb) {
  const int64_t gpr = a.cols / a.group;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    float acc[16] = {}, macc[16] = {};
    for (int64_t gi = a.c0 / a.group; gi < a.c1 / a.group; ++gi) {
      const int64_t g = r * gpr + gi;
      const float s = HalfToFloat(LoadU16(a.scales + 4 * g));
      const float m = HalfToFloat(LoadU16(a.scales + 4 * g + 2));
      const int32_t z = RtnZero(s, m);
      int32_t bacc[16] = {};
      for (int64_t i = 0; i < a.group; ++i) {
        const int32_t q = static_cast<int32_t>(ReadLsb(
                              a.codes, a.codes_size, static_cast<uint64_t>(g * a.group + i) * 4, 4)) -
                          z;
        const int64_t k = i & 63;
        const int64_t at = (i >> 6) * 128 + (k & 1) * 32 + (k >> 1);
        for (int b = 0; b < nb; ++b) {
          const int8_t* x = a.xb + gi * a.xb_block + 2 * a.group * b;
          bacc[b] += q * (256 * x[at] + x[at + 64]);
        }
      }
      for (int b = 0; b < nb; ++b) {
        acc[b] += static_cast<float>(bacc[b]) * (s * a.xs[gi * a.xs_block + b]);
        macc[b] += (m + static_cast<float>(z) * s) * a.xsum[b * gpr + gi];
      }
    }
    for (int b = 0; b < nb; ++b) Put(a.y + b * a.ldy + r, a.add, acc[b] + macc[b]);
  }
}

void RtnScalar(const RtnArgs& a, int nb) {
  const int64_t gpr = a.cols / a.group;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    float acc[16] = {};
    for (int64_t gi = a.c0 / a.group; gi < a.c1 / a.group; ++gi) {
      const int64_t g = r * gpr + gi;
      const float s = HalfToFloat(LoadU16(a.scales + 4 * g));
      const float m = HalfToFloat(LoadU16(a.scales + 4 * g + 2));
      float qacc[16] = {};
      for (int64_t i = 0; i < a.group; ++i) {
        const int64_t e = r * a.cols + gi * a.group + i;
        const float q = static_cast<float>(
            ReadLsb(a.codes, a.codes_size, static_cast<uint64_t>(e) * a.bits, a.bits));
        for (int b = 0; b < nb; ++b) qacc[b] += q * a.x[b * a.ldx + gi * a.group - a.c0 + i];
      }
      for (int b = 0; b < nb; ++b) acc[b] += s * qacc[b] + m * a.xsum[b * gpr + gi];
    }
    for (int b = 0; b < nb; ++b) Put(a.y + b * a.ldy + r, a.add, acc[b]);
  }
}

void Hc1Scalar(const Hc1Args& a, int nb) {
  const int64_t pairs = a.cols / 2;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    float acc[16] = {};
    for (int64_t j = a.c0 / 2; j < a.c1 / 2; ++j) {
      const uint64_t bit = a.prefix + static_cast<uint64_t>(r * pairs + j) * a.width;
      const uint64_t I = std::min(ReadMsb(a.codes, a.codes_size, bit, a.width), a.entries);
      const float t0 = a.table[2 * I], t1 = a.table[2 * I + 1];
      for (int b = 0; b < nb; ++b) {
        const float* x = a.x + b * a.ldx + 2 * j - a.c0;
        acc[b] += t0 * x[0] + t1 * x[1];
      }
    }
    for (int b = 0; b < nb; ++b) Put(a.y + b * a.ldy + r, a.add, acc[b]);
  }
}

// ---------------------------------------------------------------------------------------------
// AVX-512. Codes are unpacked 16 at a time: a masked byte load (never past the stream's end,
// never before its start), a VBMI byte permute that gives lane l the 4 bytes holding its field,
// a per-lane shift and a mask. Values come from the codebook by gathers.

#if defined(__x86_64__)
// GCC 12 warns inside its own intrinsics (_mm512_cvtph_ps, _mm512_reduce_add_ps use
// _mm512_undefined_*): a known false "may be used uninitialized".
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define HC_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,fma,f16c")))

namespace {

// The byte mask of a load of up to `want` bytes at `addr`, clipped to [lo, hi).
// One F16 value by the F16C instruction (HalfToFloat's 256 KB table costs an L2 access).
HC_AVX512 inline float HalfF16C(uint16_t h) { return _cvtsh_ss(h); }

inline __mmask64 ClipMask(uintptr_t addr, int want, uintptr_t lo, uintptr_t hi) {
  const int64_t avail = static_cast<int64_t>(hi) - static_cast<int64_t>(addr);
  uint64_t m = avail >= want ? (want == 64 ? ~0ull : (1ull << want) - 1)
                             : (avail <= 0 ? 0 : (1ull << avail) - 1);
  if (addr < lo) m &= ~0ull << (lo - addr);
  return m;
}

template <bool kF16>
HC_AVX512 inline __m512 LoadW16(const uint8_t* row, int64_t c) {
  if constexpr (kF16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c)));
  } else {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + c);
  }
}

template <bool kF16>
HC_AVX512 inline __m512 LoadW16Masked(const uint8_t* row, int64_t c, __mmask16 m) {
  if constexpr (kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * c));
  } else {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + c);
  }
}

// The byte permutation and shifts that put bits [first + k l, first + k l + 32) of a 16-byte
// window into lane l (vpermb, then vpsrlvd): 16 fields of k bits from one load.
HC_AVX512 inline void FieldExtract(int k, int first, __m512i* vperm, __m512i* vshift) {
  alignas(64) uint8_t perm[64];
  alignas(64) uint32_t shift[16];
  for (int l = 0; l < 16; ++l) {
    const int bit = first + k * l;
    for (int t = 0; t < 4; ++t) perm[4 * l + t] = static_cast<uint8_t>((bit >> 3) + t);
    shift[l] = static_cast<uint32_t>(bit & 7);
  }
  *vperm = _mm512_load_si512(perm);
  *vshift = _mm512_load_si512(shift);
}

// Dense rows: U column vectors in flight per batch row (more independent FMA chains at small NB).
template <int NB, bool kF16>
HC_AVX512 void DenseAvx512Impl(const DenseArgs& a) {
  constexpr int U = NB == 1 ? 4 : (NB == 2 ? 2 : 1);
  constexpr int64_t kStep = 16 * U;
  const int64_t full = a.c0 + (a.c1 - a.c0) / kStep * kStep;
  const size_t es = kF16 ? 2 : 4;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    const uint8_t* row = a.w + static_cast<size_t>(r * a.cols) * es;
    __m512 acc[U][NB];
    for (int u = 0; u < U; ++u) {
      for (int b = 0; b < NB; ++b) acc[u][b] = _mm512_setzero_ps();
    }
    const float* x = a.x - a.c0;
    for (int64_t c = a.c0; c < full; c += kStep) {
      for (int u = 0; u < U; ++u) {
        const __m512 w = LoadW16<kF16>(row, c + 16 * u);
        for (int b = 0; b < NB; ++b) {
          acc[u][b] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + b * a.ldx + c + 16 * u), acc[u][b]);
        }
      }
    }
    for (int64_t c = full; c < a.c1; c += 16) {
      const int n = static_cast<int>(std::min<int64_t>(16, a.c1 - c));
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      const __m512 w = LoadW16Masked<kF16>(row, c, m);
      for (int b = 0; b < NB; ++b) {
        acc[0][b] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, x + b * a.ldx + c), acc[0][b]);
      }
    }
    for (int b = 0; b < NB; ++b) {
      __m512 s = acc[0][b];
      for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[u][b]);
      Put(a.y + b * a.ldy + r, a.add, _mm512_reduce_add_ps(s));
    }
  }
}

template <int NB>
HC_AVX512 void DenseAvx512T(const DenseArgs& a) {
  if (a.f16) {
    DenseAvx512Impl<NB, true>(a);
  } else {
    DenseAvx512Impl<NB, false>(a);
  }
}

// hc2: window i of a block is bits [k(i+1) + 4, k(i+1) + 16) of the block's stream with two zero
// bytes in front, so the 16 windows of group g lie in the 16 bytes from byte 2kg of that
// prefixed stream (the two prefix bytes are masked off the load). Per block: 8 gathers of 16
// codebook values, scaled, each dotted with the rotated X of every batch row.
template <int NB>
HC_AVX512 void Hc2SingleAvx512T(const Hc2Args& a) {
  const int k = a.bits;
  __m512i vperm, vshift;
  FieldExtract(k, k + 4, &vperm, &vshift);  // window i: bits k (i + 1) + 4 on
  const __m512i wmask = _mm512_set1_epi32(0xFFF);
  const int64_t nblk = a.cols / 128;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(a.codes), hi = lo + a.codes_size;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    __m512 acc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps();
    for (int64_t j = a.c0 / 128; j < a.c1 / 128; ++j) {
      const int64_t blk = r * nblk + j;
      const __m512 s = _mm512_set1_ps(HalfF16C(LoadU16(a.scales + 2 * blk)));
      const uintptr_t start = lo + static_cast<uintptr_t>(blk) * 16 * k;  // the block's bytes
      const uintptr_t bp = start - 2;
      const float* xp = a.xr + j * 128 - a.c0;
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {
        const uintptr_t addr = bp + 2 * k * g;
        const __m512i bytes = _mm512_maskz_loadu_epi8(ClipMask(addr, 16, start, hi),
                                                      reinterpret_cast<const void*>(addr));
        const __m512i v = _mm512_permutexvar_epi8(vperm, bytes);
        const __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(v, vshift), wmask);
        const __m512 c = _mm512_mul_ps(s, _mm512_i32gather_ps(idx, a.cb, 4));
        for (int b = 0; b < NB; ++b) {
          acc[b] = _mm512_fmadd_ps(c, _mm512_loadu_ps(xp + b * a.ldx + 16 * g), acc[b]);
        }
      }
    }
    for (int b = 0; b < NB; ++b) Put(a.y + b * a.ldy + r, a.add, _mm512_reduce_add_ps(acc[b]));
  }
}

// hc2 with the pair table: pair p of a block (weights 2p, 2p + 1) has its 12 + K-bit window at
// block bits [2Kp + K - 12, 2Kp + 2K) (zeros before the block). The block's 16K bytes are read as
// 2K 64-bit words; with p unrolled every window is a constant shift (and, across a word
// boundary, a constant funnel shift) of them. Each window then fetches its two floats with one
// scalar 8-byte load (no gather: on some CPUs, e.g. AMD Zen 4, eight scalar loads and a few
// shuffles beat one vector gather), eight pairs are packed into a vector and dotted with X.
template <int K>
inline uint32_t PairWindow(const uint64_t* w, int p) {
  const int bit = 2 * K * p + K - 12;
  constexpr uint32_t kMask = (1u << (12 + K)) - 1;
  if (bit < 0) return static_cast<uint32_t>(w[0] << -bit) & kMask;
  const int j = bit >> 6, s = bit & 63;
  uint64_t v = w[j] >> s;
  if (s + 12 + K > 64) v |= w[j + 1] << (64 - s);
  return static_cast<uint32_t>(v) & kMask;
}

// Eight float pairs, windows of pairs p0..p0+7, as one vector of 16 floats in weight order.
template <int K>
HC_AVX512 inline __m512 LoadPairs8(const double* table, const uint64_t* w, int p0) {
  __m128d q[4];
  for (int t = 0; t < 4; ++t) {
    q[t] = _mm_loadh_pd(_mm_load_sd(table + PairWindow<K>(w, p0 + 2 * t)),
                        table + PairWindow<K>(w, p0 + 2 * t + 1));
  }
  const __m256d lo = _mm256_insertf128_pd(_mm256_castpd128_pd256(q[0]), q[1], 1);
  const __m256d hi = _mm256_insertf128_pd(_mm256_castpd128_pd256(q[2]), q[3], 1);
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(lo), hi, 1));
}

template <int K, int NB>
HC_AVX512 void Hc2PairAvx512K(const Hc2Args& a) {
  const double* table = reinterpret_cast<const double*>(a.pairs);
  const int64_t nblk = a.cols / 128;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    __m512 acc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps();
    for (int64_t j = a.c0 / 128; j < a.c1 / 128; ++j) {
      const int64_t blk = r * nblk + j;
      const __m512 s = _mm512_set1_ps(HalfF16C(LoadU16(a.scales + 2 * blk)));
      uint64_t w[2 * K];
      std::memcpy(w, a.codes + blk * 16 * K, sizeof(w));
      const float* xp = a.xr + j * 128 - a.c0;
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        const __m512 c = _mm512_mul_ps(s, LoadPairs8<K>(table, w, 8 * v));
        for (int b = 0; b < NB; ++b) {
          acc[b] = _mm512_fmadd_ps(c, _mm512_loadu_ps(xp + b * a.ldx + 16 * v), acc[b]);
        }
      }
    }
    for (int b = 0; b < NB; ++b) Put(a.y + b * a.ldy + r, a.add, _mm512_reduce_add_ps(acc[b]));
  }
}

template <int NB>
void Hc2PairAvx512T(const Hc2Args& a) {
  switch (a.bits) {
    case 2:
      return Hc2PairAvx512K<2, NB>(a);
    case 3:
      return Hc2PairAvx512K<3, NB>(a);
    default:
      return Hc2PairAvx512K<4, NB>(a);
  }
}

// rtn: 16 codes of `bits` bits start on a byte boundary (groups are multiples of 16); lane l
// takes bits [l * bits, (l + 1) * bits) of the 2 * bits bytes from there.
template <int NB>
HC_AVX512 void RtnAvx512T(const RtnArgs& a) {
  const int k = a.bits;
  __m512i vperm, vshift;
  FieldExtract(k, 0, &vperm, &vshift);
  const __m512i qmask = _mm512_set1_epi32((1 << k) - 1);
  const int64_t gpr = a.cols / a.group;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(a.codes), hi = lo + a.codes_size;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    __m512 acc[NB];
    float macc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps(), macc[b] = 0.0f;
    for (int64_t gi = a.c0 / a.group; gi < a.c1 / a.group; ++gi) {
      const int64_t g = r * gpr + gi;
      const float s = HalfF16C(LoadU16(a.scales + 4 * g));
      const float m = HalfF16C(LoadU16(a.scales + 4 * g + 2));
      const int64_t e0 = r * a.cols + gi * a.group;
      const __m512 sv = _mm512_set1_ps(s);
      for (int64_t e = 0; e < a.group; e += 16) {
        const uintptr_t addr = lo + static_cast<uintptr_t>((e0 + e) * k / 8);
        const __m512i bytes = _mm512_maskz_loadu_epi8(ClipMask(addr, 2 * k + 4, lo, hi),
                                                      reinterpret_cast<const void*>(addr));
        const __m512i v = _mm512_permutexvar_epi8(vperm, bytes);
        const __m512 q = _mm512_mul_ps(
            sv, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(v, vshift), qmask)));
        for (int b = 0; b < NB; ++b) {
          const __m512 xv = _mm512_loadu_ps(a.x + b * a.ldx + gi * a.group - a.c0 + e);
          acc[b] = _mm512_fmadd_ps(q, xv, acc[b]);
        }
      }
      for (int b = 0; b < NB; ++b) macc[b] += m * a.xsum[b * gpr + gi];
    }
    for (int b = 0; b < NB; ++b) {
      Put(a.y + b * a.ldy + r, a.add, _mm512_reduce_add_ps(acc[b]) + macc[b]);
    }
  }
}

// hc1: 16 pair indices at once. Lane l's index starts at bit s0 + l * width of a 64-byte load
// (s0 < 8); the permute gathers its 4 bytes big-endian, so one right shift by 32 - sh - width
// and a mask give the MSB-first field. Two 64-bit gathers fetch the 16 (x, y) pairs, which line
// up with 32 consecutive floats of X.
template <int NB>
HC_AVX512 void Hc1Avx512T(const Hc1Args& a) {
  const int w = a.width;
  const int64_t pairs = a.cols / 2;
  const __m512i lanew =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(w));
  const __m512i imask = _mm512_set1_epi32(static_cast<int>((1ull << w) - 1));
  const __m512i top = _mm512_set1_epi32(static_cast<int>(a.entries));
  const __m512i bytes4 = _mm512_set1_epi32(0x00010203);
  const __m512i rep = _mm512_set1_epi32(0x01010101);
  const __m512i seven = _mm512_set1_epi32(7);
  const __m512i base_shift = _mm512_set1_epi32(32 - w);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(a.codes), hi = lo + a.codes_size;
  const long long* table = reinterpret_cast<const long long*>(a.table);
  for (int64_t r = a.r0; r < a.r1; ++r) {
    __m512 acc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps();
    for (int64_t j0 = a.c0 / 2; j0 < a.c1 / 2; j0 += 16) {
      const int nl = static_cast<int>(std::min<int64_t>(16, a.c1 / 2 - j0));
      const uint64_t bit0 = a.prefix + static_cast<uint64_t>(r * pairs + j0) * w;
      const uintptr_t addr = lo + (bit0 >> 3);
      const __m512i bits = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(bit0 & 7)), lanew);
      const __m512i q = _mm512_srli_epi32(bits, 3);
      const __m512i sh = _mm512_sub_epi32(base_shift, _mm512_and_si512(bits, seven));
      const __m512i bytes =
          _mm512_maskz_loadu_epi8(ClipMask(addr, 64, lo, hi), reinterpret_cast<const void*>(addr));
      const __m512i v =
          _mm512_permutexvar_epi8(_mm512_add_epi32(_mm512_mullo_epi32(q, rep), bytes4), bytes);
      const __m512i idx = _mm512_min_epu32(_mm512_and_si512(_mm512_srlv_epi32(v, sh), imask), top);
      const int n0 = std::min(nl, 8), n1 = nl - n0;
      const __m512 t0 = _mm512_castsi512_ps(
          _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>((1u << n0) - 1),
                                      _mm512_castsi512_si256(idx), table, 8));
      const __m512 t1 = _mm512_castsi512_ps(
          _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), static_cast<__mmask8>((1u << n1) - 1),
                                      _mm512_extracti64x4_epi64(idx, 1), table, 8));
      const __mmask16 m0 = static_cast<__mmask16>((1u << (2 * n0)) - 1);
      const __mmask16 m1 = static_cast<__mmask16>((1u << (2 * n1)) - 1);
      for (int b = 0; b < NB; ++b) {
        const float* xp = a.x + b * a.ldx + 2 * j0 - a.c0;
        acc[b] = _mm512_fmadd_ps(t0, _mm512_maskz_loadu_ps(m0, xp), acc[b]);
        acc[b] = _mm512_fmadd_ps(t1, _mm512_maskz_loadu_ps(m1, xp + 16), acc[b]);
      }
    }
    for (int b = 0; b < NB; ++b) Put(a.y + b * a.ldy + r, a.add, _mm512_reduce_add_ps(acc[b]));
  }
}

}  // namespace

#define HC_DISPATCH(NAME, ARGS)              \
  void NAME##Avx512(const ARGS& a, int nb) { \
    switch (nb) {                            \
      case 16:                               \
        return NAME##Avx512T<16>(a);         \
      case 8:                                \
        return NAME##Avx512T<8>(a);          \
      case 4:                                \
        return NAME##Avx512T<4>(a);          \
      case 2:                                \
        return NAME##Avx512T<2>(a);          \
      default:                               \
        return NAME##Avx512T<1>(a);          \
    }                                        \
  }
HC_DISPATCH(Dense, DenseArgs)
HC_DISPATCH(Hc2Single, Hc2Args)
HC_DISPATCH(Hc2Pair, Hc2Args)
HC_DISPATCH(Rtn, RtnArgs)
HC_DISPATCH(Hc1, Hc1Args)
#undef HC_DISPATCH

// hc2's integer path (4 bits, codebook 2). Half h of a block (weights 64h..64h+63) is read
// from byte 32h - 1 (a zero before the block): source qword q of the permute holds block bytes
// [32h + 4q - 1, 32h + 4q + 7), so in lane j of that qword the 8 bits at 4j are the window's
// older byte o = w mod 256 and those at 4j + 4 are w >> 4. beta = (w >> 4) XOR D(o) (GF(2)
// affine), G[beta] + 128 from two 128-byte tables, then 64 products per vpdpbusd with X's high
// and low bytes into int32 lanes; each block's lanes are scaled by s * xs * 2^-5 into float
// accumulators.
#define HC_AVX512_INT \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,gfni,avx512vnni,fma,f16c")))

template <int NB>
HC_AVX512_INT void Hc2IntAvx512T(const Hc2Args& a) {
  alignas(64) uint8_t perm[64], co[64], cu[64];
  for (int q = 0; q < 8; ++q) {
    for (int t = 0; t < 8; ++t) {
      perm[8 * q + t] = static_cast<uint8_t>(4 * q + t);
      co[8 * q + t] = static_cast<uint8_t>(4 * t);
      cu[8 * q + t] = static_cast<uint8_t>(4 * t + 4);
    }
  }
  // gf2p8affine: result bit i = parity(A.byte[7 - i] & x), so A.byte[7 - i] bit j = bit i of d[j].
  uint64_t amat = 0;
  for (int i = 0; i < 8; ++i) {
    uint64_t row = 0;
    for (int j = 0; j < 8; ++j) row |= static_cast<uint64_t>((a.d[j] >> i) & 1u) << j;
    amat |= row << (8 * (7 - i));
  }
  const __m512i vperm = _mm512_load_si512(perm), vco = _mm512_load_si512(co),
                vcu = _mm512_load_si512(cu), vamat = _mm512_set1_epi64(static_cast<int64_t>(amat));
  // G + 128 as unsigned bytes (vpdpbusd's first operand): the sign bit flipped.
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i g0 = _mm512_xor_si512(_mm512_loadu_si512(a.g), bias),
                g1 = _mm512_xor_si512(_mm512_loadu_si512(a.g + 64), bias),
                g2 = _mm512_xor_si512(_mm512_loadu_si512(a.g + 128), bias),
                g3 = _mm512_xor_si512(_mm512_loadu_si512(a.g + 192), bias);
  const int64_t nblk = a.cols / 128;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(a.codes), hi = lo + a.codes_size;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    __m512 acc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps();
    for (int64_t j = a.c0 / 128; j < a.c1 / 128; ++j) {
      const int64_t blk = r * nblk + j;
      const float s = HalfF16C(LoadU16(a.scales + 2 * blk)) * 0x1p-5f;
      const uintptr_t start = lo + static_cast<uintptr_t>(blk) * 64;
      const int8_t* xp = a.xb + j * a.xb_block;
      __m512i hacc[NB], lacc[NB];
      for (int b = 0; b < NB; ++b) {
        hacc[b] = _mm512_setzero_si512();
        lacc[b] = _mm512_loadu_si512(a.xc + j * a.xc_block + 16 * b);
      }
      for (int h = 0; h < 2; ++h) {
        // Half 0 drops the byte before the block; half 1 reads 31 bytes past it, clipped only
        // at the end of the codes.
        const uintptr_t addr = start + 32 * h - 1;
        const __mmask64 m =
            h == 0 ? ~1ull : (addr + 64 <= hi ? ~0ull : ClipMask(addr, 64, start, hi));
        const __m512i raw = _mm512_maskz_loadu_epi8(m, reinterpret_cast<const void*>(addr));
        const __m512i src = _mm512_permutexvar_epi8(vperm, raw);
        const __m512i o = _mm512_multishift_epi64_epi8(vco, src);
        const __m512i u = _mm512_multishift_epi64_epi8(vcu, src);
        const __m512i beta = _mm512_xor_si512(u, _mm512_gf2p8affine_epi64_epi8(o, vamat, 0));
        const __m512i glo = _mm512_permutex2var_epi8(g0, beta, g1);
        const __m512i ghi = _mm512_permutex2var_epi8(g2, beta, g3);
        const __m512i cu = _mm512_mask_blend_epi8(_mm512_movepi8_mask(beta), glo, ghi);
        for (int b = 0; b < NB; ++b) {
          const int8_t* x = xp + 256 * b + 128 * h;  // chunk h: qh, then ql
          hacc[b] = _mm512_dpbusd_epi32(hacc[b], cu, _mm512_loadu_si512(x));
          lacc[b] = _mm512_dpbusd_epi32(lacc[b], cu, _mm512_loadu_si512(x + 64));
        }
      }
      // Lane l: 256 sum(cu qh) + sum(cu ql) - 128 sum(q) = sum(c q) over its 8 weights, exact.
      for (int b = 0; b < NB; ++b) {
        const __m512i v = _mm512_add_epi32(_mm512_slli_epi32(hacc[b], 8), lacc[b]);
        const __m512 f = _mm512_set1_ps(s * a.xs[j * a.xs_block + b]);
        acc[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), f, acc[b]);
      }
    }
    for (int b = 0; b < NB; ++b) Put(a.y + b * a.ldy + r, a.add, _mm512_reduce_add_ps(acc[b]));
  }
}

// rtn's integer path (4 bits, groups of multiples of 64): the 32 code bytes of 64 weights give
// their low nibbles (even weights) and high nibbles (odd weights) as one vector of 64 unsigned
// bytes, in the order X was stored in; per batch row two vpdpbusd (X's high and low bytes) into
// int32 lanes: 256 hacc + lacc = sum(q x) exactly (each lane below 2^24, so exact in float too);
// each group scaled once by s * xs, then, in float, the group's zero point z = RtnZero(s, m)
// taken out, - z * sum(x rounded) * s * xs, and (m + z s) * sum(x) added.
template <int NB>
HC_AVX512_INT void RtnIntAvx512T(const RtnArgs& a) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const int64_t gpr = a.cols / a.group;
  for (int64_t r = a.r0; r < a.r1; ++r) {
    __m512 acc[NB];
    float macc[NB];
    for (int b = 0; b < NB; ++b) acc[b] = _mm512_setzero_ps(), macc[b] = 0.0f;
    for (int64_t gi = a.c0 / a.group; gi < a.c1 / a.group; ++gi) {
      const int64_t g = r * gpr + gi;
      const float s = HalfF16C(LoadU16(a.scales + 4 * g));
      const float m = HalfF16C(LoadU16(a.scales + 4 * g + 2));
      const float zf = static_cast<float>(RtnZero(s, m));
      const uint8_t* codes = a.codes + static_cast<uint64_t>(g * a.group) / 2;
      const int8_t* xg = a.xb + gi * a.xb_block;
      __m512i hacc[NB], lacc[NB];
      for (int b = 0; b < NB; ++b) hacc[b] = lacc[b] = _mm512_setzero_si512();
      for (int64_t c = 0; c < a.group / 64; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32 * c));
        const __m512i q = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_and_si256(v, low4)),
            _mm256_and_si256(_mm256_srli_epi16(v, 4), low4), 1);
        for (int b = 0; b < NB; ++b) {
          const int8_t* x = xg + 2 * a.group * b + 128 * c;
          hacc[b] = _mm512_dpbusd_epi32(hacc[b], q, _mm512_loadu_si512(x));
          lacc[b] = _mm512_dpbusd_epi32(lacc[b], q, _mm512_loadu_si512(x + 64));
        }
      }
      for (int b = 0; b < NB; ++b) {
        const __m512i v = _mm512_add_epi32(_mm512_slli_epi32(hacc[b], 8), lacc[b]);
        const float f = s * a.xs[gi * a.xs_block + b];
        acc[b] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(f), acc[b]);
        macc[b] += (m + zf * s) * a.xsum[b * gpr + gi] -
                   zf * static_cast<float>(a.xc[gi * a.xc_block + b]) * f;
      }
    }
    for (int b = 0; b < NB; ++b) {
      Put(a.y + b * a.ldy + r, a.add, _mm512_reduce_add_ps(acc[b]) + macc[b]);
    }
  }
}

void RtnIntAvx512(const RtnArgs& a, int nb) {
  switch (nb) {
    case 1: return RtnIntAvx512T<1>(a);
    case 2: return RtnIntAvx512T<2>(a);
    case 4: return RtnIntAvx512T<4>(a);
    case 8: return RtnIntAvx512T<8>(a);
    default: return RtnIntAvx512T<16>(a);
  }
}

void Hc2IntAvx512(const Hc2Args& a, int nb) {
  switch (nb) {
    case 1: return Hc2IntAvx512T<1>(a);
    case 2: return Hc2IntAvx512T<2>(a);
    case 4: return Hc2IntAvx512T<4>(a);
    case 8: return Hc2IntAvx512T<8>(a);
    default: return Hc2IntAvx512T<16>(a);
  }
}

bool Hc2IntAvailable() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni") &&
                          __builtin_cpu_supports("avx512vnni");
  return has;
}

void Hc2Avx512(const Hc2Args& a, int nb) {
  if (a.pairs != nullptr) {
    Hc2PairAvx512(a, nb);
  } else {
    Hc2SingleAvx512(a, nb);
  }
}

#else  // not x86-64: never called (LinearHasAvx512() is false).
void DenseAvx512(const DenseArgs& a, int nb) { DenseScalar(a, nb); }
void Hc2Avx512(const Hc2Args& a, int nb) { Hc2Scalar(a, nb); }
void Hc2IntAvx512(const Hc2Args& a, int nb) { Hc2IntScalar(a, nb); }
void RtnIntAvx512(const RtnArgs& a, int nb) { RtnIntScalar(a, nb); }
bool Hc2IntAvailable() { return false; }
void RtnAvx512(const RtnArgs& a, int nb) { RtnScalar(a, nb); }
void Hc1Avx512(const Hc1Args& a, int nb) { Hc1Scalar(a, nb); }
#endif

}  // namespace hc::infer
