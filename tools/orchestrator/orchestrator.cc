#include "tools/orchestrator/orchestrator.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/base/log.h"
#include "runtime/base/parse_errors.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/wire.h"
#include "tools/orchestrator/states.h"

namespace baton::orchestrator {

namespace v1 = ::baton::v1;

namespace {

int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

// The system's wall clock, the orchestrator's unless Options names another: the times it stores
// and sends are unix times, and some of its deadlines come from other hosts' clocks (a suspended
// run's resume deadline, a chat token's expiry), so it follows the system's clock as they do.
class WallClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // The orchestrator arms no timers; were one armed, it would fire at `deadline` as now seen.
  void Arm(asio::steady_timer& timer, absl::Time deadline) override {
    if (deadline == absl::InfiniteFuture()) {
      timer.expires_at(std::chrono::steady_clock::time_point::max());
      return;
    }
    timer.expires_after(
        absl::ToChronoNanoseconds(std::max(deadline - Now(), absl::ZeroDuration())));
  }
  void Disarm(asio::steady_timer&) override {}
};

// The one place a status becomes gRPC's: the services, and the Read streams as they end. The
// codes are the same numbers in both.
grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status Invalid(std::string what) {
  return absl::Status(absl::StatusCode::kInvalidArgument, std::move(what));
}

v1::Run RunProto(const RunRow& row) {
  v1::Run run;
  run.set_run_id(row.run_id);
  run.set_chat_id(row.chat_id);
  run.set_agent(row.agent);
  run.set_attempt(row.attempt);
  run.set_state(RunStateFromName(row.state));
  run.set_worker_id(row.worker_id);
  run.set_trigger(row.trigger);
  run.set_reason(row.reason);
  run.set_error(row.error);
  run.set_created_at_unix_ms(row.created_ms);
  run.set_started_at_unix_ms(row.started_ms);
  run.set_ended_at_unix_ms(row.ended_ms);
  run.set_cancel_requested(row.cancel_requested);
  return run;
}

// ---- limits (docs/bad-input.md) ----------------------------------------------------------------
// Every field a caller sends is checked against these before anything is looked up or stored,
// so no error quotes unbounded input and no oversized value reaches the store.

constexpr size_t kMaxChatIdBytes = 256;
constexpr size_t kMaxClientRecordIdBytes = 256;
constexpr size_t kMaxRunIdBytes = 64;  // run ids are the orchestrator's: "run_<n>"
constexpr size_t kMaxCloseReasonBytes = 1024;
constexpr size_t kMaxWorkerIdBytes = 256;
constexpr size_t kMaxBuildIdBytes = 256;
constexpr int kMaxAgentsPerWorker = 1000;
constexpr int kMaxLabels = 64;
constexpr size_t kMaxLabelKeyBytes = 128;
constexpr size_t kMaxLabelValueBytes = 1024;
constexpr int kMaxHeldRuns = 100000;

absl::Status CheckChatId(const std::string& chat_id) {
  if (chat_id.empty()) return Invalid("chat_id must be 1 to 256 bytes");
  if (chat_id.size() > kMaxChatIdBytes) {
    return Invalid(absl::StrCat("chat_id must be 1 to 256 bytes, not ", chat_id.size()));
  }
  return absl::OkStatus();
}

// "<what> must be at most <limit> bytes, not <size>" when `value` is longer than `limit`.
absl::Status CheckAtMost(std::string_view what, const std::string& value, size_t limit) {
  if (value.size() <= limit) return absl::OkStatus();
  return Invalid(absl::StrCat(absl::string_view(what.data(), what.size()), " must be at most ",
                              limit, " bytes, not ", value.size()));
}

absl::Status CheckCreateRequest(const v1::CreateSessionRequest& request) {
  if (absl::Status s = CheckChatId(request.chat_id()); !s.ok()) return s;
  if (request.agent().empty()) return Invalid("agent is required");
  if (absl::Status s = CheckAgentName(request.agent()); !s.ok()) return s;
  if (request.traceparent().size() > 55 ||
      (!request.traceparent().empty() && !ValidTraceparent(request.traceparent()))) {
    return Invalid("traceparent is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
  }
  if (request.payload_json().size() > kMaxInRecordBytes) {
    return absl::Status(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("payload_json of ", request.payload_json().size(),
                                     " bytes exceeds the limit of ", kMaxInRecordBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckHello(const v1::Hello& hello) {
  if (hello.worker_id().empty() || hello.worker_id().size() > kMaxWorkerIdBytes) {
    return Invalid(
        absl::StrCat("Hello needs a worker_id of 1 to 256 bytes, not ", hello.worker_id().size()));
  }
  if (absl::Status s = CheckAtMost("Hello.build_id", hello.build_id(), kMaxBuildIdBytes); !s.ok()) {
    return s;
  }
  if (hello.agents_size() > kMaxAgentsPerWorker) {
    return Invalid(absl::StrCat("Hello lists ", hello.agents_size(), " agents; the most is ",
                                kMaxAgentsPerWorker));
  }
  for (int i = 0; i < hello.agents_size(); ++i) {
    const v1::AgentInfo& agent = hello.agents(i);
    if (absl::Status s = CheckAgentName(agent.name()); !s.ok()) {
      return Invalid(absl::StrCat("Hello.agents[", i, "]: ", s.message()));
    }
    if (absl::Status s = CheckAgentInfo(agent); !s.ok()) {
      return Invalid(absl::StrCat("Hello.agents[", i, "].", s.message()));
    }
  }
  if (hello.labels_size() > kMaxLabels) {
    return Invalid(
        absl::StrCat("Hello has ", hello.labels_size(), " labels; the most is ", kMaxLabels));
  }
  for (const auto& [key, value] : hello.labels()) {
    if (key.empty() || key.size() > kMaxLabelKeyBytes || value.size() > kMaxLabelValueBytes) {
      return Invalid(absl::StrCat("Hello label ", Quoted(key),
                                  ": a key must be 1 to 128 bytes and a value at most 1024"));
    }
  }
  if (hello.held_runs_size() > kMaxHeldRuns) {
    return Invalid(absl::StrCat("Hello lists ", hello.held_runs_size(), " held runs; the most is ",
                                kMaxHeldRuns));
  }
  for (int i = 0; i < hello.held_runs_size(); ++i) {
    if (absl::Status s = CheckAtMost(absl::StrCat("Hello.held_runs[", i, "].run_id"),
                                     hello.held_runs(i).run_id(), kMaxRunIdBytes);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// The run id a worker frame names; null for frames about no run or about many (Heartbeat).
const std::string* FrameRunId(const v1::WorkerFrame& frame) {
  switch (frame.frame_case()) {
    case v1::WorkerFrame::kRunAccepted:
      return &frame.run_accepted().run_id();
    case v1::WorkerFrame::kRunRejected:
      return &frame.run_rejected().run_id();
    case v1::WorkerFrame::kRunOutput:
      return &frame.run_output().run_id();
    case v1::WorkerFrame::kSnapshot:
      return &frame.snapshot().run_id();
    case v1::WorkerFrame::kRunFinished:
      return &frame.run_finished().run_id();
    case v1::WorkerFrame::kDelivered:
      return &frame.delivered().run_id();
    default:
      return nullptr;
  }
}

// Why a worker frame about a run breaks a limit on its text ("" when it does not).
std::string FrameTextOverLimit(const v1::WorkerFrame& frame) {
  auto over = [](const char* what, const std::string& text, size_t limit) {
    return text.size() <= limit
               ? std::string()
               : absl::StrCat(what, " of ", text.size(), " bytes exceeds the limit of ", limit);
  };
  if (frame.has_run_rejected()) {
    return over("RunRejected.reason", frame.run_rejected().reason(), kMaxRunReasonBytes);
  }
  if (frame.has_run_finished()) {
    std::string why = over("RunFinished.reason", frame.run_finished().reason(), kMaxRunReasonBytes);
    if (why.empty()) {
      why = over("RunFinished.error", frame.run_finished().error(), kMaxRunErrorBytes);
    }
    return why;
  }
  return "";
}

// `.in` rows read from the store at a time when they go to a worker as it takes them.
constexpr size_t kInPage = 8;

// Assignments (all their frames) and deliveries can wait in the store while a worker stream's
// queue drains; the other frames (acknowledgements, heartbeat answers, revocations, cancels)
// cannot.
bool IsBulk(const v1::GatewayFrame& frame) {
  return frame.has_assign_run() || frame.has_assign_more() || frame.has_deliver();
}

// `.out` records a Read takes from the store at a time.
constexpr size_t kReadPage = 512;

absl::Status TokenExpired() {
  return absl::Status(absl::StatusCode::kUnauthenticated, "chat token expired");
}

absl::Status ShuttingDown() {
  return absl::Status(absl::StatusCode::kUnavailable,
                      "the orchestrator is shutting down; read again from the last seq you got");
}

// A Read refused before it started: it ends with its status.
class RefusedRead final : public grpc::ServerWriteReactor<v1::ReadResponse> {
 public:
  explicit RefusedRead(const absl::Status& status) { Finish(ToGrpc(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

// ---- state ------------------------------------------------------------------------------------

struct Orchestrator::Conn {
  std::string id;
  std::string worker_id;
  grpc::ServerContext* context = nullptr;
  std::set<std::string> agents;
  // What the worker announced about each agent (Hello.agents), and when: GetAgent serves the
  // latest announcement of a connected worker.
  std::map<std::string, v1::AgentInfo> agent_info;
  int64_t hello_order = 0;
  int capacity = 0;
  int credit = 0;
  bool draining = false;
  bool closed = false;
  absl::Time last_frame;
  std::set<std::string> runs;  // assigned or running here
  std::deque<v1::GatewayFrame> outbox;
  size_t frame_bytes = kDefaultFrameBytes;       // what this worker reads (Hello), at most ours
  std::optional<v1::Snapshot> partial_snapshot;  // the pieces so far of a snapshot in pieces
  // Bytes queued (in `outbox` or in the writer's hands) and not written yet, all frames and
  // those that cannot wait (IsBulk: not an assignment or a delivery); the writer takes each
  // frame off as its Write returns.
  std::atomic<int64_t> unsent_bytes{0};
  std::atomic<int64_t> unsent_urgent_bytes{0};
  // When the Write the writer is in began (unix ns); 0 while it is not writing.
  std::atomic<int64_t> writing_since_ns{0};
  // An assignment or a delivery waited for the queue to drain: the writer carries on with them
  // when it has (under mu_).
  bool held_back = false;
};

struct Orchestrator::Run {
  // The row as last stored: its state and trigger words are written from `state` and `trigger`
  // as it is saved (SaveRun); the rules read the typed ones.
  RunRow row;
  RunState state = RunState::kQueued;
  BootTrigger trigger = BootTrigger::kPreload;
  Conn* conn = nullptr;
  absl::Time accept_by = absl::InfiniteFuture();
  absl::Time lease_until = absl::InfiniteFuture();
  absl::Time queued_at;
  absl::Time not_before = absl::InfinitePast();  // a worker just refused it: offered after this
  int64_t sent_in = 0;                           // last `.in` seq sent to the run's worker
  bool cancel_requested = false;
};

struct Orchestrator::Session {
  // The row as last stored: its state word is written from `state` as it is saved
  // (SaveSession); the rules read the typed one.
  SessionRow row;
  SessionState state = SessionState::kLive;
  int64_t in_seq = 0;
  int64_t out_seq = 0;
  absl::Time last_out_at = absl::InfinitePast();
  std::string live_run;  // queued, assigned or running; "" when none
  int readers = 0;       // open Read streams
  // The `.out` seq of the last turn-complete, and whether an answer started after it (what a
  // resuming reader and an Append's answer need; after a restart, from the snapshot's cursor).
  int64_t turn_out_seq = 0;
  bool answering = false;
  // `.in` messages whose turn has not completed yet, oldest first: the answers a new message's
  // answer comes after on `.out`. (In memory: empty after a restart.)
  std::deque<int64_t> awaiting;

  // Notes a record just stored on `.out`: as a worker sent it, or as loaded.
  void Stored(const v1::OutRecord& record) {
    if (!record.has_control()) {
      answering = true;
      return;
    }
    if (record.control().subtype() != kTurnComplete) return;
    absl::string_view through;
    for (const v1::Header& h : record.control().headers()) {
      if (h.name() == "session-in-event-id") {
        through = h.value();
        break;
      }
    }
    TurnCompleted(record.seq(), through);
  }
  void Stored(const OutRecord& record) {
    if (!record.is_control) {
      answering = true;
      return;
    }
    if (record.control != kTurnComplete) return;
    TurnCompleted(record.seq, record.Header("session-in-event-id"));
  }
  void TurnCompleted(int64_t seq, absl::string_view in_event_id) {
    turn_out_seq = seq;
    answering = false;
    // The turn answered its message, and any that joined it (steering): the run's resume floor
    // ("session-in-event-id") is past them and before the first message it still holds queued.
    // Not "session-in-consumed-id": that is the last record delivered, queued ones included.
    int64_t through = 0;
    if (!absl::SimpleAtoi(in_event_id, &through)) through = 0;
    while (!awaiting.empty() && awaiting.front() <= through) awaiting.pop_front();
  }
  // Runs lost or failed (retryably) in a row since a snapshot last moved `.in` forward: the
  // retry budget. Kept in memory; a restart gives every chat a fresh budget.
  int failures = 0;
  bool close_appended = false;  // Close stored its record (in memory: one more after a restart)
  // The `.in` seq of the handover or handover-skip that closed a head start's window (0 when
  // open, or closed before a restart).
  int64_t handover_closed_by = 0;

  HandoverWindow handover() const {
    return HandoverWindow{!row.head_start_json.empty(), row.handover_deadline_ms > 0,
                          handover_closed_by};
  }
  std::vector<Follower*> waiters;  // following Reads parked until the chat has more to send
};

// One Read stream, on gRPC's callback API: it holds no thread. At any time one party at most
// acts on it (reads the store, writes, finishes): a pump thread that took it off the queue, or
// the gRPC thread its last write completed on. `state` (under mu_) says where it is. Others (a
// cancel, new output, the chat's close, the token's expiry, shutdown) only move a waiting
// follower to the pump queue, under mu_; nothing polls.
class Orchestrator::Follower final : public grpc::ServerWriteReactor<v1::ReadResponse> {
 public:
  enum class State { kQueued, kBusy, kWaiting, kDone };

  Follower(Orchestrator& o, Session& session, const v1::ReadRequest& request, absl::Time expires)
      : o_(o),
        session_(session),
        chat_id_(request.chat_id()),
        follow_(request.follow()),
        expires_(expires),
        cursor_(std::max<int64_t>(0, request.after_seq())) {}

  // On a pump thread: the end, or the next page from the store, or a wait for more.
  void Fill();

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  Session& session() { return session_; }

  // Under mu_.
  State state = State::kQueued;
  bool cancelled = false;
  bool holds_slot = true;  // counts in open_reads_ and its chat's readers
  std::multimap<absl::Time, Follower*>::iterator expiry;

 private:
  // Writes the page's next record; at its end, parks or queues the follower.
  void WriteNext();
  // Under mu_, the page sent: waits on the chat when there is nothing to read and no reason to
  // end; back to the queue otherwise.
  void ParkOrQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(o_.mu_);
  // Frees its Read slot (under mu_), at the first of its client going away and its end.
  void ReleaseSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(o_.mu_);
  void End(const absl::Status& status);
  bool Expired() const { return o_.clock_.Now() >= expires_; }

  Orchestrator& o_;
  Session& session_;
  const std::string chat_id_;
  const bool follow_;
  const absl::Time expires_;  // a chat token's expiry; InfiniteFuture for other callers
  int64_t cursor_;            // the last seq written
  std::vector<OutRow> page_;
  size_t next_ = 0;
  v1::ReadResponse response_;
};

// ---- gRPC services ----------------------------------------------------------------------------

class Orchestrator::Gateway final : public v1::WorkerGateway::Service {
 public:
  explicit Gateway(Orchestrator& o) : o_(o) {}
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>* stream) override {
    if (absl::Status s = o_.Authorize(*context, Scope::kWorker, ""); !s.ok()) return ToGrpc(s);
    return ToGrpc(o_.Connect(context, stream));
  }
  grpc::Status GetServerInfo(grpc::ServerContext* context, const v1::GetServerInfoRequest*,
                             v1::ServerInfo* info) override {
    if (absl::Status s = o_.Authorize(*context, Scope::kWorker, ""); !s.ok()) return ToGrpc(s);
    info->set_protocol_version(v1::PROTOCOL_VERSION_1);
    info->set_build_id(o_.options_.build_id);
    info->set_store(o_.store_.Describe());
    info->set_max_in_record_bytes(kMaxInRecordBytes);
    return grpc::Status::OK;
  }

 private:
  Orchestrator& o_;
};

class Orchestrator::SessionsApi final
    : public v1::Sessions::WithCallbackMethod_Read<v1::Sessions::Service> {
 public:
  explicit SessionsApi(Orchestrator& o) : o_(o) {}
  // Each call: who may make it, then the sizes of what it carries, then lookups.
  grpc::Status CreateSession(grpc::ServerContext* context, const v1::CreateSessionRequest* request,
                             v1::CreateSessionResponse* response) override {
    Caller caller;
    if (absl::Status s = o_.Authorize(*context, Scope::kCreate, "", &caller); !s.ok()) {
      return ToGrpc(s);
    }
    if (absl::Status s = CheckCreateRequest(*request); !s.ok()) return ToGrpc(s);
    absl::MutexLock lock(&o_.mu_);
    return ToGrpc(o_.CreateSession(*request, caller, response));
  }
  grpc::Status Append(grpc::ServerContext* context, const v1::AppendRequest* request,
                      v1::AppendResponse* response) override {
    Caller caller;
    absl::Status s = o_.Authorize(*context, Scope::kWrite, request->chat_id(), &caller);
    if (!s.ok()) return ToGrpc(s);
    if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
    s = CheckAtMost("client_record_id", request->client_record_id(), kMaxClientRecordIdBytes);
    if (!s.ok()) return ToGrpc(s);
    if (!caller.chat_id.empty()) {
      // A browser appends messages and stops; the handover is the warm server's.
      absl::StatusOr<InRecord> record = DecodeInRecord(0, request->body_json());
      if (record.ok() && record->kind != InKind::kMessage && record->kind != InKind::kStop) {
        return ToGrpc(absl::Status(absl::StatusCode::kPermissionDenied,
                                   "a chat token appends messages and stops only"));
      }
    }
    absl::MutexLock lock(&o_.mu_);
    return ToGrpc(o_.Append(*request, response));
  }
  grpc::ServerWriteReactor<v1::ReadResponse>* Read(grpc::CallbackServerContext* context,
                                                   const v1::ReadRequest* request) override {
    Caller caller;
    absl::Status s = o_.Authorize(*context, Scope::kRead, request->chat_id(), &caller);
    if (!s.ok()) return new RefusedRead(s);
    if (s = CheckChatId(request->chat_id()); !s.ok()) return new RefusedRead(s);
    return o_.Read(*request, caller.expires);
  }
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::Session* response) override {
    absl::Status s = o_.Authorize(*context, Scope::kRead, request->chat_id());
    if (!s.ok()) return ToGrpc(s);
    if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
    absl::MutexLock lock(&o_.mu_);
    auto it = o_.sessions_.find(request->chat_id());
    if (it == o_.sessions_.end()) {
      return ToGrpc(
          absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request->chat_id())));
    }
    *response = o_.SessionProto(*it->second);
    return grpc::Status::OK;
  }
  grpc::Status ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest* request,
                        v1::ListRunsResponse* response) override {
    // Runs name workers and carry errors: for operators, not for chat tokens.
    if (absl::Status s = o_.Authorize(*context, Scope::kRead, ""); !s.ok()) return ToGrpc(s);
    if (absl::Status s = CheckAtMost("chat_id", request->chat_id(), kMaxChatIdBytes); !s.ok()) {
      return ToGrpc(s);
    }
    absl::MutexLock lock(&o_.mu_);
    if (!request->chat_id().empty() && o_.sessions_.count(request->chat_id()) == 0) {
      return ToGrpc(
          absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request->chat_id())));
    }
    absl::StatusOr<std::vector<RunRow>> rows = o_.store_.ListRuns(request->chat_id());
    if (!rows.ok()) return ToGrpc(rows.status());
    for (const RunRow& row : *rows) *response->add_runs() = RunProto(row);
    return grpc::Status::OK;
  }
  grpc::Status CancelRun(grpc::ServerContext* context, const v1::CancelRunRequest* request,
                         v1::Run* response) override {
    absl::Status s = o_.Authorize(*context, Scope::kWrite, request->chat_id());
    if (!s.ok()) return ToGrpc(s);
    if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
    if (s = CheckAtMost("run_id", request->run_id(), kMaxRunIdBytes); !s.ok()) return ToGrpc(s);
    absl::MutexLock lock(&o_.mu_);
    return ToGrpc(o_.CancelRun(*request, response));
  }
  grpc::Status Close(grpc::ServerContext* context, const v1::CloseRequest* request,
                     v1::Session* response) override {
    absl::Status s = o_.Authorize(*context, Scope::kWrite, request->chat_id());
    if (!s.ok()) return ToGrpc(s);
    if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
    if (s = CheckAtMost("reason", request->reason(), kMaxCloseReasonBytes); !s.ok()) {
      return ToGrpc(s);
    }
    absl::MutexLock lock(&o_.mu_);
    return ToGrpc(o_.Close(*request, response));
  }
  grpc::Status GetAgent(grpc::ServerContext* context, const v1::GetAgentRequest* request,
                        v1::AgentInfo* response) override {
    // What a warm side needs before it creates a chat: a caller that may create chats, never a
    // chat token (it is about no one chat).
    if (absl::Status s = o_.Authorize(*context, Scope::kCreate, ""); !s.ok()) return ToGrpc(s);
    if (absl::Status s = CheckAgentName(request->name()); !s.ok()) return ToGrpc(s);
    absl::MutexLock lock(&o_.mu_);
    const v1::AgentInfo* announced = o_.Announced(request->name(), /*connected_only=*/true);
    if (announced == nullptr) {
      return ToGrpc(
          absl::Status(absl::StatusCode::kNotFound,
                       absl::StrCat("no connected worker hosts agent ", Quoted(request->name()))));
    }
    *response = *announced;
    return grpc::Status::OK;
  }

 private:
  Orchestrator& o_;
};

// ---- lifecycle --------------------------------------------------------------------------------

Orchestrator::Orchestrator(Store& store, Options options)
    : store_(store),
      options_(std::move(options)),
      own_clock_(options_.clock == nullptr ? std::make_unique<WallClock>() : nullptr),
      clock_(options_.clock != nullptr ? *options_.clock : *own_clock_),
      runs_started_(metrics_.AddCounter("baton_runs_assigned_total",
                                        "Assignments sent to workers (retries included).")),
      runs_ended_(metrics_.AddCounter("baton_runs_ended_total", "Runs that ended, any way.")),
      reconnects_(metrics_.AddCounter("baton_worker_reconnects_total",
                                      "Worker streams that rebound runs of an earlier stream.")),
      out_records_(metrics_.AddCounter("baton_out_records_total", ".out records stored.")),
      stale_writes_(metrics_.AddCounter("baton_stale_lease_writes_total",
                                        "Worker writes refused for a stale lease token.")),
      workers_(metrics_.AddGauge("baton_workers_connected", "Worker streams open.")),
      free_credit_(metrics_.AddGauge("baton_worker_slots_free",
                                     "Credit granted by workers and not used yet.")),
      live_runs_(metrics_.AddGauge("baton_runs_live", "Runs queued, assigned or running.")),
      streams_stalled_(
          metrics_.AddCounter("baton_worker_streams_stalled_total",
                              "Worker streams closed because the worker stopped reading them.")),
      read_wakeups_(metrics_.AddCounter(
          "baton_read_wakeups_total",
          "Times a following Read waiting for output was woken (new output, its chat closed, "
          "its client gone, its token expired, shutdown).")),
      readers_(metrics_.AddGauge("baton_readers", "Read streams open.")),
      queued_waiting_(metrics_.AddGauge(
          "baton_runs_queued{reason=\"waiting\"}",
          "Runs queued, by why no worker has taken them (docs/orchestrator.md).")),
      queued_unknown_agent_(metrics_.AddGauge("baton_runs_queued{reason=\"unknown-agent\"}", "")),
      queued_no_capacity_(metrics_.AddGauge("baton_runs_queued{reason=\"no-capacity\"}", "")),
      readers_waiting_(
          metrics_.AddGauge("baton_readers_waiting", "Following Read streams waiting for output.")),
      dispatch_seconds_(metrics_.AddHistogram("baton_dispatch_seconds",
                                              "From a run queued to accepted by a worker.")),
      output_lag_seconds_(metrics_.AddHistogram(
          "baton_output_lag_seconds", "From a .out record stored to sent to a live reader.")),
      gateway_(std::make_unique<Gateway>(*this)),
      sessions_api_(std::make_unique<SessionsApi>(*this)) {
  timer_ = std::thread([this] { TimerLoop(); });
  for (int i = 0; i < 2; ++i) pumps_.emplace_back([this] { PumpLoop(); });
}

Orchestrator::~Orchestrator() {
  Shutdown();
  timer_.join();
  {
    absl::MutexLock lock(&mu_);
    pumps_stop_ = true;
  }
  for (std::thread& pump : pumps_) pump.join();
}

grpc::Service* Orchestrator::gateway_service() { return gateway_.get(); }
grpc::Service* Orchestrator::sessions_service() { return sessions_api_.get(); }
std::string Orchestrator::MetricsText() const {
  {
    absl::MutexLock lock(&mu_);
    int64_t waiting = 0, unknown_agent = 0, no_capacity = 0;
    for (const std::string& run_id : queue_) {
      auto it = runs_.find(run_id);
      if (it == runs_.end()) continue;
      const std::string& reason = it->second->row.reason;
      ++(reason == "unknown-agent" ? unknown_agent
         : reason == "no-capacity" ? no_capacity
                                   : waiting);
    }
    queued_waiting_.Set(waiting);
    queued_unknown_agent_.Set(unknown_agent);
    queued_no_capacity_.Set(no_capacity);
  }
  return metrics_.Text();
}

void Orchestrator::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  shutdown_ = true;
  // Workers are told to reconnect (their runs stay theirs); each writer sends the Drain frame
  // and stops, and the worker ends the stream.
  for (Conn* conn : conns_) {
    v1::GatewayFrame drain;
    drain.mutable_drain()->set_reason("orchestrator shutting down");
    Send(*conn, std::move(drain));
    conn->closed = true;
  }
  // Following Reads end (UNAVAILABLE): their clients read again from the last seq they got.
  for (auto& [id, session] : sessions_) WakeReaders(*session);
}

absl::Status Orchestrator::Load() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::vector<SessionRow>> sessions = store_.LoadSessions();
  if (!sessions.ok()) return sessions.status();
  for (SessionRow& row : *sessions) {
    auto session = std::make_unique<Session>();
    absl::StatusOr<int64_t> in = store_.LastInSeq(row.chat_id);
    absl::StatusOr<int64_t> out = store_.LastOutSeq(row.chat_id);
    if (!in.ok()) return in.status();
    if (!out.ok()) return out.status();
    session->in_seq = *in;
    session->out_seq = *out;
    // Approximate until the next turn-complete: the snapshot's turn ended there.
    session->turn_out_seq = row.snapshot_out_seq;
    std::optional<SessionState> state = SessionStateOf(row.state);
    if (!state.has_value()) {
      return absl::DataLossError(absl::StrCat("chat ", row.chat_id, " is stored in state ",
                                              Quoted(row.state), ", which names none"));
    }
    session->state = *state;
    session->row = std::move(row);
    sessions_[session->row.chat_id] = std::move(session);
  }
  absl::StatusOr<std::vector<RunRow>> runs = store_.ListRuns("");
  if (!runs.ok()) return runs.status();
  absl::Time now = clock_.Now();
  for (RunRow& row : *runs) {
    std::optional<RunState> state = RunStateOf(row.state);
    if (!state.has_value() || !IsLive(*state)) continue;
    std::optional<BootTrigger> trigger = BootTriggerOf(row.trigger);
    if (sessions_.count(row.chat_id) == 0 || !trigger.has_value()) {
      // A crash between saving a run and its session: the run never became the chat's.
      row.state = Word(RunState::kFailed);
      row.error = trigger.has_value()
                      ? "its session was not stored"
                      : absl::StrCat("its trigger ", Quoted(row.trigger), " names none");
      if (absl::Status saved = store_.PutRun(row); !saved.ok()) return saved;
      continue;
    }
    auto run = std::make_unique<Run>();
    run->trigger = *trigger;
    run->queued_at = now;
    // A cancel acknowledged before the restart still holds: the worker is told again when it
    // rebinds the run, and a run whose lease runs out ends cancelled, not retried. (Only a
    // running run keeps one: CancelRun ends any other at once.)
    run->cancel_requested = row.cancel_requested;
    if (*state == RunState::kRunning) {
      run->state = RunState::kRunning;
      run->lease_until = now + options_.lease_ttl;  // its worker may reconnect and rebind it
    } else {
      run->state = RunState::kQueued;
      queue_.push_back(row.run_id);
    }
    run->row = std::move(row);
    sessions_[run->row.chat_id]->live_run = run->row.run_id;
    live_runs_.Add(1);
    runs_[run->row.run_id] = std::move(run);
  }
  // A crash between an append and the boot it called for leaves a record unanswered.
  for (auto& [id, session] : sessions_) {
    if (session->state == SessionState::kSuspended) {
      resume_deadlines_.emplace(session->row.resume_deadline_ms, id);
    }
    if (session->row.handover_deadline_ms > 0) {
      handover_deadlines_.emplace(session->row.handover_deadline_ms, id);
    }
    if (session->live_run.empty() && session->state == SessionState::kLive) {
      // A crash between ending the chat's run (lost, say) and storing the run that follows it:
      // the chat rests, and its unanswered records boot the next run below. The soak found
      // this, a message left unanswered by a restart landing in that gap.
      session->state = SessionState::kExited;
      SaveSession(*session);
    }
    if (session->live_run.empty()) BootIfUnanswered(*session);
  }
  return absl::OkStatus();
}

void Orchestrator::ExpireHandover(Session& session) {
  if (session.state == SessionState::kClosed) {
    session.row.handover_deadline_ms = 0;
    SaveSession(session);
    return;
  }
  LogJson("info", "no handover before the head start's deadline: the run answers on its own",
          {{"chat_id", session.row.chat_id}});
  v1::AppendRequest skip;
  skip.set_chat_id(session.row.chat_id);
  skip.set_body_json(DumpJson(HandoverTimeoutSkip()));
  skip.set_client_record_id("baton:handover-timeout");
  v1::AppendResponse ignored;
  absl::Status appended = Append(skip, &ignored, /*closing=*/true);
  if (!appended.ok()) {
    LogJson("error", "appending a head start's handover-skip failed",
            {{"chat_id", session.row.chat_id}, {"error", appended.message()}});
  }
}

void Orchestrator::SaveRun(Run& run) {
  run.row.state = Word(run.state);
  run.row.trigger = Word(run.trigger);
  absl::Status status = store_.PutRun(run.row);
  if (!status.ok())
    LogJson("error", "store: saving a run failed",
            {{"run_id", run.row.run_id}, {"error", status.ToString()}});
}

void Orchestrator::SaveSession(Session& session) {
  session.row.state = Word(session.state);
  absl::Status status = store_.PutSession(session.row);
  if (!status.ok())
    LogJson("error", "store: saving a session failed",
            {{"chat_id", session.row.chat_id}, {"error", status.ToString()}});
}

v1::Session Orchestrator::SessionProto(const Session& session) const {
  v1::Session out;
  out.set_chat_id(session.row.chat_id);
  out.set_agent(session.row.agent);
  out.set_state(ToProto(session.state));
  out.set_run_id(session.row.run_id);
  out.set_in_seq(session.in_seq);
  out.set_out_seq(session.out_seq);
  out.set_created_at_unix_ms(session.row.created_ms);
  out.set_runs(session.row.runs);
  out.set_turn_out_seq(session.turn_out_seq);
  // Answering from the moment a message waits for its answer (a run booting, a head start's
  // step 1 streaming on its warm side), not only once its first chunk is stored: a client that
  // resumes then follows the answer instead of missing it.
  out.set_answering(session.answering || !session.awaiting.empty());
  // A client sees a run that waits, and why, without ListRuns (which chat tokens cannot call).
  if (auto live = runs_.find(session.live_run); live != runs_.end()) {
    const Run& run = *live->second;
    out.set_run_state(ToProto(run.state));
    if (run.state == RunState::kQueued) {
      out.set_queued_reason(run.row.reason);
      out.set_queued_error(run.row.error);
    }
  }
  return out;
}

// ---- Sessions ---------------------------------------------------------------------------------

absl::Status Orchestrator::Authorize(const grpc::ServerContextBase& context, Scope scope,
                                     std::string_view chat_id, Caller* caller) const {
  if (options_.auth == nullptr) {
    if (caller != nullptr) caller->anyone = true;
    return absl::OkStatus();
  }
  // Exactly one credential: with two, which one a call runs as would depend on header order
  // (a proxy adding its own, say), so neither is taken.
  auto [found, end] = context.client_metadata().equal_range("authorization");
  if (found != end && std::next(found) != end) {
    return absl::Status(absl::StatusCode::kUnauthenticated,
                        "more than one authorization header; send exactly one \"Bearer <token>\"");
  }
  std::string_view header;
  if (found != end) header = std::string_view(found->second.data(), found->second.size());
  absl::StatusOr<Caller> who = options_.auth->Identify(header, clock_.Now());
  if (!who.ok()) return who.status();
  if (absl::Status allowed = Auth::Check(*who, scope, chat_id); !allowed.ok()) {
    return allowed;
  }
  if (caller != nullptr) *caller = *std::move(who);
  return absl::OkStatus();
}

absl::Status Orchestrator::CreateSession(const v1::CreateSessionRequest& request,
                                         const Caller& caller,
                                         v1::CreateSessionResponse* response) {
  if (request.trigger() == v1::TRIGGER_UNSPECIFIED) return Invalid("trigger is required");
  std::optional<BootTrigger> trigger = BootTriggerOf(request.trigger());
  if (!trigger.has_value()) {
    return Invalid(
        absl::StrCat("trigger ", static_cast<int>(request.trigger()), " is not a known trigger"));
  }
  Json payload = Json::object();
  if (!request.payload_json().empty()) {
    absl::StatusOr<Json> parsed = ParseJson(request.payload_json(), kMaxDataDepth);
    if (!parsed.ok()) return Invalid(absl::StrCat("payload_json: ", parsed.status().message()));
    if (!parsed->is_object()) return Invalid("payload_json must be a JSON object");
    payload = *std::move(parsed);
  }
  // A message the run could not read would leave the chat waiting with no answer and no error.
  if (absl::Status checked = CheckBootPayload(payload); !checked.ok()) return checked;
  auto existing = sessions_.find(request.chat_id());
  if (existing != sessions_.end()) {
    // The answer carries a fresh chat token, which reads and writes the chat: only a caller
    // that may already do both gets it, so sessions:create alone reaches no chat it did not
    // make (docs/security.md).
    if (!caller.anyone &&
        (caller.scopes.count(Scope::kRead) == 0 || caller.scopes.count(Scope::kWrite) == 0)) {
      return absl::Status(
          absl::StatusCode::kPermissionDenied,
          absl::StrCat(caller.name,
                       " may create chats but not renew the chat token of one that exists: "
                       "CreateSession of an existing chat needs sessions:read and "
                       "sessions:write as well"));
    }
    if (existing->second->row.agent != request.agent()) {
      return absl::Status(absl::StatusCode::kAlreadyExists,
                          absl::StrCat("chat ", request.chat_id(), " exists with agent ",
                                       Quoted(existing->second->row.agent)));
    }
    *response->mutable_session() = SessionProto(*existing->second);
    response->set_created(false);
    response->set_handover_deadline_unix_ms(existing->second->row.handover_deadline_ms);
    IssueChatToken(request.chat_id(), response);
    return absl::OkStatus();
  }
  if (trigger == BootTrigger::kHandoverPrepare) {
    // An agent whose first model call must go through its own hooks takes no head start: the
    // warm side's step 1 would run without them.
    const v1::AgentInfo* announced = Announced(request.agent(), /*connected_only=*/false);
    if (announced != nullptr && announced->head_start_disabled()) {
      return absl::Status(
          absl::StatusCode::kFailedPrecondition,
          absl::StrCat("agent ", Quoted(request.agent()),
                       " does not allow a head start (its workers announce it with "
                       "allow_head_start off): create the chat with submit-message"));
    }
  }
  payload["chatId"] = request.chat_id();
  auto session = std::make_unique<Session>();
  SessionRow& row = session->row;
  row.chat_id = request.chat_id();
  row.agent = request.agent();
  session->state = SessionState::kLive;
  row.base_payload_json = DumpJson(BasePayload(payload));
  if (Json boot = BootMessage(std::string(Word(*trigger)), payload); boot.is_object()) {
    row.boot_message_json = DumpJson(boot);
    session->awaiting.push_back(0);  // the boot message's turn is the first on `.out`
  }
  row.traceparent = request.traceparent();
  row.created_ms = UnixMs(clock_.Now());
  if (trigger == BootTrigger::kHandoverPrepare) {
    // The window for the warm side's signal: the agent's own handover_timeout, as its workers
    // announced it, so the warm side and the run agree on it.
    const v1::AgentInfo* announced = Announced(row.agent, /*connected_only=*/false);
    absl::Duration window = announced != nullptr && announced->handover_timeout_ms() > 0
                                ? absl::Milliseconds(announced->handover_timeout_ms())
                                : options_.handover_timeout;
    row.head_start_json = DumpJson(payload.value("headStartMessages", Json::array()));
    row.handover_deadline_ms = row.created_ms + absl::ToInt64Milliseconds(window);
  }
  Session& s = *session;
  sessions_[row.chat_id] = std::move(session);
  absl::Status booted = Boot(s, *trigger, DumpJson(payload), 1);
  if (!booted.ok()) {
    sessions_.erase(request.chat_id());
    return booted;
  }
  if (s.row.handover_deadline_ms > 0) {
    handover_deadlines_.emplace(s.row.handover_deadline_ms, s.row.chat_id);
  }
  *response->mutable_session() = SessionProto(s);
  response->set_created(true);
  response->set_handover_deadline_unix_ms(s.row.handover_deadline_ms);
  IssueChatToken(request.chat_id(), response);
  return absl::OkStatus();
}

void Orchestrator::IssueChatToken(const std::string& chat_id,
                                  v1::CreateSessionResponse* response) const {
  if (options_.auth == nullptr) return;
  absl::Time now = clock_.Now();
  std::string token = options_.auth->IssueChatToken(chat_id, now);
  if (token.empty()) return;
  response->set_chat_token(std::move(token));
  response->set_chat_token_expires_unix_ms(UnixMs(now + options_.auth->chat_token_ttl()));
}

absl::Status Orchestrator::Append(const v1::AppendRequest& request, v1::AppendResponse* response,
                                  bool closing) {
  if (request.body_json().size() > kMaxInRecordBytes) {
    return absl::Status(absl::StatusCode::kResourceExhausted,
                        absl::StrCat(".in record of ", request.body_json().size(),
                                     " bytes exceeds the limit of ", kMaxInRecordBytes));
  }
  absl::StatusOr<InRecord> record = DecodeInRecord(0, request.body_json());
  if (!record.ok()) return record.status();
  auto it = sessions_.find(request.chat_id());
  if (it == sessions_.end()) {
    return absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
  }
  Session& session = *it->second;
  // Closed, or closing: once Close stored its record, nothing after it would be answered (the
  // run ends at the close), so nothing more is taken.
  if (session.state == SessionState::kClosed || (session.close_appended && !closing)) {
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        absl::StrCat("chat ", request.chat_id(), " is closed"));
  }
  if (session.in_seq >= options_.max_in_records && !closing) {
    return absl::Status(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("chat ", request.chat_id(), " holds ", session.in_seq,
                                     " .in records, the most a chat may (close it and start "
                                     "another)"));
  }
  const bool signal = record->kind == InKind::kHandover || record->kind == InKind::kHandoverSkip;
  if (absl::Status allowed = CheckSignal(request.chat_id(), session.handover(), record->kind);
      !allowed.ok()) {
    // A retry of the very record that closed the window is answered as any retry is.
    if (!request.client_record_id().empty()) {
      absl::StatusOr<std::vector<InRow>> rows = store_.ReadIn(session.row.chat_id, 0, kAllRows);
      if (rows.ok()) {
        for (const InRow& earlier : *rows) {
          if (earlier.client_record_id == request.client_record_id() &&
              earlier.body_json == request.body_json()) {
            response->set_seq(earlier.seq);
            response->set_duplicate(true);
            response->set_run_id(session.live_run);
            return absl::OkStatus();
          }
        }
      }
    }
    return allowed;
  }
  InRow row;
  row.kind = std::string(InKindName(record->kind));
  row.body_json = request.body_json();
  row.client_record_id = request.client_record_id();
  row.appended_ms = UnixMs(clock_.Now());
  absl::StatusOr<Store::Appended> appended = store_.AppendIn(session.row.chat_id, std::move(row));
  if (!appended.ok()) return appended.status();
  if (appended->duplicate && appended->row.body_json != request.body_json()) {
    // A retry sends the same record again; another record under a used id would be lost.
    return absl::Status(
        absl::StatusCode::kAlreadyExists,
        absl::StrCat("client_record_id ", Quoted(request.client_record_id()),
                     " is already .in seq ", appended->row.seq, " of chat ", request.chat_id(),
                     ", with another body; a retry must send the same body"));
  }
  response->set_seq(appended->row.seq);
  response->set_duplicate(appended->duplicate);
  if (!appended->duplicate) {
    response->set_out_seq(session.out_seq);
    response->set_turns_before(static_cast<int32_t>(session.awaiting.size()));
    if (NeedsAnswer(*record)) session.awaiting.push_back(appended->row.seq);
  }
  if (appended->duplicate) {
    // The first append may have failed after storing the record: make sure it is answered.
    if (session.live_run.empty()) BootIfUnanswered(session);
    response->set_run_id(session.live_run);
    // A retry waits for the same answer as the first append: after the answers ahead of it.
    // (After a restart `awaiting` is empty until the chat's next message: a retry then counts
    // as answered.)
    auto waiting = std::find(session.awaiting.begin(), session.awaiting.end(), appended->row.seq);
    if (waiting == session.awaiting.end()) {
      response->set_answered(true);
    } else {
      response->set_out_seq(session.turn_out_seq);
      response->set_turns_before(static_cast<int32_t>(waiting - session.awaiting.begin()));
    }
    return absl::OkStatus();
  }
  session.in_seq = appended->row.seq;
  if (signal) {
    // A head start takes one signal: the run no longer waits for another.
    session.row.handover_deadline_ms = 0;
    session.handover_closed_by = appended->row.seq;
    SaveSession(session);
  }
  if (!session.live_run.empty()) {
    DeliverPending(*runs_[session.live_run]);
  } else if (record->kind == InKind::kMessage) {
    // Any message boots the next run, a close too: the run fires its hooks and closes the chat
    // (as LocalSessions does). Stops and handover signals only reach a live run.
    bool resume = session.state == SessionState::kSuspended &&
                  UnixMs(clock_.Now()) < session.row.resume_deadline_ms;
    absl::Status booted = BootContinuation(session, resume, 1);
    if (!booted.ok()) return booted;
  }
  response->set_run_id(session.live_run);
  return absl::OkStatus();
}

absl::Status Orchestrator::CancelRun(const v1::CancelRunRequest& request, v1::Run* response) {
  auto it = sessions_.find(request.chat_id());
  if (it == sessions_.end()) {
    return absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
  }
  Session& session = *it->second;
  if (session.live_run.empty() ||
      (!request.run_id().empty() && request.run_id() != session.live_run)) {
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        absl::StrCat("chat ", request.chat_id(), " has no live run",
                                     request.run_id().empty() ? "" : " by that id"));
  }
  Run& run = *runs_[session.live_run];
  if (run.conn != nullptr && run.state == RunState::kRunning) {
    // Stored before it is acknowledged: a restart before the worker ends the run must not
    // forget it (the run would carry on, or be retried when its lease ran out).
    if (!run.cancel_requested) {
      RunRow row = run.row;
      row.state = Word(run.state);
      row.trigger = Word(run.trigger);
      row.cancel_requested = true;
      if (absl::Status saved = store_.PutRun(row); !saved.ok()) {
        return absl::Status(absl::StatusCode::kUnavailable,
                            absl::StrCat("the cancel could not be stored: ", saved.message()));
      }
      run.row.cancel_requested = true;
      run.cancel_requested = true;
    }
    SendCancel(run);
  } else {
    // Not running anywhere (queued, not accepted yet, or its worker is gone): it ends here.
    run.cancel_requested = true;
    run.row.cancel_requested = true;
    if (run.conn != nullptr) Revoke(*run.conn, run.row.run_id, run.row.lease_token, "cancelled");
    v1::RunFinished how;
    how.set_reason("cancelled");
    EndRun(run, RunState::kCancelled, how);
  }
  *response = RunProto(run.row);  // saved: its words are the state's
  return absl::OkStatus();
}

absl::Status Orchestrator::Close(const v1::CloseRequest& request, v1::Session* response) {
  auto it = sessions_.find(request.chat_id());
  if (it == sessions_.end()) {
    return absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
  }
  // One close record per chat: a second Close before the run has handled the first adds
  // nothing (the per-chat record limit does not stop a close, so repeats must not pile up).
  if (it->second->state != SessionState::kClosed && !it->second->close_appended) {
    Json body = {{"kind", "message"},
                 {"payload", {{"chatId", request.chat_id()}, {"trigger", "close"}}}};
    if (!request.reason().empty()) body["payload"]["reason"] = request.reason();
    v1::AppendRequest append;
    append.set_chat_id(request.chat_id());
    append.set_body_json(DumpJson(body));
    v1::AppendResponse ignored;
    absl::Status status = Append(append, &ignored, /*closing=*/true);
    if (!status.ok()) return status;
    it->second->close_appended = true;
  }
  *response = SessionProto(*it->second);
  return absl::OkStatus();
}

grpc::ServerWriteReactor<v1::ReadResponse>* Orchestrator::Read(const v1::ReadRequest& request,
                                                               absl::Time token_expires) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(request.chat_id());
    if (it == sessions_.end()) {
      refused =
          absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
    } else if (shutdown_) {
      refused = ShuttingDown();
    } else if (open_reads_ >= options_.max_reads) {
      refused = absl::Status(absl::StatusCode::kResourceExhausted,
                             absl::StrCat(open_reads_, " Read streams are open, the most allowed"));
    } else if (it->second->readers >= options_.max_reads_per_chat) {
      refused = absl::Status(absl::StatusCode::kResourceExhausted,
                             absl::StrCat("chat ", request.chat_id(), " has ", it->second->readers,
                                          " Read streams open, the most allowed"));
    } else {
      Session& session = *it->second;  // sessions are never removed
      ++open_reads_;
      ++session.readers;
      readers_.Add(1);
      auto* follower = new Follower(*this, session, request, token_expires);
      follower->expiry = token_expires == absl::InfiniteFuture()
                             ? read_expiries_.end()
                             : read_expiries_.emplace(token_expires, follower);
      // A pump thread sends what is stored; gRPC keeps the first write until the stream is
      // bound to the follower.
      pump_queue_.push_back(follower);
      return follower;
    }
  }
  return new RefusedRead(refused);
}

