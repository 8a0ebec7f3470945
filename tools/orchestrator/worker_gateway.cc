// File: tools/orchestrator/worker_gateway.cc
//
// The WorkerGateway edge and the worker streams: the service (who may call, then the core), a
// Connect stream from its Hello through its writer thread and its read loop to its end
// (Disconnected), and what each frame a worker sends does (OnFrame and the On* handlers).
#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/base/log.h"
#include "runtime/base/parse_errors.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/snapshot_delta.h"
#include "runtime/protocol/wire.h"
#include "tools/orchestrator/orchestrator.h"
#include "tools/orchestrator/orchestrator_state.h"
#include "tools/orchestrator/states.h"

namespace baton::orchestrator {

namespace {

// ---- limits (docs/bad-input.md; the bounds: orchestrator_state.h) -----------------------------

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

// The first frame of a Connect stream: a Hello within the limits, of a protocol version this
// orchestrator speaks.
absl::Status CheckFirstFrame(const v1::WorkerFrame& first) {
  if (!first.has_hello()) return Invalid("the first frame of a Connect stream must be Hello");
  if (absl::Status s = CheckHello(first.hello()); !s.ok()) return s;
  if (first.hello().protocol_version() != v1::PROTOCOL_VERSION_1) {
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        "unsupported protocol version; this orchestrator speaks 1");
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

}  // namespace

// ---- the WorkerGateway service ----------------------------------------------------------------

grpc::Status Orchestrator::Gateway::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>* stream) {
  if (absl::Status s = o_.Authorize(*context, Scope::kWorker, ""); !s.ok()) return ToGrpc(s);
  return ToGrpc(o_.Connect(context, stream));
}

grpc::Status Orchestrator::Gateway::GetServerInfo(grpc::ServerContext* context,
                                                  const v1::GetServerInfoRequest*,
                                                  v1::ServerInfo* info) {
  if (absl::Status s = o_.Authorize(*context, Scope::kWorker, ""); !s.ok()) return ToGrpc(s);
  info->set_protocol_version(v1::PROTOCOL_VERSION_1);
  info->set_build_id(o_.options_.build_id);
  info->set_store(o_.store_.Describe());
  info->set_max_in_record_bytes(kMaxInRecordBytes);
  return grpc::Status::OK;
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
  if (absl::Status s = CheckFirstFrame(first); !s.ok()) return s;
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
  std::thread writer([this, &conn, stream] { WriteFrames(conn, stream); });
  bool goodbye = ReadFrames(conn, stream);
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

void Orchestrator::WriteFrames(
    Conn& conn, grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>* stream) {
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
}

bool Orchestrator::ReadFrames(Conn& conn,
                              grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>* stream) {
  v1::WorkerFrame frame;
  while (stream->Read(&frame)) {
    absl::MutexLock lock(&mu_);
    // A stream this side closed (the worker dialed again, it went silent, or it was reset) is
    // read no more: a frame still buffered on it would act for a worker that has moved on, e.g.
    // accept a run its new stream did not claim, leaving it running nowhere until its lease ran
    // out.
    if (conn.closed) break;
    conn.last_frame = clock_.Now();
    if (frame.has_goodbye()) return true;
    // A stream being reset (the store failed a batch, the orchestrator is stopping) is no longer
    // listened to: frames already on their way could refer to output that was not stored (a
    // snapshot would then look bad), and the worker sends again after its reconnect whatever
    // was not acknowledged.
    if (conn.closed) continue;
    OnFrame(conn, frame);
  }
  return false;
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
  welcome.set_snapshot_deltas(true);  // docs/protocol.md, Snapshots
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
    // The worker forgets its snapshots up to the stored one and sends the rest again.
    out.set_snapshot_version(sessions_[run.row.chat_id]->snapshot.version);
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
  // A continuation boots from the stored snapshot: one no worker can read, whose cursors point
  // past the logs, or a delta that does not change the stored version would fail every later
  // run of the chat (runtime/protocol/snapshot_delta.h says what is refused, in which order).
  SnapshotBounds bounds;
  bounds.in_seq = session.in_seq;
  bounds.out_seq = session.out_seq;
  bounds.max_bytes = options_.max_snapshot_bytes;
  absl::StatusOr<std::optional<SnapshotDelta>> decoded =
      DecodeSnapshotUpdate(snapshot, session.snapshot, bounds);
  if (!decoded.ok()) {
    RefuseRunWrite(conn, *run, "bad-snapshot", std::string(decoded.status().message()));
    return;
  }
  // Nothing to store for a re-send of a version stored before (a reconnect); it is acknowledged
  // again below, as its first acknowledgement may have died with the old stream.
  if (decoded->has_value()) {
    SnapshotDelta& delta = **decoded;
    // What the turn changed, in one transaction, on the version memory holds: memory changes only
    // once the store has it.
    absl::Status stored =
        store_.PutSnapshot(session.row.chat_id, session.snapshot.version, SnapshotWriteOf(delta));
    if (!stored.ok()) {
      // Not acknowledged. The stream is reset, as for a failed `.out` append, so the frames
      // after it (its RunFinished) are not taken either: the worker reconnects and sends again
      // what was not stored.
      LogJson("error", "store: saving a snapshot failed; resetting the worker's stream",
              {{"run_id", run->row.run_id}, {"error", stored.ToString()}});
      conn.closed = true;
      conn.context->TryCancel();
      return;
    }
    if (delta.in_seq > session.row.snapshot_in_seq) session.failures = 0;  // progress
    session.row.snapshot_in_seq = delta.in_seq;
    session.row.snapshot_out_seq = delta.out_seq;
    session.row.snapshot_json.clear();  // PutSnapshot emptied a whole one stored before
    ApplySnapshotDelta(session.snapshot, std::move(delta));
  }
  // A worker that numbers its snapshots keeps them until they are acknowledged; one that does
  // not (version 0) is sent nothing, as before.
  if (snapshot.version() != 0) {
    v1::GatewayFrame ack;
    ack.mutable_ack()->set_run_id(run->row.run_id);
    ack.mutable_ack()->set_out_seq(session.out_seq);
    ack.mutable_ack()->set_snapshot_version(session.snapshot.version);
    Send(conn, std::move(ack));
  }
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

}  // namespace baton::orchestrator
