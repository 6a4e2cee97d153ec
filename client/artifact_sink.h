// Where a Compress call's artifact goes on the client: each artifact file is written to
// "<final>.part" as its chunks arrive (in order) and renamed into place once the server's
// summary confirms every file and size.
#ifndef HC_CLIENT_ARTIFACT_SINK_H_
#define HC_CLIENT_ARTIFACT_SINK_H_

#include <cstdint>
#include <cstdlib>
#include <future>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "hyperc/v1/hyperc.pb.h"

namespace hc::client {

/// Not thread-safe (the thread reading the response stream owns it). Destroyed without a
/// successful Commit(), it removes every ".part" file.
class ArtifactSink {
 public:
  /// Bytes of the direct-I/O stage of a file being written, and its alignment.
  static constexpr size_t kStageBytes = size_t{8} << 20;
  static constexpr size_t kAlign = 4096;

  /// `output`: the artifact file, or for a sharded model (`directory`) the folder its files go
  /// in (created on the first chunk).
  ArtifactSink(std::string output, bool directory) : output_(std::move(output)), dir_(directory) {}
  ~ArtifactSink();
  ArtifactSink(const ArtifactSink&) = delete;
  ArtifactSink& operator=(const ArtifactSink&) = delete;

  /// Appends a chunk. The data is staged and written with O_DIRECT in aligned blocks, on a
  /// second thread while the next stage fills, where the file system allows it (fresh
  /// page-cache pages are slow on virtual machines, and the client does not read the artifact
  /// back), otherwise with plain writes: the bytes are the same.
  /// Errors: DataLoss for a bad file name, a second file of a single-file model or chunks out
  /// of order; Unavailable when writing fails.
  absl::Status Write(const hyperc::v1::ArtifactChunk& chunk);
  /// Checks the files against `summary` (names and sizes), writes their last bytes, fsyncs and
  /// renames them into place. Errors: DataLoss if a file is missing or incomplete; Unavailable
  /// when writing or renaming fails.
  absl::Status Commit(const hyperc::v1::Summary& summary);

 private:
  struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  struct File {
    std::string final_path, part;
    int fd = -1;
    uint64_t size = 0, written = 0;  // written: bytes received (staged or on disk)
    bool direct = false;             // fd has O_DIRECT; stage_ holds the bytes after stage_offset
    std::unique_ptr<uint8_t, FreeDeleter> stage, spare;  // spare: being written by `pending`
    uint64_t stage_offset = 0;  // file offset of stage[0]
    size_t staged = 0;
    std::future<absl::Status> pending;  // the previous full stage's write, on another thread
  };
  // A full stage: handed to another thread to write (after the previous one is written), so
  // that receiving goes on meanwhile. With `all`: waits for that write, then writes what is
  // staged (O_DIRECT off: the tail is not a whole block).
  absl::Status FlushStage(File& f, bool all);
  static absl::Status WriteAt(File& f, const uint8_t* p, size_t n, uint64_t offset);

  std::string output_;
  bool dir_;
  std::map<std::string, File> files_;
  bool committed_ = false;
};

}  // namespace hc::client

#endif  // HC_CLIENT_ARTIFACT_SINK_H_
