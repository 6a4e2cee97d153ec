#include "core/codec/hc2_entropy.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

namespace hc::hc2 {

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
      }
      t->cum[c][kTokens] = static_cast<uint16_t>(s);
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

}  // namespace hc::hc2
