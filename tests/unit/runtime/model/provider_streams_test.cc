// The SSE parser and the two provider stream decoders against the test vectors of
// reference/llm-wire.md §5, fed as raw wire bytes.
#include "runtime/model/provider_streams.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/sse_parser.h"

namespace baton {
namespace {

using ::testing::ElementsAre;

// An Anthropic SSE event: `event: <type>` then `data: <json>`.
std::string A(const std::string& type, const std::string& json) {
  return "event: " + type + "\ndata: " + json + "\n\n";
}
std::string O(const std::string& json) { return "data: " + json + "\n\n"; }

template <typename Decoder>
std::vector<ModelEvent> Decode(const std::vector<std::string>& reads, bool finish = true) {
  SseParser parser;
  Decoder decoder;
  std::vector<ModelEvent> out;
  for (const std::string& read : reads) {
    absl::Status s = parser.Feed(read, [&](SseEvent e) { (void)decoder.OnEvent(e, out); });
    EXPECT_TRUE(s.ok()) << s;
  }
  parser.Finish();
  if (finish) decoder.Finish(out);
  return out;
}

std::string Describe(const ModelEvent& e) {
  switch (e.type) {
    case ModelEvent::Type::kTextStart:
      return "text-start " + e.id;
    case ModelEvent::Type::kTextDelta:
      return "text-delta " + e.id + " " + e.delta;
    case ModelEvent::Type::kTextEnd:
      return "text-end " + e.id;
    case ModelEvent::Type::kReasoningStart:
      return "reasoning-start " + e.id;
    case ModelEvent::Type::kReasoningDelta:
      return "reasoning-delta " + e.id + " " + e.delta;
    case ModelEvent::Type::kReasoningEnd:
      return "reasoning-end " + e.id;
    case ModelEvent::Type::kToolInputStart:
      return "tool-input-start " + e.id + " " + e.tool_name;
    case ModelEvent::Type::kToolInputDelta:
      return "tool-input-delta " + e.id + " " + e.delta;
    case ModelEvent::Type::kToolCall:
      return "tool-call " + e.id + " " + e.tool_name + " " + e.input;
    case ModelEvent::Type::kFinish:
      return "finish " + e.finish_reason;
    case ModelEvent::Type::kError:
      return "error " + e.error;
  }
  return "?";
}

std::vector<std::string> Describe(const std::vector<ModelEvent>& events) {
  std::vector<std::string> out;
  for (const ModelEvent& e : events) out.push_back(Describe(e));
  return out;
}

const std::string kMessageStart = A(
    "message_start",
    R"({"type":"message_start","message":{"id":"msg_p1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}})");

TEST(SseParser, HandlesEveryLineEndingCommentsAndMultilineData) {
  SseParser parser;
  std::vector<SseEvent> events;
  auto keep = [&](SseEvent e) { events.push_back(std::move(e)); };
  ASSERT_TRUE(parser.Feed(": keepalive\n\nevent: a\r\ndata: 1\r\ndata:2\r\n\r\n", keep).ok());
  ASSERT_TRUE(parser.Feed("data: x\rid: 7\r\r", keep).ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "a");
  EXPECT_EQ(events[0].data, "1\n2");
  EXPECT_EQ(events[1].data, "x");
  EXPECT_EQ(events[1].id, "7");
}

TEST(SseParser, ReassemblesWhatReadsCutAnywhere) {
  const std::string body = "event: e\r\ndata: Grüße 👋\r\n\r\ndata: second\n\n";
  for (size_t cut1 = 1; cut1 < body.size(); ++cut1) {
    for (size_t cut2 = cut1; cut2 < body.size(); cut2 += 7) {
      SseParser parser;
      std::vector<SseEvent> events;
      auto keep = [&](SseEvent e) { events.push_back(std::move(e)); };
      ASSERT_TRUE(parser.Feed(body.substr(0, cut1), keep).ok());
      ASSERT_TRUE(parser.Feed(body.substr(cut1, cut2 - cut1), keep).ok());
      ASSERT_TRUE(parser.Feed(body.substr(cut2), keep).ok());
      ASSERT_EQ(events.size(), 2u) << cut1 << "," << cut2;
      EXPECT_EQ(events[0].data, "Grüße 👋");
      EXPECT_EQ(events[1].data, "second");
      EXPECT_FALSE(parser.Finish());
    }
  }
}

