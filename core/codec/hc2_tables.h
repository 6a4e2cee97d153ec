// hc2's normative constant tables (core/format/spec-hc2.md, section 6), generated once by
// core/codec/hc2_tables_gen.py into hc2_tables.cc and committed, so that no platform's libm can
// change a decoded bit.
#ifndef HC_CORE_CODEC_HC2_TABLES_H_
#define HC_CORE_CODEC_HC2_TABLES_H_

#include <cstdint>

namespace hc::hc2 {

/// Coefficient classes of the entropy-coded mode: class c models a quantised rotated coefficient
/// as a discretised Gaussian of standard deviation 2^((c - 8) / 2) steps.
inline constexpr int kClasses = 32;
/// Tokens of |q|: values 0..15 as themselves, then two tokens per binary exponent 4..24.
inline constexpr int kTokens = 58;
/// Frequencies are out of 2^kFreqBits.
inline constexpr int kFreqBits = 12;

/// Token frequencies per class; each row sums to 2^kFreqBits. Tokens past a class's range have
/// frequency 0 (that class cannot code them); in the last class every token is >= 1.
extern const uint16_t kTokenFreq[kClasses][kTokens];

/// Winding codebooks of the fixed-rate mode: 2^(2b) points (x, y) of a Fibonacci spiral for b =
/// 2, 3, 4 bits per weight, float32, interleaved.
extern const float kWinding2[32];
extern const float kWinding3[128];
extern const float kWinding4[512];

/// The winding codebook for `bits` (2..4): 2^(2 bits) interleaved (x, y) points.
inline const float* Winding(int bits) {
  return bits == 2 ? kWinding2 : bits == 3 ? kWinding3 : kWinding4;
}

}  // namespace hc::hc2

#endif  // HC_CORE_CODEC_HC2_TABLES_H_
