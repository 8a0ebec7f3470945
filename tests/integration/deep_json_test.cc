// JSON nested too deeply, at every way it can reach the stack (issue 12, findings 2 and 3): real
// processes, real gRPC, real SQLite, fake-llm. Before the nesting limits, 100,000 levels (about
// 200 KB, well under the 1 MiB record limit) crashed the orchestrator with a stack overflow when
// it dumped a CreateSession payload, and a `.in` record holding them was stored and then crashed
// every worker the chat reached. Now: a clear INVALID_ARGUMENT naming the field, nothing stored,
// the orchestrator still serving, the chat answering its next good message; and a worker handed
// such bytes by an orchestrator written by hand survives, refuses or skips them, and its other
// chats go on. docs/bad-input.md, "Nesting", states the rule.

#include <chrono>
#include <functional>
#include <map>
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
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::HasSubstr;

constexpr int kDeep = 100000;  // the depth that crashed both processes

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }
Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

// `depth` arrays nested around 1, as text: "[[1]]" for 2.
std::string Nest(int depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

// Where a limit is passed: the byte (from 1) of the bracket that opens level `limit` + 1, when
// `prefix` is what comes before a Nest() and opens `open` levels.
size_t ByteOverLimit(const std::string& prefix, int open, int limit) {
  return prefix.size() + static_cast<size_t>(limit - open) + 1;
}

// A `.in` message record whose user message holds `data` in a data part.
std::string MessageWithData(const std::string& chat_id, const std::string& id,
                            const std::string& data) {
  return absl::StrCat(R"({"kind":"message","payload":{"chatId":")", chat_id,
                      R"(","trigger":"submit-message","message":{"id":")", id,
                      R"(","role":"user","parts":[{"type":"text","text":"hi"},)",
                      R"({"type":"data-x","data":)", data, "}]}}}");
}

std::string MessageBody(const std::string& chat_id, const std::string& id,
                        const std::string& text) {
  return DumpJson(Json{
      {"kind", "message"},
      {"payload",
       {{"chatId", chat_id}, {"trigger", "submit-message"}, {"message", UserMessage(id, text)}}}});
}

grpc::Status Create(Stack& stack, const std::string& chat_id, v1::Trigger trigger,
                    const std::string& payload_json) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::CreateSessionRequest request;
  request.set_chat_id(chat_id);
  request.set_agent("chat");
  request.set_trigger(trigger);
  request.set_payload_json(payload_json);
  v1::CreateSessionResponse response;
  return stack.sessions().CreateSession(&context, request, &response);
}

grpc::Status Append(Stack& stack, const std::string& chat_id, const std::string& body,
                    const std::string& record_id = "") {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::AppendRequest request;
  request.set_chat_id(chat_id);
  request.set_body_json(body);
  request.set_client_record_id(record_id);
  v1::AppendResponse response;
  return stack.sessions().Append(&context, request, &response);
}

grpc::StatusCode GetCode(Stack& stack, const std::string& chat_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::GetRequest request;
  request.set_chat_id(chat_id);
  v1::Session session;
  return stack.sessions().Get(&context, request, &session).error_code();
}

// The process has not exited (a crash would have ended it).
bool Alive(Process& process) { return !process.WaitFor(std::chrono::milliseconds(0)).has_value(); }

// The chat answers a good message: nothing was lost or left stuck.
void ExpectAnswers(Stack& stack, const std::string& chat_id, const std::string& text) {
  int64_t out_seq = stack.Get(chat_id).out_seq();
  std::string id = absl::StrCat("good-", out_seq);
  ASSERT_TRUE(Append(stack, chat_id, MessageBody(chat_id, id, "hello again"), id).ok());
  EXPECT_EQ(Text(stack.ReadTurns(chat_id, out_seq)), text);
}

// ---- Sessions: what clients send -----------------------------------------------------------

