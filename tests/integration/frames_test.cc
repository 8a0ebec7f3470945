// Frames and the worker's outbox through real processes (docs/protocol.md, Frames; docs/worker.md,
// Backpressure): baton-orchestrator on a SQLite file, baton-worker processes, fake-llm, real gRPC
// over loopback, with the frame bound set to its least (64 KiB) so that a chat of a few MiB is
// many frames.
//   - A chat whose snapshot and `.out` tail are larger than a whole gRPC message (the bound plus
//     one record) loses its worker and is continued by another, with its whole history.
//   - A worker's snapshot larger than a frame is stored whole: a hand-written worker gets it back
//     in an assignment of many frames.
//   - A worker whose orchestrator stops acknowledging (one written in this test) keeps its
//     unacknowledged output within its bound and pauses the model stream; once acks come again
//     the answer completes whole.
//   - After a first message of 500 KB, each turn's snapshot is a small delta, and a continuation
//     boots from what the orchestrator assembled from them.
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/protocol/wire.h"
#include "tests/integration/stack.h"
#include "tools/fake-llm/script.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::HasSubstr;

constexpr int kBound = 64 << 10;  // the least frame bound
const std::string kBoundFlag = absl::StrCat("--max_frame_bytes=", kBound);

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

// `bytes` of ASCII text that starts with `mark` (so a test can find it in a request).
std::string Filler(const std::string& mark, size_t bytes) {
  std::string text = mark + " ";
  while (text.size() < bytes) absl::StrAppend(&text, mark, text.size(), " ");
  text.resize(bytes);
  return text;
}

// An answer streamed as `chunks` text deltas of `bytes` each.
std::vector<std::string> Chunks(const std::string& mark, int chunks, size_t bytes) {
  std::vector<std::string> out;
  for (int i = 0; i < chunks; ++i) out.push_back(Filler(absl::StrCat(mark, i), bytes));
  return out;
}

std::string Joined(const std::vector<std::string>& chunks) {
  std::string text;
  for (const std::string& c : chunks) text += c;
  return text;
}

// A reply that streams `chunks` and then stalls for ten minutes after the first `sent` of them:
// a turn in flight for as long as the test needs (fake-llm's `split_at`, at the byte offset
// fake-llm's own renderer gives).
Json StallingReply(const std::vector<std::string>& chunks, int sent, int64_t order) {
  Json reply = {{"id", "msg_stalls"}, {"text_chunks", chunks}};
  size_t offset = 0;
  int deltas = 0;
  for (const Json& event : fakellm::ReplyEvents(reply, fakellm::WireFormat::kAnthropic, order)) {
    offset += fakellm::RenderEvent(event, fakellm::WireFormat::kAnthropic).size();
    if (StringField(event, "type") == "content_block_delta" && ++deltas == sent) break;
  }
  return Json{{"reply", reply}, {"split_at", Json::array({offset})}, {"delay_ms", 600000}};
}

// Sizes: a snapshot and a tail each larger than what gRPC takes in one message at the bound.
constexpr size_t kFirstMessageBytes = 900 << 10;
const size_t kMessageLimit = GrpcMessageLimit(kBound);

