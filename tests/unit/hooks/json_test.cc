#include "hooks/json.h"

#include "gtest/gtest.h"

namespace baton {
namespace {

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

}  // namespace
}  // namespace baton
