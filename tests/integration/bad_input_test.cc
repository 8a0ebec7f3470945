// Bad input at every entry point of the stack, as a user meets it: real processes, real gRPC,
// real SQLite, fake-llm. Each test checks the exact status code, that the message says what is
// wrong, that nothing was stored, and that the chat still answers the next good message.
// docs/bad-input.md lists the entry points, their limits and their errors.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "hooks/records.h"
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

// ---- WorkerGateway: what workers send ----------------------------------------------------------

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

}  // namespace
}  // namespace baton::testing
