// Faults, each with real parts (DESIGN §8; docs/faults.md): baton-orchestrator on a SQLite file,
// baton-worker processes, real gRPC over loopback, fake-llm. A stream that stalls while TCP
// stays up (through TcpProxy), an orchestrator that rejects heartbeats (a fake WorkerGateway in
// this process), the orchestrator killed and restarted with a turn in flight, SIGTERM with
// runs in flight, and credit kept exact under 10,000 random sequences of worker frames.
#include <curl/curl.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "tests/integration/stack.h"
#include "tests/integration/tcp_proxy.h"
#include "tools/fake-llm/script.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

// A long answer streamed slowly (one word per `delay_ms`), so that a turn is still in flight
// while a fault happens; the fault never waits on it.
std::string LongText(const std::string& word, int words) {
  std::vector<std::string> all(words, word);
  return absl::StrCat(absl::StrJoin(all, " "), ".");
}

Json SlowReply(const std::string& text, int delay_ms) {
  Json reply = Reply(text);
  reply["delay_ms"] = delay_ms;
  return reply;
}

// An answer whose stream stops after its first text delta for ten minutes: a turn that is in
// flight for as long as a test needs, whatever the machine's speed. The cut is a byte offset in
// the rendered stream (fake-llm's `split_at`), found with fake-llm's own renderer.
Json StallingReply(const std::string& text) {
  Json reply = {{"id", "msg_stalls"}, {"text", text}};
  size_t offset = 0;
  for (const Json& event :
       fakellm::ReplyEvents(reply, fakellm::WireFormat::kAnthropic, /*order=*/1)) {
    offset += fakellm::RenderEvent(event, fakellm::WireFormat::kAnthropic).size();
    if (StringField(event, "type") == "content_block_delta") break;
  }
  return Json{{"reply", reply}, {"split_at", Json::array({offset})}, {"delay_ms", 600000}};
}

// The .in seqs the turn-complete records say they answered: `session-in-event-id`, the resume
// floor (every record at or below it is answered; docs/semantics.md).
std::vector<int64_t> AnsweredInSeqs(const std::vector<Json>& records) {
  std::vector<int64_t> seqs;
  for (const Json& r : records) {
    if (StringField(r, "control") != "turn-complete") continue;
    seqs.push_back(std::stoll(StringField(r["headers"], "session-in-event-id")));
  }
  return seqs;
}

// The records' seqs run from `first` without a gap or a repeat.
void ExpectGapless(const std::vector<Json>& records, int64_t first = 1) {
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(SeqOf(records[i]), first + static_cast<int64_t>(i))
        << "record " << i << " of " << DumpJson(Json(records));
  }
}

// The text deltas between the n-th turn-complete (0: the start) and the next one.
std::string TurnText(const std::vector<Json>& records, int turn) {
  std::vector<Json> part;
  int seen = 0;
  for (const Json& r : records) {
    if (StringField(r, "control") == "turn-complete") {
      if (seen++ == turn) break;
      continue;
    }
    if (seen == turn) part.push_back(r);
  }
  return Text(part);
}

bool HasTextDelta(const std::vector<Json>& records) {
  for (const Json& r : records) {
    if (StringField(r, "type") == "text-delta") return true;
  }
  return false;
}

std::function<bool(const std::vector<Json>&)> Turns(int n) {
  return [n](const std::vector<Json>& r) { return CountControl(r, "turn-complete") >= n; };
}

// A reader that follows a chat's `.out` on a thread of its own, as a client would: when its
// stream breaks (the orchestrator went away), it reads again from the last seq it saw.
class Follower {
 public:
  Follower(v1::Sessions::Stub& sessions, std::string chat_id)
      : sessions_(sessions), chat_id_(std::move(chat_id)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Follower() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    thread_.join();
  }

  bool WaitUntil(const std::function<bool(const std::vector<Json>&)>& done,
                 std::chrono::milliseconds limit = kLimit) {
    absl::MutexLock lock(&mu_);
    auto holds = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(records_); };
    bool ok = mu_.AwaitWithTimeout(absl::Condition(&holds), absl::FromChrono(limit));
    EXPECT_TRUE(ok) << "read " << records_.size() << " records of " << chat_id_
                    << " before the limit: " << DumpJson(Json(records_));
    return ok;
  }
  std::vector<Json> records() const {
    absl::MutexLock lock(&mu_);
    return records_;
  }
  // Read streams opened so far: more than one when the reader had to resume.
  int streams() const {
    absl::MutexLock lock(&mu_);
    return streams_;
  }

 private:
  void Run() {
    while (true) {
      grpc::ClientContext context;
      context.set_wait_for_ready(true);  // an orchestrator restarting: wait for it
      context.set_deadline(std::chrono::system_clock::now() + kLimit);
      v1::ReadRequest request;
      {
        absl::MutexLock lock(&mu_);
        if (stop_ || streams_ >= 100) return;
        ++streams_;
        context_ = &context;
        request.set_after_seq(records_.empty() ? 0 : SeqOf(records_.back()));
      }
      request.set_chat_id(chat_id_);
      request.set_follow(true);
      std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader =
          sessions_.Read(&context, request);
      v1::ReadResponse response;
      while (reader->Read(&response)) {
        Json record = RecordJson(response.record());
        absl::MutexLock lock(&mu_);
        records_.push_back(std::move(record));
      }
      reader->Finish().IgnoreError();
      absl::MutexLock lock(&mu_);
      context_ = nullptr;
    }
  }

  v1::Sessions::Stub& sessions_;
  const std::string chat_id_;
  mutable absl::Mutex mu_;
  std::vector<Json> records_ ABSL_GUARDED_BY(mu_);
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

std::string WorkerLog(Stack& stack, int worker) {
  return stack.Path(absl::StrCat("worker-", worker, ".log"));
}

// ---- a stream that stalls while TCP stays up ---------------------------------------------------

