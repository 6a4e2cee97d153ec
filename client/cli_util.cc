#include "client/cli_util.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/io/safetensors.h"

namespace hc::cli {

Args::Args(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) args_.emplace_back(argv[i]);
}

absl::StatusOr<std::optional<std::string>> Args::Value(absl::string_view name) {
  if (done()) return std::nullopt;
  const std::string& a = args_[i_];
  if (a == name) {
    if (i_ + 1 >= args_.size()) {
      return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
    }
    i_ += 2;
    return args_[i_ - 1];
  }
  if (absl::StartsWith(a, name) && a.size() > name.size() && a[name.size()] == '=') {
    ++i_;
    return a.substr(name.size() + 1);
  }
  return std::nullopt;
}

absl::StatusOr<bool> Args::Take(std::initializer_list<absl::string_view> names,
                                std::string* out) {
  for (absl::string_view n : names) {
    auto v = Value(n);
    if (!v.ok()) return v.status();
    if (v->has_value()) {
      *out = **v;
      return true;
    }
  }
  return false;
}

bool Args::Switch(absl::string_view name) {
  if (!done() && args_[i_] == name) {
    ++i_;
    return true;
  }
  return false;
}


ProgressPrinter::ProgressPrinter(std::string verb, bool enabled)
    : verb_(std::move(verb)), enabled_(enabled), tty_(::isatty(2) != 0) {}

void ProgressPrinter::operator()(const Progress& p) {
  if (!enabled_) return;
  const double frac = p.bytes_total ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 1.0;
  const bool last = p.tensors_done == p.tensors_total;
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r%s [%s] %5.1f%% %llu/%llu tensors %.1f/%.1f MB  ETA %.0fs   ",
                 verb_.c_str(), bar.c_str(), 100 * frac,
                 static_cast<unsigned long long>(p.tensors_done),
                 static_cast<unsigned long long>(p.tensors_total), p.bytes_done / 1e6,
                 p.bytes_total / 1e6, p.eta_seconds);
    drawn_ = true;
    return;
  }
  if (!last && p.elapsed_seconds - last_print_ < 1.0) return;
  last_print_ = p.elapsed_seconds;
  std::fprintf(stderr, "%s: %llu/%llu tensors, %.1f/%.1f MB (%.0f%%), %.1fs elapsed, ETA %.0fs\n",
               verb_.c_str(), static_cast<unsigned long long>(p.tensors_done),
               static_cast<unsigned long long>(p.tensors_total), p.bytes_done / 1e6,
               p.bytes_total / 1e6, 100 * frac, p.elapsed_seconds, p.eta_seconds);
}

void ProgressPrinter::Finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

std::string TensorTable(const RunSummary& s) {
  size_t w = 6;
  for (const TensorRecord& r : s.tensors) w = std::max(w, r.name.size());
  w = std::min<size_t>(w, 60);
  std::string out = absl::StrFormat("%-*s %-20s %-5s %-5s %10s %7s %10s %10s %8s %8s\n", w, "tensor",
                                    "shape", "dtype", "codec", "numel", "bpw", "mae", "rel_mse",
                                    "snr_db", "dB>D(R)");
  for (const TensorRecord& r : s.tensors) {
    std::string name = r.name.size() > w ? "..." + r.name.substr(r.name.size() - w + 3) : r.name;
    const bool raw = r.codec == kRawCodec;
    absl::StrAppendFormat(&out, "%-*s %-20s %-5s %-5s %10d %7.3f ", w, name, ShapeString(r.shape),
                          DTypeName(r.dtype), r.codec, r.numel, r.stats.bits_per_weight);
    if (raw) {
      absl::StrAppendFormat(&out, "%10s %10s %8s %8s  (%s)\n", "-", "-", "lossless", "-", r.raw_reason);
    } else {
      absl::StrAppendFormat(&out, "%10.3g %10.3g %8.2f %8.2f\n", r.stats.mae, r.stats.rel_mse,
                            r.stats.snr_db, r.stats.db_above_rd);
    }
  }
  const ModelTotals& t = s.totals;
  absl::StrAppendFormat(&out,
                        "total: %d tensors (%d coded), %d weights, %.3f MB stored, %.3f bits/weight "
                        "overall; coded: %.3f bits/weight, SNR %.2f dB, %.2f dB above D(R)\n",
                        t.tensors, t.coded_tensors, t.numel, t.stored_bytes / 1e6,
                        t.bits_per_weight, t.coded_bits_per_weight, t.snr_db, t.db_above_rd);
  return out;
}

