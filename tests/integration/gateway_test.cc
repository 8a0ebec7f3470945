// WorkerGateway's rules against a real orchestrator, from a worker written by hand in the test
// (raw frames over gRPC), so each rule is seen exactly: the accept deadline, fencing with lease
// tokens, idempotent output seqs, credit.
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;

v1::WorkerFrame Output(const std::string& run_id, int64_t token, int64_t seq) {
  v1::WorkerFrame frame;
  v1::RunOutput& output = *frame.mutable_run_output();
  output.set_run_id(run_id);
  output.set_lease_token(token);
  v1::OutRecord& record = *output.add_records();
  record.set_seq(seq);
  record.set_chunk_json(absl::StrCat(R"({"type":"text-delta","id":"t","delta":"d)", seq, R"("})"));
  return frame;
}

TEST(GatewayTest, WelcomeCarriesTheOrchestratorsTiming) {
  auto stack = Stack::Start(
      {.workers = 0,
       .orchestrator_flags = {"--heartbeat_ms=700", "--lease_ms=9000", "--accept_ms=800"}});
  ASSERT_NE(stack, nullptr);
  RawWorker raw(stack->gateway(), 0);
  EXPECT_EQ(raw.welcome().heartbeat_interval_ms(), 700);
  EXPECT_EQ(raw.welcome().lease_ttl_ms(), 9000);
  EXPECT_EQ(raw.welcome().accept_deadline_ms(), 800);
  EXPECT_EQ(raw.welcome().heartbeat_misses(), 3);
  EXPECT_FALSE(raw.welcome().connection_id().empty());
}

TEST(GatewayTest, AnAssignmentNotAcceptedInTimeGoesBackToTheQueue) {
  auto stack = Stack::Start({.workers = 0, .orchestrator_flags = {"--accept_ms=200"}});
  ASSERT_NE(stack, nullptr);
  RawWorker raw(stack->gateway(), 1);
  stack->Create("a1", "chat", "preload");
  v1::AssignRun assign = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(assign.chat_id(), "a1");
  EXPECT_EQ(assign.trigger(), v1::TRIGGER_PRELOAD);
  // Not accepted: the orchestrator takes it back...
  v1::LeaseRevoked revoked = raw.Next(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
  EXPECT_EQ(revoked.run_id(), assign.run_id());
  EXPECT_EQ(revoked.lease_token(), assign.lease_token());
  // ...and a real worker gets it.
  stack->AddWorker();
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  // A late accept is refused.
  v1::WorkerFrame late;
  late.mutable_run_accepted()->set_run_id(assign.run_id());
  late.mutable_run_accepted()->set_lease_token(assign.lease_token());
  raw.Send(late);
  v1::LeaseRevoked refused = raw.Next(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
  EXPECT_EQ(refused.lease_token(), assign.lease_token());
  std::vector<v1::Run> runs = stack->Runs("a1");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].worker_id(), "worker-0");
}

TEST(GatewayTest, StaleLeaseTokensAreRefusedAndOutputSeqsAreIdempotent) {
  auto stack = Stack::Start({.workers = 0, .orchestrator_flags = {"--lease_ms=300"}});
  ASSERT_NE(stack, nullptr);
  RawWorker raw(stack->gateway(), 2);
  stack->Create("l1", "chat", "preload");
  v1::AssignRun first = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
  v1::WorkerFrame accept;
  accept.mutable_run_accepted()->set_run_id(first.run_id());
  accept.mutable_run_accepted()->set_lease_token(first.lease_token());
  raw.Send(accept);
  // No heartbeat renews the lease: it runs out, and a retry (attempt 2, a continuation) is
  // assigned with a larger token.
  v1::AssignRun retry = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(retry.attempt(), 2);
  EXPECT_TRUE(retry.continuation());
  EXPECT_GT(retry.lease_token(), first.lease_token());
  EXPECT_EQ(retry.previous_run_id(), first.run_id());
  // Output under the old token is refused and not stored.
  raw.Send(Output(first.run_id(), first.lease_token(), 1));
  EXPECT_EQ(raw.Next(v1::GatewayFrame::kLeaseRevoked).lease_revoked().run_id(), first.run_id());
  EXPECT_EQ(stack->Get("l1").out_seq(), 0);
  // Under the current one it is stored; a re-send of seq 1 is skipped, a gap refused.
  accept.mutable_run_accepted()->set_run_id(retry.run_id());
  accept.mutable_run_accepted()->set_lease_token(retry.lease_token());
  raw.Send(accept);
  raw.Send(Output(retry.run_id(), retry.lease_token(), 1));
  EXPECT_EQ(raw.Next(v1::GatewayFrame::kAck).ack().out_seq(), 1);
  raw.Send(Output(retry.run_id(), retry.lease_token(), 1));
  EXPECT_EQ(raw.Next(v1::GatewayFrame::kAck).ack().out_seq(), 1);
  raw.Send(Output(retry.run_id(), retry.lease_token(), 2));
  EXPECT_EQ(raw.Next(v1::GatewayFrame::kAck).ack().out_seq(), 2);
  std::vector<Json> out =
      stack->ReadUntil("l1", 0, [](const std::vector<Json>& r) { return r.size() >= 2; });
  EXPECT_EQ(Text(out), "d1d2");
}

