// Streams that stay open, through real processes (docs/faults.md, docs/security.md,
// docs/orchestrator.md): a worker that stops reading its Connect stream is noticed and closed
// (its queue in the orchestrator bounded, its run retried elsewhere); an idle following Read is
// never woken and holds no thread; a following Read opened with a chat token ends when the
// token expires and carries on, with no gap, under a renewed one; shutdown ends followers so
// that they read again.
#include <openssl/sha.h>

#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::HasSubstr;

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

// The value of an unlabelled metric on the orchestrator's /metrics; -1 when it is not there.
int64_t Metric(Stack& stack, const std::string& name) {
  long status = 0;
  std::string body = HttpGet(absl::StrCat("http://", stack.admin_address(), "/metrics"), &status);
  size_t at = body.find(absl::StrCat("\n", name, " "));
  if (at == std::string::npos) return -1;
  size_t start = at + name.size() + 2;
  int64_t value = -1;
  if (!absl::SimpleAtoi(body.substr(start, body.find('\n', start) - start), &value)) return -1;
  return value;
}

// Asks until the metric has `value` (each ask a round trip to the orchestrator: this waits on
// its state, not on a timer); false after the limit.
bool WaitForMetric(Stack& stack, const std::string& name, int64_t value) {
  auto deadline = std::chrono::steady_clock::now() + kLimit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Metric(stack, name) == value) return true;
  }
  ADD_FAILURE() << name << " never reached " << value << " (now " << Metric(stack, name) << ")";
  return false;
}

// VmRSS or Threads of a process, from /proc/<pid>/status.
int64_t ProcStatusField(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      int64_t value = -1;
      std::string number = line.substr(field.size() + 1);
      number.erase(0, number.find_first_not_of(" \t"));
      number = number.substr(0, number.find(' '));
      if (absl::SimpleAtoi(number, &value)) return value;
    }
  }
  return -1;
}

// A `stop` record padded to about `bytes` (a stop with no turn in flight does nothing, so the
// chat's next run can be handed all of them).
Json PaddedStop(size_t bytes) { return Json{{"kind", "stop"}, {"pad", std::string(bytes, 'p')}}; }

// A channel of its own (its own TCP connection), whose client does not grow its HTTP/2 receive
// window beyond the default: what the orchestrator sends and the test does not read stays in
// the orchestrator rather than in this process's buffers.
std::unique_ptr<v1::WorkerGateway::Stub> OwnGateway(Stack& stack) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return v1::WorkerGateway::NewStub(
      grpc::CreateCustomChannel(stack.address(), grpc::InsecureChannelCredentials(), args));
}

// Sends a Heartbeat renewing `run`'s lease every `period` until stopped or the stream fails, as
// a worker does; it reads nothing.
class Heartbeats {
 public:
  Heartbeats(RawWorker& raw, v1::AssignRun run, absl::Duration period) {
    thread_ = std::thread([this, &raw, run, period] {
      for (int64_t seq = 1; !stop_.WaitForNotificationWithTimeout(period); ++seq) {
        v1::WorkerFrame frame;
        frame.mutable_heartbeat()->set_seq(seq);
        v1::RunLease& lease = *frame.mutable_heartbeat()->add_runs();
        lease.set_run_id(run.run_id());
        lease.set_lease_token(run.lease_token());
        if (!raw.TrySend(frame)) return;
      }
    });
  }
  ~Heartbeats() { Stop(); }
  void Stop() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (thread_.joinable()) thread_.join();
  }

 private:
  absl::Notification stop_;
  std::thread thread_;
};

// A raw worker takes the chat's run, accepts it and then reads nothing more.
v1::AssignRun TakeRun(Stack& stack, RawWorker& raw, const std::string& chat_id) {
  stack.Create(chat_id, "chat", "preload");
  v1::AssignRun assign = raw.Next(v1::GatewayFrame::kAssignRun).assign_run();
  v1::WorkerFrame accepted;
  accepted.mutable_run_accepted()->set_run_id(assign.run_id());
  accepted.mutable_run_accepted()->set_lease_token(assign.lease_token());
  raw.Send(accepted);
  EXPECT_TRUE(stack.WaitForRunState(chat_id, v1::RUN_STATE_RUNNING));
  return assign;
}

// ---- a worker that stops reading ---------------------------------------------------------------

