// Helpers shared by the hyperc CLI subcommands: argument scanning, progress display, reports.
#ifndef HC_CLIENT_CLI_UTIL_H_
#define HC_CLIENT_CLI_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/pipeline/pipeline.h"

namespace hc::cli {

/// A simple forward scanner over argv: flags (--name value, --name=value, -o value) and
/// positionals.
class Args {
 public:
  Args(int argc, char** argv, int first);
  bool done() const { return i_ >= args_.size(); }
  /// The next raw argument (advances).
  std::string Next() { return args_[i_++]; }
  const std::string& Peek() const { return args_[i_]; }
  /// If the current argument is `name` (or `name=...`), consumes it and its value.
  /// Errors: InvalidArgument when the value is missing.
  absl::StatusOr<std::optional<std::string>> Value(absl::string_view name);
  /// If the current argument is one of `names` (with a value), stores the value in `*out` and
  /// returns true. Errors: InvalidArgument when the value is missing.
  absl::StatusOr<bool> Take(std::initializer_list<absl::string_view> names, std::string* out);
  /// If the current argument is the switch `name`, consumes it.
  bool Switch(absl::string_view name);

 private:
  std::vector<std::string> args_;
  size_t i_ = 0;
};

/// A progress display on stderr: a redrawn bar on a terminal, plain lines (at most one per
/// second, plus the last) otherwise. Silent when `enabled` is false.
class ProgressPrinter {
 public:
  ProgressPrinter(std::string verb, bool enabled);
  void operator()(const Progress& p);
  /// Ends the bar line.
  void Finish();

 private:
  std::string verb_;
  bool enabled_;
  bool tty_;
  double last_print_ = -1;
  bool drawn_ = false;
};

/// The per-tensor table (`hyperc inspect`).
std::string TensorTable(const RunSummary& s);
/// The per-codec summary table with totals (end of `hyperc compress`).
std::string SummaryTable(const RunSummary& s);
/// The JSON report: {"tensors":[...], "total":{...}}.
std::string ReportJson(const RunSummary& s);

/// Prints "hyperc: error: <message>" on stderr and returns `code`.
int Fail(const absl::Status& s, int code = 1);

}  // namespace hc::cli

#endif  // HC_CLIENT_CLI_UTIL_H_
