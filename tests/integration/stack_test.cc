// The whole stack over loopback: baton-orchestrator (SQLite), baton-worker processes and
// fake-llm, driven through the Sessions API. DESIGN §3 and §4 seen from a client.
#include "tests/integration/stack.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "asio/co_spawn.hpp"
#include "asio/io_context.hpp"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/client/head_start.h"
#include "runtime/model/http_client.h"
#include "runtime/model/providers.h"
#include "tasks/agents.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }

Json ToolReply(const std::string& text, const std::string& id, const std::string& city) {
  return Json{
      {"reply",
       {{"text", text},
        {"tool_calls",
         Json::array({{{"id", id}, {"name", "get_weather"}, {"input", {{"city", city}}}}})}}}};
}

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

TEST(StackTest, SubmitMessageAnswersInText) {
  auto stack = Stack::Start({.script = Script({Reply("Hello from the worker.")})});
  ASSERT_NE(stack, nullptr);
  v1::Session session =
      stack->Create("c1", "chat", "submit-message", Json{{"message", UserMessage("u1", "Hi")}});
  EXPECT_EQ(session.state(), v1::SESSION_STATE_LIVE);
  std::vector<Json> out = stack->ReadTurns("c1", 0);
  EXPECT_EQ(Text(out), "Hello from the worker.");
  EXPECT_EQ(Types(out).front(), "start");
  EXPECT_EQ(Types(out).back(), "trigger:turn-complete");
  // The provider saw the user's message and the agent's system prompt.
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].body, HasSubstr("Hi"));
  EXPECT_THAT(requests[0].body, HasSubstr("helpful assistant"));
}

