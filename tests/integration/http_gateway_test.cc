// baton-gateway through real processes: fake-llm, an orchestrator, a worker and the gateway,
// spoken to over HTTP/1.1 on a loopback socket as a browser's fetch would (docs/gateway.md).
// Each streamed answer is checked as the AI SDK reads it: by tests/web/validate-sse.mjs with
// the real `ai` packages, when the build has them (BATON_SSE_VALIDATOR).
#include "tests/integration/http_gateway.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/json.h"
#include "hooks/messages.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::HasSubstr;

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

Json WeatherCall(const std::string& text, const std::string& city) {
  return Json{{"reply",
               {{"text", text},
                {"tool_calls", Json::array({{{"id", "call_1"},
                                             {"name", "get_weather"},
                                             {"input", {{"city", city}}}}})}}}};
}

// An Anthropic stream that sends `first`, then waits for fake-llm's script clock to move by
// 100 ms, then sends `second`: a test acts on an answer half sent, with no race.
Json HeldReply(const std::string& first, const std::string& second) {
  auto delta = [](const std::string& text) {
    return Json{{"type", "content_block_delta"},
                {"index", 0},
                {"delta", {{"type", "text_delta"}, {"text", text}}}};
  };
  return Json{{"format", "anthropic"},
              {"events", Json::array({{{"type", "message_start"},
                                       {"message",
                                        {{"id", "msg_1"},
                                         {"type", "message"},
                                         {"role", "assistant"},
                                         {"model", "m"},
                                         {"content", Json::array()},
                                         {"usage", {{"input_tokens", 1}, {"output_tokens", 0}}}}}},
                                      {{"type", "content_block_start"},
                                       {"index", 0},
                                       {"content_block", {{"type", "text"}, {"text", ""}}}},
                                      delta(first),
                                      {{"hold_ms", 100}},
                                      delta(second),
                                      {{"type", "content_block_stop"}, {"index", 0}},
                                      {{"type", "message_delta"},
                                       {"delta", {{"stop_reason", "end_turn"}}},
                                       {"usage", {{"output_tokens", 2}}}},
                                      {{"type", "message_stop"}}})}};
}

// ---- the AI SDK transport -----------------------------------------------------------------------

// A chat's first POST creates its session and answers the message as one UI message stream with
// the AI SDK's headers; a second POST on the same chat answers the next message the same way.
TEST(HttpGatewayTest, AChatsFirstPostCreatesItAndEachPostStreamsItsAnswer) {
  auto g = GatewayStack::Start({.script = Script({Reply("Hello from baton."), Reply("Again.")})});
  ASSERT_NE(g, nullptr);

  HttpResponse first = g->PostMessage("c1", "u1", "Hi");
  EXPECT_EQ(first.status, 200) << first.body;
  EXPECT_TRUE(first.complete);
  EXPECT_THAT(first.headers["content-type"], HasSubstr("text/event-stream"));
  EXPECT_EQ(first.headers["x-vercel-ai-ui-message-stream"], "v1");
  EXPECT_EQ(first.headers["x-baton-chat-id"], "c1");
  Sse sse = ParseSse(first.body);
  EXPECT_TRUE(sse.done);
  ASSERT_FALSE(sse.chunks.empty());
  EXPECT_EQ(StringField(sse.chunks.front(), "type"), "start");
  EXPECT_FALSE(StringField(sse.chunks.front(), "messageId").empty());
  EXPECT_EQ(StringField(sse.chunks.back(), "type"), "finish");
  EXPECT_EQ(SseText(sse), "Hello from baton.");
  for (const std::string& type : ChunkTypes(sse)) {
    EXPECT_FALSE(absl::StartsWith(type, "data-baton")) << "baton's control records stay inside";
  }
  ValidateWithAiSdk(g->dir(), first);

  HttpResponse second = g->PostMessage("c1", "u2", "And now?");
  EXPECT_EQ(second.status, 200) << second.body;
  Sse sse2 = ParseSse(second.body);
  EXPECT_EQ(SseText(sse2), "Again.");
  EXPECT_NE(StringField(sse2.chunks.front(), "messageId"),
            StringField(sse.chunks.front(), "messageId"));
  ValidateWithAiSdk(g->dir(), second);

  // Both turns are on the chat's log, answered once each.
  v1::Session session = g->stack().Get("c1");
  EXPECT_EQ(session.in_seq(), 1);  // the boot message is the session's payload; u2 is .in 1
  std::vector<Json> out = g->stack().ReadTurns("c1", 0, 2);
  EXPECT_EQ(CountControl(out, "turn-complete"), 2);
}

// A tool call and step 2 reach the browser as one assistant message: the call, its input, its
// output, and the text of the model's second call, under one start and one finish.
TEST(HttpGatewayTest, AToolCallAndStepTwoAreOneMessage) {
  auto g = GatewayStack::Start(
      {.script = Script({WeatherCall("Let me look.", "Lisbon"), Reply("19 degrees in Lisbon.")})});
  ASSERT_NE(g, nullptr);
  HttpResponse response =
      g->PostMessage("w1", "u1", "Weather in Lisbon?", "/api/agents/weather/chat");
  ASSERT_EQ(response.status, 200) << response.body;
  Sse sse = ParseSse(response.body);
  std::vector<std::string> types = ChunkTypes(sse);
  EXPECT_EQ(std::count(types.begin(), types.end(), "start"), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), "finish"), 1);
  EXPECT_THAT(types, ::testing::Contains("tool-input-available"));
  EXPECT_THAT(types, ::testing::Contains("tool-output-available"));
  EXPECT_EQ(SseText(sse), "Let me look.19 degrees in Lisbon.");
  Json message = ValidateWithAiSdk(g->dir(), response);
  EXPECT_EQ(message.is_null(), !SseValidatorAvailable()) << "the AI SDK folded no message";
  if (!message.is_null()) {
    std::string parts = DumpJson(message["parts"]);
    EXPECT_THAT(parts, HasSubstr("tool-get_weather"));
    EXPECT_THAT(parts, HasSubstr("output-available"));
  }
}