// A worker that heartbeats but never reads its stream again, while 60 records of 1 MB are
// appended to its chat. Deliveries wait in the store once half the bound (8 MiB here) is
// queued, so the orchestrator's memory stays far below what was appended; the writer's blocked
// write outlasts the silence limit (3 x 2 s) and the stream is closed and counted. The run
// keeps its lease until it runs out, and is then retried on a real worker, which answers.
TEST(StreamsTest, AWorkerThatStopsReadingIsClosedAndItsRunRetriedElsewhere) {
  auto stack = Stack::Start({.script = Script({Reply("Answered elsewhere.")}),
                             .workers = 0,
                             .orchestrator_flags = {"--admin=127.0.0.1:0", "--max_outbox_mb=8",
                                                    "--heartbeat_ms=2000", "--lease_ms=8000"}});
  ASSERT_NE(stack, nullptr);
  std::unique_ptr<v1::WorkerGateway::Stub> gateway = OwnGateway(*stack);
  RawWorker raw(*gateway, 1, "reads-nothing");
  v1::AssignRun assign = TakeRun(*stack, raw, "s1");
  Heartbeats heartbeats(raw, assign, absl::Milliseconds(100));

  pid_t orchestrator = stack->orchestrator().pid();
  [[maybe_unused]] int64_t rss_before = ProcStatusField(orchestrator, "VmRSS");
  constexpr int kAppends = 60;
  for (int i = 0; i < kAppends; ++i) stack->Append("s1", PaddedStop(1'000'000));
  [[maybe_unused]] int64_t rss_appended = ProcStatusField(orchestrator, "VmRSS");
  EXPECT_TRUE(WaitForFileContains(stack->Path("orchestrator.log"),
                                  "one write has been blocked for more than 6s"));
  EXPECT_TRUE(WaitForMetric(*stack, "baton_worker_streams_stalled_total", 1));
  [[maybe_unused]] int64_t rss_closed = ProcStatusField(orchestrator, "VmRSS");
#if !defined(__SANITIZE_ADDRESS__)  // ASan keeps freed memory in quarantine
  // 60 MB were appended and 4 MiB of them queued; the rest is what the allocator keeps of the
  // appends' own buffers. Unbounded, the queue held them all (VmRSS grew by about 90 MB here).
  EXPECT_LT(rss_appended - rss_before, 40 * 1024)
      << "VmRSS KiB " << rss_before << " -> " << rss_appended << " -> " << rss_closed;
  EXPECT_LT(rss_closed - rss_before, 40 * 1024)
      << "VmRSS KiB " << rss_before << " -> " << rss_appended << " -> " << rss_closed;
#endif
  // The orchestrator's side of the close is what the log line and the metric show. The test's
  // client is not asked to see it: under sanitizers, load and a parallel test, its Finish more
  // than once waited for the stream's 30 s deadline instead (cause not found; a real worker
  // notices missing heartbeat answers and dials again), and the retry then began too late.
  heartbeats.Stop();

  // The run was running: it stays the stalled worker's until its lease runs out, then attempt 2
  // goes to a worker that reads, with every record the chat holds, and answers the message.
  stack->AddWorker();
  int64_t in_seq = stack->SendText("s1", "u1", "Are you there?");
  EXPECT_EQ(in_seq, kAppends + 1);
  // Its assignment carries a quarter of the outbox bound of them; the rest follow as Deliver
  // frames as fast as it takes them (it reads no further ahead than it has handled), so it
  // accepts at once and heartbeats throughout. Decoding 60 MB of JSON takes a sanitizer build
  // on a loaded machine some 15 s: the limit is a hang guard, not a speed bound.
  std::vector<Json> out = stack->ReadUntil(
      "s1", 0,
      [](const std::vector<Json>& records) { return CountControl(records, "turn-complete") >= 1; },
      std::chrono::seconds(120));
  EXPECT_EQ(Text(out), "Answered elsewhere.");
  // Attempt 2 took the whole backlog and kept its lease (a worker whose heartbeat answers wait
  // behind the deliveries must not take its stream for dead). A run after it can only be the
  // chat's own suspension and resume: on a slow machine the idle agent suspends before the
  // test gets here.
  std::vector<v1::Run> runs = stack->Runs("s1");
  ASSERT_GE(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_LOST);
  EXPECT_EQ(runs[0].worker_id(), "reads-nothing");
  EXPECT_EQ(runs[1].attempt(), 2);
  EXPECT_NE(runs[1].worker_id(), "reads-nothing");
  for (size_t i = 1; i < runs.size(); ++i) {
    EXPECT_NE(runs[i].state(), v1::RUN_STATE_LOST) << runs[i].run_id() << " " << runs[i].reason();
  }
}