void Orchestrator::Follower::Fill() {
  std::optional<absl::Status> end;
  {
    absl::MutexLock lock(&o_.mu_);
    if (cancelled) {
      end = absl::Status(absl::StatusCode::kCancelled, "the client went away");
    } else if (o_.shutdown_) {
      end = ShuttingDown();
    } else if (Expired()) {
      end = TokenExpired();
    }
  }
  if (end.has_value()) return End(*end);
  absl::StatusOr<std::vector<OutRow>> rows = o_.store_.ReadOut(chat_id_, cursor_, kReadPage);
  if (!rows.ok()) return End(rows.status());
  if (!rows->empty()) {
    page_ = *std::move(rows);
    next_ = 0;
    return WriteNext();
  }
  if (!follow_) return End(absl::OkStatus());
  {
    absl::MutexLock lock(&o_.mu_);
    if (session_.out_seq > cursor_ || session_.state != SessionState::kClosed) {
      return ParkOrQueue();
    }
  }
  End(absl::OkStatus());  // the chat is closed and every record was sent
}

void Orchestrator::Follower::WriteNext() {
  if (next_ < page_.size()) {
    const OutRow& row = page_[next_];
    if (!response_.mutable_record()->ParseFromString(row.record)) {
      return End(absl::Status(absl::StatusCode::kDataLoss,
                              absl::StrCat(".out record ", row.seq, " does not parse")));
    }
    return StartWrite(&response_);  // OnWriteDone carries on, on a gRPC thread
  }
  page_.clear();
  absl::MutexLock lock(&o_.mu_);
  if (cursor_ == session_.out_seq && session_.last_out_at != absl::InfinitePast()) {
    o_.output_lag_seconds_.Observe(absl::ToDoubleSeconds(o_.clock_.Now() - session_.last_out_at));
  }
  ParkOrQueue();
}

