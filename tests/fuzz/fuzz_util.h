// Helpers shared by the fuzz targets: a byte reader over the fuzz input and a hard check that
// aborts (so libFuzzer and the replay driver both report it as a crash).
#ifndef HC_TESTS_FUZZ_FUZZ_UTIL_H_
#define HC_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace hc::fuzz {

/// Aborts with `what` when `cond` is false.
#define HC_FUZZ_CHECK(cond, what)                                                    \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s: %s\n", __FILE__, __LINE__, \
                   #cond, std::string(what).c_str());                                \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

/// Consumes the fuzz input from the front (integers) and hands out the rest as bytes; past the
/// end every read returns zeros, so every input is usable.
class FuzzReader {
 public:
  FuzzReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - pos_; }

  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  uint32_t U32() { return static_cast<uint32_t>(U16()) | (static_cast<uint32_t>(U16()) << 16); }
  uint64_t U64() { return static_cast<uint64_t>(U32()) | (static_cast<uint64_t>(U32()) << 32); }
  /// A value in [lo, hi] (hi >= lo).
  uint64_t Range(uint64_t lo, uint64_t hi) {
    const uint64_t span = hi - lo;
    if (span == 0) return lo;
    const uint64_t v = span < 0xff ? U8() : span < 0xffff ? U16() : span < 0xffffffffu ? U32() : U64();
    return span == UINT64_MAX ? v : lo + v % (span + 1);
  }
  bool Bool() { return U8() & 1; }
  /// Up to `max` bytes (length from one size byte pair), as a string.
  std::string Bytes(size_t max) {
    const size_t n = std::min<size_t>(Range(0, max), remaining());
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  /// Bytes up to the next `sep` byte (consumed, not returned) or the end.
  std::string Until(uint8_t sep) {
    const uint8_t* begin = data_ + pos_;
    const void* hit = std::memchr(begin, sep, remaining());
    const size_t n = hit ? static_cast<const uint8_t*>(hit) - begin : remaining();
    pos_ += n + (hit ? 1 : 0);
    return std::string(reinterpret_cast<const char*>(begin), n);
  }
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(data_ + pos_), remaining());
    pos_ = size_;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

/// True if `s` has one of `codes`.
inline bool CodeIn(const absl::Status& s, std::initializer_list<absl::StatusCode> codes) {
  for (absl::StatusCode c : codes) {
    if (s.code() == c) return true;
  }
  return false;
}

}  // namespace hc::fuzz

#endif  // HC_TESTS_FUZZ_FUZZ_UTIL_H_