// A retry of a chat whose first attempt left 6 MB of records unanswered: its assignment carries
// no more of them than a quarter of the outbox bound (1 MiB here), so it is small to send and
// quick to accept; the rest follow as Deliver frames, in order, none missing, none twice.
TEST(StreamsTest, ARetryOfALongBacklogGetsPartOfItInTheAssignmentAndTheRestAsDeliveries) {
  auto stack = Stack::Start(
      {.workers = 0,
       .orchestrator_flags = {"--max_outbox_mb=4", "--heartbeat_ms=2000", "--lease_ms=1000"}});
  ASSERT_NE(stack, nullptr);
  std::unique_ptr<v1::WorkerGateway::Stub> gateway = OwnGateway(*stack);
  constexpr int kRecords = 12;
  {
    RawWorker first(*gateway, 1, "first");
    TakeRun(*stack, first, "b1");
    for (int i = 0; i < kRecords; ++i) stack->Append("b1", PaddedStop(500'000));
  }  // its stream ends; it never heartbeats, so its lease runs out and attempt 2 is queued
  ASSERT_TRUE(stack->WaitForRunState("b1", v1::RUN_STATE_QUEUED));

  RawWorker second(*gateway, 1, "second");
  v1::AssignRun assign = second.Next(v1::GatewayFrame::kAssignRun).assign_run();
  EXPECT_EQ(assign.attempt(), 2);
  EXPECT_TRUE(assign.continuation());
  EXPECT_FALSE(assign.more());
  std::vector<int64_t> seqs;
  size_t pending_bytes = 0;
  for (const v1::InRecord& r : assign.pending()) {
    seqs.push_back(r.seq());
    pending_bytes += r.body_json().size();
  }
  EXPECT_FALSE(seqs.empty());
  EXPECT_LE(pending_bytes, size_t{1} << 20);
  v1::WorkerFrame accepted;
  accepted.mutable_run_accepted()->set_run_id(assign.run_id());
  accepted.mutable_run_accepted()->set_lease_token(assign.lease_token());
  second.Send(accepted);
  while (seqs.empty() || seqs.back() < kRecords) {
    v1::GatewayFrame frame = second.Next(v1::GatewayFrame::kDeliver);
    if (!frame.has_deliver()) break;  // the stream ended (Next said so)
    EXPECT_EQ(frame.deliver().run_id(), assign.run_id());
    seqs.push_back(frame.deliver().record().seq());
  }
  std::vector<int64_t> all(kRecords);
  std::iota(all.begin(), all.end(), 1);
  EXPECT_EQ(seqs, all);
}

// The same backlog, but the first attempt had started an answer (output after the snapshot): the
// retry's recovery pairs that answer with its message, so it needs every record at boot, and the
// whole backlog rides in the assignment (in AssignMore frames past the frame bound).
TEST(StreamsTest, ARetryWithAnAnswerToRecoverGetsItsWholeBacklogInTheAssignment) {
  auto stack = Stack::Start(
      {.workers = 0,
       .orchestrator_flags = {"--max_outbox_mb=4", "--heartbeat_ms=2000", "--lease_ms=1000"}});
  ASSERT_NE(stack, nullptr);
  std::unique_ptr<v1::WorkerGateway::Stub> gateway = OwnGateway(*stack);
  constexpr int kRecords = 12;
  {
    RawWorker first(*gateway, 1, "first");
    v1::AssignRun run = TakeRun(*stack, first, "b2");
    v1::WorkerFrame output;
    output.mutable_run_output()->set_run_id(run.run_id());
    output.mutable_run_output()->set_lease_token(run.lease_token());
    v1::OutRecord& start = *output.mutable_run_output()->add_records();
    start.set_seq(run.out_seq() + 1);
    start.set_chunk_json(R"({"type":"start","messageId":"m1"})");
    first.Send(output);
    first.Next(v1::GatewayFrame::kAck);  // stored
    for (int i = 0; i < kRecords; ++i) stack->Append("b2", PaddedStop(500'000));
  }
  ASSERT_TRUE(stack->WaitForRunState("b2", v1::RUN_STATE_QUEUED));

  RawWorker second(*gateway, 1, "second");
  v1::GatewayFrame frame = second.Next(v1::GatewayFrame::kAssignRun);
  const v1::AssignRun& assign = frame.assign_run();
  EXPECT_TRUE(assign.continuation());
  std::vector<int64_t> seqs;
  int tail = assign.out_tail_size();
  for (const v1::InRecord& r : assign.pending()) seqs.push_back(r.seq());
  for (bool more = assign.more(); more;) {
    v1::GatewayFrame next = second.Next(v1::GatewayFrame::kAssignMore);
    if (!next.has_assign_more()) break;  // the stream ended (Next said so)
    for (const v1::InRecord& r : next.assign_more().pending()) seqs.push_back(r.seq());
    tail += next.assign_more().out_tail_size();
    more = next.assign_more().more();
  }
  EXPECT_EQ(tail, 1);
  std::vector<int64_t> all(kRecords);
  std::iota(all.begin(), all.end(), 1);
  EXPECT_EQ(seqs, all);
}

// A worker that writes as fast as it can (heartbeats) and reads nothing: the answers it is owed
// cannot wait in the store, and once they fill half the bound (1 MiB here) the stream is closed
// at once, long before the silence limit (15 s). A run it was assigned and had not accepted goes
// back to the queue at once and runs on the next worker.
TEST(StreamsTest, AWorkerThatWritesButNeverReadsIsClosedAtTheOutboxBound) {
  auto stack = Stack::Start(
      {.workers = 0,
       .orchestrator_flags = {"--admin=127.0.0.1:0", "--max_outbox_mb=1", "--accept_ms=600000"}});
  ASSERT_NE(stack, nullptr);
  std::unique_ptr<v1::WorkerGateway::Stub> gateway = OwnGateway(*stack);
  RawWorker raw(*gateway, 1, "flood");
  stack->Create("q1", "chat", "preload");  // assigned to it, never read, never accepted
  ASSERT_TRUE(stack->WaitForRunState("q1", v1::RUN_STATE_ASSIGNED));
  v1::WorkerFrame heartbeat;
  int64_t sent = 0;
  for (; sent < 2'000'000; ++sent) {
    heartbeat.mutable_heartbeat()->set_seq(sent + 1);
    if (!raw.TrySend(heartbeat)) break;
    if (sent % 5000 == 4999 && Metric(*stack, "baton_worker_streams_stalled_total") == 1) break;
  }
  EXPECT_TRUE(WaitForMetric(*stack, "baton_worker_streams_stalled_total", 1));
  EXPECT_TRUE(WaitForFileContains(stack->Path("orchestrator.log"),
                                  "bytes of acknowledgements and answers wait, over half the "
                                  "bound of 1048576"));
  EXPECT_EQ(raw.Finish().error_code(), grpc::StatusCode::CANCELLED);
  stack->AddWorker();
  ASSERT_TRUE(stack->WaitForRunState("q1", v1::RUN_STATE_RUNNING));
  std::vector<v1::Run> runs = stack->Runs("q1");
  ASSERT_EQ(runs.size(), 1u);  // the same run, queued again: not a retry
  EXPECT_EQ(runs[0].attempt(), 1);
  EXPECT_NE(runs[0].worker_id(), "flood");
}

// ---- idle followers ----------------------------------------------------------------------------

// A following Read on a thread of the test (the client side may hold threads; the server holds
// none). Records until the stream ends, and its status.
class Reader {
 public:
  Reader(v1::Sessions::Stub& sessions, const std::string& chat_id, int64_t after_seq = 0) {
    context_.set_deadline(std::chrono::system_clock::now() + 2 * kLimit);
    v1::ReadRequest request;
    request.set_chat_id(chat_id);
    request.set_after_seq(after_seq);
    request.set_follow(true);
    thread_ = std::thread([this, &sessions, request] {
      auto reader = sessions.Read(&context_, request);
      v1::ReadResponse response;
      while (reader->Read(&response)) {
        Json record = RecordJson(response.record());
        absl::MutexLock lock(&mu_);
        records_.push_back(std::move(record));
      }
      grpc::Status status = reader->Finish();
      absl::MutexLock lock(&mu_);
      status_ = status;
      ended_ = true;
    });
  }
  ~Reader() {
    context_.TryCancel();
    thread_.join();
  }
  void Cancel() { context_.TryCancel(); }
  // Waits until `count` turn-completes were read.
  bool WaitForTurns(int count) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ended_ || CountControl(records_, "turn-complete") >= count;
    };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::FromChrono(kLimit));
    return CountControl(records_, "turn-complete") >= count;
  }
  // Waits for the stream's end; its status.
  grpc::Status WaitForEnd() {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&ended_), absl::FromChrono(kLimit))) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the test's limit passed");
    }
    return status_;
  }
  std::vector<Json> records() const {
    absl::MutexLock lock(&mu_);
    return records_;
  }

 private:
  grpc::ClientContext context_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<Json> records_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

