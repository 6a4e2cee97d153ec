// hc2's entropy coder (core/format/spec-hc2.md, section 5): the token split of quantised
// coefficients, the lane stream of revision 2 (16 word-renormalised rANS lanes for the tokens, a
// plain bit stream for classes, signs and extra bits; an AVX-512 decoder) and the byte-wise
// interleaved rANS stream of revision 1, still decoded. Used by core/codec/hc2.cc; exposed for
// tests.
#ifndef HC_CORE_CODEC_HC2_ENTROPY_H_
#define HC_CORE_CODEC_HC2_ENTROPY_H_

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/types/span.h"
#include "core/codec/hc2_tables.h"

namespace hc::hc2 {

/// The largest |q| the token alphabet covers: 2^25 - 1.
inline constexpr uint32_t kMaxMagnitude = (uint32_t{1} << 25) - 1;

/// A magnitude split into its token and extra bits: v < 16 is token v with no extra bits; else
/// with n = floor(log2 v) and m the bit below the leading one, token 16 + 2 (n - 4) + m followed
/// by the n - 1 low bits of v.
struct TokenSplit {
  int token;
  int nextra;
  uint32_t extra;
};
inline TokenSplit SplitMagnitude(uint32_t v) {
  if (v < 16) return {static_cast<int>(v), 0, 0};
  const int n = 31 - __builtin_clz(v);
  const int m = static_cast<int>((v >> (n - 1)) & 1);
  return {16 + 2 * (n - 4) + m, n - 1, v & ((uint32_t{1} << (n - 1)) - 1)};
}
/// The smallest magnitude of `token` (extra bits 0).
inline uint32_t TokenBase(int token) {
  if (token < 16) return static_cast<uint32_t>(token);
  const int n = 4 + (token - 16) / 2, m = (token - 16) % 2;
  return (uint32_t{1} << n) | (static_cast<uint32_t>(m) << (n - 1));
}
/// Extra bits of `token`.
inline int TokenExtraBits(int token) { return token < 16 ? 0 : 4 + (token - 16) / 2 - 1; }

/// Derived per-class tables: cumulative frequencies, the slot-to-token map of the decoder and
/// the code length in bits of each token (infinity where the frequency is 0). Built once from
/// kTokenFreq; thread-safe.
struct ClassTables {
  uint16_t cum[kClasses][kTokens + 1];
  uint8_t slot_token[kClasses][1 << kFreqBits];
  float cost[kClasses][kTokens];
  /// The encoder's view of a token of frequency f (0: never coded, every field 0): states
  /// are renormalised below x_max = 2^19 f, and x / f == (x * rcp) >> shift for every x < 2^31
  /// (64-bit product; Alverson's reciprocal as in ryg_rans: s = ceil(log2 f),
  /// rcp = ceil(2^(31 + s) / f) < 2^32, shift = 31 + s).
  struct EncSymbol {
    uint32_t x_max;
    uint32_t rcp;
    uint16_t freq;
    uint16_t start;
    uint32_t shift;
  };
  EncSymbol enc[kClasses][kTokens];
  /// Revision 2 (lane stream): per class and slot, the slot's token's entry
  /// freq | cum << 13 | token << 25.
  uint32_t dec[kClasses][1 << kFreqBits];
  /// Revision 2's AVX-512 decoder finds most slots' entries in registers instead of dec: the
  /// slots of a class split into kBuckets buckets of kBucketSlots; bucket[c][b] is
  /// (t << 7) + 128 - s, t the token of the bucket's first slot and s (1..64) the offset of
  /// the bucket's first slot of token t + 1 (64: none), so that the token of `slot` is
  /// (bucket[c][slot / 64] + slot % 64) >> 7. The last bucket, where the rare tokens crowd,
  /// has its own table instead: tail[c][slot % 64] is the token of slot 4032 + slot % 64. A
  /// token's entry is lane_entry[c][token]. Bit 15 of a bucket marks slots for which none of
  /// this holds (a bucket with two or more token boundaries, a token >= 32): they are looked up
  /// in dec.
  static constexpr int kBuckets = 64;
  static constexpr int kBucketSlots = (1 << kFreqBits) / kBuckets;
  static constexpr uint16_t kMixedBucket = 0x8000;
  static constexpr int kLaneEntries = 32;
  alignas(64) uint16_t bucket[kClasses][kBuckets];
  alignas(64) uint16_t tail[kClasses][kBucketSlots];
  /// Per class, token -> the entry dec holds for the token's slots (tokens < 32; 0 where the
  /// frequency is 0).
  alignas(64) uint32_t lane_entry[kClasses][kLaneEntries];
  /// Revision 2's encoder: ceil(2^64 / f) (0 for f <= 1), so that x / f is the high half of
  /// x * rcp64 for every 32-bit x.
  uint64_t rcp64[kClasses][kTokens];
  static const ClassTables& Get();
};

/// One coding step: a symbol of probability freq / 2^bits starting at `start` (a raw field of
/// `bits` bits is start = value, freq = 1).
struct RansOp {
  uint32_t start;
  uint32_t freq;
  uint32_t bits;
};

/// Encodes ops in order with `states` interleaved rANS states (op k uses state k mod states) and
/// appends the stream to `out`: the states' final values (4 bytes little-endian each, state 0
/// first), then the renormalisation bytes in the order the decoder reads them.
void RansEncode(absl::Span<const RansOp> ops, int states, std::vector<uint8_t>& out);

/// One block of quantised indices to code: q[0..n) under class `cls`.
struct CodedBlock {
  const int32_t* q;
  int n;
  int cls;
};
/// Appends the ops of one block: its class (5 raw bits), then per index its token, its extra
/// bits (over 16: the high n - 16 bits first, then 16 low bits) and, when non-zero, its sign
/// (1 for negative). The reference of RansEncodeBlocks.
void AppendBlockOps(const CodedBlock& b, const ClassTables& t, std::vector<RansOp>& ops);
/// The same bytes as AppendBlockOps of every block, in order, then RansEncode(ops, states,
/// out), without building the ops; divisions are EncSymbol::rcp multiplications. Every
/// block's tokens must have a non-zero frequency under its class; `states` is 1..4.
void RansEncodeBlocks(absl::Span<const CodedBlock> blocks, int states,
                      std::vector<uint8_t>& out);

/// Reads a stream written by RansEncode. Reading past the end sets overrun(); every value
/// decoded is then garbage, but decoding stays memory-safe and always terminates.
class RansDecoder {
 public:
  /// Byte-wise rANS: the state is kept in [kLow, 2^31).
  static constexpr uint32_t kLow = uint32_t{1} << 23;
  RansDecoder(absl::Span<const uint8_t> stream, int states);
  /// A raw field of `bits` (1..16) bits.
  uint32_t Raw(int bits) {
    uint32_t& x = x_[k_];
    const uint32_t v = x & ((uint32_t{1} << bits) - 1);
    x >>= bits;
    Renorm(x);
    Next();
    return v;
  }
  /// A token under class table `c`.
  int Token(const ClassTables& t, int c) {
    uint32_t& x = x_[k_];
    const uint32_t slot = x & ((uint32_t{1} << kFreqBits) - 1);
    const int tok = t.slot_token[c][slot];
    x = kTokenFreq[c][tok] * (x >> kFreqBits) + slot - t.cum[c][tok];
    Renorm(x);
    Next();
    return tok;
  }
  bool overrun() const { return overrun_; }
  /// Bytes not read yet.
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }

 private:
  // Past the end of the stream (only a corrupt or truncated one gets there) the state is
  // forced into range instead of reading zeros, which could loop forever on a zero state.
  void Renorm(uint32_t& x) {
    while (x < kLow) {
      if (p_ == end_) {
        overrun_ = true;
        x |= kLow;
        return;
      }
      x = (x << 8) | *p_++;
    }
  }
  void Next() { k_ = k_ + 1 == states_ ? 0 : k_ + 1; }
  const uint8_t* p_;
  const uint8_t* end_;
  uint32_t x_[4] = {kLow, kLow, kLow, kLow};
  int states_;
  int k_ = 0;
  bool overrun_ = false;
};

/// Revision 1 (spec-hc2.md 5.2, 5.3): decodes one block of n coefficients from `d` (the class
/// field, then per coefficient its token, extra bits and sign), dequantised with `step` (and
/// the trellis levels with `tcq`) into z[0..n).
void DecodeBlockRev1(RansDecoder& d, const ClassTables& t, int n, float step, bool tcq, float* z);

// ---------------------------------------------------------------------------------------------
// Revision 2: the lane stream (spec-hc2.md 5.3b).

/// Revision 2 codes chunks of >= this many weights as lane streams and smaller ones (small
/// tensors, a tensor's short last chunk) exactly as revision 1: the lane stream's 48 more bytes
/// of states would cost them 0.012 bits per weight or more.
inline constexpr int64_t kMinLaneChunk = 32768;
/// rANS lanes of a lane stream, and coefficients per group: a block's signs and extra bits
/// follow its tokens group by group.
inline constexpr int kLanes = 16;
inline constexpr int kGroup = 16;
static_assert(kLanes == kGroup, "a group is one step of every lane");

/// Appends one revision-2 lane stream coding `blocks` (in order) with kLanes rANS lanes
/// (coefficient j of the chunk on lane j mod kLanes): the lanes' final states (4 bytes
/// little-endian each, lane 0 first), the 16-bit renormalisation words (little-endian) in the
/// order the decoder reads them, then the bit stream's bytes in reverse order (the decoder
/// reads it from the chunk's end backwards). Every block's tokens must have a non-zero
/// frequency under its class; every block but the last has a multiple of kGroup indices.
void LaneEncodeBlocks(absl::Span<const CodedBlock> blocks, std::vector<uint8_t>& out);