// The worker dials the orchestrator through a proxy; mid-answer the proxy stops forwarding on
// that connection but keeps it open. No HeartbeatAck for two intervals: the worker gives the
// stream up, reconnects over a new TCP connection, is rebound to its run within the lease, and
// re-sends what the orchestrator had not stored. The reader sees the whole turn once.
TEST(FaultsTest, AStalledStreamIsNoticedAndTheWorkerReconnects) {
  const std::string story = LongText("word", 30);
  // The lease is 25 heartbeats: a worker that reconnects as the protocol says (after two
  // missed acks) keeps its run; one that waited for TCP or gRPC keepalive to notice (10 s and
  // more) would find it lost and retried.
  auto stack = Stack::Start({.script = Script({SlowReply(story, 100), Reply("Back again.")}),
                             .workers = 0,
                             .orchestrator_flags = {"--heartbeat_ms=200", "--lease_ms=5000"}});
  ASSERT_NE(stack, nullptr);
  absl::StatusOr<std::unique_ptr<TcpProxy>> proxy = TcpProxy::Start(stack->address());
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  stack->AddWorker({absl::StrCat("--orchestrator=", (*proxy)->address())});
  ASSERT_TRUE((*proxy)->WaitForAccepted(1, kLimit));

  stack->Create("n1", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  ASSERT_TRUE(stack->WaitForRunState("n1", v1::RUN_STATE_RUNNING));
  const std::string run_id = stack->Get("n1").run_id();
  Follower reader(stack->sessions(), "n1");
  EXPECT_EQ(stack->SendText("n1", "u1", "Tell me a long story."), 1);
  ASSERT_TRUE(reader.WaitUntil(HasTextDelta));  // the turn is in flight

  const int before = (*proxy)->accepted();
  (*proxy)->Pause();
  ASSERT_TRUE((*proxy)->WaitForAccepted(before + 1, kLimit)) << "the worker never reconnected";
  ASSERT_TRUE(reader.WaitUntil(Turns(1)));
  EXPECT_TRUE(WaitForFileContains(WorkerLog(*stack, 0), "no heartbeat answer for two intervals"));

  std::vector<Json> out = reader.records();
  ExpectGapless(out);
  EXPECT_EQ(TurnText(out, 0), story);  // every word once, in order
  EXPECT_THAT(AnsweredInSeqs(out), ElementsAre(1));
  EXPECT_EQ(reader.streams(), 1);  // the orchestrator never went away: one Read did it all

  // Rebound, not retried: one run, the same one, first attempt.
  std::vector<v1::Run> runs = stack->Runs("n1");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].run_id(), run_id);
  EXPECT_EQ(runs[0].attempt(), 1);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_RUNNING);

  // The new stream carries the chat on.
  EXPECT_EQ(stack->SendText("n1", "u2", "And now?"), 2);
  ASSERT_TRUE(reader.WaitUntil(Turns(2)));
  out = reader.records();
  ExpectGapless(out);
  EXPECT_EQ(TurnText(out, 1), "Back again.");
  EXPECT_THAT(AnsweredInSeqs(out), ElementsAre(1, 2));
  EXPECT_EQ(stack->llm().requests().size(), 2u);
}

// ---- the orchestrator killed and restarted ----------------------------------------------------

// SIGKILL with a turn streaming, a second message waiting on `.in` and a reader following; then
// the orchestrator starts again on the same SQLite file. The worker reconnects and is rebound
// to its run (the same run, first attempt); the reader resumes from the last seq it saw. Both
// turns complete, each `.in` message answered once, and the log has no gap and no repeat. After
// the chat suspended, a second restart: the continuation starts from the stored snapshot and
// answers with the whole history.
TEST(FaultsTest, OrchestratorKilledMidTurnComesBackAndNothingIsLost) {
  const std::string story = LongText("alpha", 25);
  auto stack = Stack::Start(
      {.script = Script({SlowReply(story, 80), Reply("Second answer."), Reply("Third answer.")}),
       .worker_flags = {"--idle_timeout_ms=1500"}});
  ASSERT_NE(stack, nullptr);
  stack->Create("o2", "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload"));
  ASSERT_TRUE(stack->WaitForRunState("o2", v1::RUN_STATE_RUNNING));
  const std::string run_id = stack->Get("o2").run_id();
  Follower reader(stack->sessions(), "o2");
  EXPECT_EQ(stack->SendText("o2", "u1", "Tell me about alpha."), 1);
  ASSERT_TRUE(reader.WaitUntil(HasTextDelta));             // turn 1 is streaming
  EXPECT_EQ(stack->SendText("o2", "u2", "And then?"), 2);  // waits for turn 1 to end
  const std::vector<Json> seen_before = reader.records();

  stack->RestartOrchestrator();  // SIGKILL, then the same file and port
  ASSERT_TRUE(reader.WaitUntil(Turns(2)));
  std::vector<Json> out = reader.records();
  ExpectGapless(out);
  EXPECT_GE(reader.streams(), 2) << "the reader had to resume";
  ASSERT_GE(out.size(), seen_before.size());
  for (size_t i = 0; i < seen_before.size(); ++i) EXPECT_EQ(out[i], seen_before[i]);
  EXPECT_EQ(TurnText(out, 0), story);
  EXPECT_EQ(TurnText(out, 1), "Second answer.");
  EXPECT_THAT(AnsweredInSeqs(out), ElementsAre(1, 2));
  std::vector<v1::Run> runs = stack->Runs("o2");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].run_id(), run_id);
  EXPECT_EQ(runs[0].attempt(), 1);
  EXPECT_FALSE(stack->hooks().WaitFor("onBoot", 2, std::chrono::milliseconds(0)))
      << "the run was booted again instead of rebound";

  // The chat rests; its snapshot is all that carries it. The orchestrator dies again.
  ASSERT_TRUE(stack->hooks().WaitFor("onChatSuspend"));
  ASSERT_TRUE(stack->WaitForRunState("o2", v1::RUN_STATE_SUSPENDED));
  stack->RestartOrchestrator();
  EXPECT_EQ(stack->SendText("o2", "u3", "Summarise."), 3);
  ASSERT_TRUE(reader.WaitUntil(Turns(3)));
  out = reader.records();
  ExpectGapless(out);
  EXPECT_EQ(TurnText(out, 2), "Third answer.");
  EXPECT_THAT(AnsweredInSeqs(out), ElementsAre(1, 2, 3));

  // One model call per message, and the third saw the whole history.
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 3u);
  const Json& messages = requests[2].json["messages"];
  ASSERT_EQ(messages.size(), 5u) << messages.dump();
  EXPECT_THAT(messages[0].dump(), HasSubstr("Tell me about alpha."));
  EXPECT_THAT(messages[1].dump(), HasSubstr("alpha alpha alpha"));
  EXPECT_THAT(messages[2].dump(), HasSubstr("And then?"));
  EXPECT_THAT(messages[3].dump(), HasSubstr("Second answer."));
  EXPECT_THAT(messages[4].dump(), HasSubstr("Summarise."));
  runs = stack->Runs("o2");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].run_id(), run_id);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_SUSPENDED);
  EXPECT_EQ(runs[1].trigger(), "resume");
}

// ---- SIGTERM with runs in flight ---------------------------------------------------------------

