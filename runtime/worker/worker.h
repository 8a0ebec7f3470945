// File: runtime/worker/worker.h
//
// Worker: a worker process's side of WorkerGateway (DESIGN §3, §5; docs/protocol.md). It dials
// the orchestrator, announces its agents and capacity, takes runs within the credit it grants,
// hosts each run as a ChatRun on its executor, and carries `.in` records in and `.out` records,
// snapshots and run ends out. It keeps the stream alive with heartbeats, reconnects with backoff
// (resuming its runs and re-sending unacknowledged output), and drains on request.
//
// Threads: everything happens on `executor` (one control loop, which never runs user code: hooks
// and tools go to the HookPool), except gRPC's blocking reads and writes, which two threads per
// stream do and hand over to the executor.
#ifndef BATON_RUNTIME_WORKER_WORKER_H_
#define BATON_RUNTIME_WORKER_WORKER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "asio/steady_timer.hpp"
#include "baton/v1/worker.grpc.pb.h"
#include "hooks/agent.h"
#include "runtime/base/metrics.h"
#include "runtime/client/grpc_client.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"
#include "runtime/exec/waiter.h"
#include "runtime/run/run_host.h"

namespace baton {

class ChatRun;  // runtime/run/chat_run.h, internal

struct WorkerOptions {
  // The orchestrator: "host:port" or "unix:/path".
  std::string target = "127.0.0.1:7400";
  std::string worker_id;  // "" makes one: <host>-<pid>-<random>
  std::string build_id = "dev";
  int capacity = 100;  // most runs live at once
  std::map<std::string, std::string> labels;
  absl::Duration reconnect_initial = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(10);
  // How long a drain lets live runs finish before handing them back to the orchestrator.
  absl::Duration drain_grace = absl::Seconds(30);
  // The largest frame this worker reads, announced in Hello; it sends within the smaller of this
  // and the orchestrator's (docs/protocol.md, Frames). Clamped to 64 KiB .. 256 MiB.
  size_t max_frame_bytes = 4 << 20;
  // The bounded outbox (DESIGN §5): output not yet acknowledged by the orchestrator, in bytes,
  // per run and for the whole worker. A run at either bound stops pulling model events and
  // starting tools until acknowledgements free room (docs/worker.md, Backpressure).
  size_t max_unacked_run_bytes = 4 << 20;
  size_t max_unacked_bytes = 64 << 20;
  ClientSecurity security;  // TLS and the bearer token (the default: plaintext, no token)
};

// What a worker announces about an agent it hosts under `name` (Hello.agents): its version,
// handover window, system prompt, tool schemas, head-start setting and model
// (docs/protocol.md, AgentInfo). GetAgent serves it to warm sides.
baton::v1::AgentInfo DescribeAgent(const std::string& name, const std::string& version,
                                   const Agent& agent);

class Worker {
 public:
  Worker(asio::any_io_executor executor, Clock& clock, HookPool& pool, WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Hosts `agent` under `name`. Call before Start(); `agent` must outlive the worker.
  void AddAgent(const std::string& name, const Agent& agent, std::string version = "1");

  // Dials the orchestrator and keeps a stream open, reconnecting, until a drain ends. Call on
  // the executor.
  void Start();

  // Takes no new runs, lets live runs end until the drain grace, then hands the rest back (a
  // retryable failure: the orchestrator boots them elsewhere from their snapshots), says
  // Goodbye and calls `done`. Call on the executor.
  void Drain(std::function<void()> done);

  // Connected, welcomed and not draining. Thread-safe.
  bool ready() const { return ready_.load(); }
  const std::string& worker_id() const { return options_.worker_id; }
  // Prometheus text exposition of the worker's metrics. Thread-safe.
  std::string MetricsText() const { return metrics_.Text(); }

  // Optional: every lifecycle point of every run (the test kit's view), on the executor. Also
  // "$in" ({"seq", "kind"}) once a Deliver handed a `.in` record to a live run: tests wait on
  // it to know a record reached the run.
  std::function<void(const std::string& run_id, std::string_view hook, const Json& args)> observe;

 private:
  struct Stream;
  struct Slot;

  std::shared_ptr<grpc::Channel> NewChannel() const;
  // Opens a stream: Hello first (HelloFrame), a deadline for the Welcome (ArmWelcomeDeadline), and
  // the stream's reader thread (ReadStream).
  void Connect();
  baton::v1::WorkerFrame HelloFrame() const;
  void ArmWelcomeDeadline(Stream* stream);
  // The reader thread's body: opens the stream, starts its writer, hands each frame to the
  // executor (OnFrame) and reports the end there (OnStreamEnd). It runs off the executor: of
  // the worker it reads only executor_ and options_, and posts the rest.
  void ReadStream(Stream* stream, std::weak_ptr<bool> alive,
                  std::shared_ptr<grpc::Channel> channel);
  void ScheduleReconnect();
  void OnFrame(Stream* stream, baton::v1::GatewayFrame frame);
  void OnStreamEnd(Stream* stream);
  void OnWelcome(const baton::v1::Welcome& welcome);
  // A run assigned: rejected (Reject), or a slot with a ChatRun on a RunHost (HostFor), then
  // accepted and started (StartRun).
  void OnAssign(const baton::v1::AssignRun& assign);
  void Reject(const baton::v1::AssignRun& assign, const std::string& reason);
  // The run's host: its output path is WriteOut and SaveSnapshot on `slot`.
  RunHost HostFor(Slot& slot);
  void StartRun(const baton::v1::AssignRun& assign, Slot& slot, absl::Time received);
  // RunHost::write: numbers the record, converts it, keeps it in slot.unacked until acked, and
  // schedules its flush. A record too large for `.out` becomes an `error` chunk.
  int64_t WriteOut(Slot& slot, OutRecord record);
  // RunHost::save_snapshot: flushes the records it refers to, then sends it, as a delta when the
  // orchestrator takes them (docs/protocol.md, Snapshots), kept until acknowledged.
  void SaveSnapshot(Slot& slot, const SnapshotUpdate& snapshot);
  // After a reconnect: forgets the run's snapshots the orchestrator stored (through `stored`),
  // and those left that it could not apply on what it stored; the next save is then whole.
  void DropStoredSnapshots(Slot& slot, int64_t stored);
  // RunHost::timings: the turn's timings into their histograms.
  void ObserveTimings(const TurnTimings& timings);
  void OnDeliver(const baton::v1::Deliver& deliver);
  void OnAck(const baton::v1::Ack& ack);
  void Revoked(const std::string& run_id, int64_t lease_token);
  void Heartbeat();
  void Send(baton::v1::WorkerFrame frame);
  void SendCredit(int runs);
  // Sends the run's output not sent yet, with that of every run that wrote in the same turn of
  // the loop (coalesced: one frame per run per turn).
  void ScheduleFlush(Slot& slot);
  void Flush(Slot& slot);
  void SendSnapshot(const baton::v1::Snapshot& snapshot);
  // Forgets the slot's output the orchestrator stored (through slot.acked_out) and wakes runs
  // that wait for room.
  void DropAcked(Slot& slot);
  bool HasRoom(const Slot& slot) const;
  // RunHost::writable: returns once the run's output is under both bounds (or at once when the
  // run is gone, dropped, or `stop` is requested).
  asio::awaitable<void> WaitForRoom(std::string run_id, std::stop_token stop);
  // The assignment being gathered from AssignRun + AssignMore frames is given up: rejected.
  void AbandonAssembly(const std::string& why);
  void RunEnded(Slot& slot, const RunOutcome& outcome);
  void MaybeRelease(const std::string& run_id);
  void CheckDrained();
  void HandBack(Slot& slot);
  Slot* Find(const std::string& run_id, int64_t lease_token);

  asio::any_io_executor executor_;
  Clock& clock_;
  HookPool& pool_;
  WorkerOptions options_;
  struct Hosted {
    const Agent* agent;
    std::string version;
  };
  std::map<std::string, Hosted> agents_;
  std::unique_ptr<Stream> stream_;
  bool welcomed_ = false;
  absl::Duration backoff_;
  asio::steady_timer reconnect_timer_;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer drain_timer_;
  absl::Duration heartbeat_interval_ = absl::Seconds(5);
  int64_t heartbeat_seq_ = 0;
  int64_t heartbeat_acked_ = 0;
  std::map<std::string, std::unique_ptr<Slot>> slots_;
  int live_runs_ = 0;                  // slots whose run has not ended
  size_t send_frame_bytes_ = 4 << 20;  // the bound this worker sends within (see Welcome)
  // The orchestrator of the latest Welcome takes snapshot deltas (Welcome.snapshot_deltas).
  bool snapshot_deltas_ = false;
  // An assignment whose AssignMore frames are still to come.
  std::optional<baton::v1::AssignRun> assembling_;
  size_t unacked_bytes_ = 0;  // every slot's unacknowledged output
  // Runs waiting for room in the outbox (WaitForRoom), with their waiters.
  std::map<std::string, std::vector<Waiter*>> waiting_for_room_;
  bool flush_posted_ = false;
  std::vector<std::string> to_flush_;  // runs with output to send at the posted flush
  bool draining_ = false;
  bool handed_back_ = false;
  bool stopped_ = false;
  std::function<void()> drained_;
  std::atomic<bool> ready_{false};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  Metrics metrics_;
  Counter& runs_accepted_;
  Counter& runs_rejected_;
  Counter& reconnects_;
  Counter& out_records_;
  Gauge& slots_used_;
  Gauge& slots_free_;
  Gauge& unacked_;
  Gauge& unacked_bytes_gauge_;
  Gauge& runs_waiting_;
  Counter& room_waits_;
  Histogram& boot_seconds_;
  // Per-turn timings (TurnTimings), one histogram per phase.
  Histogram& turn_queued_;
  Histogram& turn_boot_;
  Histogram& turn_hooks_;
  Histogram& turn_handover_;
  Histogram& turn_model_first_byte_;
  Histogram& turn_tools_;
  Histogram& turn_total_;
  Counter& snapshot_bytes_;
  Counter& snapshots_whole_;
  Counter& snapshots_delta_;
};

}  // namespace baton

#endif  // BATON_RUNTIME_WORKER_WORKER_H_