// ---- head starts -------------------------------------------------------------------------------

const std::vector<std::string> kHeadStart = {"--head_start", "--base_url={llm}"};

// A head start through the gateway: the chat's first POST runs step 1 in the gateway on the
// agent its worker announced (system prompt and tool schemas, no copy in the gateway's config),
// streams it at once, hands the tool call over, and the run's tool result and step 2 follow in
// the same response under the same message id. `.out` holds the whole message too.
TEST(HttpGatewayTest, AHeadStartStreamsStepOneAndTheRunsStepTwoAsOneMessage) {
  auto g = GatewayStack::Start(
      {.script = Script({WeatherCall("Let me look.", "Lisbon"), Reply("19 degrees in Lisbon.")})},
      kHeadStart);
  ASSERT_NE(g, nullptr);
  HttpResponse response =
      g->PostMessage("hs1", "u1", "Weather in Lisbon?", "/api/agents/weather/chat");
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_TRUE(response.complete);
  Sse sse = ParseSse(response.body);
  EXPECT_TRUE(sse.done);
  std::vector<std::string> types = ChunkTypes(sse);
  EXPECT_EQ(std::count(types.begin(), types.end(), "start"), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), "finish"), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), "tool-input-available"), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), "tool-output-available"), 1);
  EXPECT_EQ(SseText(sse), "Let me look.19 degrees in Lisbon.");
  Json message = ValidateWithAiSdk(g->dir(), response);
  EXPECT_EQ(message.is_null(), !SseValidatorAvailable()) << "the AI SDK folded no message";
  if (!message.is_null()) {
    std::string parts = DumpJson(message["parts"]);
    EXPECT_THAT(parts, HasSubstr("tool-get_weather"));
    EXPECT_THAT(parts, HasSubstr("output-available"));
  }

  // Step 1 was the gateway's call: with the agent's own system prompt and tool, as announced.
  std::vector<fakellm::RecordedRequest> calls = g->stack().llm().requests();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_THAT(DumpJson(calls[0].json["tools"]), HasSubstr("get_weather"));
  EXPECT_EQ(DumpJson(calls[0].json["system"]), DumpJson(calls[1].json["system"]));
  EXPECT_EQ(g->stack().Runs("hs1").size(), 1u);

  // The message under one id everywhere: the response's, and the one on `.out`, which a reader
  // from seq 0 gets whole (step-1 text and call, the result, step 2).
  std::vector<Json> out = g->stack().ReadTurns("hs1", 0);
  EXPECT_EQ(Text(out), "Let me look.19 degrees in Lisbon.");
  std::string id = StringField(sse.chunks.front(), "messageId");
  EXPECT_FALSE(id.empty());
  EXPECT_THAT(DumpJson(Json(out)), HasSubstr(id));
  EXPECT_EQ(CountControl(out, "handover-spliced"), 1);

  // A reload after the answer has nothing to resume; the next turn is an ordinary one.
  EXPECT_EQ(g->Request("GET", "/api/chat/hs1/stream").status, 204);
  std::string metrics = g->Request("GET", "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("baton_gateway_head_starts_total{signal=\"handover\"} 1"));
}

// A step 1 that is the whole answer (no tool call) ends the response as any answer ends, and the
// run stores it as the turn's answer without a model call of its own.
TEST(HttpGatewayTest, AHeadStartWhoseStepOneIsTheAnswerEndsThere) {
  auto g =
      GatewayStack::Start({.script = Script({Reply("Hello from the warm side.")})}, kHeadStart);
  ASSERT_NE(g, nullptr);
  HttpResponse response = g->PostMessage("hs2", "u1", "Hi");
  ASSERT_EQ(response.status, 200) << response.body;
  Sse sse = ParseSse(response.body);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(SseText(sse), "Hello from the warm side.");
  std::vector<std::string> types = ChunkTypes(sse);
  EXPECT_EQ(std::count(types.begin(), types.end(), "start"), 1);
  EXPECT_EQ(types.back(), "finish");
  ValidateWithAiSdk(g->dir(), response);
  EXPECT_EQ(g->stack().llm().requests().size(), 1u);
  EXPECT_EQ(Text(g->stack().ReadTurns("hs2", 0)), "Hello from the warm side.");
}

