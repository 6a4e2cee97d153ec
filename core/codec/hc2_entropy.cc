#include "core/codec/hc2_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "core/base/simd.h"
#include "core/codec/hc2_quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hc::hc2 {
namespace {
uint32_t LoadLe32(const uint8_t* p) {
  return p[0] | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
}  // namespace

const ClassTables& ClassTables::Get() {
  static const ClassTables* tables = [] {
    auto* t = new ClassTables;
    for (int c = 0; c < kClasses; ++c) {
      uint32_t s = 0;
      for (int k = 0; k < kTokens; ++k) {
        t->cum[c][k] = static_cast<uint16_t>(s);
        const uint32_t f = kTokenFreq[c][k];
        for (uint32_t i = 0; i < f; ++i) t->slot_token[c][s + i] = static_cast<uint8_t>(k);
        s += f;
        t->cost[c][k] = f == 0 ? std::numeric_limits<float>::infinity()
                               : static_cast<float>(kFreqBits - std::log2(static_cast<double>(f)));
        // Alverson: with sh = ceil(log2 f), rcp = ceil(2^(31 + sh) / f), exact below 2^31.
        int sh = 0;
        while (f > (uint32_t{1} << sh)) ++sh;
        ClassTables::EncSymbol& e = t->enc[c][k];
        e = {};
        if (f > 0) {
          e.x_max = ((RansDecoder::kLow >> kFreqBits) << 8) * f;
          e.rcp = static_cast<uint32_t>(((uint64_t{1} << (sh + 31)) + f - 1) / f);
          e.freq = static_cast<uint16_t>(f);
          e.start = t->cum[c][k];
          e.shift = static_cast<uint32_t>(sh + 31);
        }
        t->rcp64[c][k] = f <= 1 ? 0 : static_cast<uint64_t>(
            ((static_cast<unsigned __int128>(1) << 64) + f - 1) / f);
        const uint32_t entry = f | ((s - f) << 13) | (static_cast<uint32_t>(k) << 25);
        for (uint32_t i = 0; i < f; ++i) t->dec[c][s - f + i] = entry;
        if (k < kLaneEntries) t->lane_entry[c][k] = f == 0 ? 0 : entry;
      }
      t->cum[c][kTokens] = static_cast<uint16_t>(s);
      for (int b = 0; b < kBuckets; ++b) {
        const int first = b * kBucketSlots;
        const uint32_t tok = t->slot_token[c][first];
        int split = kBucketSlots, boundaries = 0;
        for (int i = 1; i < kBucketSlots; ++i) {
          if (t->slot_token[c][first + i] != t->slot_token[c][first + i - 1]) {
            if (boundaries++ == 0) split = i;
          }
        }
        const uint32_t last = t->slot_token[c][first + kBucketSlots - 1];
        const bool mixed =
            b + 1 == kBuckets
                ? last >= kLaneEntries  // the tail table resolves any boundaries
                : boundaries > 1 || last >= kLaneEntries ||
                      (boundaries == 1 && t->slot_token[c][first + split] != tok + 1);
        t->bucket[c][b] = static_cast<uint16_t>((tok << 7) + 128 - split) |
                          (mixed ? kMixedBucket : uint16_t{0});
      }
      for (int i = 0; i < kBucketSlots; ++i) {
        t->tail[c][i] = t->slot_token[c][(kBuckets - 1) * kBucketSlots + i];
      }
    }
    return t;
  }();
  return *tables;
}

// Encoding runs the ops backwards (rANS is last-in first-out), writing bytes from the end of a
// scratch buffer towards its start, so that the decoder reads them forwards.
void RansEncode(absl::Span<const RansOp> ops, int states, std::vector<uint8_t>& out) {
  constexpr uint32_t kLow = RansDecoder::kLow;
  std::vector<uint8_t> buf(ops.size() * 3 + 16);
  size_t pos = buf.size();
  uint32_t x[4] = {kLow, kLow, kLow, kLow};
  for (size_t k = ops.size(); k-- > 0;) {
    const RansOp& op = ops[k];
    uint32_t& s = x[k % states];
    const uint32_t x_max = ((kLow >> op.bits) << 8) * op.freq;
    while (s >= x_max) {
      buf[--pos] = static_cast<uint8_t>(s);
      s >>= 8;
    }
    if (op.freq == 1) {  // a raw field: no division
      s = (s << op.bits) + op.start;
    } else {
      s = ((s / op.freq) << op.bits) + (s % op.freq) + op.start;
    }
  }
  for (int i = states; i-- > 0;) {
    for (int b = 3; b >= 0; --b) buf[--pos] = static_cast<uint8_t>(x[i] >> (8 * b));
  }
  out.insert(out.end(), buf.begin() + pos, buf.end());
}

void AppendBlockOps(const CodedBlock& b, const ClassTables& t, std::vector<RansOp>& ops) {
  const int c = b.cls;
  ops.push_back({static_cast<uint32_t>(c), 1, 5});
  for (int i = 0; i < b.n; ++i) {
    const uint32_t v = static_cast<uint32_t>(std::abs(b.q[i]));
    const TokenSplit s = SplitMagnitude(v);
    ops.push_back({t.cum[c][s.token], kTokenFreq[c][s.token], kFreqBits});
    if (s.nextra > 16) {
      ops.push_back({s.extra >> 16, 1, static_cast<uint32_t>(s.nextra - 16)});
      ops.push_back({s.extra & 0xffff, 1, 16});
    } else if (s.nextra > 0) {
      ops.push_back({s.extra, 1, static_cast<uint32_t>(s.nextra)});
    }
    if (v != 0) ops.push_back({b.q[i] < 0 ? 1u : 0u, 1, 1});
  }
}

namespace {

// The backwards rANS pass of RansEncodeBlocks with S states, writing bytes down from `p`;
// returns the stream's start. Op k (counted forwards) uses state k mod S. The states live in
// r[0..S), rotated after every op so that r[0] always codes the next op (going backwards):
// no state index, and the S states' dependency chains stay in registers. All states start
// at kLow, so after any number of ops state i is r[S - 1 - i].
// Overview of the hot loop: per index, from the last: sign, extra bits, token (a reciprocal
// multiplication instead of a division); renormalisation without branches.
template <int S>
uint8_t* CodeBackwards(absl::Span<const CodedBlock> blocks, const ClassTables& t, uint8_t* p) {
  constexpr uint32_t kLow = RansDecoder::kLow;
  uint32_t r[S];
  for (int j = 0; j < S; ++j) r[j] = kLow;
  auto rotate = [&]() __attribute__((always_inline)) {
    const uint32_t first = r[0];
    for (int j = 0; j + 1 < S; ++j) r[j] = r[j + 1];
    r[S - 1] = first;
  };
  // RansEncode's `while (s >= x_max) { *--p = s; s >>= 8; }` runs at most twice here (s <
  // 2^31, x_max >= 2^15): the low 3 bytes of s go below p with one 4-byte store (its lowest
  // byte is scratch below the stream), then p moves by the count.
  auto renorm = [&](uint32_t x_max) __attribute__((always_inline)) {
    const uint32_t s = r[0];
    const uint32_t nb = (s >= x_max) + ((s >> 8) >= x_max);
    const uint32_t be = __builtin_bswap32(s);
    std::memcpy(p - 4, &be, 4);
    p -= nb;
    r[0] = s >> (8 * nb);
  };
  auto raw = [&](uint32_t value, int bits) __attribute__((always_inline)) {
    renorm((kLow >> bits) << 8);
    r[0] = (r[0] << bits) + value;
    rotate();
  };
  auto token = [&](const ClassTables::EncSymbol& e) __attribute__((always_inline)) {
    renorm(e.x_max);
    const uint32_t s = r[0];
    const uint32_t q = static_cast<uint32_t>((uint64_t{s} * e.rcp) >> e.shift);
    r[0] = (q << kFreqBits) + (s - q * e.freq) + e.start;
    rotate();
  };
  for (size_t bi = blocks.size(); bi-- > 0;) {
    const CodedBlock& b = blocks[bi];
    const ClassTables::EncSymbol* sym = t.enc[b.cls];
    for (int i = b.n; i-- > 0;) {
      const int32_t q = b.q[i];
      const uint32_t v = static_cast<uint32_t>(std::abs(q));
      if (v != 0) raw(q < 0 ? 1u : 0u, 1);
      if (v < 16) {
        token(sym[v]);
        continue;
      }
      const TokenSplit sp = SplitMagnitude(v);
      if (sp.nextra > 16) {
        raw(sp.extra & 0xffff, 16);
        raw(sp.extra >> 16, sp.nextra - 16);
      } else {
        raw(sp.extra, sp.nextra);
      }
      token(sym[sp.token]);
    }
    raw(static_cast<uint32_t>(b.cls), 5);
  }
  for (int i = S; i-- > 0;) {
    const uint32_t x = r[S - 1 - i];
    for (int k = 3; k >= 0; --k) *--p = static_cast<uint8_t>(x >> (8 * k));
  }
  return p;
}

}  // namespace

void RansEncodeBlocks(absl::Span<const CodedBlock> blocks, int states,
                      std::vector<uint8_t>& out) {
  const ClassTables& t = ClassTables::Get();
  // At most 4 ops per index (token, 2 extra fields, sign) and 2 bytes per op, the states,
  // and the 4-byte stores' scratch byte.
  size_t cap = 4 * 4 + 4;
  for (const CodedBlock& b : blocks) cap += 2 * (1 + 4 * static_cast<size_t>(b.n));
  std::unique_ptr<uint8_t[]> buf(new uint8_t[cap]);
  uint8_t* const end = buf.get() + cap;
  const uint8_t* start;
  switch (states) {
    case 1: start = CodeBackwards<1>(blocks, t, end); break;
    case 2: start = CodeBackwards<2>(blocks, t, end); break;
    case 3: start = CodeBackwards<3>(blocks, t, end); break;
    default: start = CodeBackwards<4>(blocks, t, end); break;
  }
  out.insert(out.end(), start, static_cast<const uint8_t*>(end));
}

RansDecoder::RansDecoder(absl::Span<const uint8_t> stream, int states)
    : p_(stream.data()), end_(stream.data() + stream.size()), states_(states) {
  for (int i = 0; i < states; ++i) {
    uint32_t v = 0;
    for (int b = 0; b < 4; ++b) v |= static_cast<uint32_t>(p_ < end_ ? *p_++ : (overrun_ = true, 0)) << (8 * b);
    x_[i] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Revision 2: the lane stream.

namespace {

// An LSB-first bit writer into a buffer of `capacity` bytes (room for every bit put plus 8); the
// chunk stores its bytes reversed.
class BitWriter {
 public:
  explicit BitWriter(size_t capacity) : bytes_(new uint8_t[capacity]) {}
  void Put(uint64_t v, int bits) {  // bits <= 32
    buf_ |= v << count_;
    count_ += bits;
    Flush32();
  }
  // Puts one bit if `put` (branch-free: signs of zero indices are not coded).
  void PutIf(bool put, uint32_t bit) {
    buf_ |= static_cast<uint64_t>(bit & put) << count_;
    count_ += put;
  }
  // Moves 32 bits to the buffer once there are as many (keeps count_ < 32 between fields).
  void Flush32() {
    if (count_ < 32) return;
    const uint32_t low = static_cast<uint32_t>(buf_);
    for (int k = 0; k < 4; ++k) bytes_[size_ + k] = static_cast<uint8_t>(low >> (8 * k));
    size_ += 4;
    buf_ >>= 32;
    count_ -= 32;
  }
  // Flushes the last partial bytes (zero-padded) and appends the bytes reversed to `out`.
  void AppendReversed(std::vector<uint8_t>& out) {
    for (; count_ > 0; count_ -= 8, buf_ >>= 8) bytes_[size_++] = static_cast<uint8_t>(buf_);
    const size_t at = out.size();
    out.resize(at + size_);
    std::reverse_copy(bytes_.get(), bytes_.get() + size_, out.data() + at);
  }

 private:
  std::unique_ptr<uint8_t[]> bytes_;
  size_t size_ = 0;
  uint64_t buf_ = 0;
  int count_ = 0;
};

int TokenOf(uint32_t v) { return v < 16 ? static_cast<int>(v) : SplitMagnitude(v).token; }

// The TCQ state machine is a 2-bit shift register: state s = 2 b1 + b0 moves to
// 2 (b0 xor parity) + b1 (the vector decoder relies on it), and a coefficient is coded with
// quantiser Q1 where b1 = 1 (states 2 and 3).
constexpr bool TcqIsAShiftRegister() {
  for (int s = 0; s < 4; ++s) {
    for (int p = 0; p < 2; ++p) {
      if (kTrans[s][p] != ((((s & 1) ^ p) << 1) | (s >> 1))) return false;
    }
  }
  return true;
}
static_assert(TcqIsAShiftRegister(), "the lane decoder's TCQ step assumes this kTrans");

#if defined(__x86_64__)
bool CpuHasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("bmi2") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
}
#endif

}  // namespace

// Two passes: the bit stream forwards (classes, then per group the signs of its non-zero
// indices and the extra bits of its large ones), then the tokens' rANS backwards, coefficient
// j on lane j mod kLanes, each lane writing at most one 16-bit word before each of its symbols.
// Overview of the rANS loop: renormalise (x >> 20 >= f: one word out), then x / f as the high
// half of a 64x64-bit product with the token's reciprocal.
void LaneEncodeBlocks(absl::Span<const CodedBlock> blocks, std::vector<uint8_t>& out) {
  const ClassTables& t = ClassTables::Get();
  size_t total = 0;
  for (const CodedBlock& b : blocks) total += static_cast<size_t>(b.n);
  // At most 5 bits per block and 24 per index (a sign, 23 extra bits).
  BitWriter bw((5 * blocks.size() + 24 * total) / 8 + 16);
  for (const CodedBlock& b : blocks) {
    bw.Put(static_cast<uint32_t>(b.cls), 5);
    for (int g = 0; g < b.n; g += kGroup) {
      const int ge = std::min(b.n, g + kGroup);
      uint32_t large = 0;
      for (int i = g; i < ge; ++i) {
        bw.PutIf(b.q[i] != 0, b.q[i] < 0);
        large |= static_cast<uint32_t>(b.q[i] >= 16 || b.q[i] <= -16);
      }
      bw.Flush32();
      for (int i = g; i < ge && large != 0; ++i) {
        const uint32_t v = static_cast<uint32_t>(std::abs(b.q[i]));
        if (v < 16) continue;
        const TokenSplit sp = SplitMagnitude(v);
        bw.Put(sp.extra, sp.nextra);
      }
    }
  }
  // One spare slot below the words: the renormalisation stores a word unconditionally.
  std::unique_ptr<uint16_t[]> words(new uint16_t[total + 1]);
  uint16_t* const wend = words.get() + total + 1;
  uint16_t* w = wend;
  uint32_t x[kLanes];
  for (int l = 0; l < kLanes; ++l) x[l] = LaneDecoder::kLow;
  size_t j = total;
  for (size_t bi = blocks.size(); bi-- > 0;) {
    const CodedBlock& b = blocks[bi];
    const ClassTables::EncSymbol* sym = t.enc[b.cls];
    const uint64_t* rcp = t.rcp64[b.cls];
    for (int i = b.n; i-- > 0;) {
      --j;
      const int tok = TokenOf(static_cast<uint32_t>(std::abs(b.q[i])));
      const ClassTables::EncSymbol& e = sym[tok];
      uint32_t& s = x[j % kLanes];
      uint32_t v = s;
      const uint32_t renorm = (v >> 20) >= e.freq;  // branch-free: it is unpredictable
      w[-1] = static_cast<uint16_t>(v);
      w -= renorm;
      v >>= 16 * renorm;
      const uint32_t q = e.freq == 1 ? v
                                     : static_cast<uint32_t>(
                                           (static_cast<unsigned __int128>(v) * rcp[tok]) >> 64);
      s = (q << kFreqBits) + (v - q * e.freq) + e.start;
    }
  }
  const size_t at = out.size();
  out.resize(at + 4 * kLanes + 2 * static_cast<size_t>(wend - w));
  uint8_t* o = out.data() + at;
  for (int l = 0; l < kLanes; ++l, o += 4) {
    for (int k = 0; k < 4; ++k) o[k] = static_cast<uint8_t>(x[l] >> (8 * k));
  }
  for (const uint16_t* q = w; q < wend; ++q, o += 2) {
    o[0] = static_cast<uint8_t>(*q);
    o[1] = static_cast<uint8_t>(*q >> 8);
  }
  bw.AppendReversed(out);
}

LaneDecoder::LaneDecoder(absl::Span<const uint8_t> stream)
    : begin_(stream.data() + std::min<size_t>(stream.size(), 4 * kLanes)),
      p_(begin_),
      end_(stream.data() + stream.size()),
      bits_(p_, end_) {
  for (int l = 0; l < kLanes && 4 * static_cast<size_t>(l + 1) <= stream.size(); ++l) {
    x_[l] = LoadLe32(stream.data() + 4 * l);
  }
  overrun_ = stream.size() < 4 * kLanes;
}

void LaneDecoder::DecodeBlock(int n, float step, bool tcq, float* z, bool allow_simd) {
  DecodeBlocks(1, n, step, tcq, z, allow_simd);
}

void LaneDecoder::DecodeBlocks(int count, int n, float step, bool tcq, float* z,
                               bool allow_simd) {
#if defined(__x86_64__)
  if (n >= kGroup && allow_simd && SimdAllowed() && CpuHasAvx512()) {
    DecodeBlocksAvx512(count, n, step, tcq, z);
    return;
  }
#endif
  for (int i = 0; i < count; ++i) {
    DecodeBlockScalar(n, step, tcq, z + static_cast<ptrdiff_t>(i) * n);
  }
}

// The reference: per group, the tokens (each lane renormalising right after its symbol), then
// the signs, the extra bits and the levels.
void LaneDecoder::DecodeBlockScalar(int n, float step, bool tcq, float* z) {
  const ClassTables& t = ClassTables::Get();
  const uint32_t* dec = t.dec[bits_.Read(5)];
  int state = 0;
  for (int g = 0; g < n; g += kGroup) {
    const int gn = std::min(n - g, kGroup);
    uint32_t v[kGroup];
    int tok[kGroup];
    for (int i = 0; i < gn; ++i) {
      uint32_t& x = x_[i];  // lane (g + i) mod kLanes, g a multiple of kLanes
      const uint32_t slot = x & ((1u << kFreqBits) - 1);
      const uint32_t e = dec[slot];
      tok[i] = static_cast<int>(e >> 25);
      x = (e & 0x1fff) * (x >> kFreqBits) + slot - ((e >> 13) & 0xfff);
      if (x < kLow) x = (x << 16) | Word();
      v[i] = TokenBase(tok[i]);
    }
    bool neg[kGroup];
    for (int i = 0; i < gn; ++i) neg[i] = tok[i] != 0 && bits_.Read(1) != 0;
    for (int i = 0; i < gn; ++i) {
      if (tok[i] >= 16) v[i] |= static_cast<uint32_t>(bits_.Read(TokenExtraBits(tok[i])));
    }
    for (int i = 0; i < gn; ++i) {
      int32_t level = static_cast<int32_t>(v[i]);
      if (tcq) {
        level = 2 * level - (state >= 2 && v[i] != 0 ? 1 : 0);
        state = kTrans[state][v[i] & 1];
      }
      const float m = static_cast<float>(level) * step;
      z[g + i] = neg[i] ? -m : m;
    }
  }
}

#if defined(__x86_64__)
// GCC 12 warns inside its own intrinsics (the gather and expand use _mm512_undefined_*): a
// known false "may be used uninitialized".
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define HC_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,bmi2,popcnt")))

// What the groups of a block share: the tables (the class's bucket, tail and entry tables in
// registers: ClassTables's bucket, tail and lane_entry), the word pointer, the bit reader, the TCQ
// state.
struct GroupContext {
  __m512i bucket_lo, bucket_hi, tail_lo, tail_hi, entry_lo, entry_hi;
  const uint32_t* dec;
  const uint8_t* p;
  const uint8_t* end;
  LaneDecoder::BitReader bits;
  float step;
  bool overrun;
  // The TCQ state at the next group, as the mask TcqMasks xors in (0: state 0).
  uint32_t tcq_base;
  // Constants, set once per call (built inside the group step, GCC rebuilds them every group).
  __m512i k_fff, k_one, k_63, k_tail, k_mixed, k_1fff, k_low, k_16, k_sign;
  __m512 k_step;
};

// TCQ for 16 coefficients with parities `par` (bit i: coefficient i's |index| is odd), from the
// state that `base` encodes. With the shift register above, b1 at coefficient i + 1 is b1 at
// coefficient i - 1 xor parity i, so the b1 bits (the Q1 mask) are a stride-2 prefix xor of the
// parities, xor the start state (b1 on even positions, b0 on odd ones): three shifts and xors
// that do not depend on the state, then one xor that does. Bits 15 and 16 of the result are
// b1 of the last coefficient and of the next group's first: the next state. Returns the Q1 mask
// and updates base.
inline uint32_t TcqMasks(uint32_t par, uint32_t& base) {
  uint32_t s = par << 1;
  s ^= s << 2;
  s ^= s << 4;
  s ^= s << 8;
  const uint32_t b = s ^ base;
  base = ((0u - ((b >> 16) & 1)) & 0x15555u) ^ ((0u - ((b >> 15) & 1)) & 0xAAAAu);
  return b & 0xffff;
}

// One group of 16 coefficients on the 16 lanes in `x`: find the slots' entries (in registers:
// the slot's bucket gives its token, the token its entry; a gather from dec only for lanes in
// mixed buckets), update the states, refill the lanes under 2^16 with the next words (expanded
// into their lanes in order), deposit the next signs onto the non-zero lanes (pdep), fix the
// rare large tokens' extra bits in scalar code, find the TCQ quantisers (TcqMasks), scale.
template <bool kTcq>
HC_AVX512 inline __attribute__((always_inline)) void DecodeGroupAvx512(__m512i& x,
                                                                      GroupContext& c, float* z) {
  const __m512i bmask = c.k_fff, one = c.k_one;
  const __m512i slot = _mm512_and_si512(x, bmask);
  // Word permutes read the low 6 bits of each word: the low word of x >> 6 is the bucket; the
  // high words (and so the high words of bk) are junk that the steps below never read.
  const __m512i bk =
      _mm512_permutex2var_epi16(c.bucket_lo, _mm512_srli_epi32(x, 6), c.bucket_hi);
  __m512i ti = _mm512_srli_epi32(
      _mm512_add_epi32(bk, _mm512_and_si512(x, c.k_63)), 7);
  // Slots of the last bucket (from c.k_tail on) take the tail table's token (indexed by the
  // low 6 bits of x).
  ti = _mm512_mask_mov_epi32(ti, _mm512_cmpge_epu32_mask(slot, c.k_tail),
                             _mm512_permutex2var_epi16(c.tail_lo, x, c.tail_hi));
  __m512i e = _mm512_permutex2var_epi32(c.entry_lo, ti, c.entry_hi);
  const __mmask16 mixed =
      _mm512_test_epi32_mask(bk, c.k_mixed);
  if (__builtin_expect(mixed != 0, 0)) e = _mm512_mask_i32gather_epi32(e, mixed, slot, c.dec, 4);
  const __m512i tok = _mm512_srli_epi32(e, 25);
  x = _mm512_add_epi32(
      _mm512_mullo_epi32(_mm512_and_si512(e, c.k_1fff), _mm512_srli_epi32(x, 12)),
      _mm512_sub_epi32(slot, _mm512_and_si512(_mm512_srli_epi32(e, 13), bmask)));
  const __mmask16 need =
      _mm512_cmplt_epu32_mask(x, c.k_low);
  __m256i raw;
  if (c.end - c.p >= 32) {
    raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c.p));
  } else {
    alignas(32) uint8_t tail[32] = {};
    std::memcpy(tail, c.p, static_cast<size_t>(c.end - c.p));
    raw = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail));
  }
  const __m512i words = _mm512_maskz_expand_epi32(need, _mm512_cvtepu16_epi32(raw));
  x = _mm512_mask_or_epi32(x, need, _mm512_slli_epi32(x, 16), words);
  const int used = 2 * _mm_popcnt_u32(need);
  if (c.end - c.p >= used) {
    c.p += used;
  } else {
    c.p = c.end;
    c.overrun = true;
  }
  const __mmask16 nz = _mm512_test_epi32_mask(tok, tok);
  const __mmask16 neg = static_cast<__mmask16>(
      _pdep_u32(static_cast<uint32_t>(c.bits.Read(_mm_popcnt_u32(nz))), nz));
  __m512i v = tok;
  const __mmask16 big = _mm512_cmpge_epu32_mask(tok, c.k_16);
  if (big != 0) {
    alignas(64) uint32_t tv[kGroup];
    _mm512_store_si512(tv, tok);
    for (uint32_t m = big; m != 0; m &= m - 1) {
      const int i = __builtin_ctz(m);
      const int tk = static_cast<int>(tv[i]);
      tv[i] = TokenBase(tk) | static_cast<uint32_t>(c.bits.Read(TokenExtraBits(tk)));
    }
    v = _mm512_load_si512(tv);
  }
  __m512i level = v;
  if (kTcq) {
    const __mmask16 q1 = static_cast<__mmask16>(
        TcqMasks(_mm512_test_epi32_mask(v, one), c.tcq_base) & nz);
    level = _mm512_mask_sub_epi32(_mm512_slli_epi32(v, 1), q1, _mm512_slli_epi32(v, 1), one);
  }
  const __m512i m =
      _mm512_castps_si512(_mm512_mul_ps(_mm512_cvtepi32_ps(level), c.k_step));
  _mm512_storeu_si512(
      z, _mm512_mask_xor_epi32(m, neg, m, c.k_sign));
}