// Finding 2: the payload's metadata (or a boot message's part) nested 100,000 levels crashed the
// orchestrator. It is refused naming the field and the limit; nothing is stored; a payload
// nested exactly to the limit is taken and its chat answers.
TEST(DeepJsonTest, CreateSessionRefusesAPayloadNestedTooDeeply) {
  auto stack = Stack::Start({.script = Script({Reply("At the limit."), Reply("Still here.")})});
  ASSERT_NE(stack, nullptr);
  const std::string metadata = R"({"metadata":)";
  const std::string part =
      R"({"message":{"id":"u1","role":"user","parts":[{"type":"data-x","data":)";
  struct Case {
    v1::Trigger trigger;
    std::string payload;
    size_t byte;
  };
  std::vector<Case> cases = {
      {v1::TRIGGER_PRELOAD, metadata + Nest(kDeep) + "}",
       ByteOverLimit(metadata, 1, kMaxDataDepth)},
      {v1::TRIGGER_PRELOAD, metadata + Nest(kMaxDataDepth) + "}",
       ByteOverLimit(metadata, 1, kMaxDataDepth)},
      {v1::TRIGGER_SUBMIT_MESSAGE, part + Nest(kDeep) + "}]}}",
       ByteOverLimit(part, 4, kMaxDataDepth)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.payload.substr(0, 80));
    ASSERT_LT(c.payload.size(), kMaxInRecordBytes);
    grpc::Status status = Create(*stack, "deep", c.trigger, c.payload);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), absl::StrCat("payload_json: JSON nests deeper than ",
                                                   kMaxDataDepth, " levels at byte ", c.byte));
  }
  ASSERT_TRUE(Alive(stack->orchestrator()));
  EXPECT_EQ(GetCode(*stack, "deep"), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(stack->Runs().empty());

  // Exactly at the limit (the payload object and 127 levels of metadata): taken, and the run
  // boots on a worker and answers.
  ASSERT_TRUE(
      Create(*stack, "deep", v1::TRIGGER_PRELOAD, metadata + Nest(kMaxDataDepth - 1) + "}").ok());
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  ExpectAnswers(*stack, "deep", "At the limit.");
  ExpectAnswers(*stack, "deep", "Still here.");
  EXPECT_TRUE(Alive(stack->worker()));
}

// Findings 2 and 3: a `.in` record nested 100,000 levels (in a message's metadata, in a message
// part, in a handover's partial) is refused before anything is stored, so it can never reach a
// worker; one nested exactly to the limit is stored, delivered, and answered.
TEST(DeepJsonTest, AppendRefusesRecordsNestedTooDeeplyAndTheChatAnswersTheNext) {
  auto stack = Stack::Start({.script = Script({Reply("Data at the limit."), Reply("Fine.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("a1", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  const std::string metadata =
      R"({"kind":"message","payload":{"chatId":"a1","trigger":"submit-message","metadata":)";
  const std::string part =
      R"({"kind":"message","payload":{"chatId":"a1","trigger":"submit-message","message":{"id":"u9","role":"user","parts":[{"type":"data-x","data":)";
  const std::string handover =
      R"({"kind":"handover","messageId":"M","isFinal":false,"partialAssistantMessage":[{"role":"assistant","content":[{"type":"tool-call","toolCallId":"c1","toolName":"t","input":)";
  struct Case {
    std::string body;
    size_t byte;
  };
  std::vector<Case> cases = {
      {metadata + Nest(kDeep) + R"(,"message":null}})", ByteOverLimit(metadata, 2, kMaxDataDepth)},
      {part + Nest(kDeep) + "}]}}}", ByteOverLimit(part, 5, kMaxDataDepth)},
      {handover + Nest(kDeep) + "}]}]}", ByteOverLimit(handover, 5, kMaxDataDepth)},
      // One level over is as refused as a hundred thousand.
      {part + Nest(kMaxDataDepth - 4) + "}]}}}", ByteOverLimit(part, 5, kMaxDataDepth)},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].body.substr(0, 100));
    ASSERT_LT(cases[i].body.size(), kMaxInRecordBytes);
    grpc::Status status = Append(*stack, "a1", cases[i].body, absl::StrCat("deep-", i));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), absl::StrCat(".in record nests deeper than ", kMaxDataDepth,
                                                   " levels at byte ", cases[i].byte));
  }
  ASSERT_TRUE(Alive(stack->orchestrator()));
  EXPECT_EQ(stack->Get("a1").in_seq(), 0);  // nothing stored

  // A message whose record nests exactly to the limit: stored, run by the worker, answered.
  std::string at_limit = part + Nest(kMaxDataDepth - 5) + "}]}}}";
  ASSERT_TRUE(Append(*stack, "a1", at_limit, "at-limit").ok());
  EXPECT_EQ(Text(stack->ReadTurns("a1", 0)), "Data at the limit.");
  ExpectAnswers(*stack, "a1", "Fine.");
  EXPECT_TRUE(Alive(stack->worker()));
  std::vector<v1::Run> runs = stack->Runs("a1");
  ASSERT_EQ(runs.size(), 1u);  // never retried: no worker died
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_RUNNING);
}

