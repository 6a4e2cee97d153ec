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

// The backwards rANS pass of RansEncodeBlocks: bytes go from the end of `buf` towards its
// start; op k (counted from the first op of the first block) uses state k mod states, so the
// state index steps down from that of the last op.
class BackwardsCoder {
 public:
  BackwardsCoder(uint8_t* end, int states, size_t ops) : p_(end), states_(states) {
    k_ = static_cast<int>(ops % static_cast<size_t>(states));
  }
  // A raw field of `bits` bits (freq 1: shifts only).
  void Raw(uint32_t value, int bits) {
    uint32_t& s = Prev();
    Renorm(s, (RansDecoder::kLow >> bits) << 8);
    s = (s << bits) + value;
  }
  // Token `tok` under class c: the quotient by its frequency by a reciprocal multiplication.
  void Token(const ClassTables& t, int c, int tok) {
    uint32_t& s = Prev();
    const ClassTables::EncSymbol& e = t.enc[c][tok];
    Renorm(s, e.x_max);
    const uint32_t q = static_cast<uint32_t>((uint64_t{s} * e.rcp) >> e.shift);
    s = (q << kFreqBits) + (s - q * e.freq) + e.start;
  }
  // Writes the states (state 0 first) in front of the bytes; returns the stream's start.
  uint8_t* Finish() {
    for (int i = states_; i-- > 0;) {
      for (int b = 3; b >= 0; --b) *--p_ = static_cast<uint8_t>(x_[i] >> (8 * b));
    }
    return p_;
  }

 private:
  // RansEncode's `while (s >= x_max) { *--p = s; s >>= 8; }`, which runs at most twice here
  // (s < 2^31 and x_max >= 2^15), without branches: the low 3 bytes of s go below p_ with one
  // 4-byte store (the lowest byte is scratch, below the stream), then p_ moves by the count.
  void Renorm(uint32_t& s, uint32_t x_max) {
    const uint32_t nb = (s >= x_max) + ((s >> 8) >= x_max);
    const uint32_t be = __builtin_bswap32(s);
    std::memcpy(p_ - 4, &be, 4);
    p_ -= nb;
    s >>= 8 * nb;
  }
  uint32_t& Prev() {
    k_ = k_ == 0 ? states_ - 1 : k_ - 1;
    return x_[k_];
  }
  uint8_t* p_;
  uint32_t x_[4] = {RansDecoder::kLow, RansDecoder::kLow, RansDecoder::kLow, RansDecoder::kLow};
  int states_;
  int k_;
};

}  // namespace

// Two passes: the ops are counted (op k's state is k mod states), then coded backwards,
// block by block and index by index, each index's ops in reverse (sign, extra bits, token).
void RansEncodeBlocks(absl::Span<const CodedBlock> blocks, int states,
                      std::vector<uint8_t>& out) {
  const ClassTables& t = ClassTables::Get();
  size_t ops = 0;
  for (const CodedBlock& b : blocks) {
    ops += 1 + static_cast<size_t>(b.n);
    for (int i = 0; i < b.n; ++i) {
      const uint32_t v = static_cast<uint32_t>(std::abs(b.q[i]));
      ops += (v != 0) + (v >= 16) + (v >= (uint32_t{1} << 18));  // sign, extra, high extra
    }
  }
  // At most 2 bytes per op (RansEncode's bound says 3), the states, and the 4-byte stores'
  // scratch byte.
  const size_t cap = ops * 3 + 20;
  std::unique_ptr<uint8_t[]> buf(new uint8_t[cap]);
  BackwardsCoder coder(buf.get() + cap, states, ops);
  for (size_t bi = blocks.size(); bi-- > 0;) {
    const CodedBlock& b = blocks[bi];
    for (int i = b.n; i-- > 0;) {
      const int32_t q = b.q[i];
      const uint32_t v = static_cast<uint32_t>(std::abs(q));
      if (v != 0) coder.Raw(q < 0 ? 1u : 0u, 1);
      if (v < 16) {
        coder.Token(t, b.cls, static_cast<int>(v));
        continue;
      }
      const TokenSplit s = SplitMagnitude(v);
      if (s.nextra > 16) {
        coder.Raw(s.extra & 0xffff, 16);
        coder.Raw(s.extra >> 16, s.nextra - 16);
      } else {
        coder.Raw(s.extra, s.nextra);
      }
      coder.Token(t, b.cls, s.token);
    }
    coder.Raw(static_cast<uint32_t>(b.cls), 5);
  }
  const uint8_t* start = coder.Finish();
  const uint8_t* end = buf.get() + cap;
  out.insert(out.end(), start, end);
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
