// A chunk written straight to text is byte for byte the dumped tree
// (runtime/transcript/ui_chunk.h).
#include "runtime/transcript/ui_chunk.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hooks/records.h"

namespace baton {
namespace {

std::string Written(std::string_view text) {
  std::string out;
  AppendJsonString(out, text);
  return out;
}

TEST(UiChunkTest, EveryByteIsWrittenAsTheDumpedTreeWritesIt) {
  for (int b = 0; b < 256; ++b) {
    std::string one(1, static_cast<char>(b));
    EXPECT_EQ(Written(one), DumpJson(Json(one))) << "byte " << b;
    std::string inside = absl::StrCat("a", one, "b\"c\\\\d");
    EXPECT_EQ(Written(inside), DumpJson(Json(inside))) << "byte " << b;
  }
  for (std::string text :
       {std::string(), std::string("Let me check."), std::string("tab\there\nline\r\f\b"),
        std::string("\x7f del"),
        std::string("caf\xc3\xa9 4 \xc2\xb0"
                    "C"),
        std::string("cut \xc3"), std::string("bad \xff\xfe tail"), std::string("\xed\xa0\x80"),
        std::string("nul \0 inside", 12), std::string("emoji \xf0\x9f\x98\x80 and \xe2\x82\xac"),
        std::string("overlong \xc0\x80"), std::string("overlong \xe0\x80\x80"),
        std::string("past U+10FFFF \xf4\x90\x80\x80"), std::string("U+10FFFF \xf4\x8f\xbf\xbf"),
        std::string("cut \xf0\x9f\x98"), std::string("stray \x80 tail"),
        std::string("\xef\xbf\xbd\xee\x80\x80\xed\x9f\xbf")}) {
    EXPECT_EQ(Written(text), DumpJson(Json(text))) << text;
  }
}

TEST(UiChunkTest, AChunkOfStringFieldsIsTheDumpOfItsTree) {
  EXPECT_EQ(ChunkText("start-step"), DumpJson(Json{{"type", "start-step"}}));
  EXPECT_EQ(ChunkText("text-delta", {{"id", "s0-1"},
                                     {"delta",
                                      "It is \"4\" \xc2\xb0"
                                      "C\n"}}),
            DumpJson(Json{{"type", "text-delta"},
                          {"id", "s0-1"},
                          {"delta",
                           "It is \"4\" \xc2\xb0"
                           "C\n"}}));
  EXPECT_EQ(ChunkText("text-end", {{"id", "s1-0"}}), R"({"type":"text-end","id":"s1-0"})");
}

TEST(UiChunkTest, ATreeTooDeepIsWrittenAsAnErrorSayingWhatWasDropped) {
  Json deep = Json::array();
  for (int i = 0; i < kMaxChunkDepth; ++i) deep = Json::array({std::move(deep)});
  std::string why;
  std::string text = DumpChunk(Json{{"type", "data-deep"}, {"data", deep}}, &why);
  std::string what = absl::StrCat("a \"data-deep\" chunk nests deeper than ", kMaxChunkDepth,
                                  " levels and was dropped");
  EXPECT_EQ(why, what);
  EXPECT_EQ(text, DumpJson(Json{{"type", "error"}, {"errorText", what}}));

  why.clear();
  EXPECT_EQ(DumpChunk(Json{{"type", "data-x"}, {"data", {{"a", 1}}}}, &why),
            R"({"type":"data-x","data":{"a":1}})");
  EXPECT_TRUE(why.empty());
}

}  // namespace
}  // namespace baton
