// fake-llm's script: validation, the choice of a response per request, and the rendering of
// replies and raw events into wire bytes, checked against the test vectors of
// reference/llm-wire.md §5 and by decoding them with baton's own stream decoders.
#include "tools/fake-llm/script.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/provider_streams.h"
#include "runtime/model/sse_parser.h"

namespace baton::fakellm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

Script MustParse(std::string_view text) {
  absl::StatusOr<Script> script = Script::ParseText(text);
  EXPECT_TRUE(script.ok()) << script.status();
  return script.ok() ? *std::move(script) : Script();
}

std::vector<SseEvent> ParseSse(std::string_view bytes) {
  SseParser parser;
  std::vector<SseEvent> events;
  absl::Status status = parser.Feed(bytes, [&](SseEvent e) { events.push_back(std::move(e)); });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_FALSE(parser.Finish()) << "the body ends inside an event";
  return events;
}

template <typename Decoder>
std::vector<ModelEvent> Decode(std::string_view bytes) {
  Decoder decoder;
  std::vector<ModelEvent> out;
  for (const SseEvent& e : ParseSse(bytes)) {
    absl::Status status = decoder.OnEvent(e, out);
    EXPECT_TRUE(status.ok()) << status;
  }
  decoder.Finish(out);
  return out;
}

