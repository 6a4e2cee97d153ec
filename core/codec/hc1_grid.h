// hc1's encoder core: one tensor, one codebook size. The inner pairs' lookups, the class-count
// search over the outer pairs (several ring counts per pass over the data) and the final
// indices. Used by core/codec/hc1.cc; spec: core/format/spec-hc1.md, section 5.
#ifndef HC_CORE_CODEC_HC1_GRID_H_
#define HC_CORE_CODEC_HC1_GRID_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "core/base/dtype.h"
#include "core/base/parallel.h"
#include "core/codec/hc1.h"
#include "core/codec/hc1_simd.h"

namespace hc::hc1 {

/// Pairs per parallel unit. Fixed, so output never depends on the thread count; the centre pass
/// uses numpy's own chunk (hc1::kNumpyChunk pairs) instead.
constexpr int64_t kUnitPairs = 4096;
static_assert(kUnitPairs <= 65536, "pair offsets are uint16");

/// The tensor's values as float32 pairs, read a range at a time (F16/BF16 widened exactly, F32
/// used in place where it can be): no tensor-sized float copy is ever made. When numel is odd,
/// pair M - 1's y is `pad` (numpy's float32 mean of the tensor).
struct PairSource {
  const uint8_t* data = nullptr;
  DType dtype = DType::kF32;
  int64_t numel = 0;
  float pad = 0;

  /// Pairs [b, e) (e <= ceil(numel / 2)) as 2 (e - b) floats: a pointer into `data` when the
  /// range is aligned F32 without the padding, else `scratch` (room for 2 (e - b) floats) filled.
  const float* Read(int64_t b, int64_t e, float* scratch) const;
  /// Pairs [b, e) as F16 bits to read in place when the input is F16, the range holds no
  /// padding and the AVX-512 kernels run (they widen in-register); else nullptr.
  const uint16_t* F16(int64_t b, int64_t e) const {
    return dtype == DType::kF16 && 2 * e <= numel && HaveAvx512()
               ? reinterpret_cast<const uint16_t*>(data) + 2 * b
               : nullptr;
  }
};

/// The tensor plus everything that does not depend on n (filled by the codec).
struct Geometry {
  /// The values.
  PairSource src;
  /// Elements of the tensor (without padding) and pairs.
  int64_t numel = 0;
  int64_t M = 0;
  /// The centre c.
  float cx = 0, cy = 0;
  /// The inner square's bounds, float32.
  float lox = 0, hix = 0, loy = 0, hiy = 0;
  /// The farthest distance D and the first pair at that distance.
  float D = 0;
  int64_t far = 0;
  /// Pairs inside and outside the square.
  int64_t inner = 0, outer = 0;
  /// Side of the square.
  double L = 0;

  /// Parallel units: ceil(M / kUnitPairs).
  int64_t units() const { return (M + kUnitPairs - 1) / kUnitPairs; }
  /// The inner test, in float32.
  bool Inner(float px, float py) const {
    return (lox <= px) & (px <= hix) & (loy <= py) & (py <= hiy);
  }
  /// Whether element 2i+1 is real (not the padding).
  bool YReal(int64_t i) const { return 2 * i + 1 < numel; }
  /// The inner square as the kernels take it.
  Square square() const { return {lox, hix, loy, hiy}; }
};

/// Every pair's index I, as uint16 when every index the options allow fits (`wide` false),
/// else uint32. The storage comes from a small process-wide pool of idle buffers and goes back
/// to it when this is destroyed (kPoolBytes bounds the idle bytes kept, kPoolBuffers their
/// count; a buffer above kPoolBytes is never kept), so encoding a run of similar tensors
/// touches no fresh pages. Contents start unspecified. Move-only.
class PairCodes {
 public:
  PairCodes() = default;
  PairCodes(int64_t size, bool wide);
  ~PairCodes();
  PairCodes(PairCodes&& o) noexcept { *this = std::move(o); }
  PairCodes& operator=(PairCodes&& o) noexcept;
  PairCodes(const PairCodes&) = delete;
  PairCodes& operator=(const PairCodes&) = delete;