// A worker drains on SIGTERM, but its run cannot finish within the drain grace (its model
// stream stalls): it hands the run back, and the orchestrator boots attempt 2 on the other
// worker at once. The lease is ten minutes, so nothing but the hand-back can have moved the run.
// What the reader saw before is still the head of the log, and the log stays gapless.
TEST(FaultsTest, SigtermHandsAnUnfinishedRunBackAndItIsRetriedAtOnce) {
  auto stack = Stack::Start({.script = Script({StallingReply("This answer stalls after a word."),
                                               Reply("Answered after the hand-back.")}),
                             .workers = 0,
                             .orchestrator_flags = {"--lease_ms=600000"}});
  ASSERT_NE(stack, nullptr);
  int first = stack->AddWorker({"--drain_grace_ms=200"});
  stack->Create("g1", "chat", "preload");
  ASSERT_TRUE(stack->hooks(first).WaitFor("onPreload"));
  ASSERT_TRUE(stack->WaitForRunState("g1", v1::RUN_STATE_RUNNING));
  Follower reader(stack->sessions(), "g1");
  EXPECT_EQ(stack->SendText("g1", "u1", "Hello?"), 1);
  ASSERT_TRUE(reader.WaitUntil(HasTextDelta));  // the answer started, and stalls
  int second = stack->AddWorker();
  const std::vector<Json> seen_before = reader.records();

  stack->worker(first).Signal(SIGTERM);
  std::optional<int> code = stack->worker(first).WaitFor(kLimit);
  ASSERT_TRUE(code.has_value()) << "the draining worker did not exit";
  EXPECT_EQ(*code, 0);
  ASSERT_TRUE(stack->hooks(second).WaitFor("onBoot"));
  ASSERT_TRUE(reader.WaitUntil(Turns(1)));

  std::vector<Json> out = reader.records();
  ExpectGapless(out);
  ASSERT_GE(out.size(), seen_before.size());
  for (size_t i = 0; i < seen_before.size(); ++i) EXPECT_EQ(out[i], seen_before[i]);
  EXPECT_THAT(Text(out), HasSubstr("Answered after the hand-back."));
  EXPECT_THAT(AnsweredInSeqs(out), ElementsAre(1));
  // The stored log is what the reader saw.
  EXPECT_EQ(stack->ReadTurns("g1", 0), out);

  std::vector<v1::Run> runs = stack->Runs("g1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(runs[0].reason(), "worker-shutdown");
  EXPECT_EQ(runs[0].worker_id(), "worker-0");
  EXPECT_EQ(runs[1].attempt(), 2);
  EXPECT_EQ(runs[1].worker_id(), "worker-1");
  // The retry answered the user's message again, from the start: the unfinished message is
  // not in its transcript.
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 2u);
  ASSERT_EQ(requests[1].json["messages"].size(), 1u) << requests[1].body;
  EXPECT_THAT(requests[1].json["messages"][0].dump(), HasSubstr("Hello?"));
}

// The first SIGTERM drains, which may take the whole drain grace (here ten minutes, with a run
// in flight); a second one ends the process at once, with 128 + the signal (143).
TEST(FaultsTest, ASecondSigtermExitsAtOnce) {
  auto stack =
      Stack::Start({.script = Script({StallingReply("This answer never ends.")}), .workers = 0});
  ASSERT_NE(stack, nullptr);
  int worker = stack->AddWorker({"--drain_grace_ms=600000"});
  stack->Create("t1", "chat", "submit-message", Json{{"message", UserMessage("u1", "Hi")}});
  ASSERT_TRUE(stack->llm().WaitForRequests(1, kLimit));  // the turn is in flight
  ASSERT_TRUE(stack->WaitForRunState("t1", v1::RUN_STATE_RUNNING));

  stack->worker(worker).Signal(SIGTERM);
  ASSERT_TRUE(WaitForFileContains(WorkerLog(*stack, worker), R"("msg":"draining")"));
  EXPECT_FALSE(stack->worker(worker).WaitFor(std::chrono::milliseconds(0)).has_value())
      << "the first SIGTERM drains; it does not exit with a run in flight";
  stack->worker(worker).Signal(SIGTERM);
  std::optional<int> code = stack->worker(worker).WaitFor(kLimit);
  ASSERT_TRUE(code.has_value()) << "a second SIGTERM did not end the worker";
  EXPECT_EQ(*code, 128 + SIGTERM);
  std::ifstream log(WorkerLog(*stack, worker));
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_THAT(text, ::testing::Not(HasSubstr(R"("msg":"drained")")));
}

// A client cancels a running run; before the worker acts on the CancelRun, it hands the run back
// (a retryable failure, as a drain does). The cancel was acknowledged, so the run ends cancelled
// and is not retried.
TEST(FaultsTest, ACancelledRunHandedBackIsNotRetried) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  grpc::ClientContext stream_context;
  stream_context.set_deadline(std::chrono::system_clock::now() + kLimit);
  auto stream = stack->gateway().Connect(&stream_context);
  v1::WorkerFrame frame;
  frame.mutable_hello()->set_worker_id("raw");
  frame.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_1);
  frame.mutable_hello()->set_capacity(2);
  frame.mutable_hello()->add_agents()->set_name("chat");
  ASSERT_TRUE(stream->Write(frame));
  frame.Clear();
  frame.mutable_credit()->set_runs(2);
  ASSERT_TRUE(stream->Write(frame));
  stack->Create("x1", "chat", "preload");
  v1::GatewayFrame in;
  while (stream->Read(&in) && !in.has_assign_run()) {
  }
  ASSERT_TRUE(in.has_assign_run());
  const v1::AssignRun assign = in.assign_run();
  frame.Clear();
  frame.mutable_run_accepted()->set_run_id(assign.run_id());
  frame.mutable_run_accepted()->set_lease_token(assign.lease_token());
  ASSERT_TRUE(stream->Write(frame));
  ASSERT_TRUE(stack->WaitForRunState("x1", v1::RUN_STATE_RUNNING));

  grpc::ClientContext context;
  v1::CancelRunRequest cancel;
  cancel.set_chat_id("x1");
  v1::Run run;
  ASSERT_TRUE(stack->sessions().CancelRun(&context, cancel, &run).ok());
  EXPECT_EQ(run.state(), v1::RUN_STATE_RUNNING);  // its worker is told
  while (stream->Read(&in) && !in.has_cancel_run()) {
  }
  ASSERT_TRUE(in.has_cancel_run());
  frame.Clear();
  v1::RunFinished& finished = *frame.mutable_run_finished();
  finished.set_run_id(assign.run_id());
  finished.set_lease_token(assign.lease_token());
  finished.set_end(v1::RUN_END_FAILED);
  finished.set_retryable(true);
  finished.set_reason("worker-shutdown");
  ASSERT_TRUE(stream->Write(frame));
  while (stream->Read(&in) && !(in.has_ack() && in.ack().run_ended())) {
    EXPECT_FALSE(in.has_assign_run()) << "the cancelled run was retried";
  }
  std::vector<v1::Run> runs = stack->Runs("x1");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_CANCELLED);
  EXPECT_EQ(stack->Get("x1").state(), v1::SESSION_STATE_EXITED);
  stream_context.TryCancel();
}

