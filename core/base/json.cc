#include "core/base/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hc {

JsonValue JsonValue::Bool(bool b) {
  JsonValue v;
  v.kind_ = Kind::kBool;
  v.bool_ = b;
  return v;
}
JsonValue JsonValue::NumberText(std::string text) {
  JsonValue v;
  v.kind_ = Kind::kNumber;
  v.str_ = std::move(text);
  return v;
}
JsonValue JsonValue::Number(double d) {
  if (!std::isfinite(d)) return Null();
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d);
  return NumberText(std::string(buf, res.ptr));
}
JsonValue JsonValue::Int(int64_t i) { return NumberText(std::to_string(i)); }
JsonValue JsonValue::String(std::string s) {
  JsonValue v;
  v.kind_ = Kind::kString;
  v.str_ = std::move(s);
  return v;
}
JsonValue JsonValue::Array(std::vector<JsonValue> items) {
  JsonValue v;
  v.kind_ = Kind::kArray;
  v.items_ = std::move(items);
  return v;
}
JsonValue JsonValue::Object(std::vector<Member> members) {
  JsonValue v;
  v.kind_ = Kind::kObject;
  v.members_ = std::move(members);
  return v;
}

double JsonValue::number() const {
  // strtod, unlike from_chars, gives +-HUGE_VAL (infinity) for out-of-range magnitudes.
  return std::strtod(str_.c_str(), nullptr);
}

std::optional<uint64_t> JsonValue::as_uint64() const {
  if (kind_ != Kind::kNumber || str_.empty() || str_[0] == '-') return std::nullopt;
  uint64_t v = 0;
  auto res = std::from_chars(str_.data(), str_.data() + str_.size(), v);
  if (res.ec != std::errc() || res.ptr != str_.data() + str_.size()) return std::nullopt;
  return v;
}

std::optional<int64_t> JsonValue::as_int64() const {
  if (kind_ != Kind::kNumber) return std::nullopt;
  int64_t v = 0;
  auto res = std::from_chars(str_.data(), str_.data() + str_.size(), v);
  if (res.ec != std::errc() || res.ptr != str_.data() + str_.size()) return std::nullopt;
  return v;
}

const JsonValue* JsonValue::Find(absl::string_view key) const {
  for (const auto& m : members_) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

JsonValue& JsonValue::Add(std::string key, JsonValue value) {
  members_.emplace_back(std::move(key), std::move(value));
  return *this;
}
JsonValue& JsonValue::Push(JsonValue value) {
  items_.push_back(std::move(value));
  return *this;
}

bool IsValidUtf8(absl::string_view s) {
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len;
    uint32_t cp;
    if (b0 < 0x80) { ++i; continue; }
    if ((b0 & 0xe0) == 0xc0) { len = 2; cp = b0 & 0x1f; }
    else if ((b0 & 0xf0) == 0xe0) { len = 3; cp = b0 & 0x0f; }
    else if ((b0 & 0xf8) == 0xf0) { len = 4; cp = b0 & 0x07; }
    else return false;
    if (i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3f);
    }
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

namespace {

void DumpTo(const JsonValue& v, std::string* out) {
  switch (v.kind()) {
    case JsonValue::Kind::kNull: out->append("null"); return;
    case JsonValue::Kind::kBool: out->append(v.bool_value() ? "true" : "false"); return;
    case JsonValue::Kind::kNumber: out->append(v.string_value()); return;
    case JsonValue::Kind::kString: AppendJsonString(v.string_value(), out); return;
    case JsonValue::Kind::kArray: {
      out->push_back('[');
      bool first = true;
      for (const auto& item : v.items()) {
        if (!first) out->push_back(',');
        first = false;
        DumpTo(item, out);
      }
      out->push_back(']');
      return;
    }
    case JsonValue::Kind::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, value] : v.members()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(key, out);
        out->push_back(':');
        DumpTo(value, out);
      }
      out->push_back('}');
      return;
    }
  }
}

// Recursive-descent parser over a string_view; `pos_` is the byte offset used in messages.
class Parser {
 public:
  Parser(absl::string_view text, const JsonParseOptions& options) : s_(text), opt_(options) {}

  absl::StatusOr<JsonValue> ParseDocument() {
    JsonValue v;
    if (!ParseValue(0, &v)) return error_;
    SkipWs();
    if (pos_ != s_.size()) {
      Fail("unexpected data after the JSON value");
      return error_;
    }
    return v;
  }

 private:
  bool Fail(absl::string_view what) {
    error_ = absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", pos_, ": ", what));
    return false;
  }
  void SkipWs() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Literal(absl::string_view lit) {
    if (s_.substr(pos_, lit.size()) != lit) return Fail("invalid literal");
    pos_ += lit.size();
    return true;
  }

  bool ParseValue(int depth, JsonValue* out) {
    SkipWs();
    if (pos_ >= s_.size()) return Fail("unexpected end of input");
    const char c = s_[pos_];
    switch (c) {
      case '{': return ParseObject(depth + 1, out);
      case '[': return ParseArray(depth + 1, out);
      case '"': {
        std::string str;
        if (!ParseString(&str)) return false;
        *out = JsonValue::String(std::move(str));
        return true;
      }
      case 't': *out = JsonValue::Bool(true); return Literal("true");
      case 'f': *out = JsonValue::Bool(false); return Literal("false");
      case 'n': *out = JsonValue::Null(); return Literal("null");
      default: return ParseNumber(out);
    }
  }