  /// Pairs, and whether the codes are stored as uint32 (else uint16).
  int64_t size() const { return size_; }
  bool wide() const { return wide_; }
  /// Pair i's code (v < 2^16 unless wide()).
  void Set(int64_t i, uint32_t v) {
    if (wide_) {
      reinterpret_cast<uint32_t*>(data_)[i] = v;
    } else {
      reinterpret_cast<uint16_t*>(data_)[i] = static_cast<uint16_t>(v);
    }
  }
  /// Pair i's code, as set.
  uint32_t Get(int64_t i) const {
    return wide_ ? reinterpret_cast<const uint32_t*>(data_)[i]
                 : reinterpret_cast<const uint16_t*>(data_)[i];
  }
  /// The codes as an array of the stored width (valid per wide()).
  const uint16_t* u16() const { return reinterpret_cast<const uint16_t*>(data_); }
  const uint32_t* u32() const { return reinterpret_cast<const uint32_t*>(data_); }
  /// Frees the storage now (back to the pool).
  void Reset() { Release(); }

  /// Idle bytes and buffers the pool keeps at most.
  static constexpr size_t kPoolBytes = size_t{96} << 20;
  static constexpr size_t kPoolBuffers = 2;
  /// Idle bytes in the pool now (for tests).
  static size_t PoolIdleBytes();

 private:
  void Release();

  uint8_t* data_ = nullptr;
  size_t capacity_ = 0;
  int64_t size_ = 0;
  bool wide_ = false;
};

/// Whether hc1 codes with these options need uint32 storage: some index (n + 1)(class_max + 1)
/// - 1 above 65535.
bool WideCodes(const Hc1Options& o);

/// What one codebook size gives.
struct GridResult {
  /// Codebook size and ring count.
  int64_t n = 0;
  int K = 0;
  /// Mean |x^ - x| over the real elements (the encoder's reconstruction).
  double mae = 0;
  /// The largest index and the index I of every pair.
  uint32_t max_index = 0;
  PairCodes codes;
  /// Set when the encoder stopped early because the mean error provably exceeds `raw_above`
  /// (EncodeGrid): then only `bound` (a lower bound on the mean error, > raw_above) and
  /// `pairs_seen` are meaningful.
  bool above = false;
  double bound = 0;
  int64_t pairs_seen = 0;
};

/// Encodes the tensor of `g` with codebook size `n`: K, the indices, their maximum and the mean
/// error. Output does not depend on the executor's threads.
///
/// With `raw_above` > 0 the caller only needs the result if the mean error is <= raw_above: the
/// first pass then runs in rounds of units (kRounds, fixed by the tensor's size alone) and stops
/// as soon as the errors summed so far prove, for every ring count the search may pick, a mean
/// error above raw_above (with a 1e-9 relative margin); the result is then `above`. Early stops
/// need every trial in the first pass (class_max <= 4, or no outer pairs); otherwise the full
/// result comes back.
GridResult EncodeGrid(const Geometry& g, int64_t n, const Hc1Options& o, double raw_above,
                      Executor& ex);

/// Packs codes[0..M) MSB-first at `w` bits (1..32; every code < 2^w) after `z` zero bits into
/// `out` (PackedBytes(M, w, z) bytes, every byte written), as core/io/bit_pack.h's PackMsbFirst
/// does, in parallel units of kUnitPairs codes: the same bytes whatever the executor.
void PackCodes(const uint16_t* codes, int64_t M, int w, int z, absl::Span<uint8_t> out,
               Executor& ex);
void PackCodes(const uint32_t* codes, int64_t M, int w, int z, absl::Span<uint8_t> out,
               Executor& ex);

/// Rounds of the early-stopping first pass: round r (1-based) ends at unit
/// ceil(r * units / min(units, kRounds)).
constexpr int64_t kRounds = 16;

}  // namespace hc::hc1

#endif  // HC_CORE_CODEC_HC1_GRID_H_