TEST(SseParser, APartialLastEventIsDiscardedNotParsed) {
  SseParser parser;
  int events = 0;
  ASSERT_TRUE(parser.Feed("data: {\"a\":1}\n\ndata: {\"trunc", [&](SseEvent) { ++events; }).ok());
  EXPECT_EQ(events, 1);
  EXPECT_TRUE(parser.Finish());
}

TEST(SseParser, RefusesAnEventThatNeverEnds) {
  SseParser parser;
  std::string big(1 << 20, 'x');
  absl::Status s;
  for (int i = 0; i < 20 && s.ok(); ++i) s = parser.Feed("data: " + big + "\n", [](SseEvent) {});
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
}

TEST(AnthropicStream, PlainText) {  // V1
  std::vector<ModelEvent> events = Decode<AnthropicStream>(
      {kMessageStart,
       A("content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"),
       A("ping", R"({"type":"ping"})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there."}})"),
       A("content_block_stop", R"({"type":"content_block_stop","index":0})"),
       A("message_delta",
         R"({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}})"),
       A("message_stop", R"({"type":"message_stop"})")});
  EXPECT_THAT(Describe(events), ElementsAre("text-start 0", "text-delta 0 Hi ",
                                            "text-delta 0 there.", "text-end 0", "finish stop"));
  EXPECT_EQ(events.back().usage.input_tokens, 9);
  EXPECT_EQ(events.back().usage.output_tokens, 5);
}

TEST(AnthropicStream, TextThenToolCallFinalisedAtBlockStop) {  // V3, V10
  std::vector<ModelEvent> events = Decode<AnthropicStream>(
      {kMessageStart,
       A("content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Os"}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"lo\"}"}})"),
       A("content_block_stop", R"({"type":"content_block_stop","index":0})"),
       A("content_block_start",
         R"({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_07","name":"list_files","input":{}}})"),
       A("content_block_stop", R"({"type":"content_block_stop","index":1})"),
       A("message_delta",
         R"({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":30}})"),
       A("message_stop", R"({"type":"message_stop"})")});
  EXPECT_THAT(Describe(events), ElementsAre("tool-input-start toolu_01 get_weather",
                                            "tool-input-delta toolu_01 {\"city\": \"Os",
                                            "tool-input-delta toolu_01 lo\"}",
                                            "tool-call toolu_01 get_weather {\"city\": \"Oslo\"}",
                                            "tool-input-start toolu_07 list_files",
                                            "tool-call toolu_07 list_files ", "finish tool-calls"));
}

TEST(AnthropicStream, ThinkingKeepsItsSignatureAndRedactedData) {  // V5
  std::vector<ModelEvent> events = Decode<AnthropicStream>(
      {kMessageStart,
       A("content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need live data."}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}})"),
       A("content_block_stop", R"({"type":"content_block_stop","index":0})"),
       A("content_block_start",
         R"({"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"RU5D"}})"),
       A("content_block_stop", R"({"type":"content_block_stop","index":1})"),
       A("message_delta", R"({"type":"message_delta","delta":{"stop_reason":"end_turn"}})"),
       A("message_stop", R"({"type":"message_stop"})")});
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[2].delta, "");
  EXPECT_EQ(events[2].provider_metadata, Json::parse(R"({"anthropic":{"signature":"c2ln"}})"));
  EXPECT_EQ(events[4].provider_metadata, Json::parse(R"({"anthropic":{"redactedData":"RU5D"}})"));
}

TEST(AnthropicStream, AnErrorEventEndsTheCallAndSaysWhetherToRetry) {  // V6
  std::vector<ModelEvent> events = Decode<AnthropicStream>(
      {kMessageStart,
       A("content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial"}})"),
       A("error",
         R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})")});
  EXPECT_THAT(Describe(events),
              ElementsAre("text-start 0", "text-delta 0 Partial", "error Overloaded"));
  EXPECT_TRUE(events.back().retryable);
}

