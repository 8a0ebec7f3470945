// Bad input at every entry point of the stack, as a user meets it: real processes, real gRPC,
// real SQLite, fake-llm. Each test checks the exact status code, that the message says what is
// wrong, that nothing was stored, and that the chat still answers the next good message.
// docs/bad-input.md lists the entry points, their limits and their errors.

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/protocol/wire.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::HasSubstr;

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }
Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

// The body of a `.in` message record carrying a user message with one text part.
std::string MessageBody(const std::string& chat_id, const std::string& id,
                        const std::string& text) {
  return DumpJson(Json{
      {"kind", "message"},
      {"payload",
       {{"chatId", chat_id}, {"trigger", "submit-message"}, {"message", UserMessage(id, text)}}}});
}

// Sessions calls that return their status instead of failing the test.
grpc::Status Append(Stack& stack, const std::string& chat_id, const std::string& body,
                    const std::string& record_id = "", v1::AppendResponse* out = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::AppendRequest request;
  request.set_chat_id(chat_id);
  request.set_body_json(body);
  request.set_client_record_id(record_id);
  v1::AppendResponse response;
  grpc::Status status = stack.sessions().Append(&context, request, &response);
  if (out != nullptr) *out = response;
  return status;
}

v1::CreateSessionRequest CreateRequest(const std::string& chat_id, const std::string& agent,
                                       v1::Trigger trigger, const std::string& payload_json) {
  v1::CreateSessionRequest request;
  request.set_chat_id(chat_id);
  request.set_agent(agent);
  request.set_trigger(trigger);
  request.set_payload_json(payload_json);
  return request;
}

grpc::Status Create(Stack& stack, const v1::CreateSessionRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::CreateSessionResponse response;
  return stack.sessions().CreateSession(&context, request, &response);
}

grpc::Status GetStatus(Stack& stack, const std::string& chat_id) {
  grpc::ClientContext context;
  v1::GetRequest request;
  request.set_chat_id(chat_id);
  v1::Session session;
  return stack.sessions().Get(&context, request, &session);
}

// The chat answers a good message after the bad input: nothing was lost or left stuck.
void ExpectAnswers(Stack& stack, const std::string& chat_id, const std::string& text) {
  int64_t out_seq = stack.Get(chat_id).out_seq();
  std::string id = absl::StrCat("good-", out_seq);
  EXPECT_TRUE(Append(stack, chat_id, MessageBody(chat_id, id, "hello again"), id).ok());
  EXPECT_THAT(Text(stack.ReadTurns(chat_id, out_seq)), HasSubstr(text));
}

// ---- Sessions: what clients send -----------------------------------------------------------

