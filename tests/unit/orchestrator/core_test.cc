// The orchestrator's rules on a fake clock: leases, accept deadlines, heartbeat silence, the
// retry budget, drain hand-backs, continuations, suspension and head-start deadlines. The
// orchestrator serves an in-process gRPC channel, on a MemoryStore; a test plays the worker on a
// real Connect stream and the client through Sessions. Time moves only when a test advances the
// clock and calls Tick: no process, no sleep. Every wait is a read of a frame or an answer, with a
// deadline so that one that never comes fails the test instead of hanging it.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "baton/v1/sessions.grpc.pb.h"
#include "baton/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hooks/json.h"
#include "runtime/exec/clock.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/wire.h"
#include "tools/orchestrator/orchestrator.h"
#include "tools/orchestrator/states.h"
#include "tools/orchestrator/store.h"

namespace baton::orchestrator {
namespace {

namespace v1 = ::baton::v1;

// The runtime's FakeClock behind a mutex: the orchestrator reads the time on its gRPC, writer and
// timer threads while the test moves it.
class SharedFakeClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return fake_.Now();
  }
  void Arm(asio::steady_timer& timer, absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    fake_.Arm(timer, deadline);
  }
  void Disarm(asio::steady_timer& timer) override {
    absl::MutexLock lock(&mu_);
    fake_.Disarm(timer);
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    fake_.Advance(d);
  }

 private:
  mutable absl::Mutex mu_;
  FakeClock fake_ ABSL_GUARDED_BY(mu_);
};

std::chrono::system_clock::time_point CallDeadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(30);
}

std::string UserMessage(const std::string& id, const std::string& text) {
  return DumpJson(Json{{"id", id},
                       {"role", "user"},
                       {"parts", Json::array({Json{{"type", "text"}, {"text", text}}})}});
}

std::string MessageRecord(const std::string& id, const std::string& text) {
  return absl::StrCat(R"({"kind":"message","payload":{"message":)", UserMessage(id, text), "}}");
}

// A worker hosting agent "chat", played by the test on one Connect stream.
class FakeWorker {
 public:
  // `held`: runs it still holds from an earlier stream (Hello.held_runs).
  FakeWorker(v1::WorkerGateway::Stub& stub, const std::string& worker_id,
             const std::vector<v1::HeldRun>& held = {}) {
    context_.set_deadline(CallDeadline());
    stream_ = stub.Connect(&context_);
    v1::WorkerFrame frame;
    v1::Hello& hello = *frame.mutable_hello();
    hello.set_worker_id(worker_id);
    hello.set_protocol_version(v1::PROTOCOL_VERSION_1);
    hello.add_agents()->set_name("chat");
    hello.set_capacity(100);
    for (const v1::HeldRun& run : held) *hello.add_held_runs() = run;
    Write(frame);
    welcome_ = Expect(v1::GatewayFrame::kWelcome).welcome();
  }
  ~FakeWorker() {
    context_.TryCancel();
    stream_->Finish();  // CANCELLED: the test ended the stream
  }

  const v1::Welcome& welcome() const { return welcome_; }

  void Write(const v1::WorkerFrame& frame) { EXPECT_TRUE(stream_->Write(frame)); }

  // The next frame the orchestrator sends, which must be of `kind`.
  v1::GatewayFrame Expect(v1::GatewayFrame::FrameCase kind) {
    v1::GatewayFrame frame;
    if (!stream_->Read(&frame)) {
      ADD_FAILURE() << "the stream ended while a frame of case " << kind << " was expected";
      return frame;
    }
    EXPECT_EQ(frame.frame_case(), kind) << frame.DebugString();
    return frame;
  }

  // Whether the orchestrator ended the stream (the next read finds no frame).
  bool Ended() {
    v1::GatewayFrame frame;
    return !stream_->Read(&frame);
  }

