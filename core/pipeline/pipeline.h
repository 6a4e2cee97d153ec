// Model-level work: compress a whole model (one safetensors file or a sharded checkpoint) into
// an artifact, decompress an artifact, inspect one. The same code runs in the CLI's local mode
// and in the server.
//
// Scheduling (FileCompressor): tensors are handed over in file order and encoded concurrently
// on one TBB arena while their bytes in flight (input plus the codec's estimated working memory)
// fit the memory budget (a tensor larger than the budget runs alone); codecs split large
// tensors further into fixed chunks. Results are written strictly in file order and each
// tensor's input pages are released once it is encoded (as soon as a codec has copied them,
// for a mapped file). Output bytes therefore depend only on the input and the options, never
// on the thread count.
#ifndef HC_CORE_PIPELINE_PIPELINE_H_
#define HC_CORE_PIPELINE_PIPELINE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/parallel.h"
#include "core/codec/codec.h"
#include "core/format/artifact.h"
#include "core/io/shard_index.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace hc {

/// Options of a compression run.
struct CompressOptions {
  /// Codec name (see ListCodecs()). Default: "rtn".
  std::string codec = "rtn";
  /// Codec options, e.g. {"bits", "4"}. Default: the codec's defaults.
  CodecOptions codec_options;
  /// Worker threads; 0 = one per core. Default: 0.
  int threads = 0;
  /// Tensors whose name matches any of these RE2 regexes (searched anywhere in the name) are
  /// stored raw. RE2 runs in linear time, so a regex from a remote client cannot stall the
  /// server. Default: none.
  std::vector<std::string> skip;
  /// Bytes of the tensors in flight at once: their input plus their codec's estimated working
  /// memory (Codec::EncodeMemory). A larger tensor is processed on its own. Default: 256 MiB.
  uint64_t memory_budget = uint64_t{256} << 20;
  /// fsync outputs before renaming them into place. Default: true.
  bool sync = true;
  /// Model-level bits per weight, every stored byte counted (raw tensors included), for a codec
  /// with a rate option (hc2's entropy-coded mode). Tensors of rank <= 1 (biases, norms) stay
  /// raw, tensors under kSensitiveNumel weights get kSensitiveBpw, the others share the rest
  /// equally (equal rates keep the numel-weighted mean SNR near its best). 0 = off. Default: 0.
  double target_bpw = 0;
  /// Per-tensor overrides "REGEX=SPEC": SPEC "raw" stores matching tensors raw; otherwise it is
  /// "key=value[,key=value...]" codec options applied on top of `codec_options` (e.g.
  /// "attn=bpw=6" or "lm_head=mode=fixed,bits=4"). The first matching rule wins; RE2 syntax,
  /// searched anywhere in the name. Default: none.
  std::vector<std::string> overrides;

  absl::Status Validate() const;
};

/// A progress snapshot, delivered after each tensor is written.
struct Progress {
  uint64_t tensors_done = 0;
  uint64_t tensors_total = 0;
  /// Input bytes processed / in total.
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  double elapsed_seconds = 0;
  /// Estimated seconds left (from bytes done so far); 0 when done or unknown.
  double eta_seconds = 0;
  /// Name of the tensor just finished.
  std::string tensor;
};
using ProgressCallback = std::function<void(const Progress&)>;

/// Model-wide figures over a list of records.
struct ModelTotals {
  uint64_t tensors = 0;
  uint64_t coded_tensors = 0;
  uint64_t numel = 0;
  uint64_t stored_bytes = 0;
  /// Over the tensors a codec encoded (not raw ones).
  uint64_t coded_numel = 0;
  uint64_t coded_stored_bytes = 0;
  double bits_per_weight = 0;        // all tensors
  double coded_bits_per_weight = 0;  // coded tensors
  /// numel-weighted means over coded tensors.
  double snr_db = 0;
  double db_above_rd = 0;
  double mae = 0;
};
ModelTotals Summarize(absl::Span<const TensorRecord> records);

/// The outcome of a compress or decompress run.
struct RunSummary {
  /// Records of every tensor, all shards, in order.
  std::vector<TensorRecord> tensors;
  /// Files written (artifact shards and index, or decompressed files).
  std::vector<std::string> outputs;
  double seconds = 0;
  ModelTotals totals;
};

/// Encodes single tensors: codec choice, skip rules, statistics. Thread-safe after Create().
class TensorCompressor {
 public:
  ~TensorCompressor();
  static absl::StatusOr<std::unique_ptr<TensorCompressor>> Create(const CompressOptions& options);