// A chat whose snapshot (its first message and answer) and `.out` tail (the answer its worker
// was streaming when it was killed) are each larger than a whole gRPC message at the bound: the
// worker sends the snapshot in pieces, the orchestrator assigns the retry in many frames, the
// new worker gathers them, retracts the cut answer and answers the turn again with the whole
// history in its model request.
TEST(FramesTest, AChatLargerThanAMessageIsContinuedWithItsWholeHistory) {
  const std::string first = Filler("FIRST", kFirstMessageBytes);
  const std::vector<std::string> answer = Chunks("ANSWER", 20, 40000);
  const std::vector<std::string> cut = Chunks("CUT", 40, 50000);
  constexpr int kSentBeforeTheKill = 30;
  ASSERT_GT(first.size() + Joined(answer).size(), kMessageLimit);
  ASSERT_GT(kSentBeforeTheKill * cut[0].size(), kMessageLimit);
  // Heartbeats every 2 s: the retry's assignment (about 3 MB: the snapshot, the cut answer)
  // keeps the orchestrator busy under its lock for about a second in a sanitizer build on a
  // loaded machine, and it answers no heartbeat meanwhile. At 500 ms the worker's rule (two
  // intervals without a frame) dropped the stream during every attempt to assign the retry.
  auto stack =
      Stack::Start({.script = Script({Json{{"reply", {{"text_chunks", answer}}}},
                                      StallingReply(cut, kSentBeforeTheKill, 2),
                                      Json{{"reply", {{"text", "Both parts are in."}}}}}),
                    .orchestrator_flags = {kBoundFlag, "--lease_ms=6000", "--heartbeat_ms=2000"},
                    .worker_flags = {kBoundFlag}});
  ASSERT_NE(stack, nullptr);

  stack->Create("big", "chat", "submit-message", Json{{"message", UserMessage("u1", first)}});
  std::vector<Json> turn1 = stack->ReadTurns("big", 0);
  EXPECT_EQ(Text(turn1), Joined(answer));
  int64_t after_turn1 = SeqOf(turn1.back());

  stack->SendText("big", "u2", "And the second question?");
  const size_t streamed = kSentBeforeTheKill * cut[0].size();
  std::vector<Json> partial = stack->ReadUntil(
      "big", after_turn1, [&](const auto& records) { return Text(records).size() >= streamed; });
  ASSERT_EQ(Text(partial).size(), streamed);
  stack->worker(0).Signal(SIGKILL);
  stack->AddWorker();

  std::vector<Json> turn2 = stack->ReadTurns("big", after_turn1);
  EXPECT_EQ(CountControl(turn2, "retract"), 1);
  std::vector<Json> after_retract;
  bool retracted = false;
  for (const Json& r : turn2) {
    if (retracted) after_retract.push_back(r);
    retracted = retracted || StringField(r, "control") == "retract";
  }
  EXPECT_EQ(Text(after_retract), "Both parts are in.");
  std::vector<v1::Run> runs = stack->Runs("big");
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs.back().worker_id(), "worker-1");
  EXPECT_EQ(runs.back().attempt(), 2);

  // The retry's model call had the whole history: the first message and its answer (from the
  // snapshot) and the second question (pending), and not the cut answer (retracted).
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 3u);
  const std::string& body = requests[2].body;
  EXPECT_NE(body.find(first), std::string::npos);
  EXPECT_NE(body.find(Joined(answer)), std::string::npos);
  EXPECT_NE(body.find("And the second question?"), std::string::npos);
  EXPECT_EQ(body.find(cut[0]), std::string::npos);
}

// A worker's snapshot larger than a frame goes in pieces and is stored whole: the chat
// suspends, and the orchestrator hands the snapshot back, in frames within the bound, to a
// worker written by hand that takes the run resuming it.
TEST(FramesTest, AWorkersSnapshotLargerThanAFrameIsStoredWhole) {
  const std::string first = Filler("FIRST", kFirstMessageBytes);
  const std::vector<std::string> answer = Chunks("ANSWER", 20, 40000);
  auto stack = Stack::Start({.script = Script({Json{{"reply", {{"text_chunks", answer}}}}}),
                             .orchestrator_flags = {kBoundFlag},
                             .worker_flags = {kBoundFlag, "--idle_timeout_ms=200"}});
  ASSERT_NE(stack, nullptr);
  stack->Create("snap", "chat", "submit-message", Json{{"message", UserMessage("u1", first)}});
  EXPECT_EQ(Text(stack->ReadTurns("snap", 0)), Joined(answer));
  ASSERT_TRUE(stack->WaitForRunState("snap", v1::RUN_STATE_SUSPENDED));
  stack->worker(0).Signal(SIGKILL);  // the next run can only go to the hand-written worker
  RawWorker raw(stack->gateway(), 1);
  stack->SendText("snap", "u2", "Still there?");

  v1::GatewayFrame frame = raw.Next(v1::GatewayFrame::kAssignRun);
  v1::AssignRun assign = frame.assign_run();
  EXPECT_TRUE(assign.resume());
  EXPECT_LE(frame.ByteSizeLong(), size_t{kBound});
  int frames = 1;
  while (assign.more()) {
    frame = raw.Next(v1::GatewayFrame::kAssignMore);
    ASSERT_TRUE(frame.has_assign_more());
    EXPECT_LE(frame.ByteSizeLong(), size_t{kBound});
    ASSERT_TRUE(MergeAssignMore(assign, frame.assign_more()).ok());
    ++frames;
  }
  EXPECT_GT(frames, static_cast<int>(kMessageLimit / kBound));
  ASSERT_GT(assign.snapshot_json().size(), kMessageLimit);
  absl::StatusOr<Json> snapshot = DecodeSnapshot(assign.snapshot_json());
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_NE(assign.snapshot_json().find(first), std::string::npos);
  EXPECT_NE(assign.snapshot_json().find(Joined(answer)), std::string::npos);
}

