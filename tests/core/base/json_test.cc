#include "core/base/json.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<JsonValue> Parse(absl::string_view s) { return ParseJson(s); }

TEST(JsonParse, Scalars) {
  HC_ASSERT_OK_AND_ASSIGN(JsonValue n, Parse("null"));
  EXPECT_TRUE(n.is_null());
  HC_ASSERT_OK_AND_ASSIGN(JsonValue t, Parse(" true "));
  ASSERT_TRUE(t.is_bool());
  EXPECT_TRUE(t.bool_value());
  HC_ASSERT_OK_AND_ASSIGN(JsonValue f, Parse("\n\tfalse\r\n"));
  ASSERT_TRUE(f.is_bool());
  EXPECT_FALSE(f.bool_value());
  HC_ASSERT_OK_AND_ASSIGN(JsonValue s, Parse("\"hi\""));
  ASSERT_TRUE(s.is_string());
  EXPECT_EQ(s.string_value(), "hi");
  HC_ASSERT_OK_AND_ASSIGN(JsonValue num, Parse("-12.5e2"));
  ASSERT_TRUE(num.is_number());
  EXPECT_EQ(num.number(), -1250.0);
  EXPECT_EQ(num.string_value(), "-12.5e2");  // the text is kept
}

TEST(JsonParse, NestedDocumentKeepsMemberOrder) {
  HC_ASSERT_OK_AND_ASSIGN(
      JsonValue v, Parse(R"({"z": 1, "a": [1, 2, {"b": null}], "m": {"x": "y"}, "e": [], "o": {}})"));
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.members().size(), 5u);
  EXPECT_EQ(v.members()[0].first, "z");
  EXPECT_EQ(v.members()[1].first, "a");
  EXPECT_EQ(v.members()[2].first, "m");
  EXPECT_EQ(v.members()[3].first, "e");
  EXPECT_EQ(v.members()[4].first, "o");
  const JsonValue* a = v.Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->is_array());
  ASSERT_EQ(a->items().size(), 3u);
  EXPECT_EQ(a->items()[1].as_uint64(), 2u);
  ASSERT_TRUE(a->items()[2].is_object());
  ASSERT_NE(a->items()[2].Find("b"), nullptr);
  EXPECT_TRUE(a->items()[2].Find("b")->is_null());
  EXPECT_EQ(v.Find("m")->Find("x")->string_value(), "y");
  EXPECT_TRUE(v.Find("e")->is_array());
  EXPECT_TRUE(v.Find("e")->items().empty());
  EXPECT_TRUE(v.Find("o")->is_object());
  EXPECT_EQ(v.Find("missing"), nullptr);
  // Find on a non-object is nullptr.
  EXPECT_EQ(a->Find("a"), nullptr);
}

TEST(JsonParse, Uint64MaxIsExact) {
  HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse("18446744073709551615"));
  ASSERT_TRUE(v.as_uint64().has_value());
  EXPECT_EQ(*v.as_uint64(), std::numeric_limits<uint64_t>::max());
  EXPECT_FALSE(v.as_int64().has_value());
  // 2^64 no longer fits.
  HC_ASSERT_OK_AND_ASSIGN(JsonValue over, Parse("18446744073709551616"));
  EXPECT_FALSE(over.as_uint64().has_value());
  // 2^53 + 1 is not representable as a double but is exact as an integer.
  HC_ASSERT_OK_AND_ASSIGN(JsonValue big, Parse("9007199254740993"));
  EXPECT_EQ(*big.as_uint64(), 9007199254740993ull);
  EXPECT_EQ(*big.as_int64(), 9007199254740993ll);
  HC_ASSERT_OK_AND_ASSIGN(JsonValue i64max, Parse("9223372036854775807"));
  EXPECT_EQ(*i64max.as_int64(), std::numeric_limits<int64_t>::max());
  HC_ASSERT_OK_AND_ASSIGN(JsonValue i64min, Parse("-9223372036854775808"));
  EXPECT_EQ(*i64min.as_int64(), std::numeric_limits<int64_t>::min());
  EXPECT_FALSE(i64min.as_uint64().has_value());
  HC_ASSERT_OK_AND_ASSIGN(JsonValue below, Parse("-9223372036854775809"));
  EXPECT_FALSE(below.as_int64().has_value());
}

