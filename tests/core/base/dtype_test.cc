#include "core/base/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace hc {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
bool HalfIsNan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
bool BfIsNan(uint16_t b) { return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0; }

// Independent reference: the value of a half from its fields.
double HalfValueRef(uint16_t h) {
  const int sign = h >> 15;
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  double v;
  if (exp == 0x1f) {
    v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else if (exp == 0) {
    v = std::ldexp(man, -24);
  } else {
    v = std::ldexp(1024 + man, exp - 25);
  }
  return sign ? -v : v;
}

TEST(DType, NamesSizesAndParsing) {
  struct E {
    DType d;
    const char* name;
    size_t size;
  };
  const E all[] = {
      {DType::kBool, "BOOL", 1},   {DType::kU8, "U8", 1},   {DType::kI8, "I8", 1},
      {DType::kF8E5M2, "F8_E5M2", 1}, {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kI16, "I16", 2},
      {DType::kU16, "U16", 2},     {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
      {DType::kI32, "I32", 4},     {DType::kU32, "U32", 4}, {DType::kF32, "F32", 4},
      {DType::kF64, "F64", 8},     {DType::kI64, "I64", 8}, {DType::kU64, "U64", 8},
  };
  for (const E& e : all) {
    EXPECT_EQ(DTypeName(e.d), e.name);
    EXPECT_EQ(DTypeSize(e.d), e.size) << e.name;
    ASSERT_TRUE(ParseDType(e.name).has_value()) << e.name;
    EXPECT_EQ(*ParseDType(e.name), e.d);
  }
  for (const char* bad : {"", "f32", "F17", "FLOAT", "F32 ", "bf16", "F8", "I128"}) {
    EXPECT_FALSE(ParseDType(bad).has_value()) << bad;
  }
  EXPECT_TRUE(IsCompressibleFloat(DType::kF32));
  EXPECT_TRUE(IsCompressibleFloat(DType::kF16));
  EXPECT_TRUE(IsCompressibleFloat(DType::kBF16));
  EXPECT_FALSE(IsCompressibleFloat(DType::kF64));
  EXPECT_FALSE(IsCompressibleFloat(DType::kI32));
  EXPECT_FALSE(IsCompressibleFloat(DType::kF8E4M3));
}

TEST(Half, WidenIsExactForAll65536Patterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = HalfToFloat(h);
    if (HalfIsNan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      // Payload and sign are kept: the 10 mantissa bits land at the top of the F32 mantissa.
      ASSERT_EQ(Bits(f), (static_cast<uint32_t>(h & 0x8000) << 16) | 0x7f800000u |
                             (static_cast<uint32_t>(h & 0x3ff) << 13))
          << std::hex << h;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), HalfValueRef(h)) << std::hex << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;
  }
}

TEST(Half, WidenThenNarrowGivesBackTheBits) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const uint16_t back = FloatToHalf(HalfToFloat(h));
    if (HalfIsNan(h)) {
      // NaN payloads are normalised to the quiet NaN of the same sign.
      ASSERT_TRUE(HalfIsNan(back)) << std::hex << h;
      ASSERT_EQ(back & 0x8000, h & 0x8000) << std::hex << h;
      ASSERT_EQ(back, static_cast<uint16_t>((h & 0x8000) | 0x7e00)) << std::hex << h;
    } else {
      ASSERT_EQ(back, h) << std::hex << h;
    }
  }
}

// For every pair of adjacent finite halves (both signs): the exact midpoint rounds to the even
// one, and the floats just either side of it round to the nearer one.
TEST(Half, RoundToNearestEvenOnEveryHalfwayCase) {
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t m = 0; m < 0x7bff; ++m) {
      const uint16_t lo = static_cast<uint16_t>(sign | m);
      const uint16_t hi = static_cast<uint16_t>(sign | (m + 1));
      const double mid = (HalfValueRef(lo) + HalfValueRef(hi)) / 2;
      const float fmid = static_cast<float>(mid);
      ASSERT_EQ(static_cast<double>(fmid), mid) << "midpoint must be exact in F32";
      const uint16_t even = (m & 1) ? hi : lo;
      ASSERT_EQ(FloatToHalf(fmid), even) << std::hex << lo;
      const float toward_lo = std::nextafter(fmid, static_cast<float>(HalfValueRef(lo)));
      const float toward_hi = std::nextafter(fmid, static_cast<float>(HalfValueRef(hi)));
      ASSERT_EQ(FloatToHalf(toward_lo), lo) << std::hex << lo;
      ASSERT_EQ(FloatToHalf(toward_hi), hi) << std::hex << lo;
    }
  }
}

TEST(Half, Subnormals) {
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1023.0f, -24)), 0x03ff);  // largest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);  // half of the smallest: ties to 0
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp: ties to even (2)
  EXPECT_EQ(FloatToHalf(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(FloatToHalf(-std::ldexp(1.0f, -24)), 0x8001);
  EXPECT_EQ(FloatToHalf(1e-10f), 0x0000);
  EXPECT_EQ(FloatToHalf(-1e-10f), 0x8000);  // underflow keeps the sign
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToHalf(-std::numeric_limits<float>::denorm_min()), 0x8000);
  // Rounding up out of the subnormal range reaches the smallest normal.
  EXPECT_EQ(FloatToHalf(std::nextafter(std::ldexp(1.0f, -14), 0.0f)), 0x0400);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x83ff), -std::ldexp(1023.0f, -24));
}