// The browser goes away during step 1: the gateway aborts the provider call and signals a skip at
// once, and the run answers the message itself; a reload then shows that answer, not step 1.
// A retried first POST of a head-started chat gets the whole message and starts nothing new.
TEST(HttpGatewayTest, AHeadStartsClientThatLeavesEndsStepOneAndTheRunAnswers) {
  auto g = GatewayStack::Start(
      {.script = Script({HeldReply("Warm ", "side."), Reply("The run's own answer.")})},
      kHeadStart);
  ASSERT_NE(g, nullptr);
  {
    HttpClient client(g->port());
    client.Send("POST", "/api/chat", GatewayStack::PostBody("hs3", "u1", "Hi"),
                GatewayStack::WithJson({}));
    HttpResponse partial =
        client.Read([](const std::string& body) { return absl::StrContains(body, "Warm "); });
    ASSERT_EQ(partial.status, 200) << partial.body;
  }  // the tab is closed mid step 1, while the model holds the rest of it
  // The run answers (so the skip came at once, not at the end of the handover window), and
  // step 1 is not part of the chat.
  std::vector<Json> out = g->stack().ReadTurns("hs3", 0);
  EXPECT_EQ(Text(out), "The run's own answer.");
  EXPECT_EQ(g->stack().Runs("hs3").size(), 1u);
  // Step 1's call was torn down: the rest of it finds its connection closed.
  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));
  EXPECT_TRUE(g->stack().llm().WaitForClientClose(0, kLimit)) << "step 1's call went on";

  // The same first POST again (the network lost the answer): the chat's answer, once.
  HttpResponse retry = g->PostMessage("hs3", "u1", "Hi");
  EXPECT_EQ(retry.status, 200) << retry.body;
  EXPECT_EQ(SseText(ParseSse(retry.body)), "The run's own answer.");
  EXPECT_EQ(g->stack().Runs("hs3").size(), 1u);
  EXPECT_EQ(g->stack().llm().requests().size(), 2u);
}

// The files agent's model asks to delete todo.txt (a tool that needs the user's approval).
Json DeleteTodoCall() {
  return Json{{"reply",
               {{"text", "I will delete it."},
                {"tool_calls", Json::array({{{"id", "call_1"},
                                             {"name", "delete_file"},
                                             {"input", {{"path", "todo.txt"}}}}})}}}};
}

// The approval id an answer asked for ("" when it asked for none).
// The text and reasoning parts an answer opened and did not end, as "<type>:<id>", in order.
std::vector<std::string> OpenParts(const Sse& sse) {
  std::vector<std::string> open;
  for (const Json& chunk : sse.chunks) {
    const std::string type = StringField(chunk, "type");
    const std::string kind = type.substr(0, type.find('-'));
    const std::string id = StringField(chunk, "id");
    if (type == "text-start" || type == "reasoning-start") open.push_back(kind + ":" + id);
    if (type == "text-end" || type == "reasoning-end") {
      open.erase(std::remove(open.begin(), open.end(), kind + ":" + id), open.end());
    }
  }
  return open;
}

std::string ApprovalIdOf(const Sse& sse) {
  std::string id;
  for (const Json& c : sse.chunks) {
    if (StringField(c, "type") == "tool-approval-request") id = StringField(c, "approvalId");
  }
  return id;
}

// The POST the AI SDK sends when the user approves that deletion: the answer `message_id`,
// continued with the approval.
std::string ApprovedDeletion(const std::string& chat_id, const std::string& message_id,
                             const std::string& approval_id) {
  Json approved = {
      {"id", message_id},
      {"role", "assistant"},
      {"parts", Json::array({{{"type", "step-start"}},
                             {{"type", "text"}, {"text", "I will delete it."}, {"state", "done"}},
                             {{"type", "tool-delete_file"},
                              {"toolCallId", "call_1"},
                              {"state", "approval-responded"},
                              {"input", {{"path", "todo.txt"}}},
                              {"approval", {{"id", approval_id}, {"approved", true}}}}})}};
  return DumpJson(Json{{"id", chat_id},
                       {"messages", Json::array({UserMessage("u1", "Delete todo.txt"), approved})},
                       {"trigger", "submit-message"}});
}

// A head start whose step 1 calls a tool that needs the user's approval asks for it, as the run
// would: the answer ends with the approval request and nothing runs. The user's approval (the
// next POST, continuing the message) has the run execute the tool and go on.
TEST(HttpGatewayTest, AHeadStartNeverApprovesAToolCallForTheUser) {
  Json call = DeleteTodoCall();
  auto g = GatewayStack::Start({.script = Script({call, Reply("Deleted todo.txt.")})}, kHeadStart);
  ASSERT_NE(g, nullptr);
  const std::string route = "/api/agents/files/chat";
  HttpResponse asked = g->PostMessage("hs5", "u1", "Delete todo.txt", route);
  ASSERT_EQ(asked.status, 200) << asked.body;
  Sse sse = ParseSse(asked.body);
  EXPECT_TRUE(sse.done);
  std::vector<std::string> types = ChunkTypes(sse);
  EXPECT_THAT(types, ::testing::Contains("tool-approval-request"));
  EXPECT_THAT(types, ::testing::Not(::testing::Contains("tool-output-available")));
  EXPECT_EQ(types.back(), "finish");
  ValidateWithAiSdk(g->dir(), asked, "--ai 6");  // ai 5 has no tool approvals
  EXPECT_EQ(g->stack().llm().requests().size(), 1u);

  std::string message_id = StringField(sse.chunks.front(), "messageId");
  std::string approval_id = ApprovalIdOf(sse);
  ASSERT_FALSE(approval_id.empty());
  HttpResponse done = g->Request("POST", route, ApprovedDeletion("hs5", message_id, approval_id),
                                 GatewayStack::WithJson({}));
  ASSERT_EQ(done.status, 200) << done.body;
  Sse done_sse = ParseSse(done.body);
  EXPECT_THAT(ChunkTypes(done_sse), ::testing::Contains("tool-output-available"));
  EXPECT_EQ(SseText(done_sse), "Deleted todo.txt.");
  EXPECT_EQ(StringField(done_sse.chunks.front(), "messageId"), message_id);
}

