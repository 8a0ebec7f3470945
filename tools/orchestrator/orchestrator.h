// File: tools/orchestrator/orchestrator.h
//
// Orchestrator: the reference control plane (DESIGN §1, §3; docs/orchestrator.md). It serves
// WorkerGateway to workers and Sessions to clients, keeps every session's logs, runs and
// snapshots in a Store, and applies the session rules: one live run per chat, runs to workers
// that announced the agent and have credit, `.in` records to the run waiting on them, `.out`
// records stored, acknowledged and fanned out to readers, continuations booted from snapshots.
//
// Its working state lives in memory under one mutex and is written through to the Store before
// anything is acknowledged. gRPC handlers run on the server's threads (a Connect stream holds a
// reading thread and a writing thread); a Read is a callback stream that holds no thread: two
// pump threads read its pages from the store when it has something to send, and a following
// Read with nothing to send waits on its chat, woken by new output, the chat's close, its
// client going away, its chat token's expiry or shutdown. A timer thread enforces accept
// deadlines, leases, heartbeats, stalled streams, chat-token expiries of open Reads and
// suspension deadlines.
//
// One class in three sources by responsibility, with orchestrator_state.h defining its private
// types for them: the core (lifecycle, session rules, sending, timers) in orchestrator.cc, the
// Sessions edge and the Read streams in sessions_service.cc, the WorkerGateway edge and the
// worker streams in worker_gateway.cc.
#ifndef BATON_TOOLS_ORCHESTRATOR_ORCHESTRATOR_H_
#define BATON_TOOLS_ORCHESTRATOR_ORCHESTRATOR_H_

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "baton/v1/sessions.grpc.pb.h"
#include "baton/v1/worker.grpc.pb.h"
#include "hooks/records.h"
#include "runtime/base/metrics.h"
#include "runtime/exec/clock.h"
#include "tools/orchestrator/auth.h"
#include "tools/orchestrator/states.h"
#include "tools/orchestrator/store.h"

namespace baton::orchestrator {

struct Options {
  absl::Duration heartbeat_interval = absl::Seconds(5);
  int heartbeat_misses = 3;
  absl::Duration lease_ttl = absl::Seconds(30);
  absl::Duration accept_deadline = absl::Seconds(5);
  std::string build_id = "dev";
  // A chat whose runs are lost or fail (retryably) this many times in a row, with no turn
  // answered in between, fails; drain hand-backs do not count.
  int max_attempts = 5;
  // Who may call what; null lets every call through (docs/security.md).
  const Auth* auth = nullptr;
  // Limits (docs/security.md): `.in` records per chat, open Read streams in all and per chat,
  // runs assigned to one worker at once (whatever capacity it announces): DESIGN §5's 10,000
  // waiting chats a worker holds.
  int64_t max_in_records = 100000;
  int max_reads = 10000;
  int max_reads_per_chat = 64;
  int max_runs_per_worker = 10000;
  // A head start's handover window when no connected worker announced the agent's own
  // handover_timeout (docs/protocol.md, "A head start, seen from the warm server").
  absl::Duration handover_timeout = absl::Seconds(30);
  // Frames (docs/protocol.md): the largest frame the orchestrator reads (announced in Welcome),
  // and sends within together with the worker's own bound. gRPC's message limit on every call
  // is this plus room for one record (GrpcMessageLimit, runtime/protocol/wire.h).
  size_t max_frame_bytes = 4 << 20;
  // The largest snapshot a worker may store, all its pieces together.
  size_t max_snapshot_bytes = 256 << 20;
  // Bytes queued for one worker stream and not yet written (docs/faults.md): assignments and
  // deliveries wait while half of it is taken; acknowledgements and answers filling the other
  // half mean the worker stopped reading, and its stream is closed.
  int64_t max_outbox_bytes = int64_t{32} << 20;
  // Where every rule reads the time (leases, deadlines, heartbeats, token expiries, the times it
  // stores and sends); it must outlive the orchestrator and be safe to read from any thread.
  // Null: the system's wall clock (absl::Now()). Tests pass a fake one and call Tick.
  const Clock* clock = nullptr;
};

class Orchestrator {
 public:
  Orchestrator(Store& store, Options options);
  ~Orchestrator();
  Orchestrator(const Orchestrator&) = delete;
  Orchestrator& operator=(const Orchestrator&) = delete;

