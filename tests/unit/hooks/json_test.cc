#include "hooks/json.h"

#include <algorithm>
#include <iterator>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

// `depth` arrays nested in one another around `leaf` ("[[1]]" for depth 2), as text.
std::string NestedText(int depth, const std::string& leaf = "1") {
  return std::string(depth, '[') + leaf + std::string(depth, ']');
}

// The same, built in memory without recursion (moves only).
Json Nested(int depth, Json leaf = 1) {
  for (int i = 0; i < depth; ++i) {
    Json outer = Json::array();
    outer.push_back(std::move(leaf));
    leaf = std::move(outer);
  }
  return leaf;
}

// Depths every limit is tried at: nothing, one level, around the limit, and far beyond it.
std::vector<int> DepthsAround(int limit) { return {0, 1, limit - 1, limit, limit + 1, 100000}; }

TEST(ParseJson, ReportsWhereTheTextBreaks) {
  absl::StatusOr<Json> bad = ParseJson(R"({"a": tru})");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("at byte"), absl::string_view::npos);
}

TEST(ParseJson, ANumberTooLargeIsAnErrorNotACrash) {
  // Found by tests/fuzz/in_record_fuzz: the overflow surfaced as an uncaught out_of_range.
  absl::StatusOr<Json> big = ParseJson(R"({"kd":4e72300})");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseJson, KeepsKeyOrder) {
  absl::StatusOr<Json> j = ParseJson(R"({"z":1,"a":2})");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(DumpJson(*j), R"({"z":1,"a":2})");
}

TEST(DumpJson, ReplacesInvalidUtf8InsteadOfThrowing) {
  Json j = std::string("a\xff");
  EXPECT_EQ(DumpJson(j), "\"a\xEF\xBF\xBD\"");
}