// ---- an orchestrator written by hand ------------------------------------------------------------

// A WorkerGateway in the test process that hands the one worker's Connect stream to the test, so
// the test writes the orchestrator's frames (and decides when to acknowledge output).
class HandGateway final : public v1::WorkerGateway::Service {
 public:
  using Stream = grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>;

  HandGateway() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~HandGateway() override {
    Done();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

  grpc::Status Connect(grpc::ServerContext* context, Stream* stream) override {
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr || done_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy");
    stream_ = stream;
    // The stream stays valid until the test is done with it, even once the worker has gone
    // (its reads then fail): a test thread may still be reading it. Returning earlier freed the
    // stream under that thread.
    (void)context;
    auto over = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
    mu_.Await(absl::Condition(&over));
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
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// The next frame of `kind` the worker sends, skipping others.
v1::WorkerFrame NextFrom(HandGateway::Stream& stream, v1::WorkerFrame::FrameCase kind) {
  v1::WorkerFrame frame;
  while (stream.Read(&frame)) {
    if (frame.frame_case() == kind) return frame;
  }
  ADD_FAILURE() << "the worker's stream ended before a frame of kind " << kind;
  return frame;
}

// A worker on a hand-written gateway, welcomed (heartbeats a minute apart, so none needs an
// answer) and holding its first credit.
struct HandWorker {
  std::unique_ptr<Stack> stack;
  std::unique_ptr<HandGateway> gateway;
  HandGateway::Stream* stream = nullptr;
  int index = 0;
};

HandWorker StartHandWorker(Json script, std::vector<std::string> flags) {
  HandWorker w;
  w.stack = Stack::Start({.script = std::move(script), .workers = 0});
  if (w.stack == nullptr) return w;
  w.gateway = std::make_unique<HandGateway>();
  flags.push_back(absl::StrCat("--orchestrator=", w.gateway->address()));
  flags.push_back("--admin=127.0.0.1:0");
  w.index = w.stack->AddWorker(flags);
  w.stream = w.gateway->WaitForStream();
  if (w.stream == nullptr) return w;
  NextFrom(*w.stream, v1::WorkerFrame::kHello);
  v1::GatewayFrame welcome;
  welcome.mutable_welcome()->set_connection_id("c1");
  welcome.mutable_welcome()->set_protocol_version(v1::PROTOCOL_VERSION_1);
  welcome.mutable_welcome()->set_heartbeat_interval_ms(60000);
  EXPECT_TRUE(w.stream->Write(welcome));
  NextFrom(*w.stream, v1::WorkerFrame::kCredit);
  return w;
}

v1::GatewayFrame Assignment(const std::string& run_id, int64_t lease_token,
                            const std::string& text) {
  v1::GatewayFrame frame;
  v1::AssignRun& assign = *frame.mutable_assign_run();
  assign.set_run_id(run_id);
  assign.set_attempt(1);
  assign.set_lease_token(lease_token);
  assign.set_agent("chat");
  assign.set_chat_id("c_" + run_id);
  assign.set_trigger(v1::TRIGGER_SUBMIT_MESSAGE);
  assign.set_payload_json(DumpJson(Json{{"message", UserMessage("u1", text)}}));
  return frame;
}

// A gauge or counter of the worker's /metrics (-1 when absent).
int64_t WorkerMetric(Stack& stack, int worker, const std::string& name) {
  long status = 0;
  std::string body =
      HttpGet(absl::StrCat("http://", stack.worker_endpoint(worker, "admin"), "/metrics"), &status);
  size_t at = body.find(absl::StrCat("\n", name, " "));
  if (at == std::string::npos) return -1;
  size_t start = at + name.size() + 2;
  int64_t value = -1;
  if (!absl::SimpleAtoi(body.substr(start, body.find('\n', start) - start), &value)) return -1;
  return value;
}

// Reads the worker's frames on a thread of its own and keeps its `.out` records; acknowledges
// each RunOutput once told to. Its end kills the worker, which ends the stream.
class OutputReader {
 public:
  OutputReader(HandGateway::Stream& stream, Process& worker) : stream_(stream), worker_(worker) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~OutputReader() {
    worker_.Signal(SIGKILL);
    thread_.join();
  }

  // Acknowledges everything read so far, and from now on every RunOutput as it comes.
  void StartAcking() {
    std::lock_guard<std::mutex> lock(mu_);
    acking_ = true;
    AckLocked();
  }

  bool WaitUntil(const std::function<bool(const std::vector<Json>&)>& done) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kLimit, [&] { return done(records_) || ended_; }) && done(records_);
  }
  std::vector<Json> records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  void Loop() {
    v1::WorkerFrame frame;
    while (stream_.Read(&frame)) {
      if (!frame.has_run_output()) continue;
      std::lock_guard<std::mutex> lock(mu_);
      run_id_ = frame.run_output().run_id();
      for (const v1::OutRecord& r : frame.run_output().records()) {
        records_.push_back(RecordJson(r));
        last_seq_ = r.seq();
      }
      if (acking_) AckLocked();
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu_);
    ended_ = true;
    cv_.notify_all();
  }

  void AckLocked() {
    if (last_seq_ == 0) return;
    v1::GatewayFrame ack;
    ack.mutable_ack()->set_run_id(run_id_);
    ack.mutable_ack()->set_out_seq(last_seq_);
    stream_.Write(ack);  // writes happen under mu_: one at a time
  }

  HandGateway::Stream& stream_;
  Process& worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Json> records_;
  std::string run_id_;
  int64_t last_seq_ = 0;
  bool acking_ = false;
  bool ended_ = false;
  std::thread thread_;
};

// The bounded outbox: a worker whose orchestrator stops acknowledging keeps its unacknowledged
// output within its bound (per run, and for the whole worker) while a model streams a long
// answer: the run stops pulling the stream. Once acknowledgements come, the answer completes,
// whole and in order.
class BackpressureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BackpressureTest, AnOrchestratorThatStopsAcknowledgingPausesTheStream) {
  std::string text;
  for (int i = 0; i < 15000; ++i) absl::StrAppend(&text, "word", i, " ");
  HandWorker w = StartHandWorker(Script({Json{{"reply", {{"text", text}}}}}), {GetParam()});
  ASSERT_NE(w.stream, nullptr);
  ASSERT_TRUE(w.stream->Write(Assignment("run_1", 1, "Tell me everything.")));
  EXPECT_EQ(NextFrom(*w.stream, v1::WorkerFrame::kRunAccepted).run_accepted().run_id(), "run_1");
  OutputReader reader(*w.stream, w.stack->worker(w.index));

