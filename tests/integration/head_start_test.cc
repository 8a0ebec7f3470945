// The head start's rules through the whole stack (docs/protocol.md, "A head start, seen from the
// warm server"): one signal per head start, within the handover window the orchestrator keeps;
// a skipped or timed-out head start answered by the run, exactly once; a late or second signal
// refused with a clear error; and a head start's answer that ends like any other.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }
Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

Json HeadStart(const std::string& text) {
  return Json{{"headStartMessages", Json::array({UserMessage("u1", text)})}};
}

// A step-1 partial that called get_weather: the worker executes it and runs step 2.
Json ToolHandover(const std::string& message_id) {
  return Json{{"kind", "handover"},
              {"messageId", message_id},
              {"isFinal", false},
              {"partialAssistantMessage", Json::parse(R"([
    {"role":"assistant","content":[
      {"type":"text","text":"Let me check."},
      {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-approval-request","approvalId":"h1","toolCallId":"c1"}]},
    {"role":"tool","content":[
      {"type":"tool-approval-response","approvalId":"h1","approved":true}]}])")}};
}

grpc::Status TryAppend(Stack& stack, const std::string& chat_id, const Json& body,
                       const std::string& record_id, v1::AppendResponse* response) {
  grpc::ClientContext context;
  v1::AppendRequest request;
  request.set_chat_id(chat_id);
  request.set_body_json(DumpJson(body));
  request.set_client_record_id(record_id);
  return stack.sessions().Append(&context, request, response);
}

std::string InEventId(const Json& record) {
  return record.contains("headers") ? record["headers"].value("session-in-event-id", "") : "";
}

// A skipped head start is answered by the run, once; the next message gets its own answer, with
// the head start's question and answer in its history.
TEST(HeadStartTest, ASkippedHeadStartIsAnsweredOnceAndTheNextMessageOnlyOnce) {
  auto stack = Stack::Start({.script = Script({Reply("First answer."), Reply("Second answer.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("s1", "chat", "handover-prepare", HeadStart("First question?"));
  ASSERT_TRUE(stack->hooks().WaitFor("onBoot"));
  int64_t skip = stack->Append("s1", Json{{"kind", "handover-skip"}});
  std::vector<Json> first = stack->ReadTurns("s1", 0);
  EXPECT_EQ(Text(first), "First answer.");
  EXPECT_EQ(InEventId(first.back()), absl::StrCat(skip));
  stack->SendText("s1", "u2", "Second question?");
  std::vector<Json> all = stack->ReadTurns("s1", 0, 2);
  std::vector<Json> second(all.begin() + static_cast<ptrdiff_t>(first.size()), all.end());
  EXPECT_EQ(Text(second), "Second answer.");
  EXPECT_EQ(CountControl(second, "turn-complete"), 1);
  // The second model call answers the second question with the first turn as history: user,
  // assistant, user (never the first question twice in a row).
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 2u);
  absl::StatusOr<Json> body = ParseJson(requests[1].body);
  ASSERT_TRUE(body.ok());
  std::vector<std::string> roles;
  for (const Json& m : (*body)["messages"]) roles.push_back(m.value("role", ""));
  EXPECT_THAT(roles, ElementsAre("user", "assistant", "user"));
  EXPECT_THAT(requests[1].body, HasSubstr("First answer."));
}

// No signal within the window: the orchestrator appends handover-skip at the deadline (which
// CreateSession returned), the run answers on its own, and a late handover is refused.
TEST(HeadStartTest, NoSignalByTheDeadlineIsASkipAndALateHandoverIsRefused) {
  auto stack = Stack::Start({.script = Script({Reply("Answered without the warm side.")}),
                             .workers = 0,
                             .orchestrator_flags = {"--handover_timeout_ms=300"}});
  ASSERT_NE(stack, nullptr);
  grpc::ClientContext context;
  v1::CreateSessionRequest request;
  request.set_chat_id("t1");
  request.set_agent("chat");
  request.set_trigger(v1::TRIGGER_HANDOVER_PREPARE);
  request.set_payload_json(DumpJson(HeadStart("Anyone?")));
  v1::CreateSessionResponse created;
  ASSERT_TRUE(stack->sessions().CreateSession(&context, request, &created).ok());
  // No worker has announced the agent yet: the window is the orchestrator's own.
  EXPECT_EQ(created.handover_deadline_unix_ms(), created.session().created_at_unix_ms() + 300);
  stack->AddWorker();
  std::vector<Json> out = stack->ReadTurns("t1", 0);
  EXPECT_EQ(Text(out), "Answered without the warm side.");
  EXPECT_EQ(InEventId(out.back()), "1");  // the orchestrator's handover-skip is `.in` seq 1

  v1::AppendResponse response;
  grpc::Status late = TryAppend(*stack, "t1", ToolHandover("M"), "late", &response);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(late.error_message(), HasSubstr("head start is closed by .in seq 1"));
  EXPECT_EQ(stack->Get("t1").in_seq(), 1);  // nothing stored
  EXPECT_EQ(stack->llm().requests().size(), 1u);
}

// A worker that announced its agent sets the window: the deadline is the agent's own
// handover_timeout (30 s by default) after the chat was created.
TEST(HeadStartTest, TheWindowIsTheAgentsHandoverTimeoutAsItsWorkerAnnouncedIt) {
  auto stack = Stack::Start({.script = Script({})});
  ASSERT_NE(stack, nullptr);
  ASSERT_TRUE(WaitForFileContains(stack->Path("orchestrator.log"), "worker connected"));
  grpc::ClientContext context;
  v1::CreateSessionRequest request;
  request.set_chat_id("w1");
  request.set_agent("chat");
  request.set_trigger(v1::TRIGGER_HANDOVER_PREPARE);
  request.set_payload_json(DumpJson(HeadStart("hi")));
  v1::CreateSessionResponse created;
  ASSERT_TRUE(stack->sessions().CreateSession(&context, request, &created).ok());
  EXPECT_EQ(created.handover_deadline_unix_ms(), created.session().created_at_unix_ms() + 30000);
  // Other triggers have no window.
  grpc::ClientContext other;
  request.set_chat_id("w2");
  request.set_trigger(v1::TRIGGER_PRELOAD);
  request.clear_payload_json();
  ASSERT_TRUE(stack->sessions().CreateSession(&other, request, &created).ok());
  EXPECT_EQ(created.handover_deadline_unix_ms(), 0);
}

// A head start takes one signal: a second one is refused, a retry of the first (the same record
// id and body) is answered as a retry; a chat that is no head start takes none.
TEST(HeadStartTest, OneSignalPerHeadStartAndNoneForOtherChats) {
  auto stack = Stack::Start({.script = Script({Reply("It is 4 C in Oslo."), Reply("Hi.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("o1", "weather", "handover-prepare", HeadStart("Weather in Oslo?"));
  v1::AppendResponse first;
  ASSERT_TRUE(TryAppend(*stack, "o1", ToolHandover("M"), "h-1", &first).ok());
  v1::AppendResponse again;
  grpc::Status retry = TryAppend(*stack, "o1", ToolHandover("M"), "h-1", &again);
  ASSERT_TRUE(retry.ok()) << retry.error_message();
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.seq(), first.seq());
  v1::AppendResponse second;
  grpc::Status skip = TryAppend(*stack, "o1", Json{{"kind", "handover-skip"}}, "", &second);
  EXPECT_EQ(skip.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(skip.error_message(), HasSubstr("takes one handover or handover-skip"));
  std::vector<Json> out = stack->ReadTurns("o1", 0);
  // One answer: the warm side's step 1, written by the run, then step 2.
  EXPECT_EQ(Text(out), "Let me check.It is 4 C in Oslo.");
  EXPECT_EQ(StringField(out.front(), "messageId"), "M");
  EXPECT_EQ(CountControl(out, "handover-spliced"), 1);
  EXPECT_EQ(ReadMessage(out)["id"], "M");

  stack->Create("p1", "chat", "preload");
  v1::AppendResponse ignored;
  grpc::Status none = TryAppend(*stack, "p1", Json{{"kind", "handover-skip"}}, "", &ignored);
  EXPECT_EQ(none.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(none.error_message(), HasSubstr("is not a head start"));
  EXPECT_EQ(stack->Get("p1").in_seq(), 0);
}

// Step 2 of a head start fails before the model said anything: the answer the run started
// (step 1, the handed-over tool's output) still ends with `finish`, like any other.
TEST(HeadStartTest, AHeadStartWhoseStepTwoFailsAtOnceStillEndsItsAnswer) {
  Json refused = {{"status", 400},
                  {"body",
                   {{"type", "error"},
                    {"error", {{"type", "invalid_request_error"}, {"message", "bad request"}}}}}};
  auto stack = Stack::Start({.script = Script({refused, Reply("Later.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("f1", "weather", "handover-prepare", HeadStart("Weather in Oslo?"));
  stack->Append("f1", ToolHandover("M"));
  std::vector<Json> out = stack->ReadTurns("f1", 0);
  EXPECT_THAT(Types(out),
              ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                          "tool-input-available", "finish-step", "trigger:handover-spliced",
                          "tool-output-available", "error", "finish", "trigger:turn-complete"));
  ASSERT_EQ(out.size(), 12u);
  EXPECT_EQ(StringField(out[0], "messageId"), "M");
  EXPECT_EQ(StringField(out[10], "finishReason"), "error");
  // A reader gets step 1 and the tool's result in the one message.
  Json message = ReadMessage(out);
  EXPECT_EQ(message["id"], "M");
  EXPECT_EQ(MessageText(message), "Let me check.");
  ASSERT_EQ(message["parts"].size(), 3u) << message.dump();
  EXPECT_EQ(message["parts"][2]["state"], "output-available");
  // The chat goes on: the next message is answered, in an answer of its own.
  stack->SendText("f1", "u2", "Try again?");
  std::vector<Json> next = stack->ReadTurns("f1", Seq(out.back()));
  EXPECT_EQ(Text(next), "Later.");
  EXPECT_NE(StringField(ReadMessage(next), "id"), "M");
}

}  // namespace
}  // namespace baton::testing
