// Request bodies against reference/llm-wire.md §3.1, §4.1 and the request halves of the test
// vectors (V3, V4, V5, V10, V12).
#include "runtime/model/provider_requests.h"

#include "gtest/gtest.h"

namespace baton {
namespace {

// The prompt of V3's (and V5's) second request, as the step loop builds it.
ModelCall SecondStep(const std::string& output_json) {
  ModelCall call;
  call.system = "You answer briefly.";
  call.messages = Json::parse(R"([
    {"role":"user","content":[{"type":"text","text":"Weather in Oslo?"}]},
    {"role":"assistant","content":[
      {"type":"reasoning","text":"Need live data.","providerOptions":{"anthropic":{"signature":"c2ln"}}},
      {"type":"reasoning","text":"unsigned, from another provider"},
      {"type":"text","text":"Checking."},
      {"type":"tool-call","toolCallId":"toolu_01","toolName":"get_weather","input":{"city":"Oslo"}}]},
    {"role":"tool","content":[{"type":"tool-result","toolCallId":"toolu_01","toolName":"get_weather",
      "output":)" + output_json +
                              R"(}]}])");
  call.tools = Json::parse(R"([{"name":"get_weather","description":"Current weather for a city",
    "inputSchema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}])");
  return call;
}

TEST(AnthropicRequest, ReplaysSignedThinkingAndAnswersToolUseInTheNextUserTurn) {
  Json r = BuildAnthropicRequest(SecondStep(R"({"type":"json","value":{"tempC":4}})"),
                                 {.model = "claude-x", .max_tokens = 1000});
  EXPECT_EQ(r["model"], "claude-x");
  EXPECT_EQ(r["stream"], true);
  EXPECT_EQ(r["system"], "You answer briefly.");
  EXPECT_EQ(r["tools"][0]["input_schema"]["required"][0], "city");
  ASSERT_EQ(r["messages"].size(), 3u);
  EXPECT_EQ(r["messages"][1], Json::parse(R"({"role":"assistant","content":[
      {"type":"thinking","thinking":"Need live data.","signature":"c2ln"},
      {"type":"text","text":"Checking."},
      {"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Oslo"}}]})"));
  EXPECT_EQ(r["messages"][2], Json::parse(R"({"role":"user","content":[
      {"type":"tool_result","tool_use_id":"toolu_01","content":"{\"tempC\":4}"}]})"));
}

TEST(AnthropicRequest, AFailedToolIsAnErrorResultAndUserTextFollowsTheResults) {  // V12
  ModelCall call = SecondStep(R"({"type":"error-text","value":"City not found"})");
  call.messages.push_back(
      Json::parse(R"({"role":"user","content":[{"type":"text","text":"and?"}]})"));
  Json r = BuildAnthropicRequest(call, {.model = "m"});
  ASSERT_EQ(r["messages"].size(), 3u);  // the tool turn and the user turn are one user turn
  EXPECT_EQ(
      r["messages"][2]["content"][0],
      Json::parse(
          R"({"type":"tool_result","tool_use_id":"toolu_01","content":"City not found","is_error":true})"));
  EXPECT_EQ(r["messages"][2]["content"][1]["text"], "and?");
}

TEST(AnthropicRequest, RedactedThinkingAndEmptyInputsReplayAsSent) {  // V5 variant, V10
  ModelCall call;
  call.messages = Json::parse(R"([
    {"role":"user","content":[{"type":"text","text":"files?"}]},
    {"role":"assistant","content":[
      {"type":"reasoning","text":"","providerOptions":{"anthropic":{"redactedData":"RU5D"}}},
      {"type":"tool-call","toolCallId":"toolu_07","toolName":"list_files","input":{}}]}])");
  Json r = BuildAnthropicRequest(call, {.model = "m", .max_tokens = 2000, .thinking_budget = 1024});
  EXPECT_EQ(r["messages"][1]["content"][0],
            Json::parse(R"({"type":"redacted_thinking","data":"RU5D"})"));
  EXPECT_EQ(r["messages"][1]["content"][1]["input"], Json::object());
  EXPECT_EQ(r["thinking"]["budget_tokens"], 1024);
  EXPECT_EQ(r["max_tokens"], 3024);
  EXPECT_FALSE(r.contains("system"));
}

TEST(OpenAiRequest, ToolCallsAsStringArgumentsAndResultsAsToolMessagesInCallOrder) {  // V4
  ModelCall call;
  call.system = "You answer briefly.";
  call.messages = Json::parse(R"([
    {"role":"user","content":[{"type":"text","text":"Weather in Oslo and time in CET?"}]},
    {"role":"assistant","content":[
      {"type":"tool-call","toolCallId":"call_a","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-call","toolCallId":"call_b","toolName":"get_time","input":{}}]},
    {"role":"tool","content":[
      {"type":"tool-result","toolCallId":"call_a","toolName":"get_weather","output":{"type":"json","value":{"tempC":4}}},
      {"type":"tool-result","toolCallId":"call_b","toolName":"get_time","output":{"type":"text","value":"14:05"}}]}])");
  call.tools =
      Json::parse(R"([{"name":"get_weather","description":"d","inputSchema":{"type":"object"}}])");
  Json r = BuildOpenAiRequest(call, {.model = "gpt-x"});
  EXPECT_EQ(r["stream_options"]["include_usage"], true);
  EXPECT_EQ(r["tools"][0]["function"]["parameters"]["type"], "object");
  ASSERT_EQ(r["messages"].size(), 5u);
  EXPECT_EQ(r["messages"][0], Json::parse(R"({"role":"system","content":"You answer briefly."})"));
  EXPECT_EQ(r["messages"][1],
            Json::parse(R"({"role":"user","content":"Weather in Oslo and time in CET?"})"));
  EXPECT_EQ(r["messages"][2], Json::parse(R"({"role":"assistant","content":null,"tool_calls":[
      {"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}},
      {"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{}"}}]})"));
  EXPECT_EQ(r["messages"][3],
            Json::parse(R"({"role":"tool","tool_call_id":"call_a","content":"{\"tempC\":4}"})"));
  EXPECT_EQ(r["messages"][4],
            Json::parse(R"({"role":"tool","tool_call_id":"call_b","content":"14:05"})"));
}

TEST(OpenAiRequest, StreamOptionsCanBeLeftOutForServersThatRefuseThem) {
  ModelCall call;
  call.messages = Json::parse(R"([{"role":"user","content":"hi"}])");
  Json r =
      BuildOpenAiRequest(call, {.model = "m", .max_completion_tokens = 64, .include_usage = false});
  EXPECT_FALSE(r.contains("stream_options"));
  EXPECT_EQ(r["max_completion_tokens"], 64);
  EXPECT_EQ(r["messages"][0]["content"], "hi");
}

}  // namespace
}  // namespace baton