TEST(JsonParse, IntegerAccessorsRejectNonIntegers) {
  for (const char* text : {"1.0", "1e3", "1E3", "0.5", "-1", "-0.0", "2e0"}) {
    HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse(text));
    EXPECT_FALSE(v.as_uint64().has_value()) << text;
  }
  for (const char* text : {"1.0", "1e3", "0.5", "-1.5"}) {
    HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse(text));
    EXPECT_FALSE(v.as_int64().has_value()) << text;
  }
  HC_ASSERT_OK_AND_ASSIGN(JsonValue zero, Parse("0"));
  EXPECT_EQ(zero.as_uint64(), 0u);
  HC_ASSERT_OK_AND_ASSIGN(JsonValue neg, Parse("-7"));
  EXPECT_EQ(neg.as_int64(), -7);
  // Non-numbers.
  EXPECT_FALSE(JsonValue::String("5").as_uint64().has_value());
  EXPECT_FALSE(JsonValue::String("5").as_int64().has_value());
  EXPECT_FALSE(JsonValue::Bool(true).as_uint64().has_value());
}

TEST(JsonParse, NumberGrammar) {
  for (const char* ok : {"0", "-0", "1", "123", "0.0", "1.5", "-1.5e-3", "1E+2", "1e-2", "0e0"}) {
    EXPECT_THAT(Parse(ok), IsOk()) << ok;
  }
  for (const char* bad : {"01", "-", "+1", ".5", "1.", "1e", "1e+", "--1", "0x10", "1.e3", "-.5",
                          "NaN", "Infinity", "-Infinity"}) {
    EXPECT_THAT(Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid JSON")))
        << bad;
  }
}

TEST(JsonParse, DoubleValues) {
  HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse("0.1"));
  EXPECT_EQ(v.number(), 0.1);
  HC_ASSERT_OK_AND_ASSIGN(JsonValue w, Parse("-2.5E-1"));
  EXPECT_EQ(w.number(), -0.25);
  HC_ASSERT_OK_AND_ASSIGN(JsonValue big, Parse("18446744073709551615"));
  EXPECT_EQ(big.number(), 18446744073709551615.0);
}

TEST(JsonParse, OutOfRangeDoubleIsNearest) {
  // number() promises "the number as a double (nearest)": 1e400 is nearest to infinity
  // (or at least the largest double), not 0.
  HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse("1e400"));
  EXPECT_GE(v.number(), std::numeric_limits<double>::max())
      << "number() of 1e400 returned " << v.number();
  HC_ASSERT_OK_AND_ASSIGN(JsonValue n, Parse("-1e400"));
  EXPECT_LE(n.number(), -std::numeric_limits<double>::max())
      << "number() of -1e400 returned " << n.number();
}

TEST(JsonParse, Escapes) {
  HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse(R"("a\"b\\c\/d\be\ff\ng\rh\ti")"));
  EXPECT_EQ(v.string_value(), "a\"b\\c/d\be\ff\ng\rh\ti");
  HC_ASSERT_OK_AND_ASSIGN(JsonValue u, Parse(R"("\u0041\u00e9\u20AC\u0000x")"));
  EXPECT_EQ(u.string_value(), std::string("A\xc3\xa9\xe2\x82\xac\0x", 8));
  for (const char* bad : {R"("\x")", R"("\u12")", R"("\u12g4")", R"("\)", R"("\'")", R"("\U0041")"}) {
    EXPECT_THAT(Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid JSON")))
        << bad;
  }
}

TEST(JsonParse, SurrogatePairs) {
  // U+1F600 = \ud83d\ude00 -> F0 9F 98 80.
  HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse(R"("\ud83d\ude00")"));
  EXPECT_EQ(v.string_value(), "\xf0\x9f\x98\x80");
  // U+10000 and U+10FFFF, the ends of the supplementary range.
  HC_ASSERT_OK_AND_ASSIGN(JsonValue lo, Parse(R"("\uD800\uDC00")"));
  EXPECT_EQ(lo.string_value(), "\xf0\x90\x80\x80");
  HC_ASSERT_OK_AND_ASSIGN(JsonValue hi, Parse(R"("\uDBFF\uDFFF")"));
  EXPECT_EQ(hi.string_value(), "\xf4\x8f\xbf\xbf");
  for (const char* bad : {R"("\ud83d")", R"("\ud83dx")", R"("\ud83d\u0041")", R"("\ude00")",
                          R"("\ude00\ud83d")", R"("\ud83d\ud83d")", R"("\ud83d\n")"}) {
    EXPECT_THAT(Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("surrogate")))
        << bad;
  }
}

