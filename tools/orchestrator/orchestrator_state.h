// File: tools/orchestrator/orchestrator_state.h
//
// Inside the orchestrator (not an API; only its three sources include it): the definitions of
// what orchestrator.h declares privately, the state under mu_ (Conn, Run, Session, the Follower
// of a Read stream) and the two gRPC services, and the helpers more than one source uses (the
// limits, ToGrpc). orchestrator.cc holds the lifecycle, the session rules, sending and the
// timers; sessions_service.cc the Sessions edge and what it calls; worker_gateway.cc the
// WorkerGateway edge and the worker streams.
#ifndef BATON_TOOLS_ORCHESTRATOR_ORCHESTRATOR_STATE_H_
#define BATON_TOOLS_ORCHESTRATOR_ORCHESTRATOR_STATE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "baton/v1/sessions.grpc.pb.h"
#include "baton/v1/worker.grpc.pb.h"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/snapshot_delta.h"
#include "runtime/protocol/wire.h"
#include "tools/orchestrator/orchestrator.h"
#include "tools/orchestrator/states.h"
#include "tools/orchestrator/store.h"

namespace baton::orchestrator {

namespace v1 = ::baton::v1;

inline int64_t UnixMs(absl::Time t) { return absl::ToUnixMillis(t); }

// The one place a status becomes gRPC's: the services, and the Read streams as they end. The
// codes are the same numbers in both.
inline grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

inline absl::Status Invalid(std::string what) {
  return absl::Status(absl::StatusCode::kInvalidArgument, std::move(what));
}

// ---- limits (docs/bad-input.md) ----------------------------------------------------------------
// Every field a caller sends is checked against these before anything is looked up or stored,
// so no error quotes unbounded input and no oversized value reaches the store.
// Each service checks its own calls' fields in its file (sessions_service.cc,
// worker_gateway.cc); the bounds are here, for both.

inline constexpr size_t kMaxChatIdBytes = 256;
inline constexpr size_t kMaxClientRecordIdBytes = 256;
inline constexpr size_t kMaxRunIdBytes = 64;  // run ids are the orchestrator's: "run_<n>"
inline constexpr size_t kMaxCloseReasonBytes = 1024;
inline constexpr size_t kMaxWorkerIdBytes = 256;
inline constexpr size_t kMaxBuildIdBytes = 256;
inline constexpr int kMaxAgentsPerWorker = 1000;
inline constexpr int kMaxLabels = 64;
inline constexpr size_t kMaxLabelKeyBytes = 128;
inline constexpr size_t kMaxLabelValueBytes = 1024;
inline constexpr int kMaxHeldRuns = 100000;

// "<what> must be at most <limit> bytes, not <size>" when `value` is longer than `limit`.
inline absl::Status CheckAtMost(std::string_view what, const std::string& value, size_t limit) {
  if (value.size() <= limit) return absl::OkStatus();
  return Invalid(absl::StrCat(absl::string_view(what.data(), what.size()), " must be at most ",
                              limit, " bytes, not ", value.size()));
}

// What the store keeps of a snapshot delta (store.h): the same, each entry with its id.
inline SnapshotWrite SnapshotWriteOf(const SnapshotDelta& delta) {
  SnapshotWrite write;
  write.version = delta.version;
  write.header_json = delta.header_json;
  write.in_seq = delta.in_seq;
  write.out_seq = delta.out_seq;
  write.from = static_cast<int64_t>(delta.from);
  write.bytes = static_cast<int64_t>(delta.bytes);
  write.entries.reserve(delta.entries.size());
  for (size_t i = 0; i < delta.entries.size(); ++i) {
    SnapshotEntryRow entry;
    entry.message_id = i < delta.ids.size() ? delta.ids[i] : std::string();
    entry.entry_json = delta.entries[i];
    write.entries.push_back(std::move(entry));
  }
  return write;
}

// Assignments (all their frames) and deliveries can wait in the store while a worker stream's
// queue drains; the other frames (acknowledgements, heartbeat answers, revocations, cancels)
// cannot.
inline bool IsBulk(const v1::GatewayFrame& frame) {
  return frame.has_assign_run() || frame.has_assign_more() || frame.has_deliver();
}

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
  // The chat's stored snapshot, as the store keeps it (Store::PutSnapshot): its entries as text,
  // changed by each worker's delta. Version 0 while none is; a snapshot stored whole before
  // (row.snapshot_json) that did not convert at Load stands in for it then, verbatim.
  SnapshotState snapshot;
  // The snapshot a continuation boots from (AssignRun.snapshot_json; "" when none).
  std::string SnapshotJson() const {
    return snapshot.version > 0 ? AssembleSnapshotJson(snapshot) : row.snapshot_json;
  }
  // What the session rules ask of the snapshot, which message ids it holds (null when none):
  // the ids alone, no entry parsed.
  Json SnapshotIds() const {
    if (snapshot.version > 0) return SnapshotIdsJson(snapshot);
    if (row.snapshot_json.empty()) return Json();
    absl::StatusOr<Json> whole = ParseJson(row.snapshot_json);
    return whole.ok() ? *std::move(whole) : Json();
  }
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
        batch_(request.batch()),
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
  // Writes the page's next record (or, batched, its next records); at its end, parks or queues
  // the follower.
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
  const bool batch_;          // several records per response (ReadRequest.batch)
  const absl::Time expires_;  // a chat token's expiry; InfiniteFuture for other callers
  int64_t cursor_;            // the last seq written
  std::vector<OutRow> page_;
  size_t next_ = 0;  // the page's first row not yet written
  size_t end_ = 0;   // one past the last row of the write in flight
  v1::ReadResponse response_;
};

// ---- gRPC services (their calls: worker_gateway.cc, sessions_service.cc) ----------------------

class Orchestrator::Gateway final : public v1::WorkerGateway::Service {
 public:
  explicit Gateway(Orchestrator& o) : o_(o) {}
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::GatewayFrame, v1::WorkerFrame>* stream) override;
  grpc::Status GetServerInfo(grpc::ServerContext* context, const v1::GetServerInfoRequest*,
                             v1::ServerInfo* info) override;

 private:
  Orchestrator& o_;
};

class Orchestrator::SessionsApi final
    : public v1::Sessions::WithCallbackMethod_Read<v1::Sessions::Service> {
 public:
  explicit SessionsApi(Orchestrator& o) : o_(o) {}
  // Each call: who may make it, then the sizes of what it carries, then lookups.
  grpc::Status CreateSession(grpc::ServerContext* context, const v1::CreateSessionRequest* request,
                             v1::CreateSessionResponse* response) override;
  grpc::Status Append(grpc::ServerContext* context, const v1::AppendRequest* request,
                      v1::AppendResponse* response) override;
  grpc::ServerWriteReactor<v1::ReadResponse>* Read(grpc::CallbackServerContext* context,
                                                   const v1::ReadRequest* request) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::Session* response) override;
  grpc::Status ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest* request,
                        v1::ListRunsResponse* response) override;
  grpc::Status CancelRun(grpc::ServerContext* context, const v1::CancelRunRequest* request,
                         v1::Run* response) override;
  grpc::Status Close(grpc::ServerContext* context, const v1::CloseRequest* request,
                     v1::Session* response) override;
  grpc::Status GetAgent(grpc::ServerContext* context, const v1::GetAgentRequest* request,
                        v1::AgentInfo* response) override;

 private:
  Orchestrator& o_;
};

}  // namespace baton::orchestrator

#endif  // BATON_TOOLS_ORCHESTRATOR_ORCHESTRATOR_STATE_H_
