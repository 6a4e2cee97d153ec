#include "core/pipeline/file_compressor.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace hc {

inline constexpr absl::string_view kProducer = "hyperc 0.1.0";

absl::StatusOr<std::unique_ptr<FileCompressor>> FileCompressor::Create(
    const TensorCompressor& compressor, TbbExecutor& executor, const SafetensorsHeader& header,
    std::string source, std::string out_path, Options options, DoneCallback on_done) {
  std::unique_ptr<FileCompressor> f(new FileCompressor(compressor, executor));
  f->header_ = header;
  f->source_ = std::move(source);
  f->options_ = options;
  f->on_done_ = std::move(on_done);
  SafetensorsWriterOptions wopt;
  wopt.sync = options.sync;
  HC_ASSIGN_OR_RETURN(f->writer_, SafetensorsWriter::Create(std::move(out_path), wopt));
  f->meta_.producer = std::string(kProducer);
  f->meta_.codec = JsonValue::Object()
                       .Add("name", JsonValue::String(std::string(compressor.codec().name())))
                       .Add("options", compressor.codec().OptionsJson());
  f->meta_.source_metadata = header.metadata;
  return f;
}

FileCompressor::~FileCompressor() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] {
    for (const auto& s : slots_) {
      if (!s->done) return false;
    }
    return true;
  });
  for (auto& s : slots_) {
    if (s->release) s->release();
  }
}

absl::Status FileCompressor::Add(absl::Span<const uint8_t> data, std::function<void()> release) {
  return Enqueue(data, std::move(release), std::nullopt);
}

absl::Status FileCompressor::AddPrecomputed(absl::Span<const uint8_t> data,
                                            std::function<void()> release,
                                            TensorCompressor::Result result) {
  return Enqueue(data, std::move(release), std::move(result));
}

absl::Status FileCompressor::WaitForRoom(bool precomputed) {
  HC_RETURN_IF_ERROR(error_);
  if (next_ >= header_.tensors.size()) return absl::OkStatus();
  const TensorInfo& t = header_.tensors[next_];
  HC_RETURN_IF_ERROR(Drain(false));
  const uint64_t cost = t.nbytes() + (precomputed ? 0 : compressor_.EncodeMemory(t));
  while (inflight_bytes_ > 0 && inflight_bytes_ + cost > options_.memory_budget) {
    HC_RETURN_IF_ERROR(Drain(true));
  }
  return absl::OkStatus();
}

absl::Status FileCompressor::Enqueue(absl::Span<const uint8_t> data, std::function<void()> release,
                                     std::optional<TensorCompressor::Result> precomputed) {
  HC_RETURN_IF_ERROR(error_);
  if (next_ >= header_.tensors.size()) {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": more tensors than the header holds"));
  }
  const TensorInfo& t = header_.tensors[next_];
  if (data.size() != t.nbytes()) {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": tensor \"", t.name, "\" has ",
                                                   data.size(), " bytes, expected ", t.nbytes()));
  }
  HC_RETURN_IF_ERROR(WaitForRoom(precomputed.has_value()));
  const uint64_t cost = t.nbytes() + (precomputed ? 0 : compressor_.EncodeMemory(t));
  auto slot = std::make_unique<Slot>();
  slot->index = next_++;
  slot->bytes = t.nbytes();
  slot->cost = cost;
  slot->data = data;
  slot->release = std::move(release);
  Slot* s = slot.get();
  if (precomputed) {
    s->result = std::move(*precomputed);
    s->done = true;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    slots_.push_back(std::move(slot));
    inflight_bytes_ += s->cost;
  }
  if (s->done) return absl::OkStatus();
  executor_.Submit([this, s] {
    EncodeHooks hooks;
    if (options_.release_keeps_data) hooks.input_copied = s->release;
    auto r = compressor_.Compress(header_.tensors[s->index], s->data, executor_, hooks);
    std::lock_guard<std::mutex> lock(mu_);
    s->result = std::move(r);
    s->done = true;
    cv_.notify_all();
  });
  return absl::OkStatus();
}

absl::Status FileCompressor::Drain(bool block) {
  while (true) {
    std::unique_ptr<Slot> s;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (slots_.empty()) return absl::OkStatus();
      if (block) cv_.wait(lock, [this] { return slots_.front()->done; });
      if (!slots_.front()->done) return absl::OkStatus();
      s = std::move(slots_.front());
      slots_.pop_front();
      inflight_bytes_ -= s->cost;
    }
    block = false;
    // Written strictly in order: this slot is the oldest in flight.
    absl::Status st = s->result.status();
    if (st.ok() && options_.on_result) options_.on_result(s->index, *s->result);
    if (st.ok()) {
      TensorRecord& rec = s->result->record;
      if (rec.codec == kRawCodec) {
        st = writer_->Add(rec.name, rec.dtype, rec.shape, s->data);
      } else {
        for (size_t k = 0; k < rec.parts.size() && st.ok(); ++k) {
          const EncodedPart& p = s->result->parts[k];
          st = writer_->Add(rec.StoredName(rec.parts[k]), p.dtype, p.shape, p.bytes);
        }
      }
    }
    if (s->release) s->release();
    s->release = nullptr;
    if (!st.ok()) {
      error_ = Annotate(st, source_);
      return error_;
    }
    if (on_done_) on_done_(s->result->record, s->bytes, s->result->seconds);
    meta_.tensors.push_back(std::move(s->result->record));
    if (options_.cancel != nullptr && options_.cancel->load(std::memory_order_relaxed)) {
      error_ = absl::CancelledError("cancelled");
      return error_;
    }
  }
}

absl::StatusOr<std::vector<TensorRecord>> FileCompressor::Finish() {
  HC_RETURN_IF_ERROR(error_);
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (slots_.empty()) break;
    }
    HC_RETURN_IF_ERROR(Drain(true));
  }
  if (next_ != header_.tensors.size()) {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": only ", next_, " of ",
                                                   header_.tensors.size(), " tensors arrived"));
  }
  HC_RETURN_IF_ERROR(writer_->Finish(EncodeArtifactMetadata(meta_)));
  return std::move(meta_.tensors);
}

}  // namespace hc