// A cancel acknowledged before an orchestrator restart still holds after it: the run row keeps
// it. Two runs of a raw worker are cancelled while the worker ignores the CancelRun frames; the
// orchestrator is killed (SIGKILL) and started again on its file. The worker comes back holding
// one of them: it is told to cancel it again, hands it back as a drain would (a retryable
// failure), and the run ends cancelled, not retried. The other run's worker never comes back:
// its lease runs out and it ends cancelled, not lost and retried.
TEST(FaultsTest, ACancelAcknowledgedBeforeARestartStillHoldsAfterIt) {
  auto stack = Stack::Start({.workers = 0, .orchestrator_flags = {"--lease_ms=6000"}});
  ASSERT_NE(stack, nullptr);
  using Stream = grpc::ClientReaderWriter<v1::WorkerFrame, v1::GatewayFrame>;
  auto hello = [](const std::vector<v1::HeldRun>& held) {
    v1::WorkerFrame frame;
    v1::Hello& h = *frame.mutable_hello();
    h.set_worker_id("raw");
    h.set_protocol_version(v1::PROTOCOL_VERSION_1);
    h.set_capacity(2);
    h.add_agents()->set_name("chat");
    for (const v1::HeldRun& run : held) *h.add_held_runs() = run;
    return frame;
  };
  auto credit = [] {
    v1::WorkerFrame frame;
    frame.mutable_credit()->set_runs(2);
    return frame;
  };
  // The next frame the orchestrator sends that `wanted` takes; fails when the stream ends first.
  auto next = [](Stream& stream, const std::function<bool(const v1::GatewayFrame&)>& wanted) {
    v1::GatewayFrame frame;
    while (stream.Read(&frame)) {
      EXPECT_FALSE(frame.has_assign_run()) << "a run was assigned: " << frame.assign_run().run_id();
      if (wanted(frame)) return frame;
    }
    ADD_FAILURE() << "the stream ended first";
    return v1::GatewayFrame();
  };

  auto before_context = std::make_unique<grpc::ClientContext>();
  before_context->set_deadline(std::chrono::system_clock::now() + kLimit);
  std::unique_ptr<Stream> before = stack->gateway().Connect(before_context.get());
  ASSERT_TRUE(before->Write(hello({})));
  ASSERT_TRUE(before->Write(credit()));
  std::map<std::string, v1::AssignRun> assigned;  // by chat
  for (const char* chat : {"k1", "k2"}) {
    stack->Create(chat, "chat", "preload");
    v1::GatewayFrame frame;
    while (before->Read(&frame) && !frame.has_assign_run()) {
    }
    ASSERT_TRUE(frame.has_assign_run());
    assigned[chat] = frame.assign_run();
    v1::WorkerFrame accept;
    accept.mutable_run_accepted()->set_run_id(frame.assign_run().run_id());
    accept.mutable_run_accepted()->set_lease_token(frame.assign_run().lease_token());
    ASSERT_TRUE(before->Write(accept));
    ASSERT_TRUE(stack->WaitForRunState(chat, v1::RUN_STATE_RUNNING));
  }
  v1::WorkerFrame beat;  // fresh leases, then straight to the cancels and the kill
  beat.mutable_heartbeat()->set_seq(1);
  for (const auto& [chat, run] : assigned) {
    v1::RunLease& lease = *beat.mutable_heartbeat()->add_runs();
    lease.set_run_id(run.run_id());
    lease.set_lease_token(run.lease_token());
  }
  ASSERT_TRUE(before->Write(beat));
  for (const char* chat : {"k1", "k2"}) {
    v1::Run run = stack->Cancel(chat);
    EXPECT_EQ(run.state(), v1::RUN_STATE_RUNNING);  // its worker is told; it has not ended yet
    EXPECT_TRUE(run.cancel_requested());
  }
  stack->RestartOrchestrator();  // SIGKILL, then the same file and port
  before_context->TryCancel();

  // The worker returns holding k1's run only.
  auto gateway = v1::WorkerGateway::NewStub(stack->Channel({}));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  std::unique_ptr<Stream> after = gateway->Connect(&context);
  const v1::AssignRun& k1 = assigned["k1"];
  v1::HeldRun held;
  held.set_run_id(k1.run_id());
  held.set_attempt(k1.attempt());
  held.set_lease_token(k1.lease_token());
  ASSERT_TRUE(after->Write(hello({held})));
  ASSERT_TRUE(after->Write(credit()));
  v1::GatewayFrame welcome =
      next(*after, [](const v1::GatewayFrame& f) { return f.has_welcome(); });
  ASSERT_EQ(welcome.welcome().rebound_runs_size(), 1);
  EXPECT_EQ(welcome.welcome().rebound_runs(0).run_id(), k1.run_id());
  v1::GatewayFrame cancel =
      next(*after, [](const v1::GatewayFrame& f) { return f.has_cancel_run(); });
  EXPECT_EQ(cancel.cancel_run().run_id(), k1.run_id());
  v1::WorkerFrame handed_back;
  v1::RunFinished& finished = *handed_back.mutable_run_finished();
  finished.set_run_id(k1.run_id());
  finished.set_lease_token(k1.lease_token());
  finished.set_end(v1::RUN_END_FAILED);
  finished.set_retryable(true);
  finished.set_reason("worker-shutdown");
  ASSERT_TRUE(after->Write(handed_back));
  next(*after, [](const v1::GatewayFrame& f) { return f.has_ack() && f.ack().run_ended(); });
  std::vector<v1::Run> runs = stack->Runs("k1");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_CANCELLED);
  EXPECT_EQ(stack->Get("k1").state(), v1::SESSION_STATE_EXITED);

  // k2's worker never claims it: the lease runs out and the run ends cancelled, not retried
  // (a retry would be the chat's latest run, never cancelled, and would go to this worker).
  ASSERT_TRUE(stack->WaitForRunState("k2", v1::RUN_STATE_CANCELLED));
  runs = stack->Runs("k2");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].reason(), "lease-expired");
  EXPECT_EQ(stack->Get("k2").state(), v1::SESSION_STATE_EXITED);
  context.TryCancel();
}

// ---- an orchestrator that rejects heartbeats ---------------------------------------------------

// A WorkerGateway written for the test (real gRPC on loopback): it welcomes every worker with a
// 100 ms heartbeat and then either never answers a heartbeat or ends the stream with an error
// when one arrives. It records what each stream saw.
class FakeGateway final : public v1::WorkerGateway::CallbackService {
 public:
  enum class Mode {
    kSilent,           // reads every frame, answers none, ends no stream of its own accord
    kFailOnHeartbeat,  // ends the stream with FAILED_PRECONDITION at the first Heartbeat
  };
  struct Stream {
    std::string worker_id;
    int heartbeats = 0;
    bool goodbye = false;
    bool cancelled = false;  // the worker ended it
    bool failed = false;     // this fake ended it with an error
    bool done = false;
  };

  explicit FakeGateway(Mode mode) : mode_(mode) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeGateway() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