std::string Describe(const ModelEvent& e) {
  switch (e.type) {
    case ModelEvent::Type::kTextStart:
      return "text-start";
    case ModelEvent::Type::kTextDelta:
      return "text-delta " + e.delta;
    case ModelEvent::Type::kTextEnd:
      return "text-end";
    case ModelEvent::Type::kReasoningStart:
      return "reasoning-start";
    case ModelEvent::Type::kReasoningDelta:
      return "reasoning-delta " + e.delta + (e.provider_metadata.is_null() ? "" : " +metadata");
    case ModelEvent::Type::kReasoningEnd:
      return "reasoning-end";
    case ModelEvent::Type::kToolInputStart:
      return "tool-input-start " + e.id + " " + e.tool_name;
    case ModelEvent::Type::kToolInputDelta:
      return "tool-input-delta " + e.delta;
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

// One response, rendered for a request to `path`.
ResponsePlan RenderOne(std::string_view response, std::string_view path = "/v1/messages") {
  Script script = MustParse(std::string("{\"responses\":[") + std::string(response) + "]}");
  if (script.size() != 1) return ResponsePlan();
  return script.Render(0, path, 1);
}

// --- validation ---

void ExpectInvalid(std::string_view text, std::string_view message) {
  absl::StatusOr<Script> script = Script::ParseText(text);
  ASSERT_FALSE(script.ok()) << text;
  EXPECT_TRUE(absl::IsInvalidArgument(script.status())) << script.status();
  EXPECT_THAT(std::string(script.status().message()), HasSubstr(std::string(message))) << text;
}

TEST(ScriptTest, ErrorsNameTheResponseAndTheField) {
  ExpectInvalid("{\"responses\": [", "script: invalid JSON");
  ExpectInvalid("[]", "script: must be an object");
  ExpectInvalid(R"({"responses": {}})", "responses: must be an array");
  ExpectInvalid(R"({"responses": [], "extra": 1})", "script.extra: unknown field");
  ExpectInvalid(R"({"responses": [{}, {"format": "gemini"}]})",
                "responses[1].format: unknown format \"gemini\"");
  ExpectInvalid(R"({"responses": [{"events": [], "reply": {}}]})",
                "responses[0].reply: give either events or reply");
  ExpectInvalid(R"({"responses": [{"body": "x", "reply": {"text": "a"}}]})", "responses[0].body");
  ExpectInvalid(R"({"responses": [{"dealy_ms": 5}]})", "responses[0].dealy_ms: unknown field");
  ExpectInvalid(R"({"responses": [{"match": {"order": 0}}]})", "responses[0].match.order");
  ExpectInvalid(R"({"responses": [{"match": {"body": "x"}}]})",
                "responses[0].match.body: unknown field");
  ExpectInvalid(R"({"responses": [{"status": 99}]})", "responses[0].status");
  ExpectInvalid(R"({"responses": [{"delay_ms": -1}]})", "responses[0].delay_ms");
  ExpectInvalid(R"({"responses": [{"hang": 1}]})", "responses[0].hang: must be true or false");
  ExpectInvalid(R"({"responses": [{"headers": {"Content-Length": "5"}}]})",
                "responses[0].headers.Content-Length: framing headers");
  ExpectInvalid(R"({"responses": [{"headers": {"x": 5}}]})", "responses[0].headers.x");
  ExpectInvalid(R"({"responses": [{"body": "x", "truncate_after": 1}]})",
                "responses[0].truncate_after: needs events or reply");
  ExpectInvalid(R"({"responses": [{"events": [], "chunk_bytes": 2, "split_at": [1]}]})",
                "responses[0].split_at: give chunk_bytes or split_at");
  ExpectInvalid(R"({"responses": [{"events": [1]}]})", "responses[0].events[0]");
  ExpectInvalid(R"({"responses": [{"events": [{"raw": 5}]}]})", "responses[0].events[0]");
  ExpectInvalid(
      R"({"responses": [{"format": "anthropic", "events": [{"type": "ping"}, {"x": 1}]}]})",
      "responses[0].events[1].type");
  ExpectInvalid(R"({"responses": [{"events": [{"event": "x"}]}]})",
                "responses[0].events[0].data: is missing");
  ExpectInvalid(R"({"responses": [{"reply": {"tool_calls": [{"input": {}}]}}]})",
                "responses[0].reply.tool_calls[0].name: is missing");
  ExpectInvalid(R"({"responses": [{"reply": {"text": "a", "text_chunks": ["a"]}}]})",
                "responses[0].reply.text_chunks");
  ExpectInvalid(R"({"responses": [{"reply": {"usage": {"input_tokens": "9"}}}]})",
                "responses[0].reply.usage.input_tokens");
  ExpectInvalid(R"({"responses": [{"reply": {"txt": "a"}}]})", "responses[0].reply.txt");
  ExpectInvalid(R"({"responses": [{"events": [{"hold_ms": -5}]}]})",
                "responses[0].events[0].hold_ms: must be a non-negative integer");
  ExpectInvalid(R"({"responses": [{"events": [{"hold_ms": 5, "type": "ping"}]}]})",
                "responses[0].events[0]: a hold is");
  ExpectInvalid(R"({"responses": [{"events": [{"hold_ms": 5}], "chunk_bytes": 2}]})",
                "responses[0].events: hold_ms items cannot be combined");
}

TEST(ScriptTest, AcceptsEveryDocumentedField) {
  Script script = MustParse(R"({"responses": [
      {"comment": "all of them", "match": {"contains": "Oslo", "path": "/v1/messages", "order": 2},
       "repeat": true, "status": 200, "headers": {"Retry-After": "1"}, "format": "anthropic",
       "reply": {"id": "msg_1", "reasoning": "r", "signature": "s", "text": "t",
                 "tool_calls": [{"id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
                 "finish": "tool_use", "usage": {"input_tokens": 9, "output_tokens": 5},
                 "model": "m"},
       "ttfb_ms": 1, "delay_ms": 2, "truncate_after": 3, "chunk_bytes": 4, "hang": false},
      {"status": 529, "body": {"type": "error"}},
      {"events": ["[DONE]"], "split_at": [1, 2]}]})");
  ASSERT_EQ(script.size(), 3u);
  const ScriptedResponse& r = script.response(0);
  EXPECT_EQ(r.match_contains, "Oslo");
  EXPECT_EQ(r.match_path, "/v1/messages");
  EXPECT_EQ(r.match_order, 2);
  EXPECT_TRUE(r.repeat);
  EXPECT_EQ(r.format, WireFormat::kAnthropic);
  EXPECT_EQ(r.headers[0].first, "retry-after");
  EXPECT_EQ(r.truncate_after, 3);
  EXPECT_EQ(script.response(1).body, R"({"type":"error"})");
  EXPECT_THAT(script.response(2).split_at, ElementsAre(1, 2));
}

// --- matching ---

TEST(ScriptTest, ResponsesWithoutMatchServeInListOrderThenRunOut) {
  Script script = MustParse(R"({"responses": [{"status": 201}, {"status": 202}]})");
  EXPECT_EQ(script.Pick("/v1/messages", "{}"), 0);
  EXPECT_EQ(script.Pick("/v1/messages", "{}"), 1);
  EXPECT_EQ(script.Pick("/v1/messages", "{}"), -1);
  EXPECT_EQ(script.requests(), 3);
}

TEST(ScriptTest, OrderMatchesTheRequestNumber) {
  Script script = MustParse(R"({"responses": [
      {"match": {"order": 2}, "status": 202}, {"status": 201}, {"status": 203}]})");
  EXPECT_EQ(script.Pick("/a", ""), 1);  // request 1: the first response waits for request 2
  EXPECT_EQ(script.Pick("/a", ""), 0);
  EXPECT_EQ(script.Pick("/a", ""), 2);
  EXPECT_EQ(script.Pick("/a", ""), -1);
}