  // No acknowledgement comes: the run stops once its output reaches the bound.
  auto deadline = std::chrono::steady_clock::now() + kLimit;
  while (WorkerMetric(*w.stack, w.index, "baton_worker_runs_waiting_for_acks") != 1 &&
         std::chrono::steady_clock::now() < deadline) {
  }
  ASSERT_EQ(WorkerMetric(*w.stack, w.index, "baton_worker_runs_waiting_for_acks"), 1);
  int64_t unacked = WorkerMetric(*w.stack, w.index, "baton_worker_output_unacked_bytes");
  EXPECT_GE(unacked, kBound);
  // Past the bound by at most what one read of the model's response held.
  EXPECT_LE(unacked, kBound + 128 * 1024);
  std::vector<Json> so_far = reader.records();
  std::string streamed = Text(so_far);
  EXPECT_LT(streamed.size(), text.size() / 2);
  EXPECT_EQ(text.substr(0, streamed.size()), streamed);
  EXPECT_EQ(CountControl(so_far, "turn-complete"), 0);
  EXPECT_GE(WorkerMetric(*w.stack, w.index, "baton_worker_output_waits_total"), 1);

  reader.StartAcking();
  ASSERT_TRUE(reader.WaitUntil(
      [](const std::vector<Json>& records) { return CountControl(records, "turn-complete") > 0; }));
  std::vector<Json> all = reader.records();
  EXPECT_EQ(Text(all), text);
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(SeqOf(all[i]), static_cast<int64_t>(i) + 1);
  EXPECT_EQ(WorkerMetric(*w.stack, w.index, "baton_worker_runs_waiting_for_acks"), 0);
}