TEST(Half, OverflowGoesToInfinity) {
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);  // max finite
  EXPECT_EQ(FloatToHalf(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // halfway to 2^16: ties to even = inf
  EXPECT_EQ(FloatToHalf(-65520.0f), 0xfc00);
  EXPECT_EQ(FloatToHalf(1e10f), 0x7c00);
  EXPECT_EQ(FloatToHalf(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(FloatToHalf(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_TRUE(HalfIsNan(FloatToHalf(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(HalfIsNan(FloatToHalf(FromBits(0x7f800001u))));  // payload only in low bits
  EXPECT_TRUE(HalfIsNan(FloatToHalf(FromBits(0xffc00000u))));
  EXPECT_EQ(FloatToHalf(FromBits(0xffc00000u)) & 0x8000, 0x8000);
}

// Reference narrowing: the nearest half by search over the half values, ties to even.
uint16_t FloatToHalfRef(float f) {
  if (std::isnan(f)) return 0x7e00;
  const double a = std::fabs(static_cast<double>(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (a >= 65520.0) return sign | 0x7c00;
  // Largest positive half <= a.
  uint32_t lo = 0, hi = 0x7bff;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (HalfValueRef(static_cast<uint16_t>(mid)) <= a) lo = mid; else hi = mid - 1;
  }
  uint32_t best = lo;
  if (lo < 0x7c00) {
    const double dlo = a - HalfValueRef(static_cast<uint16_t>(lo));
    const double dhi = HalfValueRef(static_cast<uint16_t>(lo + 1)) - a;
    if (dhi < dlo || (dhi == dlo && (lo & 1))) best = lo + 1;
  }
  return static_cast<uint16_t>(sign | best);
}

TEST(Half, NarrowMatchesReferenceOnSampledFloats) {
  std::mt19937 rng(12345);
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 4093) {
    const float f = FromBits(static_cast<uint32_t>(u));
    const uint16_t got = FloatToHalf(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(HalfIsNan(got));
      continue;
    }
    ASSERT_EQ(got, FloatToHalfRef(f)) << std::hex << u;
  }
  // Dense sample inside the half range.
  std::uniform_real_distribution<float> dist(-70000.0f, 70000.0f);
  for (int i = 0; i < 200000; ++i) {
    const float f = dist(rng) * std::ldexp(1.0f, -static_cast<int>(rng() % 30));
    ASSERT_EQ(FloatToHalf(f), FloatToHalfRef(f)) << f;
  }
}

// ---- BF16 ----

TEST(BFloat16, WidenThenNarrowGivesBackTheBitsForAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    const float f = BFloat16ToFloat(b);
    ASSERT_EQ(Bits(f), static_cast<uint32_t>(b) << 16);
    const uint16_t back = FloatToBFloat16(f);
    if (BfIsNan(b)) {
      ASSERT_TRUE(BfIsNan(back)) << std::hex << b;
      ASSERT_EQ(back, b | 0x40) << std::hex << b;  // quietened, payload and sign kept
    } else {
      ASSERT_EQ(back, b) << std::hex << b;
    }
  }
}

TEST(BFloat16, RoundToNearestEvenOnEveryHalfwayCase) {
  for (uint32_t sign : {0u, 0x8000u}) {
    for (uint32_t m = 0; m < 0x7f80; ++m) {  // every finite bf16 and its successor
      const uint32_t b = sign | m;
      const float mid = FromBits((b << 16) | 0x8000u);
      const uint16_t even = static_cast<uint16_t>((m & 1) ? b + 1 : b);
      ASSERT_EQ(FloatToBFloat16(mid), even) << std::hex << b;
      ASSERT_EQ(FloatToBFloat16(FromBits((b << 16) | 0x7fffu)), b) << std::hex << b;
      ASSERT_EQ(FloatToBFloat16(FromBits((b << 16) | 0x8001u)), b + 1) << std::hex << b;
    }
  }
}

TEST(BFloat16, SpecialValues) {
  const float max = std::numeric_limits<float>::max();
  EXPECT_EQ(FloatToBFloat16(max), 0x7f80);  // rounds past the largest bf16 to infinity
  EXPECT_EQ(FloatToBFloat16(-max), 0xff80);
  EXPECT_EQ(FloatToBFloat16(FromBits(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBFloat16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBFloat16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToBFloat16(FromBits(0x00008000u)), 0x0000);  // tie, even
  EXPECT_EQ(FloatToBFloat16(FromBits(0x00018000u)), 0x0002);  // tie, even
  // NaN with payload only in the low 16 bits must not become infinity.
  EXPECT_TRUE(BfIsNan(FloatToBFloat16(FromBits(0x7f800001u))));
  EXPECT_TRUE(BfIsNan(FloatToBFloat16(FromBits(0xff800001u))));
  EXPECT_TRUE(BfIsNan(FloatToBFloat16(FromBits(0x7fffffffu))));
}

uint16_t FloatToBFloat16Ref(float f) {
  const uint32_t u = Bits(f);
  const uint32_t lo = u >> 16;
  const double a = f;
  const double vlo = BFloat16ToFloat(static_cast<uint16_t>(lo));
  if (lo == 0x7f7f || lo == 0xff7f) {
    // The successor is infinity: treat it as 2^128 for distance.
    const double vhi = std::copysign(std::ldexp(1.0, 128), a);
    const double dlo = std::fabs(a - vlo), dhi = std::fabs(vhi - a);
    return static_cast<uint16_t>((dhi < dlo || (dhi == dlo && (lo & 1))) ? lo + 1 : lo);
  }
  const double vhi = BFloat16ToFloat(static_cast<uint16_t>(lo + 1));
  const double dlo = std::fabs(a - vlo), dhi = std::fabs(vhi - a);
  return static_cast<uint16_t>((dhi < dlo || (dhi == dlo && (lo & 1))) ? lo + 1 : lo);
}

TEST(BFloat16, NarrowMatchesReferenceOnSampledFloats) {
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 4093) {
    const float f = FromBits(static_cast<uint32_t>(u));
    if (std::isnan(f) || std::isinf(f)) continue;
    ASSERT_EQ(FloatToBFloat16(f), FloatToBFloat16Ref(f)) << std::hex << u;
  }
}

// ---- Buffers ----

TEST(WidenNarrow, UnalignedBuffers) {
  std::mt19937 rng(7);
  const size_t n = 37;
  std::vector<float> values(n);
  for (float& v : values) v = std::uniform_real_distribution<float>(-100, 100)(rng);
  values[0] = 0.0f;
  values[1] = -0.0f;
  values[2] = std::numeric_limits<float>::infinity();
  values[3] = 1e-7f;  // subnormal in F16
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    const size_t es = DTypeSize(dt);
    for (size_t offset = 0; offset < 8; ++offset) {
      // Narrow into an unaligned spot, with canaries around it.
      std::vector<uint8_t> buf(offset + n * es + 8, 0xA5);
      NarrowFromF32(dt, values.data(), n, buf.data() + offset);
      for (size_t i = 0; i < offset; ++i) ASSERT_EQ(buf[i], 0xA5);
      for (size_t i = offset + n * es; i < buf.size(); ++i) ASSERT_EQ(buf[i], 0xA5);
      // Bytes are little-endian encodings of the scalar conversions.
      for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = buf.data() + offset + i * es;
        if (dt == DType::kF32) {
          const uint32_t b = Bits(values[i]);
          for (size_t k = 0; k < 4; ++k) ASSERT_EQ(p[k], static_cast<uint8_t>(b >> (8 * k)));
        } else {
          const uint16_t b = dt == DType::kF16 ? FloatToHalf(values[i]) : FloatToBFloat16(values[i]);
          ASSERT_EQ(p[0], static_cast<uint8_t>(b));
          ASSERT_EQ(p[1], static_cast<uint8_t>(b >> 8));
        }
      }
      // Widen from the unaligned spot into an unaligned float destination.
      std::vector<uint8_t> fbuf(n * 4 + 8);
      float* dst = reinterpret_cast<float*>(fbuf.data() + 4);  // float-aligned
      WidenToF32(dt, buf.data() + offset, n, dst);
      std::vector<float> expect = values;
      RoundTripThroughDType(dt, absl::MakeSpan(expect));
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(Bits(dst[i]), Bits(expect[i])) << DTypeName(dt) << " offset " << offset << " i " << i;
      }
    }
  }
}

TEST(WidenNarrow, ZeroElementsTouchNothing) {
  uint8_t b[4] = {1, 2, 3, 4};
  float f[1] = {5.0f};
  for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
    NarrowFromF32(dt, f, 0, b);
    WidenToF32(dt, b, 0, f);
  }
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[3], 4);
  EXPECT_EQ(f[0], 5.0f);
}

TEST(RoundTripThroughDType, RoundsInPlace) {
  std::vector<float> v = {1.0f, 1.0001f, 65519.0f, 70000.0f, 1e-8f, -3.14159265f};
  std::vector<float> f32 = v;
  RoundTripThroughDType(DType::kF32, absl::MakeSpan(f32));
  EXPECT_EQ(f32, v);
  std::vector<float> f16 = v;
  RoundTripThroughDType(DType::kF16, absl::MakeSpan(f16));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(Bits(f16[i]), Bits(HalfToFloat(FloatToHalf(v[i]))));
  EXPECT_EQ(f16[1], 1.0f);
  EXPECT_EQ(f16[2], 65504.0f);
  EXPECT_TRUE(std::isinf(f16[3]));
  std::vector<float> bf = v;
  RoundTripThroughDType(DType::kBF16, absl::MakeSpan(bf));
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(Bits(bf[i]), Bits(BFloat16ToFloat(FloatToBFloat16(v[i]))));
  }
  EXPECT_EQ(bf[5], -3.140625f);
}

}  // namespace
}  // namespace hc
