// Conversions between UI messages and model messages (reference/llm-wire.md §2.2-§2.3,
// chat-wire-and-hooks.md §5.5-§5.6).
#include "runtime/transcript/convert.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

Json P(const char* text) { return Json::parse(text); }

TEST(UiToModelMessages, SystemMessageBecomesConcatenatedText) {
  Json out = UiToModelMessages(P(R"({"id":"s","role":"system","parts":[
      {"type":"text","text":"Be "},{"type":"text","text":"brief."}]})"));
  EXPECT_EQ(out, P(R"([{"role":"system","content":"Be brief."}])"));
}

TEST(UiToModelMessages, UserMessageKeepsTextAndFilePartsOnly) {
  Json out = UiToModelMessages(P(R"({"id":"u1","role":"user","parts":[
      {"type":"text","text":"Look:"},
      {"type":"file","mediaType":"image/png","url":"data:image/png;base64,AAA"},
      {"type":"data-note","data":{"x":1}},
      {"type":"text","text":"ok?"}]})"));
  EXPECT_EQ(out, P(R"([{"role":"user","content":[
      {"type":"text","text":"Look:"},
      {"type":"file","mediaType":"image/png","data":"data:image/png;base64,AAA"},
      {"type":"text","text":"ok?"}]}])"));
}

TEST(UiToModelMessages, MessageWithoutPartsGivesNothing) {
  EXPECT_EQ(UiToModelMessages(P(R"({"id":"u1","role":"user"})")), Json::array());
  EXPECT_EQ(UiToModelMessages(P(R"({"id":"a","role":"assistant","parts":"x"})")), Json::array());
}

TEST(UiToModelMessages, AssistantStepBecomesAssistantThenToolMessage) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},
      {"type":"reasoning","text":"Need data.","state":"done"},
      {"type":"text","text":"Let me check.","state":"done"},
      {"type":"tool-get_weather","toolCallId":"c1","state":"output-available",
       "input":{"city":"Oslo"},"output":{"tempC":4}},
      {"type":"tool-get_weather","toolCallId":"c2","state":"output-available",
       "input":{"city":"Lima"},"output":"sunny"}]})"));
  EXPECT_EQ(out, P(R"([
      {"role":"assistant","content":[
        {"type":"reasoning","text":"Need data."},
        {"type":"text","text":"Let me check."},
        {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
        {"type":"tool-call","toolCallId":"c2","toolName":"get_weather","input":{"city":"Lima"}}]},
      {"role":"tool","content":[
        {"type":"tool-result","toolCallId":"c1","toolName":"get_weather",
         "output":{"type":"json","value":{"tempC":4}}},
        {"type":"tool-result","toolCallId":"c2","toolName":"get_weather",
         "output":{"type":"text","value":"sunny"}}]}])"))
      << out.dump();
}

TEST(UiToModelMessages, AssistantSplitsAtEveryStepStart) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},
      {"type":"tool-get_weather","toolCallId":"c1","state":"output-available",
       "input":{"city":"Oslo"},"output":{"tempC":4}},
      {"type":"step-start"},
      {"type":"text","text":"It is 4 C.","state":"done"}]})"));
  ASSERT_EQ(out.size(), 3u) << out.dump();
  EXPECT_EQ(out[0]["role"], "assistant");
  EXPECT_EQ(out[0]["content"][0]["type"], "tool-call");
  EXPECT_EQ(out[1]["role"], "tool");
  EXPECT_EQ(out[1]["content"][0]["type"], "tool-result");
  EXPECT_EQ(out[2], P(R"({"role":"assistant","content":[{"type":"text","text":"It is 4 C."}]})"));
}

TEST(UiToModelMessages, EmptyTextAndDataPartsAreLeftOut) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},{"type":"text","text":"","state":"done"},
      {"type":"data-weather","id":"w","data":1},{"type":"step-start"},
      {"type":"text","text":"hi","state":"done"}]})"));
  EXPECT_EQ(out, P(R"([{"role":"assistant","content":[{"type":"text","text":"hi"}]}])"));
}

TEST(UiToModelMessages, ToolNameIsEverythingAfterTheFirstToolPrefixOrTheDynamicName) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-web-search","toolCallId":"c1","state":"output-available","input":{},
       "output":1},
      {"type":"dynamic-tool","toolName":"mcp_lookup","toolCallId":"c2",
       "state":"output-available","input":{},"output":2}]})"));
  EXPECT_EQ(out[0]["content"][0]["toolName"], "web-search");
  EXPECT_EQ(out[0]["content"][1]["toolName"], "mcp_lookup");
  EXPECT_EQ(out[1]["content"][0]["toolName"], "web-search");
  EXPECT_EQ(out[1]["content"][1]["toolName"], "mcp_lookup");
}

