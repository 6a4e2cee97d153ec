// The decode API: open an artifact once, list its tensors, decode a whole tensor or a range of
// rows into a caller's buffer, or build a fused linear layer (linear.h) over a tensor.
//
// A "row" of a tensor of shape [d0, d1, ...] is numel / d0 consecutive elements of the
// flattened tensor (a rank-0 tensor is one row of one element). Decoded values are the codec's
// float32 reconstruction, exactly what `hyperc decompress` narrows into the original dtype
// (F16 output here rounds to nearest even, as decompress does for F16 tensors). Raw F32, F16 and
// BF16 tensors decode too (widened exactly); raw tensors of other dtypes are not float data
// and are rejected.
#ifndef HC_CORE_INFER_MODEL_READER_H_
#define HC_CORE_INFER_MODEL_READER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/base/parallel.h"
#include "core/format/artifact.h"
#include "core/infer/linear.h"

namespace hc {

/// An open artifact (one file, or every shard of a sharded one). Thread-safe: every method is
/// const and may be called concurrently. Each tensor's parts are checked against their CRC-32C
/// once, on first use; its decoder is then kept.
class ModelReader {
 public:
  /// Opens `artifact`: a .safetensors artifact, a hyperc.index.json or a directory holding one.
  /// Errors: as ArtifactReader::Open and ResolveArtifactFiles (NotFound, InvalidArgument,
  /// DataLoss, FailedPrecondition), naming the file.
  static absl::StatusOr<std::unique_ptr<ModelReader>> Open(const std::string& artifact);
  ~ModelReader();

  /// Tensor names, shard by shard, each shard in record order.
  std::vector<std::string> TensorNames() const;
  /// The record of tensor `name` (codec, dtype, shape, params, stats). Errors: NotFound.
  absl::StatusOr<const TensorRecord*> Find(absl::string_view name) const;
  /// Rows of tensor `name` (shape[0], 1 for a rank-0 tensor) and elements per row.
  /// Errors: NotFound.
  absl::StatusOr<std::pair<int64_t, int64_t>> RowShape(absl::string_view name) const;

  /// Decodes all of tensor `name` into `out` (numel floats), in fixed chunks run on `executor`.
  /// Errors: NotFound, InvalidArgument (wrong `out` size, a non-float raw tensor), DataLoss
  /// (checksum or inconsistent parts).
  absl::Status DecodeTensor(absl::string_view name, absl::Span<float> out,
                            Executor& executor) const;
  /// Decodes rows [r0, r1) of tensor `name` into `out` ((r1 - r0) * row length floats), on the
  /// calling thread. Errors: as DecodeTensor, plus OutOfRange when not 0 <= r0 <= r1 <= rows.
  absl::Status DecodeRows(absl::string_view name, int64_t r0, int64_t r1,
                          absl::Span<float> out) const;
  /// DecodeRows into IEEE half precision (round to nearest even).
  absl::Status DecodeRowsF16(absl::string_view name, int64_t r0, int64_t r1,
                             absl::Span<uint16_t> out) const;

  /// The fused (or, for raw F16/F32 tensors, dense) linear layer of a 2-D tensor; valid while
  /// the reader lives. Errors: NotFound, DataLoss, and CreateLinear's InvalidArgument /
  /// Unimplemented for shapes and layouts without a fused kernel.
  absl::StatusOr<std::unique_ptr<Linear>> CreateLinear(absl::string_view name) const;

 private:
  struct Location {
    size_t file;
    size_t record;
  };
  struct Prepared;
  ModelReader() = default;
  absl::StatusOr<Location> Locate(absl::string_view name) const;
  /// The checked parts and decoder of tensor `name`, made once.
  absl::StatusOr<std::shared_ptr<const Prepared>> Prepare(absl::string_view name) const;

  std::vector<std::unique_ptr<ArtifactReader>> files_;
  std::map<std::string, Location, std::less<>> index_;
  std::vector<std::string> names_;
  mutable std::mutex mu_;
  mutable std::map<std::string, std::shared_ptr<const Prepared>, std::less<>> prepared_;
};

}  // namespace hc

#endif  // HC_CORE_INFER_MODEL_READER_H_