  bool WaitUntil(const std::function<bool(const std::vector<Stream>&)>& done) {
    absl::MutexLock lock(&mu_);
    auto holds = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(streams_); };
    bool ok = mu_.AwaitWithTimeout(absl::Condition(&holds), absl::FromChrono(kLimit));
    EXPECT_TRUE(ok) << streams_.size() << " streams";
    return ok;
  }
  std::vector<Stream> streams() const {
    absl::MutexLock lock(&mu_);
    return streams_;
  }

  grpc::ServerBidiReactor<v1::WorkerFrame, v1::GatewayFrame>* Connect(
      grpc::CallbackServerContext*) override {
    absl::MutexLock lock(&mu_);
    streams_.emplace_back();
    return new Reactor(*this, streams_.size() - 1);
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<v1::WorkerFrame, v1::GatewayFrame> {
   public:
    Reactor(FakeGateway& gateway, size_t index) : gateway_(gateway), index_(index) {
      StartRead(&in_);
    }

    void OnReadDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      if (!ok) {
        // The worker half-closed (after Goodbye) or went away. A silent gateway still says
        // nothing: the worker has to end the stream itself.
        if (gateway_.mode_ == Mode::kFailOnHeartbeat) FinishLocked(grpc::Status::OK);
        return;
      }
      switch (in_.frame_case()) {
        case v1::WorkerFrame::kHello: {
          gateway_.Update(index_, [&](Stream& s) { s.worker_id = in_.hello().worker_id(); });
          v1::Welcome& welcome = *out_.mutable_welcome();
          welcome.set_connection_id(absl::StrCat("fake_", index_));
          welcome.set_protocol_version(v1::PROTOCOL_VERSION_1);
          welcome.set_heartbeat_interval_ms(100);
          welcome.set_heartbeat_misses(3);
          welcome.set_lease_ttl_ms(10000);
          welcome.set_accept_deadline_ms(5000);
          writing_ = true;
          StartWrite(&out_);
          break;
        }
        case v1::WorkerFrame::kHeartbeat:
          gateway_.Update(index_, [](Stream& s) { ++s.heartbeats; });
          if (gateway_.mode_ == Mode::kFailOnHeartbeat) {
            gateway_.Update(index_, [](Stream& s) { s.failed = true; });
            FinishLocked(
                grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "heartbeats are refused here"));
            return;
          }
          break;
        case v1::WorkerFrame::kGoodbye:
          gateway_.Update(index_, [](Stream& s) { s.goodbye = true; });
          break;
        default:
          break;
      }
      StartRead(&in_);
    }

    void OnWriteDone(bool) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (finish_.has_value()) Finish(*finish_);
    }

    void OnCancel() override {
      gateway_.Update(index_, [](Stream& s) { s.cancelled = true; });
      absl::MutexLock lock(&mu_);
      FinishLocked(grpc::Status::CANCELLED);
    }

    void OnDone() override {
      gateway_.Update(index_, [](Stream& s) { s.done = true; });
      delete this;
    }

   private:
    // Finish once, and not while the Welcome is being written.
    void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finishing_) return;
      finishing_ = true;
      if (writing_) {
        finish_ = std::move(status);
      } else {
        Finish(std::move(status));
      }
    }

    FakeGateway& gateway_;
    const size_t index_;
    absl::Mutex mu_;
    v1::WorkerFrame in_;
    v1::GatewayFrame out_;
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finishing_ ABSL_GUARDED_BY(mu_) = false;
    std::optional<grpc::Status> finish_ ABSL_GUARDED_BY(mu_);
  };

  void Update(size_t index, const std::function<void(Stream&)>& change) {
    absl::MutexLock lock(&mu_);
    change(streams_[index]);
  }

  const Mode mode_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  std::vector<Stream> streams_ ABSL_GUARDED_BY(mu_);
};

int Ended(const std::vector<FakeGateway::Stream>& streams) {
  int n = 0;
  for (const FakeGateway::Stream& s : streams) n += s.done ? 1 : 0;
  return n;
}

// Heartbeats are never answered: after two unanswered ones the worker ends the stream itself and
// dials again, over and over; SIGTERM still stops it at once (nothing runs, so nothing drains,
// and it does not wait for a gateway that will never close the stream).
TEST(FaultsTest, AGatewayThatNeverAnswersHeartbeatsIsLeftAndRedialed) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  FakeGateway gateway(FakeGateway::Mode::kSilent);
  stack->AddWorker({absl::StrCat("--orchestrator=", gateway.address())});
  ASSERT_TRUE(gateway.WaitUntil([](const auto& streams) { return Ended(streams) >= 3; }));
  std::vector<FakeGateway::Stream> streams = gateway.streams();
  for (const FakeGateway::Stream& s : streams) {
    if (!s.done) continue;
    EXPECT_EQ(s.worker_id, "worker-0");
    EXPECT_GE(s.heartbeats, 2) << "gave up before two heartbeats went unanswered";
    EXPECT_TRUE(s.cancelled) << "the worker, not the gateway, ends a silent stream";
    EXPECT_FALSE(s.failed);
  }
  EXPECT_TRUE(WaitForFileContains(WorkerLog(*stack, 0), "no heartbeat answer for two intervals"));

  // SIGTERM while a stream is open that the gateway will never close: the worker says
  // Goodbye, and its heartbeat check ends the stream, as it ends any silent one.
  ASSERT_TRUE(gateway.WaitUntil(
      [](const auto& streams) { return !streams.back().done && streams.back().heartbeats >= 1; }));
  stack->worker(0).Signal(SIGTERM);
  std::optional<int> code = stack->worker(0).WaitFor(kLimit);
  ASSERT_TRUE(code.has_value()) << "the worker hangs after SIGTERM";
  EXPECT_EQ(*code, 0);
}

// Heartbeats end the stream with an error: the worker resets and dials again each time, and
// still exits on SIGTERM.
TEST(FaultsTest, AGatewayThatRejectsHeartbeatsMakesTheWorkerResetNotHang) {
  auto stack = Stack::Start({.workers = 0});
  ASSERT_NE(stack, nullptr);
  FakeGateway gateway(FakeGateway::Mode::kFailOnHeartbeat);
  stack->AddWorker({absl::StrCat("--orchestrator=", gateway.address())});
  ASSERT_TRUE(gateway.WaitUntil([](const auto& streams) { return Ended(streams) >= 3; }));
  for (const FakeGateway::Stream& s : gateway.streams()) {
    if (!s.done) continue;
    EXPECT_EQ(s.worker_id, "worker-0");
    EXPECT_TRUE(s.failed);
    EXPECT_EQ(s.heartbeats, 1);
  }
  EXPECT_TRUE(WaitForFileContains(WorkerLog(*stack, 0), "heartbeats are refused here"));

  stack->worker(0).Signal(SIGTERM);
  std::optional<int> code = stack->worker(0).WaitFor(kLimit);
  ASSERT_TRUE(code.has_value()) << "the worker hangs after SIGTERM";
  EXPECT_EQ(*code, 0);
}

// ---- slot accounting under random sequences ---------------------------------------------------

// Raw workers (frames written by hand, as gateway_test does) against a real orchestrator, driven
// by a seeded random program of bursts: create chats, grant credit, accept assignments, cancel
// chats through Sessions, fail runs (retryable or not), end them, cancel them on request, and
// reconnect a worker mid-flight (its running runs listed in Hello). A burst's frames and calls
// go out back to back, so the orchestrator sees them interleaved; then the driver settles
// (a Heartbeat per stream, twice round, each awaited: every effect of the burst has arrived) and
// checks its model against the orchestrator, exactly:
//   - no AssignRun beyond the credit a stream granted (checked as each one arrives);
//   - the orchestrator's free credit is what the streams granted minus what they were assigned;
//   - its live runs are the model's live chats, one run each, never held twice;
//   - no run waits in the queue while a worker has credit;
//   - a run is revoked only when it was cancelled or its stream gave it up.
class SlotDriver {
 public:
  static constexpr int kConns = 2;
  static constexpr int kCapacity = 3;
  static constexpr int kMaxLiveChats = 9;

  SlotDriver(Stack& stack, uint64_t seed) : stack_(stack), random_(seed) {
    curl_ = curl_easy_init();
    for (int i = 0; i < kConns; ++i) {
      conns_.push_back(std::make_unique<Conn>());
      conns_.back()->worker_id = absl::StrCat("raw-", i);
      Connect(*conns_.back());
    }
  }
  ~SlotDriver() {
    for (auto& conn : conns_) conn->context->TryCancel();
    curl_easy_cleanup(curl_);
  }

  // One burst of 1 to 4 operations, then settle and check. False (with a failure added) when
  // the orchestrator and the model disagree.
  bool Sequence(int number) {
    number_ = number;
    trace_.clear();
    SendReactions();
    int ops = Uniform(1, 4);
    for (int i = 0; i < ops && ok_; ++i) Operate();
    if (ok_) Settle();
    if (ok_) Check();
    return ok_;
  }