// A reload during a head start's step 1 resumes the answer: the whole message once the run has
// taken the handover, step 1 included, with no part twice.
TEST(HttpGatewayTest, AReloadDuringAHeadStartGetsTheWholeMessage) {
  auto g = GatewayStack::Start(
      {.script = Script({HeldReply("Warm ", "side."), Reply("Never asked.")})}, kHeadStart);
  ASSERT_NE(g, nullptr);
  HttpClient first(g->port());
  first.Send("POST", "/api/chat", GatewayStack::PostBody("hs4", "u1", "Hi"),
             GatewayStack::WithJson({}));
  HttpResponse partial =
      first.Read([](const std::string& body) { return absl::StrContains(body, "Warm "); });
  ASSERT_EQ(partial.status, 200) << partial.body;

  // Another tab (or a reload) while step 1 streams: the chat is answering.
  HttpClient resumed(g->port());
  resumed.Send("GET", "/api/chat/hs4/stream");
  HttpResponse head;
  ASSERT_TRUE(resumed.ReadHead(head));
  ASSERT_EQ(head.status, 200);

  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));
  first.ReadBody(partial);
  resumed.ReadBody(head);
  for (HttpResponse* r : {&partial, &head}) {
    EXPECT_TRUE(r->complete);
    Sse sse = ParseSse(r->body);
    EXPECT_TRUE(sse.done);
    EXPECT_EQ(SseText(sse), "Warm side.");
    std::vector<std::string> types = ChunkTypes(sse);
    EXPECT_EQ(std::count(types.begin(), types.end(), "start"), 1);
    ValidateWithAiSdk(g->dir(), *r);
  }
  EXPECT_EQ(g->stack().llm().requests().size(), 1u);
}

// A reload mid-answer: GET .../stream replays the answer in flight from its start and follows it
// to its end; with nothing in flight, or for a chat nobody created, it answers 204.
TEST(HttpGatewayTest, AReloadMidAnswerResumesTheWholeAnswer) {
  auto g = GatewayStack::Start({.script = Script({HeldReply("Half ", "and whole.")})});
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->Request("GET", "/api/chat/nobody/stream").status, 204);

  HttpClient first(g->port());
  first.Send("POST", "/api/chat", GatewayStack::PostBody("r1", "u1", "Tell me"),
             GatewayStack::WithJson({}));
  // The first half reached the browser; the model is held.
  HttpResponse partial =
      first.Read([](const std::string& body) { return absl::StrContains(body, "Half "); });
  ASSERT_EQ(partial.status, 200);
  first.Close();  // the tab reloads: the fetch is gone, the turn goes on

  HttpClient resumed(g->port());
  resumed.Send("GET", "/api/chat/r1/stream");
  HttpResponse head =
      resumed.Read([](const std::string& body) { return absl::StrContains(body, "Half "); });
  ASSERT_EQ(head.status, 200) << head.body;
  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));
  resumed.ReadBody(head);
  EXPECT_TRUE(head.complete);
  Sse sse = ParseSse(head.body);
  EXPECT_TRUE(sse.done);
  // One message from its start: nothing missing, nothing twice.
  std::vector<std::string> types = ChunkTypes(sse);
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.front(), "start");
  EXPECT_EQ(std::count(types.begin(), types.end(), "start"), 1);
  EXPECT_EQ(types.back(), "finish");
  EXPECT_EQ(SseText(sse), "Half and whole.");
  ValidateWithAiSdk(g->dir(), head);

  // What the turn stored: the whole answer, once.
  std::vector<Json> out = g->stack().ReadTurns("r1", 0);
  EXPECT_EQ(Text(out), "Half and whole.");
  EXPECT_EQ(g->Request("GET", "/api/chat/r1/stream").status, 204);
}

// A reload while an approved answer goes on: the AI SDK takes GET .../stream as a replay of the
// whole message, so the answer continued from the turn before (the call that asked for
// approval) comes first, then what this turn adds; never a tool result without its call.
TEST(HttpGatewayTest, AReloadDuringAnApprovedAnswerReplaysTheWholeMessage) {
  Json call = DeleteTodoCall();
  auto g = GatewayStack::Start({.script = Script({call, HeldReply("Deleted ", "todo.txt.")})});
  ASSERT_NE(g, nullptr);
  const std::string route = "/api/agents/files/chat";
  HttpResponse asked = g->PostMessage("ap1", "u1", "Delete todo.txt", route);
  ASSERT_EQ(asked.status, 200) << asked.body;
  Sse sse = ParseSse(asked.body);
  ASSERT_FALSE(sse.chunks.empty());
  std::string message_id = StringField(sse.chunks.front(), "messageId");
  std::string approval_id = ApprovalIdOf(sse);
  ASSERT_FALSE(approval_id.empty()) << asked.body;
  HttpClient continued(g->port());
  continued.Send("POST", route, ApprovedDeletion("ap1", message_id, approval_id),
                 GatewayStack::WithJson({}));
  HttpResponse partial =
      continued.Read([](const std::string& body) { return absl::StrContains(body, "Deleted "); });
  ASSERT_EQ(partial.status, 200) << partial.body;
  continued.Close();  // the page reloads while the model holds the rest

  HttpClient resumed(g->port());
  resumed.Send("GET", "/api/chat/ap1/stream");
  HttpResponse head =
      resumed.Read([](const std::string& body) { return absl::StrContains(body, "Deleted "); });
  ASSERT_EQ(head.status, 200) << head.body;
  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));
  resumed.ReadBody(head);
  EXPECT_TRUE(head.complete);
  Sse whole = ParseSse(head.body);
  std::vector<std::string> types = ChunkTypes(whole);
  EXPECT_EQ(std::count(types.begin(), types.end(), "start"), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), "finish"), 1);
  auto at = [&](const std::string& type) {
    return std::find(types.begin(), types.end(), type) - types.begin();
  };
  EXPECT_LT(at("tool-input-available"), at("tool-output-available"));
  EXPECT_EQ(SseText(whole), "I will delete it.Deleted todo.txt.");
  EXPECT_EQ(StringField(whole.chunks.front(), "messageId"), message_id);
  Json message = ValidateWithAiSdk(g->dir(), head, "--ai 6");
  if (!message.is_null()) {
    EXPECT_THAT(DumpJson(message["parts"]), HasSubstr("output-available"));
  }
}