// 50 followers on 10 idle chats. While they wait, the orchestrator does other work (a worker's
// heartbeats every 300 ms, another worker closed for silence after 900 ms): no follower is woken
// (baton_read_wakeups_total does not move) and the orchestrator has no thread per follower. New
// output wakes the followers of its chat only as needed, and they get it; closing a chat ends
// its followers; cancelled followers free their slots.
TEST(StreamsTest, IdleFollowersAreNeverWokenAndHoldNoThread) {
  auto stack = Stack::Start({.script = Script({Reply("Woken once.")}),
                             .orchestrator_flags = {"--admin=127.0.0.1:0", "--heartbeat_ms=300"}});
  ASSERT_NE(stack, nullptr);
  constexpr int kChats = 10;
  constexpr int kPerChat = 5;
  constexpr int kFollowers = kChats * kPerChat;
  for (int c = 0; c < kChats; ++c) stack->Create(absl::StrCat("f", c), "chat", "preload");
  ASSERT_TRUE(stack->hooks().WaitFor("onPreload", kChats));
  pid_t orchestrator = stack->orchestrator().pid();
  int64_t threads_before = ProcStatusField(orchestrator, "Threads");

  std::vector<std::unique_ptr<Reader>> readers;
  for (int c = 0; c < kChats; ++c) {
    for (int i = 0; i < kPerChat; ++i) {
      readers.push_back(std::make_unique<Reader>(stack->sessions(), absl::StrCat("f", c)));
    }
  }
  ASSERT_TRUE(WaitForMetric(*stack, "baton_readers_waiting", kFollowers));
  int64_t wakeups = Metric(*stack, "baton_read_wakeups_total");
  int64_t threads_waiting = ProcStatusField(orchestrator, "Threads");

  // Time passes on the orchestrator's timers: a worker that says nothing is closed for silence.
  {
    RawWorker silent(stack->gateway(), 0, "silent");
    ASSERT_TRUE(WaitForFileContains(stack->Path("orchestrator.log"), "worker silent"));
  }
  EXPECT_EQ(Metric(*stack, "baton_read_wakeups_total"), wakeups);
  EXPECT_EQ(Metric(*stack, "baton_readers_waiting"), kFollowers);
  EXPECT_EQ(Metric(*stack, "baton_readers"), kFollowers);
  // gRPC may add a few threads of its own; a thread per follower would add 50.
  EXPECT_LT(threads_waiting - threads_before, kFollowers / 5)
      << "threads " << threads_before << " -> " << threads_waiting;

  // Output for one chat reaches its five followers.
  stack->SendText("f0", "u1", "Wake up.");
  for (int i = 0; i < kPerChat; ++i) {
    ASSERT_TRUE(readers[i]->WaitForTurns(1));
    EXPECT_EQ(Text(readers[i]->records()), "Woken once.");
  }
  EXPECT_GE(Metric(*stack, "baton_read_wakeups_total"), wakeups + 1);
  EXPECT_TRUE(WaitForMetric(*stack, "baton_readers_waiting", kFollowers));

  // Closing a chat ends its followers, with OK, once they have every record.
  v1::CloseRequest close;
  close.set_chat_id("f1");
  v1::Session closed;
  grpc::ClientContext context;
  ASSERT_TRUE(stack->sessions().Close(&context, close, &closed).ok());
  for (int i = kPerChat; i < 2 * kPerChat; ++i) EXPECT_TRUE(readers[i]->WaitForEnd().ok());

  // Followers whose clients went away free their slots.
  for (auto& reader : readers) reader->Cancel();
  EXPECT_TRUE(WaitForMetric(*stack, "baton_readers", 0));
  EXPECT_TRUE(WaitForMetric(*stack, "baton_readers_waiting", 0));
}

