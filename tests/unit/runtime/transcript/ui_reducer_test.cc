// UiReducer folds UI message chunks into a message as the AI SDK client does
// (reference/llm-wire.md §1.4-§1.5).
#include "runtime/transcript/ui_reducer.h"

#include <initializer_list>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

// Applies each chunk (JSON text) and expects all to be accepted.
void ApplyAll(UiReducer& reducer, std::initializer_list<const char*> chunks) {
  for (const char* c : chunks) {
    absl::Status s = reducer.Apply(Json::parse(c));
    ASSERT_TRUE(s.ok()) << c << ": " << s;
  }
}

// Expects `chunk` to be rejected with InvalidArgument and the message to be left as it was.
void ExpectRejected(UiReducer& reducer, const char* chunk, const std::string& needle = "") {
  Json before = reducer.message();
  absl::Status s = reducer.Apply(Json::parse(chunk));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << chunk;
  EXPECT_THAT(std::string(s.message()), HasSubstr(needle)) << chunk;
  EXPECT_EQ(reducer.message(), before) << chunk;
}

TEST(UiReducer, StartsFromAnEmptyAssistantMessage) {
  UiReducer reducer;
  EXPECT_EQ(reducer.message()["role"], "assistant");
  ASSERT_TRUE(reducer.message()["parts"].is_array());
  EXPECT_TRUE(reducer.message()["parts"].empty());
  EXPECT_EQ(reducer.finish_reason(), "");
}

TEST(UiReducer, StartSetsTheMessageIdAndMetadata) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"start","messageId":"M1","messageMetadata":{"model":"x"}})"});
  EXPECT_EQ(reducer.message()["id"], "M1");
  EXPECT_EQ(reducer.message()["metadata"]["model"], "x");
}

TEST(UiReducer, StartWithoutMessageIdKeepsTheId) {
  UiReducer reducer(Json::parse(R"({"id":"A","role":"assistant","parts":[]})"));
  ApplyAll(reducer, {R"({"type":"start"})"});
  EXPECT_EQ(reducer.message()["id"], "A");
}

TEST(UiReducer, StartStepAppendsAStepStartPart) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"start"})", R"({"type":"start-step"})"});
  ASSERT_EQ(reducer.message()["parts"].size(), 1u);
  EXPECT_EQ(reducer.message()["parts"][0], Json::parse(R"({"type":"step-start"})"));
}

TEST(UiReducer, TextOpensAccumulatesDeltasAndEnds) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"start-step"})", R"({"type":"text-start","id":"t"})",
                     R"({"type":"text-delta","id":"t","delta":"Hel"})",
                     R"({"type":"text-delta","id":"t","delta":"lo"})"});
  const Json& part = reducer.message()["parts"][1];
  EXPECT_EQ(part["type"], "text");
  EXPECT_EQ(part["text"], "Hello");
  EXPECT_EQ(part["state"], "streaming");
  ApplyAll(reducer, {R"({"type":"text-end","id":"t"})"});
  EXPECT_EQ(reducer.message()["parts"][1]["state"], "done");
  EXPECT_EQ(reducer.message()["parts"][1]["text"], "Hello");
}

TEST(UiReducer, ReasoningOpensAccumulatesDeltasAndEnds) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"reasoning-start","id":"r"})",
                     R"({"type":"reasoning-delta","id":"r","delta":"Need "})",
                     R"({"type":"reasoning-delta","id":"r","delta":"data."})"});
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["type"], "reasoning");
  EXPECT_EQ(part["text"], "Need data.");
  EXPECT_EQ(part["state"], "streaming");
  ApplyAll(reducer, {R"({"type":"reasoning-end","id":"r"})"});
  EXPECT_EQ(reducer.message()["parts"][0]["state"], "done");
}