  // A heartbeat renewing `leases`, and every frame the orchestrator sent before its answer: the
  // orchestrator reads a stream's frames in order, so all written before it have taken effect.
  std::vector<v1::GatewayFrame> Sync(const std::vector<v1::RunLease>& leases = {}) {
    v1::WorkerFrame frame;
    v1::Heartbeat& heartbeat = *frame.mutable_heartbeat();
    heartbeat.set_seq(++heartbeats_);
    for (const v1::RunLease& lease : leases) *heartbeat.add_runs() = lease;
    Write(frame);
    std::vector<v1::GatewayFrame> before;
    v1::GatewayFrame got;
    while (stream_->Read(&got)) {
      if (got.has_heartbeat_ack() && got.heartbeat_ack().seq() == heartbeats_) return before;
      before.push_back(got);
    }
    ADD_FAILURE() << "the stream ended before the heartbeat was answered";
    return before;
  }

  void Credit(int runs) {
    v1::WorkerFrame frame;
    frame.mutable_credit()->set_runs(runs);
    Write(frame);
  }

  // Takes one run: a credit, the assignment it brings, and its acceptance, in effect on return.
  v1::AssignRun TakeRun() {
    Credit(1);
    v1::AssignRun assign = Expect(v1::GatewayFrame::kAssignRun).assign_run();
    Accept(assign);
    EXPECT_TRUE(Sync().empty());
    return assign;
  }

  void Accept(const v1::AssignRun& assign) {
    v1::WorkerFrame frame;
    frame.mutable_run_accepted()->set_run_id(assign.run_id());
    frame.mutable_run_accepted()->set_lease_token(assign.lease_token());
    Write(frame);
  }

  // Ends the run and waits for the orchestrator's acknowledgement of its end.
  void Finish(const v1::AssignRun& assign, v1::RunEnd end, const std::string& reason,
              bool retryable = false, const std::string& error = "",
              int64_t resume_deadline_unix_ms = 0) {
    v1::WorkerFrame frame;
    v1::RunFinished& finished = *frame.mutable_run_finished();
    finished.set_run_id(assign.run_id());
    finished.set_lease_token(assign.lease_token());
    finished.set_end(end);
    finished.set_reason(reason);
    finished.set_retryable(retryable);
    finished.set_error(error);
    finished.set_resume_deadline_unix_ms(resume_deadline_unix_ms);
    Write(frame);
    v1::Ack ack = Expect(v1::GatewayFrame::kAck).ack();
    EXPECT_EQ(ack.run_id(), assign.run_id());
    EXPECT_TRUE(ack.run_ended());
  }

  // Stores the run's transcript as having answered `.in` through `in_seq`.
  void Snapshot(const v1::AssignRun& assign, int64_t in_seq) {
    v1::WorkerFrame frame;
    v1::Snapshot& snapshot = *frame.mutable_snapshot();
    snapshot.set_run_id(assign.run_id());
    snapshot.set_lease_token(assign.lease_token());
    snapshot.set_snapshot_json(R"({"messages":[]})");
    snapshot.set_in_seq(in_seq);
    Write(frame);
  }

  // A numbered snapshot (docs/protocol.md, Snapshots): whole when `messages_from` is 0, else a
  // delta on `base_version` whose "messages" are the entries from `messages_from` on.
  void SendSnapshot(const v1::AssignRun& assign, int64_t version, int64_t base_version,
                    int64_t messages_from, const std::string& json) {
    v1::WorkerFrame frame;
    v1::Snapshot& snapshot = *frame.mutable_snapshot();
    snapshot.set_run_id(assign.run_id());
    snapshot.set_lease_token(assign.lease_token());
    snapshot.set_snapshot_json(json);
    snapshot.set_version(version);
    snapshot.set_base_version(base_version);
    snapshot.set_messages_from(messages_from);
    Write(frame);
  }

  void Drain() {
    v1::WorkerFrame frame;
    frame.mutable_draining()->set_reason("test");
    Write(frame);
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerFrame, v1::GatewayFrame>> stream_;
  v1::Welcome welcome_;
  int64_t heartbeats_ = 0;
};

v1::RunLease Lease(const v1::AssignRun& assign) {
  v1::RunLease lease;
  lease.set_run_id(assign.run_id());
  lease.set_lease_token(assign.lease_token());
  return lease;
}

class CoreTest : public ::testing::Test {
 protected:
  // Starts the orchestrator with `options` (the fake clock added) behind an in-process channel.
  void Start(Options options) {
    options.clock = &clock_;
    orchestrator_ = std::make_unique<Orchestrator>(*store_, std::move(options));
    ASSERT_TRUE(orchestrator_->Load().ok());
    grpc::ServerBuilder builder;
    builder.RegisterService(orchestrator_->gateway_service());
    builder.RegisterService(orchestrator_->sessions_service());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    std::shared_ptr<grpc::Channel> channel = server_->InProcessChannel(grpc::ChannelArguments());
    gateway_ = v1::WorkerGateway::NewStub(channel);
    sessions_ = v1::Sessions::NewStub(channel);
  }

