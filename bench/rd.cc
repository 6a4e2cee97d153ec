// hyperc-bench rd: the rate-distortion table of issue 6. For each model and each target bits per
// weight T, four ways of spending about T bits per weight, each a whole-model CompressModel run:
//
//   hc2      entropy-coded hc2 under the model-level rate plan (CompressOptions::target_bpw = T)
//   fixed    hc2 mode=fixed with the most code bits b in 2..4 such that b + 0.125 <= T
//   rtn      rtn, group 128, bits round(T - 0.25) (2/3/4/6 for 2.25/3.25/4.25/6.1)
//   hc1      the hc1 preset (llm, unet, mobilenet) whose bpw on the model is nearest to T
//
// Figures are ModelTotals: bpw counts every stored byte of the artifact (raw tensors included);
// SNR is the numel-weighted mean over the coded (non-raw) tensors; "dB from D(R)" is the
// numel-weighted mean of TensorStats::db_above_rd = 10 log10(MSE / (var 2^-2R)) over hc2's coded
// tensors (0 = on the Gaussian rate-distortion bound, lower is better). hc2's gain over rtn is
// SNR(hc2) - SNR(rtn) at the same target. Every distinct setting is compressed once per model
// (hc2 fixed 4 bits serves 4.25 and 6.1, each hc1 preset serves every target); artifacts go to a
// temporary folder that is removed afterwards.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench.h"
#include "core/base/json.h"
#include "core/codec/codec.h"
#include "core/pipeline/pipeline.h"

namespace hc::bench {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: hyperc-bench rd [--models A,B] [--targets 2.25,3.25,4.25,6.1] [--json]\n"
    "                       [--markdown FILE]\n"
    "\n"
    "  Rate-distortion table: for each model and target bits per weight T, hc2 entropy-coded\n"
    "  (--target-bpw T), hc2 fixed-rate (most bits b in 2..4 with b + 0.125 <= T), rtn group 128\n"
    "  (bits round(T - 0.25)) and the hc1 preset (llm, unet, mobilenet) nearest to T in bpw:\n"
    "  model bpw (every stored byte) and SNR (numel-weighted mean over coded tensors), hc2's\n"
    "  distance to D(R) and its SNR gain over rtn; then the mean over models per target.\n"
    "\n"
    "  --models LIST    comma-separated names in the shared models folder (NAME.safetensors or\n"
    "                   NAME/model.safetensors.index.json) or paths to .safetensors / shard\n"
    "                   index .json files (default: all five shared models)\n"
    "  --targets LIST   comma-separated bits per weight in [0.25, 32]\n"
    "                   (default 2.25,3.25,4.25,6.1)\n"
    "  --json           print the rows as JSON instead of the tables\n"
    "  --markdown FILE  also write the tables as a Markdown document to FILE\n";

constexpr const char* kDefaultModels[] = {"ppocrv4-rec-f32", "fmnist-cnn-f32", "faceres-f16",
                                          "movenet-thunder-f16", "sotu-bytelm-14m-f16"};
constexpr const char* kHc1Presets[] = {"llm", "unet", "mobilenet"};
constexpr int kRtnGroup = 128;

// The outcome of one compression run.
struct Cell {
  bool ok = false;
  std::string error;
  std::string setting;  // "bits 2", "preset llm", ...
  double bpw = 0;
  double snr_db = 0;
  double db_above_rd = 0;
  double seconds = 0;
};

struct Row {
  double target = 0;
  Cell hc2, fixed, rtn, hc1;
  std::optional<double> Gain() const {
    if (!hc2.ok || !rtn.ok) return std::nullopt;
    return hc2.snr_db - rtn.snr_db;
  }
};

struct ModelResult {
  std::string name;
  std::string path;
  uint64_t weights = 0;
  double seconds = 0;
  std::vector<Row> rows;
};

// A model argument: a name in the shared models folder, or a path.
std::string ResolveModel(const std::string& m) {
  if (m.find('/') != std::string::npos || absl::EndsWith(m, ".safetensors") ||
      absl::EndsWith(m, ".json")) {
    return m;
  }
  const std::string dir = SharedDir() + "/models/";
  std::error_code ec;
  const std::string index = dir + m + "/model.safetensors.index.json";
  if (!fs::exists(dir + m + ".safetensors", ec) && fs::exists(index, ec)) return index;
  return dir + m + ".safetensors";
}

std::string ModelName(const std::string& path) {
  fs::path p(path);
  if (absl::EndsWith(path, ".json")) return p.parent_path().filename().string();
  std::string name = p.filename().string();
  if (absl::EndsWith(name, ".safetensors")) name.resize(name.size() - 12);
  return name;
}

// Compresses one model under several settings into a temporary folder, once per setting.
class Runner {
 public:
  Runner(std::string input, std::string tmp) : input_(std::move(input)), tmp_(std::move(tmp)) {}

