#include "core/base/dtype.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/base/simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HC_DTYPE_X86 1
#endif

namespace hc {
namespace {

struct DTypeEntry {
  DType dtype;
  absl::string_view name;
  size_t size;
};

constexpr std::array<DTypeEntry, 15> kDTypes = {{
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},     {DType::kI8, "I8", 1},
    {DType::kF8E5M2, "F8_E5M2", 1}, {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2},   {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI32, "I32", 4},   {DType::kU32, "U32", 4},
    {DType::kF32, "F32", 4},   {DType::kF64, "F64", 8},   {DType::kI64, "I64", 8},
    {DType::kU64, "U64", 8},
}};

// F16 -> F32 through a 64 Ki-entry table built once: the hot path of every F16 model.
struct HalfTable {
  std::array<float, 65536> v;
  HalfTable() {
    for (uint32_t h = 0; h < 65536; ++h) v[h] = Convert(static_cast<uint16_t>(h));
  }
  static float Convert(uint16_t h) {
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
      u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
      u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
      u = sign;
    } else {  // subnormal: exact as a scaled integer
      float f = std::ldexp(static_cast<float>(man), -24);
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

const HalfTable& GetHalfTable() {
  static const HalfTable* table = new HalfTable();
  return *table;
}

inline uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline void Store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// F16C kernels: 8 values per step where the CPU has F16C, the scalar definitions elsewhere.
// Hardware conversions equal the scalar ones (round to nearest even, subnormals exact) except
// on NaN payloads, so a vector holding a NaN is left to the scalar loop. Each returns how many
// leading elements it converted; the caller finishes the rest.
#ifdef HC_DTYPE_X86
#define HC_F16C __attribute__((target("avx2,f16c")))

// Sets *special when a NaN or an infinity was seen (those groups of 8 go through the table).
HC_F16C size_t WidenF16C(const uint8_t* src, size_t n, float* dst, bool* special) {
  const float* table = GetHalfTable().v.data();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m128i odd = _mm_cmpgt_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)),
                                        _mm_set1_epi16(0x7bff));
    if (_mm_movemask_epi8(odd) != 0) {
      *special = true;
      for (size_t j = i; j < i + 8; ++j) dst[j] = table[Load16(src + 2 * j)];
    } else {
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
  }
  return i;
}

HC_F16C size_t NarrowF16C(const float* src, size_t n, uint8_t* dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(src + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0) {
      for (size_t j = i; j < i + 8; ++j) Store16(dst + 2 * j, FloatToHalf(src[j]));
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i),
                       _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
  return i;
}

HC_F16C size_t RoundTripF16C(float* v, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(v + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0) {
      for (size_t j = i; j < i + 8; ++j) v[j] = HalfToFloat(FloatToHalf(v[j]));
    } else {
      _mm256_storeu_ps(
          v + i,
          _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
    }
  }
  return i;
}

bool HaveF16C() { return CpuHasF16C() && SimdAllowed(); }
size_t WidenF16Fast(const uint8_t* src, size_t n, float* dst, bool* special) {
  return HaveF16C() ? WidenF16C(src, n, dst, special) : 0;
}
size_t NarrowF16Fast(const float* src, size_t n, uint8_t* dst) {
  return HaveF16C() ? NarrowF16C(src, n, dst) : 0;
}
size_t RoundTripF16Fast(float* v, size_t n) { return HaveF16C() ? RoundTripF16C(v, n) : 0; }
#else
size_t WidenF16Fast(const uint8_t*, size_t, float*, bool*) { return 0; }
size_t NarrowF16Fast(const float*, size_t, uint8_t*) { return 0; }
size_t RoundTripF16Fast(float*, size_t) { return 0; }
#endif

}  // namespace

absl::string_view DTypeName(DType d) { return kDTypes[static_cast<size_t>(d)].name; }

std::optional<DType> ParseDType(absl::string_view name) {
  for (const auto& e : kDTypes) {
    if (e.name == name) return e.dtype;
  }
  return std::nullopt;
}

size_t DTypeSize(DType d) { return kDTypes[static_cast<size_t>(d)].size; }

float HalfToFloat(uint16_t h) { return GetHalfTable().v[h]; }