TEST(UiReducer, InterleavedTextPartsFollowTheirOwnIds) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"text-start","id":"a"})", R"({"type":"text-start","id":"b"})",
            R"({"type":"text-delta","id":"b","delta":"B"})",
            R"({"type":"text-delta","id":"a","delta":"A"})", R"({"type":"text-end","id":"a"})"});
  EXPECT_EQ(reducer.message()["parts"][0]["text"], "A");
  EXPECT_EQ(reducer.message()["parts"][0]["state"], "done");
  EXPECT_EQ(reducer.message()["parts"][1]["text"], "B");
  EXPECT_EQ(reducer.message()["parts"][1]["state"], "streaming");
}

TEST(UiReducer, ProviderMetadataIsKeptByDeltasWithoutItAndReplacedByOnesWithIt) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"reasoning-start","id":"r",
                         "providerMetadata":{"anthropic":{"redactedData":"D"}}})",
                     R"({"type":"reasoning-delta","id":"r","delta":"Think."})"});
  EXPECT_EQ(reducer.message()["parts"][0]["providerMetadata"],
            Json::parse(R"({"anthropic":{"redactedData":"D"}})"));
  // The Anthropic signature arrives as an empty delta carrying provider metadata.
  ApplyAll(reducer, {R"({"type":"reasoning-delta","id":"r","delta":"",
                         "providerMetadata":{"anthropic":{"signature":"sig"}}})",
                     R"({"type":"reasoning-end","id":"r"})"});
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["text"], "Think.");
  EXPECT_EQ(part["providerMetadata"], Json::parse(R"({"anthropic":{"signature":"sig"}})"));
}

TEST(UiReducer, TextEndWithProviderMetadataReplacesIt) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"text-start","id":"t","providerMetadata":{"openai":{"itemId":"1"}}})",
            R"({"type":"text-end","id":"t","providerMetadata":{"openai":{"itemId":"2"}}})"});
  EXPECT_EQ(reducer.message()["parts"][0]["providerMetadata"]["openai"]["itemId"], "2");
}

TEST(UiReducer, TextWithoutProviderMetadataHasNone) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"text-start","id":"t"})", R"({"type":"text-delta","id":"t","delta":"x"})"});
  EXPECT_FALSE(reducer.message()["parts"][0].contains("providerMetadata"));
}

TEST(UiReducer, RejectsDeltaOrEndForAPartThatIsNotOpen) {
  UiReducer reducer;
  ExpectRejected(reducer, R"({"type":"text-delta","id":"t","delta":"x"})", "\"t\"");
  ExpectRejected(reducer, R"({"type":"text-end","id":"t"})", "not open");
  ExpectRejected(reducer, R"({"type":"reasoning-delta","id":"r","delta":"x"})", "not open");
  ExpectRejected(reducer, R"({"type":"reasoning-end","id":"r"})", "not open");
}

TEST(UiReducer, RejectsDeltaAfterTheTextEnded) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"text-start","id":"t"})", R"({"type":"text-end","id":"t"})"});
  ExpectRejected(reducer, R"({"type":"text-delta","id":"t","delta":"late"})", "not open");
  ExpectRejected(reducer, R"({"type":"text-end","id":"t"})", "not open");
}

TEST(UiReducer, TextAndReasoningIdsAreSeparate) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"reasoning-start","id":"0"})"});
  ExpectRejected(reducer, R"({"type":"text-delta","id":"0","delta":"x"})", "not open");
}

TEST(UiReducer, FinishStepClosesOpenPartsSoALaterDeltaForTheOldIdIsRejected) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"start-step"})", R"({"type":"text-start","id":"0"})",
                     R"({"type":"text-delta","id":"0","delta":"a"})",
                     R"({"type":"reasoning-start","id":"1"})", R"({"type":"finish-step"})",
                     R"({"type":"start-step"})"});
  ExpectRejected(reducer, R"({"type":"text-delta","id":"0","delta":"b"})", "not open");
  ExpectRejected(reducer, R"({"type":"text-end","id":"0"})", "not open");
  ExpectRejected(reducer, R"({"type":"reasoning-delta","id":"1","delta":"b"})", "not open");
  EXPECT_EQ(reducer.message()["parts"][1]["text"], "a");
}

