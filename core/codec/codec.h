// The codec interface: every weight codec (rtn, hc1, hc2, ...) plugs in here.
//
// Contract (see ../shared/DESIGN.md, "The codec contract"):
//  - Encode() takes one tensor (F32, F16 or BF16 bytes, little-endian) and returns its stored
//    parts plus the small parameters the decoder needs. It may decide to keep the tensor raw
//    (EncodedTensor::raw), e.g. for tiny tensors; the pipeline then stores it in its own dtype.
//  - Output bytes depend only on the tensor and the options: never on the Executor's threads.
//  - Decoding is random access: PrepareDecoder() validates the parts once, then DecodeRange()
//    reconstructs any element range as float32, from any thread.
//  - Parameters travel in the artifact's JSON metadata (`params`) and must be enough to decode:
//    a decoder is created from the codec name alone (CreateCodec(name, {})).
#ifndef HC_CORE_CODEC_CODEC_H_
#define HC_CORE_CODEC_CODEC_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/dtype.h"
#include "core/base/json.h"
#include "core/base/parallel.h"
#include "core/io/safetensors.h"

namespace hc {

/// Codec options as text key/value pairs, as they come from the CLI (`--bits 4` -> {"bits","4"})
/// or a request. Each codec parses and validates its own keys and rejects unknown ones.
class CodecOptions {
 public:
  CodecOptions() = default;
  CodecOptions(std::initializer_list<std::pair<std::string, std::string>> kv) : kv_(kv) {}

  /// Sets `key` (replacing an earlier value).
  void Set(std::string key, std::string value);
  /// The value of `key`, or nullopt.
  std::optional<std::string> Get(absl::string_view key) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return kv_; }
  bool empty() const { return kv_.empty(); }

  /// Typed getters: the value parsed, `def` when absent. InvalidArgument names the key and value.
  absl::StatusOr<int64_t> GetInt(absl::string_view key, int64_t def) const;
  absl::StatusOr<double> GetDouble(absl::string_view key, double def) const;
  absl::StatusOr<bool> GetBool(absl::string_view key, bool def) const;
  /// A comma-separated list of integers ("1600" or "225,1600").
  absl::StatusOr<std::vector<int64_t>> GetIntList(absl::string_view key,
                                                  std::vector<int64_t> def) const;
  /// InvalidArgument naming the first key not in `known` (for "codec X has no option Y").
  absl::Status CheckKnown(absl::string_view codec, absl::Span<const absl::string_view> known) const;

 private:
  std::vector<std::pair<std::string, std::string>> kv_;
};