TEST(ScriptTest, ContainsAndPathRouteRequests) {
  Script script = MustParse(R"({"responses": [
      {"match": {"contains": "Oslo"}, "status": 201},
      {"match": {"path": "/v1/chat/completions"}, "status": 202},
      {"match": {"contains": "Bergen", "path": "/v1/messages"}, "status": 203}]})");
  EXPECT_EQ(script.Pick("/v1/messages", R"({"q":"Bergen"})"), 2);
  EXPECT_EQ(script.Pick("/v1/chat/completions?x=1", R"({"q":"Paris"})"), 1);
  EXPECT_EQ(script.Pick("/v1/messages", R"({"q":"Paris"})"), -1);
  EXPECT_EQ(script.Pick("/v1/messages", R"({"q":"Oslo"})"), 0);
  EXPECT_EQ(script.Pick("/v1/messages", R"({"q":"Oslo"})"), -1);  // used up
}

TEST(ScriptTest, RepeatServesAnyNumberOfRequests) {
  Script script = MustParse(R"({"responses": [
      {"match": {"contains": "special"}, "status": 201},
      {"repeat": true, "status": 202}]})");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(script.Pick("/v1/messages", "plain"), 1);
  EXPECT_EQ(script.Pick("/v1/messages", "special"), 0);
  EXPECT_EQ(script.Pick("/v1/messages", "special"), 1);
}

// --- rendering replies ---

constexpr std::string_view kV1 =
    "event: message_start\n"
    R"(data: {"type":"message_start","message":{"id":"msg_p1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}})"
    "\n\n"
    "event: content_block_start\n"
    R"(data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"
    "\n\n"
    "event: ping\n"
    R"(data: {"type":"ping"})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}})"
    "\n\n"
    "event: content_block_delta\n"
    R"(data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there."}})"
    "\n\n"
    "event: content_block_stop\n"
    R"(data: {"type":"content_block_stop","index":0})"
    "\n\n"
    "event: message_delta\n"
    R"(data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}})"
    "\n\n"
    "event: message_stop\n"
    R"(data: {"type":"message_stop"})"
    "\n\n";