// A provider's event is outside data: nested deeper than kMaxDataDepth (here in a thinking
// block's signature, which would be replayed to the model), the call fails before anything of
// the event is built, and the text before it is kept.
TEST(ProviderStreams, AnEventNestedTooDeeplyEndsTheCallWithAnError) {
  for (int depth : {kMaxDataDepth - 4, kMaxDataDepth - 3, kMaxDataDepth - 2, 100000}) {
    SCOPED_TRACE(depth);
    std::string nest = std::string(depth, '[') + "1" + std::string(depth, ']');
    // Three levels above the nest: the event, its delta, the signature's value.
    std::vector<ModelEvent> a = Decode<AnthropicStream>(
        {kMessageStart,
         A("content_block_start",
           R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"),
         A("content_block_delta",
           R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hal"}})"),
         A("content_block_delta",
           R"({"type":"content_block_delta","index":0,"delta":{"x":{"y":)" + nest + "}}}")},
        /*finish=*/false);
    ASSERT_GE(a.size(), 2u);
    EXPECT_EQ(Describe(a[1]), "text-delta 0 Hal");
    bool failed = a.back().type == ModelEvent::Type::kError;
    EXPECT_EQ(failed, depth + 3 > kMaxDataDepth);
    if (failed) {
      EXPECT_EQ(a.back().error,
                absl::StrCat("the model's stream sent an event that is not JSON baton takes: JSON "
                             "nests deeper than ",
                             kMaxDataDepth, " levels at byte ", 56 + kMaxDataDepth));
    }
    std::vector<ModelEvent> o = Decode<OpenAiStream>(
        {O(R"({"id":"r","choices":[{"index":0,"delta":{"content":"Hal"}}]})"),
         O(R"({"id":"r","choices":[{"index":0,"delta":{"x":)" + nest + "}}]}")},
        /*finish=*/false);
    ASSERT_FALSE(o.empty());
    EXPECT_EQ(o.back().type == ModelEvent::Type::kError, depth + 4 > kMaxDataDepth);
  }
}

TEST(AnthropicStream, ATruncatedStreamIsAnError) {  // V8
  std::vector<ModelEvent> events = Decode<AnthropicStream>(
      {kMessageStart,
       A("content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"),
       A("content_block_delta",
         R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hal"}})"),
       "event: content_block_delta\ndata: {\"type\":\"content_blo"});
  EXPECT_THAT(Describe(events), ElementsAre("text-start 0", "text-delta 0 Hal",
                                            "error the model's stream ended before message_stop"));
}

TEST(AnthropicStream, AUnicodeCharacterCutAcrossReadsArrivesWhole) {  // V9a
  std::string event = A(
      "content_block_delta",
      R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Grüße 👋"}})");
  size_t emoji = event.find("\xF0\x9F");
  std::vector<ModelEvent> events = Decode<AnthropicStream>(
      {kMessageStart,
       A("content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"),
       event.substr(0, emoji + 2), event.substr(emoji + 2, event.size() - emoji - 3),
       event.substr(event.size() - 1)},
      /*finish=*/false);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].delta, "Grüße 👋");
}

TEST(AnthropicStream, ARepeatedStartIsIgnoredASplicedOneStopsEverything) {  // V14
  std::string again = A("message_start", R"({"type":"message_start","message":{"id":"msg_p1"}})");
  std::string other = A("message_start", R"({"type":"message_start","message":{"id":"msg_s2"}})");
  EXPECT_TRUE(Decode<AnthropicStream>({kMessageStart, again}, false).empty());
  std::vector<ModelEvent> spliced = Decode<AnthropicStream>(
      {kMessageStart,
       A("content_block_start",
         R"({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"n","input":{}}})"),
       other, A("content_block_stop", R"({"type":"content_block_stop","index":0})")});
  EXPECT_THAT(Describe(spliced), ElementsAre("tool-input-start t n",
                                             "error the model's stream began a second message"));
}

TEST(OpenAiStream, PlainTextWithUsage) {  // V2
  std::vector<ModelEvent> events = Decode<OpenAiStream>(
      {O(R"({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null})"),
       O(R"({"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null})"),
       O(R"({"id":"c1","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}],"usage":null})"),
       O(R"({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null})"),
       O(R"({"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}})"),
       O("[DONE]")});
  EXPECT_THAT(Describe(events),
              ElementsAre("text-start txt-0", "text-delta txt-0 Hel", "text-delta txt-0 lo",
                          "text-end txt-0", "finish stop"));
  EXPECT_EQ(events.back().usage.input_tokens, 5);
  EXPECT_EQ(events.back().usage.output_tokens, 2);
}