// The 16 lane states in one register, one group per step. (Two registers of 16 lanes, for two
// independent gather chains, measured no faster on AMD Zen 4: docs/perf-hc2-decode.md.)
HC_AVX512 void LaneDecoder::DecodeBlocksAvx512(int count, int n, float step, bool tcq,
                                               float* z) {
  const ClassTables& t = ClassTables::Get();
  // A local copy of the decoder's state (the bit reader too): its fields stay in registers.
  GroupContext c{_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                 _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                 nullptr, p_, end_, bits_, step, false, 0,
                 _mm512_set1_epi32(0xfff), _mm512_set1_epi32(1), _mm512_set1_epi32(63),
                 _mm512_set1_epi32((ClassTables::kBuckets - 1) * ClassTables::kBucketSlots),
                 _mm512_set1_epi32(ClassTables::kMixedBucket), _mm512_set1_epi32(0x1fff),
                 _mm512_set1_epi32(static_cast<int>(kLow)), _mm512_set1_epi32(16),
                 _mm512_set1_epi32(static_cast<int>(0x80000000u)), _mm512_set1_ps(step)};
  __m512i x = _mm512_loadu_si512(x_);
  for (int b = 0; b < count; ++b, z += n) {
    const int cls = static_cast<int>(c.bits.Read(5));
    c.bucket_lo = _mm512_load_si512(t.bucket[cls]);
    c.bucket_hi = _mm512_load_si512(t.bucket[cls] + 32);
    c.tail_lo = _mm512_load_si512(t.tail[cls]);
    c.tail_hi = _mm512_load_si512(t.tail[cls] + 32);
    c.entry_lo = _mm512_load_si512(t.lane_entry[cls]);
    c.entry_hi = _mm512_load_si512(t.lane_entry[cls] + 16);
    c.dec = t.dec[cls];
    c.tcq_base = 0;
    if (tcq) {
      for (int g = 0; g < n; g += kGroup) DecodeGroupAvx512<true>(x, c, z + g);
    } else {
      for (int g = 0; g < n; g += kGroup) DecodeGroupAvx512<false>(x, c, z + g);
    }
  }
  _mm512_storeu_si512(x_, x);
  p_ = c.p;
  bits_ = c.bits;
  overrun_ = overrun_ || c.overrun;
}
#pragma GCC diagnostic pop
#else
void LaneDecoder::DecodeBlocksAvx512(int count, int n, float step, bool tcq, float* z) {
  for (int i = 0; i < count; ++i) DecodeBlockScalar(n, step, tcq, z + i * n);
}
#endif

void DecodeBlockRev1(RansDecoder& d, const ClassTables& t, int n, float step, bool tcq,
                     float* z) {
  const int c = static_cast<int>(d.Raw(5));
  int state = 0;
  for (int i = 0; i < n; ++i) {
    const int tok = d.Token(t, c);
    uint32_t v = TokenBase(tok);
    const int ne = TokenExtraBits(tok);
    if (ne > 16) {
      v |= d.Raw(ne - 16) << 16;
      v |= d.Raw(16);
    } else if (ne > 0) {
      v |= d.Raw(ne);
    }
    const bool neg = v != 0 && d.Raw(1);
    if (tcq) {
      const int32_t k = neg ? -static_cast<int32_t>(v) : static_cast<int32_t>(v);
      z[i] = TcqLevel(state, k) * step;
      state = kTrans[state][v & 1];
    } else {
      const float m = static_cast<float>(v) * step;
      z[i] = neg ? -m : m;
    }
  }
}

}  // namespace hc::hc2