TEST(StackTest, PreloadThenMessageThenSecondTurnKeepsHistory) {
  auto stack = Stack::Start({.script = Script({Reply("First answer."), Reply("Second answer.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("c2", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  int64_t seq = stack->SendText("c2", "u1", "one");
  EXPECT_EQ(seq, 1);
  std::vector<Json> first = stack->ReadTurns("c2", 0);
  EXPECT_EQ(Text(first), "First answer.");
  stack->SendText("c2", "u2", "two");
  std::vector<Json> second = stack->ReadTurns("c2", first.back()["seq"].get<int64_t>());
  EXPECT_EQ(Text(second), "Second answer.");
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 2u);
  const Json& messages = requests[1].json["messages"];
  ASSERT_EQ(messages.size(), 3u);  // user, assistant, user
  EXPECT_EQ(messages[1]["role"], "assistant");
  EXPECT_THAT(messages[1].dump(), HasSubstr("First answer."));
  // onChatStart knew the chat was preloaded.
  bool preloaded = false;
  for (const Json& line : stack->hooks().lines()) {
    if (line["hook"] == "onChatStart") preloaded = line["args"].value("preloaded", false);
  }
  EXPECT_TRUE(preloaded);
}

TEST(StackTest, ToolCallNeedsAStepTwoModelCall) {
  auto stack = Stack::Start({.script = Script({ToolReply("Checking.", "toolu_1", "Oslo"),
                                               Reply("It is 4 degrees in Oslo.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("c3", "weather", "submit-message",
                Json{{"message", UserMessage("u1", "Weather in Oslo?")}});
  std::vector<Json> out = stack->ReadTurns("c3", 0);
  EXPECT_THAT(Types(out), Contains("tool-input-available"));
  EXPECT_THAT(Types(out), Contains("tool-output-available"));
  EXPECT_EQ(Text(out), "Checking.It is 4 degrees in Oslo.");
  for (const Json& r : out) {
    if (r.value("type", "") == "tool-output-available") {
      EXPECT_EQ(r["output"], (Json{{"city", "Oslo"}, {"tempC", 4}}));
    }
  }
  ASSERT_EQ(stack->llm().requests().size(), 2u);
  EXPECT_THAT(stack->llm().requests()[1].body, HasSubstr("tool_result"));
}

// A warm server runs step 1 (here: this test, with the warm-side library) and hands over; the
// worker executes the tool and streams step 2 under the same message id.
class HeadStartTest : public ::testing::Test {
 protected:
  absl::StatusOr<HeadStartResult> RunWarm(Stack& stack, const std::string& chat_id,
                                          const std::string& agent_name,
                                          std::vector<Json>* chunks) {
    asio::io_context io;
    RealClock clock;
    HookPool pool(1);
    HttpClient http(io.get_executor());
    AnthropicOptions options;
    options.base_url = stack.llm().base_url();
    options.api_key = "warm";
    options.request.model = "test";
    Agent agent = agent_name == "weather"
                      ? tasks::WeatherAgent(std::make_shared<AnthropicModel>(http, options))
                      : tasks::ChatAgent(std::make_shared<AnthropicModel>(http, options));
    HeadStartEnv env{io.get_executor(), &clock, &pool,
                     &stack.sessions(), &agent, [chunks](const Json& c) { chunks->push_back(c); }};
    HeadStartRequest request;
    request.chat_id = chat_id;
    request.agent = agent_name;
    request.messages = Json::array({UserMessage("u1", "Weather in Oslo?")});
    request.message_id = "M1";
    absl::StatusOr<HeadStartResult> result = absl::UnknownError("not run");
    asio::co_spawn(io, RunHeadStart(env, request),
                   [&](std::exception_ptr e, absl::StatusOr<HeadStartResult> r) {
                     if (!e) result = std::move(r);
                   });
    io.run();
    return result;
  }
};

TEST_F(HeadStartTest, HandsOverAToolCallAndTheWorkerRunsStepTwo) {
  auto stack = Stack::Start({.script = Script({ToolReply("Let me check.", "toolu_w", "Oslo"),
                                               Reply("It is 4 degrees in Oslo.")})});
  ASSERT_NE(stack, nullptr);
  std::vector<Json> warm;
  absl::StatusOr<HeadStartResult> result = RunWarm(*stack, "h1", "weather", &warm);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->signal, HeadStartResult::Signal::kHandover);
  EXPECT_EQ(result->signal_seq, 1);
  EXPECT_EQ(Text(warm), "Let me check.");
  EXPECT_EQ(warm.front()["messageId"], "M1");
  std::vector<Json> out = stack->ReadTurns("h1", 0);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front()["type"], "start");
  EXPECT_EQ(out.front()["messageId"], "M1");  // the same message continues
  // The run wrote step 1 first, then the handover-spliced record naming the message and its
  // `start`; step 2 follows with no second `start`.
  ASSERT_EQ(CountControl(out, "handover-spliced"), 1) << DumpJson(Json(out));
  for (const Json& r : out) {
    if (StringField(r, "control") != "handover-spliced") continue;
    EXPECT_EQ(r["headers"].value("message-id", ""), "M1");
    EXPECT_EQ(r["headers"].value("from-seq", ""), absl::StrCat(Seq(out.front())));
  }
  EXPECT_THAT(Types(out), Contains("tool-input-available"));
  EXPECT_THAT(Types(out), Contains("tool-output-available"));
  // `.out` holds the whole answer: step 1's text, the call and its result, step 2.
  EXPECT_EQ(Text(out), "Let me check.It is 4 degrees in Oslo.");
  Json message = ReadMessage(out);
  EXPECT_EQ(message["id"], "M1");
  ASSERT_EQ(message["parts"].size(), 5u) << message.dump();
  EXPECT_EQ(message["parts"][1]["text"], "Let me check.");
  EXPECT_EQ(message["parts"][2]["toolCallId"], "toolu_w");
  EXPECT_EQ(message["parts"][2]["state"], "output-available");
  EXPECT_EQ(message["parts"][4]["text"], "It is 4 degrees in Oslo.");
  // Two model calls in all: the warm step 1 and the worker's step 2 (which saw the result).
  ASSERT_EQ(stack->llm().requests().size(), 2u);
  EXPECT_THAT(stack->llm().requests()[1].body, HasSubstr("tool_result"));
  EXPECT_THAT(stack->llm().requests()[1].body, HasSubstr("tempC"));
}

TEST_F(HeadStartTest, PureTextIsFinalAndTheWorkerCallsNoModel) {
  auto stack = Stack::Start({.script = Script({Reply("Hello from the warm side.")})});
  ASSERT_NE(stack, nullptr);
  std::vector<Json> warm;
  absl::StatusOr<HeadStartResult> result = RunWarm(*stack, "h2", "chat", &warm);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->signal, HeadStartResult::Signal::kFinal);
  std::vector<Json> out = stack->ReadTurns("h2", 0);
  EXPECT_EQ(CountControl(out, "turn-complete"), 1);
  // The run wrote the final step 1 and ended it: `.out` holds the whole answer.
  EXPECT_EQ(CountControl(out, "handover-spliced"), 1);
  EXPECT_EQ(Text(out), "Hello from the warm side.");
  EXPECT_THAT(Types(out), Contains("finish"));
  EXPECT_EQ(ReadMessage(out)["id"], "M1");
  ASSERT_TRUE(stack->hooks().WaitFor("onTurnComplete"));
  EXPECT_EQ(stack->llm().requests().size(), 1u);  // only the warm step 1
}

// The head start's user message is in the boot payload, not on `.in`: a worker that dies while
// it waits for the handover must not take the message with it. The retry answers it as a
// submit-message (the warm side's step 1 is not spliced: its run is gone), once.
// The head start's run is lost before its signal (its worker accepted it, then died): the retry
// is a head start again, takes the warm side's handover-skip and answers the message itself.
// (This test once hung under load: it killed the worker on onBoot, before the orchestrator had
// read its RunAccepted, so the same run went back to the queue as a fresh head start, and a
// skipped head start was then never answered. The test now waits for the run to be running;
// the code answers a skipped head start either way, which the next test pins.)
TEST(StackTest, AHeadStartWhoseWorkerDiesBeforeTheHandoverIsStillAnswered) {
  auto stack = Stack::Start({.script = Script({Reply("Answered by the retry.")}),
                             .workers = 0,
                             .orchestrator_flags = {"--lease_ms=500", "--heartbeat_ms=100"}});
  ASSERT_NE(stack, nullptr);
  int first = stack->AddWorker();
  stack->Create("hd", "chat", "handover-prepare",
                Json{{"headStartMessages", Json::array({UserMessage("u1", "Are you there?")})}});
  ASSERT_TRUE(stack->hooks(first).WaitFor("onBoot"));
  ASSERT_TRUE(stack->WaitForRunState("hd", v1::RUN_STATE_RUNNING));
  int second = stack->AddWorker();
  stack->worker(first).Signal(SIGKILL);
  stack->worker(first).Wait();
  // The warm side gives up meanwhile; the retry takes the signal from `.in`.
  stack->Append("hd", Json{{"kind", "handover-skip"}});
  std::vector<Json> out = stack->ReadTurns("hd", 0);
  EXPECT_EQ(Text(out), "Answered by the retry.");
  EXPECT_EQ(CountControl(out, "turn-complete"), 1);
  ASSERT_TRUE(stack->hooks(second).WaitFor("onTurnComplete"));
  ASSERT_EQ(stack->llm().requests().size(), 1u);
  EXPECT_THAT(stack->llm().requests()[0].body, HasSubstr("Are you there?"));
  std::vector<v1::Run> runs = stack->Runs("hd");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_LOST);
  EXPECT_EQ(runs[1].attempt(), 2);
}

// The same with no wait: the worker dies on onBoot, whether or not the orchestrator read its
// RunAccepted. Either the run is requeued as it was, or it is lost and retried; both are head
// starts that take the skip, and the message is answered once.
TEST(StackTest, AHeadStartWhoseWorkerDiesAtBootIsAnsweredOnceWhicheverWayItIsRetried) {
  auto stack = Stack::Start({.script = Script({Reply("Answered once.")}),
                             .workers = 0,
                             .orchestrator_flags = {"--lease_ms=500", "--heartbeat_ms=100"}});
  ASSERT_NE(stack, nullptr);
  int first = stack->AddWorker();
  stack->Create("hb", "chat", "handover-prepare",
                Json{{"headStartMessages", Json::array({UserMessage("u1", "Still there?")})}});
  ASSERT_TRUE(stack->hooks(first).WaitFor("onBoot"));
  int second = stack->AddWorker();
  stack->worker(first).Signal(SIGKILL);
  stack->worker(first).Wait();
  int64_t skip = stack->Append("hb", Json{{"kind", "handover-skip"}});
  std::vector<Json> out = stack->ReadTurns("hb", 0);
  EXPECT_EQ(Text(out), "Answered once.");
  ASSERT_EQ(CountControl(out, "turn-complete"), 1);
  ASSERT_TRUE(stack->hooks(second).WaitFor("onTurnComplete"));
  EXPECT_EQ(stack->llm().requests().size(), 1u);
  EXPECT_EQ(out.back()["headers"].value("session-in-event-id", ""), absl::StrCat(skip));
}

TEST(StackTest, TraceparentReachesTheProviderCall) {
  auto stack = Stack::Start({.script = Script({Reply("traced")})});
  ASSERT_NE(stack, nullptr);
  const std::string trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  grpc::ClientContext context;
  v1::CreateSessionRequest request;
  request.set_chat_id("t1");
  request.set_agent("chat");
  request.set_trigger(v1::TRIGGER_SUBMIT_MESSAGE);
  request.set_payload_json(DumpJson(Json{{"message", UserMessage("u1", "hi")}}));
  request.set_traceparent(trace);
  v1::CreateSessionResponse response;
  ASSERT_TRUE(stack->sessions().CreateSession(&context, request, &response).ok());
  stack->ReadTurns("t1", 0);
  ASSERT_EQ(stack->llm().requests().size(), 1u);
  EXPECT_EQ(stack->llm().requests()[0].Header("traceparent"), trace);

  // Anything else is refused: it would otherwise reach an HTTP header.
  grpc::ClientContext bad_context;
  request.set_chat_id("t2");
  request.set_traceparent("00-abc\r\nx-injected: 1");
  grpc::Status bad = stack->sessions().CreateSession(&bad_context, request, &response);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(StackTest, ReadResumesFromAnySeqWithNoGapAndNoDuplicate) {
  auto stack = Stack::Start({.script = Script({Reply("One two three four five.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("r1", "chat", "submit-message", Json{{"message", UserMessage("u1", "count")}});
  std::vector<Json> all = stack->ReadTurns("r1", 0);
  ASSERT_GT(all.size(), 4u);
  for (size_t i = 0; i < all.size(); ++i) {
    int64_t seq =
        all[i].contains("$seq") ? all[i]["$seq"].get<int64_t>() : all[i]["seq"].get<int64_t>();
    EXPECT_EQ(seq, static_cast<int64_t>(i) + 1);
  }
  for (int64_t from : {int64_t{1}, int64_t{3}, static_cast<int64_t>(all.size()) - 1}) {
    std::vector<Json> rest = stack->ReadTurns("r1", from);
    ASSERT_EQ(rest.size(), all.size() - static_cast<size_t>(from));
    for (size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i], all[from + i]);
  }
}

// Each response of a Read, as the client got it.
std::vector<v1::ReadResponse> ReadResponses(v1::Sessions::Stub& sessions, const std::string& chat,
                                            int64_t after_seq, bool batch) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::ReadRequest request;
  request.set_chat_id(chat);
  request.set_after_seq(after_seq);
  request.set_batch(batch);
  std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader = sessions.Read(&context, request);
  std::vector<v1::ReadResponse> responses;
  v1::ReadResponse response;
  while (reader->Read(&response)) responses.push_back(response);
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  return responses;
}

// A batched Read carries the same records as one that takes them one by one, in the same
// order, bytes for bytes, in fewer responses of at most 64 KiB (or one larger record), and
// resumes from any seq with no gap. A Read without `batch` never sees `records`: a client
// that does not know the field loses nothing.
TEST(StackTest, ABatchedReadCarriesEveryRecordInOrderInFewerResponses) {
  Json words = Json::array();
  for (int i = 0; i < 3000; ++i) words.push_back(absl::StrCat("w", i, " "));
  Json big = Json::array({std::string(100'000, 'b')});  // one record above the batch bound
  auto stack = Stack::Start({.script = Script({Json{{"reply", {{"text_chunks", words}}}},
                                               Json{{"reply", {{"text_chunks", big}}}}})});
  ASSERT_NE(stack, nullptr);
  stack->Create("b1", "chat", "submit-message", Json{{"message", UserMessage("u1", "talk")}});
  stack->ReadTurns("b1", 0);
  stack->SendText("b1", "u2", "more");
  stack->ReadTurns("b1", 0, 2);

  std::vector<v1::ReadResponse> single = ReadResponses(stack->sessions(), "b1", 0, false);
  ASSERT_GT(single.size(), 3000u);
  std::vector<std::string> expected;
  for (const v1::ReadResponse& r : single) {
    ASSERT_TRUE(r.has_record());
    ASSERT_EQ(r.records_size(), 0);
    EXPECT_EQ(r.record().seq(), static_cast<int64_t>(expected.size()) + 1);
    expected.push_back(r.record().SerializeAsString());
  }

  for (int64_t from :
       {int64_t{0}, int64_t{1}, int64_t{1500}, static_cast<int64_t>(expected.size()) - 1}) {
    std::vector<v1::ReadResponse> batched = ReadResponses(stack->sessions(), "b1", from, true);
    std::vector<std::string> got;
    for (const v1::ReadResponse& r : batched) {
      EXPECT_FALSE(r.has_record());
      ASSERT_GE(r.records_size(), 1);
      size_t bytes = 0;
      for (const v1::OutRecord& record : r.records()) {
        bytes += record.ByteSizeLong();
        got.push_back(record.SerializeAsString());
      }
      if (r.records_size() > 1) {
        EXPECT_LE(bytes, 64u * 1024) << "after seq " << from;
      }
    }
    ASSERT_EQ(got.size(), expected.size() - static_cast<size_t>(from)) << "after seq " << from;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], expected[from + i]) << "record " << from + i + 1;
    }
    if (from == 0) {
      EXPECT_LT(batched.size() * 10, got.size()) << "records were not batched";
    }
  }
}

TEST(StackTest, CreateSessionIsIdempotentAndAppendsAreIdempotentByRecordId) {
  auto stack = Stack::Start({.script = Script({Reply("ok")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("i1", "chat", "preload");
  grpc::ClientContext context;
  v1::CreateSessionRequest again;
  again.set_chat_id("i1");
  again.set_agent("chat");
  again.set_trigger(v1::TRIGGER_PRELOAD);
  v1::CreateSessionResponse response;
  ASSERT_TRUE(stack->sessions().CreateSession(&context, again, &response).ok());
  EXPECT_FALSE(response.created());
  EXPECT_EQ(response.session().runs(), 1);

  auto append = [&](const std::string& id) {
    grpc::ClientContext c;
    v1::AppendRequest request;
    request.set_chat_id("i1");
    request.set_client_record_id(id);
    request.set_body_json(R"({"kind":"stop","message":"x"})");
    v1::AppendResponse r;
    EXPECT_TRUE(stack->sessions().Append(&c, request, &r).ok());
    return r;
  };
  v1::AppendResponse first = append("rec-1");
  v1::AppendResponse second = append("rec-1");
  EXPECT_FALSE(first.duplicate());
  EXPECT_TRUE(second.duplicate());
  EXPECT_EQ(first.seq(), second.seq());
  EXPECT_EQ(stack->Get("i1").in_seq(), 1);
}

TEST(StackTest, BadRequestsGetClearErrorsAndStoreNothing) {
  auto stack = Stack::Start({.script = Script({})});
  ASSERT_NE(stack, nullptr);
  stack->Create("b1", "chat", "preload");
  auto append = [&](const std::string& chat, const std::string& body) {
    grpc::ClientContext c;
    v1::AppendRequest request;
    request.set_chat_id(chat);
    request.set_body_json(body);
    v1::AppendResponse r;
    return stack->sessions().Append(&c, request, &r);
  };
  grpc::Status bad_json = append("b1", "{not json");
  EXPECT_EQ(bad_json.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status bad_kind = append("b1", R"({"kind":"shout"})");
  EXPECT_EQ(bad_kind.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad_kind.error_message(), HasSubstr("shout"));
  grpc::Status huge = append("b1", std::string(2 << 20, ' '));
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  grpc::Status unknown = append("nope", R"({"kind":"handover-skip"})");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(stack->Get("b1").in_seq(), 0);
}

// A continuation after suspension answers the next message with the whole history, on
// whichever worker has a free slot.
TEST(StackTest, SuspendedChatResumesWithFullHistory) {
  auto stack = Stack::Start({.script = Script({Reply("Noted: blue."), Reply("You said blue.")}),
                             .worker_flags = {"--idle_timeout_ms=50"}});
  ASSERT_NE(stack, nullptr);
  stack->Create("s1", "chat", "submit-message",
                Json{{"message", UserMessage("u1", "My colour is blue")}});
  std::vector<Json> first = stack->ReadTurns("s1", 0);
  ASSERT_TRUE(stack->hooks().WaitFor("onChatSuspend"));
  ASSERT_TRUE(stack->hooks().WaitFor("onRunEnd")) << "the run ends suspended";
  stack->SendText("s1", "u2", "What did I say?");
  std::vector<Json> second = stack->ReadTurns("s1", first.back()["seq"].get<int64_t>());
  EXPECT_EQ(Text(second), "You said blue.");
  std::vector<v1::Run> runs = stack->Runs("s1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_SUSPENDED);
  EXPECT_EQ(runs[1].trigger(), "resume");
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 2u);
  const Json& messages = requests[1].json["messages"];
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_THAT(messages[0].dump(), HasSubstr("blue"));
  EXPECT_THAT(messages[1].dump(), HasSubstr("Noted: blue."));
}

// The orchestrator dies and comes back on the same file: the worker reconnects, the run it holds
// is rebound (not retried), and a message appended meanwhile reaches it.
TEST(StackTest, WorkerCarriesOnAcrossAnOrchestratorRestart) {
  auto stack = Stack::Start({.script = Script({Reply("Still here.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("o1", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  // The orchestrator has stored the acceptance (else a restart re-queues the run, rightly).
  ASSERT_TRUE(stack->WaitForRunState("o1", v1::RUN_STATE_RUNNING));
  std::string run_id = stack->Get("o1").run_id();
  stack->RestartOrchestrator();
  stack->SendText("o1", "u1", "are you there?");
  std::vector<Json> out = stack->ReadTurns("o1", 0);
  EXPECT_EQ(Text(out), "Still here.");
  std::vector<v1::Run> runs = stack->Runs("o1");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].run_id(), run_id);
  EXPECT_EQ(runs[0].attempt(), 1);
  bool booted_twice = stack->hooks().WaitFor("onBoot", 2, std::chrono::milliseconds(0));
  EXPECT_FALSE(booted_twice);
}

// GET over loopback with libcurl; the body, or "" on failure.
TEST(StackTest, OrchestratorServesPrometheusMetrics) {
  auto stack = Stack::Start(
      {.script = Script({Reply("measured")}), .orchestrator_flags = {"--admin=127.0.0.1:0"}});
  ASSERT_NE(stack, nullptr);
  stack->Create("m1", "chat", "submit-message", Json{{"message", UserMessage("u1", "hi")}});
  std::vector<Json> out = stack->ReadTurns("m1", 0);
  long status = 0;
  std::string metrics = HttpGet("http://" + stack->admin_address() + "/metrics", &status);
  EXPECT_EQ(status, 200);
  EXPECT_THAT(metrics,
              HasSubstr("# TYPE baton_runs_assigned_total counter\nbaton_runs_assigned_total 1\n"));
  EXPECT_THAT(metrics, HasSubstr("baton_workers_connected 1\n"));
  EXPECT_THAT(metrics, HasSubstr(absl::StrCat("baton_out_records_total ", out.size(), "\n")));
  EXPECT_THAT(metrics, HasSubstr("baton_dispatch_seconds_count 1\n"));
  HttpGet("http://" + stack->admin_address() + "/readyz", &status);
  EXPECT_EQ(status, 200);
  HttpGet("http://" + stack->admin_address() + "/nope", &status);
  EXPECT_EQ(status, 404);
}

// grpc.health.v1.Health/Check for the whole server, called generically (Debian ships no health
// stubs for clients): 1 SERVING, 2 NOT_SERVING, 0 unknown, -1 when the call fails.
int HealthStatus(const std::string& target) {
  grpc::GenericStub stub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);  // HealthCheckRequest{service: ""}
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  response.Dump(&slices).IgnoreError();
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status}: field 1, varint.
  return bytes.empty() ? 0 : (bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : -1);
}

TEST(StackTest, HealthAndMetricsOnOrchestratorAndWorker) {
  auto stack = Stack::Start({.script = Script({Reply("ok")}), .workers = 0});
  ASSERT_NE(stack, nullptr);
  int worker = stack->AddWorker({"--admin=127.0.0.1:0", "--health=127.0.0.1:0"});
  stack->Create("h1", "chat", "preload");
  ASSERT_TRUE(stack->hooks(worker).WaitFor("onPreload"));
  EXPECT_EQ(HealthStatus(stack->address()), 1);
  EXPECT_EQ(HealthStatus(stack->worker_endpoint(worker, "health")), 1);
  long status = 0;
  std::string admin = "http://" + stack->worker_endpoint(worker, "admin");
  HttpGet(admin + "/readyz", &status);
  EXPECT_EQ(status, 200);
  std::string metrics = HttpGet(admin + "/metrics", &status);
  EXPECT_THAT(metrics, HasSubstr("baton_worker_runs_accepted_total 1\n"));
  EXPECT_THAT(metrics, HasSubstr("baton_worker_slots_used 1\n"));
  EXPECT_THAT(metrics, HasSubstr("baton_worker_boot_seconds_count 1\n"));
}

// SIGTERM: the worker stops taking runs, hands back what still runs after its drain grace, and
// exits 0; the orchestrator boots the run again on another worker, which answers the chat.
TEST(StackTest, SigtermDrainsAndHandsRunsBack) {
  auto stack = Stack::Start({.script = Script({Reply("From the second worker.")}), .workers = 0});
  ASSERT_NE(stack, nullptr);
  int first = stack->AddWorker({"--drain_grace_ms=100"});
  stack->Create("d1", "chat", "preload");
  ASSERT_TRUE(stack->hooks(first).WaitFor("onPreload"));
  ASSERT_TRUE(stack->WaitForRunState("d1", v1::RUN_STATE_RUNNING));
  int second = stack->AddWorker();
  stack->worker(first).Signal(SIGTERM);
  EXPECT_EQ(stack->worker(first).Wait(), 0);
  ASSERT_TRUE(stack->hooks(second).WaitFor("onBoot"));
  stack->SendText("d1", "u1", "hello?");
  EXPECT_EQ(Text(stack->ReadTurns("d1", 0)), "From the second worker.");
  std::vector<v1::Run> runs = stack->Runs("d1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].reason(), "worker-shutdown");
  EXPECT_EQ(runs[0].worker_id(), "worker-0");
  EXPECT_EQ(runs[1].attempt(), 2);
  EXPECT_EQ(runs[1].worker_id(), "worker-1");
}

// Over a Unix socket, as on one machine.
TEST(StackTest, WorkersAndClientsOverAUnixSocket) {
  auto stack = Stack::Start({.script = Script({Reply("Over a socket.")}), .unix_socket = true});
  ASSERT_NE(stack, nullptr);
  EXPECT_EQ(stack->address().rfind("unix:", 0), 0u);
  stack->Create("x1", "chat", "submit-message", Json{{"message", UserMessage("u1", "hi")}});
  EXPECT_EQ(Text(stack->ReadTurns("x1", 0)), "Over a socket.");
}

// Credit is the most runs a worker gets: with capacity 2, a third and fourth run queue until a
// slot frees.
TEST(StackTest, CreditsAreNeverExceeded) {
  auto stack = Stack::Start({.script = Script({}), .capacity = 2});
  ASSERT_NE(stack, nullptr);
  for (int i = 0; i < 4; ++i) stack->Create(absl::StrCat("p", i), "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload", 2));
  // A run holds a slot from its assignment (its acceptance may still be on its way).
  auto count = [&](v1::RunState state) {
    int n = 0;
    for (const v1::Run& run : stack->Runs()) {
      v1::RunState s = run.state() == v1::RUN_STATE_ASSIGNED ? v1::RUN_STATE_RUNNING : run.state();
      n += s == state ? 1 : 0;
    }
    return n;
  };
  EXPECT_EQ(count(v1::RUN_STATE_RUNNING), 2);
  EXPECT_EQ(count(v1::RUN_STATE_QUEUED), 2);
  // Cancelling one frees its slot: exactly one queued run takes it.
  grpc::ClientContext context;
  v1::CancelRunRequest cancel;
  cancel.set_chat_id("p0");
  v1::Run cancelled;
  ASSERT_TRUE(stack->sessions().CancelRun(&context, cancel, &cancelled).ok());
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload", 3));
  EXPECT_EQ(count(v1::RUN_STATE_RUNNING), 2);
  EXPECT_EQ(count(v1::RUN_STATE_QUEUED), 1);
  EXPECT_EQ(count(v1::RUN_STATE_CANCELLED), 1);
}

}  // namespace
}  // namespace baton::testing