  void TearDown() override {
    if (orchestrator_ == nullptr) return;
    orchestrator_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
    orchestrator_.reset();
  }

  std::unique_ptr<FakeWorker> Worker(const std::string& id) {
    return std::make_unique<FakeWorker>(*gateway_, id);
  }

  // Moves the clock and runs the timer's work at the new time.
  void AdvanceAndTick(absl::Duration d) {
    clock_.Advance(d);
    orchestrator_->Tick(clock_.Now());
  }

  v1::CreateSessionResponse Create(const std::string& chat_id, v1::Trigger trigger,
                                   const std::string& payload_json = "") {
    v1::CreateSessionRequest request;
    request.set_chat_id(chat_id);
    request.set_agent("chat");
    request.set_trigger(trigger);
    request.set_payload_json(payload_json);
    v1::CreateSessionResponse response;
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    grpc::Status status = sessions_->CreateSession(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status Append(const std::string& chat_id, const std::string& body_json,
                      v1::AppendResponse* response) {
    v1::AppendRequest request;
    request.set_chat_id(chat_id);
    request.set_body_json(body_json);
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    return sessions_->Append(&context, request, response);
  }

  v1::Session Get(const std::string& chat_id) {
    v1::GetRequest request;
    request.set_chat_id(chat_id);
    v1::Session session;
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    grpc::Status status = sessions_->Get(&context, request, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return session;
  }

  std::vector<v1::Run> Runs(const std::string& chat_id) {
    v1::ListRunsRequest request;
    request.set_chat_id(chat_id);
    v1::ListRunsResponse response;
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    grpc::Status status = sessions_->ListRuns(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.runs().begin(), response.runs().end()};
  }

  // Every stored `.out` record of the chat.
  std::vector<v1::OutRecord> ReadOut(const std::string& chat_id) {
    v1::ReadRequest request;
    request.set_chat_id(chat_id);
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader =
        sessions_->Read(&context, request);
    std::vector<v1::OutRecord> records;
    v1::ReadResponse response;
    while (reader->Read(&response)) records.push_back(response.record());
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return records;
  }

  SharedFakeClock clock_;
  std::unique_ptr<Store> store_ = NewMemoryStore();
  std::unique_ptr<Orchestrator> orchestrator_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::WorkerGateway::Stub> gateway_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
};

Options LongSilence() {
  Options options;
  options.heartbeat_interval = absl::Seconds(5);
  options.heartbeat_misses = 1000;  // silence never closes a stream here
  options.lease_ttl = absl::Seconds(30);
  options.accept_deadline = absl::Seconds(5);
  return options;
}

TEST_F(CoreTest, TheWelcomeCarriesTheClocksTime) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  EXPECT_EQ(worker->welcome().server_time_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  EXPECT_EQ(worker->welcome().lease_ttl_ms(), 30000);
}

// A heartbeat renews the lease of every run it lists; a run whose lease runs out is lost, its
// worker told so, and the chat's next attempt queued.
TEST_F(CoreTest, ALeaseThatIsNotRenewedRunsOutAndTheRunIsRetried) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun first = worker->TakeRun();
  EXPECT_EQ(first.attempt(), 1);

  AdvanceAndTick(absl::Seconds(20));
  EXPECT_TRUE(worker->Sync({Lease(first)}).empty());  // renewed until 50 s from the start
  AdvanceAndTick(absl::Seconds(20));                  // 40 s: past the first lease, not this one
  EXPECT_TRUE(worker->Sync().empty());
  ASSERT_EQ(Runs("c").size(), 1u);
  EXPECT_EQ(Runs("c")[0].state(), v1::RUN_STATE_RUNNING);

  AdvanceAndTick(absl::Seconds(11));  // 51 s: no heartbeat renewed it since 20 s
  v1::LeaseRevoked revoked = worker->Expect(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
  EXPECT_EQ(revoked.run_id(), first.run_id());
  EXPECT_EQ(revoked.reason(), "lease expired");
  std::vector<v1::Run> runs = Runs("c");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_LOST);
  EXPECT_EQ(runs[0].reason(), "lease-expired");
  EXPECT_EQ(runs[1].state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(runs[1].attempt(), 2);

  worker->Credit(1);
  v1::AssignRun retry = worker->Expect(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(retry.run_id(), runs[1].run_id());
  EXPECT_EQ(retry.attempt(), 2);
  EXPECT_EQ(retry.previous_run_id(), first.run_id());
  EXPECT_TRUE(retry.continuation());
}

// An assignment the worker does not accept within the accept deadline is revoked there and the
// same run queues again, for a new lease; the old lease's acceptance is refused.
TEST_F(CoreTest, AnAssignmentNotAcceptedInTimeGoesBackToTheQueue) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  worker->Credit(1);
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun assign = worker->Expect(v1::GatewayFrame::kAssignRun).assign_run();

  AdvanceAndTick(absl::Seconds(4));
  EXPECT_TRUE(worker->Sync().empty());
  ASSERT_EQ(Runs("c").size(), 1u);
  EXPECT_EQ(Runs("c")[0].state(), v1::RUN_STATE_ASSIGNED);

  AdvanceAndTick(absl::Seconds(2));  // 6 s: past the 5 s accept deadline
  v1::LeaseRevoked revoked = worker->Expect(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
  EXPECT_EQ(revoked.run_id(), assign.run_id());
  EXPECT_EQ(revoked.reason(), "accept deadline passed");
  std::vector<v1::Run> runs = Runs("c");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(runs[0].attempt(), 1);

  worker->Accept(assign);  // too late: that lease is gone
  revoked = worker->Expect(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
  EXPECT_EQ(revoked.reason(), "stale lease token");

  worker->Credit(1);
  v1::AssignRun again = worker->Expect(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(again.run_id(), assign.run_id());
  EXPECT_GT(again.lease_token(), assign.lease_token());
  worker->Accept(again);
  EXPECT_TRUE(worker->Sync().empty());
  EXPECT_EQ(Runs("c")[0].state(), v1::RUN_STATE_RUNNING);
}

// A worker silent for heartbeat_interval × heartbeat_misses is closed; the run it was assigned
// and had not accepted queues again for another worker.
TEST_F(CoreTest, ASilentWorkerIsClosedAndItsUnacceptedRunGoesToAnother) {
  Options options;
  options.heartbeat_interval = absl::Seconds(5);
  options.heartbeat_misses = 3;
  options.accept_deadline = absl::Minutes(10);
  Start(options);
  std::unique_ptr<FakeWorker> silent = Worker("silent");
  silent->Credit(1);
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun assign = silent->Expect(v1::GatewayFrame::kAssignRun).assign_run();

  AdvanceAndTick(absl::Seconds(14));
  EXPECT_TRUE(silent->Sync().empty());  // heard from: silent from now on
  AdvanceAndTick(absl::Seconds(16));
  EXPECT_TRUE(silent->Ended());

  std::unique_ptr<FakeWorker> other = Worker("other");
  other->Credit(1);
  v1::AssignRun again = other->Expect(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(again.run_id(), assign.run_id());
  EXPECT_EQ(again.attempt(), 1);
}

// Runs that fail retryably are retried with the chat's message until max_attempts fail in a row;
// then the chat fails and its message is answered with an error and a turn-complete.
TEST_F(CoreTest, AChatWhoseRunsFailInARowGivesUpAndAnswersItsMessageWithAnError) {
  Options options = LongSilence();
  options.max_attempts = 3;
  Start(options);
  std::unique_ptr<FakeWorker> worker = Worker("w");
  Create("c", v1::TRIGGER_SUBMIT_MESSAGE,
         absl::StrCat(R"({"message":)", UserMessage("u1", "hi"), "}"));
  for (int attempt = 1; attempt <= 3; ++attempt) {
    v1::AssignRun assign = worker->TakeRun();
    EXPECT_EQ(assign.attempt(), attempt);
    // Every retry is handed the message again: no snapshot holds it.
    EXPECT_EQ(assign.trigger(), v1::TRIGGER_SUBMIT_MESSAGE);
    worker->Finish(assign, v1::RUN_END_FAILED, "crashed", /*retryable=*/true, "boom");
    if (attempt < 3) {
      EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_LIVE);
      EXPECT_EQ(Runs("c").back().state(), v1::RUN_STATE_QUEUED);
    }
  }
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_FAILED);
  std::vector<v1::Run> runs = Runs("c");
  ASSERT_EQ(runs.size(), 3u);
  for (const v1::Run& run : runs) EXPECT_EQ(run.state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(runs.back().error(), "gave up after 3 failures in a row: boom");

  std::vector<v1::OutRecord> out = ReadOut("c");
  ASSERT_EQ(out.size(), 2u);
  absl::StatusOr<Json> chunk = ParseJson(out[0].chunk_json());
  ASSERT_TRUE(chunk.ok()) << out[0].DebugString();
  EXPECT_EQ(*chunk,
            (Json{{"type", "error"},
                  {"errorText", "The chat failed: gave up after 3 failures in a row: boom"}}));
  ASSERT_TRUE(out[1].has_control());
  EXPECT_EQ(out[1].control().subtype(), "turn-complete");
  ASSERT_GE(out[1].control().headers_size(), 1);
  EXPECT_EQ(out[1].control().headers(0).name(), "session-in-event-id");
  EXPECT_EQ(out[1].control().headers(0).value(), "0");  // the boot message

  worker->Credit(1);
  EXPECT_TRUE(worker->Sync().empty());  // nothing more to run
}

// A draining worker takes no more runs, and the runs it hands back cost the chat none of its
// retry budget.
TEST_F(CoreTest, RunsHandedBackByDrainingWorkersCostNoRetries) {
  Options options = LongSilence();
  options.max_attempts = 2;
  Start(options);
  Create("c", v1::TRIGGER_PRELOAD);
  std::vector<std::unique_ptr<FakeWorker>> workers;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    workers.push_back(Worker(absl::StrCat("w", attempt)));
    FakeWorker& worker = *workers.back();
    v1::AssignRun assign = worker.TakeRun();
    EXPECT_EQ(assign.attempt(), attempt);
    worker.Drain();
    worker.Credit(5);  // a draining worker's credit is not taken
    worker.Finish(assign, v1::RUN_END_FAILED, "worker-shutdown", /*retryable=*/true);
    EXPECT_TRUE(worker.Sync().empty());
  }
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_LIVE);
  std::vector<v1::Run> runs = Runs("c");
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[2].state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(runs[3].state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(runs[3].attempt(), 4);
}

// A message appended to a chat whose run exited boots a continuation, handed the message.
TEST_F(CoreTest, AMessageToAnExitedChatBootsAContinuation) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun first = worker->TakeRun();
  worker->Finish(first, v1::RUN_END_EXITED, "idle");
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_EXITED);
  ASSERT_EQ(Runs("c").size(), 1u);

  worker->Credit(1);
  v1::AppendResponse appended;
  ASSERT_TRUE(Append("c", MessageRecord("u1", "hi"), &appended).ok());
  v1::AssignRun next = worker->Expect(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(appended.run_id(), next.run_id());
  EXPECT_TRUE(next.continuation());
  EXPECT_FALSE(next.resume());
  EXPECT_EQ(next.previous_run_id(), first.run_id());
  ASSERT_EQ(next.pending_size(), 1);
  EXPECT_EQ(next.pending(0).seq(), appended.seq());
  EXPECT_EQ(next.pending(0).body_json(), MessageRecord("u1", "hi"));
  EXPECT_EQ(Runs("c").back().trigger(), "continuation");
}

// A run that ends with a message delivered and not answered (no snapshot moved `.in` past it)
// boots the next run at once, handed the message again.
TEST_F(CoreTest, ARunThatEndsLeavingAMessageUnansweredBootsTheNextAtOnce) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun first = worker->TakeRun();
  v1::AppendResponse appended;
  ASSERT_TRUE(Append("c", MessageRecord("u1", "hi"), &appended).ok());
  EXPECT_EQ(worker->Expect(v1::GatewayFrame::kDeliver).deliver().record().seq(), appended.seq());
  worker->Finish(first, v1::RUN_END_EXITED, "idle");
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_LIVE);
  v1::AssignRun next = worker->TakeRun();
  EXPECT_TRUE(next.continuation());
  ASSERT_EQ(next.pending_size(), 1);
  EXPECT_EQ(next.pending(0).seq(), appended.seq());

  // Answered this time: the chat rests.
  worker->Snapshot(next, appended.seq());
  worker->Finish(next, v1::RUN_END_EXITED, "idle");
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_EXITED);
  EXPECT_EQ(Runs("c").size(), 2u);
}

// A message before a suspended chat's resume deadline boots a resume; when the deadline passes
// the chat exits, its suspended run ends with reason "timeout", and the next message boots a
// fresh continuation.
TEST_F(CoreTest, ASuspendedChatResumesBeforeItsDeadlineAndContinuesAfterIt) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun first = worker->TakeRun();
  auto in_a_minute = [&] { return absl::ToUnixMillis(clock_.Now() + absl::Minutes(1)); };
  worker->Finish(first, v1::RUN_END_SUSPENDED, "idle", false, "", in_a_minute());
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_SUSPENDED);