TEST(ScriptTest, AnthropicTextReplyIsTheV1Stream) {
  ResponsePlan plan = RenderOne(R"({"reply": {"text": "Hi there.",
                                              "usage": {"input_tokens": 9, "output_tokens": 5}}})");
  EXPECT_TRUE(plan.stream);
  EXPECT_FALSE(plan.truncated);
  EXPECT_EQ(plan.status, 200);
  EXPECT_EQ(plan.writes.size(), 8u);  // one write per event

  // Structurally V1: the same events, each named by its type.
  std::vector<SseEvent> rendered = ParseSse(plan.Body());
  std::vector<SseEvent> expected = ParseSse(kV1);
  ASSERT_EQ(rendered.size(), expected.size());
  for (size_t i = 0; i < rendered.size(); ++i) {
    EXPECT_EQ(rendered[i].event, expected[i].event) << i;
    Json got = Json::parse(rendered[i].data);
    Json want = Json::parse(expected[i].data);
    EXPECT_EQ(got["type"], rendered[i].event);
    if (got["type"] == "message_start") {
      EXPECT_EQ(got["message"]["id"], "msg_fake_1");  // made from the request number
      got["message"]["id"] = "msg_p1";
      got["message"]["model"] = "m";
    }
    EXPECT_EQ(got, want) << i;
  }
  // And with the id and model given, byte for byte.
  ResponsePlan exact = RenderOne(R"({"reply": {"id": "msg_p1", "model": "m", "text": "Hi there.",
                                               "usage": {"input_tokens": 9, "output_tokens": 5}}})");
  EXPECT_EQ(exact.Body(), kV1);

  EXPECT_THAT(
      Describe(Decode<AnthropicStream>(plan.Body())),
      ElementsAre("text-start", "text-delta Hi ", "text-delta there.", "text-end", "finish stop"));
}

TEST(ScriptTest, AnthropicFullReplyDecodesToReasoningTextAndToolCall) {
  ResponsePlan plan = RenderOne(R"({"reply": {
      "reasoning": "Need live data.", "signature": "c2lnLWV4YW1wbGU=", "text": "Checking.",
      "tool_calls": [{"id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
                     {"name": "list_files"}],
      "usage": {"input_tokens": 40, "output_tokens": 30}}})");
  std::vector<std::string> types;
  for (const SseEvent& e : ParseSse(plan.Body())) types.push_back(e.event);
  EXPECT_THAT(types,
              ElementsAre("message_start", "content_block_start", "ping", "content_block_delta",
                          "content_block_delta", "content_block_stop", "content_block_start",
                          "content_block_delta", "content_block_stop", "content_block_start",
                          "content_block_delta", "content_block_delta", "content_block_stop",
                          "content_block_start", "content_block_delta", "content_block_delta",
                          "content_block_stop", "message_delta", "message_stop"));
  EXPECT_THAT(plan.Body(), HasSubstr(R"("stop_reason":"tool_use")"));
  EXPECT_THAT(
      Describe(Decode<AnthropicStream>(plan.Body())),
      ElementsAre(
          "reasoning-start", "reasoning-delta Need live data.", "reasoning-delta  +metadata",
          "reasoning-end", "text-start", "text-delta Checking.", "text-end",
          "tool-input-start toolu_01 get_weather", "tool-input-delta {\"city\"",
          "tool-input-delta :\"Oslo\"}", "tool-call toolu_01 get_weather {\"city\":\"Oslo\"}",
          "tool-input-start toolu_fake_1 list_files", "tool-input-delta {", "tool-input-delta }",
          "tool-call toolu_fake_1 list_files {}", "finish tool-calls"));
}

constexpr std::string_view kV2 =
    R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null})"
    "\n\n"
    R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}})"
    "\n\n"
    "data: [DONE]\n\n";

TEST(ScriptTest, OpenAiTextReplyIsTheV2Stream) {
  ResponsePlan plan =
      RenderOne(R"({"reply": {"id": "c1", "model": "m", "text_chunks": ["Hel", "lo"],
                                              "usage": {"input_tokens": 5, "output_tokens": 2}}})",
                "/v1/chat/completions");
  EXPECT_EQ(plan.Body(), kV2);
  std::vector<ModelEvent> events = Decode<OpenAiStream>(plan.Body());
  EXPECT_THAT(Describe(events), ElementsAre("text-start", "text-delta Hel", "text-delta lo",
                                            "text-end", "finish stop"));
  EXPECT_EQ(events.back().usage.input_tokens, 5);
  EXPECT_EQ(events.back().usage.output_tokens, 2);
}