void Orchestrator::Follower::ParkOrQueue() {
  bool more = session_.out_seq > cursor_;
  bool ending =
      !follow_ || cancelled || o_.shutdown_ || Expired() || session_.state == SessionState::kClosed;
  if (!more && !ending) {
    state = State::kWaiting;
    session_.waiters.push_back(this);
    o_.readers_waiting_.Add(1);
    return;
  }
  state = State::kQueued;
  o_.pump_queue_.push_back(this);
}

void Orchestrator::Follower::OnWriteDone(bool ok) {
  if (!ok) return End(absl::Status(absl::StatusCode::kCancelled, "the client went away"));
  cursor_ = page_[next_++].seq;
  if (Expired()) return End(TokenExpired());
  WriteNext();
}

void Orchestrator::Follower::OnCancel() {
  absl::MutexLock lock(&o_.mu_);
  cancelled = true;
  ReleaseSlot();  // free at once, not when the stream is done
  if (state == State::kWaiting) o_.Wake(*this);
}

void Orchestrator::Follower::OnDone() {
  {
    absl::MutexLock lock(&o_.mu_);
    ReleaseSlot();
    if (expiry != o_.read_expiries_.end()) o_.read_expiries_.erase(expiry);
  }
  delete this;
}

void Orchestrator::Follower::ReleaseSlot() {
  if (!holds_slot) return;
  holds_slot = false;
  --o_.open_reads_;
  --session_.readers;
  o_.readers_.Add(-1);
}

