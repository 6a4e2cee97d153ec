// hc2's quantisers (encoder side): plain rounding and the trellis-coded (dependent) quantiser
// of the entropy-coded mode, and the pricing of a block's indices under the class models
// (core/format/spec-hc2.md, 5.2). Used by core/codec/hc2.cc; exposed for tests.
#ifndef HC_CORE_CODEC_HC2_QUANT_H_
#define HC_CORE_CODEC_HC2_QUANT_H_

#include <cstdint>

#include "core/codec/hc2_entropy.h"
#include "core/codec/hc2_transform.h"

namespace hc::hc2 {

/// The trellis's default rate weight, in squared steps per bit.
inline constexpr float kDefaultMu = 0.3f;
/// The largest |index| the encoder produces (levels stay exact in float32).
inline constexpr double kMaxQ = double{1 << 22};

/// Trellis-coded (dependent) quantisation with 4 states: states 0 and 1 use Q0 (levels 2k),
/// states 2 and 3 use Q1 (levels 2k - sgn(k)), in steps; after index k the state becomes
/// kTrans[state][|k| mod 2]. Every block starts in state 0. Normative (spec-hc2.md 5.2).
inline constexpr uint8_t kTrans[4][2] = {{0, 2}, {2, 0}, {1, 3}, {3, 1}};
/// The level of index k in `state`, in steps.
inline float TcqLevel(int state, int32_t k) {
  if (state < 2 || k == 0) return 2.0f * static_cast<float>(k);
  return 2.0f * static_cast<float>(k) - (k > 0 ? 1.0f : -1.0f);
}

/// One block quantised: indices, tokens, the class chosen and the block's bits.
struct QuantBlock {
  int32_t q[kBlock];
  uint8_t tok[kBlock];
  int cls = 0;
  double bits = 0;
};

/// Tokens of qb.q[0..n), the cheapest class that codes them all and the bits under it (class
/// field, tokens, extra bits, signs).
void PriceBlock(int n, const ClassTables& t, QuantBlock& qb);
/// Plain rounding of z / step (ties to even), then PriceBlock.
void Quantise(const float* z, int n, float step, const ClassTables& t, QuantBlock& qb);
/// The trellis search over one block (Viterbi on squared error in steps plus mu per bit), then
/// PriceBlock. Output depends only on the inputs (scalar float32, no FMA).
void QuantiseTcq(const float* z, int n, float step, float mu, const ClassTables& t,
                 QuantBlock& qb);
/// QuantiseTcq of `lanes` (1..8) blocks at once, block l being z[l][0..n[l]) with n[l] a power
/// of two in [2, kBlock]: with `allow_simd` on a CPU with AVX2 the trellis runs one block per
/// vector lane (unused lanes idle), with results bit-identical to QuantiseTcq of each block.
void QuantiseTcqLanes(const float* const z[], const int n[], int lanes, float step, float mu,
                      const ClassTables& t, QuantBlock* qb, bool allow_simd = true);
/// QuantiseTcq of 8 full blocks at once: with `allow_simd` on a CPU with AVX2 the trellis runs
/// one block per vector lane, with results bit-identical to the scalar path.
void QuantiseTcq8(const float* const z[8], float step, float mu, const ClassTables& t,
                  QuantBlock* qb, bool allow_simd = true);

/// Entropy in bits of round(N(0, rho^2)) (sign included) at log2(rho) = `log2rho`, linearly
/// interpolated in a table over [-12, 28] in 1/8 steps (clamped outside): the ec encoder's model
/// for its first step guess.
double GaussianIndexBits(double log2rho);

}  // namespace hc::hc2

#endif  // HC_CORE_CODEC_HC2_QUANT_H_
