// Parses a safetensors file arriving as a byte stream (an upload), tensor by tensor.
#ifndef HC_CORE_IO_SAFETENSORS_STREAM_H_
#define HC_CORE_IO_SAFETENSORS_STREAM_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/io/safetensors.h"

namespace hc {

/// Limits for SafetensorsStreamParser.
struct StreamParserOptions {
  /// Largest tensor accepted, in bytes (the parser buffers one tensor). Default: 16 GiB.
  uint64_t max_tensor_bytes = uint64_t{16} << 30;
  /// Largest whole stream accepted, in bytes. Default: unlimited.
  uint64_t max_total_bytes = UINT64_MAX;

  absl::Status Validate() const;
};

/// Incremental parser: Feed() bytes in any chunking; once the header is complete it is validated,
/// and each tensor is handed to the callback as soon as its last byte has arrived, in data order.
/// The parser holds at most the header plus one tensor.
///
///   SafetensorsStreamParser p("upload", {});
///   for (chunk : chunks) HC_RETURN_IF_ERROR(p.Feed(chunk, on_tensor));
///   HC_RETURN_IF_ERROR(p.Finish());
class SafetensorsStreamParser {
 public:
  /// Receives a complete tensor; a non-OK return aborts the parse with that status.
  using TensorCallback =
      std::function<absl::Status(const TensorInfo&, absl::Span<const uint8_t> data)>;
  /// Receives the validated header before the first tensor.
  using HeaderCallback = std::function<absl::Status(const SafetensorsHeader&)>;

  SafetensorsStreamParser(std::string source, StreamParserOptions options = {});

  /// Sets an optional header callback (call before the first Feed).
  void OnHeader(HeaderCallback cb) { on_header_ = std::move(cb); }
  /// Consumes `bytes`. Errors: InvalidArgument for a malformed header, bytes past the end of
  /// the data region, or an exceeded limit; the parser is then unusable.
  absl::Status Feed(absl::Span<const uint8_t> bytes, const TensorCallback& on_tensor);
  /// Declares the end of the stream. Errors: InvalidArgument if it ended early (truncated),
  /// naming where.
  absl::Status Finish() const;

  /// True once the header has been parsed.
  bool has_header() const { return has_header_; }
  const SafetensorsHeader& header() const { return header_; }
  /// Bytes consumed so far.
  uint64_t bytes_consumed() const { return consumed_; }

 private:
  std::string source_;
  StreamParserOptions options_;
  HeaderCallback on_header_;
  absl::Status error_;
  uint64_t consumed_ = 0;
  uint64_t header_len_ = 0;
  std::vector<uint8_t> buf_;  // header bytes, then the current tensor's bytes
  bool has_header_ = false;
  SafetensorsHeader header_;
  size_t next_tensor_ = 0;
};

}  // namespace hc

#endif  // HC_CORE_IO_SAFETENSORS_STREAM_H_