TEST(UiReducer, ReusedIdInALaterStepOpensANewPart) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"start-step"})", R"({"type":"text-start","id":"0"})",
            R"({"type":"text-delta","id":"0","delta":"one"})", R"({"type":"text-end","id":"0"})",
            R"({"type":"finish-step"})", R"({"type":"start-step"})",
            R"({"type":"text-start","id":"0"})", R"({"type":"text-delta","id":"0","delta":"two"})",
            R"({"type":"text-end","id":"0"})", R"({"type":"finish-step"})"});
  const Json& parts = reducer.message()["parts"];
  ASSERT_EQ(parts.size(), 4u);
  EXPECT_EQ(parts[1]["text"], "one");
  EXPECT_EQ(parts[3]["text"], "two");
}

TEST(UiReducer, ToolInputStartCreatesAStreamingToolPart) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"tool-input-start","toolCallId":"c1","toolName":"get_weather"})"});
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["type"], "tool-get_weather");
  EXPECT_EQ(part["toolCallId"], "c1");
  EXPECT_EQ(part["state"], "input-streaming");
  EXPECT_EQ(reducer.ToolPartIndex("c1"), 0);
  EXPECT_EQ(reducer.ToolPartIndex("c2"), -1);
}

TEST(UiReducer, ToolInputDeltaIsAcceptedAfterStartAndAvailableSetsTheInput) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"tool-input-start","toolCallId":"c1","toolName":"get_weather"})",
            R"({"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"{\"city\":"})",
            R"({"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"\"Oslo\"}"})",
            R"({"type":"tool-input-available","toolCallId":"c1","toolName":"get_weather",
                "input":{"city":"Oslo"}})"});
  ASSERT_EQ(reducer.message()["parts"].size(), 1u);
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["state"], "input-available");
  EXPECT_EQ(part["input"], Json::parse(R"({"city":"Oslo"})"));
}

// llm-wire.md §1.5: tool-input-delta sets part.input = parsePartialJson(partial text).
TEST(UiReducer, ToolInputDeltaUpdatesThePartInputFromTheTextSoFar) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"tool-input-start","toolCallId":"c1","toolName":"get_weather"})",
            R"({"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"{\"city\":"})",
            R"({"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"\"Oslo\"}"})"});
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["state"], "input-streaming");
  EXPECT_EQ(part.value("input", Json()), Json::parse(R"({"city":"Oslo"})")) << part.dump();
}

// A model's streamed tool input is outside data: the partial value is shown while it nests no
// deeper than kMaxToolInputDepth, and once the text goes deeper (complete or cut short, by one
// level or a hundred thousand) it is shown as nothing, never built.
TEST(UiReducer, ToolInputStreamedTooDeepIsNotBuilt) {
  for (int depth : {kMaxToolInputDepth, kMaxToolInputDepth + 1, 100000}) {
    SCOPED_TRACE(depth);
    UiReducer reducer;
    ApplyAll(reducer, {R"({"type":"tool-input-start","toolCallId":"c1","toolName":"t"})"});
    // {"a": then depth - 1 arrays: cut short first, then whole.
    std::string open = R"({"a":)" + std::string(depth - 1, '[');
    Json delta = {{"type", "tool-input-delta"}, {"toolCallId", "c1"}, {"inputTextDelta", open}};
    ASSERT_TRUE(reducer.Apply(delta).ok());
    const Json& part = reducer.message()["parts"][0];
    EXPECT_EQ(part.contains("input"), depth <= kMaxToolInputDepth);
    delta["inputTextDelta"] = "1" + std::string(depth - 1, ']') + "}";
    ASSERT_TRUE(reducer.Apply(delta).ok());
    EXPECT_EQ(part.contains("input"), depth <= kMaxToolInputDepth);
    if (depth <= kMaxToolInputDepth) {
      EXPECT_EQ(JsonDepth(part["input"]), depth);
    }
  }
}