  AdvanceAndTick(absl::Seconds(59));
  v1::AppendResponse appended;
  ASSERT_TRUE(Append("c", MessageRecord("u1", "hi"), &appended).ok());
  v1::AssignRun resumed = worker->TakeRun();
  EXPECT_TRUE(resumed.resume());
  EXPECT_FALSE(resumed.continuation());
  EXPECT_EQ(Runs("c").back().trigger(), "resume");

  worker->Snapshot(resumed, appended.seq());  // it answered the message
  worker->Finish(resumed, v1::RUN_END_SUSPENDED, "idle", false, "", in_a_minute());
  AdvanceAndTick(absl::Seconds(59));
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_SUSPENDED);
  AdvanceAndTick(absl::Seconds(2));
  EXPECT_EQ(Get("c").state(), v1::SESSION_STATE_EXITED);
  v1::Run timed_out = Runs("c").back();
  EXPECT_EQ(timed_out.run_id(), resumed.run_id());
  EXPECT_EQ(timed_out.state(), v1::RUN_STATE_EXITED);
  EXPECT_EQ(timed_out.reason(), "timeout");

  ASSERT_TRUE(Append("c", MessageRecord("u2", "again"), &appended).ok());
  v1::AssignRun fresh = worker->TakeRun();
  EXPECT_TRUE(fresh.continuation());
  EXPECT_FALSE(fresh.resume());
  EXPECT_EQ(Runs("c").back().trigger(), "continuation");
}