  /// Result of Compress(): the record (stats filled, CRCs filled) and the bytes of each part in
  /// record order. For a raw record, `parts` is empty and the caller stores the input bytes.
  struct Result {
    TensorRecord record;
    std::vector<EncodedPart> parts;
    /// Wall seconds spent encoding and measuring the tensor (informative; never stored).
    double seconds = 0;
  };
  /// Compresses one tensor. Non-float dtypes, skipped names, non-finite values and tensors the
  /// codec declines are raw. `hooks` go to the codec's Encode() (EncodeHooks::input_copied: the
  /// input's pages may be dropped until the statistics read them again). Errors: those of the
  /// codec's Encode().
  absl::StatusOr<Result> Compress(const TensorInfo& info, absl::Span<const uint8_t> data,
                                  Executor& executor, const EncodeHooks& hooks = {}) const;
  /// Estimated peak bytes Compress() allocates for `info` beyond its input, its result included
  /// (Codec::EncodeMemory of the tensor's codec; 0 for a tensor kept raw by options).
  uint64_t EncodeMemory(const TensorInfo& info) const;

  const Codec& codec() const { return *codec_; }
  /// With options.target_bpw set: assigns every tensor of the model its rate, given all of its
  /// tensors (every shard). Must run before Compress() when target_bpw is set. Errors:
  /// InvalidArgument if the target cannot be met.
  absl::Status Plan(absl::Span<const TensorInfo> tensors);
  /// The codec (and its options) Compress() uses for `info`; nullptr if an override keeps the
  /// tensor raw.
  const Codec* CodecFor(const TensorInfo& info) const;

 private:
  TensorCompressor() = default;
  struct Override;
  std::unique_ptr<Codec> codec_;
  CompressOptions options_;
  std::vector<std::unique_ptr<re2::RE2>> skip_;
  std::vector<Override> overrides_;
  // The plan: tensor name -> codec (owned by planned_codecs_).
  std::vector<std::unique_ptr<Codec>> planned_codecs_;
  std::map<std::string, const Codec*> plan_;
  bool planned_ = false;
};
/// Weights under which a tensor counts as sensitive for --target-bpw.
inline constexpr uint64_t kSensitiveNumel = 4096;
/// Bits per weight of sensitive tensors under --target-bpw.
inline constexpr double kSensitiveBpw = 8.0;

/// Compresses `input` (a .safetensors file or a shard index .json) into `output` (a file, or a
/// directory for a sharded input: one `<shard>.hyc.safetensors` per shard plus
/// kArtifactIndexName). On any error nothing is left at `output`.
/// Errors: InvalidArgument for bad options or input (naming file/tensor/rule), Cancelled if
/// `cancel` became true, OS errors from the file system.
absl::StatusOr<RunSummary> CompressModel(const std::string& input, const std::string& output,
                                         const CompressOptions& options,
                                         const ProgressCallback& progress = {},
                                         const std::atomic<bool>* cancel = nullptr);

/// Decompresses an artifact (file, artifact index, or directory holding one) into `output`
/// (a .safetensors file; a directory with the original shard files and index for a sharded
/// artifact). Names, shapes, dtypes, order and the source "__metadata__" are restored; raw
/// tensors bit for bit. `threads` 0 = one per core.
absl::StatusOr<RunSummary> DecompressModel(const std::string& artifact, const std::string& output,
                                           int threads = 0, const ProgressCallback& progress = {},
                                           const std::atomic<bool>* cancel = nullptr);

/// The artifact files of `artifact` (a file, an artifact index, or a directory holding one), in
/// shard order. Errors: InvalidArgument for an index that is not a hyperc artifact index (naming
/// it), OS errors reading it.
absl::StatusOr<std::vector<std::string>> ResolveArtifactFiles(const std::string& artifact);

/// Reads the records of an artifact (file, index or directory) without decoding anything.
absl::StatusOr<RunSummary> InspectArtifact(const std::string& artifact);

/// File name of the index written for a sharded artifact.
inline constexpr absl::string_view kArtifactIndexName = "hyperc.index.json";

/// The artifact file name for a source shard: "x.safetensors" -> "x.hyc.safetensors".
std::string ArtifactShardName(const std::string& source_name);

/// Checks that the shards (headers in `index.shards` order) hold exactly the tensors the index's
/// weight map assigns them. Errors: InvalidArgument naming the index and the tensor.
absl::Status CheckShardsMatchIndex(const ShardIndex& index,
                                   absl::Span<const SafetensorsHeader* const> headers);

/// Writes `dir`/hyperc.index.json for a sharded artifact (SPEC.md section 7): source shard
/// names in sorted order and each shard's records. Returns the index path.
absl::StatusOr<std::string> WriteArtifactIndex(const std::string& dir,
                                               const std::string& source_index_name,
                                               const JsonValue& source_index_metadata,
                                               absl::Span<const std::string> source_shards,
                                               absl::Span<const std::vector<TensorRecord>> records,
                                               bool sync);

}  // namespace hc

#endif  // HC_CORE_PIPELINE_PIPELINE_H_
