// File: tools/orchestrator/orchestrator.cc
//
// The orchestrator's core between its two edges (sessions_service.cc, worker_gateway.cc): its
// lifecycle (construction, Load, Shutdown, the metrics), who a caller is (Authorize), the
// session rules (a run booted, dispatched to a worker and assigned, `.in` delivered, a run's end
// and what it does to its chat), the frames sent to a worker stream, and the timer thread.
#include "tools/orchestrator/orchestrator.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/base/log.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/snapshot_delta.h"
#include "runtime/protocol/wire.h"
#include "tools/orchestrator/orchestrator_state.h"
#include "tools/orchestrator/states.h"

namespace baton::orchestrator {

namespace {

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

// `.in` rows read from the store at a time when they go to a worker as it takes them.
constexpr size_t kInPage = 8;

// The JSON of `text`; null when it is empty or does not parse.
Json ParsedOrNull(const std::string& text) {
  absl::StatusOr<Json> json = text.empty() ? absl::StatusOr<Json>(Json()) : ParseJson(text);
  return json.ok() ? *std::move(json) : Json();
}

// The retract of the answer a dead run left open in `tail` (a `start` with no end, not
// retracted yet); none when it left none open.
std::optional<OutRecord> RetractOfOpenAnswer(const std::vector<OutRow>& tail) {
  std::string open_id;
  int64_t open_from = 0;
  std::set<int64_t> retracted;
  for (const OutRow& row : tail) {
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
    const Json chunk = r->chunk();
    const std::string type = StringField(chunk, "type");
    if (type == "start") {
      open_id = StringField(chunk, "messageId");
      open_from = r->seq;
    } else if (type == "finish" || type == "abort") {
      open_id.clear();
    }
  }
  if (open_id.empty() || retracted.count(open_from) != 0) return std::nullopt;
  return OutRecord::Control(
      kRetract,
      {{"message-id", open_id}, {"from-seq", absl::StrCat(open_from)}, {"reason", "chat-failed"}});
}

}  // namespace

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
    if (absl::Status loaded = LoadSnapshotOf(*session); !loaded.ok()) return loaded;
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

absl::Status Orchestrator::LoadSnapshotOf(Session& session) {
  const std::string& chat_id = session.row.chat_id;
  absl::StatusOr<std::optional<StoredSnapshot>> stored = store_.LoadSnapshot(chat_id);
  if (!stored.ok()) return stored.status();
  if (stored->has_value()) {
    StoredSnapshot& snapshot = **stored;
    session.snapshot.version = snapshot.version;
    session.snapshot.header_json = std::move(snapshot.header_json);
    session.snapshot.entries.reserve(snapshot.entries.size());
    session.snapshot.ids.reserve(snapshot.entries.size());
    for (SnapshotEntryRow& entry : snapshot.entries) {
      session.snapshot.ids.push_back(std::move(entry.message_id));
      session.snapshot.entries.push_back(std::move(entry.entry_json));
    }
    session.snapshot.bytes = SnapshotBytes(session.snapshot);
    session.row.snapshot_json.clear();  // superseded (PutSnapshot emptied it in the store)
    return absl::OkStatus();
  }
  if (session.row.snapshot_json.empty()) return absl::OkStatus();
  // Stored whole by an orchestrator before snapshots were kept by entry: converted in one
  // transaction that also empties the session row's copy, so a crash leaves one or the other.
  absl::StatusOr<SnapshotDelta> split = SplitSnapshotJson(session.row.snapshot_json);
  if (!split.ok()) {
    // As before: it is handed to the next run as it is, which refuses it (bad-snapshot).
    LogJson("warn", "a snapshot stored whole does not decode; kept as it is",
            {{"chat_id", chat_id}, {"error", std::string(split.status().message())}});
    return absl::OkStatus();
  }
  split->in_seq = session.row.snapshot_in_seq;
  split->out_seq = session.row.snapshot_out_seq;
  if (absl::Status put = store_.PutSnapshot(chat_id, 0, SnapshotWriteOf(*split)); !put.ok()) {
    return put;
  }
  session.row.snapshot_json.clear();
  ApplySnapshotDelta(session.snapshot, *std::move(split));
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

// ---- callers (both services) ------------------------------------------------------------------

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
  // The run and what its session says of it, in one commit.
  SessionRow session_row = session.row;
  session_row.run_id = row.run_id;
  session_row.state = Word(SessionState::kLive);
  session_row.runs += 1;
  absl::Status saved = store_.PutRunAndSession(row, session_row);
  if (!saved.ok()) return saved;
  session.row = std::move(session_row);
  session.state = SessionState::kLive;
  session.live_run = row.run_id;
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
  BindRun(run, conn, *token);

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
  // The run numbers its snapshots above the stored one's (a fresh chat's: 0).
  assign.set_snapshot_version(session.snapshot.version);
  // A fresh run gets every `.in` record as a Deliver; a continuation gets the ones after its
  // snapshot in the assignment itself.
  run.sent_in = 0;
  bool continuation =
      run.trigger == BootTrigger::kContinuation || run.trigger == BootTrigger::kResume;
  if (!continuation) {
    assign.set_trigger(ToProto(run.trigger));
    assign.set_payload_json(run.row.payload_json);
  } else {
    AssignContinuation(run, session, assign);
  }
  assign.set_out_seq(session.out_seq);
  // What does not fit one frame follows in AssignMore frames, directly after it.
  for (v1::GatewayFrame& part : FrameAssignment(std::move(assign), conn.frame_bytes)) {
    Send(conn, std::move(part));
  }
  DeliverPending(run);
  return true;
}

void Orchestrator::BindRun(Run& run, Conn& conn, int64_t lease_token) {
  run.row.lease_token = lease_token;
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
}

void Orchestrator::AssignContinuation(Run& run, const Session& session, v1::AssignRun& assign) {
  // As LocalSessions: a resume carries on the suspended run's wait; it is not a continuation.
  assign.set_continuation(run.trigger == BootTrigger::kContinuation);
  assign.set_resume(run.trigger == BootTrigger::kResume);
  // The stored snapshot assembled from its entries: the document a run restores, as it was
  // when it was stored whole.
  assign.set_snapshot_json(session.SnapshotJson());
  // The first run's boot message never went through `.in`: until a snapshot holds it, the
  // next run boots as the first did (a head start waits for its signal again), so it is not
  // lost. Only the snapshot's ids are looked at, and only when there is a boot message.
  Json boot_message = ParsedOrNull(session.row.boot_message_json);
  Json snapshot_ids = boot_message.is_object() ? session.SnapshotIds() : Json();
  NextBoot next = NextBootOf(session.row.head_start_json.empty() ? "" : "handover-prepare",
                             ParsedOrNull(run.row.payload_json), boot_message,
                             ParsedOrNull(session.row.head_start_json), snapshot_ids);
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
  AddPendingIn(run, session, budget, assign);
}

void Orchestrator::AddPendingIn(Run& run, const Session& session, int64_t budget,
                                v1::AssignRun& assign) {
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

void Orchestrator::DeliverPending(Run& run, const InRow* stored) {
  if (run.conn == nullptr || run.state == RunState::kQueued) return;
  Session& session = *sessions_[run.row.chat_id];
  // A page at a time, until the outbox holds half its bound: a long backlog of large records is
  // read from the store as the worker takes it, not all of it each time the queue drains.
  while (session.in_seq > run.sent_in) {
    if (Full(*run.conn)) {
      run.conn->held_back = true;  // the writer delivers the rest once the queue has drained
      return;
    }
    if (stored != nullptr && stored->seq == run.sent_in + 1) {
      // The common case, a run that has every record before it: nothing to read back.
      Deliver(run, *stored);
      continue;
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
      Deliver(run, row);
    }
  }
}

void Orchestrator::Deliver(Run& run, const InRow& row) {
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
  // The chat's state after the run, by the rule LocalSessions applies too.
  switch (AfterRunEnds(state == RunState::kSuspended, state == RunState::kFailed, how.reason(),
                       /*unanswered=*/false, /*resumable=*/false)
              .chat) {
    case ChatAfterRun::kSuspended:
      session.state = SessionState::kSuspended;
      session.row.resume_deadline_ms = how.resume_deadline_unix_ms();
      resume_deadlines_.emplace(session.row.resume_deadline_ms, session.row.chat_id);
      break;
    case ChatAfterRun::kFailed:
      session.state = SessionState::kFailed;
      break;
    case ChatAfterRun::kClosed:
      session.state = SessionState::kClosed;
      break;
    case ChatAfterRun::kExited:
      session.state = SessionState::kExited;
      break;
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
  std::vector<int64_t> unanswered = UnansweredMessages(session);
  std::vector<OutRecord> records;
  // The dead run's answer left open (a `start` with no end, not retracted yet).
  absl::StatusOr<std::vector<OutRow>> tail =
      store_.ReadOut(chat_id, session.row.snapshot_out_seq, kAllRows);
  if (tail.ok()) {
    if (std::optional<OutRecord> retract = RetractOfOpenAnswer(*tail); retract.has_value()) {
      records.push_back(*std::move(retract));
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

std::vector<int64_t> Orchestrator::UnansweredMessages(const Session& session) {
  // The messages no run answered, oldest first: the boot message (seq 0) while no snapshot
  // holds it, then the `.in` messages after the floor.
  std::vector<int64_t> unanswered;
  Json boot = ParsedOrNull(session.row.boot_message_json);
  if (boot.is_object() && !SnapshotHolds(session.SnapshotIds(), boot)) {
    unanswered.push_back(0);
  }
  absl::StatusOr<std::vector<InRow>> in =
      store_.ReadIn(session.row.chat_id, InFloor(session), kAllRows);
  if (in.ok()) {
    for (const InRow& row : *in) {
      absl::StatusOr<InRecord> record = DecodeInRecord(row.seq, row.body_json);
      if (record.ok() && NeedsAnswer(*record)) unanswered.push_back(row.seq);
    }
  }
  return unanswered;
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
  std::vector<InRecord> after_floor;
  absl::StatusOr<std::vector<InRow>> rows =
      store_.ReadIn(session.row.chat_id, InFloor(session), kAllRows);
  if (rows.ok()) {
    for (const InRow& row : *rows) {
      absl::StatusOr<InRecord> record = DecodeInRecord(row.seq, row.body_json);
      if (record.ok()) after_floor.push_back(*std::move(record));
    }
  }
  // The snapshot's ids are read only when the rule needs them: after an upgrade with a boot
  // message.
  Json boot_message, snapshot;
  if (upgrade && !session.row.boot_message_json.empty()) {
    boot_message = ParsedOrNull(session.row.boot_message_json);
    snapshot = session.SnapshotIds();
  }
  const bool unanswered = LeftUnanswered(after_floor, upgrade, boot_message, snapshot);
  const AfterRun next =
      AfterRunEnds(session.state == SessionState::kSuspended, false, "", unanswered,
                   UnixMs(clock_.Now()) < session.row.resume_deadline_ms);
  if (next.next == NextRun::kNone) return;
  absl::Status booted = BootContinuation(session, next.next == NextRun::kResume, 1);
  if (!booted.ok()) {
    LogJson("error", "booting a continuation failed",
            {{"chat_id", session.row.chat_id}, {"error", booted.ToString()}});
  }
}

// ---- sending to worker streams ----------------------------------------------------------------

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
