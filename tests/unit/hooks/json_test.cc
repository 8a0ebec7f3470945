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

}  // namespace
}  // namespace baton