// SIGTERM ends a following Read with UNAVAILABLE, which tells its client to read again from its
// last seq (an OK would look like the chat's end).
TEST(StreamsTest, ShutdownEndsFollowersWithUnavailable) {
  auto stack = Stack::Start({.script = Script({}), .orchestrator_flags = {"--admin=127.0.0.1:0"}});
  ASSERT_NE(stack, nullptr);
  stack->Create("t1", "chat", "preload");
  Reader reader(stack->sessions(), "t1");
  ASSERT_TRUE(WaitForMetric(*stack, "baton_readers_waiting", 1));
  stack->orchestrator().Signal(SIGTERM);
  grpc::Status status = reader.WaitForEnd();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("read again from the last seq"));
}

// A Read whose request does not parse still says which field is wrong.
TEST(StreamsTest, AReadRequestThatDoesNotParseSaysWhy) {
  auto stack = Stack::Start({.script = Script({})});
  ASSERT_NE(stack, nullptr);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::ReadRequest request;
  request.set_chat_id("caf\xe9");
  auto reader = stack->sessions().Read(&context, request);
  v1::ReadResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("baton.v1.ReadRequest.chat_id"));
}

// ---- a chat token's expiry on an open Read -----------------------------------------------------

constexpr char kWorkerToken[] = "wt-streams-worker-secret";
constexpr char kAppToken[] = "at-streams-app-secret";

