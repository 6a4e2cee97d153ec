// A small strict JSON reader and writer for safetensors headers, artifact metadata and reports.
//
// The reader is strict where safetensors needs it: duplicate object keys are an error, object key
// order is preserved, numbers keep their text so integers up to 2^64-1 parse exactly, nesting is
// bounded, and anything after the top-level value other than whitespace is an error.
#ifndef HC_CORE_BASE_JSON_H_
#define HC_CORE_BASE_JSON_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace hc {

/// A parsed JSON value. Objects keep their members in document order.
class JsonValue {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  using Member = std::pair<std::string, JsonValue>;

  JsonValue() = default;
  static JsonValue Null() { return JsonValue(); }
  static JsonValue Bool(bool b);
  /// A number from its JSON text (already validated by the caller or the parser).
  static JsonValue NumberText(std::string text);
  static JsonValue Number(double v);
  static JsonValue Int(int64_t v);
  static JsonValue String(std::string s);
  static JsonValue Array(std::vector<JsonValue> items = {});
  static JsonValue Object(std::vector<Member> members = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_number() const { return kind_ == Kind::kNumber; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_array() const { return kind_ == Kind::kArray; }
  bool is_object() const { return kind_ == Kind::kObject; }

  bool bool_value() const { return bool_; }
  /// The number as a double (nearest).
  double number() const;
  /// The number as an exact non-negative integer, or nullopt if it is negative, fractional,
  /// has an exponent, or exceeds 2^64-1.
  std::optional<uint64_t> as_uint64() const;
  /// The number as an exact integer, or nullopt.
  std::optional<int64_t> as_int64() const;
  const std::string& string_value() const { return str_; }  // string text or number text
  const std::vector<JsonValue>& items() const { return items_; }
  std::vector<JsonValue>& mutable_items() { return items_; }
  const std::vector<Member>& members() const { return members_; }
  /// Looks up an object member; nullptr if absent (or not an object).
  const JsonValue* Find(absl::string_view key) const;

  /// Appends a member to an object (no duplicate check) and returns *this for chaining.
  JsonValue& Add(std::string key, JsonValue value);
  /// Appends an item to an array.
  JsonValue& Push(JsonValue value);

  /// Compact serialisation, members in stored order. Doubles use the shortest text that
  /// round-trips; non-finite doubles are written as null.
  std::string Dump() const;

 private:
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  std::string str_;
  std::vector<JsonValue> items_;
  std::vector<Member> members_;
};

/// Options for ParseJson.
struct JsonParseOptions {
  /// Maximum nesting of arrays/objects. Default: 64.
  int max_depth = 64;
  /// Reject an object with two equal keys. Default: true.
  bool reject_duplicate_keys = true;
};

/// Parses `text` as one JSON value. Errors are InvalidArgument with the byte offset and the rule
/// broken (e.g. "duplicate key \"a\" at byte 17").
absl::StatusOr<JsonValue> ParseJson(absl::string_view text, const JsonParseOptions& options = {});

/// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
bool IsValidUtf8(absl::string_view s);

/// Appends `s` to `out` as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void AppendJsonString(absl::string_view s, std::string* out);

}  // namespace hc

#endif  // HC_CORE_BASE_JSON_H_