// Stop, from anywhere: POST .../stop appends a stop record, and the answer in flight ends (with
// its finish) though the model had more to say. Closing the fetch alone does not stop the turn.
TEST(HttpGatewayTest, StopEndsTheAnswerInFlightAndAClosedFetchDoesNot) {
  auto g = GatewayStack::Start(
      {.script = Script({HeldReply("Going on ", "to the end."), HeldReply("Long ", "story.")})});
  ASSERT_NE(g, nullptr);

  // A fetch closed mid-answer: the turn goes on and completes on `.out`.
  {
    HttpClient client(g->port());
    client.Send("POST", "/api/chat", GatewayStack::PostBody("s1", "u1", "Go"),
                GatewayStack::WithJson({}));
    HttpResponse partial =
        client.Read([](const std::string& body) { return absl::StrContains(body, "Going on "); });
    ASSERT_EQ(partial.status, 200);
  }
  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));
  std::vector<Json> out = g->stack().ReadTurns("s1", 0);
  EXPECT_EQ(Text(out), "Going on to the end.");
  int64_t after = Seq(out.back());

  // A stop from another connection ends the next answer while the model is held.
  HttpClient client(g->port());
  client.Send("POST", "/api/chat", GatewayStack::PostBody("s1", "u2", "Again"),
              GatewayStack::WithJson({}));
  HttpResponse answer =
      client.Read([](const std::string& body) { return absl::StrContains(body, "Long "); });
  ASSERT_EQ(answer.status, 200);
  EXPECT_EQ(g->Request("POST", "/api/chat/s1/stop").status, 204);
  client.ReadBody(answer);
  EXPECT_TRUE(answer.complete);
  Sse sse = ParseSse(answer.body);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(SseText(sse), "Long ");
  // Stopped as the AI SDK's own streamText says it: the message ends with `abort`, every part it
  // opened ended first, under its own id.
  ASSERT_FALSE(sse.chunks.empty());
  EXPECT_EQ(StringField(sse.chunks.back(), "type"), "abort");
  EXPECT_THAT(OpenParts(sse), ::testing::IsEmpty());
  ValidateWithAiSdk(g->dir(), answer);
  std::vector<Json> stopped = g->stack().ReadTurns("s1", after);
  EXPECT_EQ(CountControl(stopped, "turn-complete"), 1);
}

// A run cancelled mid-answer (CancelRun) writes `abort` and no turn-complete: the response ends
// at the abort, as a stopped one does, rather than waiting for a turn-complete that never comes.
// (tests/conformance scenario 19 through the gateway found it.)
TEST(HttpGatewayTest, ACancelledRunsAnswerEndsAtItsAbort) {
  auto g = GatewayStack::Start({.script = Script({HeldReply("Cut ", "never sent.")})});
  ASSERT_NE(g, nullptr);
  HttpClient client(g->port());
  client.Send("POST", "/api/chat", GatewayStack::PostBody("x1", "u1", "Go"),
              GatewayStack::WithJson({}));
  HttpResponse answer =
      client.Read([](const std::string& body) { return absl::StrContains(body, "Cut "); });
  ASSERT_EQ(answer.status, 200);
  g->stack().Cancel("x1");
  // Read to the end, or to the first keep-alive comment (a response left open).
  client.ReadBody(answer,
                  [](const std::string& body) { return absl::StrContains(body, ": keep-alive"); });
  EXPECT_TRUE(answer.complete) << answer.body;
  Sse sse = ParseSse(answer.body);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(sse.comments, 0);
  EXPECT_EQ(SseText(sse), "Cut ");
  ASSERT_FALSE(sse.chunks.empty());
  EXPECT_EQ(StringField(sse.chunks.back(), "type"), "abort");
  EXPECT_THAT(OpenParts(sse), ::testing::IsEmpty());  // ended before the abort, by their ids
  ValidateWithAiSdk(g->dir(), answer);
  EXPECT_TRUE(g->stack().WaitForRunState("x1", v1::RUN_STATE_CANCELLED));
}

// The network lost the answer to a chat's first POST and the browser sends it again: the same
// chat, the same message. It is not created twice nor answered twice; the retry gets the answer.
TEST(HttpGatewayTest, ARetriedFirstPostGetsTheSameAnswer) {
  auto g = GatewayStack::Start({.script = Script({Reply("Only once.")})});
  ASSERT_NE(g, nullptr);
  HttpResponse first = g->PostMessage("t1", "u1", "Hello?");
  ASSERT_EQ(first.status, 200) << first.body;
  HttpResponse retry = g->PostMessage("t1", "u1", "Hello?");
  EXPECT_EQ(retry.status, 200) << retry.body;
  EXPECT_EQ(SseText(ParseSse(retry.body)), "Only once.");
  EXPECT_EQ(g->stack().Runs("t1").size(), 1u);
  EXPECT_EQ(g->stack().llm().requests().size(), 1u);
}