// A head start's window closes at its deadline when no signal came: the orchestrator appends a
// handover-skip, which reaches the run, and a late signal is refused.
TEST_F(CoreTest, AHeadStartWithNoSignalByItsDeadlineIsSkipped) {
  Options options = LongSilence();
  options.handover_timeout = absl::Seconds(30);
  Start(options);
  std::unique_ptr<FakeWorker> worker = Worker("w");
  v1::CreateSessionResponse created =
      Create("c", v1::TRIGGER_HANDOVER_PREPARE,
             absl::StrCat(R"({"headStartMessages":[)", UserMessage("u1", "hi"), "]}"));
  EXPECT_EQ(created.handover_deadline_unix_ms(),
            absl::ToUnixMillis(clock_.Now() + absl::Seconds(30)));
  v1::AssignRun assign = worker->TakeRun();
  EXPECT_EQ(assign.trigger(), v1::TRIGGER_HANDOVER_PREPARE);

  AdvanceAndTick(absl::Seconds(29));
  EXPECT_TRUE(worker->Sync({Lease(assign)}).empty());
  EXPECT_EQ(Get("c").in_seq(), 0);

  AdvanceAndTick(absl::Seconds(2));
  v1::Deliver skip = worker->Expect(v1::GatewayFrame::kDeliver).deliver();
  EXPECT_EQ(skip.run_id(), assign.run_id());
  EXPECT_EQ(skip.record().seq(), 1);
  EXPECT_EQ(skip.record().client_record_id(), "baton:handover-timeout");
  absl::StatusOr<Json> body = ParseJson(skip.record().body_json());
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(body->value("kind", ""), "handover-skip");
  EXPECT_EQ(Get("c").in_seq(), 1);

  v1::AppendResponse appended;
  grpc::Status late = Append("c", DumpJson(HandoverTimeoutSkip()), &appended);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << late.error_message();
}

