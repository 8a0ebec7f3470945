// Request bodies against reference/llm-wire.md §3.1, §4.1 and the request halves of the test
// vectors (V3, V4, V5, V10, V12).
#include "runtime/model/provider_requests.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/transcript/accumulator.h"

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

// Histories that exercise every kind of piece: system messages between turns, a tool message
// after another (its results go first in the open user turn), a user turn after results,
// assistant messages with nothing a provider takes, text that needs escaping, bytes that are
// not UTF-8, a tool message that is not an array.
std::vector<Json> Histories() {
  std::vector<Json> out;
  out.push_back(SecondStep(R"({"type":"json","value":{"tempC":4}})").messages.ToJson());
  out.push_back(Json::parse(R"([
    {"role":"system","content":"Be brief."},
    {"role":"user","content":"plain string"},
    {"role":"user","content":[{"type":"text","text":"two"},{"type":"text","text":"parts"},
      {"type":"image","data":"ignored"}]},
    {"role":"assistant","content":[{"type":"reasoning","text":"unsigned"}]},
    {"role":"assistant","content":""},
    {"role":"assistant","content":[{"type":"tool-call","toolCallId":"a","toolName":"t","input":{"k":[1,2]}},
      {"type":"tool-call","toolCallId":"b","toolName":"t","input":"not an object"}]},
    {"role":"tool","content":[{"type":"tool-result","toolCallId":"a","output":{"type":"text","value":"A"}}]},
    {"role":"tool","content":[{"type":"tool-result","toolCallId":"b","output":{"type":"execution-denied"}},
      {"type":"other"}]},
    {"role":"tool","content":"not an array"},
    {"role":"system","content":["not a string"]},
    {"role":"user","content":[{"type":"text","text":"quote \" slash \\ tab \t nl \n ctl \u0001 é 😀"}]},
    {"role":"system","content":"Second system."},
    {"role":"assistant","content":[{"type":"reasoning","text":"r","providerOptions":{"anthropic":{"redactedData":"xyz"}}},
      {"type":"text","text":"done"}]},
    {"role":"mystery","content":"skipped"}])"));
  Json bad_utf8 = Json::array();
  bad_utf8.push_back({{"role", "user"}, {"content", std::string("bad \xff\xfe byte")}});
  bad_utf8.push_back({{"role", "assistant"}, {"content", std::string("trail \xc3")}});
  out.push_back(bad_utf8);
  out.push_back(Json::array());
  return out;
}

// The body from pieces is the tree's bytes: with no memo, with a memo made by this call, with
// one made by an earlier call, with one made for the other provider, and with messages of the
// call's own after the shared ones.
TEST(RequestBody, IsTheDumpedTreeForEveryHistoryMemoAndOption) {
  const AnthropicRequestOptions anthropic[] = {
      {.model = "m"}, {.model = "m", .max_tokens = 2000, .thinking_budget = 1024}};
  const OpenAiRequestOptions openai[] = {
      {.model = "m"}, {.model = "m", .max_completion_tokens = 64, .include_usage = false}};
  for (const Json& history : Histories()) {
    for (bool system : {false, true}) {
      for (bool tools : {false, true}) {
        auto shared = std::make_shared<MessageList::Messages>(history.begin(), history.end());
        auto memo = std::make_shared<MessageMemo>();
        for (size_t count : {size_t{0}, history.size() / 2, history.size()}) {
          ModelCall call = SecondStep("1");
          if (!system) call.system.clear();
          if (!tools) call.tools = Json::array();
          for (MessageList messages : {MessageList(history), MessageList(shared, count, memo),
                                       MessageList(shared, count, memo)}) {
            for (size_t i = count; messages.size() < history.size(); ++i) {
              messages.push_back(history[i]);
            }
            call.messages = messages;
            for (const AnthropicRequestOptions& o : anthropic) {
              ASSERT_EQ(AnthropicRequestBody(call, o), DumpJson(BuildAnthropicRequest(call, o)))
                  << history.dump() << " shared " << count;
            }
            for (const OpenAiRequestOptions& o : openai) {
              ASSERT_EQ(OpenAiRequestBody(call, o), DumpJson(BuildOpenAiRequest(call, o)))
                  << history.dump() << " shared " << count;
            }
          }
        }
      }
    }
  }
}

// The transcript keeps a provider's pieces with its provider lane, drops those of a message it
// replaces or removes, and a lane taken before a change keeps its own: each body is the bytes
// of the lane it was made from.
TEST(RequestBody, KeptPiecesFollowTheTranscriptsChanges) {
  Accumulator acc;
  auto check = [](const MessageList& lane) {
    ModelCall call;
    call.messages = lane;
    EXPECT_EQ(AnthropicRequestBody(call, {.model = "m"}),
              DumpJson(BuildAnthropicRequest(call, {.model = "m"})));
    EXPECT_EQ(OpenAiRequestBody(call, {.model = "m"}),
              DumpJson(BuildOpenAiRequest(call, {.model = "m"})));
    EXPECT_EQ(AnthropicRequestBody(call, {.model = "m"}),
              DumpJson(BuildAnthropicRequest(call, {.model = "m"})));
  };
  acc.Add(UserMessage("u1", "hi"));
  acc.PutResponse(Json::parse(
      R"({"id":"R1","role":"assistant","parts":[{"type":"text","text":"first","state":"done"}]})"));
  MessageList before = acc.ProviderLane();
  check(before);
  ASSERT_NE(before.memo(), nullptr);
  EXPECT_EQ(before.memo()->pieces.size(), 2u);
  EXPECT_EQ(before.memo()->owner, "anthropic");

  // The answer is replaced in place while `before` is still held: a new lane, its own memo.
  acc.PutResponse(Json::parse(
      R"({"id":"R1","role":"assistant","parts":[{"type":"text","text":"second","state":"done"}]})"));
  MessageList after = acc.ProviderLane();
  EXPECT_NE(after.memo(), before.memo());
  check(after);
  check(before);
  {
    ModelCall call;
    call.messages = after;
    EXPECT_NE(AnthropicRequestBody(call, {.model = "m"}).find("second"), std::string::npos);
  }

  // With no earlier lane held, the memo is cut back in place and made again from the change.
  const MessageMemo* kept = after.memo();
  before = MessageList();
  after = MessageList();
  acc.PutResponse(Json::parse(
      R"({"id":"R1","role":"assistant","parts":[{"type":"text","text":"third","state":"done"}]})"));
  acc.Add(UserMessage("u2", "more"));
  MessageList third = acc.ProviderLane();
  EXPECT_EQ(third.memo(), kept);
  check(third);
  ModelCall call;
  call.messages = third;
  std::string body = OpenAiRequestBody(call, {.model = "m"});
  EXPECT_NE(body.find("third"), std::string::npos);
  EXPECT_EQ(body.find("second"), std::string::npos);
  acc.PopToLastUser();
  acc.Replace({UserMessage("u9", "fresh start")});
  check(acc.ProviderLane());
}

}  // namespace
}  // namespace baton