/// One stored part of an encoded tensor, e.g. the packed codes or the per-group scales.
/// In the artifact it is the safetensors tensor "<tensor name>#<suffix>".
struct EncodedPart {
  std::string suffix;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

/// What Encode() returns.
struct EncodedTensor {
  /// True if the codec chose to keep the tensor raw (then `parts` is empty).
  bool raw = false;
  /// Why it is raw, for the report (e.g. "numel<10", "mean error 0.012 > 0.006").
  std::string raw_reason;
  /// Parameters the decoder needs, plus informative ones. A JSON object.
  JsonValue params = JsonValue::Object();
  std::vector<EncodedPart> parts;
  /// True if Encode() called EncodeHooks::chunk_reconstructed for every chunk of the tensor.
  bool chunks_reconstructed = false;
};

/// A stored part as the decoder sees it (a view into the artifact).
struct PartView {
  std::string suffix;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;
};

/// The input checks every Encode() starts with: a compressible float dtype and data.size() ==
/// numel * dtype size. InvalidArgument prefixed with `codec` ("hc2: cannot encode dtype I32").
absl::Status CheckEncodeInput(absl::string_view codec, const TensorInfo& info,
                              absl::Span<const uint8_t> data);

/// Returns the part with `suffix` or nullptr.
const PartView* FindPart(absl::Span<const PartView> parts, absl::string_view suffix);

/// Views of `enc`'s parts, in order, as PrepareDecoder takes them (valid while `enc` lives).
std::vector<PartView> PartViews(const EncodedTensor& enc);

/// Optional callbacks from Encode() to its caller.
struct EncodeHooks {
  /// When set, a codec that has copied its input (e.g. widened it to float32) calls it once,
  /// as soon as it will not read `data` again in this Encode() call. The caller may then drop
  /// the input's pages from memory where they come back on demand (a mapped file); `data` must
  /// stay readable. Default: none.
  std::function<void()> input_copied;
  /// When set, a codec that reconstructs its values while it encodes may call it, from any
  /// thread, once for every chunk c of the tensor, elements [c * kChunkElems, min(numel,
  /// (c + 1) * kChunkElems)), with the original values widened to float32 and exactly the
  /// values its decoder will return for them (before any rounding to the tensor's dtype), in a
  /// buffer the callee may overwrite; it then sets EncodedTensor::chunks_reconstructed. The
  /// caller uses these for its error statistics instead of decoding the output again.
  /// Default: none.
  std::function<void(uint64_t chunk, absl::Span<const float> orig, absl::Span<float> recon)>
      chunk_reconstructed;
};

/// A validated, ready decoder for one tensor. Thread-safe.
class TensorDecoder {
 public:
  virtual ~TensorDecoder() = default;
  /// Writes elements [begin, begin + out.size()) of the flattened tensor as float32.
  /// The range must lie inside the tensor (callers guarantee it).
  virtual void DecodeRange(uint64_t begin, absl::Span<float> out) const = 0;
};

/// A codec instance with its options resolved.
class Codec {
 public:
  virtual ~Codec() = default;
  /// The registered name ("rtn", "hc1", ...).
  virtual absl::string_view name() const = 0;
  /// The resolved options, recorded in the artifact metadata. A JSON object.
  virtual JsonValue OptionsJson() const = 0;
  /// Encodes one tensor. `info.dtype` is F32, F16 or BF16 and `data` holds info.nbytes() bytes.
  /// Errors: InvalidArgument if the tensor cannot be encoded with these options.
  absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info, absl::Span<const uint8_t> data,
                                       Executor& executor) const {
    return Encode(info, data, executor, EncodeHooks{});
  }
  /// Encode() with `hooks` (the same output bytes).
  virtual absl::StatusOr<EncodedTensor> Encode(const TensorInfo& info,
                                               absl::Span<const uint8_t> data, Executor& executor,
                                               const EncodeHooks& hooks) const = 0;
  /// Estimated peak bytes Encode() allocates for a tensor like `info` (its output included, its
  /// input not). The pipeline schedules tensors on input plus this under its memory budget; it
  /// only needs the right magnitude.
  virtual uint64_t EncodeMemory(const TensorInfo& info) const = 0;
  /// True if Encode() checks its own input for NaN and infinities, while it reads it anyway,
  /// and then returns a raw EncodedTensor with raw_reason "non-finite values" without coding
  /// any of it. The pipeline then skips its separate pass over the input. Default: false.
  virtual bool ChecksNonFinite() const { return false; }
  /// Validates stored parts and params against `info` and returns a decoder.
  /// Errors: DataLoss if parts are missing, mis-sized or inconsistent with the params.
  virtual absl::StatusOr<std::unique_ptr<TensorDecoder>> PrepareDecoder(
      const TensorInfo& info, const JsonValue& params, absl::Span<const PartView> parts) const = 0;
};

/// Describes a registered codec for --help and listings.
struct CodecDescription {
  std::string name;
  std::string summary;
  /// (option key, help text with default) pairs.
  std::vector<std::pair<std::string, std::string>> options;
};

/// Creates the codec `name` with `options`. Errors: InvalidArgument for an unknown codec
/// (listing the known ones), an unknown option key, or an out-of-range value.
absl::StatusOr<std::unique_ptr<Codec>> CreateCodec(absl::string_view name,
                                                   const CodecOptions& options);

/// All registered codecs, in a stable order.
std::vector<CodecDescription> ListCodecs();

/// Elements per decoding/statistics chunk used by the pipeline (fixed: determinism).
inline constexpr uint64_t kChunkElems = uint64_t{1} << 16;

}  // namespace hc

#endif  // HC_CORE_CODEC_CODEC_H_