TEST(GatewayTest, DeliverCarriesInRecordsInOrderAfterTheAssignment) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  RawWorker raw(stack->gateway(), 1);
  stack->Create("d1", "chat", "handover-prepare",
                Json{{"headStartMessages", Json::array({UserMessage("u1", "hi")})}});
  v1::AssignRun assign = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(assign.trigger(), v1::TRIGGER_HANDOVER_PREPARE);
  EXPECT_THAT(assign.payload_json(), ::testing::HasSubstr("headStartMessages"));
  stack->Append("d1", Json{{"kind", "handover-skip"}});
  stack->Append("d1", Json{{"kind", "stop"}});
  v1::Deliver one = raw.Next(v1::GatewayFrame::kDeliver).deliver();
  v1::Deliver two = raw.Next(v1::GatewayFrame::kDeliver).deliver();
  EXPECT_EQ(one.record().seq(), 1);
  EXPECT_THAT(one.record().body_json(), ::testing::HasSubstr("handover-skip"));
  EXPECT_EQ(two.record().seq(), 2);
  EXPECT_EQ(one.lease_token(), assign.lease_token());
}

// A chat whose runs fail five times in a row gives up, and says so to whoever waits: the boot
// message and the message on `.in` each get an `error` and their turn-complete, the last run's
// unfinished answer is retracted. The next message boots a run that is not handed them again.
TEST(GatewayTest, AChatThatGivesUpAnswersItsWaitingMessagesWithAnError) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  RawWorker raw(stack->gateway(), 10);
  stack->Create("g1", "chat", "submit-message", Json{{"message", UserMessage("u1", "first")}});
  int64_t second = 0;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    v1::AssignRun assign = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
    ASSERT_EQ(assign.attempt(), attempt);
    v1::WorkerFrame accept;
    accept.mutable_run_accepted()->set_run_id(assign.run_id());
    accept.mutable_run_accepted()->set_lease_token(assign.lease_token());
    raw.Send(accept);
    if (attempt == 5) {
      // The last attempt starts an answer and dies in it.
      v1::WorkerFrame output;
      output.mutable_run_output()->set_run_id(assign.run_id());
      output.mutable_run_output()->set_lease_token(assign.lease_token());
      v1::OutRecord& record = *output.mutable_run_output()->add_records();
      record.set_seq(assign.out_seq() + 1);
      record.set_chunk_json(R"({"type":"start","messageId":"m5"})");
      raw.Send(output);
      raw.Next(v1::GatewayFrame::kAck);
    }
    if (attempt == 1) second = stack->SendText("g1", "u2", "second");
    v1::WorkerFrame failed;
    v1::RunFinished& finished = *failed.mutable_run_finished();
    finished.set_run_id(assign.run_id());
    finished.set_lease_token(assign.lease_token());
    finished.set_end(v1::RUN_END_FAILED);
    finished.set_retryable(true);
    finished.set_error("boom");
    raw.Send(failed);
  }
  std::vector<Json> out = stack->ReadUntil(
      "g1", 0, [](const std::vector<Json>& r) { return CountControl(r, "turn-complete") == 2; });
  ASSERT_THAT(Types(out),
              ::testing::ElementsAre("start", "trigger:retract", "error", "trigger:turn-complete",
                                     "error", "trigger:turn-complete"));
  EXPECT_EQ(out[1]["headers"]["message-id"], "m5");
  EXPECT_EQ(out[1]["headers"]["reason"], "chat-failed");
  EXPECT_THAT(StringField(out[2], "errorText"), ::testing::HasSubstr("boom"));
  EXPECT_EQ(out[3]["headers"]["session-in-event-id"], "0");
  EXPECT_EQ(out[5]["headers"]["session-in-event-id"], absl::StrCat(second));
  EXPECT_EQ(stack->Get("g1").state(), v1::SESSION_STATE_FAILED);

  // A new message: the run it boots is handed that message only.
  int64_t third = stack->SendText("g1", "u3", "third");
  v1::AssignRun next = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(next.attempt(), 1);
  EXPECT_NE(next.trigger(), v1::TRIGGER_SUBMIT_MESSAGE);
  EXPECT_THAT(next.payload_json(), ::testing::Not(::testing::HasSubstr("first")));
  ASSERT_EQ(next.pending_size(), 1);
  EXPECT_EQ(next.pending(0).seq(), third);
}

}  // namespace
}  // namespace baton::testing