// A regenerate POST retried (the network lost its answer) regenerates once: it is the same `.in`
// record, and once answered a retry is told so. A regenerate of the new answer is a new one.
TEST(HttpGatewayTest, ARetriedRegenerateRegeneratesOnce) {
  auto g = GatewayStack::Start(
      {.script = Script({Reply("First."), Reply("Again."), Reply("Third time.")})});
  ASSERT_NE(g, nullptr);
  HttpResponse first = g->PostMessage("g1", "u1", "Hi");
  ASSERT_EQ(first.status, 200) << first.body;
  Sse sse = ParseSse(first.body);
  ASSERT_FALSE(sse.chunks.empty());
  std::string answer = StringField(sse.chunks.front(), "messageId");
  auto regenerate = [&](const std::string& message_id) {
    return g->Request("POST", "/api/chat",
                      DumpJson(Json{{"id", "g1"},
                                    {"messages", Json::array({UserMessage("u1", "Hi")})},
                                    {"trigger", "regenerate-message"},
                                    {"messageId", message_id}}),
                      GatewayStack::WithJson({}));
  };
  HttpResponse again = regenerate(answer);
  ASSERT_EQ(again.status, 200) << again.body;
  Sse again_sse = ParseSse(again.body);
  EXPECT_EQ(SseText(again_sse), "Again.");
  ValidateWithAiSdk(g->dir(), again);
  HttpResponse retried = regenerate(answer);
  EXPECT_EQ(retried.status, 409) << retried.body;
  EXPECT_EQ(g->stack().llm().requests().size(), 2u);

  HttpResponse third = regenerate(StringField(again_sse.chunks.front(), "messageId"));
  EXPECT_EQ(third.status, 200) << third.body;
  EXPECT_EQ(SseText(ParseSse(third.body)), "Third time.");
}

// The network lost a later POST while its message waited behind another answer, and the browser
// sends it again: the retry gets that message's answer (not the one under way ahead of it), the
// message is stored and answered once, and a retry after its answer is told so.
TEST(HttpGatewayTest, ARetriedLaterPostGetsItsOwnAnswerOnce) {
  auto g =
      GatewayStack::Start({.script = Script({HeldReply("First ", "answer."), Reply("Second.")})});
  ASSERT_NE(g, nullptr);
  HttpClient first(g->port());
  first.Send("POST", "/api/chat", GatewayStack::PostBody("q1", "u1", "One"),
             GatewayStack::WithJson({}));
  HttpResponse one =
      first.Read([](const std::string& body) { return absl::StrContains(body, "First "); });
  ASSERT_EQ(one.status, 200) << one.body;

  // u2 is stored while u1's answer is held; then its fetch is lost.
  {
    HttpClient lost(g->port());
    lost.Send("POST", "/api/chat", GatewayStack::PostBody("q1", "u2", "Two"),
              GatewayStack::WithJson({}));
    auto deadline = std::chrono::steady_clock::now() + kLimit;
    while (g->stack().Get("q1").in_seq() < 1 && std::chrono::steady_clock::now() < deadline) {
    }
    ASSERT_EQ(g->stack().Get("q1").in_seq(), 1);
  }
  HttpClient retry(g->port());
  retry.Send("POST", "/api/chat", GatewayStack::PostBody("q1", "u2", "Two"),
             GatewayStack::WithJson({}));
  HttpResponse two;
  ASSERT_TRUE(retry.ReadHead(two));  // its Append (a duplicate) is done: then u1 may finish
  EXPECT_EQ(two.status, 200);
  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));
  first.ReadBody(one);
  EXPECT_EQ(SseText(ParseSse(one.body)), "First answer.");
  retry.ReadBody(two);
  Sse sse = ParseSse(two.body);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(SseText(sse), "Second.");
  ValidateWithAiSdk(g->dir(), two);

  EXPECT_EQ(g->stack().Get("q1").in_seq(), 1);  // u2 once
  std::vector<Json> out = g->stack().ReadTurns("q1", 0, 2);
  EXPECT_EQ(Text(out), "First answer.Second.");
  HttpResponse again = g->PostMessage("q1", "u2", "Two");
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_EQ(g->stack().llm().requests().size(), 2u);
}

// Three messages in a row while the first answer is held: the second is delivered to the live
// run and waits in its inbox; when the first turn ends it is still unanswered, so the third
// POST's answer comes after the second's, and each POST streams its own text.
TEST(HttpGatewayTest, MessagesSentInARowEachGetTheirOwnAnswer) {
  auto g =
      GatewayStack::Start({.script = Script({HeldReply("First ", "answer."),
                                             HeldReply("Second ", "answer."), Reply("Third.")})});
  ASSERT_NE(g, nullptr);
  HttpClient one(g->port());
  one.Send("POST", "/api/chat", GatewayStack::PostBody("m1", "u1", "One"),
           GatewayStack::WithJson({}));
  HttpResponse first =
      one.Read([](const std::string& body) { return absl::StrContains(body, "First "); });
  ASSERT_EQ(first.status, 200) << first.body;
  HttpClient two(g->port());
  two.Send("POST", "/api/chat", GatewayStack::PostBody("m1", "u2", "Two"),
           GatewayStack::WithJson({}));
  HttpResponse second;
  ASSERT_TRUE(two.ReadHead(second));                                    // u2 is stored (.in 1)
  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));  // u1's answer ends
  one.ReadBody(first);
  EXPECT_EQ(SseText(ParseSse(first.body)), "First answer.");
  two.ReadBody(second, [](const std::string& body) { return absl::StrContains(body, "Second "); });
  // u2's answer is held mid-way; u3 comes now.
  HttpClient three(g->port());
  three.Send("POST", "/api/chat", GatewayStack::PostBody("m1", "u3", "Three"),
             GatewayStack::WithJson({}));
  HttpResponse third;
  ASSERT_TRUE(three.ReadHead(third));
  g->stack().llm().AdvanceScriptClock(std::chrono::milliseconds(100));
  two.ReadBody(second);
  three.ReadBody(third);
  EXPECT_EQ(SseText(ParseSse(second.body)), "Second answer.");
  EXPECT_EQ(SseText(ParseSse(third.body)), "Third.");
  ValidateWithAiSdk(g->dir(), third);
}