std::string Sha256Hex(const std::string& token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

// A browser follows its chat with a chat token valid for 2 s. The stream ends with
// UNAUTHENTICATED "chat token expired" when it runs out, though the chat goes on; the app
// renews the token (CreateSession again) and the browser reads on from its last seq: every
// record once, in order, the answer written while it had no stream included.
TEST(StreamsTest, AFollowingReadEndsAtItsChatTokensExpiryAndResumesWithARenewedOne) {
  std::string auth_path = absl::StrCat(::testing::TempDir(), "streams-auth-", getpid(), ".json");
  std::ofstream(auth_path) << Json{
      {"tokens",
       {{{"name", "fleet"}, {"sha256", Sha256Hex(kWorkerToken)}, {"scopes", {"worker"}}},
        {{"name", "app"},
         {"sha256", Sha256Hex(kAppToken)},
         {"scopes", {"sessions:create", "sessions:write", "sessions:read"}}}}},
      {"chat_token_key", "streams-test-chat-token-key-32-bytes!"},
      {"chat_token_ttl_s", 2}}.dump();
  auto stack = Stack::Start({.script = Script({Reply("Before expiry."), Reply("After renewal.")}),
                             .orchestrator_flags = {absl::StrCat("--auth=", auth_path)},
                             .env = {absl::StrCat("BATON_TOKEN=", kWorkerToken)},
                             .client = {.token = kAppToken}});
  ASSERT_NE(stack, nullptr);
  auto renew = [&]() {
    v1::CreateSessionRequest request;
    request.set_chat_id("e1");
    request.set_agent("chat");
    request.set_trigger(v1::TRIGGER_PRELOAD);
    v1::CreateSessionResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kLimit);
    EXPECT_TRUE(stack->sessions().CreateSession(&context, request, &response).ok());
    return response.chat_token();
  };
  std::string token = renew();
  ASSERT_FALSE(token.empty());
  auto browser = v1::Sessions::NewStub(stack->Channel({.token = token}));
  std::vector<Json> seen;
  {
    Reader first(*browser, "e1");
    stack->SendText("e1", "u1", "First.");
    grpc::Status status = first.WaitForEnd();  // the chat is open: only the expiry ends it
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(status.error_message(), "chat token expired");
    seen = first.records();
  }
  // Answered while no stream is open.
  stack->SendText("e1", "u2", "Second.");
  // Renewed as often as it takes (a loaded machine may outlast a 2 s token more than once).
  for (int streams = 0; streams < 20 && CountControl(seen, "turn-complete") < 2; ++streams) {
    auto renewed = v1::Sessions::NewStub(stack->Channel({.token = renew()}));
    Reader next(*renewed, "e1", seen.empty() ? 0 : SeqOf(seen.back()));
    next.WaitForTurns(2 - CountControl(seen, "turn-complete"));
    next.Cancel();
    next.WaitForEnd();
    for (Json& record : next.records()) seen.push_back(std::move(record));
  }
  ASSERT_EQ(CountControl(seen, "turn-complete"), 2);
  for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(SeqOf(seen[i]), static_cast<int64_t>(i + 1));
  EXPECT_EQ(Text(seen), "Before expiry.After renewal.");
}

}  // namespace
}  // namespace baton::testing