// Protobuf refuses to parse a string field that is not UTF-8, and gRPC would answer INTERNAL
// with no message: the orchestrator says which field instead.
TEST(BadInputTest, InvalidUtf8IsInvalidArgumentNamingTheField) {
  auto stack = Stack::Start({.script = Script({Reply("Still answering.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("u1", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));

  grpc::Status in_json = Append(*stack, "u1", "{\"kind\":\"stop\",\"message\":\"caf\xe9\"}");
  EXPECT_EQ(in_json.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(in_json.error_message(),
              HasSubstr("field baton.v1.AppendRequest.body_json is not valid UTF-8"));
  grpc::Status in_id = Append(*stack, "u\xff", R"({"kind":"stop"})");
  EXPECT_EQ(in_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(in_id.error_message(), HasSubstr("baton.v1.AppendRequest.chat_id"));
  // A lone surrogate escape is valid UTF-8 text but not valid JSON.
  grpc::Status surrogate = Append(*stack, "u1", R"({"kind":"stop","message":"\ud800"})");
  EXPECT_EQ(surrogate.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(surrogate.error_message(), HasSubstr("invalid JSON at byte"));

  grpc::Status payload = Create(
      *stack, CreateRequest("u2", "chat", v1::TRIGGER_PRELOAD, "{\"metadata\":\"\xc3\x28\"}"));
  EXPECT_EQ(payload.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(payload.error_message(), HasSubstr("CreateSessionRequest.payload_json"));
  EXPECT_EQ(GetStatus(*stack, "u2").error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(stack->Get("u1").in_seq(), 0);
  ExpectAnswers(*stack, "u1", "Still answering.");
}

// A `.in` stop record padded to exactly `size` bytes.
std::string StopRecordOfSize(size_t size) {
  const std::string head = R"({"kind":"stop","message":")";
  const std::string tail = R"("})";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

TEST(BadInputTest, CreateSessionRefusesWhatNoRunCouldStartAndStoresNothing) {
  auto stack = Stack::Start({.script = Script({Reply("Created after all.")})});
  ASSERT_NE(stack, nullptr);
  struct Case {
    v1::CreateSessionRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  const std::string big(kMaxInRecordBytes + 1 - std::string(R"({"metadata":""})").size(), 'x');
  const std::string no_parts = R"({"message":{"id":"u1","role":"user"}})";
  const std::string untyped_part =
      R"({"message":{"id":"u1","role":"user","parts":[{"text":"hi"}]}})";
  const std::string bad_role =
      R"({"message":{"id":"u1","role":"robot","parts":[{"type":"text","text":"hi"}]}})";
  std::vector<Case> cases = {
      {CreateRequest("c", "chat", v1::TRIGGER_PRELOAD,
                     absl::StrCat(R"({"metadata":")", big, "\"}")),
       grpc::StatusCode::RESOURCE_EXHAUSTED,
       absl::StrCat("payload_json of ", kMaxInRecordBytes + 1, " bytes exceeds the limit of ",
                    kMaxInRecordBytes)},
      {CreateRequest("c", "chat", v1::TRIGGER_PRELOAD, "{not json"),
       grpc::StatusCode::INVALID_ARGUMENT, "payload_json: invalid JSON at byte 3"},
      {CreateRequest("c", "chat", v1::TRIGGER_PRELOAD, "[]"), grpc::StatusCode::INVALID_ARGUMENT,
       "payload_json must be a JSON object"},
      {CreateRequest("c", "chat", v1::TRIGGER_SUBMIT_MESSAGE, R"({"message":"hello"})"),
       grpc::StatusCode::INVALID_ARGUMENT, "payload.message needs a string id and role"},
      {CreateRequest("c", "chat", v1::TRIGGER_SUBMIT_MESSAGE, no_parts),
       grpc::StatusCode::INVALID_ARGUMENT, "payload.message needs a \"parts\" array"},
      {CreateRequest("c", "chat", v1::TRIGGER_SUBMIT_MESSAGE, untyped_part),
       grpc::StatusCode::INVALID_ARGUMENT,
       "payload.message.parts[0] is not an object with a string \"type\""},
      {CreateRequest("c", "chat", v1::TRIGGER_SUBMIT_MESSAGE, bad_role),
       grpc::StatusCode::INVALID_ARGUMENT, "payload.message has role \"robot\""},
      {CreateRequest("c", "chat", v1::TRIGGER_HANDOVER_PREPARE, R"({"headStartMessages":{}})"),
       grpc::StatusCode::INVALID_ARGUMENT, "payload.headStartMessages must be an array"},
      {CreateRequest("c", "chat", v1::TRIGGER_HANDOVER_PREPARE, R"({"headStartMessages":[7]})"),
       grpc::StatusCode::INVALID_ARGUMENT, "payload.headStartMessages[0] needs a string id"},
      {CreateRequest("", "chat", v1::TRIGGER_PRELOAD, ""), grpc::StatusCode::INVALID_ARGUMENT,
       "chat_id must be 1 to 256 bytes"},
      {CreateRequest(std::string(257, 'c'), "chat", v1::TRIGGER_PRELOAD, ""),
       grpc::StatusCode::INVALID_ARGUMENT, "chat_id must be 1 to 256 bytes"},
      {CreateRequest("c", "", v1::TRIGGER_PRELOAD, ""), grpc::StatusCode::INVALID_ARGUMENT,
       "agent is required"},
      {CreateRequest("c", "chat", v1::TRIGGER_UNSPECIFIED, ""), grpc::StatusCode::INVALID_ARGUMENT,
       "trigger is required"},
      {CreateRequest("c", "chat", static_cast<v1::Trigger>(99), ""),
       grpc::StatusCode::INVALID_ARGUMENT, "trigger 99 is not a known trigger"},
  };
  for (const Case& c : cases) {
    grpc::Status status = Create(*stack, c.request);
    EXPECT_EQ(status.error_code(), c.code) << c.message;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  EXPECT_EQ(GetStatus(*stack, "c").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(stack->Runs().empty());  // no run was queued for any of them

  // A payload exactly at the limit is taken, and the chat answers.
  const std::string fits(kMaxInRecordBytes - std::string(R"({"metadata":""})").size(), 'x');
  ASSERT_TRUE(Create(*stack, CreateRequest("c", "chat", v1::TRIGGER_PRELOAD,
                                           absl::StrCat(R"({"metadata":")", fits, "\"}")))
                  .ok());
  ExpectAnswers(*stack, "c", "Created after all.");
}

TEST(BadInputTest, AppendRefusesMalformedRecordsAndStoresNothing) {
  auto stack = Stack::Start({.script = Script({Reply("Nothing was lost.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("a1", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  struct Case {
    std::string chat_id;
    std::string body;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases = {
      {"a1", StopRecordOfSize(kMaxInRecordBytes + 1), grpc::StatusCode::RESOURCE_EXHAUSTED,
       absl::StrCat(".in record of ", kMaxInRecordBytes + 1, " bytes exceeds the limit of ",
                    kMaxInRecordBytes)},
      {"a1", "{not json", grpc::StatusCode::INVALID_ARGUMENT, "invalid JSON at byte 3"},
      {"a1", "", grpc::StatusCode::INVALID_ARGUMENT, "invalid JSON at byte 1"},
      {"a1", R"([{"kind":"stop"}])", grpc::StatusCode::INVALID_ARGUMENT,
       ".in record is not a JSON object"},
      {"a1", R"({"message":"hi"})", grpc::StatusCode::INVALID_ARGUMENT,
       ".in record has no string \"kind\""},
      {"a1", R"({"kind":"shout"})", grpc::StatusCode::INVALID_ARGUMENT,
       "unknown .in record kind \"shout\""},
      {"a1", R"({"kind":"message"})", grpc::StatusCode::INVALID_ARGUMENT,
       "message record has no object \"payload\""},
      {"a1", R"({"kind":"message","payload":{"message":{"id":"u1","role":"user","parts":"hi"}}})",
       grpc::StatusCode::INVALID_ARGUMENT, "payload.message needs a \"parts\" array"},
      {"a1", R"({"kind":"message","payload":{"message":{"id":"u1","role":"user","parts":[3]}}})",
       grpc::StatusCode::INVALID_ARGUMENT, "payload.message.parts[0] is not an object"},
      {"a1", R"({"kind":"handover","partialAssistantMessage":"text"})",
       grpc::StatusCode::INVALID_ARGUMENT, "needs a \"partialAssistantMessage\" array"},
      {"a1", R"({"kind":"handover","partialAssistantMessage":[{"content":"x"}]})",
       grpc::StatusCode::INVALID_ARGUMENT, "handover partial holds a message without a role"},
      {"a1", R"({"kind":"handover","partialAssistantMessage":[],"isFinal":"yes"})",
       grpc::StatusCode::INVALID_ARGUMENT, "\"isFinal\" must be a boolean"},
      {"nope", R"({"kind":"stop"})", grpc::StatusCode::NOT_FOUND, "no chat nope"},
  };
  for (const Case& c : cases) {
    grpc::Status status = Append(*stack, c.chat_id, c.body);
    EXPECT_EQ(status.error_code(), c.code) << c.message;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  EXPECT_EQ(stack->Get("a1").in_seq(), 0);
  EXPECT_EQ(stack->Get("a1").out_seq(), 0);

  // A record exactly at the limit is taken (a stop with no turn in flight does nothing).
  v1::AppendResponse at_limit;
  ASSERT_TRUE(Append(*stack, "a1", StopRecordOfSize(kMaxInRecordBytes), "", &at_limit).ok());
  EXPECT_EQ(at_limit.seq(), 1);
  ExpectAnswers(*stack, "a1", "Nothing was lost.");
}

// Over the orchestrator's gRPC message limit (the frame bound and one record: 5,308,416 bytes by
// default), gRPC itself refuses the call before the orchestrator reads it.
TEST(BadInputTest, AMessageOverTheGrpcLimitIsRefusedBeforeItIsRead) {
  auto stack = Stack::Start({.script = Script({Reply("Still here.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("g1", "chat", "preload");
  grpc::Status status =
      Append(*stack, "g1", StopRecordOfSize(GrpcMessageLimit(kDefaultFrameBytes) + 1));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
  EXPECT_THAT(status.error_message(), HasSubstr("5308416"));
  EXPECT_EQ(stack->Get("g1").in_seq(), 0);
  ExpectAnswers(*stack, "g1", "Still here.");
}

// A client record id makes a retry safe: the same record again is the first append. Another
// record under a used id is refused, so it cannot vanish as a "duplicate".
TEST(BadInputTest, AReusedClientRecordIdWithAnotherBodyIsRefused) {
  auto stack = Stack::Start({.script = Script({Reply("First."), Reply("Second.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("d1", "chat", "preload");
  v1::AppendResponse first, again;
  ASSERT_TRUE(Append(*stack, "d1", MessageBody("d1", "m1", "one"), "rec-1", &first).ok());
  std::vector<Json> turn = stack->ReadTurns("d1", 0);
  EXPECT_EQ(Text(turn), "First.");
  ASSERT_TRUE(Append(*stack, "d1", MessageBody("d1", "m1", "one"), "rec-1", &again).ok());
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.seq(), first.seq());

  grpc::Status other = Append(*stack, "d1", MessageBody("d1", "m2", "two"), "rec-1");
  EXPECT_EQ(other.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(other.error_message(),
              HasSubstr("client_record_id \"rec-1\" is already .in seq 1 of chat d1"));
  EXPECT_EQ(stack->Get("d1").in_seq(), 1);
  // Ids are the chat's own: another chat may use the same one.
  stack->Create("d2", "chat", "preload");
  EXPECT_TRUE(Append(*stack, "d2", R"({"kind":"stop"})", "rec-1").ok());

  ExpectAnswers(*stack, "d1", "Second.");
  // Two turns in all: the duplicate was not answered again.
  std::vector<Json> all = stack->ReadUntil(
      "d1", 0, [](const std::vector<Json>& r) { return CountControl(r, "turn-complete") >= 2; });
  EXPECT_EQ(CountControl(all, "turn-complete"), 2);
  EXPECT_EQ(Text(all), "First.Second.");
}

TEST(BadInputTest, UnknownAndClosedChatsSaySo) {
  auto stack = Stack::Start({.script = Script({})});
  ASSERT_NE(stack, nullptr);
  EXPECT_EQ(GetStatus(*stack, "ghost").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(GetStatus(*stack, "ghost").error_message(), HasSubstr("no chat ghost"));
  {
    grpc::ClientContext context;
    v1::ListRunsRequest request;
    request.set_chat_id("ghost");
    v1::ListRunsResponse response;
    EXPECT_EQ(stack->sessions().ListRuns(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext context;
    v1::ReadRequest request;
    request.set_chat_id("ghost");
    auto reader = stack->sessions().Read(&context, request);
    v1::ReadResponse response;
    EXPECT_FALSE(reader->Read(&response));
    grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(status.error_message(), HasSubstr("no chat ghost"));
  }
  {
    grpc::ClientContext context;
    v1::CloseRequest request;
    request.set_chat_id("ghost");
    v1::Session session;
    EXPECT_EQ(stack->sessions().Close(&context, request, &session).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  // A closed chat takes no more records. A close reason is at most 1 KiB (docs/security.md).
  stack->Create("z1", "chat", "preload");
  {
    grpc::ClientContext context;
    v1::CloseRequest request;
    request.set_chat_id("z1");
    request.set_reason(std::string(1025, 'r'));
    v1::Session session;
    grpc::Status status = stack->sessions().Close(&context, request, &session);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("reason must be at most 1024 bytes"));
    EXPECT_EQ(stack->Get("z1").in_seq(), 0);
  }
  {
    grpc::ClientContext context;
    v1::CloseRequest request;
    request.set_chat_id("z1");
    v1::Session session;
    ASSERT_TRUE(stack->sessions().Close(&context, request, &session).ok());
  }
  ASSERT_TRUE(stack->WaitForRunState("z1", v1::RUN_STATE_EXITED));
  grpc::Status closed = Append(*stack, "z1", R"({"kind":"stop"})");
  EXPECT_EQ(closed.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(closed.error_message(), HasSubstr("chat z1 is closed"));
  {
    grpc::ClientContext context;
    v1::CancelRunRequest request;
    request.set_chat_id("z1");
    v1::Run run;
    grpc::Status status = stack->sessions().CancelRun(&context, request, &run);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("has no live run"));
  }
}

// An unknown agent is not an error at CreateSession (workers may start after clients): the run
// waits in the queue, ListRuns says why, records wait with it, and a worker that hosts the
// agent gets all of them.
TEST(BadInputTest, ARunForAnAgentNoWorkerHostsSaysSoAndWaits) {
  auto stack = Stack::Start({.script = Script({})});
  ASSERT_NE(stack, nullptr);
  v1::Session session = stack->Create("n1", "nope", "preload");
  EXPECT_EQ(session.state(), v1::SESSION_STATE_LIVE);
  std::vector<v1::Run> runs = stack->Runs("n1");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(runs[0].reason(), "unknown-agent");
  EXPECT_THAT(runs[0].error(), HasSubstr("no connected worker hosts agent \"nope\""));
  v1::AppendResponse appended;
  ASSERT_TRUE(Append(*stack, "n1", MessageBody("n1", "m1", "anyone?"), "", &appended).ok());
  EXPECT_EQ(appended.seq(), 1);
  EXPECT_EQ(appended.run_id(), runs[0].run_id());

  RawWorker raw(stack->gateway(), 1, "nope-host", "nope");
  v1::AssignRun assign = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(assign.run_id(), runs[0].run_id());
  v1::Deliver deliver = raw.Next(v1::GatewayFrame::kDeliver).deliver();
  EXPECT_EQ(deliver.record().seq(), 1);
  EXPECT_THAT(deliver.record().body_json(), HasSubstr("anyone?"));
  runs = stack->Runs("n1");
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_ASSIGNED);
  EXPECT_EQ(runs[0].reason(), "");
  EXPECT_EQ(runs[0].error(), "");
}

// A run no worker has room for says so, to the client too: Get and CreateSession carry the live
// run's state and why it waits, ListRuns the same, /metrics counts it. It runs once a slot
// frees, and the reason clears.
TEST(BadInputTest, ARunNoWorkerHasRoomForSaysSoAndRunsWhenASlotFrees) {
  auto stack = Stack::Start({.script = Script({Reply("Room at last.")}),
                             .capacity = 1,
                             .orchestrator_flags = {"--admin=127.0.0.1:0"},
                             .worker_flags = {"--idle_timeout_ms=600000"}});
  ASSERT_NE(stack, nullptr);
  v1::Session first = stack->Create("full-1", "chat", "preload");
  ASSERT_TRUE(stack->WaitForRunState("full-1", v1::RUN_STATE_RUNNING));
  EXPECT_EQ(stack->Get("full-1").run_state(), v1::RUN_STATE_RUNNING);
  EXPECT_EQ(stack->Get("full-1").queued_reason(), "");

  v1::Session waiting = stack->Create("full-2", "chat", "preload");
  EXPECT_EQ(waiting.run_state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(waiting.queued_reason(), "no-capacity");
  EXPECT_THAT(waiting.queued_error(),
              HasSubstr("every connected worker hosting agent \"chat\" is full"));
  v1::Session got = stack->Get("full-2");
  EXPECT_EQ(got.run_state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(got.queued_reason(), "no-capacity");
  std::vector<v1::Run> runs = stack->Runs("full-2");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].reason(), "no-capacity");
  long status = 0;
  std::string metrics = HttpGet("http://" + stack->admin_address() + "/metrics", &status);
  EXPECT_THAT(metrics, HasSubstr("\nbaton_runs_queued{reason=\"no-capacity\"} 1\n"));
  EXPECT_THAT(metrics, HasSubstr("\nbaton_runs_queued{reason=\"unknown-agent\"} 0\n"));

  // The first chat's run ends: its slot goes to the waiting run, which answers.
  stack->Cancel("full-1");
  ASSERT_TRUE(stack->WaitForRunState("full-2", v1::RUN_STATE_RUNNING));
  got = stack->Get("full-2");
  EXPECT_EQ(got.run_state(), v1::RUN_STATE_RUNNING);
  EXPECT_EQ(got.queued_reason(), "");
  EXPECT_EQ(got.queued_error(), "");
  EXPECT_EQ(stack->Runs("full-2")[0].reason(), "");
  EXPECT_THAT(HttpGet("http://" + stack->admin_address() + "/metrics", &status),
              HasSubstr("\nbaton_runs_queued{reason=\"no-capacity\"} 0\n"));
  stack->SendText("full-2", "u1", "hello?");
  EXPECT_EQ(Text(stack->ReadTurns("full-2", 0)), "Room at last.");
}

// Every Sessions call on one channel, each with a 70 KB chat id: each is answered at once with
// INVALID_ARGUMENT and a short message, and the next call on the same channel is answered. An
// error quoting the whole id would exceed the client's metadata limit: a C++ client got
// RESOURCE_EXHAUSTED instead of the error, others hung with every call behind them.
TEST(BadInputTest, AnOversizedChatIdIsRefusedAtOnceAndTheConnectionGoesOn) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  stack->Create("ok", "chat", "preload");
  auto stub = v1::Sessions::NewStub(stack->Channel({}));
  const std::string huge(70'000, 'x');
  auto context = [](grpc::ClientContext& c) {
    c.set_deadline(std::chrono::system_clock::now() + kLimit);
    return &c;
  };
  auto expect_refused = [&](const grpc::Status& status, const std::string& call) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << call;
    EXPECT_THAT(status.error_message(), HasSubstr("chat_id must be 1 to 256 bytes, not 70000"))
        << call;
    EXPECT_LT(status.error_message().size(), 100u) << call;
  };
  {
    grpc::ClientContext c;
    v1::GetRequest request;
    request.set_chat_id(huge);
    v1::Session session;
    expect_refused(stub->Get(context(c), request, &session), "Get");
  }
  {
    grpc::ClientContext c;
    v1::AppendRequest request;
    request.set_chat_id(huge);
    request.set_body_json(R"({"kind":"stop"})");
    v1::AppendResponse response;
    expect_refused(stub->Append(context(c), request, &response), "Append");
  }
  {
    grpc::ClientContext c;
    v1::CancelRunRequest request;
    request.set_chat_id(huge);
    v1::Run run;
    expect_refused(stub->CancelRun(context(c), request, &run), "CancelRun");
  }
  {
    grpc::ClientContext c;
    v1::CloseRequest request;
    request.set_chat_id(huge);
    v1::Session session;
    expect_refused(stub->Close(context(c), request, &session), "Close");
  }
  {
    grpc::ClientContext c;
    v1::CreateSessionResponse response;
    expect_refused(stub->CreateSession(
                       context(c), CreateRequest(huge, "chat", v1::TRIGGER_PRELOAD, ""), &response),
                   "CreateSession");
  }
  {
    grpc::ClientContext c;
    v1::ReadRequest request;
    request.set_chat_id(huge);
    auto reader = stub->Read(context(c), request);
    v1::ReadResponse response;
    EXPECT_FALSE(reader->Read(&response));
    expect_refused(reader->Finish(), "Read");
  }
  {
    grpc::ClientContext c;
    v1::ListRunsRequest request;
    request.set_chat_id(huge);
    v1::ListRunsResponse response;
    grpc::Status status = stub->ListRuns(context(c), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("chat_id must be at most 256 bytes, not 70000"));
  }
  // A record kind of 100 KB is quoted clipped: "unknown .in record kind "xxx…"… (N bytes)".
  {
    grpc::ClientContext c;
    v1::AppendRequest request;
    request.set_chat_id("ok");
    request.set_body_json(absl::StrCat(R"({"kind":")", std::string(100'000, 'k'), "\"}"));
    v1::AppendResponse response;
    grpc::Status status = stub->Append(context(c), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("unknown .in record kind \"", std::string(64, 'k'),
                                       "\"\xE2\x80\xA6 (100000 bytes)")));
  }
  grpc::ClientContext c;
  v1::GetRequest request;
  request.set_chat_id("ok");
  v1::Session session;
  ASSERT_TRUE(stub->Get(context(c), request, &session).ok());
  EXPECT_EQ(session.chat_id(), "ok");
  EXPECT_EQ(session.in_seq(), 0);
}

// ALREADY_EXISTS quotes what is stored or sent clipped to 64 bytes, so no stored value makes
// the error too large to send.
TEST(BadInputTest, AlreadyExistsQuotesItsValuesClipped) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  const std::string agent(128, 'a');  // the longest agent name
  stack->Create("e1", agent, "preload");
  grpc::Status other_agent = Create(*stack, CreateRequest("e1", "chat", v1::TRIGGER_PRELOAD, ""));
  EXPECT_EQ(other_agent.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(other_agent.error_message(),
              HasSubstr(absl::StrCat("chat e1 exists with agent \"", std::string(64, 'a'),
                                     "\"\xE2\x80\xA6 (128 bytes)")));
  const std::string record_id(256, 'r');  // the longest client record id
  ASSERT_TRUE(Append(*stack, "e1", R"({"kind":"stop"})", record_id).ok());
  grpc::Status reused = Append(*stack, "e1", R"({"kind":"stop","x":1})", record_id);
  EXPECT_EQ(reused.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(
      reused.error_message(),
      HasSubstr(absl::StrCat("client_record_id \"", std::string(64, 'r'),
                             "\"\xE2\x80\xA6 (256 bytes) is already .in seq 1 of chat e1")));
  EXPECT_LT(reused.error_message().size(), 250u);
  EXPECT_EQ(stack->Get("e1").in_seq(), 1);
}

// Every string field a client sends has a limit (docs/bad-input.md): over it, INVALID_ARGUMENT
// saying which, and nothing is stored (a 10 MB agent name once grew the file by 70 MB).
TEST(BadInputTest, EverySessionsFieldHasALimitAndNothingOverItIsStored) {
  auto stack = Stack::Start({.script = Script({Reply("Still fine.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("f1", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  auto file_size = [&] {
    std::error_code ignored;
    return std::filesystem::file_size(stack->Path("baton.db"), ignored) +
           std::filesystem::file_size(stack->Path("baton.db-wal"), ignored);
  };
  const uintmax_t size_before = file_size();
  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    std::string message;
  };
  auto create = [&](const std::string& chat_id, const std::string& agent,
                    const std::string& traceparent = "") {
    v1::CreateSessionRequest request = CreateRequest(chat_id, agent, v1::TRIGGER_PRELOAD, "");
    request.set_traceparent(traceparent);
    return Create(*stack, request);
  };
  auto cancel = [&](const std::string& run_id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kLimit);
    v1::CancelRunRequest request;
    request.set_chat_id("f1");
    request.set_run_id(run_id);
    v1::Run run;
    return stack->sessions().CancelRun(&context, request, &run);
  };
  auto close = [&](const std::string& reason) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kLimit);
    v1::CloseRequest request;
    request.set_chat_id("f1");
    request.set_reason(reason);
    v1::Session session;
    return stack->sessions().Close(&context, request, &session);
  };
  std::vector<Case> cases = {
      {"agent 4 MB", [&] { return create("f2", std::string(4'000'000, 'a')); },
       "an agent name must be at most 128 bytes, not 4000000"},
      {"agent 129", [&] { return create("f2", std::string(129, 'a')); },
       "an agent name must be at most 128 bytes, not 129"},
      {"agent charset", [&] { return create("f2", "my agent"); },
       "agent name \"my agent\" may hold only ASCII letters, digits and - _ . : / @"},
      {"agent control", [&] { return create("f2", "a\nb"); }, "agent name \"a\\nb\" may hold only"},
      {"chat_id 257", [&] { return create(std::string(257, 'c'), "chat"); },
       "chat_id must be 1 to 256 bytes, not 257"},
      {"traceparent", [&] { return create("f2", "chat", std::string(10'000, '0')); },
       "traceparent is not a W3C traceparent"},
      {"client_record_id 257",
       [&] { return Append(*stack, "f1", R"({"kind":"stop"})", std::string(257, 'r')); },
       "client_record_id must be at most 256 bytes, not 257"},
      {"client_record_id 4 MB",
       [&] { return Append(*stack, "f1", R"({"kind":"stop"})", std::string(4'000'000, 'r')); },
       "client_record_id must be at most 256 bytes, not 4000000"},
      {"run_id 65", [&] { return cancel(std::string(65, 'r')); },
       "run_id must be at most 64 bytes, not 65"},
      {"close reason", [&] { return close(std::string(1025, 'r')); },
       "reason must be at most 1024 bytes, not 1025"},
  };
  for (const Case& c : cases) {
    grpc::Status status = c.call();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.name;
    EXPECT_LT(status.error_message().size(), 200u) << c.name;
  }
  EXPECT_EQ(GetStatus(*stack, "f2").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(stack->Runs().size(), 1u);
  EXPECT_EQ(stack->Get("f1").in_seq(), 0);
  EXPECT_EQ(stack->Get("f1").state(), v1::SESSION_STATE_LIVE);
  EXPECT_LT(file_size(), size_before + (1 << 20));  // nothing of the megabytes was written
  // At the limits, everything is taken.
  ASSERT_TRUE(create("f3", std::string(128, 'a')).ok());
  EXPECT_TRUE(Append(*stack, "f1", R"({"kind":"stop"})", std::string(256, 'r')).ok());
  ExpectAnswers(*stack, "f1", "Still fine.");
}

// ---- The model: what a provider sends --------------------------------------------------------

// Raw Anthropic events: a tool call whose streamed arguments are not JSON.
Json BrokenArgumentsResponse() {
  return Json::parse(R"({"events": [
    {"type": "message_start", "message": {"id": "msg_b", "type": "message", "role": "assistant",
     "model": "m", "content": [], "stop_reason": null, "usage": {"input_tokens": 1, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0,
     "content_block": {"type": "tool_use", "id": "toolu_bad", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 0,
     "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Oslo"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
    {"type": "message_stop"}]})");
}

Json ToolCallReply(const std::string& name, Json input) {
  return Json{
      {"reply",
       {{"tool_calls",
         Json::array({{{"id", "toolu_" + name}, {"name", name}, {"input", std::move(input)}}})}}}};
}

// Raw Anthropic events: some text, then an error event mid-stream.
Json ErrorMidStreamResponse() {
  return Json::parse(R"({"events": [
    {"type": "message_start", "message": {"id": "msg_e", "type": "message", "role": "assistant",
     "model": "m", "content": [], "stop_reason": null, "usage": {"input_tokens": 1, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Half an "}},
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded mid-stream"}}]})");
}

const Json* FindChunk(const std::vector<Json>& records, const std::string& type) {
  for (const Json& r : records) {
    if (StringField(r, "type") == type) return &r;
  }
  return nullptr;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// What a model gets wrong ends the step or the turn with a clear error in `.out`, and the chat
// answers the next message: tool arguments that are not JSON or break the tool's schema, a tool
// that does not exist (the model sees the error and takes a second step), a stream cut short
// and an error event mid-stream (the turn ends with an error; the worker's log says why).
TEST(BadInputTest, WhatTheModelGetsWrongIsAnErrorAndTheChatGoesOn) {
  Json truncated = Reply("This answer is cut short");
  truncated["truncate_after"] = 4;  // message_start, block start, ping, the first delta
  auto stack = Stack::Start(
      {.script = Script({BrokenArgumentsResponse(), Reply("A."),
                         ToolCallReply("get_weather", {{"town", "Oslo"}}), Reply("B."),
                         ToolCallReply("get_wether", {{"city", "Oslo"}}), Reply("C."), truncated,
                         ErrorMidStreamResponse(), Reply("Back to normal.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("m1", "weather", "preload");
  int64_t seq = 0;
  auto turn = [&](const std::string& text) {
    stack->SendText("m1", absl::StrCat("u", seq), text);
    std::vector<Json> out = stack->ReadTurns("m1", seq);
    seq = out.back()["seq"].get<int64_t>();
    EXPECT_EQ(Types(out).back(), "trigger:turn-complete");
    return out;
  };
  struct ToolCase {
    std::string error;
    std::string then;
  };
  std::vector<ToolCase> tool_cases = {
      {"Invalid input for tool get_weather: invalid JSON at byte", "A."},
      {"Invalid input for tool get_weather: missing required property \"city\"", "B."},
      {"Model tried to call unavailable tool 'get_wether'", "C."},
  };
  for (size_t i = 0; i < tool_cases.size(); ++i) {
    SCOPED_TRACE(tool_cases[i].error);
    size_t requests_before = stack->llm().requests().size();
    std::vector<Json> out = turn("weather in Oslo?");
    const Json* input_error = FindChunk(out, "tool-input-error");
    ASSERT_NE(input_error, nullptr);
    EXPECT_THAT(StringField(*input_error, "errorText"), HasSubstr(tool_cases[i].error));
    EXPECT_NE(FindChunk(out, "tool-output-error"), nullptr);
    EXPECT_EQ(FindChunk(out, "tool-output-available"), nullptr);  // nothing was executed
    EXPECT_EQ(Text(out), tool_cases[i].then);
    // The model's second step saw the error as the tool's result.
    std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
    ASSERT_EQ(requests.size(), requests_before + 2);
    EXPECT_THAT(requests.back().body, HasSubstr(tool_cases[i].error.substr(0, 30)));
  }

  for (const char* why : {"transfer closed with outstanding read data", "Overloaded mid-stream"}) {
    SCOPED_TRACE(why);
    std::vector<Json> out = turn("tell me more");
    const Json* error = FindChunk(out, "error");
    ASSERT_NE(error, nullptr);
    EXPECT_EQ(StringField(*error, "errorText"), "An error occurred.");  // masked for readers
    const Json* finish = FindChunk(out, "finish");
    ASSERT_NE(finish, nullptr);
    EXPECT_EQ(StringField(*finish, "finishReason"), "error");
    EXPECT_FALSE(Text(out).empty());  // the partial answer is kept
    EXPECT_THAT(ReadFile(stack->Path("worker-0.log")), HasSubstr(why));  // the operator sees why
  }
  EXPECT_EQ(Text(turn("and now?")), "Back to normal.");
}

// ---- The worker: what it writes ---------------------------------------------------------------

// A chunk too large for a `.out` record (here one enormous text delta) would fail the run at the
// orchestrator: the worker writes an error chunk in its place, and the turn goes on.
TEST(BadInputTest, AChunkTooLargeForAnOutRecordBecomesAnErrorAndTheTurnGoesOn) {
  auto stack = Stack::Start({.script = Script({Reply(std::string(kMaxOutRecordBytes + 10, 'x')),
                                               Reply("Small again.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("big", "chat", "submit-message", Json{{"message", UserMessage("u1", "hi")}});
  std::vector<Json> out = stack->ReadTurns("big", 0);
  std::string error;
  for (const Json& r : out) {
    if (StringField(r, "type") == "error") error = StringField(r, "errorText");
  }
  EXPECT_THAT(error, HasSubstr("a \"text-delta\" chunk of "));
  EXPECT_THAT(error, HasSubstr(absl::StrCat("exceeds the limit of ", kMaxOutRecordBytes,
                                            " bytes of a .out record and was dropped")));
  EXPECT_EQ(Types(out).back(), "trigger:turn-complete");
  std::vector<v1::Run> runs = stack->Runs("big");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_RUNNING);
  ExpectAnswers(*stack, "big", "Small again.");
}

// ---- WorkerGateway: what workers send ----------------------------------------------------------

// Opens a Connect stream, sends `first`, and returns how the orchestrator ended it.
grpc::Status ConnectWith(v1::WorkerGateway::Stub& gateway, const v1::WorkerFrame& first) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  auto stream = gateway.Connect(&context);
  stream->Write(first);
  stream->WritesDone();
  v1::GatewayFrame frame;
  while (stream->Read(&frame)) {
  }
  return stream->Finish();
}

TEST(BadInputTest, AStreamMustOpenWithAHelloTheOrchestratorCanUse) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  v1::WorkerFrame credit;
  credit.mutable_credit()->set_runs(1);
  grpc::Status no_hello = ConnectWith(stack->gateway(), credit);
  EXPECT_EQ(no_hello.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_hello.error_message(),
              HasSubstr("the first frame of a Connect stream must be Hello"));
  v1::WorkerFrame hello;
  hello.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_1);
  grpc::Status no_id = ConnectWith(stack->gateway(), hello);
  EXPECT_EQ(no_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_id.error_message(), HasSubstr("Hello needs a worker_id"));
  hello.mutable_hello()->set_worker_id("w");
  hello.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_UNSPECIFIED);
  grpc::Status version = ConnectWith(stack->gateway(), hello);
  EXPECT_EQ(version.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(version.error_message(), HasSubstr("unsupported protocol version"));
}

// Credit is what a worker says it can take; more than its capacity is taken as its capacity.
TEST(BadInputTest, CreditBeyondTheAnnouncedCapacityIsCapped) {
  auto stack = Stack::Start({.workers = 0, .orchestrator_flags = {"--admin=127.0.0.1:0"}});
  ASSERT_NE(stack, nullptr);
  RawWorker raw(stack->gateway(), std::numeric_limits<int32_t>::max());  // capacity 10
  v1::WorkerFrame more;
  more.mutable_credit()->set_runs(std::numeric_limits<int32_t>::max());
  raw.Send(more);
  v1::WorkerFrame beat;
  beat.mutable_heartbeat()->set_seq(1);
  raw.Send(beat);
  raw.Next(v1::GatewayFrame::kHeartbeatAck);  // frames are handled in order: the credit is in
  long status = 0;
  EXPECT_THAT(HttpGet("http://" + stack->admin_address() + "/metrics", &status),
              HasSubstr("\nbaton_worker_slots_free 10\n"));
}

// A run assigned to a raw worker (hosting only `agent`, so that the run's retry can go nowhere
// else) and accepted by it.
struct RawRun {
  std::unique_ptr<RawWorker> worker;
  v1::AssignRun assign;
};

RawRun StartRawRun(Stack& stack, const std::string& chat_id, const std::string& agent) {
  RawRun run;
  run.worker = std::make_unique<RawWorker>(stack.gateway(), 1, "raw-" + agent, agent);
  stack.Create(chat_id, agent, "submit-message", Json{{"message", UserMessage("u1", "hi")}});
  run.assign = run.worker->Next(v1::GatewayFrame::kAssignRun).assign_run();
  v1::WorkerFrame accept;
  accept.mutable_run_accepted()->set_run_id(run.assign.run_id());
  accept.mutable_run_accepted()->set_lease_token(run.assign.lease_token());
  run.worker->Send(accept);
  return run;
}

v1::WorkerFrame OutputOf(const RawRun& run, std::vector<v1::OutRecord> records) {
  v1::WorkerFrame frame;
  frame.mutable_run_output()->set_run_id(run.assign.run_id());
  frame.mutable_run_output()->set_lease_token(run.assign.lease_token());
  for (v1::OutRecord& r : records) *frame.mutable_run_output()->add_records() = std::move(r);
  return frame;
}

v1::OutRecord ChunkRecord(int64_t seq, const std::string& chunk_json) {
  v1::OutRecord record;
  record.set_seq(seq);
  record.set_chunk_json(chunk_json);
  return record;
}

v1::WorkerFrame SnapshotOf(const RawRun& run, const std::string& json, int64_t in_seq,
                           int64_t out_seq) {
  v1::WorkerFrame frame;
  v1::Snapshot& snapshot = *frame.mutable_snapshot();
  snapshot.set_run_id(run.assign.run_id());
  snapshot.set_lease_token(run.assign.lease_token());
  snapshot.set_snapshot_json(json);
  snapshot.set_in_seq(in_seq);
  snapshot.set_out_seq(out_seq);
  return frame;
}

// A worker's output or snapshot that readers or continuations could not use is not stored: the
// worker loses the run (LeaseRevoked, saying why), the run fails retryably with the reason, and
// attempt 2 waits for a worker.
TEST(BadInputTest, BadWorkerOutputAndSnapshotsAreRefusedAndTheRunRetried) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  v1::OutRecord empty;
  empty.set_seq(1);
  v1::OutRecord no_subtype;
  no_subtype.set_seq(1);
  no_subtype.mutable_control();
  const std::string huge = absl::StrCat(R"({"type":"text-delta","id":"t","delta":")",
                                        std::string(kMaxOutRecordBytes, 'x'), "\"}");
  const std::string good = R"({"type":"start"})";
  struct Case {
    std::string name;
    std::function<v1::WorkerFrame(const RawRun&)> frame;
    std::string reason;
    std::string error;
  };
  std::vector<Case> cases = {
      {"notjson", [](const RawRun& r) { return OutputOf(r, {ChunkRecord(1, "{oops")}); },
       "bad-output", ".out record 1: chunk_json: invalid JSON at byte"},
      {"array", [](const RawRun& r) { return OutputOf(r, {ChunkRecord(1, "[1]")}); }, "bad-output",
       ".out record 1: chunk_json is not a JSON object with a string \"type\""},
      {"untyped", [](const RawRun& r) { return OutputOf(r, {ChunkRecord(1, R"({"delta":"x"})")}); },
       "bad-output", "chunk_json is not a JSON object with a string \"type\""},
      {"empty", [&](const RawRun& r) { return OutputOf(r, {empty}); }, "bad-output",
       ".out record 1 holds neither a chunk nor a control record"},
      {"subtype", [&](const RawRun& r) { return OutputOf(r, {no_subtype}); }, "bad-output",
       ".out record 1: control record without a subtype"},
      {"seqzero", [&](const RawRun& r) { return OutputOf(r, {ChunkRecord(0, good)}); },
       "bad-output", ".out record has seq 0; seqs start at 1"},
      {"gap", [&](const RawRun& r) { return OutputOf(r, {ChunkRecord(2, good)}); }, "bad-output",
       ".out record 2 leaves a gap after seq 0"},
      {"oversized", [&](const RawRun& r) { return OutputOf(r, {ChunkRecord(1, huge)}); },
       "bad-output", absl::StrCat("exceeds the limit of ", kMaxOutRecordBytes)},
      // The whole batch or nothing: the good first record is not stored either.
      {"batch",
       [&](const RawRun& r) {
         return OutputOf(r, {ChunkRecord(1, good), ChunkRecord(2, "x")});
       },
       "bad-output", ".out record 2: chunk_json"},
      {"snapjson", [](const RawRun& r) { return SnapshotOf(r, "{", 0, 0); }, "bad-snapshot",
       "snapshot_json: invalid JSON"},
      {"snaparray", [](const RawRun& r) { return SnapshotOf(r, "[]", 0, 0); }, "bad-snapshot",
       "snapshot_json is not a JSON object"},
      {"snapmessages", [](const RawRun& r) { return SnapshotOf(r, R"({"messages":{}})", 0, 0); },
       "bad-snapshot", "\"messages\" is not an array"},
      {"snapin", [](const RawRun& r) { return SnapshotOf(r, "{}", 5, 0); }, "bad-snapshot",
       "snapshot in_seq 5 is outside .in (0 to 0)"},
      {"snapout", [](const RawRun& r) { return SnapshotOf(r, "{}", 0, 3); }, "bad-snapshot",
       "snapshot out_seq 3 is outside the stored .out (0 to 0)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string chat_id = "w-" + c.name;
    RawRun run = StartRawRun(*stack, chat_id, "agent-" + c.name);
    run.worker->Send(c.frame(run));
    v1::LeaseRevoked revoked = run.worker->Next(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
    EXPECT_EQ(revoked.run_id(), run.assign.run_id());
    EXPECT_THAT(revoked.reason(), HasSubstr(c.error));
    std::vector<v1::Run> runs = stack->Runs(chat_id);
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(runs[0].state(), v1::RUN_STATE_FAILED);
    EXPECT_EQ(runs[0].reason(), c.reason);
    EXPECT_THAT(runs[0].error(), HasSubstr(c.error));
    EXPECT_EQ(runs[1].attempt(), 2);
    EXPECT_EQ(runs[1].state(), v1::RUN_STATE_QUEUED);
    EXPECT_EQ(stack->Get(chat_id).out_seq(), 0);
  }
}

// A worker's text over its limit (a reason, an error) is not kept: the run fails as after bad
// output ("bad-frame", retried), the worker's lease is revoked saying why. A run id longer than
// any issued names no run: the frame is dropped, not answered (an answer would echo the id).
TEST(BadInputTest, WorkerFramesOverTheirLimitsAreRefused) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  struct Case {
    std::string name;
    std::function<v1::WorkerFrame(const RawRun&)> frame;
    std::string error;
  };
  auto rejected = [](const RawRun& r, const std::string& reason) {
    v1::WorkerFrame frame;
    frame.mutable_run_rejected()->set_run_id(r.assign.run_id());
    frame.mutable_run_rejected()->set_lease_token(r.assign.lease_token());
    frame.mutable_run_rejected()->set_reason(reason);
    return frame;
  };
  auto finished = [](const RawRun& r, const std::string& reason, const std::string& error) {
    v1::WorkerFrame frame;
    v1::RunFinished& f = *frame.mutable_run_finished();
    f.set_run_id(r.assign.run_id());
    f.set_lease_token(r.assign.lease_token());
    f.set_end(v1::RUN_END_FAILED);
    f.set_reason(reason);
    f.set_error(error);
    return frame;
  };
  std::vector<Case> cases = {
      {"rejectreason",
       [&](const RawRun& r) { return rejected(r, "bad-" + std::string(kMaxRunReasonBytes, 'x')); },
       "RunRejected.reason of 260 bytes exceeds the limit of 256"},
      {"finishreason",
       [&](const RawRun& r) { return finished(r, std::string(kMaxRunReasonBytes + 1, 'x'), ""); },
       "RunFinished.reason of 257 bytes exceeds the limit of 256"},
      {"finisherror",
       [&](const RawRun& r) { return finished(r, "hook-error", std::string(4'000'000, 'e')); },
       "RunFinished.error of 4000000 bytes exceeds the limit of 4096"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string chat_id = "l-" + c.name;
    RawRun run = StartRawRun(*stack, chat_id, "agent-" + c.name);
    run.worker->Send(c.frame(run));
    v1::LeaseRevoked revoked = run.worker->Next(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
    EXPECT_EQ(revoked.run_id(), run.assign.run_id());
    EXPECT_EQ(revoked.reason(), absl::StrCat("bad-frame: ", c.error));
    std::vector<v1::Run> runs = stack->Runs(chat_id);
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(runs[0].state(), v1::RUN_STATE_FAILED);
    EXPECT_EQ(runs[0].reason(), "bad-frame");
    EXPECT_EQ(runs[0].error(), c.error);  // what is stored is the limit, not the text
    EXPECT_EQ(runs[1].attempt(), 2);
  }

  // Run ids longer than any issued: the frames are dropped, unanswered; the stream and the run
  // go on. Frames are handled in order, so the first LeaseRevoked the worker gets is the one for
  // the stale write sent last.
  RawRun run = StartRawRun(*stack, "l-runid", "agent-runid");
  const std::string long_id(65, 'r');
  v1::WorkerFrame output = OutputOf(run, {ChunkRecord(1, R"({"type":"start"})")});
  output.mutable_run_output()->set_run_id(long_id);
  run.worker->Send(output);
  v1::WorkerFrame accepted;
  accepted.mutable_run_accepted()->set_run_id(std::string(4'000'000, 'r'));
  run.worker->Send(accepted);
  v1::WorkerFrame beat;
  beat.mutable_heartbeat()->set_seq(7);
  beat.mutable_heartbeat()->add_runs()->set_run_id(long_id);
  run.worker->Send(beat);
  v1::WorkerFrame stale;
  stale.mutable_run_accepted()->set_run_id("run_999999");
  stale.mutable_run_accepted()->set_lease_token(1);
  run.worker->Send(stale);
  EXPECT_EQ(run.worker->Next(v1::GatewayFrame::kLeaseRevoked).lease_revoked().run_id(),
            "run_999999");
  EXPECT_EQ(stack->Runs("l-runid").back().state(), v1::RUN_STATE_RUNNING);
  EXPECT_EQ(stack->Get("l-runid").out_seq(), 0);
}

// A Hello over any of its limits ends the stream at once saying which; nothing of it is kept.
TEST(BadInputTest, AHelloOverItsLimitsIsRefused) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  auto hello = [] {
    v1::WorkerFrame frame;
    frame.mutable_hello()->set_worker_id("w");
    frame.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_1);
    frame.mutable_hello()->set_capacity(1);
    frame.mutable_hello()->add_agents()->set_name("chat");
    return frame;
  };
  struct Case {
    std::string name;
    std::function<void(v1::Hello&)> edit;
    std::string message;
  };
  std::vector<Case> cases = {
      {"worker_id", [](v1::Hello& h) { h.set_worker_id(std::string(257, 'w')); },
       "Hello needs a worker_id of 1 to 256 bytes, not 257"},
      {"build_id", [](v1::Hello& h) { h.set_build_id(std::string(257, 'b')); },
       "Hello.build_id must be at most 256 bytes, not 257"},
      {"agents",
       [](v1::Hello& h) {
         for (int i = 0; i < 1000; ++i) h.add_agents()->set_name(absl::StrCat("a", i));
       },
       "Hello lists 1001 agents; the most is 1000"},
      {"agent name", [](v1::Hello& h) { h.mutable_agents(0)->set_name(std::string(129, 'a')); },
       "Hello.agents[0]: an agent name must be at most 128 bytes, not 129"},
      {"agent charset", [](v1::Hello& h) { h.mutable_agents(0)->set_name("chat agent"); },
       "Hello.agents[0]: agent name \"chat agent\" may hold only"},
      {"agent empty", [](v1::Hello& h) { h.mutable_agents(0)->set_name(""); },
       "Hello.agents[0]: an agent name must not be empty"},
      {"version", [](v1::Hello& h) { h.mutable_agents(0)->set_version(std::string(129, 'v')); },
       "Hello.agents[0].version must be at most 128 bytes, not 129"},
      {"labels",
       [](v1::Hello& h) {
         for (int i = 0; i < 65; ++i) (*h.mutable_labels())[absl::StrCat("k", i)] = "v";
       },
       "Hello has 65 labels; the most is 64"},
      {"label value", [](v1::Hello& h) { (*h.mutable_labels())["zone"] = std::string(1025, 'v'); },
       "Hello label \"zone\": a key must be 1 to 128 bytes and a value at most 1024"},
      {"label key", [](v1::Hello& h) { (*h.mutable_labels())[std::string(129, 'k')] = "v"; },
       "Hello label \"kkkk"},
      {"held run id", [](v1::Hello& h) { h.add_held_runs()->set_run_id(std::string(65, 'r')); },
       "Hello.held_runs[0].run_id must be at most 64 bytes, not 65"},
      {"system prompt",
       [](v1::Hello& h) { h.mutable_agents(0)->set_system(std::string((256 << 10) + 1, 's')); },
       "Hello.agents[0].system must be at most 262144 bytes, not 262145"},
      {"tools size",
       [](v1::Hello& h) { h.mutable_agents(0)->set_tools_json(std::string((1 << 20) + 1, ' ')); },
       "Hello.agents[0].tools_json must be at most 1048576 bytes"},
      {"tools not JSON", [](v1::Hello& h) { h.mutable_agents(0)->set_tools_json("[{"); },
       "Hello.agents[0].tools_json is not JSON"},
      {"tools not an array", [](v1::Hello& h) { h.mutable_agents(0)->set_tools_json("{}"); },
       "Hello.agents[0].tools_json is not a JSON array"},
      {"tool without a name",
       [](v1::Hello& h) { h.mutable_agents(0)->set_tools_json(R"([{"description":"x"}])"); },
       "Hello.agents[0].tools_json[0] is not an object with a non-empty string \"name\""},
      {"model id", [](v1::Hello& h) { h.mutable_agents(0)->set_model_id(std::string(257, 'm')); },
       "Hello.agents[0].model_id must be at most 256 bytes, not 257"},
  };
  for (const Case& c : cases) {
    v1::WorkerFrame frame = hello();
    c.edit(*frame.mutable_hello());
    grpc::Status status = ConnectWith(stack->gateway(), frame);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.name;
    EXPECT_LT(status.error_message().size(), 200u) << c.name;
  }
  // None got in: a run for "chat" finds no worker.
  stack->Create("h1", "chat", "preload");
  EXPECT_EQ(stack->Runs("h1")[0].reason(), "unknown-agent");
  // The Hello as it is, at every limit, is taken.
  v1::WorkerFrame full = hello();
  v1::Hello& h = *full.mutable_hello();
  h.set_worker_id(std::string(256, 'w'));
  h.set_build_id(std::string(256, 'b'));
  h.mutable_agents(0)->set_version(std::string(128, 'v'));
  for (int i = 0; i < 63; ++i) (*h.mutable_labels())[absl::StrCat("k", i)] = std::string(1024, 'v');
  (*h.mutable_labels())[std::string(128, 'k')] = "v";
  EXPECT_TRUE(ConnectWith(stack->gateway(), full).ok());
}

// What a worker announces of an agent is what Sessions.GetAgent serves to a warm side, while the
// worker is connected; an agent announced with head starts off refuses a head start's chat.
TEST(BadInputTest, GetAgentServesTheAnnouncementAndHonoursAHeadStartRefusal) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  auto get = [&](const std::string& name, v1::AgentInfo* info) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kLimit);
    v1::GetAgentRequest request;
    request.set_name(name);
    return stack->sessions().GetAgent(&context, request, info);
  };
  v1::AgentInfo none;
  EXPECT_EQ(get("solo", &none).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(get(std::string(129, 'a'), &none).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  auto stream = stack->gateway().Connect(&context);
  v1::WorkerFrame frame;
  v1::Hello& hello = *frame.mutable_hello();
  hello.set_worker_id("w");
  hello.set_protocol_version(v1::PROTOCOL_VERSION_1);
  v1::AgentInfo& solo = *hello.add_agents();
  solo.set_name("solo");
  solo.set_system("You answer alone.");
  solo.set_tools_json(R"([{"name":"lookup","description":"d","inputSchema":{"type":"object"}}])");
  solo.set_model_provider("anthropic");
  solo.set_model_id("m1");
  solo.set_head_start_disabled(true);
  ASSERT_TRUE(stream->Write(frame));
  ASSERT_TRUE(stack->WaitForAgent("solo"));

  v1::AgentInfo info;
  ASSERT_TRUE(get("solo", &info).ok());
  EXPECT_EQ(info.system(), "You answer alone.");
  EXPECT_THAT(info.tools_json(), HasSubstr("lookup"));
  EXPECT_EQ(info.model_id(), "m1");
  EXPECT_TRUE(info.head_start_disabled());

  grpc::Status refused = Create(
      *stack,
      CreateRequest("hs", "solo", v1::TRIGGER_HANDOVER_PREPARE,
                    DumpJson(Json{{"headStartMessages", Json::array({UserMessage("u1", "hi")})}})));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr("does not allow a head start"));
  EXPECT_EQ(get("chat", &none).error_code(), grpc::StatusCode::NOT_FOUND);

  // Gone with its worker.
  stream->WritesDone();
  v1::GatewayFrame ignored;
  while (stream->Read(&ignored)) {
  }
  stream->Finish();
  bool gone = false;
  for (auto until = std::chrono::steady_clock::now() + kLimit;
       !gone && std::chrono::steady_clock::now() < until;) {
    gone = get("solo", &none).error_code() == grpc::StatusCode::NOT_FOUND;
  }
  EXPECT_TRUE(gone);
}

// End to end: the retry of a run whose worker wrote garbage answers on a good worker, and
// readers see only good records, numbered from 1.
TEST(BadInputTest, AChatWhoseWorkerWroteGarbageIsAnsweredByTheRetry) {
  auto stack =
      Stack::Start({.script = Script({Reply("Answered by a good worker.")}), .workers = 0});
  ASSERT_NE(stack, nullptr);
  RawRun run = StartRawRun(*stack, "g1", "chat");
  run.worker->Send(OutputOf(run, {ChunkRecord(1, "not a chunk")}));
  run.worker->Next(v1::GatewayFrame::kLeaseRevoked);
  stack->AddWorker();
  std::vector<Json> out = stack->ReadTurns("g1", 0);
  EXPECT_EQ(Text(out), "Answered by a good worker.");
  EXPECT_EQ(out.front()["$seq"], 1);
  std::vector<v1::Run> runs = stack->Runs("g1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].reason(), "bad-output");
  EXPECT_EQ(runs[1].worker_id(), "worker-0");
}

// Over gRPC's message limit (the frame bound and one record) a frame never reaches the
// orchestrator: gRPC ends the stream.
TEST(BadInputTest, AFrameOverTheGrpcLimitEndsTheStream) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  RawRun run = StartRawRun(*stack, "big", "chat");
  run.worker->TrySend(
      OutputOf(run, {ChunkRecord(1, std::string(GrpcMessageLimit(kDefaultFrameBytes) + 1, ' '))}));
  grpc::Status status = run.worker->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
  EXPECT_EQ(stack->Get("big").out_seq(), 0);
}

TEST(BadInputTest, AWorkerFrameThatDoesNotParseEndsItsStreamSayingWhy) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  RawWorker raw(stack->gateway(), 1);
  v1::WorkerFrame frame;
  frame.mutable_run_finished()->set_run_id("run_1");
  frame.mutable_run_finished()->set_error("caf\xe9");
  raw.Send(frame);
  grpc::Status status = raw.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("baton.v1.RunFinished.error is not valid UTF-8"));
}

// ---- The worker: what the orchestrator sends it -----------------------------------------------

// An orchestrator written by hand: a WorkerGateway server in the test process that hands a
// worker's Connect stream to the test, so the test can send a real baton-worker any frame.
class FakeGateway final : public v1::WorkerGateway::Service {
 public:
  using Stream = grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>;

  grpc::Status Connect(grpc::ServerContext* context, Stream* stream) override {
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr || done_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy");
    stream_ = stream;
    auto over = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&over), absl::Milliseconds(100))) {
      if (context->IsCancelled()) break;
    }
    stream_ = nullptr;
    return grpc::Status::OK;
  }

  // The stream of the worker that connected (null after the limit).
  Stream* WaitForStream() {
    absl::MutexLock lock(&mu_);
    auto connected = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_ != nullptr; };
    mu_.AwaitWithTimeout(absl::Condition(&connected), absl::FromChrono(kLimit));
    return stream_;
  }

  void Done() {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

 private:
  absl::Mutex mu_;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// The next frame of `kind` the worker sends, skipping heartbeats and credit.
v1::WorkerFrame NextFrom(FakeGateway::Stream& stream, v1::WorkerFrame::FrameCase kind) {
  v1::WorkerFrame frame;
  while (stream.Read(&frame)) {
    if (frame.frame_case() == kind) return frame;
  }
  ADD_FAILURE() << "the worker's stream ended before a frame of kind " << kind;
  return frame;
}

// A worker rejects an assignment it cannot read, saying what is wrong, and skips a delivered
// record it cannot decode; either way it carries on with the next good one.
TEST(BadInputTest, AWorkerRefusesAssignmentsAndRecordsItCannotRead) {
  absl::StatusOr<std::unique_ptr<fakellm::FakeLlm>> llm =
      fakellm::FakeLlm::Start(Script({Reply("Still working.")}));
  ASSERT_TRUE(llm.ok()) << llm.status();
  FakeGateway gateway;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&gateway);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  std::string dir = ::testing::TempDir();
  absl::StatusOr<std::unique_ptr<Process>> worker =
      Process::Spawn({BATON_WORKER_BINARY, absl::StrCat("--orchestrator=127.0.0.1:", port),
                      "--worker_id=w", absl::StrCat("--base_url=", (*llm)->base_url()),
                      "--provider=anthropic", "--api_key_env=BATON_TEST_NO_KEY", "--model=test"},
                     dir + "bad-input-worker.log");
  ASSERT_TRUE(worker.ok()) << worker.status();

  FakeGateway::Stream* stream = gateway.WaitForStream();
  ASSERT_NE(stream, nullptr);
  NextFrom(*stream, v1::WorkerFrame::kHello);
  v1::GatewayFrame welcome;
  welcome.mutable_welcome()->set_connection_id("c1");
  welcome.mutable_welcome()->set_heartbeat_interval_ms(60000);
  ASSERT_TRUE(stream->Write(welcome));

  auto assignment = [](int n) {
    v1::GatewayFrame frame;
    v1::AssignRun& assign = *frame.mutable_assign_run();
    assign.set_run_id(absl::StrCat("run_", n));
    assign.set_attempt(1);
    assign.set_lease_token(n);
    assign.set_agent("chat");
    assign.set_chat_id(absl::StrCat("chat_", n));
    assign.set_trigger(v1::TRIGGER_PRELOAD);
    return frame;
  };
  struct Case {
    std::function<void(v1::AssignRun&)> spoil;
    std::string reason;
  };
  std::vector<Case> cases = {
      {[](v1::AssignRun& a) { a.set_agent("nope"); }, "unknown-agent"},
      {[](v1::AssignRun& a) { a.set_payload_json("{"); },
       "bad-payload: payload_json: invalid JSON at byte"},
      {[](v1::AssignRun& a) { a.set_payload_json("[]"); },
       "bad-payload: payload_json is not a JSON object"},
      {[](v1::AssignRun& a) { a.set_payload_json(R"({"message":{"id":"u1"}})"); },
       "bad-payload: payload.message needs a string id and role"},
      {[](v1::AssignRun& a) { a.set_snapshot_json("snap"); },
       "bad-snapshot: snapshot_json: invalid JSON"},
      {[](v1::AssignRun& a) { a.set_snapshot_json(R"({"messages":7})"); },
       "bad-snapshot: snapshot_json: \"messages\" is not an array"},
      {[](v1::AssignRun& a) {
         v1::InRecord& r = *a.add_pending();
         r.set_seq(4);
         r.set_body_json(R"({"kind":"nope"})");
       },
       "bad-pending-record: .in record 4: unknown .in record kind \"nope\""},
      {[](v1::AssignRun& a) { a.add_out_tail()->set_chunk_json("[]"); },
       "bad-out-record: .out record 0 holds a chunk that is not a JSON object"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].reason);
    v1::GatewayFrame frame = assignment(static_cast<int>(i) + 1);
    cases[i].spoil(*frame.mutable_assign_run());
    ASSERT_TRUE(stream->Write(frame));
    v1::RunRejected rejected = NextFrom(*stream, v1::WorkerFrame::kRunRejected).run_rejected();
    EXPECT_EQ(rejected.run_id(), frame.assign_run().run_id());
    EXPECT_THAT(rejected.reason(), HasSubstr(cases[i].reason));
  }

  // A good assignment is taken; a record it cannot decode is acknowledged and skipped; the next
  // message is answered.
  v1::GatewayFrame good = assignment(100);
  ASSERT_TRUE(stream->Write(good));
  EXPECT_EQ(NextFrom(*stream, v1::WorkerFrame::kRunAccepted).run_accepted().run_id(), "run_100");
  v1::GatewayFrame deliver;
  deliver.mutable_deliver()->set_run_id("run_100");
  deliver.mutable_deliver()->set_lease_token(100);
  deliver.mutable_deliver()->mutable_record()->set_seq(1);
  deliver.mutable_deliver()->mutable_record()->set_body_json(R"({"kind":"zzz"})");
  ASSERT_TRUE(stream->Write(deliver));
  EXPECT_EQ(NextFrom(*stream, v1::WorkerFrame::kDelivered).delivered().in_seq(), 1);
  deliver.mutable_deliver()->mutable_record()->set_seq(2);
  deliver.mutable_deliver()->mutable_record()->set_body_json(MessageBody("chat_100", "m1", "hi"));
  ASSERT_TRUE(stream->Write(deliver));
  std::string text;
  while (text != "Still working.") {
    v1::WorkerFrame output = NextFrom(*stream, v1::WorkerFrame::kRunOutput);
    if (output.frame_case() != v1::WorkerFrame::kRunOutput) break;
    for (const v1::OutRecord& r : output.run_output().records()) {
      absl::StatusOr<Json> chunk = ParseJson(r.chunk_json());
      if (chunk.ok() && StringField(*chunk, "type") == "text-delta") {
        text += StringField(*chunk, "delta");
      }
    }
  }
  EXPECT_EQ(text, "Still working.");
  worker->reset();  // SIGKILL
  gateway.Done();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace
}  // namespace baton::testing