uint16_t FloatToHalf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // result is subnormal or zero: round abs * 2^24 to an integer
    float a;
    std::memcpy(&a, &abs, 4);
    const float scaled = a * 16777216.0f;  // exact: a power-of-two scaling
    const float r = std::nearbyint(scaled);  // default rounding mode: nearest even
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  // Normal: rebias, then round the 13 dropped mantissa bits to nearest even.
  const uint32_t rebased = abs - 0x38000000u;
  const uint32_t lsb = (rebased >> 13) & 1u;
  const uint32_t rounded = (rebased + 0xfffu + lsb) >> 13;
  return static_cast<uint16_t>(sign | rounded);
}

uint16_t FloatToBFloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

void WidenToF32(DType dtype, const uint8_t* src, size_t n, float* dst) {
  if (n == 0) return;  // empty spans may carry null pointers
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::kF16: {
      bool special = false;
      const size_t done = WidenF16Fast(src, n, dst, &special);
      const float* table = GetHalfTable().v.data();
      for (size_t i = done; i < n; ++i) dst[i] = table[Load16(src + 2 * i)];
      return;
    }
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) dst[i] = BFloat16ToFloat(Load16(src + 2 * i));
      return;
    default:
      return;  // callers only pass compressible float dtypes
  }
}

bool WidenToF32Checked(DType dtype, const uint8_t* src, size_t n, float* dst) {
  if (dtype != DType::kF16 || n == 0) {
    WidenToF32(dtype, src, n, dst);
    return HasNonFiniteValues(DType::kF32, reinterpret_cast<const uint8_t*>(dst), n);
  }
  bool special = false;
  const size_t done = WidenF16Fast(src, n, dst, &special);
  const float* table = GetHalfTable().v.data();
  uint16_t tail = 0;
  for (size_t i = done; i < n; ++i) {
    const uint16_t h = Load16(src + 2 * i);
    tail |= static_cast<uint16_t>((h & 0x7c00u) == 0x7c00u);
    dst[i] = table[h];
  }
  return special || tail != 0;
}

void NarrowFromF32(DType dtype, const float* src, size_t n, uint8_t* dst) {
  if (n == 0) return;  // empty spans may carry null pointers (memcpy must not see them)
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::kF16:
      for (size_t i = NarrowF16Fast(src, n, dst); i < n; ++i) {
        Store16(dst + 2 * i, FloatToHalf(src[i]));
      }
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) Store16(dst + 2 * i, FloatToBFloat16(src[i]));
      return;
    default:
      return;
  }
}

void RoundTripThroughDType(DType dtype, absl::Span<float> values) {
  switch (dtype) {
    case DType::kF16:
      for (size_t i = RoundTripF16Fast(values.data(), values.size()); i < values.size(); ++i) {
        values[i] = HalfToFloat(FloatToHalf(values[i]));
      }
      return;
    case DType::kBF16:
      for (float& v : values) v = BFloat16ToFloat(FloatToBFloat16(v));
      return;
    default:
      return;
  }
}

namespace {
// True if any of the n words at p has all the exponent bits of `mask` set. Overview: the loop
// ORs a whole block's test results without branching, so it vectorises; it returns at the
// first block that holds one.
template <typename Word>
bool AnySpecial(const uint8_t* p, size_t n, Word mask) {
  constexpr size_t kBlock = 4096;
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t e = std::min(n, b + kBlock);
    Word hit = 0;
    for (size_t i = b; i < e; ++i) {
      Word w;
      std::memcpy(&w, p + i * sizeof(Word), sizeof(Word));
      hit |= static_cast<Word>((w & mask) == mask);
    }
    if (hit) return true;
  }
  return false;
}
}  // namespace

bool HasNonFiniteValues(DType dtype, const uint8_t* src, size_t n) {
  switch (dtype) {
    case DType::kF32:
      return AnySpecial<uint32_t>(src, n, 0x7f800000u);
    case DType::kF16:
      return AnySpecial<uint16_t>(src, n, 0x7c00u);
    case DType::kBF16:
      return AnySpecial<uint16_t>(src, n, 0x7f80u);
    default:
      return false;
  }
}

bool HasNonFiniteValues(DType dtype, absl::Span<const uint8_t> data, Executor& executor) {
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  const size_t esize = DTypeSize(dtype);
  const uint64_t n = data.size() / esize;
  const int64_t chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
  std::vector<uint8_t> found(chunks, 0);
  executor.ParallelFor(chunks, [&](int64_t c) {
    const uint64_t b = static_cast<uint64_t>(c) * kChunk;
    found[c] = HasNonFiniteValues(dtype, data.data() + b * esize, std::min(n, b + kChunk) - b);
  });
  return std::find(found.begin(), found.end(), 1) != found.end();
}

}  // namespace hc