TEST(ScriptTest, OpenAiToolCallsAndReasoning) {
  ResponsePlan plan = RenderOne(R"({"format": "openai", "reply": {
      "reasoning": "Think.", "text": "On it.",
      "tool_calls": [{"id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}},
                     {"id": "call_b", "name": "get_time", "input": {}}]}})");
  std::vector<SseEvent> events = ParseSse(plan.Body());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().data, "[DONE]");
  Json first_call = Json::parse(events[4].data)["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(first_call, Json::parse(R"({"index":0,"id":"call_a","type":"function",
                                        "function":{"name":"get_weather","arguments":""}})"));
  Json reasoning = Json::parse(events[1].data)["choices"][0]["delta"];
  EXPECT_EQ(reasoning, Json::parse(R"({"reasoning_content":"Think."})"));
  // No usage: no usage chunk and no "usage" key (include_usage was off).
  EXPECT_THAT(plan.Body(), Not(HasSubstr("usage")));
  EXPECT_THAT(
      Describe(Decode<OpenAiStream>(plan.Body())),
      ElementsAre("reasoning-start", "reasoning-delta Think.", "reasoning-end", "text-start",
                  "text-delta On ", "text-delta it.", "tool-input-start call_a get_weather",
                  "tool-input-delta {\"city\"", "tool-input-delta :\"Oslo\"}",
                  "tool-input-start call_b get_time", "tool-input-delta {", "tool-input-delta }",
                  "text-end", "tool-call call_a get_weather {\"city\":\"Oslo\"}",
                  "tool-call call_b get_time {}", "finish tool-calls"));
}

TEST(ScriptTest, FormatComesFromThePathUnlessGiven) {
  std::string_view reply = R"({"reply": {"text": "x"}})";
  EXPECT_THAT(RenderOne(reply, "/v1/messages").Body(), HasSubstr("event: message_start\n"));
  EXPECT_THAT(RenderOne(reply, "/anthropic/v1/messages?beta=true").Body(),
              HasSubstr("event: message_start\n"));
  EXPECT_THAT(RenderOne(reply, "/v1/chat/completions").Body(), HasSubstr("chat.completion.chunk"));
  EXPECT_THAT(RenderOne(R"({"format": "openai", "reply": {"text": "x"}})", "/v1/messages").Body(),
              HasSubstr("chat.completion.chunk"));
  EXPECT_EQ(FormatForPath("/v1/messages"), WireFormat::kAnthropic);
  EXPECT_EQ(FormatForPath("/v1/chat/completions"), WireFormat::kOpenAi);
}

TEST(ScriptTest, FinishDefaultsAndOverrides) {
  EXPECT_THAT(RenderOne(R"({"reply": {"tool_calls": [{"name": "t"}]}})").Body(),
              HasSubstr(R"("stop_reason":"tool_use")"));
  EXPECT_THAT(RenderOne(R"({"reply": {"text": "x", "finish": "max_tokens"}})").Body(),
              HasSubstr(R"("stop_reason":"max_tokens")"));
  EXPECT_THAT(
      RenderOne(R"({"reply": {"tool_calls": [{"name": "t"}]}})", "/v1/chat/completions").Body(),
      HasSubstr(R"("finish_reason":"tool_calls")"));
  EXPECT_THAT(
      RenderOne(R"({"reply": {"text": "x", "finish": "length"}})", "/v1/chat/completions").Body(),
      HasSubstr(R"("finish_reason":"length")"));
}

TEST(ScriptTest, SplitWordsKeepsTheSpaces) {
  EXPECT_THAT(SplitWords("Hi there."), ElementsAre("Hi ", "there."));
  EXPECT_THAT(SplitWords("It is 4 °C in Oslo."),
              ElementsAre("It ", "is ", "4 ", "°C ", "in ", "Oslo."));
  EXPECT_THAT(SplitWords("  lead  and trail  "), ElementsAre("  lead  ", "and ", "trail  "));
  EXPECT_THAT(SplitWords("one"), ElementsAre("one"));
  EXPECT_TRUE(SplitWords("").empty());
}