TEST(JsonParse, RawUtf8IsValidated) {
  // Valid multi-byte sequences of each length.
  HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""));
  EXPECT_EQ(v.string_value(), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  const std::string bad[] = {
      "\"\xff\"",              // never valid
      "\"\x80\"",              // lone continuation byte
      "\"\xc3\"",              // truncated 2-byte
      "\"\xc3x\"",             // bad continuation
      "\"\xe2\x82\"",          // truncated 3-byte
      "\"\xc0\xaf\"",          // overlong '/'
      "\"\xe0\x80\xaf\"",      // overlong 3-byte
      "\"\xf0\x80\x80\xaf\"",  // overlong 4-byte
      "\"\xed\xa0\x80\"",      // UTF-8-encoded surrogate U+D800
      "\"\xf4\x90\x80\x80\"",  // U+110000, past the Unicode range
      "\"\xf8\x88\x80\x80\x80\"",  // 5-byte form
  };
  for (const std::string& s : bad) {
    EXPECT_THAT(Parse(s), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")))
        << ::testing::PrintToString(s);
  }
  // Also inside object keys.
  EXPECT_THAT(Parse("{\"\xff\": 1}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
}

TEST(JsonParse, ControlCharactersInStringsRejected) {
  EXPECT_THAT(Parse(std::string("\"a\nb\"")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control character")));
  EXPECT_THAT(Parse(std::string("\"a\0b\"", 5)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("control character")));
}

TEST(JsonParse, DuplicateKeysRejectedWithTheKey) {
  auto r = Parse(R"({"a": 1, "bb": 2, "bb": 3})");
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key \"bb\"")));
  // The offset of the second key is reported.
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at byte 18")));
  // Keys equal after unescaping are duplicates.
  EXPECT_THAT(Parse(R"({"a": 1, "\u0061": 2})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key \"a\"")));
  // In nested objects.
  EXPECT_THAT(Parse(R"({"o": {"k": 1, "k": 1}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key \"k\"")));
  // The same key in different objects is fine.
  EXPECT_THAT(Parse(R"({"o": {"k": 1}, "p": {"k": 1}})"), IsOk());
  // Optionally allowed.
  JsonParseOptions opts;
  opts.reject_duplicate_keys = false;
  auto lenient = ParseJson(R"({"a": 1, "a": 2})", opts);
  ASSERT_THAT(lenient, IsOk());
  EXPECT_EQ(lenient->members().size(), 2u);
}