TEST(UiToModelMessages, OutputErrorBecomesErrorText) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-read_file","toolCallId":"c1","state":"output-error",
       "input":{"path":"x"},"errorText":"no such file: x"}]})"));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["content"][0]["type"], "tool-call");
  EXPECT_EQ(out[1]["content"][0], P(R"({"type":"tool-result","toolCallId":"c1",
      "toolName":"read_file","output":{"type":"error-text","value":"no such file: x"}})"));
}

TEST(UiToModelMessages, OutputDeniedBecomesExecutionDenied) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-delete_file","toolCallId":"c1","state":"output-denied","input":{"path":"a"},
       "approval":{"id":"ap1","approved":false,"reason":"keep it"}},
      {"type":"tool-delete_file","toolCallId":"c2","state":"output-denied","input":{"path":"b"},
       "approval":{"id":"ap2","approved":false}}]})"));
  ASSERT_EQ(out.size(), 2u) << out.dump();
  EXPECT_EQ(out[1]["content"][0]["output"], P(R"({"type":"execution-denied","reason":"keep it"})"));
  EXPECT_EQ(out[1]["content"][1]["output"], P(R"({"type":"execution-denied"})"));
}

TEST(UiToModelMessages, ApprovalRequestedBecomesAnApprovalRequestPart) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},
      {"type":"tool-delete_file","toolCallId":"c1","state":"approval-requested",
       "input":{"path":"a"},"approval":{"id":"ap1"}}]})"));
  EXPECT_EQ(out, P(R"([{"role":"assistant","content":[
      {"type":"tool-call","toolCallId":"c1","toolName":"delete_file","input":{"path":"a"}},
      {"type":"tool-approval-request","approvalId":"ap1","toolCallId":"c1"}]}])"))
      << out.dump();
}

TEST(UiToModelMessages, ApprovalRespondedAddsAnApprovalResponse) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-delete_file","toolCallId":"c1","state":"approval-responded",
       "input":{"path":"a"},"approval":{"id":"ap1","approved":true}},
      {"type":"tool-delete_file","toolCallId":"c2","state":"approval-responded",
       "input":{"path":"b"},"approval":{"id":"ap2","approved":false,"reason":"no"}}]})"));
  EXPECT_EQ(out, P(R"([
      {"role":"assistant","content":[
        {"type":"tool-call","toolCallId":"c1","toolName":"delete_file","input":{"path":"a"}},
        {"type":"tool-approval-request","approvalId":"ap1","toolCallId":"c1"},
        {"type":"tool-call","toolCallId":"c2","toolName":"delete_file","input":{"path":"b"}},
        {"type":"tool-approval-request","approvalId":"ap2","toolCallId":"c2"}]},
      {"role":"tool","content":[
        {"type":"tool-approval-response","approvalId":"ap1","approved":true},
        {"type":"tool-approval-response","approvalId":"ap2","approved":false,"reason":"no"}]}])"))
      << out.dump();
}

TEST(UiToModelMessages, StreamingAndUnansweredToolCallsAreDropped) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},
      {"type":"text","text":"Checking.","state":"done"},
      {"type":"tool-get_weather","toolCallId":"c1","state":"input-streaming"},
      {"type":"tool-get_weather","toolCallId":"c2","state":"input-available",
       "input":{"city":"Oslo"}}]})"));
  EXPECT_EQ(out, P(R"([{"role":"assistant","content":[{"type":"text","text":"Checking."}]}])"))
      << out.dump();
}

TEST(UiToModelMessages, AStepWithOnlyUnansweredCallsGivesNoMessages) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},
      {"type":"tool-ask_user","toolCallId":"c1","state":"input-available","input":{}}]})"));
  EXPECT_EQ(out, Json::array());
}

TEST(UiToModelMessages, ProviderMetadataBecomesProviderOptions) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"reasoning","text":"Hmm.","state":"done",
       "providerMetadata":{"anthropic":{"signature":"c2ln"}}},
      {"type":"text","text":"Hi","state":"done","providerMetadata":{"openai":{"itemId":"m1"}}},
      {"type":"tool-get_weather","toolCallId":"c1","state":"output-available",
       "input":{"city":"Oslo"},"output":4,
       "callProviderMetadata":{"google":{"thoughtSignature":"ts"}}}]})"));
  const Json& content = out[0]["content"];
  EXPECT_EQ(content[0], P(R"({"type":"reasoning","text":"Hmm.",
      "providerOptions":{"anthropic":{"signature":"c2ln"}}})"));
  EXPECT_EQ(content[1]["providerOptions"], P(R"({"openai":{"itemId":"m1"}})"));
  EXPECT_EQ(content[2]["providerOptions"], P(R"({"google":{"thoughtSignature":"ts"}})"));
}

TEST(UiToModelMessages, NoProviderOptionsWithoutMetadata) {
  Json out = UiToModelMessages(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"reasoning","text":"Hmm.","state":"done","providerMetadata":{}},
      {"type":"text","text":"Hi","state":"done"}]})"));
  EXPECT_FALSE(out[0]["content"][0].contains("providerOptions"));
  EXPECT_FALSE(out[0]["content"][1].contains("providerOptions"));
}