  std::map<std::string, int> counts() const { return counts_; }

 private:
  struct Held {
    std::string chat_id;
    int64_t token = 0;
    int attempt = 0;
    bool accepted = false;
    bool cancel_requested = false;
    int accepted_in = -1;  // the sequence that sent its RunAccepted
  };
  struct Conn {
    std::string worker_id;
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerFrame, v1::GatewayFrame>> stream;
    int64_t granted = 0;   // credit sent on this stream
    int64_t assigned = 0;  // AssignRuns received on this stream
    int64_t heartbeat = 0;
    int reactions = 0;  // Credit{1} owed for runs dropped on a revoke, sent at the next burst
    std::map<std::string, Held> runs;
    // Runs this side ended whose end the orchestrator has not acknowledged: a worker keeps
    // them and sends the RunFinished again on its next stream (it may have died unread).
    std::map<std::string, std::pair<v1::RunFinished, Held>> ending;
  };
  struct Chat {
    bool live = true;
    int attempt = 1;
  };

  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(random_); }

  void Fail(const std::string& what) {
    if (!ok_) return;
    ok_ = false;
    ADD_FAILURE() << "sequence " << number_ << ": " << what << "\n  burst: " << trace_;
  }

  void Send(Conn& conn, const v1::WorkerFrame& frame) {
    if (!conn.stream->Write(frame)) Fail(absl::StrCat(conn.worker_id, ": the stream broke"));
  }

  void Grant(Conn& conn, int runs) {
    v1::WorkerFrame frame;
    frame.mutable_credit()->set_runs(runs);
    Send(conn, frame);
    conn.granted += runs;
  }

  int HeldCount(const Conn& conn) const { return static_cast<int>(conn.runs.size()); }
  int64_t Outstanding(const Conn& conn) const { return conn.granted - conn.assigned; }

  // A new stream: Hello lists the runs this side accepted; the ones not rebound are dropped;
  // then credit for what is free, as a real worker does.
  void Connect(Conn& conn) {
    conn.context = std::make_unique<grpc::ClientContext>();
    conn.context->set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(2));
    conn.stream = stack_.gateway().Connect(conn.context.get());
    v1::WorkerFrame hello;
    hello.mutable_hello()->set_worker_id(conn.worker_id);
    hello.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_1);
    hello.mutable_hello()->set_capacity(kCapacity);
    hello.mutable_hello()->add_agents()->set_name("chat");
    for (auto it = conn.runs.begin(); it != conn.runs.end();) {
      if (!it->second.accepted) {
        it = conn.runs.erase(it);  // never accepted here: the orchestrator queues it again
        continue;
      }
      v1::HeldRun& held = *hello.mutable_hello()->add_held_runs();
      held.set_run_id(it->first);
      held.set_lease_token(it->second.token);
      held.set_attempt(it->second.attempt);
      ++it;
    }
    for (const auto& [run_id, end] : conn.ending) {
      v1::HeldRun& held = *hello.mutable_hello()->add_held_runs();
      held.set_run_id(run_id);
      held.set_lease_token(end.first.lease_token());
    }
    Send(conn, hello);
    v1::GatewayFrame frame;
    if (!conn.stream->Read(&frame) || !frame.has_welcome()) {
      return Fail(absl::StrCat(conn.worker_id, ": no Welcome"));
    }
    std::set<std::string> rebound;
    for (const v1::HeldRun& held : frame.welcome().rebound_runs()) rebound.insert(held.run_id());
    for (const auto& [run_id, held] : conn.runs) {
      // Every run this side accepted is still running (ends go through this driver): all are
      // rebound, unless the acceptance went out in this burst and the stream died before the
      // orchestrator read it (then the run is queued again).
      if (rebound.count(run_id) == 0 && chats_[held.chat_id].live && held.accepted_in < number_) {
        ++unbound_;
      }
    }
    for (auto it = conn.runs.begin(); it != conn.runs.end();) {
      it = rebound.count(it->first) > 0 ? std::next(it) : conn.runs.erase(it);
    }
    // An end not rebound was stored before the stream died, unless the run's acceptance went
    // out in this burst and died unread with it: then the run is queued again, as if never
    // run. Which of the two happened, the orchestrator's answer tells (after the old stream is
    // gone). A rebound end goes again.
    for (auto it = conn.ending.begin(); it != conn.ending.end();) {
      if (rebound.count(it->first) == 0) {
        if (it->second.second.accepted_in == number_) uncertain_[it->first] = it->second.second;
        it = conn.ending.erase(it);
        continue;
      }
      v1::WorkerFrame again;
      *again.mutable_run_finished() = it->second.first;
      Send(conn, again);
      ++it;
    }
    conn.granted = conn.assigned = 0;
    conn.reactions = 0;
    conn.heartbeat = 0;
    Grant(conn, Uniform(0, kCapacity - HeldCount(conn)));
  }

  void Reconnect(Conn& conn) {
    conn.context->TryCancel();
    v1::GatewayFrame ignored;
    while (conn.stream->Read(&ignored)) {
    }
    conn.stream->Finish().IgnoreError();
    Connect(conn);
    // The orchestrator has let go of the old stream (its assigned runs queued again) once it
    // counts kConns streams again: each answer is a round trip, this waits on its state.
    auto deadline = std::chrono::steady_clock::now() + kLimit;
    while (Metric("baton_workers_connected") != kConns) {
      if (std::chrono::steady_clock::now() > deadline) return Fail("the old stream never closed");
    }
    for (const auto& [run_id, held] : std::exchange(uncertain_, {})) {
      std::vector<v1::Run> runs = stack_.Runs(held.chat_id);
      const v1::Run& last = runs.back();
      if (last.run_id() == run_id &&
          (last.state() == v1::RUN_STATE_QUEUED || last.state() == v1::RUN_STATE_ASSIGNED)) {
        Chat& chat = chats_[held.chat_id];
        chat.live = true;  // its end was never read: it runs again
        chat.attempt = last.attempt();
        released_retryable_.erase(run_id);
        absl::StrAppend(&trace_, "[", run_id, " runs again] ");
      }
    }
  }

  void SendReactions() {
    for (auto& conn : conns_) {
      if (conn->reactions > 0) Grant(*conn, std::exchange(conn->reactions, 0));
    }
  }

  // Candidates for an operation: (conn, run id) of held runs matching `pick`.
  std::vector<std::pair<Conn*, std::string>> HeldWhere(
      const std::function<bool(const Held&)>& pick) {
    std::vector<std::pair<Conn*, std::string>> out;
    for (auto& conn : conns_) {
      for (const auto& [id, held] : conn->runs) {
        if (pick(held)) out.emplace_back(conn.get(), id);
      }
    }
    return out;
  }

  std::vector<std::string> LiveChats() const {
    std::vector<std::string> out;
    for (const auto& [id, chat] : chats_) {
      if (chat.live) out.push_back(id);
    }
    return out;
  }

  void Operate() {
    auto unaccepted = HeldWhere([](const Held& h) { return !h.accepted; });
    auto accepted = HeldWhere([](const Held& h) { return h.accepted; });
    auto asked = HeldWhere([](const Held& h) { return h.accepted && h.cancel_requested; });
    std::vector<std::string> live = LiveChats();
    std::vector<Conn*> roomy;
    for (auto& conn : conns_) {
      if (HeldCount(*conn) + Outstanding(*conn) + conn->reactions < kCapacity)
        roomy.push_back(conn.get());
    }
    // Weighted choice among what is possible now.
    std::vector<std::pair<std::string, int>> choices;
    if (static_cast<int>(live.size()) < kMaxLiveChats) choices.emplace_back("create", 4);
    if (!roomy.empty()) choices.emplace_back("grant", 1);
    if (!unaccepted.empty()) choices.emplace_back("accept", 6);
    if (!live.empty()) choices.emplace_back("cancel", 2);
    if (!accepted.empty()) choices.emplace_back("fail", 2);
    if (!accepted.empty()) choices.emplace_back("exit", 2);
    if (!asked.empty()) choices.emplace_back("finish-cancelled", 3);
    choices.emplace_back("reconnect", 1);
    int total = 0;
    for (const auto& c : choices) total += c.second;
    int roll = Uniform(0, total - 1);
    std::string op;
    for (const auto& c : choices) {
      if (roll < c.second) {
        op = c.first;
        break;
      }
      roll -= c.second;
    }
    ++counts_[op];
    absl::StrAppend(&trace_, op, " ");

    if (op == "create") {
      std::string chat_id = absl::StrCat("r", next_chat_++);
      grpc::ClientContext context;
      v1::CreateSessionRequest request;
      request.set_chat_id(chat_id);
      request.set_agent("chat");
      request.set_trigger(v1::TRIGGER_PRELOAD);
      v1::CreateSessionResponse response;
      grpc::Status status = stack_.sessions().CreateSession(&context, request, &response);
      if (!status.ok()) return Fail(absl::StrCat("CreateSession: ", status.error_message()));
      chats_[chat_id] = Chat{};
      absl::StrAppend(&trace_, "(", chat_id, ") ");
    } else if (op == "grant") {
      Conn& conn = *roomy[Uniform(0, static_cast<int>(roomy.size()) - 1)];
      Grant(conn, 1);
      absl::StrAppend(&trace_, "(", conn.worker_id, ") ");
    } else if (op == "accept") {
      auto [conn, run_id] = unaccepted[Uniform(0, static_cast<int>(unaccepted.size()) - 1)];
      Held& held = conn->runs[run_id];
      v1::WorkerFrame frame;
      frame.mutable_run_accepted()->set_run_id(run_id);
      frame.mutable_run_accepted()->set_lease_token(held.token);
      Send(*conn, frame);
      held.accepted = true;
      held.accepted_in = number_;
      absl::StrAppend(&trace_, "(", run_id, " of ", held.chat_id, ") ");
    } else if (op == "cancel") {
      const std::string& chat_id = live[Uniform(0, static_cast<int>(live.size()) - 1)];
      grpc::ClientContext context;
      v1::CancelRunRequest request;
      request.set_chat_id(chat_id);
      v1::Run run;
      grpc::Status status = stack_.sessions().CancelRun(&context, request, &run);
      absl::StrAppend(&trace_, "(", chat_id, ": ", run.run_id(), " ",
                      v1::RunState_Name(run.state()), ") ");
      if (!status.ok()) {
        return Fail(
            absl::StrCat("CancelRun(", chat_id, ") of a live chat: ", status.error_message()));
      }
      if (run.state() == v1::RUN_STATE_CANCELLED) {
        chats_[chat_id].live = false;             // queued or not accepted yet: it ended there
        cancelled_at_once_.insert(run.run_id());  // its AssignRun may still be on its way
      } else if (run.state() == v1::RUN_STATE_RUNNING) {
        // Its worker is told; the run ends when the worker says so. A run this side already
        // ended as a retryable failure (in this burst) ends for good: the cancel wins.
        if (released_retryable_.count(run.run_id()) > 0) chats_[chat_id].live = false;
        cancelled_runs_.insert(run.run_id());
      } else {
        return Fail(absl::StrCat("CancelRun(", chat_id, ") left the run ", run.run_id(),
                                 " in state ", v1::RunState_Name(run.state())));
      }
    } else if (op == "fail" || op == "exit" || op == "finish-cancelled") {
      auto& from = op == "finish-cancelled" ? asked : accepted;
      auto [conn, run_id] = from[Uniform(0, static_cast<int>(from.size()) - 1)];
      Held held = conn->runs[run_id];
      bool retryable = op == "fail" && Uniform(0, 2) > 0;
      v1::WorkerFrame frame;
      v1::RunFinished& finished = *frame.mutable_run_finished();
      finished.set_run_id(run_id);
      finished.set_lease_token(held.token);
      finished.set_end(op == "fail"   ? v1::RUN_END_FAILED
                       : op == "exit" ? v1::RUN_END_EXITED
                                      : v1::RUN_END_CANCELLED);
      finished.set_retryable(retryable);
      finished.set_reason(op);
      Send(*conn, frame);
      conn->ending[run_id] = {finished, held};
      absl::StrAppend(
          &trace_, "(", run_id, " of ", held.chat_id, " attempt ", held.attempt,
          retryable ? ", retryable" : "",
          held.cancel_requested || cancelled_runs_.count(run_id) > 0 ? ", cancelled" : "", ") ");
      conn->runs.erase(run_id);
      if (Uniform(0, 3) > 0) Grant(*conn, 1);  // as a worker does when a run ends, mostly
      Chat& chat = chats_[held.chat_id];
      if (!chat.live || chat.attempt != held.attempt) return;  // cancelled meanwhile
      bool cancelled = held.cancel_requested || cancelled_runs_.count(run_id) > 0;
      if (op == "fail" && retryable && !cancelled && held.attempt < 5) {
        chat.attempt = held.attempt + 1;  // attempt + 1, queued at once
        released_retryable_.insert(run_id);
      } else {
        chat.live = false;
      }
    } else if (op == "reconnect") {
      Conn& conn = *conns_[Uniform(0, kConns - 1)];
      absl::StrAppend(&trace_, "(", conn.worker_id, ") ");
      Reconnect(conn);
    }
  }

  void OnFrame(Conn& conn, const v1::GatewayFrame& frame) {
    switch (frame.frame_case()) {
      case v1::GatewayFrame::kAssignRun: {
        const v1::AssignRun& assign = frame.assign_run();
        if (conn.assigned >= conn.granted) {
          return Fail(absl::StrCat(conn.worker_id, " was assigned ", assign.run_id(),
                                   " beyond its credit (", conn.granted, " granted, ",
                                   conn.assigned, " assigned)"));
        }
        ++conn.assigned;
        auto chat = chats_.find(assign.chat_id());
        if (cancelled_at_once_.count(assign.run_id()) > 0) {
          // Assigned, then cancelled before this side saw it: a LeaseRevoked follows.
        } else if (chat == chats_.end() || !chat->second.live) {
          return Fail(
              absl::StrCat(assign.run_id(), " of a chat that is not live: ", assign.chat_id()));
        }
        if (assign.attempt() != chat->second.attempt) {
          return Fail(absl::StrCat(assign.run_id(), " is attempt ", assign.attempt(), ", expected ",
                                   chat->second.attempt));
        }
        for (auto& other : conns_) {
          for (const auto& [id, held] : other->runs) {
            if (held.chat_id == assign.chat_id() && chats_[held.chat_id].live) {
              return Fail(absl::StrCat(assign.chat_id(), " assigned ", assign.run_id(), " while ",
                                       other->worker_id, " holds ", id));
            }
          }
        }
        conn.runs[assign.run_id()] = Held{.chat_id = assign.chat_id(),
                                          .token = assign.lease_token(),
                                          .attempt = assign.attempt()};
        break;
      }
      case v1::GatewayFrame::kAck:
        if (frame.ack().run_ended()) conn.ending.erase(frame.ack().run_id());
        break;
      case v1::GatewayFrame::kLeaseRevoked: {
        const v1::LeaseRevoked& revoked = frame.lease_revoked();
        auto end = conn.ending.find(revoked.run_id());
        if (end != conn.ending.end() && end->second.first.lease_token() == revoked.lease_token()) {
          conn.ending.erase(end);
        }
        auto it = conn.runs.find(revoked.run_id());
        if (it == conn.runs.end() || it->second.token != revoked.lease_token()) break;  // stale
        const Chat& chat = chats_[it->second.chat_id];
        if (chat.live && chat.attempt == it->second.attempt) {
          return Fail(absl::StrCat(revoked.run_id(), " revoked (", revoked.reason(),
                                   ") though nothing ended it"));
        }
        conn.runs.erase(it);
        ++conn.reactions;
        break;
      }
      case v1::GatewayFrame::kCancelRun: {
        auto it = conn.runs.find(frame.cancel_run().run_id());
        if (it != conn.runs.end()) it->second.cancel_requested = true;
        break;
      }
      default:
        break;
    }
  }

  // Every stream in turn, twice round: a Heartbeat, then its frames up to the HeartbeatAck.
  // The first round has the orchestrator process everything this side sent; effects on other
  // streams (a retry assigned elsewhere) are queued by then, and the second round collects them.
  void Settle() {
    for (int round = 0; round < 2 && ok_; ++round) {
      for (auto& conn : conns_) {
        v1::WorkerFrame beat;
        beat.mutable_heartbeat()->set_seq(++conn->heartbeat);
        Send(*conn, beat);
        v1::GatewayFrame frame;
        while (ok_) {
          if (!conn->stream->Read(&frame))
            return Fail(absl::StrCat(conn->worker_id, " stream ended"));
          if (frame.has_heartbeat_ack() && frame.heartbeat_ack().seq() == conn->heartbeat) break;
          OnFrame(*conn, frame);
        }
      }
    }
    released_retryable_.clear();
    cancelled_runs_.clear();
  }

  int64_t Metric(const std::string& name) {
    std::string body;
    std::string url = absl::StrCat("http://", stack_.admin_address(), "/metrics");
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(
        curl_, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) {
          static_cast<std::string*>(out)->append(data, size * n);
          return size * n;
        });
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &body);
    if (curl_easy_perform(curl_) != CURLE_OK) return -1;
    size_t at = body.find(absl::StrCat("\n", name, " "));
    int64_t value = -1;
    if (at != std::string::npos) {
      size_t start = at + name.size() + 2;
      absl::SimpleAtoi(body.substr(start, body.find('\n', start) - start), &value);
    }
    return value;
  }

  void Check() {
    int64_t free = 0;
    int held_live = 0;
    for (auto& conn : conns_) {
      free += Outstanding(*conn);
      for (const auto& [id, held] : conn->runs) {
        const Chat& chat = chats_[held.chat_id];
        held_live += chat.live && chat.attempt == held.attempt ? 1 : 0;
      }
    }
    int live = static_cast<int>(LiveChats().size());
    int64_t orchestrator_free = Metric("baton_worker_slots_free");
    int64_t orchestrator_live = Metric("baton_runs_live");
    if (orchestrator_free != free) {
      return Fail(absl::StrCat("the orchestrator counts ", orchestrator_free,
                               " free slots, the streams granted ", free, " unused"));
    }
    if (orchestrator_live != live) {
      std::string chats;
      for (const auto& [id, chat] : chats_) {
        bool live_there = stack_.Get(id).state() == v1::SESSION_STATE_LIVE;
        if (live_there == chat.live) continue;
        absl::StrAppend(&chats, " ", id, " (", live_there ? "live" : "not live", " there; runs:");
        for (const v1::Run& run : stack_.Runs(id)) {
          absl::StrAppend(&chats, " ", run.run_id(), "/", run.attempt(), "/",
                          v1::RunState_Name(run.state()), "/", run.reason());
        }
        absl::StrAppend(&chats, ")");
      }
      return Fail(absl::StrCat("the orchestrator counts ", orchestrator_live,
                               " live runs, the model ", live, " live chats; they differ on",
                               chats));
    }
    if (live > held_live && free > 0) {
      return Fail(absl::StrCat(live - held_live, " runs wait in the queue while ", free,
                               " slots are free"));
    }
    if (unbound_ > 0) {
      Fail(absl::StrCat(unbound_, " accepted runs were not rebound after a reconnect"));
    }
  }

  Stack& stack_;
  std::mt19937_64 random_;
  CURL* curl_ = nullptr;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::map<std::string, Chat> chats_;
  std::set<std::string> released_retryable_;  // ended retryable in this burst
  std::set<std::string> cancelled_runs_;      // a cancel in this burst found them running
  std::set<std::string> cancelled_at_once_;   // a cancel ended them before any worker ran them
  std::map<std::string, Held> uncertain_;     // ended here; did the orchestrator ever run them?
  std::map<std::string, int> counts_;
  int next_chat_ = 0;
  int number_ = 0;
  int unbound_ = 0;
  bool ok_ = true;
  std::string trace_;
};

