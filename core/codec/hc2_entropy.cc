#include "core/codec/hc2_entropy.h"

#include <cmath>
#include <limits>

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

RansDecoder::RansDecoder(absl::Span<const uint8_t> stream, int states)
    : p_(stream.data()), end_(stream.data() + stream.size()), states_(states) {
  for (int i = 0; i < states; ++i) {
    uint32_t v = 0;
    for (int b = 0; b < 4; ++b) v |= static_cast<uint32_t>(p_ < end_ ? *p_++ : (overrun_ = true, 0)) << (8 * b);
    x_[i] = v;
  }
}

}  // namespace hc::hc2
