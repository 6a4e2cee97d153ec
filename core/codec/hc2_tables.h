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

}  // namespace hc::hc2

#endif  // HC_CORE_CODEC_HC2_TABLES_H_