void Orchestrator::Follower::End(const absl::Status& status) {
  {
    absl::MutexLock lock(&o_.mu_);
    state = State::kDone;
  }
  Finish(ToGrpc(status));  // OnDone follows, on a gRPC thread
}

void Orchestrator::Wake(Follower& follower) {
  std::vector<Follower*>& waiters = follower.session().waiters;
  waiters.erase(std::remove(waiters.begin(), waiters.end(), &follower), waiters.end());
  follower.state = Follower::State::kQueued;
  pump_queue_.push_back(&follower);
  readers_waiting_.Add(-1);
  read_wakeups_.Add(1);
}

void Orchestrator::WakeReaders(Session& session) {
  std::vector<Follower*> waiters;
  waiters.swap(session.waiters);
  for (Follower* follower : waiters) {
    follower->state = Follower::State::kQueued;
    pump_queue_.push_back(follower);
  }
  readers_waiting_.Add(-static_cast<int64_t>(waiters.size()));
  read_wakeups_.Add(static_cast<int64_t>(waiters.size()));
}

void Orchestrator::PumpLoop() {
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pump_queue_.empty() || pumps_stop_;
  };
  while (true) {
    Follower* follower = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&ready));
      if (pump_queue_.empty()) return;
      follower = pump_queue_.front();
      pump_queue_.pop_front();
      follower->state = Follower::State::kBusy;
    }
    follower->Fill();
  }
}