TEST(UiReducer, RejectsToolInputDeltaForACallThatNeverStarted) {
  UiReducer reducer;
  ExpectRejected(reducer, R"({"type":"tool-input-delta","toolCallId":"c9","inputTextDelta":"{"})",
                 "\"c9\"");
}

TEST(UiReducer, RejectsToolInputDeltaAfterInputAvailable) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"tool-input-start","toolCallId":"c1","toolName":"t"})",
                     R"({"type":"tool-input-available","toolCallId":"c1","toolName":"t",
                         "input":{}})"});
  ExpectRejected(reducer, R"({"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"x"})",
                 "never started");
}

TEST(UiReducer, ToolInputAvailableWithoutStartCreatesThePart) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"tool-input-available","toolCallId":"c1","toolName":"web-search",
                         "input":{"q":"x"},"providerMetadata":{"google":{"thoughtSignature":"t"}}})"});
  ASSERT_EQ(reducer.message()["parts"].size(), 1u);
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["type"], "tool-web-search");
  EXPECT_EQ(part["state"], "input-available");
  EXPECT_EQ(part["input"]["q"], "x");
  EXPECT_EQ(part["callProviderMetadata"]["google"]["thoughtSignature"], "t");
}

TEST(UiReducer, ToolInputErrorMarksOutputErrorAndKeepsTheRawInput) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"tool-input-start","toolCallId":"c1","toolName":"get_weather"})",
                     R"({"type":"tool-input-error","toolCallId":"c1","toolName":"get_weather",
                         "input":"{bad","errorText":"Invalid input"})"});
  ASSERT_EQ(reducer.message()["parts"].size(), 1u);
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["state"], "output-error");
  EXPECT_EQ(part["errorText"], "Invalid input");
  EXPECT_EQ(part["rawInput"], "{bad");
}

TEST(UiReducer, ToolOutputsSetStateAndValue) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"tool-input-available","toolCallId":"a","toolName":"t","input":{}})",
            R"({"type":"tool-input-available","toolCallId":"b","toolName":"t","input":{}})",
            R"({"type":"tool-output-available","toolCallId":"a","output":{"tempC":4}})",
            R"({"type":"tool-output-error","toolCallId":"b","errorText":"An error occurred."})"});
  const Json& parts = reducer.message()["parts"];
  EXPECT_EQ(parts[0]["state"], "output-available");
  EXPECT_EQ(parts[0]["output"], Json::parse(R"({"tempC":4})"));
  EXPECT_EQ(parts[1]["state"], "output-error");
  EXPECT_EQ(parts[1]["errorText"], "An error occurred.");
}

TEST(UiReducer, LaterOutputOverwritesAPreliminaryOne) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"tool-input-available","toolCallId":"a","toolName":"t","input":{}})",
            R"({"type":"tool-output-available","toolCallId":"a","output":"50%",
                         "preliminary":true})",
            R"({"type":"tool-output-available","toolCallId":"a","output":"done"})"});
  EXPECT_EQ(reducer.message()["parts"][0]["output"], "done");
}

TEST(UiReducer, ApprovalRequestAndDenialSetTheirStates) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"tool-input-available","toolCallId":"c1","toolName":"delete_file",
                "input":{"path":"a"}})",
                     R"({"type":"tool-approval-request","approvalId":"ap1","toolCallId":"c1"})"});
  const Json& part = reducer.message()["parts"][0];
  EXPECT_EQ(part["state"], "approval-requested");
  EXPECT_EQ(part["approval"], Json::parse(R"({"id":"ap1"})"));
  ApplyAll(reducer, {R"({"type":"tool-output-denied","toolCallId":"c1"})"});
  EXPECT_EQ(reducer.message()["parts"][0]["state"], "output-denied");
  EXPECT_EQ(reducer.message()["parts"][0]["input"]["path"], "a");
}