INSTANTIATE_TEST_SUITE_P(Bounds, BackpressureTest,
                         ::testing::Values(absl::StrCat("--max_unacked_run_bytes=", kBound),
                                           absl::StrCat("--max_unacked_bytes=", kBound)),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.index == 0 ? std::string("PerRun")
                                                  : std::string("PerWorker");
                         });

// An assignment in several frames that is cut short (another frame comes before its last
// AssignMore) is rejected, and its credit comes back; the next one is taken.
TEST(FramesTest, AnAssignmentCutShortIsRejected) {
  HandWorker w = StartHandWorker(Script({Json{{"reply", {{"text", "Fine."}}}}}), {});
  ASSERT_NE(w.stream, nullptr);
  v1::GatewayFrame head = Assignment("run_1", 1, "hi");
  head.mutable_assign_run()->set_more(true);
  ASSERT_TRUE(w.stream->Write(head));
  v1::GatewayFrame other;
  other.mutable_heartbeat_ack()->set_seq(1);
  ASSERT_TRUE(w.stream->Write(other));
  v1::RunRejected rejected = NextFrom(*w.stream, v1::WorkerFrame::kRunRejected).run_rejected();
  EXPECT_EQ(rejected.run_id(), "run_1");
  EXPECT_EQ(rejected.reason(), "incomplete-assignment");
  EXPECT_EQ(NextFrom(*w.stream, v1::WorkerFrame::kCredit).credit().runs(), 1);

  // The same run in two frames, whole this time.
  v1::GatewayFrame more;
  more.mutable_assign_more()->set_run_id("run_2");
  more.mutable_assign_more()->set_lease_token(2);
  head = Assignment("run_2", 2, "hi");
  head.mutable_assign_run()->set_more(true);
  ASSERT_TRUE(w.stream->Write(head));
  ASSERT_TRUE(w.stream->Write(more));
  EXPECT_EQ(NextFrom(*w.stream, v1::WorkerFrame::kRunAccepted).run_accepted().run_id(), "run_2");
  w.stack->worker(w.index).Signal(SIGKILL);
}

// ---- snapshots as deltas (docs/protocol.md, Snapshots) ------------------------------------------

// How many snapshots (whole or deltas) the worker has sent, once it has sent at least `count`
// (asked until then, or the limit).
int64_t WaitForSnapshots(Stack& stack, int worker, int64_t count) {
  auto deadline = std::chrono::steady_clock::now() + kLimit;
  int64_t sent = 0;
  do {
    sent = WorkerMetric(stack, worker, "baton_worker_snapshots_total{kind=\"whole\"}") +
           WorkerMetric(stack, worker, "baton_worker_snapshots_total{kind=\"delta\"}");
  } while (sent < count && std::chrono::steady_clock::now() < deadline);
  return sent;
}