// ---- worker streams ---------------------------------------------------------------------------

absl::Status Orchestrator::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>* stream) {
  v1::WorkerFrame first;
  if (!stream->Read(&first)) {
    std::string bad = TakeParseError();
    if (bad.empty()) return absl::OkStatus();
    return Invalid(absl::StrCat("a frame does not parse: ", bad));
  }
  if (!first.has_hello()) return Invalid("the first frame of a Connect stream must be Hello");
  if (absl::Status s = CheckHello(first.hello()); !s.ok()) return s;
  if (first.hello().protocol_version() != v1::PROTOCOL_VERSION_1) {
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        "unsupported protocol version; this orchestrator speaks 1");
  }
  Conn conn;
  conn.context = context;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return absl::Status(absl::StatusCode::kUnavailable, "shutting down");
    conn.id = absl::StrCat("conn_", next_conn_++);
    conns_.insert(&conn);
    workers_.Add(1);
    OnHello(conn, first.hello());
  }
  // The writer: frames queued under the lock go out in order, without holding it. A Write
  // blocks while the worker reads nothing; the timer thread watches how long (Tick).
  std::thread writer([this, &conn, stream] {
    while (true) {
      std::deque<v1::GatewayFrame> batch;
      {
        absl::MutexLock lock(&mu_);
        if (conn.held_back && !conn.closed && !Full(conn)) {
          // The queue drained: the deliveries and assignments that waited go on.
          conn.held_back = false;
          for (const std::string& run_id : conn.runs) DeliverPending(*runs_[run_id]);
          Dispatch();
        }
        mu_.Await(absl::Condition(
            +[](Conn* c) { return !c->outbox.empty() || c->closed; }, &conn));
        if (conn.outbox.empty()) return;
        batch.swap(conn.outbox);
      }
      while (!batch.empty()) {
        int64_t size = static_cast<int64_t>(batch.front().ByteSizeLong());
        bool bulk = IsBulk(batch.front());
        conn.writing_since_ns.store(absl::ToUnixNanos(clock_.Now()));
        bool written = stream->Write(batch.front());
        conn.writing_since_ns.store(0);
        conn.unsent_bytes.fetch_sub(size);
        if (!bulk) conn.unsent_urgent_bytes.fetch_sub(size);
        batch.pop_front();
        if (!written) {
          absl::MutexLock lock(&mu_);
          conn.closed = true;
          conn.context->TryCancel();
          return;
        }
      }
    }
  });
  v1::WorkerFrame frame;
  bool goodbye = false;
  while (stream->Read(&frame)) {
    absl::MutexLock lock(&mu_);
    // A stream this side closed (the worker dialed again, it went silent, or it was reset) is
    // read no more: a frame still buffered on it would act for a worker that has moved on, e.g.
    // accept a run its new stream did not claim, leaving it running nowhere until its lease ran
    // out.
    if (conn.closed) break;
    conn.last_frame = clock_.Now();
    if (frame.has_goodbye()) {
      goodbye = true;
      break;
    }
    // A stream being reset (the store failed a batch, the orchestrator is stopping) is no longer
    // listened to: frames already on their way could refer to output that was not stored (a
    // snapshot would then look bad), and the worker sends again after its reconnect whatever
    // was not acknowledged.
    if (conn.closed) continue;
    OnFrame(conn, frame);
  }
  // A frame that does not parse ends the stream as an error the worker is told about (its runs
  // stay its own until their leases run out, as after any broken stream).
  std::string bad = goodbye ? std::string() : TakeParseError();
  if (!bad.empty()) {
    LogJson("warn", "a worker frame does not parse: closing its stream",
            {{"worker_id", conn.worker_id}, {"error", bad}});
  }
  {
    absl::MutexLock lock(&mu_);
    conn.closed = true;
    Disconnected(conn);
  }
  writer.join();
  if (!bad.empty()) return Invalid(absl::StrCat("a frame does not parse: ", bad));
  return absl::OkStatus();
}

const v1::AgentInfo* Orchestrator::Announced(const std::string& agent, bool connected_only) const {
  const Conn* latest = nullptr;
  for (const Conn* conn : conns_) {
    if (conn->closed || conn->agents.count(agent) == 0 || conn->agent_info.count(agent) == 0) {
      continue;
    }
    if (latest == nullptr || conn->hello_order > latest->hello_order) latest = conn;
  }
  if (latest != nullptr) return &latest->agent_info.at(agent);
  if (connected_only) return nullptr;
  auto it = last_announced_.find(agent);
  return it == last_announced_.end() ? nullptr : &it->second;
}

void Orchestrator::OnHello(Conn& conn, const v1::Hello& hello) {
  conn.worker_id = hello.worker_id();
  conn.capacity = hello.capacity();
  conn.last_frame = clock_.Now();
  conn.hello_order = ++hello_order_;
  for (const v1::AgentInfo& agent : hello.agents()) {
    conn.agents.insert(agent.name());
    conn.agent_info[agent.name()] = agent;
    last_announced_[agent.name()] = agent;
  }
  // The same worker again: its old stream is dead even if this side has not noticed yet.
  for (Conn* old : conns_) {
    if (old != &conn && old->worker_id == conn.worker_id && !old->closed) {
      old->closed = true;
      old->context->TryCancel();
    }
  }
  v1::GatewayFrame welcome_frame;
  v1::Welcome& welcome = *welcome_frame.mutable_welcome();
  welcome.set_connection_id(conn.id);
  welcome.set_protocol_version(v1::PROTOCOL_VERSION_1);
  welcome.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  welcome.set_heartbeat_misses(options_.heartbeat_misses);
  welcome.set_lease_ttl_ms(absl::ToInt64Milliseconds(options_.lease_ttl));
  welcome.set_accept_deadline_ms(absl::ToInt64Milliseconds(options_.accept_deadline));
  welcome.set_server_time_unix_ms(UnixMs(clock_.Now()));
  welcome.set_max_frame_bytes(static_cast<int64_t>(options_.max_frame_bytes));
  conn.frame_bytes = SendFrameBytes(hello.max_frame_bytes(), options_.max_frame_bytes);
  // Runs held from an earlier stream: rebound when their lease is still theirs.
  std::vector<Run*> rebound;
  for (const v1::HeldRun& held : hello.held_runs()) {
    auto it = runs_.find(held.run_id());
    if (it == runs_.end()) continue;
    Run& run = *it->second;
    if (run.row.lease_token != held.lease_token() || run.state != RunState::kRunning) continue;
    if (run.conn != nullptr) run.conn->runs.erase(run.row.run_id);
    run.conn = &conn;
    run.row.worker_id = conn.worker_id;
    run.lease_until = clock_.Now() + options_.lease_ttl;
    // Records at or below the floor were answered (or given up) before: never sent again.
    run.sent_in = std::max(held.delivered_in_seq(), InFloor(*sessions_[run.row.chat_id]));
    conn.runs.insert(run.row.run_id);
    v1::HeldRun& out = *welcome.add_rebound_runs();
    out = held;
    out.set_acked_out_seq(sessions_[run.row.chat_id]->out_seq);
    rebound.push_back(&run);
  }
  if (!rebound.empty()) reconnects_.Add(1);
  Send(conn, std::move(welcome_frame));
  for (Run* run : rebound) {
    DeliverPending(*run);
    if (run->cancel_requested) SendCancel(*run);  // it may have died with the old stream
  }
  LogJson("info", "worker connected",
          {{"worker_id", conn.worker_id},
           {"connection_id", conn.id},
           {"capacity", conn.capacity},
           {"rebound_runs", rebound.size()}});
}

void Orchestrator::OnFrame(Conn& conn, const v1::WorkerFrame& frame) {
  // Limits (docs/bad-input.md). A run id longer than any the orchestrator issues names no run:
  // the frame is dropped, and not answered, as a LeaseRevoked would have to echo the id.
  if (const std::string* run_id = FrameRunId(frame);
      run_id != nullptr && run_id->size() > kMaxRunIdBytes) {
    stale_writes_.Add(1);
    LogJson("warn", "a worker frame names a run id longer than any issued; dropped",
            {{"worker_id", conn.worker_id}, {"run_id", Quoted(*run_id)}});
    return;
  }
  // Text over its limit in a frame about a run: nothing of the frame is kept, and the run fails
  // as after bad output (the worker keeps within the limits: it clips its own text).
  if (std::string why = FrameTextOverLimit(frame); !why.empty()) {
    const std::string& run_id = *FrameRunId(frame);
    int64_t token = frame.has_run_rejected() ? frame.run_rejected().lease_token()
                                             : frame.run_finished().lease_token();
    if (Run* run = OwnedRun(conn, run_id, token); run != nullptr) {
      RefuseRunWrite(conn, *run, "bad-frame", why);
    }
    return;
  }
  switch (frame.frame_case()) {
    case v1::WorkerFrame::kCredit:
      if (!conn.draining) {
        // Credit never exceeds the capacity the worker announced, never takes the worker past
        // --max_runs_per_worker runs at once, and never overflows.
        int64_t limit = std::min<int64_t>(
            std::max(0, conn.capacity),
            int64_t{options_.max_runs_per_worker} - static_cast<int64_t>(conn.runs.size()));
        int64_t credit =
            std::clamp<int64_t>(int64_t{conn.credit} + std::max(0, frame.credit().runs()), 0,
                                std::max<int64_t>(0, limit));
        free_credit_.Add(credit - conn.credit);
        conn.credit = static_cast<int>(credit);
        Dispatch();
      }
      break;
    case v1::WorkerFrame::kRunAccepted:
      OnRunAccepted(conn, frame.run_accepted());
      break;
    case v1::WorkerFrame::kRunRejected:
      OnRunRejected(conn, frame.run_rejected());
      break;
    case v1::WorkerFrame::kHeartbeat:
      OnHeartbeat(conn, frame.heartbeat());
      break;
    case v1::WorkerFrame::kRunOutput:
      OnRunOutput(conn, frame.run_output());
      break;
    case v1::WorkerFrame::kSnapshot:
      OnSnapshot(conn, frame.snapshot());
      break;
    case v1::WorkerFrame::kRunFinished:
      OnRunFinished(conn, frame.run_finished());
      break;
    case v1::WorkerFrame::kDelivered:
      break;  // the worker's receipt; re-delivery after a reconnect uses Hello.held_runs
    case v1::WorkerFrame::kDraining:
      conn.draining = true;
      free_credit_.Add(-conn.credit);
      conn.credit = 0;
      LogJson("info", "worker draining",
              {{"worker_id", conn.worker_id}, {"reason", Quoted(frame.draining().reason())}});
      break;
    case v1::WorkerFrame::kHello:
      LogJson("warn", "a second Hello on one stream is ignored", {{"worker_id", conn.worker_id}});
      break;
    default:
      break;
  }
}

