// Helpers for tests over real models: list the shared models, write derived models (BF16
// copies, shard splits), compare safetensors files.
#ifndef HC_TESTS_TESTUTIL_MODEL_UTIL_H_
#define HC_TESTS_TESTUTIL_MODEL_UTIL_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/dtype.h"
#include "core/io/safetensors.h"

namespace hc::testing {

/// The shared models: the four single-file models and the sharded model's index.
std::vector<std::string> SharedModels();

/// Writes a BF16 copy of `src` to `dst`: every F32 tensor rounded to nearest even, everything
/// else unchanged.
absl::Status WriteBf16Copy(const std::string& src, const std::string& dst);

/// Splits `src` into `shards` safetensors files plus `model.safetensors.index.json` in `dir`
/// (tensors in file order, contiguous groups). Returns the index path.
absl::StatusOr<std::string> SplitIntoShards(const std::string& src, const std::string& dir,
                                            int shards);

/// A 1-D tensor "t" of `numel` elements of `dtype` at offset 0 (for codec tests).
TensorInfo FlatTensorInfo(DType dtype, int64_t numel);

/// Reads a whole file.
std::string ReadAll(const std::string& path);

}  // namespace hc::testing

#endif  // HC_TESTS_TESTUTIL_MODEL_UTIL_H_