TEST(UiReducer, RejectsOutputsApprovalsAndDenialsForUnknownCalls) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"tool-input-available","toolCallId":"c1","toolName":"t","input":{}})"});
  ExpectRejected(reducer, R"({"type":"tool-output-available","toolCallId":"zz","output":1})",
                 "unknown tool call \"zz\"");
  ExpectRejected(reducer, R"({"type":"tool-output-error","toolCallId":"zz","errorText":"e"})",
                 "unknown tool call");
  ExpectRejected(reducer, R"({"type":"tool-approval-request","approvalId":"a","toolCallId":"zz"})",
                 "unknown tool call");
  ExpectRejected(reducer, R"({"type":"tool-output-denied","toolCallId":"zz"})",
                 "unknown tool call");
  EXPECT_EQ(reducer.message()["parts"][0]["state"], "input-available");
}

TEST(UiReducer, ToolOutputFindsACallFromAnEarlierStep) {
  UiReducer reducer;
  ApplyAll(reducer,
           {R"({"type":"start-step"})",
            R"({"type":"tool-input-available","toolCallId":"c1","toolName":"t","input":{}})",
            R"({"type":"finish-step"})", R"({"type":"start-step"})",
            R"({"type":"tool-output-available","toolCallId":"c1","output":"ok"})"});
  EXPECT_EQ(reducer.message()["parts"][1]["state"], "output-available");
}

TEST(UiReducer, DataPartsWithTheSameTypeAndIdAreReplaced) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"data-weather","id":"w1","data":{"status":"loading"}})",
                     R"({"type":"text-start","id":"t"})",
                     R"({"type":"data-weather","id":"w1","data":{"status":"done","tempC":4}})"});
  const Json& parts = reducer.message()["parts"];
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0]["type"], "data-weather");
  EXPECT_EQ(parts[0]["id"], "w1");
  EXPECT_EQ(parts[0]["data"], Json::parse(R"({"status":"done","tempC":4})"));
}

TEST(UiReducer, DataPartsWithAnotherTypeOrIdOrNoIdAreAppended) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"data-weather","id":"w1","data":1})",
                     R"({"type":"data-weather","id":"w2","data":2})",
                     R"({"type":"data-progress","id":"w1","data":3})",
                     R"({"type":"data-note","data":4})", R"({"type":"data-note","data":5})"});
  const Json& parts = reducer.message()["parts"];
  ASSERT_EQ(parts.size(), 5u);
  EXPECT_EQ(parts[0]["data"], 1);
  EXPECT_EQ(parts[1]["data"], 2);
  EXPECT_EQ(parts[2]["data"], 3);
  EXPECT_EQ(parts[3]["data"], 4);
  EXPECT_FALSE(parts[3].contains("id"));
  EXPECT_EQ(parts[4]["data"], 5);
}

TEST(UiReducer, TransientDataPartsAreNotStored) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"data-weather","id":"w1","data":1})",
                     R"({"type":"data-weather","id":"w1","data":2,"transient":true})",
                     R"({"type":"data-toast","data":"hi","transient":true})"});
  const Json& parts = reducer.message()["parts"];
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0]["data"], 1);
}

TEST(UiReducer, FinishRemembersTheReasonAndMetadata) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"start","messageId":"M"})",
                     R"({"type":"finish","finishReason":"tool-calls",
                         "messageMetadata":{"usage":3}})"});
  EXPECT_EQ(reducer.finish_reason(), "tool-calls");
  EXPECT_EQ(reducer.message()["metadata"]["usage"], 3);
}

// llm-wire.md §1.2 and §1.5: messageMetadata is (deep-)merged into message.metadata.
TEST(UiReducer, MessageMetadataIsMergedIntoExistingMetadata) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"start","messageId":"M","messageMetadata":{"model":"x"}})",
                     R"({"type":"message-metadata","messageMetadata":{"usage":7}})"});
  EXPECT_EQ(reducer.message()["metadata"], Json::parse(R"({"model":"x","usage":7})"));
}