  Cell Run(const std::string& label, const CompressOptions& options, uint64_t* weights) {
    std::string key = absl::StrCat(options.codec, "|", options.target_bpw);
    for (const auto& [k, v] : options.codec_options.items()) absl::StrAppend(&key, "|", k, "=", v);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;

    const std::string output =
        absl::StrCat(tmp_, "/", ++runs_, absl::EndsWith(input_, ".json") ? "" : ".hyc.safetensors");
    std::fprintf(stderr, "  %-26s ", label.c_str());
    std::fflush(stderr);
    Cell cell;
    const double t0 = Now();
    absl::StatusOr<RunSummary> run = CompressModel(input_, output, options);
    cell.seconds = Now() - t0;
    if (run.ok()) {
      cell.ok = true;
      cell.bpw = run->totals.bits_per_weight;
      cell.snr_db = run->totals.snr_db;
      cell.db_above_rd = run->totals.db_above_rd;
      *weights = run->totals.numel;
      std::fprintf(stderr, "%7.3f bpw %7.2f dB  (%.1f s)\n", cell.bpw, cell.snr_db, cell.seconds);
    } else {
      cell.error = std::string(run.status().message());
      std::fprintf(stderr, "error: %s\n", cell.error.c_str());
    }
    std::error_code ec;
    fs::remove_all(output, ec);
    cache_[key] = cell;
    return cell;
  }

 private:
  std::string input_;
  std::string tmp_;
  int runs_ = 0;
  std::map<std::string, Cell> cache_;
};

CompressOptions BaseOptions(std::string codec) {
  CompressOptions o;
  o.codec = std::move(codec);
  o.threads = 0;
  o.sync = false;
  return o;
}

// The most fixed-rate code bits (2..4) with bits + 0.125 <= target; nullopt if none fits.
std::optional<int> FixedBits(double target) {
  for (int b = 4; b >= 2; --b) {
    if (b + 0.125 <= target + 1e-9) return b;
  }
  return std::nullopt;
}

int RtnBits(double target) {
  return static_cast<int>(std::clamp<long>(std::lround(target - 0.25), 2, 8));
}

absl::StatusOr<ModelResult> RunModel(const std::string& path, const std::vector<double>& targets,
                                     const std::string& tmp) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such model file"));
  }
  ModelResult m;
  m.path = path;
  m.name = ModelName(path);
  std::fprintf(stderr, "%s (%s)\n", m.name.c_str(), path.c_str());
  const double t0 = Now();
  Runner runner(path, tmp);

  // hc1 presets: compressed once, the nearest one picked per target.
  std::vector<Cell> presets;
  for (const char* preset : kHc1Presets) {
    CompressOptions o = BaseOptions("hc1");
    o.codec_options.Set("preset", preset);
    Cell c = runner.Run(absl::StrCat("hc1 preset ", preset), o, &m.weights);
    c.setting = preset;
    presets.push_back(c);
  }

  for (const double t : targets) {
    Row row;
    row.target = t;
    {
      CompressOptions o = BaseOptions("hc2");
      o.target_bpw = t;
      row.hc2 = runner.Run(absl::StrCat("hc2 ec target ", t), o, &m.weights);
      row.hc2.setting = absl::StrCat("target ", t);
    }
    if (const std::optional<int> bits = FixedBits(t)) {
      CompressOptions o = BaseOptions("hc2");
      o.codec_options.Set("mode", "fixed");
      o.codec_options.Set("bits", absl::StrCat(*bits));
      row.fixed = runner.Run(absl::StrCat("hc2 fixed bits ", *bits), o, &m.weights);
      row.fixed.setting = absl::StrCat(*bits);
    } else {
      row.fixed.error = "no fixed-rate bits fit";
    }
    {
      const int bits = RtnBits(t);
      CompressOptions o = BaseOptions("rtn");
      o.codec_options.Set("bits", absl::StrCat(bits));
      o.codec_options.Set("group_size", absl::StrCat(kRtnGroup));
      row.rtn = runner.Run(absl::StrCat("rtn bits ", bits, " g", kRtnGroup), o, &m.weights);
      row.rtn.setting = absl::StrCat(bits);
    }
    const Cell* nearest = nullptr;
    for (const Cell& c : presets) {
      if (c.ok && (nearest == nullptr || std::abs(c.bpw - t) < std::abs(nearest->bpw - t))) {
        nearest = &c;
      }
    }
    if (nearest != nullptr) {
      row.hc1 = *nearest;
    } else {
      row.hc1.error = presets.empty() ? "no preset" : presets[0].error;
    }
    m.rows.push_back(row);
  }
  m.seconds = Now() - t0;
  return m;
}