// Snapshots as numbered deltas: each is stored on the version it changes and acknowledged; one
// sent again (as after a reconnect) is acknowledged again and not applied twice; the chat's next
// run boots from the whole document, assembled from the entries, and numbers its own above it.
TEST_F(CoreTest, SnapshotDeltasAreStoredAcknowledgedAndAssembledForTheNextRun) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  EXPECT_TRUE(worker->welcome().snapshot_deltas());
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun first = worker->TakeRun();
  EXPECT_EQ(first.snapshot_version(), 0);

  worker->SendSnapshot(first, 1, 0, 0, R"({"turn":1,"messages":[{"id":"u1","final":true}]})");
  v1::Ack ack = worker->Expect(v1::GatewayFrame::kAck).ack();
  EXPECT_EQ(ack.run_id(), first.run_id());
  EXPECT_EQ(ack.snapshot_version(), 1);
  EXPECT_FALSE(ack.run_ended());
  const std::string delta = R"({"turn":2,"messages":[{"id":"a1","final":true}]})";
  worker->SendSnapshot(first, 2, 1, 1, delta);
  EXPECT_EQ(worker->Expect(v1::GatewayFrame::kAck).ack().snapshot_version(), 2);
  worker->SendSnapshot(first, 2, 1, 1, delta);  // a re-send: skipped, acknowledged
  EXPECT_EQ(worker->Expect(v1::GatewayFrame::kAck).ack().snapshot_version(), 2);
  worker->Finish(first, v1::RUN_END_EXITED, "idle");

  worker->Credit(1);
  v1::AppendResponse appended;
  ASSERT_TRUE(Append("c", MessageRecord("u2", "hi"), &appended).ok());
  v1::AssignRun next = worker->Expect(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_TRUE(next.continuation());
  EXPECT_EQ(next.snapshot_version(), 2);
  EXPECT_EQ(next.snapshot_json(),
            R"({"turn":2,"messages":[{"id":"u1","final":true},{"id":"a1","final":true}]})");
}