// A head start whose handover is nested too deeply is refused like any record; the run keeps
// waiting, takes the good handover that follows, and the chat goes on.
TEST(DeepJsonTest, AHandoverNestedTooDeeplyIsRefusedAndTheHeadStartGoesOn) {
  auto stack = Stack::Start({.script = Script({Reply("After the head start.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("h1", "chat", "handover-prepare",
                Json{{"headStartMessages", Json::array({UserMessage("u1", "Are you there?")})}});
  ASSERT_TRUE(stack->hooks().WaitFor("onBoot"));
  const std::string deep = absl::StrCat(
      R"({"kind":"handover","messageId":"M","isFinal":true,"partialAssistantMessage":[{"role":"assistant","content":[{"type":"text","text":"Yes.","providerOptions":)",
      Nest(kDeep), "}]}]}");
  grpc::Status status = Append(*stack, "h1", deep, "handover:M");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat(".in record nests deeper than ", kMaxDataDepth, " levels")));
  EXPECT_EQ(stack->Get("h1").in_seq(), 0);

  // The warm side sends the handover again, well formed, under the same record id.
  Json good = {{"kind", "handover"},
               {"messageId", "M"},
               {"isFinal", true},
               {"partialAssistantMessage",
                Json::array({{{"role", "assistant"},
                              {"content", Json::array({{{"type", "text"}, {"text", "Yes."}}})}}})}};
  ASSERT_TRUE(Append(*stack, "h1", DumpJson(good), "handover:M").ok());
  std::vector<Json> out = stack->ReadTurns("h1", 0);
  EXPECT_EQ(CountControl(out, "turn-complete"), 1);
  EXPECT_EQ(stack->llm().requests().size(), 0u);  // the final partial needs no model call
  ExpectAnswers(*stack, "h1", "After the head start.");
  EXPECT_TRUE(Alive(stack->orchestrator()));
  EXPECT_TRUE(Alive(stack->worker()));
}

// ---- What a model sends ------------------------------------------------------------------------

// Raw Anthropic events: a tool call whose arguments nest `depth` levels under {"city": ...}.
Json DeepArgumentsResponse(int depth) {
  Json events = Json::array();
  events.push_back(Json::parse(R"({"type": "message_start", "message": {"id": "msg_d",
      "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": null,
      "usage": {"input_tokens": 1, "output_tokens": 1}}})"));
  events.push_back(Json::parse(R"({"type": "content_block_start", "index": 0, "content_block":
      {"type": "tool_use", "id": "toolu_deep", "name": "get_weather", "input": {}}})"));
  events.push_back(Json{{"type", "content_block_delta"},
                        {"index", 0},
                        {"delta",
                         {{"type", "input_json_delta"},
                          {"partial_json", absl::StrCat(R"({"city":)", Nest(depth), "}")}}}});
  events.push_back(Json::parse(R"({"type": "content_block_stop", "index": 0})"));
  events.push_back(Json::parse(R"({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
      "usage": {"output_tokens": 5}})"));
  events.push_back(Json::parse(R"({"type": "message_stop"})"));
  return Json{{"events", std::move(events)}};
}

// Raw Anthropic events: some text, then an event nested `depth` levels, sent as raw bytes.
Json DeepEventResponse(int depth) {
  Json events = Json::parse(R"([
    {"type": "message_start", "message": {"id": "msg_e", "type": "message", "role": "assistant",
     "model": "m", "content": [], "stop_reason": null, "usage": {"input_tokens": 1, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Half "}}])");
  events.push_back(
      Json{{"raw", absl::StrCat("event: content_block_delta\ndata: {\"type\":\"content_block_"
                                "delta\",\"index\":0,\"delta\":",
                                Nest(depth), "}\n\n")}});
  return Json{{"events", std::move(events)}};
}

// A model's tool-call arguments and its events are outside data too: nested 100,000 levels,
// the arguments are an input error the model sees and the event ends the turn with an error;
// the worker lives, and the chat answers the next message.
TEST(DeepJsonTest, AModelThatNestsTooDeeplyGetsAnErrorAndTheChatGoesOn) {
  auto stack =
      Stack::Start({.script = Script({DeepArgumentsResponse(kDeep), Reply("A."),
                                      DeepEventResponse(kDeep), Reply("Back to normal.")})});
  ASSERT_NE(stack, nullptr);
  stack->Create("m1", "weather", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));

  stack->SendText("m1", "u1", "weather in Oslo?");
  std::vector<Json> out = stack->ReadTurns("m1", 0);
  const Json* input_error = nullptr;
  for (const Json& r : out) {
    if (StringField(r, "type") == "tool-input-error") input_error = &r;
  }
  ASSERT_NE(input_error, nullptr);
  EXPECT_EQ(StringField(*input_error, "errorText"),
            absl::StrCat("Invalid input for tool get_weather: JSON nests deeper than ",
                         kMaxToolInputDepth, " levels at byte ", 8 + kMaxToolInputDepth));
  EXPECT_EQ(Text(out), "A.");  // the model saw the error as the call's result, and answered
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_THAT(requests.back().body, HasSubstr("JSON nests deeper than"));

  int64_t seq = SeqOf(out.back());
  stack->SendText("m1", "u2", "tell me more");
  out = stack->ReadTurns("m1", seq);
  bool failed = false;
  for (const Json& r : out) {
    failed =
        failed || (StringField(r, "type") == "finish" && StringField(r, "finishReason") == "error");
  }
  EXPECT_TRUE(failed);
  EXPECT_EQ(Text(out), "Half ");  // the partial answer is kept
  EXPECT_TRUE(WaitForFileContains(
      stack->Path("worker-0.log"),
      absl::StrCat("JSON nests deeper than ", kMaxDataDepth, " levels")));  // the operator sees why

  ExpectAnswers(*stack, "m1", "Back to normal.");
  EXPECT_TRUE(Alive(stack->worker()));
}

// ---- What a worker is sent ---------------------------------------------------------------------

// An orchestrator written by hand: a WorkerGateway whose Connect hands the worker's stream to the
// test, which then sends the real baton-worker whatever frames it wants.
class HandGateway final : public v1::WorkerGateway::Service {
 public:
  using Stream = grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>;

  grpc::Status Connect(grpc::ServerContext* context, Stream* stream) override {
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr || over_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "taken");
    stream_ = stream;
    // Held open until the test is over (or the worker goes): the handler owns the stream.
    auto over = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return over_ || gone_; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&over), absl::Milliseconds(50))) {
      if (context->IsCancelled()) gone_ = true;
    }
    stream_ = nullptr;
    return grpc::Status::OK;
  }

  Stream* WaitForWorker() {
    absl::MutexLock lock(&mu_);
    auto connected = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stream_ != nullptr; };
    mu_.AwaitWithTimeout(absl::Condition(&connected), absl::FromChrono(kLimit));
    return stream_;
  }

  void Over() {
    absl::MutexLock lock(&mu_);
    over_ = true;
  }

 private:
  absl::Mutex mu_;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool over_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
};