// Bad requests get a clear HTTP error as JSON, and nothing is stored.
TEST(HttpGatewayTest, BadRequestsGetClearErrorsAndStoreNothing) {
  auto g = GatewayStack::Start({.script = Script({})}, {"--max_body_bytes=65536"});
  ASSERT_NE(g, nullptr);
  struct Case {
    std::string name;
    std::string method, path, body;
    int status;
    std::string message;
  };
  std::vector<Case> cases = {
      {"malformed JSON", "POST", "/api/chat", "{\"id\": ", 400, "JSON"},
      {"not an object", "POST", "/api/chat", "[1,2]", 400, ""},
      {"no chat id", "POST", "/api/chat", R"({"messages":[],"trigger":"submit-message"})", 400,
       "id"},
      {"no messages", "POST", "/api/chat", R"({"id":"b1","trigger":"submit-message"})", 400,
       "messages"},
      {"unknown trigger", "POST", "/api/chat",
       DumpJson(Json{{"id", "b2"},
                     {"messages", Json::array({UserMessage("u1", "x")})},
                     {"trigger", "explode"}}),
       400, "trigger"},
      {"oversized body", "POST", "/api/chat",
       GatewayStack::PostBody("b3", "u1", std::string(100000, 'x')), 413, ""},
      {"unknown session", "GET", "/v1/sessions/nobody", "", 404, "nobody"},
      {"unknown route", "GET", "/v2/whatever", "", 404, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HttpResponse response = g->Request(c.method, c.path, c.body, GatewayStack::WithJson({}));
    EXPECT_EQ(response.status, c.status) << response.body;
    if (response.status >= 400 && response.status != 413) {
      absl::StatusOr<Json> error = ParseJson(response.body);
      ASSERT_TRUE(error.ok()) << response.body;
      EXPECT_TRUE((*error)["error"].is_object()) << response.body;
      EXPECT_THAT(StringField((*error)["error"], "message"), HasSubstr(c.message));
    }
  }
  // Two Authorization headers are refused, not guessed at.
  HttpResponse two = g->Request("GET", "/v1/sessions/x", "",
                                {{"Authorization", "Bearer a"}, {"Authorization", "Bearer b"}});
  EXPECT_EQ(two.status, 401) << two.body;
  // Nothing was created.
  for (const char* chat : {"b1", "b2", "b3"}) {
    v1::GetRequest get;
    get.set_chat_id(chat);
    v1::Session session;
    grpc::ClientContext context;
    EXPECT_EQ(g->stack().sessions().Get(&context, get, &session).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_TRUE(g->stack().llm().requests().empty());
}

// Without --public_create, a request with no token is refused (401) before anything is done:
// the gateway's own token never stands in for an anonymous caller.
TEST(HttpGatewayTest, WithoutPublicCreateARequestWithNoTokenIsRefused) {
  auto g = GatewayStack::Start({.script = Script({Reply("Never.")})}, {"--public_create=false"});
  ASSERT_NE(g, nullptr);
  g->stack().Create("x1", "chat", "preload");
  struct Case {
    std::string method, path, body;
  };
  std::vector<Case> cases = {
      {"POST", "/api/chat", GatewayStack::PostBody("new", "u1", "Hi")},
      {"GET", "/api/chat/x1/stream", ""},
      {"POST", "/api/chat/x1/stop", ""},
      {"POST", "/api/chat/x1/preload", "{}"},
      {"GET", "/v1/sessions/x1", ""},
      {"GET", "/v1/sessions/x1/records?after=0", ""},
      {"POST", "/v1/sessions/x1/records", R"({"kind":"stop"})"},
      {"POST", "/v1/sessions/x1/close", "{}"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method + " " + c.path);
    HttpResponse response = g->Request(c.method, c.path, c.body, GatewayStack::WithJson({}));
    EXPECT_EQ(response.status, 401) << response.body;
  }
  EXPECT_EQ(g->stack().Get("x1").in_seq(), 0);  // nothing appended, the chat not closed
  EXPECT_NE(g->stack().Get("x1").state(), v1::SESSION_STATE_CLOSED);
  EXPECT_TRUE(g->stack().llm().requests().empty());
}

// The REST mirror: create, append with an idempotency key (a retry is the same record), read the
// log as SSE from a seq, resume with Last-Event-ID, get and close.
TEST(HttpGatewayTest, TheRestMirrorCoversSessions) {
  auto g = GatewayStack::Start({.script = Script({Reply("Mirrored.")})});
  ASSERT_NE(g, nullptr);
  HttpResponse created =
      g->Request("POST", "/v1/sessions",
                 DumpJson(Json{{"chatId", "m1"}, {"agent", "chat"}, {"trigger", "preload"}}),
                 GatewayStack::WithJson({}));
  EXPECT_EQ(created.status, 201) << created.body;
  HttpResponse again =
      g->Request("POST", "/v1/sessions",
                 DumpJson(Json{{"chatId", "m1"}, {"agent", "chat"}, {"trigger", "preload"}}),
                 GatewayStack::WithJson({}));
  EXPECT_EQ(again.status, 200) << again.body;

  std::string record = DumpJson(Json{
      {"kind", "message"},
      {"payload",
       {{"chatId", "m1"}, {"trigger", "submit-message"}, {"message", UserMessage("u1", "Hi")}}}});
  HttpResponse appended = g->Request("POST", "/v1/sessions/m1/records", record,
                                     GatewayStack::WithJson({{"Idempotency-Key", "k1"}}));
  ASSERT_EQ(appended.status, 200) << appended.body;
  absl::StatusOr<Json> a = ParseJson(appended.body);
  ASSERT_TRUE(a.ok());
  HttpResponse retried = g->Request("POST", "/v1/sessions/m1/records", record,
                                    GatewayStack::WithJson({{"Idempotency-Key", "k1"}}));
  absl::StatusOr<Json> r = ParseJson(retried.body);
  ASSERT_TRUE(r.ok()) << retried.body;
  EXPECT_EQ((*r)["seq"], (*a)["seq"]);
  EXPECT_EQ((*r)["duplicate"], true);

  std::vector<Json> out = g->stack().ReadTurns("m1", 0);
  int64_t last = Seq(out.back());
  HttpResponse log = g->Request("GET", "/v1/sessions/m1/records?after=0");
  ASSERT_EQ(log.status, 200) << log.body;
  EXPECT_THAT(log.headers["content-type"], HasSubstr("text/event-stream"));
  EXPECT_THAT(log.body, HasSubstr(absl::StrCat("id: ", last, "\n")));
  EXPECT_THAT(log.body, HasSubstr("Mirrored."));
  HttpResponse resumed =
      g->Request("GET", "/v1/sessions/m1/records", "", {{"Last-Event-ID", absl::StrCat(last - 1)}});
  EXPECT_EQ(resumed.status, 200);
  EXPECT_THAT(resumed.body, HasSubstr(absl::StrCat("id: ", last, "\n")));
  EXPECT_THAT(resumed.body, ::testing::Not(HasSubstr(absl::StrCat("id: ", last - 1, "\n"))));

  HttpResponse session = g->Request("GET", "/v1/sessions/m1");
  EXPECT_EQ(session.status, 200) << session.body;
  HttpResponse closed =
      g->Request("POST", "/v1/sessions/m1/close", "{}", GatewayStack::WithJson({}));
  EXPECT_EQ(closed.status, 200) << closed.body;
  HttpResponse late = g->Request("POST", "/v1/sessions/m1/records", R"({"kind":"stop"})",
                                 GatewayStack::WithJson({}));
  EXPECT_EQ(late.status, 412) << late.body;
}

// Preload over HTTP: what transport.preload(chatId) would call boots the chat's run before the
// first message; the first POST then appends to it rather than creating it.
TEST(HttpGatewayTest, PreloadBootsTheRunBeforeTheFirstMessage) {
  auto g = GatewayStack::Start({.script = Script({Reply("Warm already.")})});
  ASSERT_NE(g, nullptr);
  HttpResponse preload =
      g->Request("POST", "/api/chat/p1/preload", "{}", GatewayStack::WithJson({}));
  ASSERT_EQ(preload.status, 200) << preload.body;
  EXPECT_TRUE(g->stack().WaitForRunState("p1", v1::RUN_STATE_RUNNING));
  EXPECT_TRUE(g->stack().hooks().WaitFor("onPreload"));
  HttpResponse answer = g->PostMessage("p1", "u1", "Hi");
  ASSERT_EQ(answer.status, 200) << answer.body;
  EXPECT_EQ(SseText(ParseSse(answer.body)), "Warm already.");
  EXPECT_EQ(g->stack().Runs("p1").size(), 1u);
  ValidateWithAiSdk(g->dir(), answer);
}

// A client that never reads its answer: the gateway buffers up to its bound, then drops the
// connection. The turn completes on `.out` regardless, and another reader gets all of it.
TEST(HttpGatewayTest, AClientThatNeverReadsIsDroppedAndNothingIsLost) {
  // 600 deltas of 1,000 bytes: far more than the gateway's 64 KiB bound and the kernel's buffers.
  std::vector<std::string> chunks(600, std::string(1000, 'z'));
  std::string big = absl::StrJoin(chunks, "");
  auto g = GatewayStack::Start({.script = Script({Json{{"reply", {{"text_chunks", chunks}}}}})},
                               {"--max_buffered_bytes=65536"});
  ASSERT_NE(g, nullptr);
  HttpClient stalled(g->port(), 4096);
  stalled.Send("POST", "/api/chat", GatewayStack::PostBody("n1", "u1", "Say a lot"),
               GatewayStack::WithJson({}));
  HttpResponse head;
  ASSERT_TRUE(stalled.ReadHead(head));  // the chat exists; from here on the client reads nothing
  EXPECT_EQ(head.status, 200);
  std::vector<Json> out = g->stack().ReadTurns("n1", 0);
  EXPECT_EQ(Text(out).size(), big.size());
  EXPECT_TRUE(Text(out) == big);
  EXPECT_TRUE(WaitForFileContains(g->stack().Path("gateway.log"), "does not read"));
  EXPECT_TRUE(stalled.ClosedByServer());
}

}  // namespace
}  // namespace baton::testing