Orchestrator::Run* Orchestrator::OwnedRun(Conn& conn, const std::string& run_id,
                                          int64_t lease_token) {
  auto it = runs_.find(run_id);
  if (it != runs_.end() && it->second->conn == &conn &&
      it->second->row.lease_token == lease_token && IsLive(it->second->state)) {
    return it->second.get();
  }
  stale_writes_.Add(1);
  Revoke(conn, run_id, lease_token, "stale lease token");
  return nullptr;
}

void Orchestrator::OnRunAccepted(Conn& conn, const v1::RunAccepted& accepted) {
  Run* run = OwnedRun(conn, accepted.run_id(), accepted.lease_token());
  if (run == nullptr || run->state != RunState::kAssigned) return;
  absl::Time now = clock_.Now();
  run->state = RunState::kRunning;
  run->row.started_ms = UnixMs(now);
  run->accept_by = absl::InfiniteFuture();
  run->lease_until = now + options_.lease_ttl;
  dispatch_seconds_.Observe(absl::ToDoubleSeconds(now - run->queued_at));
  SaveRun(*run);
}

void Orchestrator::OnRunRejected(Conn& conn, const v1::RunRejected& rejected) {
  Run* run = OwnedRun(conn, rejected.run_id(), rejected.lease_token());
  if (run == nullptr) return;
  LogJson(
      "warn", "run rejected",
      {{"run_id", run->row.run_id}, {"worker_id", conn.worker_id}, {"reason", rejected.reason()}});
  if (absl::StartsWith(rejected.reason(), "bad-")) {
    // The worker cannot read what it was given: offering it elsewhere would fail the same way.
    v1::RunFinished how;
    how.set_reason("rejected");
    how.set_error(absl::StrCat("a worker could not start the run: ", rejected.reason()));
    EndRun(*run, RunState::kFailed, how);
    return;
  }
  if (rejected.reason() == "unknown-agent") conn.agents.erase(run->row.agent);
  Requeue(*run, absl::Milliseconds(250));  // not straight back to a worker that just refused
  Dispatch();
}

void Orchestrator::OnHeartbeat(Conn& conn, const v1::Heartbeat& heartbeat) {
  absl::Time until = clock_.Now() + options_.lease_ttl;
  for (const v1::RunLease& lease : heartbeat.runs()) {
    if (lease.run_id().size() > kMaxRunIdBytes) continue;  // names no run (see OnFrame)
    Run* run = OwnedRun(conn, lease.run_id(), lease.lease_token());
    if (run != nullptr) run->lease_until = until;
  }
  v1::GatewayFrame ack;
  ack.mutable_heartbeat_ack()->set_seq(heartbeat.seq());
  ack.mutable_heartbeat_ack()->set_server_time_unix_ms(UnixMs(clock_.Now()));
  Send(conn, std::move(ack));
}

void Orchestrator::RefuseRunWrite(Conn& conn, Run& run, const std::string& reason,
                                  const std::string& error) {
  LogJson("warn", "a worker wrote what the chat cannot keep: the run fails and is retried",
          {{"run_id", run.row.run_id},
           {"worker_id", conn.worker_id},
           {"reason", reason},
           {"error", error}});
  Revoke(conn, run.row.run_id, run.row.lease_token, absl::StrCat(reason, ": ", error));
  v1::RunFinished how;
  how.set_reason(reason);
  how.set_error(error);
  how.set_retryable(true);  // as a lost run: attempt + 1 from the last good snapshot
  EndRun(run, RunState::kFailed, how);
}

void Orchestrator::OnRunOutput(Conn& conn, const v1::RunOutput& output) {
  Run* run = OwnedRun(conn, output.run_id(), output.lease_token());
  if (run == nullptr) return;
  Session& session = *sessions_[run->row.chat_id];
  // Nothing of a batch is stored unless all of it can be: a record readers could not decode, or
  // a gap, would break every reader and every continuation of the chat. (Storing and refusing
  // to acknowledge would not do: the worker would send the same batch again forever.)
  std::vector<OutRow> rows;
  rows.reserve(output.records_size());
  int64_t end = session.out_seq;
  for (const v1::OutRecord& record : output.records()) {
    absl::Status checked = CheckOutRecord(record);
    if (checked.ok() && record.seq() > end + 1) {
      checked = absl::InvalidArgumentError(
          absl::StrCat(".out record ", record.seq(), " leaves a gap after seq ", end));
    }
    if (!checked.ok()) {
      RefuseRunWrite(conn, *run, "bad-output", std::string(checked.message()));
      return;
    }
    end = std::max(end, record.seq());
    rows.push_back(OutRow{record.seq(), record.SerializeAsString()});
  }
  const int64_t stored_before = session.out_seq;
  absl::StatusOr<int64_t> stored = store_.AppendOut(session.row.chat_id, rows);
  if (!stored.ok()) {
    // Not acknowledged. The stream is reset: the worker reconnects and sends again everything
    // after what was stored (a later batch alone would be a gap).
    LogJson("error", "store: .out append failed; resetting the worker's stream",
            {{"run_id", run->row.run_id}, {"error", stored.status().ToString()}});
    conn.closed = true;
    conn.context->TryCancel();
    return;
  }
  if (*stored > session.out_seq) {
    out_records_.Add(*stored - session.out_seq);
    session.out_seq = *stored;
    session.last_out_at = clock_.Now();
    for (const v1::OutRecord& record : output.records()) {
      if (record.seq() <= stored_before || record.seq() > *stored) continue;
      session.Stored(record);  // checked above: its chunk parsed once there, and not again
    }
    WakeReaders(session);
  }
  v1::GatewayFrame ack;
  ack.mutable_ack()->set_run_id(run->row.run_id);
  ack.mutable_ack()->set_out_seq(session.out_seq);
  Send(conn, std::move(ack));
}

void Orchestrator::OnSnapshot(Conn& conn, const v1::Snapshot& piece) {
  // A snapshot's pieces follow each other: one of another run leaves an unfinished one behind,
  // which is never stored (the run keeps its previous snapshot).
  if (conn.partial_snapshot && conn.partial_snapshot->run_id() != piece.run_id()) {
    LogJson("warn", "a snapshot in pieces was left unfinished; dropped",
            {{"run_id", conn.partial_snapshot->run_id()}, {"worker_id", conn.worker_id}});
    conn.partial_snapshot.reset();
  }
  Run* run = OwnedRun(conn, piece.run_id(), piece.lease_token());
  if (run == nullptr) {
    conn.partial_snapshot.reset();
    return;
  }
  absl::StatusOr<std::optional<v1::Snapshot>> whole =
      AddSnapshotPiece(conn.partial_snapshot, piece, options_.max_snapshot_bytes);
  if (!whole.ok()) {
    RefuseRunWrite(conn, *run, "bad-snapshot", std::string(whole.status().message()));
    return;
  }
  if (!whole->has_value()) return;  // more pieces to come
  const v1::Snapshot& snapshot = **whole;
  Session& session = *sessions_[run->row.chat_id];
  // A continuation boots from the stored snapshot: one no worker can read, or whose cursors
  // point past the logs, would fail every later run of the chat.
  absl::Status checked = DecodeSnapshot(snapshot.snapshot_json()).status();
  if (checked.ok() && (snapshot.in_seq() < 0 || snapshot.in_seq() > session.in_seq)) {
    checked = absl::InvalidArgumentError(absl::StrCat(
        "snapshot in_seq ", snapshot.in_seq(), " is outside .in (0 to ", session.in_seq, ")"));
  }
  if (checked.ok() && (snapshot.out_seq() < 0 || snapshot.out_seq() > session.out_seq)) {
    checked = absl::InvalidArgumentError(absl::StrCat("snapshot out_seq ", snapshot.out_seq(),
                                                      " is outside the stored .out (0 to ",
                                                      session.out_seq, ")"));
  }
  if (!checked.ok()) {
    RefuseRunWrite(conn, *run, "bad-snapshot", std::string(checked.message()));
    return;
  }
  if (snapshot.in_seq() > session.row.snapshot_in_seq) session.failures = 0;  // progress
  session.row.snapshot_json = snapshot.snapshot_json();
  session.row.snapshot_in_seq = snapshot.in_seq();
  session.row.snapshot_out_seq = snapshot.out_seq();
  SaveSession(session);
}

void Orchestrator::OnRunFinished(Conn& conn, const v1::RunFinished& finished) {
  Run* run = OwnedRun(conn, finished.run_id(), finished.lease_token());
  if (run == nullptr) return;
  RunState state = RunState::kExited;
  switch (finished.end()) {
    case v1::RUN_END_SUSPENDED:
      state = RunState::kSuspended;
      break;
    case v1::RUN_END_FAILED:
      // A run a client cancelled that then fails retryably (its worker handing it back on a
      // drain, say) ends cancelled: the cancel was acknowledged, a retry would undo it.
      state =
          finished.retryable() && run->cancel_requested ? RunState::kCancelled : RunState::kFailed;
      break;
    case v1::RUN_END_CANCELLED:
      state = RunState::kCancelled;
      break;
    default:
      break;
  }
  std::string run_id = run->row.run_id;
  int64_t out_seq = sessions_[run->row.chat_id]->out_seq;
  EndRun(*run, state, finished);
  v1::GatewayFrame ack;
  ack.mutable_ack()->set_run_id(run_id);
  ack.mutable_ack()->set_out_seq(out_seq);
  ack.mutable_ack()->set_run_ended(true);
  Send(conn, std::move(ack));
}

void Orchestrator::Disconnected(Conn& conn) {
  conns_.erase(&conn);
  workers_.Add(-1);
  free_credit_.Add(-conn.credit);
  for (const std::string& run_id : conn.runs) {
    Run& run = *runs_[run_id];
    run.conn = nullptr;
    // Not accepted yet: straight back to the queue. Running: its lease decides; the worker
    // may reconnect and rebind it before then.
    if (run.state == RunState::kAssigned) Requeue(run);
  }
  conn.runs.clear();
  LogJson("info", "worker disconnected",
          {{"worker_id", conn.worker_id}, {"connection_id", conn.id}});
  Dispatch();
}

// ---- session rules ----------------------------------------------------------------------------

absl::Status Orchestrator::Boot(Session& session, BootTrigger trigger, std::string payload_json,
                                int attempt) {
  absl::StatusOr<int64_t> number = store_.NextRunNumber();
  if (!number.ok()) return number.status();
  auto run = std::make_unique<Run>();
  RunRow& row = run->row;
  row.run_id = absl::StrCat("run_", *number);
  row.chat_id = session.row.chat_id;
  row.agent = session.row.agent;
  row.attempt = attempt;
  run->trigger = trigger;
  run->state = RunState::kQueued;
  row.trigger = Word(trigger);
  row.state = Word(RunState::kQueued);
  row.payload_json = std::move(payload_json);
  row.previous_run_id = session.row.run_id;
  row.created_ms = UnixMs(clock_.Now());
  run->queued_at = clock_.Now();
  absl::Status saved = store_.PutRun(row);
  if (!saved.ok()) return saved;
  session.row.run_id = row.run_id;
  session.state = SessionState::kLive;
  session.row.runs += 1;
  session.live_run = row.run_id;
  SaveSession(session);
  queue_.push_back(row.run_id);
  live_runs_.Add(1);
  runs_[row.run_id] = std::move(run);
  Dispatch();
  return absl::OkStatus();
}