/// Reads a revision-2 lane stream block by block. Words past the stream's end and bits below
/// its states (only a corrupt or truncated stream gets there) read as zeros: decoding any input
/// stays in bounds and terminates, and the scalar and SIMD paths still agree bit for bit.
class LaneDecoder {
 public:
  static constexpr uint32_t kLow = uint32_t{1} << 16;
  /// A stream shorter than the states (4 * kLanes bytes) reads as if zero-padded.
  explicit LaneDecoder(absl::Span<const uint8_t> stream);
  /// Decodes the next block of n (a power of two, 2..128) coefficients into z[0..n): the class,
  /// the tokens, signs and extra bits, then the levels times `step` (TCQ levels with `tcq`,
  /// spec-hc2.md 5.2). With `allow_simd` (and SimdAllowed()) on an AVX-512 CPU, blocks of >= 16
  /// coefficients decode with vector code; the result is the same bit for bit.
  void DecodeBlock(int n, float step, bool tcq, float* z, bool allow_simd = true);
  /// The same as `count` calls of DecodeBlock(n, step, tcq, z + i * n, allow_simd), i = 0, 1,
  /// ..., in one call (the SIMD path keeps its state in registers across the blocks).
  void DecodeBlocks(int count, int n, float step, bool tcq, float* z, bool allow_simd = true);
  /// Whether the words and the bits read so far need more bytes than the stream holds (they
  /// are read from its two ends). Informative: a corrupt stream may decode garbage unflagged.
  bool overrun() const {
    return overrun_ || 8 * static_cast<uint64_t>(p_ - begin_) + bits_.read() > bits_.size();
  }

  /// An LSB-first bit stream stored byte-reversed below `end`, never read below `begin`.
  class BitReader {
   public:
    BitReader(const uint8_t* begin, const uint8_t* end) : begin_(begin), end_(end), end0_(end) {}
    /// The next `bits` (0..56) bits.
    uint64_t Read(int bits) {
      Refill();
      const uint64_t v = buf_ & ((uint64_t{1} << bits) - 1);
      buf_ >>= bits;
      count_ -= bits;
      return v;
    }
    /// Bits read so far (every byte moved into buf_, zeros below begin_ included, less the bits
    /// still there), and the stream's size in bits.
    uint64_t read() const {
      return 8 * (static_cast<uint64_t>(end0_ - end_) + zeros_) - static_cast<uint64_t>(count_);
    }
    uint64_t size() const { return 8 * static_cast<uint64_t>(end0_ - begin_); }

   private:
    // Keeps at least 56 bits in buf_: the next 8 stream bytes (byte-swapped: the stream runs
    // backwards) fill it above what it holds, and the pointer moves past the whole bytes that
    // fit. Branch-free while 8 bytes remain (the bits above count_ are then the stream's next
    // ones already, or zeros); bytes below begin_ read as zeros.
    void Refill() {
      if (end_ - begin_ >= 8) [[likely]] {
        uint64_t w;
        std::memcpy(&w, end_ - 8, 8);
        buf_ |= __builtin_bswap64(w) << count_;
        end_ -= (63 - count_) >> 3;
        count_ |= 56;
        return;
      }
      *this = RefillTail(*this);
    }
    // Refill's last bytes. Out of line (it is rare; inlined, it costs the hot loops registers)
    // and by value, so that no reader's address escapes and its fields can live in registers.
    __attribute__((noinline, cold)) static BitReader RefillTail(BitReader r) {
      if (r.count_ >= 56) return r;
      uint64_t w = 0;
      for (const uint8_t* q = r.end_; q > r.begin_;) {
        --q;
        w |= uint64_t{*q} << (8 * (r.end_ - 1 - q));
      }
      r.buf_ |= w << r.count_;
      const int take = (63 - r.count_) >> 3;
      if (r.end_ - r.begin_ >= take) {
        r.end_ -= take;
      } else {
        r.zeros_ += static_cast<uint64_t>(take - (r.end_ - r.begin_));
        r.end_ = r.begin_;
      }
      r.count_ |= 56;
      return r;
    }
    const uint8_t* begin_;
    const uint8_t* end_;
    const uint8_t* end0_;
    uint64_t buf_ = 0;
    uint64_t zeros_ = 0;  // bytes read below begin_
    int count_ = 0;
  };

 private:
  void DecodeBlockScalar(int n, float step, bool tcq, float* z);
  void DecodeBlocksAvx512(int count, int n, float step, bool tcq, float* z);
  // The next 16-bit word; bytes past the end read as zeros.
  uint32_t Word() {
    if (end_ - p_ >= 2) {
      const uint32_t w = p_[0] | (uint32_t{p_[1]} << 8);
      p_ += 2;
      return w;
    }
    overrun_ = true;
    const uint32_t w = p_ < end_ ? p_[0] : 0;
    p_ = end_;
    return w;
  }
  uint32_t x_[kLanes] = {};
  const uint8_t* begin_;  // the words' start (past the states)
  const uint8_t* p_;
  const uint8_t* end_;
  BitReader bits_;
  bool overrun_ = false;
};

}  // namespace hc::hc2

#endif  // HC_CORE_CODEC_HC2_ENTROPY_H_