// ---- Output ----

std::string Num(double v, int decimals) { return absl::StrFormat("%.*f", decimals, v); }
std::string Signed(double v, int decimals) { return absl::StrFormat("%+.*f", decimals, v); }
std::string Target(double t) { return absl::StrFormat("%g", t); }

struct Summary {
  double target = 0;
  int models = 0;  // models with both hc2 and rtn measured
  double mean_gain = 0;
  int rd_models = 0;
  double mean_db_from_rd = 0;
};

std::vector<Summary> Summarize(const std::vector<ModelResult>& models,
                               const std::vector<double>& targets) {
  std::vector<Summary> out;
  for (size_t i = 0; i < targets.size(); ++i) {
    Summary s;
    s.target = targets[i];
    double gain = 0, rd = 0;
    for (const ModelResult& m : models) {
      const Row& r = m.rows[i];
      if (auto g = r.Gain()) {
        gain += *g;
        ++s.models;
      }
      if (r.hc2.ok) {
        rd += r.hc2.db_above_rd;
        ++s.rd_models;
      }
    }
    if (s.models > 0) s.mean_gain = gain / s.models;
    if (s.rd_models > 0) s.mean_db_from_rd = rd / s.rd_models;
    out.push_back(s);
  }
  return out;
}

// A table as rows of cells; rendered as aligned text or as Markdown.
using Table = std::vector<std::vector<std::string>>;

Table ModelTable(const ModelResult& m) {
  Table t;
  t.push_back({"target", "hc2 bpw", "hc2 SNR dB", "hc2 dB from D(R)", "fixed bits", "fixed bpw",
               "fixed SNR dB", "rtn bits", "rtn bpw", "rtn SNR dB", "hc1 preset", "hc1 bpw",
               "hc1 SNR dB", "hc2 gain over rtn dB"});
  for (const Row& r : m.rows) {
    std::vector<std::string> line = {Target(r.target)};
    auto add = [&](const Cell& c, bool with_setting, bool with_rd) {
      if (with_setting) line.push_back(c.setting.empty() ? "-" : c.setting);
      line.push_back(c.ok ? Num(c.bpw, 3) : "error");
      line.push_back(c.ok ? Num(c.snr_db, 2) : "-");
      if (with_rd) line.push_back(c.ok ? Num(c.db_above_rd, 2) : "-");
    };
    add(r.hc2, false, true);
    add(r.fixed, true, false);
    add(r.rtn, true, false);
    add(r.hc1, true, false);
    const auto g = r.Gain();
    line.push_back(g ? Signed(*g, 2) : "-");
    t.push_back(line);
  }
  return t;
}