TEST(UiReducer, ErrorAbortAndUnknownChunksLeaveThePartsAlone) {
  UiReducer reducer;
  ApplyAll(reducer, {R"({"type":"text-start","id":"t"})"});
  Json before = reducer.message();
  ApplyAll(reducer,
           {R"({"type":"error","errorText":"boom"})", R"({"type":"abort"})", R"({"foo":1})"});
  EXPECT_EQ(reducer.message(), before);
}

TEST(UiReducer, ContinuingAnExistingMessageKeepsItsParts) {
  Json existing = Json::parse(R"({"id":"A","role":"assistant","metadata":{"k":1},"parts":[
      {"type":"step-start"},
      {"type":"text","text":"Deleting.","state":"done"},
      {"type":"tool-delete_file","toolCallId":"c1","state":"approval-responded",
       "input":{"path":"a"},"approval":{"id":"ap1","approved":true}}]})");
  UiReducer reducer(existing);
  EXPECT_EQ(reducer.message(), existing);
  EXPECT_EQ(reducer.ToolPartIndex("c1"), 2);
  ApplyAll(reducer, {R"({"type":"start","messageId":"A"})",
                     R"({"type":"tool-output-available","toolCallId":"c1",
                         "output":{"deleted":"a"}})",
                     R"({"type":"start-step"})", R"({"type":"text-start","id":"s1-0"})",
                     R"({"type":"text-delta","id":"s1-0","delta":"Done."})",
                     R"({"type":"text-end","id":"s1-0"})", R"({"type":"finish-step"})"});
  const Json& m = reducer.message();
  EXPECT_EQ(m["id"], "A");
  EXPECT_EQ(m["metadata"]["k"], 1);
  ASSERT_EQ(m["parts"].size(), 5u);
  EXPECT_EQ(m["parts"][0]["type"], "step-start");
  EXPECT_EQ(m["parts"][1]["text"], "Deleting.");
  EXPECT_EQ(m["parts"][2]["state"], "output-available");
  EXPECT_EQ(m["parts"][2]["output"]["deleted"], "a");
  EXPECT_EQ(m["parts"][2]["input"]["path"], "a");
  EXPECT_EQ(m["parts"][3]["type"], "step-start");
  EXPECT_EQ(m["parts"][4]["text"], "Done.");
}

TEST(UiReducer, AMessageWithoutPartsGetsAnEmptyPartsArray) {
  UiReducer reducer(Json::parse(R"({"id":"A","role":"assistant"})"));
  ASSERT_TRUE(reducer.message()["parts"].is_array());
  EXPECT_TRUE(reducer.message()["parts"].empty());
  EXPECT_EQ(reducer.message()["id"], "A");
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

// The input shown while a tool call streams, for texts cut at each awkward place.
Json InputAfter(const std::string& text) {
  UiReducer reducer;
  EXPECT_TRUE(
      reducer.Apply({{"type", "tool-input-start"}, {"toolCallId", "c"}, {"toolName", "t"}}).ok());
  EXPECT_TRUE(
      reducer.Apply({{"type", "tool-input-delta"}, {"toolCallId", "c"}, {"inputTextDelta", text}})
          .ok());
  return reducer.message()["parts"][0].value("input", Json());
}

TEST(UiReducer, PartialToolInputIsClosedSensibly) {
  EXPECT_EQ(InputAfter(R"({"city": "Os)"), Json::parse(R"({"city":"Os"})"));
  EXPECT_EQ(InputAfter(R"({"a": 1, "b)"), Json::parse(R"({"a":1})"));
  EXPECT_EQ(InputAfter(R"({"a": 1, "b": )"), Json::parse(R"({"a":1})"));
  EXPECT_EQ(InputAfter(R"({"list": [1, 2)"), Json::parse(R"({"list":[1,2]})"));
  EXPECT_EQ(InputAfter(R"({"a": "x\)"), Json::parse(R"({"a":"x"})"));
  EXPECT_EQ(InputAfter(R"({"a": tr)"), Json::object());
  EXPECT_TRUE(InputAfter(R"(])").is_null());
}

}  // namespace
}  // namespace baton