// A snapshot write per turn grows with what the turn added, not with the chat (issue 15): after
// a first message of 500 KB, each of thirty turns sends the worker's snapshot as a delta of its
// message and answer, a few hundred bytes where the whole was half a megabyte. The orchestrator
// applies them and a continuation boots from what it assembled: the worker is killed, and the
// retry's model call holds the first message and every question.
TEST(FramesTest, SnapshotsAfterTheFirstTurnGrowWithTheTurnNotWithTheChat) {
  const std::string first = Filler("FIRST", 500 << 10);
  constexpr int kTurns = 30;
  auto stack = Stack::Start(
      {.script = Script({Json{{"reply", {{"text", "Noted."}}}, {"repeat", true}}}),
       .orchestrator_flags = {kBoundFlag, "--lease_ms=6000", "--heartbeat_ms=2000"},
       .worker_flags = {kBoundFlag, "--admin=127.0.0.1:0", "--idle_timeout_ms=600000"}});
  ASSERT_NE(stack, nullptr);
  stack->Create("long", "chat", "submit-message", Json{{"message", UserMessage("u1", first)}});
  int64_t after = SeqOf(stack->ReadTurns("long", 0).back());
  int64_t snapshots = WaitForSnapshots(*stack, 0, 1);
  ASSERT_GE(snapshots, 1);
  const int64_t whole = WorkerMetric(*stack, 0, "baton_worker_snapshot_bytes_total");
  EXPECT_GT(whole, int64_t{500 << 10});

  std::vector<int64_t> per_turn;  // bytes of snapshot sent by each turn after the first
  int64_t sent = whole;
  for (int t = 2; t <= kTurns; ++t) {
    SCOPED_TRACE(t);
    stack->SendText("long", absl::StrCat("u", t), absl::StrCat("Question ", t, "?"));
    after = SeqOf(stack->ReadTurns("long", after).back());
    snapshots = WaitForSnapshots(*stack, 0, snapshots + 1);
    int64_t now = WorkerMetric(*stack, 0, "baton_worker_snapshot_bytes_total");
    per_turn.push_back(now - sent);
    sent = now;
  }
  ASSERT_EQ(per_turn.size(), size_t{kTurns - 1});
  for (size_t i = 0; i < per_turn.size(); ++i) {
    SCOPED_TRACE(i + 2);
    EXPECT_GT(per_turn[i], 0);
    EXPECT_LT(per_turn[i], 16 << 10);
  }
  EXPECT_LT(per_turn.back(), 2 * per_turn.front()) << "turn 30 against turn 2";
  EXPECT_LT(sent - whole, int64_t{kTurns * (16 << 10)});
  EXPECT_GE(WorkerMetric(*stack, 0, "baton_worker_snapshots_total{kind=\"delta\"}"), kTurns - 1);
  EXPECT_EQ(WorkerMetric(*stack, 0, "baton_worker_snapshots_total{kind=\"whole\"}"), 1);

  // The stored snapshot is the whole chat: a retry on another worker, once the lease of the
  // killed one's run runs out, answers the next question with all of it in its model call.
  stack->worker(0).Signal(SIGKILL);
  stack->AddWorker();
  stack->SendText("long", "u31", "And the last one?");
  std::vector<Json> last = stack->ReadTurns("long", after);
  EXPECT_EQ(Text(last), "Noted.");
  std::vector<v1::Run> runs = stack->Runs("long");
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs.back().worker_id(), "worker-1");
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_FALSE(requests.empty());
  const std::string& body = requests.back().body;
  EXPECT_NE(body.find(first), std::string::npos);
  for (int t = 2; t <= kTurns; ++t) {
    EXPECT_NE(body.find(absl::StrCat("Question ", t, "?")), std::string::npos) << t;
  }
  EXPECT_NE(body.find("And the last one?"), std::string::npos);
}

}  // namespace
}  // namespace baton::testing