Table SummaryTable(const std::vector<Summary>& summary) {
  Table t;
  t.push_back({"target", "models", "mean hc2 gain over rtn dB", "mean hc2 dB from D(R)"});
  for (const Summary& s : summary) {
    t.push_back({Target(s.target), absl::StrCat(s.models),
                 s.models > 0 ? Signed(s.mean_gain, 2) : "-",
                 s.rd_models > 0 ? Num(s.mean_db_from_rd, 2) : "-"});
  }
  return t;
}

std::string TextTable(const Table& t) {
  std::vector<size_t> width(t[0].size(), 0);
  for (const auto& row : t) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  for (const auto& row : t) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      // First column left-aligned, the rest right-aligned.
      line += c == 0 ? absl::StrFormat("%-*s", static_cast<int>(width[c]), row[c])
                     : absl::StrFormat("  %*s", static_cast<int>(width[c]), row[c]);
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string MarkdownTable(const Table& t) {
  std::string out;
  for (size_t r = 0; r < t.size(); ++r) {
    absl::StrAppend(&out, "| ", absl::StrJoin(t[r], " | "), " |\n");
    if (r == 0) {
      std::vector<std::string> sep(t[0].size(), "---:");
      sep[0] = "---";
      absl::StrAppend(&out, "|", absl::StrJoin(sep, "|"), "|\n");
    }
  }
  return out;
}

std::string Errors(const std::vector<ModelResult>& models) {
  std::string out;
  for (const ModelResult& m : models) {
    for (const Row& r : m.rows) {
      for (const auto& [name, c] : {std::pair<const char*, const Cell*>{"hc2", &r.hc2},
                                    {"hc2 fixed", &r.fixed},
                                    {"rtn", &r.rtn},
                                    {"hc1", &r.hc1}}) {
        if (!c->ok) {
          absl::StrAppend(&out, m.name, " target ", Target(r.target), " ", name, ": ", c->error,
                          "\n");
        }
      }
    }
  }
  return out;
}

// 14358912 -> "14,358,912".
std::string Grouped(uint64_t v) {
  std::string digits = absl::StrCat(v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string ModelHeading(const ModelResult& m) {
  return absl::StrFormat("%s weights, %s, %.0f s", Grouped(m.weights),
                         m.path.substr(m.path.find_last_of('/') + 1), m.seconds);
}

constexpr const char* kNotes[] = {
    "bpw: every stored byte of the artifact over every weight (raw tensors included).",
    "SNR: numel-weighted mean over the coded (non-raw) tensors.",
    "hc2 dB from D(R): numel-weighted mean over hc2's coded tensors of 10 log10(MSE / D(R)), "
    "D(R) = var 2^(-2R) at the tensor's own bpw R (0 = on the Gaussian bound, lower is better).",
    "hc2: entropy-coded, --target-bpw T. fixed: hc2 mode=fixed, the most bits b in 2..4 with "
    "b + 0.125 <= T. rtn: group 128, bits round(T - 0.25).",
    "hc1: the preset among llm, unet, mobilenet whose bpw on the model is nearest to T (one preset "
    "may serve several targets).",
    "hc2 gain over rtn: SNR(hc2) - SNR(rtn) at the same target."};

// `text` broken into lines of at most `width` characters, each starting with `indent`.
std::string Wrap(absl::string_view text, size_t width, absl::string_view first,
                 absl::string_view indent) {
  std::string out, line(first);
  bool empty = true;
  for (absl::string_view w : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!empty && line.size() + 1 + w.size() > width) {
      absl::StrAppend(&out, line, "\n");
      line = std::string(indent);
      empty = true;
    }
    absl::StrAppend(&line, empty ? "" : " ", w);
    empty = false;
  }
  absl::StrAppend(&out, line, "\n");
  return out;
}

// The command line that ran us, from /proc/self/cmdline, with HC_SHARED_DIR if set.
std::string CommandLine(const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string a;
  while (std::getline(in, a, '\0')) argv.push_back(a);
  if (argv.size() < 2 + args.size()) {
    argv = {"hyperc-bench", "rd"};
    argv.insert(argv.end(), args.begin(), args.end());
  }
  auto quote = [](const std::string& s) {
    if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-_./,=:+@") == std::string::npos) {
      return s;
    }
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::vector<std::string> words;
  if (const char* d = std::getenv("HC_SHARED_DIR")) words.push_back("HC_SHARED_DIR=" + quote(d));
  for (const std::string& w : argv) words.push_back(quote(w));
  return absl::StrJoin(words, " ");
}

std::string DateHostLine(double seconds) {
  char date[64] = "?";
  const std::time_t now = std::time(nullptr);
  std::tm tm;
  if (gmtime_r(&now, &tm) != nullptr) std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
  char host[256] = "?";
  if (gethostname(host, sizeof(host)) != 0) std::snprintf(host, sizeof(host), "?");
  host[sizeof(host) - 1] = '\0';
  return absl::StrFormat("%s on %s (%u cores, threads 0 = all), %.0f s in all", date, host,
                         std::thread::hardware_concurrency(), seconds);
}

std::string Markdown(const std::vector<ModelResult>& models, const std::vector<Summary>& summary,
                     const std::string& command, double seconds) {
  std::string out = "# Rate-distortion: hc2 against rtn, hc2 fixed-rate and hc1\n\n";
  absl::StrAppend(&out,
                  "Generated by `hyperc-bench rd` (bench/rd.cc); do not edit by hand. Command:\n\n",
                  "```\n", command, "\n```\n\n", DateHostLine(seconds), ".\n\n");
  for (const char* note : kNotes) absl::StrAppend(&out, "- ", note, "\n");
  absl::StrAppend(&out, "\n");
  absl::StrAppend(&out, "## Summary (mean over models)\n\n", MarkdownTable(SummaryTable(summary)),
                  "\n");
  for (const ModelResult& m : models) {
    absl::StrAppend(&out, "## ", m.name, "\n\n", ModelHeading(m), "\n\n",
                    MarkdownTable(ModelTable(m)), "\n");
  }
  const std::string errors = Errors(models);
  if (!errors.empty()) absl::StrAppend(&out, "## Errors\n\n```\n", errors, "```\n");
  return out;
}

JsonValue CellJson(const ModelResult& m, const Row& r, const char* method, const Cell& c,
                   bool with_rd) {
  JsonValue o = JsonValue::Object();
  o.Add("model", JsonValue::String(m.name))
      .Add("weights", JsonValue::Int(static_cast<int64_t>(m.weights)))
      .Add("target_bpw", JsonValue::Number(r.target))
      .Add("method", JsonValue::String(method))
      .Add("setting", JsonValue::String(c.setting))
      .Add("ok", JsonValue::Bool(c.ok));
  if (c.ok) {
    o.Add("bpw", JsonValue::Number(c.bpw)).Add("snr_db", JsonValue::Number(c.snr_db));
    if (with_rd) o.Add("db_from_rd", JsonValue::Number(c.db_above_rd));
    o.Add("seconds", JsonValue::Number(c.seconds));
  } else {
    o.Add("error", JsonValue::String(c.error));
  }
  return o;
}

JsonValue Json(const std::vector<ModelResult>& models, const std::vector<Summary>& summary) {
  JsonValue rows = JsonValue::Array();
  for (const ModelResult& m : models) {
    for (const Row& r : m.rows) {
      JsonValue hc2 = CellJson(m, r, "hc2", r.hc2, true);
      if (auto g = r.Gain()) hc2.Add("gain_over_rtn_db", JsonValue::Number(*g));
      rows.Push(std::move(hc2));
      rows.Push(CellJson(m, r, "hc2-fixed", r.fixed, false));
      rows.Push(CellJson(m, r, "rtn-g128", r.rtn, false));
      rows.Push(CellJson(m, r, "hc1-nearest", r.hc1, false));
    }
  }
  JsonValue sums = JsonValue::Array();
  for (const Summary& s : summary) {
    JsonValue o = JsonValue::Object();
    o.Add("target_bpw", JsonValue::Number(s.target)).Add("models", JsonValue::Int(s.models));
    if (s.models > 0) o.Add("mean_gain_over_rtn_db", JsonValue::Number(s.mean_gain));
    if (s.rd_models > 0) o.Add("mean_db_from_rd", JsonValue::Number(s.mean_db_from_rd));
    sums.Push(std::move(o));
  }
  JsonValue doc = JsonValue::Object();
  doc.Add("rows", std::move(rows)).Add("summary", std::move(sums));
  return doc;
}

// Removes a temporary folder when it goes out of scope.
struct TempDir {
  std::string path;
  ~TempDir() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

int RunRd(const std::vector<std::string>& args) {
  std::vector<std::string> model_args(std::begin(kDefaultModels), std::end(kDefaultModels));
  std::vector<double> targets = {2.25, 3.25, 4.25, 6.1};
  bool json = false;
  std::string markdown;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::string key, value;
    auto valued = [](const std::string& k) {
      return k == "--models" || k == "--targets" || k == "--markdown";
    };
    if (!SplitFlag(args, i, valued, &key, &value)) {
      return Fail(absl::StrCat(a, " needs a value"), 2);
    }
    if (key == "--models") {
      model_args = absl::StrSplit(value, ',', absl::SkipEmpty());
      if (model_args.empty()) return Fail("--models needs at least one model", 2);
    } else if (key == "--targets") {
      targets.clear();
      for (absl::string_view t : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        double v = 0;
        if (!absl::SimpleAtod(t, &v) || !(v >= 0.25 && v <= 32)) {
          return Fail(absl::StrCat("--targets: each must be a number in [0.25, 32], got \"", t,
                                   "\""),
                      2);
        }
        targets.push_back(v);
      }
      if (targets.empty()) return Fail("--targets needs at least one value", 2);
    } else if (key == "--json" && a == "--json") {
      json = true;
    } else if (key == "--markdown") {
      if (value.empty()) return Fail("--markdown needs a file name", 2);
      markdown = value;
    } else {
      std::fputs(kUsage, stderr);
      return Fail(absl::StrCat("unknown argument \"", a, "\""), 2);
    }
  }

  std::error_code ec;
  std::string tmpl = (fs::temp_directory_path(ec) / "hyperc-rd-XXXXXX").string();
  if (ec) tmpl = "/tmp/hyperc-rd-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Fail(absl::StrCat("cannot create a temporary folder ", tmpl));
  }
  TempDir tmp{tmpl};

  const double t0 = Now();
  std::vector<ModelResult> models;
  for (const std::string& m : model_args) {
    auto r = RunModel(ResolveModel(m), targets, tmp.path);
    if (!r.ok()) return Fail(r.status());
    models.push_back(std::move(*r));
  }
  const double seconds = Now() - t0;
  const std::vector<Summary> summary = Summarize(models, targets);
  const std::string errors = Errors(models);

  if (json) {
    std::printf("%s\n", Json(models, summary).Dump().c_str());
  } else {
    for (const ModelResult& m : models) {
      std::printf("%s: %s\n%s\n", m.name.c_str(), ModelHeading(m).c_str(),
                  TextTable(ModelTable(m)).c_str());
    }
    std::printf("mean over models:\n");
    for (const Summary& s : summary) {
      std::printf("  target %-5s hc2 gain over rtn %s dB, hc2 %s dB from D(R) (%d of %zu models)\n",
                  Target(s.target).c_str(), s.models > 0 ? Signed(s.mean_gain, 2).c_str() : "-",
                  s.rd_models > 0 ? Num(s.mean_db_from_rd, 2).c_str() : "-", s.models,
                  models.size());
    }
    std::printf("\n");
    for (const char* note : kNotes) std::fputs(Wrap(note, 100, "- ", "  ").c_str(), stdout);
    if (!errors.empty()) std::printf("\nerrors:\n%s", errors.c_str());
  }

  if (!markdown.empty()) {
    std::ofstream out(markdown, std::ios::binary | std::ios::trunc);
    out << Markdown(models, summary, CommandLine(args), seconds);
    out.close();
    if (!out) return Fail(absl::StrCat(markdown, ": cannot write"));
  }
  return errors.empty() ? 0 : 1;
}

}  // namespace hc::bench