  bool ParseNumber(JsonValue* out) {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t d0 = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - d0;
    };
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      return Fail("expected a value");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) return Fail("expected digits after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) return Fail("expected digits in exponent");
    }
    *out = JsonValue::NumberText(std::string(s_.substr(start, pos_ - start)));
    return true;
  }

  bool Hex4(uint32_t* v) {
    if (pos_ + 4 > s_.size()) return Fail("truncated \\u escape");
    *v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      *v <<= 4;
      if (h >= '0' && h <= '9') *v |= h - '0';
      else if (h >= 'a' && h <= 'f') *v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') *v |= h - 'A' + 10;
      else return Fail("bad hex digit in \\u escape");
    }
    return true;
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  // Validates one UTF-8 sequence starting at pos_ and copies it.
  bool CopyUtf8(std::string* out) {
    const auto b0 = static_cast<unsigned char>(s_[pos_]);
    int len;
    uint32_t cp;
    if (b0 < 0x80) { len = 1; cp = b0; }
    else if ((b0 & 0xe0) == 0xc0) { len = 2; cp = b0 & 0x1f; }
    else if ((b0 & 0xf0) == 0xe0) { len = 3; cp = b0 & 0x0f; }
    else if ((b0 & 0xf8) == 0xf0) { len = 4; cp = b0 & 0x07; }
    else return Fail("invalid UTF-8 in string");
    if (pos_ + len > s_.size()) return Fail("truncated UTF-8 sequence");
    for (int i = 1; i < len; ++i) {
      const auto b = static_cast<unsigned char>(s_[pos_ + i]);
      if ((b & 0xc0) != 0x80) return Fail("invalid UTF-8 in string");
      cp = (cp << 6) | (b & 0x3f);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return Fail("invalid UTF-8 in string");
    }
    out->append(s_.data() + pos_, len);
    pos_ += len;
    return true;
  }

  bool ParseString(std::string* out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= s_.size()) return Fail("unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control character in string");
      if (c != '\\') {
        if (!CopyUtf8(out)) return false;
        continue;
      }
      if (++pos_ >= s_.size()) return Fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t lo;
            if (s_.substr(pos_, 2) != "\\u") return Fail("unpaired surrogate");
            pos_ += 2;
            if (!Hex4(&lo)) return false;
            if (lo < 0xdc00 || lo > 0xdfff) return Fail("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return Fail("unpaired surrogate");
          }
          AppendUtf8(cp, out);
          break;
        }
        default: return Fail("invalid escape");
      }
    }
  }

  bool ParseArray(int depth, JsonValue* out) {
    if (depth > opt_.max_depth) return Fail("nesting too deep");
    ++pos_;
    std::vector<JsonValue> items;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      *out = JsonValue::Array(std::move(items));
      return true;
    }
    while (true) {
      JsonValue v;
      if (!ParseValue(depth, &v)) return false;
      items.push_back(std::move(v));
      SkipWs();
      if (pos_ >= s_.size()) return Fail("unterminated array");
      if (s_[pos_] == ',') { ++pos_; continue; }
      if (s_[pos_] == ']') { ++pos_; break; }
      return Fail("expected ',' or ']'");
    }
    *out = JsonValue::Array(std::move(items));
    return true;
  }

  bool ParseObject(int depth, JsonValue* out) {
    if (depth > opt_.max_depth) return Fail("nesting too deep");
    ++pos_;
    std::vector<JsonValue::Member> members;
    std::unordered_set<std::string> seen;
    SkipWs();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      *out = JsonValue::Object(std::move(members));
      return true;
    }
    while (true) {
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Fail("expected a string key");
      const size_t key_pos = pos_;
      std::string key;
      if (!ParseString(&key)) return false;
      if (opt_.reject_duplicate_keys && !seen.insert(key).second) {
        pos_ = key_pos;
        return Fail(absl::StrCat("duplicate key \"", key, "\""));
      }
      SkipWs();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
      ++pos_;
      JsonValue v;
      if (!ParseValue(depth, &v)) return false;
      members.emplace_back(std::move(key), std::move(v));
      SkipWs();
      if (pos_ >= s_.size()) return Fail("unterminated object");
      if (s_[pos_] == ',') { ++pos_; continue; }
      if (s_[pos_] == '}') { ++pos_; break; }
      return Fail("expected ',' or '}'");
    }
    *out = JsonValue::Object(std::move(members));
    return true;
  }

  absl::string_view s_;
  const JsonParseOptions& opt_;
  size_t pos_ = 0;
  absl::Status error_;
};

}  // namespace

std::string JsonValue::Dump() const {
  std::string out;
  DumpTo(*this, &out);
  return out;
}

absl::StatusOr<JsonValue> ParseJson(absl::string_view text, const JsonParseOptions& options) {
  return Parser(text, options).ParseDocument();
}

}  // namespace hc