  // Loads sessions and runs from the store: queued runs queue again; runs that were assigned or
  // running keep a fresh lease, so their workers can reconnect and carry on, and are retried
  // when it runs out. Call once, before serving.
  absl::Status Load() ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Service* gateway_service();
  grpc::Service* sessions_service();

  // Ends every stream (worker Connects and following Reads) so the server can shut down.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // Prometheus text exposition of the orchestrator's metrics.
  std::string MetricsText() const ABSL_LOCKS_EXCLUDED(mu_);

  // What the timer thread does each period, at `now`: closes silent and stalled worker streams,
  // requeues assignments not accepted by their deadline, ends runs whose lease ran out (lost,
  // retried), ends Reads whose chat token expired, and passes suspension and handover deadlines.
  // The timer thread calls it with the clock's time; a test with a fake clock calls it itself.
  void Tick(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Gateway;
  class SessionsApi;
  class Follower;
  struct Conn;
  struct Run;
  struct Session;

  // The caller of a call, when it may use `scope` on `chat_id` (empty: a call about no one
  // chat, which chat tokens cannot make); else UNAUTHENTICATED or PERMISSION_DENIED.
  absl::Status Authorize(const grpc::ServerContextBase& context, Scope scope,
                         std::string_view chat_id, Caller* caller = nullptr) const;

  // Sessions API (each called with mu_ held, after the request's sizes were checked). The core
  // answers in absl::Status; the services turn it into gRPC's in one place (ToGrpc), with the
  // same code and message.
  absl::Status CreateSession(const baton::v1::CreateSessionRequest& request, const Caller& caller,
                             baton::v1::CreateSessionResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // CreateSession's steps. A chat that exists: its session and a fresh chat token, for a caller
  // that may read and write it, with the agent it was made with.
  absl::Status RenewExisting(const Session& existing,
                             const baton::v1::CreateSessionRequest& request, const Caller& caller,
                             baton::v1::CreateSessionResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A head start needs an agent that allows one, and gets the agent's handover window.
  absl::Status CheckHeadStart(const std::string& agent) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration HandoverWindowOf(const std::string& agent) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `closing`: the record closes the chat, which the per-chat record limit does not stop.
  absl::Status Append(const baton::v1::AppendRequest& request, baton::v1::AppendResponse* response,
                      bool closing = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Append's steps: the chat takes records (not closed, under its limit); a handover signal the
  // window refuses may be a retry of the one that closed it (true: answered as a duplicate); the
  // record stored (StoreIn: a known client_record_id with another body is refused); a retry's
  // answer; a new record handed on (HandOn: to the live run, or a message boots the next).
  absl::Status CheckAppendable(const Session& session, const baton::v1::AppendRequest& request,
                               bool closing) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AnswerRetriedSignal(const Session& session, const baton::v1::AppendRequest& request,
                           baton::v1::AppendResponse* response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Store::Appended> StoreIn(const Session& session,
                                          const baton::v1::AppendRequest& request, InKind kind)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerRetry(Session& session, int64_t seq, baton::v1::AppendResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandOn(Session& session, InKind kind, const InRow& row)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CancelRun(const baton::v1::CancelRunRequest& request, baton::v1::Run* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void IssueChatToken(const std::string& chat_id, baton::v1::CreateSessionResponse* response) const;
  absl::Status Close(const baton::v1::CloseRequest& request, baton::v1::Session* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A Read stream: refused at once (no chat, over a limit), or a Follower that pages the chat's
  // `.out` from the store and, with `follow`, waits for more; a chat token's stream ends at
  // `token_expires`.
  grpc::ServerWriteReactor<baton::v1::ReadResponse>* Read(const baton::v1::ReadRequest& request,
                                                          absl::Time token_expires)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Hands a waiting Follower to the pump threads (new output, its chat closed, its client gone,
  // its token expired, shutdown).
  void Wake(Follower& follower) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeReaders(Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The pump threads: each takes a Follower off the queue and reads its next page.
  void PumpLoop() ABSL_LOCKS_EXCLUDED(mu_);
  baton::v1::Session SessionProto(const Session& session) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Worker streams.
  absl::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<baton::v1::GatewayFrame, baton::v1::WorkerFrame>* stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Connect's two loops. The stream's writer thread: frames queued under mu_ go out in order,
  // written without it. The read loop: each frame under mu_, until the stream ends, this side
  // closes it, or the worker says goodbye (true).
  void WriteFrames(
      Conn& conn, grpc::ServerReaderWriter<baton::v1::GatewayFrame, baton::v1::WorkerFrame>* stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  bool ReadFrames(Conn& conn,
                  grpc::ServerReaderWriter<baton::v1::GatewayFrame, baton::v1::WorkerFrame>* stream)
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnHello(Conn& conn, const baton::v1::Hello& hello) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The agent as announced by the connected worker that said hello last among those hosting
  // it; without one (and unless `connected_only`), as any worker last announced it. Null when
  // none did.
  const baton::v1::AgentInfo* Announced(const std::string& agent, bool connected_only) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void OnFrame(Conn& conn, const baton::v1::WorkerFrame& frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRunAccepted(Conn& conn, const baton::v1::RunAccepted& accepted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRunRejected(Conn& conn, const baton::v1::RunRejected& rejected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnHeartbeat(Conn& conn, const baton::v1::Heartbeat& heartbeat)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRunOutput(Conn& conn, const baton::v1::RunOutput& output)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnSnapshot(Conn& conn, const baton::v1::Snapshot& snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnRunFinished(Conn& conn, const baton::v1::RunFinished& finished)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Disconnected(Conn& conn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A write of the run's worker that the chat cannot keep (bad output, a bad snapshot): nothing
  // of it is stored, the worker's lease is revoked, and the run fails retryably.
  void RefuseRunWrite(Conn& conn, Run& run, const std::string& reason, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Session rules.
  // The run `run_id` names, when `conn` holds it under `lease_token`; else tells the worker the
  // lease is gone and returns null.
  Run* OwnedRun(Conn& conn, const std::string& run_id, int64_t lease_token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a new run for the session: its first (`trigger` and `payload`), or a continuation
  // (kContinuation or kResume) built from the session's snapshot and logs.
  absl::Status Boot(Session& session, BootTrigger trigger, std::string payload_json, int attempt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BootContinuation(Session& session, bool resume, int attempt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Assigns queued runs to workers with credit.
  void Dispatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A queued run no worker can take now: its reason and error say why, when no connected worker
  // hosts its agent ("unknown-agent") or every one that does is full ("no-capacity"); saved
  // only when that changes.
  void NoteWhyQueued(Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // False when no lease token could be had (the run stays queued).
  bool Assign(Run& run, Conn& conn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Assign's steps: the run leased to the worker's stream (its credit taken, the row saved); a
  // continuation's boot, `.out` tail and pending `.in` records (AddPendingIn: those after
  // `run.sent_in`, within `budget` bytes).
  void BindRun(Run& run, Conn& conn, int64_t lease_token) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AssignContinuation(Run& run, const Session& session, baton::v1::AssignRun& assign)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddPendingIn(Run& run, const Session& session, int64_t budget, baton::v1::AssignRun& assign)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends the run the `.in` records after the last one it was sent. `stored`: a record just
  // stored, sent from memory when it is the next one (the rest are read from the store).
  void DeliverPending(Run& run, const InRow* stored = nullptr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One `.in` record to the run's worker.
  void Deliver(Run& run, const InRow& row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the run's lease with `state`; the session follows the DESIGN §4 rules (a retry, a
  // continuation for records left unanswered, or rest).
  void EndRun(Run& run, RunState state, const baton::v1::RunFinished& how)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Boots a continuation when the resting session has `.in` messages no run answered (or, after
  // an upgrade, a boot message no snapshot holds).
  void BootIfUnanswered(Session& session, bool upgrade = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The session's resume deadline passed: its suspended run ends, exited with reason "timeout".
  void TimeOutSuspendedRun(const Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the run again; it is not offered for `delay` (a worker just refused it).
  void Requeue(Run& run, absl::Duration delay = absl::ZeroDuration())
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a frame for the stream's writer. A stream on which the frames that cannot wait
  // (acknowledgements, answers) fill half of max_outbox_bytes has stopped reading and is closed
  // instead (StreamStalled).
  void Send(Conn& conn, baton::v1::GatewayFrame frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // More than half of max_outbox_bytes waits on the stream: assignments and deliveries wait.
  bool Full(const Conn& conn) const;
  // A worker that stopped reading its stream: the stream is closed as a broken one would be.
  void StreamStalled(Conn& conn, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendCancel(Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // to the run's worker
  void Revoke(Conn& conn, const std::string& run_id, int64_t lease_token, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A chat that gave up (its retry budget spent): every message no run answered gets an `error`
  // and its turn-complete, and the dead run's unfinished answer a `retract`, so no client waits
  // for an answer that will not come; later runs are not handed those messages again.
  void AnswerWithError(Session& session, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The `.in` seqs of the messages no run answered, oldest first (0: the boot message).
  std::vector<int64_t> UnansweredMessages(const Session& session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The `.in` seq through which messages were answered or given up on: records after it are
  // what the next run is handed.
  int64_t InFloor(const Session& session) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes a head start's handover window whose deadline passed with no signal: appends
  // HandoverTimeoutSkip() to its `.in`, and the run answers the message itself.
  void ExpireHandover(Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Load's step for one chat: its stored snapshot into memory; a snapshot stored whole in its
  // session row (before snapshots were kept by entry) converted and stored by entry, once.
  absl::Status LoadSnapshotOf(Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Write the row through to the store, its words from the typed state first.
  void SaveRun(Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SaveSession(Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The timer thread: accept deadlines, leases, heartbeats, stalled writes, Read token expiries,
  // suspension deadlines.
  void TimerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void TickLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store& store_;
  const Options options_;
  // options_.clock, or the wall clock this owns when that is null.
  std::unique_ptr<Clock> own_clock_;
  const Clock& clock_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);  // run ids, oldest first
  std::set<Conn*> conns_ ABSL_GUARDED_BY(mu_);
  // Suspended chats by resume deadline (unix ms), for the timer thread.
  std::multimap<int64_t, std::string> resume_deadlines_ ABSL_GUARDED_BY(mu_);
  // Head starts with an open handover window by deadline (unix ms), for the timer thread.
  std::multimap<int64_t, std::string> handover_deadlines_ ABSL_GUARDED_BY(mu_);
  // Each agent as a worker last announced it in Hello, connected or not (its handover window
  // and head-start setting outlive the worker's stream; GetAgent asks connected ones only).
  std::map<std::string, baton::v1::AgentInfo> last_announced_ ABSL_GUARDED_BY(mu_);
  int64_t hello_order_ ABSL_GUARDED_BY(mu_) = 0;  // Hellos taken so far
  int64_t next_conn_ ABSL_GUARDED_BY(mu_) = 1;
  int open_reads_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  // Followers with work for a pump thread, and open Reads by chat-token expiry.
  std::deque<Follower*> pump_queue_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, Follower*> read_expiries_ ABSL_GUARDED_BY(mu_);
  bool pumps_stop_ ABSL_GUARDED_BY(mu_) = false;

  Metrics metrics_;
  Counter& runs_started_;
  Counter& runs_ended_;
  Counter& reconnects_;
  Counter& out_records_;
  Counter& stale_writes_;
  Gauge& workers_;
  Gauge& free_credit_;
  Gauge& live_runs_;
  Counter& streams_stalled_;
  Counter& read_wakeups_;
  Gauge& readers_;
  // Queued runs by why they wait: "waiting" (their turn), "unknown-agent", "no-capacity". Counted
  // when the metrics are read.
  Gauge& queued_waiting_;
  Gauge& queued_unknown_agent_;
  Gauge& queued_no_capacity_;
  Gauge& readers_waiting_;
  Histogram& dispatch_seconds_;
  Histogram& output_lag_seconds_;

  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<SessionsApi> sessions_api_;
  std::thread timer_;
  std::vector<std::thread> pumps_;
};

}  // namespace baton::orchestrator

#endif  // BATON_TOOLS_ORCHESTRATOR_ORCHESTRATOR_H_