// --- raw events ---

TEST(ScriptTest, EventsAreRenderedExactly) {
  // Typed Anthropic events: named by type, compact JSON, non-ASCII as raw UTF-8.
  EXPECT_EQ(RenderEvent(Json::parse(R"({"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": "4 °C 👋"}})"),
                        WireFormat::kAnthropic),
            "event: content_block_delta\n"
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
            "\"text_delta\",\"text\":\"4 °C 👋\"}}\n\n");
  // Verbatim data keeps its escapes, even a lone surrogate half.
  EXPECT_EQ(RenderEvent(Json::parse(R"({"event": "content_block_delta",
                                        "data": "{\"text\":\"\\ud83d\"}"})"),
                        WireFormat::kAnthropic),
            "event: content_block_delta\ndata: {\"text\":\"\\ud83d\"}\n\n");
  EXPECT_EQ(RenderEvent(Json::parse(R"({"event": "x", "data": {"b": 1, "a": [true]}})"),
                        WireFormat::kOpenAi),
            "event: x\ndata: {\"b\":1,\"a\":[true]}\n\n");
  EXPECT_EQ(RenderEvent(Json::parse(R"({"data": "one\ntwo"})"), WireFormat::kOpenAi),
            "data: one\ndata: two\n\n");
  // Raw bytes exactly as given, malformed or not.
  EXPECT_EQ(
      RenderEvent(Json::parse(R"({"raw": "event: x\ndata: {not json"})"), WireFormat::kAnthropic),
      "event: x\ndata: {not json");
  // OpenAI: objects as data lines, and the [DONE] marker.
  EXPECT_EQ(RenderEvent(Json::parse(R"({"id": "c", "choices": []})"), WireFormat::kOpenAi),
            "data: {\"id\":\"c\",\"choices\":[]}\n\n");
  EXPECT_EQ(RenderEvent(Json("[DONE]"), WireFormat::kOpenAi), "data: [DONE]\n\n");
}

TEST(ScriptTest, RawEventsPassThroughAResponse) {
  ResponsePlan plan = RenderOne(R"({"events": [
      {"type": "ping"}, {"raw": "event: ping\r\ndata: {}\r\n\r\n"}, {"raw": ""}, "[DONE]"]})");
  EXPECT_THAT(plan.writes, ElementsAre("event: ping\ndata: {\"type\":\"ping\"}\n\n",
                                       "event: ping\r\ndata: {}\r\n\r\n", "data: [DONE]\n\n"));
}

// --- writes ---

TEST(ScriptTest, TruncateAfterKeepsTheFirstEventsAndCutsTheStream) {
  ResponsePlan plan =
      RenderOne(R"({"reply": {"text": "a b c d"}, "truncate_after": 3})", "/v1/chat/completions");
  EXPECT_TRUE(plan.truncated);
  ASSERT_EQ(plan.writes.size(), 3u);
  EXPECT_THAT(plan.writes[2], HasSubstr(R"("content":"b ")"));
  EXPECT_THAT(plan.Body(), Not(HasSubstr("[DONE]")));
  EXPECT_THAT(plan.Body(), Not(HasSubstr("finish_reason\":\"stop")));
}

