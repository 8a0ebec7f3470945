// batonctl against the real stack: the commands a script runs, their output and exit codes.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

using ::testing::HasSubstr;

struct Result {
  int code = -1;
  std::string out;
};

Result Ctl(Stack& stack, std::vector<std::string> args, const std::string& addr = "") {
  std::vector<std::string> argv = {BATONCTL_BINARY,
                                   "--addr=" + (addr.empty() ? stack.address() : addr)};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<std::unique_ptr<Process>> p = Process::Spawn(argv, stack.Path("batonctl.log"));
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return {};
  Result result;
  result.out = (*p)->ReadAll();
  result.code = (*p)->Wait();
  return result;
}

std::vector<Json> JsonLines(const std::string& text) {
  std::vector<Json> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    absl::StatusOr<Json> json = ParseJson(std::string(line));
    EXPECT_TRUE(json.ok()) << line;
    if (json.ok()) lines.push_back(*std::move(json));
  }
  return lines;
}

TEST(BatonctlStackTest, CreateAppendAndReadATurnAsJson) {
  auto stack =
      Stack::Start({.script = {{"responses", {{{"reply", {{"text", "Hi from baton."}}}}}}}});
  ASSERT_NE(stack, nullptr);
  Result created = Ctl(*stack, {"create", "k1", "--agent", "chat", "--json"});
  ASSERT_EQ(created.code, 0) << created.out;
  EXPECT_THAT(created.out, HasSubstr("\"created\":true"));
  Result appended = Ctl(*stack, {"append", "k1", "--text", "hello", "--json"});
  ASSERT_EQ(appended.code, 0);
  EXPECT_THAT(appended.out, HasSubstr("\"seq\":1"));
  Result read = Ctl(*stack, {"read", "k1", "--turns", "1", "--json"});
  ASSERT_EQ(read.code, 0);
  std::vector<Json> lines = JsonLines(read.out);
  ASSERT_FALSE(lines.empty());
  std::string text;
  for (const Json& line : lines) {
    if (line.contains("chunk") && line["chunk"].value("type", "") == "text-delta") {
      text += line["chunk"]["delta"].get<std::string>();
    }
  }
  EXPECT_EQ(text, "Hi from baton.");
  EXPECT_EQ(lines.back().value("control", ""), "turn-complete");
}

TEST(BatonctlStackTest, ExitCodesScriptsCanRelyOn) {
  auto stack = Stack::Start({});
  ASSERT_NE(stack, nullptr);
  EXPECT_EQ(Ctl(*stack, {"get", "nope"}).code, 3);
  ASSERT_EQ(Ctl(*stack, {"create", "x1", "--agent", "chat"}).code, 0);
  EXPECT_EQ(Ctl(*stack, {"create", "x1", "--agent", "weather"}).code, 4);
  EXPECT_EQ(Ctl(*stack, {"append", "x1", "--body", R"({"kind":"bogus"})"}).code, 5);
  EXPECT_EQ(Ctl(*stack, {"append", "x1", "--body", "{not json"}).code, 2);
  ASSERT_EQ(Ctl(*stack, {"close", "x1"}).code, 0);
  ASSERT_TRUE(stack->hooks().WaitFor("onRunEnd"));
  EXPECT_EQ(Ctl(*stack, {"append", "x1", "--text", "late"}).code, 4);
  EXPECT_EQ(Ctl(*stack, {"--timeout=1", "get", "x1"}, "unix:" + stack->Path("no.sock")).code, 6);
}

TEST(BatonctlStackTest, HeadStartHandsOverAndFollowsStepTwo) {
  Json script = {
      {"responses",
       {{{"reply",
          {{"text", "Let me check."},
           {"tool_calls",
            {{{"id", "toolu_c"}, {"name", "get_weather"}, {"input", {{"city", "Oslo"}}}}}}}}},
        {{"reply", {{"text", "4 degrees."}}}}}}};
  auto stack = Stack::Start({.script = script});
  ASSERT_NE(stack, nullptr);
  Result result =
      Ctl(*stack, {"head-start", "w1", "--agent", "weather", "--text", "Oslo?", "--base-url",
                   stack->llm().base_url(), "--model", "m", "--color", "never"});
  ASSERT_EQ(result.code, 0) << result.out;
  EXPECT_THAT(result.out, HasSubstr("Let me check."));
  EXPECT_THAT(result.out, HasSubstr("get_weather"));
  EXPECT_THAT(result.out, HasSubstr("tempC"));
  EXPECT_THAT(result.out, HasSubstr("4 degrees."));
  EXPECT_THAT(result.out, HasSubstr("turn complete"));
}

}  // namespace
}  // namespace baton::testing