// A delta on another version than the stored one (one before it was never stored) would lose
// messages: it is refused, the run fails retryably, and the retry boots from the version stored.
TEST_F(CoreTest, ASnapshotDeltaOnAnotherVersionIsRefusedAndTheRetryBootsFromTheStoredOne) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun first = worker->TakeRun();
  worker->SendSnapshot(first, 1, 0, 0, R"({"messages":[{"id":"u1"},{"id":"a1"}]})");
  EXPECT_EQ(worker->Expect(v1::GatewayFrame::kAck).ack().snapshot_version(), 1);

  worker->SendSnapshot(first, 3, 2, 2, R"({"messages":[{"id":"u2"}]})");  // 2 never came
  v1::LeaseRevoked revoked = worker->Expect(v1::GatewayFrame::kLeaseRevoked).lease_revoked();
  EXPECT_EQ(revoked.run_id(), first.run_id());
  EXPECT_EQ(revoked.reason(),
            "bad-snapshot: snapshot base_version 2 is not the stored snapshot's version 1 (a "
            "snapshot before it was not stored)");
  std::vector<v1::Run> runs = Runs("c");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(runs[0].reason(), "bad-snapshot");
  EXPECT_EQ(runs[1].state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(runs[1].attempt(), 2);

  worker->Credit(1);
  v1::AssignRun retry = worker->Expect(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(retry.attempt(), 2);
  EXPECT_EQ(retry.snapshot_version(), 1);
  EXPECT_EQ(retry.snapshot_json(), R"({"messages":[{"id":"u1"},{"id":"a1"}]})");
}

// A worker back after a broken stream is told, per rebound run, which snapshot is stored: it
// forgets those up to it and sends the rest again.
TEST_F(CoreTest, AReboundRunIsToldWhichSnapshotIsStored) {
  Start(LongSilence());
  std::unique_ptr<FakeWorker> worker = Worker("w");
  Create("c", v1::TRIGGER_PRELOAD);
  v1::AssignRun first = worker->TakeRun();
  worker->SendSnapshot(first, 4, 0, 0, "{}");
  EXPECT_EQ(worker->Expect(v1::GatewayFrame::kAck).ack().snapshot_version(), 4);

  v1::HeldRun held;
  held.set_run_id(first.run_id());
  held.set_lease_token(first.lease_token());
  auto again = std::make_unique<FakeWorker>(*gateway_, "w", std::vector<v1::HeldRun>{held});
  ASSERT_EQ(again->welcome().rebound_runs_size(), 1);
  EXPECT_EQ(again->welcome().rebound_runs(0).run_id(), first.run_id());
  EXPECT_EQ(again->welcome().rebound_runs(0).snapshot_version(), 4);
  EXPECT_TRUE(again->welcome().snapshot_deltas());
}

// A stored `.out` record that does not parse ends a Read with DATA_LOSS after the records
// before it, read one by one or batched (the batch holding them is sent first).
TEST_F(CoreTest, AReadSendsTheRecordsBeforeOneThatDoesNotParseThenSaysDataLoss) {
  Start(LongSilence());
  Create("c", v1::TRIGGER_PRELOAD);
  std::vector<OutRow> rows;
  for (int64_t seq = 1; seq <= 4; ++seq) {
    v1::OutRecord record;
    record.set_seq(seq);
    record.set_chunk_json(R"({"type":"start"})");
    rows.push_back(
        {seq, seq == 3 ? std::string("\xff\xff not a record") : record.SerializeAsString()});
  }
  ASSERT_TRUE(store_->AppendOut("c", rows).ok());
  for (bool batch : {false, true}) {
    SCOPED_TRACE(batch ? "batched" : "one by one");
    v1::ReadRequest request;
    request.set_chat_id("c");
    request.set_batch(batch);
    grpc::ClientContext context;
    context.set_deadline(CallDeadline());
    std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader =
        sessions_->Read(&context, request);
    std::vector<int64_t> seqs;
    v1::ReadResponse response;
    while (reader->Read(&response)) {
      if (response.has_record()) seqs.push_back(response.record().seq());
      for (const v1::OutRecord& record : response.records()) seqs.push_back(record.seq());
    }
    grpc::Status status = reader->Finish();
    EXPECT_EQ(seqs, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  }
}

// The core's states and triggers have the words the store already holds and the wire's values
// (runtime/protocol/wire.h maps the same words for rows read straight from the store).
TEST(States, EveryValueHasTheStoresWordAndTheWiresValue) {
  for (RunState state :
       {RunState::kQueued, RunState::kAssigned, RunState::kRunning, RunState::kSuspended,
        RunState::kExited, RunState::kFailed, RunState::kCancelled, RunState::kLost}) {
    EXPECT_EQ(RunStateOf(Word(state)), state);
    EXPECT_EQ(ToProto(state), RunStateFromName(Word(state))) << Word(state);
  }
  for (SessionState state : {SessionState::kLive, SessionState::kSuspended, SessionState::kExited,
                             SessionState::kFailed, SessionState::kClosed}) {
    EXPECT_EQ(SessionStateOf(Word(state)), state);
    EXPECT_EQ(ToProto(state), SessionStateFromName(Word(state))) << Word(state);
  }
  for (BootTrigger trigger :
       {BootTrigger::kPreload, BootTrigger::kSubmitMessage, BootTrigger::kHandoverPrepare,
        BootTrigger::kRegenerateMessage, BootTrigger::kClose, BootTrigger::kContinuation,
        BootTrigger::kResume}) {
    EXPECT_EQ(BootTriggerOf(Word(trigger)), trigger);
    EXPECT_EQ(ToProto(trigger), TriggerFromName(Word(trigger))) << Word(trigger);
  }
  EXPECT_EQ(Word(BootTrigger::kContinuation), "continuation");
  EXPECT_EQ(Word(BootTrigger::kResume), "resume");
  EXPECT_FALSE(RunStateOf("running-ish").has_value());
  EXPECT_FALSE(BootTriggerOf(v1::TRIGGER_UNSPECIFIED).has_value());
  EXPECT_EQ(BootTriggerOf(v1::TRIGGER_CLOSE), BootTrigger::kClose);
}

}  // namespace
}  // namespace baton::orchestrator