TEST(PartialToUiMessage, ConvertsTheFirstAssistantMessage) {
  Json partial = P(R"([
    {"role":"assistant","content":[
      {"type":"reasoning","text":"Need data.","providerOptions":{"anthropic":{"signature":"sig"}}},
      {"type":"text","text":"Let me check."},
      {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-approval-request","approvalId":"handover-approval-1","toolCallId":"c1"}]},
    {"role":"tool","content":[
      {"type":"tool-approval-response","approvalId":"handover-approval-1","approved":true}]}])");
  Json ui = PartialToUiMessage(partial, "M");
  EXPECT_EQ(ui, P(R"({"id":"M","role":"assistant","parts":[
      {"type":"reasoning","text":"Need data.","state":"done",
       "providerMetadata":{"anthropic":{"signature":"sig"}}},
      {"type":"text","text":"Let me check."},
      {"type":"tool-get_weather","toolCallId":"c1","state":"input-available",
       "input":{"city":"Oslo"}}]})"))
      << ui.dump();
}

TEST(PartialToUiMessage, StringContentBecomesOneTextPart) {
  Json ui = PartialToUiMessage(P(R"([{"role":"assistant","content":"Hello there."}])"), "M");
  EXPECT_EQ(ui["parts"], P(R"([{"type":"text","text":"Hello there."}])"));
}

TEST(PartialToUiMessage, OnlyTheFirstAssistantMessageCounts) {
  Json ui = PartialToUiMessage(P(R"([
      {"role":"tool","content":[]},
      {"role":"assistant","content":[{"type":"text","text":"one"}]},
      {"role":"assistant","content":[{"type":"text","text":"two"}]}])"),
                               "M");
  EXPECT_EQ(ui["parts"], P(R"([{"type":"text","text":"one"}])"));
}

TEST(PartialToUiMessage, ReasoningWithoutProviderOptionsHasNoMetadata) {
  Json ui = PartialToUiMessage(
      P(R"([{"role":"assistant","content":[{"type":"reasoning","text":"r"}]}])"), "M");
  EXPECT_EQ(ui["parts"], P(R"([{"type":"reasoning","text":"r","state":"done"}])"));
}

TEST(PartialToUiMessage, EmptyPartialGivesAnEmptyMessageUnderTheId) {
  EXPECT_EQ(PartialToUiMessage(Json::array(), "M"),
            P(R"({"id":"M","role":"assistant","parts":[]})"));
}

TEST(PartialToUiMessage, ConvertingBackGivesTheCallWithoutApprovalRows) {
  Json ui = PartialToUiMessage(P(R"([{"role":"assistant","content":[
      {"type":"text","text":"Checking."},
      {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-approval-request","approvalId":"a","toolCallId":"c1"}]}])"),
                               "M");
  // input-available without an output is an incomplete call, left out on the way back.
  EXPECT_EQ(UiToModelMessages(ui),
            P(R"([{"role":"assistant","content":[{"type":"text","text":"Checking."}]}])"));
}

TEST(StripOpenAiItemId, RemovesOnlyTheOpenAiItemId) {
  Json stripped = StripOpenAiItemId(P(R"({"id":"A","role":"assistant","parts":[
      {"type":"reasoning","text":"r","providerMetadata":{
        "openai":{"itemId":"rs_1","reasoningEncryptedContent":"enc"},
        "anthropic":{"signature":"sig"}}},
      {"type":"text","text":"t","providerMetadata":{"openai":{"itemId":"msg_1"}}},
      {"type":"tool-x","toolCallId":"c1","state":"output-available","output":1,
       "callProviderMetadata":{"openai":{"itemId":"fc_1"},"google":{"thoughtSignature":"g"}}},
      {"type":"text","text":"u","providerMetadata":{"anthropic":{"signature":"s2"}}}]})"));
  const Json& parts = stripped["parts"];
  EXPECT_EQ(parts[0]["providerMetadata"],
            P(R"({"openai":{"reasoningEncryptedContent":"enc"},"anthropic":{"signature":"sig"}})"));
  EXPECT_FALSE(parts[1].contains("providerMetadata")) << parts[1].dump();
  EXPECT_EQ(parts[2]["callProviderMetadata"], P(R"({"google":{"thoughtSignature":"g"}})"));
  EXPECT_EQ(parts[3]["providerMetadata"], P(R"({"anthropic":{"signature":"s2"}})"));
  EXPECT_EQ(parts[0]["text"], "r");
  EXPECT_EQ(stripped["id"], "A");
}

TEST(StripOpenAiItemId, LeavesMessagesWithoutPartsUnchanged) {
  Json m = P(R"({"id":"A","role":"assistant"})");
  EXPECT_EQ(StripOpenAiItemId(m), m);
  EXPECT_EQ(StripOpenAiItemId(Json("x")), Json("x"));
}

}  // namespace
}  // namespace baton