absl::Status Orchestrator::BootContinuation(Session& session, bool resume, int attempt) {
  return Boot(session, resume ? BootTrigger::kResume : BootTrigger::kContinuation,
              session.row.base_payload_json, attempt);
}

void Orchestrator::Dispatch() {
  absl::Time now = clock_.Now();
  for (auto it = queue_.begin(); it != queue_.end();) {
    Run& run = *runs_[*it];
    if (run.not_before > now) {
      ++it;
      continue;
    }
    Conn* best = nullptr;
    for (Conn* conn : conns_) {
      if (conn->closed || conn->draining || conn->credit <= 0 ||
          conn->agents.count(run.row.agent) == 0) {
        continue;
      }
      if (Full(*conn)) {
        conn->held_back = true;  // assigned more once its queue has drained
        continue;
      }
      if (best == nullptr || conn->credit > best->credit) best = conn;
    }
    if (best == nullptr) {
      NoteWhyQueued(run);
      ++it;
      continue;
    }
    if (!Assign(run, *best)) return;  // the store fails: the next tick tries again
    it = queue_.erase(it);
  }
}

void Orchestrator::NoteWhyQueued(Run& run) {
  // Not an error at CreateSession (workers may start after clients, runs end and free slots),
  // but a run that cannot be placed must not look like one that merely waits its turn: ListRuns,
  // Get and the metrics say why. Only called when no worker can take it now, so a hosting
  // worker means every hosting worker is full (no credit) or draining. The words hold no counts,
  // so the row is saved when the reason changes, not each time a run ends elsewhere.
  bool hosted = false;
  for (Conn* conn : conns_) hosted = hosted || (!conn->closed && conn->agents.count(run.row.agent));
  std::string reason = hosted ? "no-capacity" : "unknown-agent";
  if (run.row.reason == reason) return;  // the words follow from the reason and the agent
  std::string error =
      hosted ? absl::StrCat("every connected worker hosting agent ", Quoted(run.row.agent),
                            " is full or draining (its capacity, or --max_runs_per_worker, is "
                            "reached); the run waits in the queue for a free slot")
             : absl::StrCat("no connected worker hosts agent ", Quoted(run.row.agent),
                            "; the run waits in the queue until one does");
  run.row.reason = std::move(reason);
  run.row.error = std::move(error);
  SaveRun(run);
}

bool Orchestrator::Assign(Run& run, Conn& conn) {
  absl::StatusOr<int64_t> token = store_.NextLeaseToken();
  if (!token.ok()) {
    LogJson("error", "store: no lease token", {{"error", token.status().ToString()}});
    return false;
  }
  Session& session = *sessions_[run.row.chat_id];
  run.row.lease_token = *token;
  run.state = RunState::kAssigned;
  run.row.worker_id = conn.worker_id;
  run.row.reason.clear();  // why it was queued (NoteWhyQueued)
  run.row.error.clear();
  run.conn = &conn;
  run.accept_by = clock_.Now() + options_.accept_deadline;
  conn.credit -= 1;
  free_credit_.Add(-1);
  conn.runs.insert(run.row.run_id);
  SaveRun(run);
  runs_started_.Add(1);

  v1::GatewayFrame frame;
  v1::AssignRun& assign = *frame.mutable_assign_run();
  assign.set_run_id(run.row.run_id);
  assign.set_attempt(run.row.attempt);
  assign.set_lease_token(run.row.lease_token);
  assign.set_agent(run.row.agent);
  assign.set_chat_id(run.row.chat_id);
  assign.set_previous_run_id(run.row.previous_run_id);
  assign.set_traceparent(session.row.traceparent);
  assign.set_queued_at_unix_ms(run.row.created_ms);
  // A fresh run gets every `.in` record as a Deliver; a continuation gets the ones after its
  // snapshot in the assignment itself.
  run.sent_in = 0;
  bool continuation =
      run.trigger == BootTrigger::kContinuation || run.trigger == BootTrigger::kResume;
  if (!continuation) {
    assign.set_trigger(ToProto(run.trigger));
    assign.set_payload_json(run.row.payload_json);
  } else {
    // As LocalSessions: a resume carries on the suspended run's wait; it is not a continuation.
    assign.set_continuation(run.trigger == BootTrigger::kContinuation);
    assign.set_resume(run.trigger == BootTrigger::kResume);
    assign.set_snapshot_json(session.row.snapshot_json);
    auto parsed = [](const std::string& text) {
      absl::StatusOr<Json> json = text.empty() ? absl::StatusOr<Json>(Json()) : ParseJson(text);
      return json.ok() ? *std::move(json) : Json();
    };
    // The first run's boot message never went through `.in`: until a snapshot holds it, the
    // next run boots as the first did (a head start waits for its signal again), so it is not
    // lost.
    NextBoot next =
        NextBootOf(session.row.head_start_json.empty() ? "" : "handover-prepare",
                   parsed(run.row.payload_json), parsed(session.row.boot_message_json),
                   parsed(session.row.head_start_json), parsed(session.row.snapshot_json));
    if (!next.trigger.empty()) assign.set_trigger(TriggerFromName(next.trigger));
    assign.set_payload_json(DumpJson(next.payload));
    absl::StatusOr<std::vector<OutRow>> tail =
        store_.ReadOut(session.row.chat_id, session.row.snapshot_out_seq, kAllRows);
    if (tail.ok()) {
      for (const OutRow& out : *tail) assign.add_out_tail()->ParseFromString(out.record);
    }
    // The records after the snapshot ride in the assignment, where the run's recovery sees them
    // all at boot: it pairs the tail's answers with their messages, and matches a boot message
    // against `.in`. With nothing to pair (no tail, no boot message) only a quarter of the
    // outbox bound of them does, and the rest follow as Deliver frames (DeliverPending), which
    // wait in the store while the outbox is half full: a long backlog neither fills the
    // orchestrator's memory at once nor keeps the worker decoding one assignment for seconds.
    bool whole = !tail.ok() || !tail->empty() || next.trigger == "submit-message" ||
                 next.trigger == "regenerate-message";
    int64_t budget = whole ? std::numeric_limits<int64_t>::max() : options_.max_outbox_bytes / 4;
    run.sent_in = InFloor(session);
    for (bool more = true; more;) {
      absl::StatusOr<std::vector<InRow>> page =
          store_.ReadIn(session.row.chat_id, run.sent_in, kInPage);
      if (!page.ok() || page->empty()) break;
      for (const InRow& in : *page) {
        budget -= static_cast<int64_t>(in.body_json.size() + in.client_record_id.size());
        if (budget < 0) {
          more = false;
          break;
        }
        v1::InRecord& r = *assign.add_pending();
        r.set_seq(in.seq);
        r.set_body_json(in.body_json);
        r.set_client_record_id(in.client_record_id);
        r.set_appended_at_unix_ms(in.appended_ms);
        run.sent_in = in.seq;
      }
    }
  }
  assign.set_out_seq(session.out_seq);
  // What does not fit one frame follows in AssignMore frames, directly after it.
  for (v1::GatewayFrame& part : FrameAssignment(std::move(assign), conn.frame_bytes)) {
    Send(conn, std::move(part));
  }
  DeliverPending(run);
  return true;
}

void Orchestrator::DeliverPending(Run& run) {
  if (run.conn == nullptr || run.state == RunState::kQueued) return;
  Session& session = *sessions_[run.row.chat_id];
  // A page at a time, until the outbox holds half its bound: a long backlog of large records is
  // read from the store as the worker takes it, not all of it each time the queue drains.
  while (session.in_seq > run.sent_in) {
    if (Full(*run.conn)) {
      run.conn->held_back = true;  // the writer delivers the rest once the queue has drained
      return;
    }
    absl::StatusOr<std::vector<InRow>> rows =
        store_.ReadIn(session.row.chat_id, run.sent_in, kInPage);
    if (!rows.ok()) {
      LogJson("error", "store: reading .in failed", {{"error", rows.status().ToString()}});
      return;
    }
    if (rows->empty()) return;
    for (const InRow& row : *rows) {
      if (Full(*run.conn)) {
        run.conn->held_back = true;
        return;
      }
      v1::GatewayFrame frame;
      v1::Deliver& deliver = *frame.mutable_deliver();
      deliver.set_run_id(run.row.run_id);
      deliver.set_lease_token(run.row.lease_token);
      v1::InRecord& r = *deliver.mutable_record();
      r.set_seq(row.seq);
      r.set_body_json(row.body_json);
      r.set_client_record_id(row.client_record_id);
      r.set_appended_at_unix_ms(row.appended_ms);
      Send(*run.conn, std::move(frame));
      run.sent_in = row.seq;
    }
  }
}

void Orchestrator::Requeue(Run& run, absl::Duration delay) {
  run.not_before = clock_.Now() + delay;
  if (run.conn != nullptr) run.conn->runs.erase(run.row.run_id);
  run.conn = nullptr;
  run.state = RunState::kQueued;
  run.row.worker_id.clear();
  run.accept_by = absl::InfiniteFuture();
  run.lease_until = absl::InfiniteFuture();
  SaveRun(run);
  queue_.push_front(run.row.run_id);
}

void Orchestrator::EndRun(Run& run, RunState state, const v1::RunFinished& how) {
  absl::Time now = clock_.Now();
  if (run.conn != nullptr) run.conn->runs.erase(run.row.run_id);
  run.conn = nullptr;
  queue_.erase(std::remove(queue_.begin(), queue_.end(), run.row.run_id), queue_.end());
  run.state = state;
  run.row.reason = how.reason();
  run.row.error = how.error();
  run.row.ended_ms = UnixMs(now);
  SaveRun(run);
  live_runs_.Add(-1);
  runs_ended_.Add(1);
  LogJson("info", "run ended",
          {{"run_id", run.row.run_id},
           {"chat_id", run.row.chat_id},
           {"attempt", run.row.attempt},
           {"state", Word(state)},
           {"reason", how.reason()}});

  Session& session = *sessions_[run.row.chat_id];
  session.live_run.clear();
  bool retry = (state == RunState::kFailed && how.retryable()) ||
               (state == RunState::kLost && !run.cancel_requested);
  // A worker draining hands its runs back: no fault of the chat's, so no cost to its budget.
  bool handed_back = state == RunState::kFailed && how.reason() == "worker-shutdown";
  if (retry && !handed_back) ++session.failures;
  if (retry && session.failures >= options_.max_attempts) {
    // A record that kills every worker it reaches must not take down the whole fleet. A chat
    // that answers turns between faults keeps going: only failures in a row count.
    retry = false;
    run.row.error =
        absl::StrCat("gave up after ", session.failures,
                     " failures in a row: ", how.error().empty() ? how.reason() : how.error());
    SaveRun(run);
    session.failures = 0;  // the next message gets a whole budget again
    session.state = SessionState::kFailed;
    AnswerWithError(session, run.row.error);
    SaveSession(session);
    return;
  }
  if (retry) {
    absl::Status booted = BootContinuation(session, false, run.row.attempt + 1);
    if (booted.ok()) return;
    LogJson("error", "booting a retry failed", {{"chat_id", session.row.chat_id}});
  }
  if (state == RunState::kSuspended) {
    session.state = SessionState::kSuspended;
    session.row.resume_deadline_ms = how.resume_deadline_unix_ms();
    resume_deadlines_.emplace(session.row.resume_deadline_ms, session.row.chat_id);
  } else if (state == RunState::kFailed) {
    session.state = SessionState::kFailed;
  } else {
    session.state = how.reason() == "close" ? SessionState::kClosed : SessionState::kExited;
  }
  SaveSession(session);
  if (session.state == SessionState::kClosed) WakeReaders(session);  // followers end
  BootIfUnanswered(session, how.reason() == "upgrade");
}

int64_t Orchestrator::InFloor(const Session& session) const {
  return std::max(session.row.snapshot_in_seq, session.row.failed_in_seq);
}