std::string SummaryTable(const RunSummary& s) {
  struct Row {
    uint64_t tensors = 0, numel = 0, bytes = 0;
    double snr = 0, rd = 0;
  };
  std::map<std::string, Row> rows;
  for (const TensorRecord& r : s.tensors) {
    Row& row = rows[r.codec];
    ++row.tensors;
    row.numel += r.numel;
    row.bytes += r.stats.stored_bytes;
    row.snr += static_cast<double>(r.numel) * r.stats.snr_db;
    row.rd += static_cast<double>(r.numel) * r.stats.db_above_rd;
  }
  std::string out = absl::StrFormat("%-6s %8s %12s %12s %8s %8s %9s\n", "codec", "tensors",
                                    "weights", "stored MB", "bpw", "snr_db", "dB>D(R)");
  for (const auto& [codec, row] : rows) {
    const double n = static_cast<double>(std::max<uint64_t>(row.numel, 1));
    if (codec == kRawCodec) {
      absl::StrAppendFormat(&out, "%-6s %8d %12d %12.3f %8.3f %8s %9s\n", codec, row.tensors,
                            row.numel, row.bytes / 1e6, 8.0 * row.bytes / n, "lossless", "-");
    } else {
      absl::StrAppendFormat(&out, "%-6s %8d %12d %12.3f %8.3f %8.2f %9.2f\n", codec, row.tensors,
                            row.numel, row.bytes / 1e6, 8.0 * row.bytes / n, row.snr / n, row.rd / n);
    }
  }
  const ModelTotals& t = s.totals;
  absl::StrAppendFormat(&out, "%-6s %8d %12d %12.3f %8.3f\n", "total", t.tensors, t.numel,
                        t.stored_bytes / 1e6, t.bits_per_weight);
  return out;
}

std::string ReportJson(const RunSummary& s) {
  JsonValue tensors = JsonValue::Array();
  for (const TensorRecord& r : s.tensors) {
    JsonValue shape = JsonValue::Array();
    for (int64_t d : r.shape) shape.Push(JsonValue::Int(d));
    JsonValue o = JsonValue::Object();
    o.Add("name", JsonValue::String(r.name))
        .Add("shape", std::move(shape))
        .Add("dtype", JsonValue::String(std::string(DTypeName(r.dtype))))
        .Add("codec", JsonValue::String(r.codec))
        .Add("numel", JsonValue::Int(static_cast<int64_t>(r.numel)))
        .Add("stored_bytes", JsonValue::Int(static_cast<int64_t>(r.stats.stored_bytes)))
        .Add("bits_per_weight", JsonValue::Number(r.stats.bits_per_weight))
        .Add("mae", JsonValue::Number(r.stats.mae))
        .Add("max_abs_err", JsonValue::Number(r.stats.max_abs_err))
        .Add("rel_mse", JsonValue::Number(r.stats.rel_mse))
        .Add("snr_db", JsonValue::Number(r.stats.snr_db))
        .Add("db_above_rd", JsonValue::Number(r.stats.db_above_rd));
    if (!r.raw_reason.empty()) o.Add("raw_reason", JsonValue::String(r.raw_reason));
    o.Add("params", r.params);
    tensors.Push(std::move(o));
  }
  const ModelTotals& t = s.totals;
  JsonValue total = JsonValue::Object()
                        .Add("tensors", JsonValue::Int(static_cast<int64_t>(t.tensors)))
                        .Add("coded_tensors", JsonValue::Int(static_cast<int64_t>(t.coded_tensors)))
                        .Add("numel", JsonValue::Int(static_cast<int64_t>(t.numel)))
                        .Add("stored_bytes", JsonValue::Int(static_cast<int64_t>(t.stored_bytes)))
                        .Add("bits_per_weight", JsonValue::Number(t.bits_per_weight))
                        .Add("coded_numel", JsonValue::Int(static_cast<int64_t>(t.coded_numel)))
                        .Add("coded_bits_per_weight", JsonValue::Number(t.coded_bits_per_weight))
                        .Add("snr_db", JsonValue::Number(t.snr_db))
                        .Add("db_above_rd", JsonValue::Number(t.db_above_rd))
                        .Add("mae", JsonValue::Number(t.mae));
  return JsonValue::Object().Add("tensors", std::move(tensors)).Add("total", std::move(total)).Dump() + "\n";
}

int Fail(const absl::Status& s, int code) {
  std::fprintf(stderr, "hyperc: error: %s\n", std::string(s.message()).c_str());
  return code;
}

}  // namespace hc::cli