TEST(ScriptTest, HoldsAreNotSentButSayWhatEachWriteWaitsFor) {
  ResponsePlan plan = RenderOne(R"({"events": [{"type": "a"}, {"hold_ms": 60}, {"type": "b"},
      {"hold_ms": 40}, {"hold_ms": 10}, {"type": "c"}, {"hold_ms": 5}]})");
  ASSERT_EQ(plan.writes.size(), 3u);
  EXPECT_THAT(plan.writes[1], HasSubstr("event: b"));
  // Each write's reading of the script clock, counted from the request: the holds before it.
  EXPECT_THAT(plan.holds_ms, ElementsAre(0, 60, 110));
  EXPECT_EQ(plan.hold_end_ms, 115);
  // Holds do not count as events for truncate_after; a cut stream waits for nothing at its end.
  ResponsePlan cut = RenderOne(R"({"events": [{"type": "a"}, {"hold_ms": 60}, {"type": "b"},
      {"hold_ms": 40}, {"type": "c"}], "truncate_after": 2})");
  ASSERT_EQ(cut.writes.size(), 2u);
  EXPECT_THAT(cut.holds_ms, ElementsAre(0, 60));
  EXPECT_EQ(cut.hold_end_ms, 0);
  // No holds: nothing to wait for.
  EXPECT_TRUE(RenderOne(R"({"events": [{"type": "a"}]})").holds_ms.empty());
}

TEST(ScriptTest, SplitAtCutsTheBodyWhereItSays) {
  ResponsePlan whole = RenderOne(R"({"events": [{"type": "ping"}, {"type": "message_stop"}]})");
  std::string body = whole.Body();
  ResponsePlan plan = RenderOne(R"({"events": [{"type": "ping"}, {"type": "message_stop"}],
                    "split_at": [40, 3, 3, 0, 100000]})");
  EXPECT_THAT(plan.writes, ElementsAre(body.substr(0, 3), body.substr(3, 37), body.substr(40)));
  EXPECT_EQ(plan.gap, Script::kSplitGap);
}

TEST(ScriptTest, ChunkBytesCutsEveryNBytes) {
  ResponsePlan plan = RenderOne(R"({"reply": {"text": "Grüße 👋"}, "chunk_bytes": 7,
                                    "delay_ms": 3})");
  ASSERT_GT(plan.writes.size(), 10u);
  for (size_t i = 0; i + 1 < plan.writes.size(); ++i) EXPECT_EQ(plan.writes[i].size(), 7u);
  EXPECT_LE(plan.writes.back().size(), 7u);
  EXPECT_EQ(plan.Body(), RenderOne(R"({"reply": {"text": "Grüße 👋"}})").Body());
  EXPECT_EQ(plan.gap, std::chrono::milliseconds(3));
}

TEST(ScriptTest, PlainBodiesAndHeaders) {
  ResponsePlan plan = RenderOne(R"({"status": 429, "headers": {"Retry-After": "1"},
      "body": {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow"}}})");
  EXPECT_FALSE(plan.stream);
  EXPECT_EQ(plan.status, 429);
  EXPECT_THAT(plan.headers,
              ElementsAre(std::pair<std::string, std::string>("retry-after", "1"),
                          std::pair<std::string, std::string>("content-type", "application/json")));
  EXPECT_EQ(plan.Body(),
            R"({"type":"error","error":{"type":"rate_limit_error","message":"Slow"}})");
  EXPECT_EQ(RenderHead(plan, true),
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\n"
            "content-type: application/json\r\ncontent-length: 69\r\n"
            "connection: keep-alive\r\n\r\n");

  ResponsePlan text =
      RenderOne(R"({"body": "not json", "headers": {"content-type": "text/plain"}})");
  EXPECT_EQ(text.Body(), "not json");
  EXPECT_THAT(text.headers,
              ElementsAre(std::pair<std::string, std::string>("content-type", "text/plain")));

  ResponsePlan stream = RenderOne(R"({"events": []})");
  EXPECT_EQ(RenderHead(stream, false),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            "transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
  EXPECT_EQ(ChunkFrame(std::string(26, 'z')), "1a\r\n" + std::string(26, 'z') + "\r\n");
}

TEST(ScriptTest, NoResponseIsA500ThatSaysWhichRequest) {
  ResponsePlan plan = Script::NoResponse(7);
  EXPECT_EQ(plan.status, 500);
  EXPECT_EQ(plan.Body(), R"({"error":{"message":"fake-llm: no scripted response for request 7"}})");
}

}  // namespace
}  // namespace baton::fakellm