std::string Nested(int depth, char open, char close) {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonParse, DepthLimit) {
  EXPECT_THAT(Parse(Nested(64, '[', ']')), IsOk());
  EXPECT_THAT(Parse(Nested(65, '[', ']')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nesting too deep")));
  std::string objs;
  for (int i = 0; i < 65; ++i) objs += "{\"a\":";
  objs += "1";
  objs += std::string(65, '}');
  EXPECT_THAT(Parse(objs), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nesting too deep")));
  JsonParseOptions opts;
  opts.max_depth = 2;
  EXPECT_THAT(ParseJson("[[1]]", opts), IsOk());
  EXPECT_THAT(ParseJson("[[[1]]]", opts),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nesting too deep")));
  // Very deep input must fail cleanly, not overflow the stack.
  EXPECT_THAT(Parse(Nested(200000, '[', ']')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nesting too deep")));
}

TEST(JsonParse, TrailingGarbageRejected) {
  EXPECT_THAT(Parse("{} x"), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("unexpected data after the JSON value")));
  EXPECT_THAT(Parse("{}{}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after")));
  EXPECT_THAT(Parse("1 2"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after")));
  EXPECT_THAT(Parse(std::string("{}\0", 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("after")));
  EXPECT_THAT(Parse("{}  \n\t\r "), IsOk());
}

TEST(JsonParse, MalformedDocuments) {
  for (const char* bad : {"", "   ", "{", "}", "[", "[1,]", "[1 2]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}",
                          "{a:1}", "{'a':1}", "{\"a\" 1}", "tru", "nul", "falsey", "\"abc",
                          "[1,2", "{\"a\":1"}) {
    EXPECT_THAT(Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid JSON")))
        << ::testing::PrintToString(std::string(bad));
  }
}

TEST(JsonDump, Compact) {
  JsonValue v = JsonValue::Object();
  v.Add("s", JsonValue::String("a\"b\\\n\x01"))
      .Add("n", JsonValue::Int(-5))
      .Add("d", JsonValue::Number(0.1))
      .Add("b", JsonValue::Bool(false))
      .Add("z", JsonValue::Null());
  JsonValue arr = JsonValue::Array();
  arr.Push(JsonValue::Int(1)).Push(JsonValue::Array()).Push(JsonValue::Object());
  v.Add("a", std::move(arr));
  EXPECT_EQ(v.Dump(), R"({"s":"a\"b\\\n\u0001","n":-5,"d":0.1,"b":false,"z":null,"a":[1,[],{}]})");
  EXPECT_EQ(JsonValue::Number(std::numeric_limits<double>::infinity()).Dump(), "null");
  EXPECT_EQ(JsonValue::Number(std::nan("")).Dump(), "null");
  EXPECT_EQ(JsonValue::Number(1e300).Dump(), "1e+300");
}

TEST(JsonDump, RoundTrip) {
  const char* docs[] = {
      R"({"b":1,"a":[true,false,null,"x\ty",-0.5e-7,18446744073709551615],"c":{"d":{}}})",
      R"(["\u0000\u001f\"\\/",{"\u00e9":"\ud83d\ude00"}])",
      R"({"k":"\b\f\n\r\t"})",
      "[]",
      "\"\"",
  };
  for (const char* doc : docs) {
    HC_ASSERT_OK_AND_ASSIGN(JsonValue v, Parse(doc));
    const std::string once = v.Dump();
    HC_ASSERT_OK_AND_ASSIGN(JsonValue w, Parse(once));
    EXPECT_EQ(w.Dump(), once) << doc;
    EXPECT_EQ(w.kind(), v.kind());
  }
  // Numbers keep their exact text through Dump.
  HC_ASSERT_OK_AND_ASSIGN(JsonValue n, Parse("[18446744073709551615,1.50,1E2]"));
  EXPECT_EQ(n.Dump(), "[18446744073709551615,1.50,1E2]");
  // Doubles from Number() round-trip exactly.
  for (double d : {0.1, 1.0 / 3, -2.5e-310, 1.7976931348623157e308, 123456789.0}) {
    HC_ASSERT_OK_AND_ASSIGN(JsonValue x, Parse(JsonValue::Number(d).Dump()));
    EXPECT_EQ(x.number(), d);
  }
  // Every byte 0..0x7f as a string survives Dump -> Parse.
  std::string all;
  for (int c = 1; c < 0x80; ++c) all.push_back(static_cast<char>(c));
  all.push_back('\0');
  HC_ASSERT_OK_AND_ASSIGN(JsonValue s, Parse(JsonValue::String(all).Dump()));
  EXPECT_EQ(s.string_value(), all);
}

TEST(JsonAppendString, Escaping) {
  std::string out = "x";
  AppendJsonString("a\"\\\b\f\n\r\t\x1f\x7f\xc3\xa9", &out);
  EXPECT_EQ(out, "x\"a\\\"\\\\\\b\\f\\n\\r\\t\\u001f\x7f\xc3\xa9\"");
}

}  // namespace
}  // namespace hc