TEST(OpenAiStream, ParallelCallsInterleaveAndAreFinalisedInIndexOrderAtTheEnd) {  // V4
  std::vector<ModelEvent> events = Decode<OpenAiStream>(
      {O(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":\"CET\"}"}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})"), O("[DONE]")});
  EXPECT_THAT(
      Describe(events),
      ElementsAre("tool-input-start call_a get_weather", "tool-input-start call_b get_time",
                  "tool-input-delta call_a {\"city\":", "tool-input-delta call_b {\"tz\":\"CET\"}",
                  "tool-input-delta call_a \"Oslo\"}",
                  "tool-call call_a get_weather {\"city\":\"Oslo\"}",
                  "tool-call call_b get_time {\"tz\":\"CET\"}", "finish tool-calls"));
  EXPECT_FALSE(events.back().usage.input_tokens.has_value());  // unknown, not 0
}

TEST(OpenAiStream, ANameAndIdThatArriveLateAreWaitedFor) {  // V13, V10
  std::vector<ModelEvent> events = Decode<OpenAiStream>(
      {O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_z","function":{"name":"search"}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"x\"}"}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"name":"list_files","arguments":""}}]},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})"), O("[DONE]")});
  EXPECT_THAT(Describe(events),
              ElementsAre("tool-input-start call_z search", "tool-input-delta call_z {\"q\":",
                          "tool-input-delta call_z \"x\"}", "tool-call call_z search {\"q\":\"x\"}",
                          "tool-input-start call_1 list_files", "tool-call call_1 list_files ",
                          "finish tool-calls"));
}

TEST(OpenAiStream, ReasoningFromCompatibleServersClosesWhenTextStarts) {
  std::vector<ModelEvent> events = Decode<OpenAiStream>(
      {O(R"({"choices":[{"index":0,"delta":{"reasoning_content":"think"},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"reasoning":" more"},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"content":"answer"},"finish_reason":"stop"}]})"),
       O("[DONE]")});
  EXPECT_THAT(
      Describe(events),
      ElementsAre("reasoning-start reasoning-0", "reasoning-delta reasoning-0 think",
                  "reasoning-delta reasoning-0  more", "reasoning-end reasoning-0",
                  "text-start txt-0", "text-delta txt-0 answer", "text-end txt-0", "finish stop"));
}

TEST(OpenAiStream, TruncationAndInStreamErrorsAreErrors) {  // V8, §4.3
  EXPECT_THAT(Describe(Decode<OpenAiStream>({O(
                  R"({"choices":[{"index":0,"delta":{"content":"Hal"},"finish_reason":null}]})")})),
              ElementsAre("text-start txt-0", "text-delta txt-0 Hal", "text-end txt-0",
                          "error the model's stream ended without a finish reason"));
  std::vector<ModelEvent> error = Decode<OpenAiStream>({O(
      R"({"error":{"message":"upstream overloaded","type":"server_error","param":null,"code":null}})")});
  EXPECT_THAT(Describe(error), ElementsAre("error upstream overloaded"));
  EXPECT_TRUE(error.back().retryable);
}

TEST(ProviderStreams, FinishReasonsMapToTheUnifiedSet) {
  EXPECT_EQ(AnthropicFinishReason("end_turn"), "stop");
  EXPECT_EQ(AnthropicFinishReason("max_tokens"), "length");
  EXPECT_EQ(AnthropicFinishReason("refusal"), "content-filter");
  EXPECT_EQ(AnthropicFinishReason("tool_use"), "tool-calls");
  EXPECT_EQ(AnthropicFinishReason("something_new"), "other");
  EXPECT_EQ(OpenAiFinishReason("function_call"), "tool-calls");
  EXPECT_EQ(OpenAiFinishReason("content_filter"), "content-filter");
  EXPECT_EQ(OpenAiFinishReason(""), "other");
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(OpenAiStream, ASurrogatePairSplitAcrossChunksArrivesAsOneCharacter) {  // V9b
  std::vector<ModelEvent> events = Decode<OpenAiStream>(
      {O(R"({"choices":[{"index":0,"delta":{"content":"\ud83d"},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"content":"\udc4b!"},"finish_reason":null}]})"),
       O(R"({"choices":[{"index":0,"delta":{"content":"\ud83d"},"finish_reason":"stop"}]})"),
       O("[DONE]")});
  std::string text;
  for (const ModelEvent& e : events) {
    if (e.type == ModelEvent::Type::kTextDelta) text += e.delta;
  }
  // The pair joined; the last high half, never completed, became U+FFFD.
  EXPECT_EQ(text, "\xF0\x9F\x91\x8B!\xEF\xBF\xBD");
  EXPECT_EQ(events.back().finish_reason, "stop");
}

}  // namespace
}  // namespace baton