TEST(FaultsTest, SlotAccountingStaysExactUnderRandomSequences) {
  // Timers that never fire: every change is one this test made.
  auto stack = Stack::Start({.workers = 0,
                             .orchestrator_flags = {"--admin=127.0.0.1:0", "--heartbeat_ms=600000",
                                                    "--lease_ms=600000", "--accept_ms=600000"}});
  ASSERT_NE(stack, nullptr);
  uint64_t seed = 20261124;
  if (const char* env = std::getenv("BATON_FAULTS_SEED")) {
    ASSERT_TRUE(absl::SimpleAtoi(env, &seed));
  }
  SCOPED_TRACE(absl::StrCat("seed ", seed, " (set BATON_FAULTS_SEED to replay another)"));
  // A sanitizer build is some 6 times slower, more under load: it runs a fifth of the
  // sequences (the release build runs them all), so the test stays far from ctest's timeout.
#if defined(__SANITIZE_ADDRESS__)
  int sequences = 2000;
#else
  int sequences = 10000;
#endif
  if (const char* env = std::getenv("BATON_FAULTS_SEQUENCES")) {
    ASSERT_TRUE(absl::SimpleAtoi(env, &sequences));
  }
  SlotDriver driver(*stack, seed);
  for (int i = 0; i < sequences; ++i) {
    if (!driver.Sequence(i)) break;
  }
  // Every operation was drawn, many times over.
  std::map<std::string, int> counts = driver.counts();
  for (const char* op :
       {"create", "grant", "accept", "cancel", "fail", "exit", "finish-cancelled", "reconnect"}) {
    EXPECT_GT(counts[op], sequences / 200) << op;
  }
}

}  // namespace
}  // namespace baton::testing