TEST(ToValidUtf8, KeepsWellFormedTextAndReplacesEachBadByte) {
  EXPECT_EQ(ToValidUtf8("plain, Grüße 👋"), "plain, Grüße 👋");
  EXPECT_EQ(ToValidUtf8(""), "");
  const std::string r = "\xef\xbf\xbd";                       // U+FFFD
  EXPECT_EQ(ToValidUtf8("caf\xe9"), "caf" + r);               // Latin-1
  EXPECT_EQ(ToValidUtf8("\x80x"), r + "x");                   // stray continuation
  EXPECT_EQ(ToValidUtf8("\xf0\x9f\x91"), r + r + r);          // truncated 4-byte
  EXPECT_EQ(ToValidUtf8("\xc0\xaf"), r + r);                  // overlong "/"
  EXPECT_EQ(ToValidUtf8("\xed\xa0\x80"), r + r + r);          // a surrogate
  EXPECT_EQ(ToValidUtf8("\xf4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(ToValidUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(ClipText, KeepsWhatFitsAndCutsTheRestAtACharacterWithItsSize) {
  EXPECT_EQ(ClipText("short", 64), "short");
  EXPECT_EQ(ClipText(std::string(64, 'x'), 64), std::string(64, 'x'));
  std::string clipped = ClipText(std::string(100'000, 'x'), 64);
  EXPECT_EQ(clipped, std::string(64 - 18, 'x') + "\xE2\x80\xA6 (100000 bytes)");
  EXPECT_LE(clipped.size(), 64u);
  // Never inside a character: "é" is two bytes.
  std::string accents;
  for (int i = 0; i < 100; ++i) accents += "\xC3\xA9";
  std::string cut = ClipText(accents, 40);
  EXPECT_LE(cut.size(), 40u);
  EXPECT_EQ(ToValidUtf8(cut), cut);
  EXPECT_TRUE(cut.ends_with("\xE2\x80\xA6 (200 bytes)"));
}

TEST(Quoted, QuotesEscapesAndClipsAt64Bytes) {
  EXPECT_EQ(Quoted("chat"), "\"chat\"");
  EXPECT_EQ(Quoted(""), "\"\"");
  EXPECT_EQ(Quoted("say \"hi\"\\"), R"("say \"hi\"\\")");
  EXPECT_EQ(Quoted("a\nb\x01\x7f"), R"("a\nb\x01\x7f")");
  EXPECT_EQ(Quoted("Grüße"), "\"Grüße\"");
  EXPECT_EQ(Quoted(std::string(64, 'k')), "\"" + std::string(64, 'k') + "\"");
  EXPECT_EQ(Quoted(std::string(70'000, 'k')),
            "\"" + std::string(64, 'k') + "\"\xE2\x80\xA6 (70000 bytes)");
  std::string accents;
  for (int i = 0; i < 40; ++i) accents += "\xC3\xA9";  // 80 bytes
  std::string quoted = Quoted(accents);
  EXPECT_EQ(quoted, "\"" + accents.substr(0, 64) + "\"\xE2\x80\xA6 (80 bytes)");
  EXPECT_EQ(Quoted(std::string(10, 'x'), 4), "\"xxxx\"\xE2\x80\xA6 (10 bytes)");
}

TEST(ParseJson, TakesEveryDepthUpToTheLimitAndRefusesDeeperWithoutBuildingIt) {
  for (int limit : {kMaxDataDepth, kMaxJsonDepth}) {
    for (int depth : DepthsAround(limit)) {
      SCOPED_TRACE(absl::StrCat("limit ", limit, ", depth ", depth));
      absl::StatusOr<Json> parsed = ParseJson(NestedText(depth), limit);
      if (depth <= limit) {
        ASSERT_TRUE(parsed.ok()) << parsed.status();
        EXPECT_EQ(JsonDepth(*parsed), depth);
        // What was taken can be copied, compared and dumped (all of which recurse).
        Json copy = *parsed;
        EXPECT_EQ(copy, *parsed);
        EXPECT_EQ(DumpJson(copy), NestedText(depth));
      } else {
        ASSERT_FALSE(parsed.ok());
        EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
        // The bracket that opens level limit + 1 is byte limit + 1.
        EXPECT_EQ(parsed.status().message(),
                  absl::StrCat("JSON nests deeper than ", limit, " levels at byte ", limit + 1));
      }
    }
  }
}

TEST(ParseJson, TheDefaultLimitIsTheHardOne) {
  EXPECT_TRUE(ParseJson(NestedText(kMaxJsonDepth)).ok());
  EXPECT_FALSE(ParseJson(NestedText(kMaxJsonDepth + 1)).ok());
  EXPECT_LT(kMaxDataDepth, kMaxJsonDepth);
}

TEST(ParseJson, ObjectsCountAsArraysDo) {
  std::string text;
  for (int i = 0; i < kMaxDataDepth; ++i) text += R"({"a":)";
  text += "null";
  text += std::string(kMaxDataDepth, '}');
  EXPECT_TRUE(ParseJson(text, kMaxDataDepth).ok());
  EXPECT_FALSE(ParseJson(absl::StrCat("[", text, "]"), kMaxDataDepth).ok());
}

TEST(ParseJson, BracketsInsideStringsDoNotCount) {
  std::string deep_looking(100000, '[');
  EXPECT_TRUE(ParseJson(absl::StrCat(R"({"a":")", deep_looking, R"("})"), 1).ok());
  // An escaped quote does not end the string; an escaped backslash before a quote does.
  EXPECT_TRUE(ParseJson(R"(["\"[[[[[[", "\\", "]]]]"])", 1).ok());
  EXPECT_FALSE(ParseJson(R"(["\\", [[1]]])", 2).ok());
  EXPECT_TRUE(ParseJson(R"(["\\", [[1]]])", 3).ok());
  // Unicode escapes hide nothing either.
  EXPECT_TRUE(ParseJson(R"(["\u005b\u005b", ["\u0022"]])", 2).ok());
}

TEST(ParseJson, TextThatIsNotJsonIsStillAnErrorAtAnyDepth) {
  // Deep and broken: the depth is found first. Shallow and broken: where it breaks.
  EXPECT_EQ(ParseJson(std::string(100000, '['), kMaxDataDepth).status().message(),
            absl::StrCat("JSON nests deeper than ", kMaxDataDepth, " levels at byte ",
                         kMaxDataDepth + 1));
  EXPECT_EQ(ParseJson(std::string(kMaxDataDepth, '['), kMaxDataDepth).status().message(),
            absl::StrCat("invalid JSON at byte ", kMaxDataDepth + 1));
  // Closers without openers never make the count go below zero (nor let a deeper text pass).
  EXPECT_FALSE(ParseJson(absl::StrCat("]]]]", NestedText(3)), 2).ok());
  EXPECT_EQ(JsonTextTooDeep(absl::StrCat("]]]]", NestedText(3)), 2), 6u);
}

TEST(JsonTextTooDeep, NamesTheBracketThatGoesTooDeep) {
  EXPECT_EQ(JsonTextTooDeep("", 0), std::string_view::npos);
  EXPECT_EQ(JsonTextTooDeep("7", 0), std::string_view::npos);
  EXPECT_EQ(JsonTextTooDeep("[]", 0), 0u);
  EXPECT_EQ(JsonTextTooDeep("[]", 1), std::string_view::npos);
  EXPECT_EQ(JsonTextTooDeep(R"([1, {"a": [2]}, [[3]]])", 2), 10u);
  EXPECT_EQ(JsonTextTooDeep(R"([1, {"a": [2]}, [[3]]])", 3), std::string_view::npos);
  EXPECT_EQ(CheckJsonTextDepth("[[[]]]", 2, ".in record").message(),
            ".in record nests deeper than 2 levels at byte 3");
}

TEST(JsonDepth, IsIterativeAndStopsPastTheLimit) {
  EXPECT_EQ(JsonDepth(Json()), 0);
  EXPECT_EQ(JsonDepth(Json("[[[")), 0);
  EXPECT_EQ(JsonDepth(Json::array()), 1);
  EXPECT_EQ(JsonDepth(Json::object()), 1);
  EXPECT_EQ(JsonDepth(Json::parse(R"([1, {"a": [2]}, [[3]], {}])")), 3);
  for (int depth : DepthsAround(kMaxJsonDepth)) {
    SCOPED_TRACE(depth);
    Json deep = Nested(depth);
    EXPECT_EQ(JsonDepth(deep, 1000000), depth);
    EXPECT_EQ(JsonDepth(deep), std::min(depth, kMaxJsonDepth + 1));
    EXPECT_EQ(CheckJsonDepth(deep, kMaxJsonDepth, "output").ok(), depth <= kMaxJsonDepth);
  }
  EXPECT_EQ(CheckJsonDepth(Nested(kMaxDataDepth + 1), kMaxDataDepth, "output").message(),
            absl::StrCat("output nests deeper than ", kMaxDataDepth, " levels"));
  // Wide is not deep: a million siblings are one level.
  Json wide = Json::array();
  for (int i = 0; i < 1000000; ++i) wide.push_back(Json::array());
  EXPECT_EQ(JsonDepth(wide), 2);
}

// A random JSON document with a given nesting depth and about a given size: arrays and
// objects, strings full of brackets, quotes and escapes, numbers and literals.
class RandomDocument {
 public:
  explicit RandomDocument(uint32_t seed) : rng_(seed) {}

  std::string Make(int depth, size_t size) {
    std::string out;
    Value(depth, size, out);
    return out;
  }

 private:
  void Scalar(std::string& out) {
    switch (rng_() % 5) {
      case 0:
        out += std::to_string(static_cast<int>(rng_() % 1000) - 500);
        return;
      case 1:
        out += "true";
        return;
      case 2:
        out += "null";
        return;
      default: {
        static const char* const kPieces[] = {"[", "]",       "{", "}", "\\\"", "\\\\",
                                              "a", "\\u005b", ",", ":", "\\n",  "\xc3\xa9"};
        out += '"';
        for (int i = rng_() % 8; i > 0; --i) out += kPieces[rng_() % std::size(kPieces)];
        out += '"';
      }
    }
  }

  // Writes a value nesting exactly `depth` levels; `size` is the bytes it may spend on siblings.
  void Value(int depth, size_t size, std::string& out) {
    if (depth == 0) return Scalar(out);
    bool object = rng_() % 2 == 0;
    out += object ? '{' : '[';
    size_t start = out.size();
    int deep_at = static_cast<int>(rng_() % 4);  // which member carries the full depth
    for (int i = 0;; ++i) {
      bool deep = i == deep_at;
      if (!deep && i > deep_at && out.size() - start >= size) break;
      if (i > 0) out += ',';
      if (object) out += absl::StrCat("\"k", i, "[\":");
      if (deep) {
        Value(depth - 1, size / 2, out);
      } else {
        // Siblings stay shallow, so the text grows with depth, not exponentially.
        Value(static_cast<int>(rng_() % std::min(depth, 4)), size / 8, out);
      }
    }
    out += object ? '}' : ']';
  }

  std::mt19937 rng_;
};

// Property: on any document, the scan of the text and the walk of the parsed value agree, and a
// limit refuses exactly the documents deeper than it, with depth and size as the dimensions.
TEST(JsonDepthProperty, TheTextScanAgreesWithTheParsedValueAtEveryDepthAndSize) {
  RandomDocument random(12);
  // Unbounded here means 512 levels: parsing into an object that grows after a deep member
  // copies that member, recursively, so not even nlohmann's parse is safe at any depth.
  constexpr int kUnbounded = 2 * kMaxJsonDepth;
  for (int depth : {0, 1, 2, 5, kMaxDataDepth - 1, kMaxDataDepth, kMaxDataDepth + 1, kMaxJsonDepth,
                    kMaxJsonDepth + 1, kUnbounded}) {
    for (size_t size : {0, 64, 4096, 1 << 16}) {
      SCOPED_TRACE(absl::StrCat("depth ", depth, ", size ", size));
      std::string text = random.Make(depth, size);
      absl::StatusOr<Json> whole = ParseJson(text, kUnbounded);
      ASSERT_TRUE(whole.ok()) << whole.status() << " " << text.substr(0, 200);
      EXPECT_EQ(JsonDepth(*whole, kUnbounded), depth);
      for (int limit : {kMaxDataDepth, kMaxJsonDepth}) {
        absl::StatusOr<Json> bounded = ParseJson(text, limit);
        EXPECT_EQ(bounded.ok(), depth <= limit);
        EXPECT_EQ(JsonTextTooDeep(text, limit) == std::string_view::npos, depth <= limit);
        if (bounded.ok()) {
          EXPECT_EQ(*bounded, *whole);
          EXPECT_EQ(ParseJson(DumpJson(*bounded), limit).value(), *bounded);  // round trip
        }
      }
    }
  }
}

}  // namespace
}  // namespace baton
