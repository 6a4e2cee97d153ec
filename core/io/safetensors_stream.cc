#include "core/io/safetensors_stream.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace hc {

absl::Status StreamParserOptions::Validate() const {
  if (max_tensor_bytes == 0) return absl::InvalidArgumentError("max_tensor_bytes must be > 0");
  if (max_total_bytes < 8) return absl::InvalidArgumentError("max_total_bytes must be >= 8");
  return absl::OkStatus();
}

SafetensorsStreamParser::SafetensorsStreamParser(std::string source, StreamParserOptions options)
    : source_(std::move(source)), options_(options) {}

absl::Status SafetensorsStreamParser::Feed(absl::Span<const uint8_t> bytes,
                                           const TensorCallback& on_tensor) {
  HC_RETURN_IF_ERROR(error_);
  auto fail = [&](absl::Status s) {
    error_ = s;
    return s;
  };
  if (bytes.size() > options_.max_total_bytes - consumed_) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        source_, ": stream exceeds the limit of ", options_.max_total_bytes, " bytes")));
  }
  while (!bytes.empty()) {
    if (!has_header_) {
      // Length prefix, then the JSON header.
      const uint64_t want = (consumed_ < 8 ? 8 : 8 + header_len_) - consumed_;
      const size_t take = static_cast<size_t>(std::min<uint64_t>(want, bytes.size()));
      buf_.insert(buf_.end(), bytes.begin(), bytes.begin() + take);
      bytes.remove_prefix(take);
      consumed_ += take;
      if (consumed_ == 8 && header_len_ == 0) {
        auto n = ParseHeaderLength(buf_.data(), std::nullopt, source_);
        if (!n.ok()) return fail(n.status());
        header_len_ = *n;
        if (header_len_ > options_.max_total_bytes - 8) {
          return fail(absl::InvalidArgumentError(absl::StrCat(
              source_, ": header length ", header_len_, " exceeds the stream limit of ",
              options_.max_total_bytes, " bytes")));
        }
        buf_.clear();
      } else if (header_len_ > 0 && consumed_ == 8 + header_len_) {
        absl::string_view json(reinterpret_cast<const char*>(buf_.data()), buf_.size());
        auto h = ValidateSafetensorsHeader(json, std::nullopt, source_);
        if (!h.ok()) return fail(h.status());
        header_ = *std::move(h);
        if (header_.file_size() > options_.max_total_bytes) {
          return fail(absl::InvalidArgumentError(
              absl::StrCat(source_, ": declares ", header_.file_size(),
                           " bytes, over the limit of ", options_.max_total_bytes)));
        }
        for (const TensorInfo& t : header_.tensors) {
          if (t.nbytes() > options_.max_tensor_bytes) {
            return fail(absl::InvalidArgumentError(
                absl::StrCat(source_, ": tensor \"", t.name, "\" has ", t.nbytes(),
                             " bytes, over the per-tensor limit of ", options_.max_tensor_bytes)));
          }
        }
        has_header_ = true;
        buf_.clear();
        if (on_header_) {
          if (absl::Status s = on_header_(header_); !s.ok()) return fail(s);
        }
      }
      if (!has_header_) continue;
    }
    // Empty tensors complete without bytes.
    while (next_tensor_ < header_.tensors.size() && header_.tensors[next_tensor_].nbytes() == 0) {
      if (absl::Status s = on_tensor(header_.tensors[next_tensor_], {}); !s.ok()) return fail(s);
      ++next_tensor_;
    }
    if (bytes.empty()) break;
    if (next_tensor_ >= header_.tensors.size()) {
      return fail(absl::InvalidArgumentError(absl::StrCat(
          source_, ": ", bytes.size(), " bytes after the end of the data region (",
          header_.file_size(), " bytes)")));
    }
    const TensorInfo& t = header_.tensors[next_tensor_];
    const size_t take = static_cast<size_t>(std::min<uint64_t>(t.nbytes() - buf_.size(), bytes.size()));
    if (buf_.empty() && take == t.nbytes()) {
      // Whole tensor inside this chunk: no copy.
      consumed_ += take;
      if (absl::Status s = on_tensor(t, bytes.subspan(0, take)); !s.ok()) return fail(s);
    } else {
      // Grow as bytes arrive (no up-front reservation of a declared, untrusted size).
      if (buf_.empty()) buf_.reserve(static_cast<size_t>(std::min<uint64_t>(t.nbytes(), uint64_t{64} << 20)));
      buf_.insert(buf_.end(), bytes.begin(), bytes.begin() + take);
      consumed_ += take;
      if (buf_.size() < t.nbytes()) {
        bytes.remove_prefix(take);
        continue;
      }
      if (absl::Status s = on_tensor(t, buf_); !s.ok()) return fail(s);
      buf_.clear();
      buf_.shrink_to_fit();
    }
    bytes.remove_prefix(take);
    ++next_tensor_;
  }
  if (has_header_) {
    while (next_tensor_ < header_.tensors.size() && header_.tensors[next_tensor_].nbytes() == 0) {
      if (absl::Status s = on_tensor(header_.tensors[next_tensor_], {}); !s.ok()) return fail(s);
      ++next_tensor_;
    }
  }
  return absl::OkStatus();
}

absl::Status SafetensorsStreamParser::Finish() const {
  HC_RETURN_IF_ERROR(error_);
  if (!has_header_) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_, ": stream truncated after ", consumed_, " bytes, inside the header"));
  }
  if (next_tensor_ < header_.tensors.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source_, ": stream truncated after ", consumed_, " of ", header_.file_size(),
        " bytes, inside tensor \"", header_.tensors[next_tensor_].name, "\""));
  }
  return absl::OkStatus();
}

}  // namespace hc