void Orchestrator::AnswerWithError(Session& session, const std::string& error) {
  const std::string& chat_id = session.row.chat_id;
  auto parsed = [](const std::string& text) {
    absl::StatusOr<Json> json = text.empty() ? absl::StatusOr<Json>(Json()) : ParseJson(text);
    return json.ok() ? *std::move(json) : Json();
  };
  // The messages no run answered, oldest first: the boot message (seq 0) while no snapshot
  // holds it, then the `.in` messages after the floor.
  std::vector<int64_t> unanswered;
  Json boot = parsed(session.row.boot_message_json);
  if (boot.is_object() && !SnapshotHolds(parsed(session.row.snapshot_json), boot)) {
    unanswered.push_back(0);
  }
  absl::StatusOr<std::vector<InRow>> in = store_.ReadIn(chat_id, InFloor(session), kAllRows);
  if (in.ok()) {
    for (const InRow& row : *in) {
      absl::StatusOr<InRecord> record = DecodeInRecord(row.seq, row.body_json);
      if (record.ok() && NeedsAnswer(*record)) unanswered.push_back(row.seq);
    }
  }
  std::vector<OutRecord> records;
  // The dead run's answer left open (a `start` with no end, not retracted yet).
  absl::StatusOr<std::vector<OutRow>> tail =
      store_.ReadOut(chat_id, session.row.snapshot_out_seq, kAllRows);
  if (tail.ok()) {
    std::string open_id;
    int64_t open_from = 0;
    std::set<int64_t> retracted;
    for (const OutRow& row : *tail) {
      v1::OutRecord proto;
      if (!proto.ParseFromString(row.record)) continue;
      absl::StatusOr<OutRecord> r = OutRecordFromProto(proto);
      if (!r.ok()) continue;
      if (r->is_control) {
        int64_t from = 0;
        if (r->control == kRetract && absl::SimpleAtoi(r->Header("from-seq"), &from)) {
          retracted.insert(from);
        }
        continue;
      }
      std::string type = r->Type();
      if (type == "start") {
        open_id = StringField(r->chunk, "messageId");
        open_from = r->seq;
      } else if (type == "finish" || type == "abort") {
        open_id.clear();
      }
    }
    if (!open_id.empty() && retracted.count(open_from) == 0) {
      records.push_back(OutRecord::Control(kRetract, {{"message-id", open_id},
                                                      {"from-seq", absl::StrCat(open_from)},
                                                      {"reason", "chat-failed"}}));
    }
  }
  for (int64_t seq : unanswered) {
    records.push_back(OutRecord::Chunk(
        Json{{"type", "error"}, {"errorText", absl::StrCat("The chat failed: ", error)}}));
    records.push_back(
        OutRecord::Control(kTurnComplete, {{"session-in-event-id", absl::StrCat(seq)},
                                           {"session-in-consumed-id", absl::StrCat(seq)}}));
  }
  std::vector<OutRow> rows;
  int64_t seq = session.out_seq;
  for (OutRecord& r : records) {
    r.seq = ++seq;
    rows.push_back(OutRow{r.seq, OutRecordToProto(r).SerializeAsString()});
  }
  if (!rows.empty()) {
    absl::StatusOr<int64_t> stored = store_.AppendOut(chat_id, rows);
    if (!stored.ok()) {
      LogJson("error", "store: writing a failed chat's answers failed",
              {{"chat_id", chat_id}, {"error", stored.status().ToString()}});
      return;
    }
    out_records_.Add(*stored - session.out_seq);
    session.out_seq = *stored;
    session.last_out_at = clock_.Now();
    for (const OutRecord& r : records) session.Stored(r);
    WakeReaders(session);
  }
  // Given up on: no later run is handed these messages (or the boot message) again.
  if (!unanswered.empty() && unanswered.back() > 0) session.row.failed_in_seq = unanswered.back();
  if (!unanswered.empty() && unanswered.front() == 0) session.row.boot_message_json.clear();
  session.row.handover_deadline_ms = 0;
}

void Orchestrator::TimeOutSuspendedRun(const Session& session) {
  absl::StatusOr<std::vector<RunRow>> runs = store_.ListRuns(session.row.chat_id);
  if (!runs.ok()) {
    LogJson("error", "store: reading runs failed",
            {{"chat_id", session.row.chat_id}, {"error", runs.status().ToString()}});
    return;
  }
  for (RunRow& row : *runs) {
    if (row.run_id != session.row.run_id || RunStateOf(row.state) != RunState::kSuspended) {
      continue;
    }
    row.state = Word(RunState::kExited);
    row.reason = "timeout";
    if (absl::Status saved = store_.PutRun(row); !saved.ok()) {
      LogJson("error", "store: saving a run failed",
              {{"run_id", row.run_id}, {"error", saved.ToString()}});
    }
  }
}

void Orchestrator::BootIfUnanswered(Session& session, bool upgrade) {
  if (session.state != SessionState::kSuspended && session.state != SessionState::kExited) return;
  // Records that arrived while the run was ending, or that it left unanswered, start the next
  // run at once (one live run per chat). An upgrade that left the boot message unanswered, too.
  bool unanswered = false;
  absl::StatusOr<std::vector<InRow>> rows =
      store_.ReadIn(session.row.chat_id, InFloor(session), kAllRows);
  if (rows.ok()) {
    for (const InRow& row : *rows) {
      absl::StatusOr<InRecord> record = DecodeInRecord(row.seq, row.body_json);
      if (record.ok() && NeedsAnswer(*record)) unanswered = true;
    }
  }
  if (upgrade && !session.row.boot_message_json.empty()) {
    absl::StatusOr<Json> snapshot = ParseJson(session.row.snapshot_json);
    absl::StatusOr<Json> message = ParseJson(session.row.boot_message_json);
    if (message.ok() && !SnapshotHolds(snapshot.ok() ? *snapshot : Json(), *message)) {
      unanswered = true;
    }
  }
  if (!unanswered) return;
  bool resume = session.state == SessionState::kSuspended &&
                UnixMs(clock_.Now()) < session.row.resume_deadline_ms;
  absl::Status booted = BootContinuation(session, resume, 1);
  if (!booted.ok()) {
    LogJson("error", "booting a continuation failed",
            {{"chat_id", session.row.chat_id}, {"error", booted.ToString()}});
  }
}

void Orchestrator::Send(Conn& conn, v1::GatewayFrame frame) {
  if (conn.closed) return;
  int64_t size = static_cast<int64_t>(frame.ByteSizeLong());
  if (!IsBulk(frame)) {
    // Assignments and deliveries hold back at half the bound (Full); the frames that cannot
    // wait filling the other half mean a worker that no longer reads.
    int64_t urgent = conn.unsent_urgent_bytes.fetch_add(size) + size;
    if (urgent > options_.max_outbox_bytes / 2) {
      StreamStalled(conn, absl::StrCat(urgent, " bytes of acknowledgements and answers wait, over ",
                                       "half the bound of ", options_.max_outbox_bytes));
      return;
    }
  }
  conn.unsent_bytes.fetch_add(size);
  conn.outbox.push_back(std::move(frame));
}

bool Orchestrator::Full(const Conn& conn) const {
  return conn.unsent_bytes.load() > options_.max_outbox_bytes / 2;
}

void Orchestrator::StreamStalled(Conn& conn, const std::string& why) {
  LogJson("warn", "worker stopped reading its stream: closing it",
          {{"worker_id", conn.worker_id}, {"connection_id", conn.id}, {"why", why}});
  streams_stalled_.Add(1);
  // As any broken stream: its runs stay its own until their leases run out, runs not accepted
  // yet queue again once the stream has ended (Disconnected).
  conn.closed = true;
  conn.outbox.clear();
  conn.context->TryCancel();
}

void Orchestrator::SendCancel(Run& run) {
  v1::GatewayFrame frame;
  frame.mutable_cancel_run()->set_run_id(run.row.run_id);
  frame.mutable_cancel_run()->set_lease_token(run.row.lease_token);
  frame.mutable_cancel_run()->set_reason("cancelled by a client");
  Send(*run.conn, std::move(frame));
}

void Orchestrator::Revoke(Conn& conn, const std::string& run_id, int64_t lease_token,
                          std::string reason) {
  v1::GatewayFrame frame;
  v1::LeaseRevoked& revoked = *frame.mutable_lease_revoked();
  revoked.set_run_id(run_id);
  revoked.set_lease_token(lease_token);
  revoked.set_reason(std::move(reason));
  Send(conn, std::move(frame));
}

// ---- timers -----------------------------------------------------------------------------------

void Orchestrator::TimerLoop() {
  // Deadlines are seconds apart by default; a tick a tenth of the shortest keeps them close.
  absl::Duration period =
      std::min({options_.accept_deadline, options_.heartbeat_interval, options_.lease_ttl}) / 10;
  period = std::clamp(period, absl::Milliseconds(5), absl::Milliseconds(500));
  absl::MutexLock lock(&mu_);
  while (!shutdown_) {
    mu_.AwaitWithTimeout(absl::Condition(&shutdown_), period);
    if (!shutdown_) TickLocked(clock_.Now());
  }
}

void Orchestrator::Tick(absl::Time now) {
  absl::MutexLock lock(&mu_);
  TickLocked(now);
}

void Orchestrator::TickLocked(absl::Time now) {
  absl::Duration silence = options_.heartbeat_interval * options_.heartbeat_misses;
  for (Conn* conn : conns_) {
    if (conn->closed) continue;
    int64_t writing_since = conn->writing_since_ns.load();
    if (now - conn->last_frame > silence) {
      LogJson("warn", "worker silent: closing its stream", {{"worker_id", conn->worker_id}});
      conn->closed = true;
      conn->context->TryCancel();
    } else if (writing_since != 0 && now - absl::FromUnixNanos(writing_since) > silence) {
      // It heartbeats but reads nothing: the frame waits as long as a silent worker would.
      StreamStalled(*conn, absl::StrCat("one write has been blocked for more than ",
                                        absl::FormatDuration(silence)));
    }
  }
  // Following Reads whose chat token expired: a waiting one is woken to end; a busy one ends at
  // its next record.
  for (auto it = read_expiries_.begin(); it != read_expiries_.end() && it->first <= now; ++it) {
    if (it->second->state == Follower::State::kWaiting) Wake(*it->second);
  }
  std::vector<Run*> late;
  std::vector<Run*> expired;
  for (auto& [id, run] : runs_) {
    if (run->state == RunState::kAssigned && now > run->accept_by) late.push_back(run.get());
    if (run->state == RunState::kRunning && now > run->lease_until) expired.push_back(run.get());
  }
  for (Run* run : late) {
    LogJson("warn", "assignment not accepted in time: back to the queue",
            {{"run_id", run->row.run_id}, {"worker_id", run->row.worker_id}});
    if (run->conn != nullptr) {
      Revoke(*run->conn, run->row.run_id, run->row.lease_token, "accept deadline passed");
    }
    Requeue(*run);
  }
  for (Run* run : expired) {
    LogJson("warn", "lease expired: the run is lost",
            {{"run_id", run->row.run_id}, {"worker_id", run->row.worker_id}});
    if (run->conn != nullptr) {
      Revoke(*run->conn, run->row.run_id, run->row.lease_token, "lease expired");
    }
    v1::RunFinished how;
    how.set_reason("lease-expired");
    EndRun(*run, run->cancel_requested ? RunState::kCancelled : RunState::kLost, how);
  }
  // Suspended chats whose resume deadline passed count as exited (the next message boots a
  // fresh continuation either way; this is what Get reports), and their suspended run has
  // ended: exited, reason "timeout" (what ListRuns reports), as in-process.
  while (!resume_deadlines_.empty() && resume_deadlines_.begin()->first <= UnixMs(now)) {
    auto [deadline, chat_id] = *resume_deadlines_.begin();
    resume_deadlines_.erase(resume_deadlines_.begin());
    Session& session = *sessions_[chat_id];
    if (session.state == SessionState::kSuspended && session.row.resume_deadline_ms == deadline) {
      session.state = SessionState::kExited;
      SaveSession(session);
      TimeOutSuspendedRun(session);
    }
  }
  // Head starts whose handover window passed with no signal: the run answers on its own.
  while (!handover_deadlines_.empty() && handover_deadlines_.begin()->first <= UnixMs(now)) {
    auto [deadline, chat_id] = *handover_deadlines_.begin();
    handover_deadlines_.erase(handover_deadlines_.begin());
    Session& session = *sessions_[chat_id];
    if (session.row.handover_deadline_ms == deadline) ExpireHandover(session);
  }
  // Ended runs live on in the store (ListRuns reads it); memory keeps the live ones only.
  for (auto it = runs_.begin(); it != runs_.end();) {
    it = IsLive(it->second->state) ? std::next(it) : runs_.erase(it);
  }
  Dispatch();  // runs whose refusal delay has passed
}

}  // namespace baton::orchestrator
