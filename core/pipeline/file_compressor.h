// Compresses one safetensors file whose tensors become available one after another (from a
// mapped file, or from an upload as its bytes arrive) into one artifact file.
#ifndef HC_CORE_PIPELINE_FILE_COMPRESSOR_H_
#define HC_CORE_PIPELINE_FILE_COMPRESSOR_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_writer.h"
#include "core/pipeline/pipeline.h"
#include "core/pipeline/tbb_executor.h"

namespace hc {

/// Tensor-level streaming compression of one file.
///
/// Add() hands over tensor i (in the header's data order) and returns at once after submitting
/// its encoding to the executor, unless the bytes in flight (input plus the codec's estimated
/// working memory) would exceed the memory budget: then it first waits for the oldest tensors
/// to finish. Finished tensors are written to the artifact strictly in order, so the
/// artifact's bytes depend only on the input and the options, never on timing or thread count.
/// The same class serves local files and uploads.
class FileCompressor {
 public:
  struct Options {
    /// Bytes in flight at once: input plus TensorCompressor::EncodeMemory (a larger tensor runs
    /// alone). Default: 256 MiB.
    uint64_t memory_budget = uint64_t{256} << 20;
    /// Whether a tensor's `release` only drops pages that come back on demand (a mapped file),
    /// so that it may be called early, while the tensor is still read: then a codec that has
    /// copied its input releases it at once (EncodeHooks::input_copied). Default: false.
    bool release_keeps_data = false;
    /// fsync the artifact before renaming it into place. Default: true.
    bool sync = true;
    /// When set and true, Add() and Finish() stop with Cancelled (checked after every tensor).
    const std::atomic<bool>* cancel = nullptr;
    /// Called with each tensor's result (its index in the header) just before it is written,
    /// on the thread calling Add or Finish: a server checkpoints results here.
    std::function<void(size_t, const TensorCompressor::Result&)> on_result;
  };
  /// Called (on the thread calling Add or Finish) after each tensor is written, with its record,
  /// its input bytes and the seconds its encoding took (0 for a precomputed result).
  using DoneCallback = std::function<void(const TensorRecord&, uint64_t, double)>;

  /// Starts an artifact at `out_path` for a source with `header`. `compressor` and `executor`
  /// must outlive this object.
  static absl::StatusOr<std::unique_ptr<FileCompressor>> Create(
      const TensorCompressor& compressor, TbbExecutor& executor, const SafetensorsHeader& header,
      std::string source, std::string out_path, Options options, DoneCallback on_done = {});
  /// Waits for in-flight work. Without a successful Finish() no artifact file is left.
  ~FileCompressor();

  /// The next tensor's bytes (valid until `release` is called, which happens once the tensor
  /// has been encoded). Errors: the first failure of any tensor so far.
  absl::Status Add(absl::Span<const uint8_t> data, std::function<void()> release = {});
  /// Blocks until the next tensor (the one the next Add() hands over) fits in the memory budget
  /// next to the tensors in flight, writing finished ones meanwhile: what Add() would wait for
  /// anyway. A caller that copies each input into memory before Add() calls this first, so that
  /// the copies never exceed the budget (the next tensor's copy is not made while the budget is
  /// full). `precomputed`: the next tensor will come with AddPrecomputed(). Errors: the first
  /// failure of any tensor so far.
  absl::Status WaitForRoom(bool precomputed = false);
  /// Like Add(), with the tensor's result already known (a checkpoint): nothing is computed.
  /// `data` is still needed when the record is raw.
  absl::Status AddPrecomputed(absl::Span<const uint8_t> data, std::function<void()> release,
                              TensorCompressor::Result result);
  /// Waits for every tensor, writes the metadata and renames the artifact into place.
  /// Errors: InvalidArgument if fewer tensors were added than the header holds; any failure.
  absl::StatusOr<std::vector<TensorRecord>> Finish();

 private:
  struct Slot {
    size_t index = 0;
    uint64_t bytes = 0;
    uint64_t cost = 0;  // bytes counted against the budget: input plus estimated work
    absl::Span<const uint8_t> data;
    std::function<void()> release;
    bool done = false;
    absl::StatusOr<TensorCompressor::Result> result = absl::UnknownError("pending");
  };
  FileCompressor(const TensorCompressor& c, TbbExecutor& e) : compressor_(c), executor_(e) {}
  absl::Status Enqueue(absl::Span<const uint8_t> data, std::function<void()> release,
                       std::optional<TensorCompressor::Result> precomputed);
  // Writes finished slots at the head; with `block`, first waits for the head to finish.
  absl::Status Drain(bool block);

  const TensorCompressor& compressor_;
  TbbExecutor& executor_;
  SafetensorsHeader header_;
  std::string source_;
  Options options_;
  DoneCallback on_done_;
  std::unique_ptr<SafetensorsWriter> writer_;
  ArtifactMetadata meta_;
  size_t next_ = 0;
  uint64_t inflight_bytes_ = 0;  // sum of the slots' costs
  absl::Status error_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Slot>> slots_;
};

}  // namespace hc

#endif  // HC_CORE_PIPELINE_FILE_COMPRESSOR_H_