// Adds the text a RunOutput frame streams to `text`, by run.
void Collect(const v1::WorkerFrame& frame, std::map<std::string, std::string>& text) {
  if (!frame.has_run_output()) return;
  for (const v1::OutRecord& r : frame.run_output().records()) {
    absl::StatusOr<Json> chunk = ParseJson(r.chunk_json());
    if (chunk.ok() && StringField(*chunk, "type") == "text-delta") {
      text[frame.run_output().run_id()] += StringField(*chunk, "delta");
    }
  }
}

// Reads the worker's frames until one of `kind`, skipping the others.
v1::WorkerFrame Until(HandGateway::Stream& stream, v1::WorkerFrame::FrameCase kind) {
  v1::WorkerFrame frame;
  while (stream.Read(&frame)) {
    if (frame.frame_case() == kind) return frame;
  }
  ADD_FAILURE() << "the worker's stream ended before a frame of kind " << kind;
  return frame;
}

// Finding 3, from the worker's side: whatever an orchestrator hands it, a worker survives. An
// assignment nested too deeply anywhere (payload, a pending record, the snapshot, the `.out`
// tail) is rejected saying why; a delivered record nested too deeply is acknowledged and skipped.
// Its other chats are not touched: both answer their next message.
TEST(DeepJsonTest, AWorkerSurvivesAssignmentsAndRecordsNestedTooDeeply) {
  absl::StatusOr<std::unique_ptr<fakellm::FakeLlm>> llm =
      fakellm::FakeLlm::Start(Script({Reply("First chat."), Reply("Second chat.")}));
  ASSERT_TRUE(llm.ok()) << llm.status();
  HandGateway gateway;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&gateway);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<std::unique_ptr<Process>> worker =
      Process::Spawn({BATON_WORKER_BINARY, absl::StrCat("--orchestrator=127.0.0.1:", port),
                      "--worker_id=w", absl::StrCat("--base_url=", (*llm)->base_url()),
                      "--provider=anthropic", "--api_key_env=BATON_TEST_NO_KEY", "--model=test"},
                     ::testing::TempDir() + "deep-json-worker.log");
  ASSERT_TRUE(worker.ok()) << worker.status();

  HandGateway::Stream* stream = gateway.WaitForWorker();
  ASSERT_NE(stream, nullptr);
  Until(*stream, v1::WorkerFrame::kHello);
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
      {[](v1::AssignRun& a) { a.set_payload_json(R"({"metadata":)" + Nest(kDeep) + "}"); },
       absl::StrCat("bad-payload: payload_json: JSON nests deeper than ", kMaxDataDepth,
                    " levels at byte ", ByteOverLimit(R"({"metadata":)", 1, kMaxDataDepth))},
      {[](v1::AssignRun& a) {
         v1::InRecord& r = *a.add_pending();
         r.set_seq(4);
         r.set_body_json(MessageWithData("chat_2", "u1", Nest(kDeep)));
       },
       absl::StrCat("bad-pending-record: .in record 4: .in record nests deeper than ",
                    kMaxDataDepth, " levels at byte")},
      {[](v1::AssignRun& a) {
         a.set_snapshot_json(R"({"messages":[{"id":"m","message":)" + Nest(kDeep) + "}]}");
       },
       absl::StrCat("bad-snapshot: snapshot_json: JSON nests deeper than ", kMaxJsonDepth,
                    " levels at byte")},
      {[](v1::AssignRun& a) {
         v1::OutRecord& r = *a.add_out_tail();
         r.set_seq(1);
         r.set_chunk_json(R"({"type":"data-x","data":)" + Nest(kDeep) + "}");
       },
       absl::StrCat("bad-out-record: JSON nests deeper than ", kMaxChunkDepth, " levels at byte")},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].reason);
    v1::GatewayFrame frame = assignment(static_cast<int>(i) + 1);
    cases[i].spoil(*frame.mutable_assign_run());
    ASSERT_TRUE(stream->Write(frame));
    v1::RunRejected rejected = Until(*stream, v1::WorkerFrame::kRunRejected).run_rejected();
    EXPECT_EQ(rejected.run_id(), frame.assign_run().run_id());
    EXPECT_THAT(rejected.reason(), HasSubstr(cases[i].reason));
  }

  // Two chats on the worker. One is delivered records nested too deeply (a message part, a
  // handover partial): each is acknowledged and skipped. Then both answer a good message.
  for (int n : {100, 101}) {
    ASSERT_TRUE(stream->Write(assignment(n)));
    EXPECT_EQ(Until(*stream, v1::WorkerFrame::kRunAccepted).run_accepted().run_id(),
              absl::StrCat("run_", n));
  }
  auto deliver = [&](int n, int64_t seq, const std::string& body) {
    v1::GatewayFrame frame;
    frame.mutable_deliver()->set_run_id(absl::StrCat("run_", n));
    frame.mutable_deliver()->set_lease_token(n);
    frame.mutable_deliver()->mutable_record()->set_seq(seq);
    frame.mutable_deliver()->mutable_record()->set_body_json(body);
    return stream->Write(frame);
  };
  ASSERT_TRUE(deliver(100, 1, MessageWithData("chat_100", "u1", Nest(kDeep))));
  EXPECT_EQ(Until(*stream, v1::WorkerFrame::kDelivered).delivered().in_seq(), 1);
  ASSERT_TRUE(
      deliver(100, 2,
              R"({"kind":"handover","partialAssistantMessage":[{"role":"assistant","content":)" +
                  Nest(kDeep) + "}]}"));
  EXPECT_EQ(Until(*stream, v1::WorkerFrame::kDelivered).delivered().in_seq(), 2);
  ASSERT_TRUE(Alive(**worker));

  std::map<std::string, std::string> text;
  ASSERT_TRUE(deliver(101, 1, MessageBody("chat_101", "u1", "hi")));
  ASSERT_TRUE(deliver(100, 3, MessageBody("chat_100", "u2", "hi")));
  auto answered = [&](const std::string& run) {
    return !text[run].empty() && text[run].back() == '.';  // each reply is one sentence
  };
  v1::WorkerFrame frame;
  while (!(answered("run_100") && answered("run_101")) && stream->Read(&frame)) {
    Collect(frame, text);
  }
  // Both were answered, in whichever order the worker took them.
  EXPECT_THAT((std::vector<std::string>{text["run_100"], text["run_101"]}),
              ::testing::UnorderedElementsAre("First chat.", "Second chat."));
  EXPECT_TRUE(Alive(**worker));
  worker->reset();  // SIGKILL
  gateway.Over();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

}  // namespace
}  // namespace baton::testing
