#include "runtime/worker/worker.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <set>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "asio/post.hpp"
#include "grpcpp/create_channel.h"
#include "runtime/base/log.h"
#include "runtime/base/parse_errors.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/wire.h"
#include "runtime/run/chat_run.h"

namespace baton {

namespace v1 = ::baton::v1;

// Bytes of frames the reader may hand to the executor ahead of it. Past that the reader waits,
// so gRPC's flow control holds the rest on the orchestrator (where deliveries wait in the
// store), and the executor's timers (heartbeats) never queue behind more than this much work.
constexpr int64_t kMaxInboundBacklog = 4 << 20;

// One Connect stream. gRPC's blocking calls run on two threads of its own: the reader hands
// each frame to the executor; the writer sends what the executor queued. Both end when the
// stream does; the reader then reports the end on the executor.
//
// `mu` guards what the three threads share; a thread that waits (the writer for frames, the
// reader for room) awaits a condition on it, which the mutex checks when it is released.
struct Worker::Stream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerFrame, v1::GatewayFrame>> rw;
  absl::Mutex mu;
  std::deque<v1::WorkerFrame> outbox ABSL_GUARDED_BY(mu);  // the writer waits for it
  bool closing ABSL_GUARDED_BY(mu) = false;
  // Bytes handed to the executor, not done; the reader waits for room under the bound.
  int64_t inbound ABSL_GUARDED_BY(mu) = 0;
  std::thread reader;
  std::thread writer;

  // The reader, before handing on a frame of `bytes`: waits while the executor is behind.
  void WaitForInboundRoom(int64_t bytes) ABSL_LOCKS_EXCLUDED(mu) {
    auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return inbound < kMaxInboundBacklog || closing;
    };
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&room));
    inbound += bytes;
  }
  // The executor, once a frame of `bytes` is handled.
  void InboundDone(int64_t bytes) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    inbound -= bytes;
  }

  void Push(v1::WorkerFrame frame) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    if (closing) return;
    outbox.push_back(std::move(frame));
  }

  // Sends the last queued frames, then half-closes. A reader waiting for room reads on, to the
  // end of the stream.
  void CloseWrites() ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock lock(&mu);
    closing = true;
  }

  void WriteLoop() ABSL_LOCKS_EXCLUDED(mu) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !outbox.empty() || closing; };
    while (true) {
      std::deque<v1::WorkerFrame> batch;
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(&ready));
        if (outbox.empty()) break;
        batch.swap(outbox);
      }
      for (const v1::WorkerFrame& frame : batch) {
        // A write fails only on a call that is over, which ends the reads too. No cancel here:
        // it would replace the status the orchestrator ended the call with.
        if (!rw->Write(frame)) return;
      }
    }
    rw->WritesDone();
  }
};

// A run this worker holds: its ChatRun, its lease, and its output until acknowledged.
struct Worker::Slot {
  std::shared_ptr<ChatRun> run;
  std::string run_id;
  int64_t lease_token = 0;
  bool flush_queued = false;  // listed in Worker::to_flush_
  int64_t next_out = 0;       // last `.out` seq written
  int64_t sent_out = 0;       // last seq sent on the current stream
  int64_t acked_out = 0;      // last seq the orchestrator stored
  int64_t delivered_in = 0;   // last `.in` seq given to the run
  std::deque<v1::OutRecord> unacked;
  size_t unacked_bytes = 0;  // serialized size of `unacked`
  // Snapshots sent and not acknowledged as stored (Ack.snapshot_version), oldest first: sent
  // again after a reconnect. A whole one replaces those before it, so only the first may be.
  std::deque<v1::Snapshot> snapshots;
  int64_t snapshot_version = 0;  // the latest one's (at first, the stored one's: AssignRun)
  // The next is whole: the run's first when the chat had no stored snapshot, one after a doubt
  // about what was stored (OnWelcome), or while the orchestrator takes no deltas.
  bool whole_next = true;
  // While the orchestrator takes whole snapshots only: the latest one's entries as JSON text,
  // so that a save dumps only the entries the run changed.
  std::vector<std::string> snapshot_entries;
  bool entries_kept = false;              // snapshot_entries are the latest snapshot's
  std::optional<v1::RunFinished> finish;  // set when the run ended
  bool ended = false;                     // the ChatRun has finished
  bool end_stored = false;                // the orchestrator acknowledged the RunFinished
  bool dropped = false;                   // revoked or handed back: nothing more is sent
};

namespace {

std::string DefaultWorkerId() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  absl::BitGen gen;
  return absl::StrFormat("%s-%d-%04x", host, getpid(), absl::Uniform<uint32_t>(gen, 0, 0xffff));
}

v1::RunEnd RunEndProto(RunOutcome::Kind kind) {
  switch (kind) {
    case RunOutcome::Kind::kExited:
      return v1::RUN_END_EXITED;
    case RunOutcome::Kind::kSuspended:
      return v1::RUN_END_SUSPENDED;
    case RunOutcome::Kind::kFailed:
      return v1::RUN_END_FAILED;
    case RunOutcome::Kind::kCancelled:
      return v1::RUN_END_CANCELLED;
  }
  return v1::RUN_END_UNSPECIFIED;
}

// A fresh assistant message id (RunHost::new_message_id).
std::string NewMessageId() {
  absl::BitGen gen;
  return absl::StrFormat("msg_%016x", absl::Uniform<uint64_t>(gen));
}

// A snapshot document as DumpJson(SnapshotUpdate::Whole()) writes it, with the given entries
// (JSON text) as its "messages": the header's fields, then "messages".
std::string SnapshotDocument(const Json& header, const std::vector<std::string>& entries) {
  std::string json = DumpJson(header);
  json.pop_back();  // the header's closing brace
  absl::StrAppend(&json, json.size() > 1 ? "," : "", "\"messages\":[");
  for (size_t i = 0; i < entries.size(); ++i) absl::StrAppend(&json, i > 0 ? "," : "", entries[i]);
  json += "]}";
  return json;
}

// What the run boots with: the assignment's fields, and what DecodeAssignment decodes (its
// error is the RunRejected reason).
absl::StatusOr<BootRequest> BootRequestOf(const v1::AssignRun& assign, absl::Time received) {
  BootRequest boot;
  boot.run_id = assign.run_id();
  boot.chat_id = assign.chat_id();
  boot.trigger = std::string(TriggerName(assign.trigger()));
  boot.continuation = assign.continuation();
  boot.resume = assign.resume();
  boot.previous_run_id = assign.previous_run_id();
  boot.attempt = assign.attempt();
  boot.assigned_at = received;
  if (assign.queued_at_unix_ms() > 0) {
    boot.queued_at = absl::FromUnixMillis(assign.queued_at_unix_ms());
  }
  if (ValidTraceparent(assign.traceparent())) boot.traceparent = assign.traceparent();
  absl::StatusOr<Assignment> decoded = DecodeAssignment(assign);
  if (!decoded.ok()) return decoded.status();
  boot.payload = std::move(decoded->payload);
  boot.snapshot = std::move(decoded->snapshot);
  boot.pending = std::move(decoded->pending);
  boot.out_tail = std::move(decoded->out_tail);
  return boot;
}

}  // namespace

v1::AgentInfo DescribeAgent(const std::string& name, const std::string& version,
                            const Agent& agent) {
  v1::AgentInfo info;
  info.set_name(name);
  info.set_version(version);
  info.set_handover_timeout_ms(absl::ToInt64Milliseconds(agent.options.handover_timeout));
  info.set_system(ToValidUtf8(agent.system));
  Json tools = Json::array();
  for (const Tool& tool : agent.tools) {
    // The same schema the agent's own model calls get (runtime/step/step_loop.cc), so step 1 on a
    // warm side offers the model exactly the agent's tools.
    Json t = {
        {"name", tool.name}, {"description", tool.description}, {"inputSchema", tool.input_schema}};
    if (tool.needs_approval) t["needsApproval"] = true;
    if (!tool.execute) t["clientSide"] = true;
    tools.push_back(std::move(t));
  }
  info.set_tools_json(DumpJson(tools));
  info.set_head_start_disabled(!agent.options.allow_head_start);
  if (agent.model) {
    info.set_model_provider(ToValidUtf8(agent.model->provider()));
    info.set_model_id(ToValidUtf8(agent.model->model_id()));
  }
  return info;
}

Worker::Worker(asio::any_io_executor executor, Clock& clock, HookPool& pool, WorkerOptions options)
    : executor_(std::move(executor)),
      clock_(clock),
      pool_(pool),
      options_(std::move(options)),
      backoff_(options_.reconnect_initial),
      reconnect_timer_(executor_),
      heartbeat_timer_(executor_),
      drain_timer_(executor_),
      runs_accepted_(metrics_.AddCounter("baton_worker_runs_accepted_total", "Runs accepted.")),
      runs_rejected_(metrics_.AddCounter("baton_worker_runs_rejected_total", "Runs rejected.")),
      reconnects_(
          metrics_.AddCounter("baton_worker_reconnects_total", "Streams opened after the first.")),
      out_records_(metrics_.AddCounter("baton_worker_out_records_total", ".out records written.")),
      slots_used_(metrics_.AddGauge("baton_worker_slots_used", "Runs live on this worker.")),
      slots_free_(metrics_.AddGauge("baton_worker_slots_free", "Capacity left.")),
      unacked_(metrics_.AddGauge("baton_worker_output_unacked",
                                 ".out records sent or queued and not yet acknowledged.")),
      unacked_bytes_gauge_(
          metrics_.AddGauge("baton_worker_output_unacked_bytes",
                            "Bytes of .out records sent or queued and not yet acknowledged.")),
      runs_waiting_(metrics_.AddGauge("baton_worker_runs_waiting_for_acks",
                                      "Runs held back until their output is acknowledged.")),
      room_waits_(metrics_.AddCounter(
          "baton_worker_output_waits_total",
          "Times a run stopped to wait for acknowledgements (its outbox was full).")),
      boot_seconds_(metrics_.AddHistogram("baton_worker_boot_seconds",
                                          "From AssignRun received to the run started.")),
      turn_queued_(metrics_.AddHistogram(
          "baton_worker_turn_phase_seconds{phase=\"queued\"}",
          "Each turn's timings, as on its finish chunk's messageMetadata.baton.timings "
          "(docs/worker.md).")),
      turn_boot_(metrics_.AddHistogram("baton_worker_turn_phase_seconds{phase=\"boot\"}", "")),
      turn_hooks_(metrics_.AddHistogram("baton_worker_turn_phase_seconds{phase=\"hooks\"}", "")),
      turn_handover_(
          metrics_.AddHistogram("baton_worker_turn_phase_seconds{phase=\"handover\"}", "")),
      turn_model_first_byte_(
          metrics_.AddHistogram("baton_worker_turn_phase_seconds{phase=\"modelFirstByte\"}", "")),
      turn_tools_(metrics_.AddHistogram("baton_worker_turn_phase_seconds{phase=\"tools\"}", "")),
      turn_total_(metrics_.AddHistogram("baton_worker_turn_phase_seconds{phase=\"turn\"}", "")),
      snapshot_bytes_(metrics_.AddCounter(
          "baton_worker_snapshot_bytes_total",
          "Bytes of snapshot JSON sent, each snapshot once (re-sends after a reconnect not "
          "counted): a delta holds what its turn changed.")),
      snapshots_whole_(metrics_.AddCounter(
          "baton_worker_snapshots_total{kind=\"whole\"}",
          "Snapshots sent, whole or as a delta on the one before (docs/protocol.md, Snapshots).")),
      snapshots_delta_(metrics_.AddCounter("baton_worker_snapshots_total{kind=\"delta\"}", "")) {
  if (options_.worker_id.empty()) options_.worker_id = DefaultWorkerId();
  options_.max_frame_bytes = std::clamp(options_.max_frame_bytes, kMinFrameBytes, kMaxFrameBytes);
  send_frame_bytes_ = options_.max_frame_bytes;
  slots_free_.Set(options_.capacity);
}

Worker::~Worker() {
  *alive_ = false;
  stopped_ = true;
  if (stream_) {
    stream_->context.TryCancel();
    stream_->CloseWrites();
    if (stream_->reader.joinable()) stream_->reader.join();
  }
  for (auto& [id, slot] : slots_) {
    if (slot->run && !slot->ended) slot->run->Cancel(/*lost=*/true);
  }
}

void Worker::AddAgent(const std::string& name, const Agent& agent, std::string version) {
  agents_[name] = Hosted{&agent, std::move(version)};
}

void Worker::Start() { Connect(); }

std::shared_ptr<grpc::Channel> Worker::NewChannel() const {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  // Frames are split to the bound (docs/protocol.md, Frames): a larger message is an error.
  args.SetMaxReceiveMessageSize(static_cast<int>(GrpcMessageLimit(options_.max_frame_bytes)));
  args.SetMaxSendMessageSize(static_cast<int>(GrpcMessageLimit(options_.max_frame_bytes)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  // Reconnects are ours (with our backoff); the channel's own must not be slower.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Its own connection: channels of one process otherwise share a connected transport to the
  // same target, and a new stream would ride the stalled one again.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return OpenChannel(options_.target, options_.security, args);
}

void Worker::Connect() {
  if (stopped_) return;
  auto stream = std::make_unique<Stream>();
  Stream* raw = stream.get();
  stream_ = std::move(stream);
  welcomed_ = false;
  assembling_.reset();  // the rest of it was on the old stream; the run is offered again

  raw->Push(HelloFrame());
  ArmWelcomeDeadline(raw);
  // Every stream on a channel of its own, so on a new TCP connection: a stream given up for
  // silence (no HeartbeatAck, no Welcome) may sit on a connection that stalled while TCP stays
  // up, and gRPC would otherwise open the next stream on it too, until its keepalive noticed
  // (15 s and more). The old channel closes its connection when its last call ends.
  std::shared_ptr<grpc::Channel> channel = NewChannel();
  std::weak_ptr<bool> alive = alive_;
  raw->reader = std::thread([this, raw, alive, channel] { ReadStream(raw, alive, channel); });
}

v1::WorkerFrame Worker::HelloFrame() const {
  v1::WorkerFrame frame;
  v1::Hello& hello = *frame.mutable_hello();
  hello.set_worker_id(options_.worker_id);
  hello.set_build_id(options_.build_id);
  hello.set_protocol_version(v1::PROTOCOL_VERSION_1);
  hello.set_capacity(options_.capacity);
  hello.set_max_frame_bytes(static_cast<int64_t>(options_.max_frame_bytes));
  for (const auto& [name, hosted] : agents_) {
    *hello.add_agents() = DescribeAgent(name, hosted.version, *hosted.agent);
  }
  for (const auto& [key, value] : options_.labels) (*hello.mutable_labels())[key] = value;
  for (const auto& [id, slot] : slots_) {
    if (slot->dropped) continue;
    v1::HeldRun& held = *hello.add_held_runs();
    held.set_run_id(id);
    held.set_lease_token(slot->lease_token);
    held.set_acked_out_seq(slot->acked_out);
    held.set_delivered_in_seq(slot->delivered_in);
  }
  return frame;
}

void Worker::ArmWelcomeDeadline(Stream* stream) {
  // No Welcome in time (an orchestrator that accepts streams but does not answer): start over.
  std::weak_ptr<bool> alive = alive_;
  heartbeat_timer_.expires_after(std::chrono::seconds(10));
  heartbeat_timer_.async_wait([this, alive, stream](const asio::error_code& ec) {
    if (ec || alive.expired() || stream != stream_.get() || welcomed_) return;
    LogJson("warn", "no Welcome from the orchestrator: reconnecting",
            {{"worker_id", options_.worker_id}});
    stream->context.TryCancel();
  });
}

void Worker::ReadStream(Stream* stream, std::weak_ptr<bool> alive,
                        std::shared_ptr<grpc::Channel> channel) {
  // Opening the stream blocks until the channel connects or fails: off the loop.
  stream->rw = v1::WorkerGateway::NewStub(channel)->Connect(&stream->context);
  stream->writer = std::thread([stream] { stream->WriteLoop(); });
  v1::GatewayFrame in;
  while (stream->rw->Read(&in)) {
    auto bytes = static_cast<int64_t>(in.ByteSizeLong());
    stream->WaitForInboundRoom(bytes);
    // Handlers run in order on the one executor thread, before the end of the stream is
    // reported there (which destroys it): `stream` outlives them while the worker does.
    asio::post(executor_, [this, stream, alive, bytes, in = std::move(in)]() mutable {
      if (alive.expired() || !*alive.lock()) return;
      OnFrame(stream, std::move(in));
      stream->InboundDone(bytes);
    });
    in = v1::GatewayFrame();
  }
  if (std::string bad = TakeParseError(); !bad.empty()) {
    LogJson("warn", "an orchestrator frame does not parse: reconnecting",
            {{"worker_id", options_.worker_id}, {"error", bad}});
  }
  // The call is over (the orchestrator ended it, the connection broke, or this side
  // cancelled it): writes fail fast now, so the writer ends, and Finish gives the status
  // the call ended with, which the log shows (a cancel first would turn every one of them
  // into CANCELLED).
  stream->CloseWrites();
  stream->writer.join();
  grpc::Status status = stream->rw->Finish();
  asio::post(executor_, [this, stream, alive, status] {
    if (alive.expired() || !*alive.lock()) return;
    if (!status.ok() && !stopped_) {
      LogJson("warn", "orchestrator stream ended",
              {{"worker_id", options_.worker_id},
               {"code", static_cast<int>(status.error_code())},
               {"error", status.error_message()}});
    }
    OnStreamEnd(stream);
  });
}

void Worker::OnStreamEnd(Stream* stream) {
  if (stream != stream_.get()) return;
  stream_->reader.join();
  stream_.reset();
  ready_ = false;
  welcomed_ = false;
  heartbeat_timer_.cancel();
  if (handed_back_ || stopped_) {
    stopped_ = true;
    if (drained_) std::exchange(drained_, nullptr)();
    return;
  }
  ScheduleReconnect();
}

void Worker::ScheduleReconnect() {
  absl::BitGen gen;
  absl::Duration wait = backoff_ * absl::Uniform(gen, 0.8, 1.2);
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
  reconnect_timer_.expires_after(absl::ToChronoNanoseconds(wait));
  std::weak_ptr<bool> alive = alive_;
  reconnect_timer_.async_wait([this, alive](const asio::error_code& ec) {
    if (ec || alive.expired()) return;
    reconnects_.Add(1);
    Connect();
  });
}

void Worker::Send(v1::WorkerFrame frame) {
  if (stream_ && welcomed_) stream_->Push(std::move(frame));
}

void Worker::SendCredit(int runs) {
  if (runs <= 0 || draining_) return;
  v1::WorkerFrame frame;
  frame.mutable_credit()->set_runs(runs);
  Send(std::move(frame));
}

void Worker::OnFrame(Stream* stream, v1::GatewayFrame frame) {
  if (stream != stream_.get()) return;  // a frame of a stream already given up
  // Any frame shows the stream is alive: a heartbeat's answer can wait behind megabytes of
  // deliveries this worker is still taking in, and that is no reason to drop its runs.
  heartbeat_acked_ = heartbeat_seq_;
  // An assignment's AssignMore frames follow its AssignRun directly.
  if (assembling_ && frame.frame_case() != v1::GatewayFrame::kAssignMore) {
    AbandonAssembly("another frame came before its last AssignMore");
  }
  switch (frame.frame_case()) {
    case v1::GatewayFrame::kWelcome:
      OnWelcome(frame.welcome());
      break;
    case v1::GatewayFrame::kAssignRun:
      if (frame.assign_run().more()) {
        assembling_ = std::move(*frame.mutable_assign_run());
      } else {
        OnAssign(frame.assign_run());
      }
      break;
    case v1::GatewayFrame::kAssignMore:
      if (!assembling_) {
        LogJson("warn", "an AssignMore without an assignment to continue; ignored",
                {{"run_id", frame.assign_more().run_id()}});
        break;
      }
      if (absl::Status merged =
              MergeAssignMore(*assembling_, std::move(*frame.mutable_assign_more()));
          !merged.ok()) {
        AbandonAssembly(std::string(merged.message()));
        break;
      }
      if (!assembling_->more()) {
        v1::AssignRun whole = std::move(*assembling_);
        assembling_.reset();
        OnAssign(whole);
      }
      break;
    case v1::GatewayFrame::kDeliver:
      OnDeliver(frame.deliver());
      break;
    case v1::GatewayFrame::kCancelRun:
      if (Slot* slot = Find(frame.cancel_run().run_id(), frame.cancel_run().lease_token())) {
        if (!slot->ended) slot->run->Cancel();
      }
      break;
    case v1::GatewayFrame::kLeaseRevoked:
      Revoked(frame.lease_revoked().run_id(), frame.lease_revoked().lease_token());
      break;
    case v1::GatewayFrame::kAck:
      OnAck(frame.ack());
      break;
    case v1::GatewayFrame::kHeartbeatAck:
      heartbeat_acked_ = std::max(heartbeat_acked_, frame.heartbeat_ack().seq());
      break;
    case v1::GatewayFrame::kDrain:
      // The orchestrator is going away: its runs stay ours, the next stream (to it or another
      // replica) rebinds them.
      LogJson("info", "orchestrator going away: reconnecting",
              {{"reason", frame.drain().reason()}});
      stream_->context.TryCancel();
      break;
    default:
      break;
  }
}

void Worker::OnWelcome(const v1::Welcome& welcome) {
  welcomed_ = true;
  ready_ = !draining_;
  backoff_ = options_.reconnect_initial;
  heartbeat_interval_ = absl::Milliseconds(std::max<int64_t>(welcome.heartbeat_interval_ms(), 10));
  heartbeat_seq_ = 0;
  heartbeat_acked_ = 0;
  send_frame_bytes_ = SendFrameBytes(welcome.max_frame_bytes(), options_.max_frame_bytes);
  // Runs held across the reconnect: the rebound ones re-send what was not stored; the others
  // are no longer ours.
  snapshot_deltas_ = welcome.snapshot_deltas();
  std::set<std::string> rebound;
  for (const v1::HeldRun& held : welcome.rebound_runs()) {
    rebound.insert(held.run_id());
    Slot* slot = Find(held.run_id(), held.lease_token());
    if (slot == nullptr) continue;
    slot->acked_out = std::max(slot->acked_out, held.acked_out_seq());
    DropAcked(*slot);
    slot->sent_out = slot->acked_out;
    DropStoredSnapshots(*slot, held.snapshot_version());
  }
  std::vector<std::string> lost;
  for (auto& [id, slot] : slots_) {
    if (!slot->dropped && rebound.count(id) == 0) lost.push_back(id);
  }
  for (const std::string& id : lost) Revoked(id, slots_[id]->lease_token);
  for (auto& [id, slot] : slots_) {
    if (slot->dropped) continue;
    Flush(*slot);
    // In order, after the output they refer to and before the run's end (docs/protocol.md).
    for (const v1::Snapshot& snapshot : slot->snapshots) SendSnapshot(snapshot);
    if (slot->finish) {
      v1::WorkerFrame frame;
      *frame.mutable_run_finished() = *slot->finish;
      Send(std::move(frame));
    }
  }
  if (draining_) {
    v1::WorkerFrame frame;
    frame.mutable_draining()->set_reason("shutdown");
    Send(std::move(frame));
  } else {
    SendCredit(options_.capacity - live_runs_);
  }
  Heartbeat();
}

void Worker::Heartbeat() {
  if (!stream_ || !welcomed_) return;
  // Two intervals without an answer or any other frame: the stream is dead even if TCP says
  // otherwise.
  if (heartbeat_seq_ - heartbeat_acked_ >= 2) {
    LogJson("warn", "no heartbeat answer for two intervals: reconnecting",
            {{"worker_id", options_.worker_id}});
    stream_->context.TryCancel();
    return;
  }
  v1::WorkerFrame frame;
  v1::Heartbeat& beat = *frame.mutable_heartbeat();
  beat.set_seq(++heartbeat_seq_);
  beat.set_slots_used(live_runs_);
  for (const auto& [id, slot] : slots_) {
    if (slot->dropped || slot->finish) continue;
    v1::RunLease& lease = *beat.add_runs();
    lease.set_run_id(id);
    lease.set_lease_token(slot->lease_token);
  }
  Send(std::move(frame));
  heartbeat_timer_.expires_after(absl::ToChronoNanoseconds(heartbeat_interval_));
  std::weak_ptr<bool> alive = alive_;
  heartbeat_timer_.async_wait([this, alive](const asio::error_code& ec) {
    if (!ec && !alive.expired()) Heartbeat();
  });
}

Worker::Slot* Worker::Find(const std::string& run_id, int64_t lease_token) {
  auto it = slots_.find(run_id);
  if (it == slots_.end() || it->second->lease_token != lease_token || it->second->dropped) {
    return nullptr;
  }
  return it->second.get();
}

void Worker::OnAssign(const v1::AssignRun& assign) {
  absl::Time received = clock_.Now();
  auto agent = agents_.find(assign.agent());
  if (draining_) return Reject(assign, "draining");
  if (agent == agents_.end()) return Reject(assign, "unknown-agent");
  if (live_runs_ >= options_.capacity) return Reject(assign, "no-capacity");
  if (slots_.count(assign.run_id()) > 0) return Reject(assign, "duplicate-run");
  absl::StatusOr<BootRequest> boot = BootRequestOf(assign, received);
  if (!boot.ok()) {
    // The reason starts with bad-payload, bad-snapshot, ...: the orchestrator fails the run
    // (no worker could read it) and its error says what was wrong.
    LogJson("warn", "an assignment does not decode: rejected",
            {{"run_id", assign.run_id()}, {"error", std::string(boot.status().message())}});
    return Reject(assign, std::string(boot.status().message()));
  }
  auto slot = std::make_unique<Slot>();
  if (!boot->pending.empty()) slot->delivered_in = boot->pending.back().seq;
  slot->run_id = assign.run_id();
  slot->lease_token = assign.lease_token();
  slot->next_out = slot->sent_out = slot->acked_out = assign.out_seq();
  slot->snapshot_version = assign.snapshot_version();
  // The run's first save may be a delta on the stored snapshot it booted from: the run counts
  // restored entries as saved only when they are that snapshot's exactly (RestoreSnapshot).
  slot->whole_next = assign.snapshot_version() == 0;
  slot->delivered_in = std::max(slot->delivered_in, SnapshotInSeq(boot->snapshot));
  Slot* s = slot.get();
  const Agent& chosen = *agent->second.agent;
  slot->run = std::make_shared<ChatRun>(chosen, HostFor(*s), *std::move(boot));
  slots_[assign.run_id()] = std::move(slot);
  ++live_runs_;
  slots_used_.Set(live_runs_);
  slots_free_.Set(options_.capacity - live_runs_);
  runs_accepted_.Add(1);
  StartRun(assign, *s, received);
}

void Worker::Reject(const v1::AssignRun& assign, const std::string& reason) {
  runs_rejected_.Add(1);
  bool slot_free = reason != "no-capacity";
  v1::WorkerFrame frame;
  v1::RunRejected& rejected = *frame.mutable_run_rejected();
  rejected.set_run_id(assign.run_id());
  rejected.set_lease_token(assign.lease_token());
  rejected.set_reason(ClipText(reason, kMaxRunReasonBytes));
  Send(std::move(frame));
  if (slot_free) SendCredit(1);  // the slot it would have taken is still free
}

RunHost Worker::HostFor(Slot& slot) {
  Slot* s = &slot;
  RunHost host;
  host.executor = executor_;
  host.clock = &clock_;
  host.pool = &pool_;
  host.write = [this, s](OutRecord record) { return WriteOut(*s, std::move(record)); };
  host.writable = [this, s](std::stop_token stop) { return WaitForRoom(s->run_id, stop); };
  host.save_snapshot = [this, s](const SnapshotUpdate& snapshot) { SaveSnapshot(*s, snapshot); };
  host.finished = [this, s](const RunOutcome& outcome) { RunEnded(*s, outcome); };
  if (observe) {
    host.observe = [this, s](std::string_view hook, const Json& args) {
      observe(s->run_id, hook, args);
    };
  }
  host.timings = [this](const TurnTimings& t) { ObserveTimings(t); };
  host.new_message_id = NewMessageId;
  return host;
}

int64_t Worker::WriteOut(Slot& slot, OutRecord record) {
  record.seq = ++slot.next_out;
  const int64_t seq = record.seq;
  v1::OutRecord proto = OutRecordToProto(std::move(record));
  size_t bytes = proto.ByteSizeLong();
  if (bytes > kMaxOutRecordBytes) {
    // The orchestrator would refuse the batch and fail the run: readers get an error instead
    // of the chunk, and the turn goes on. The record is in the proto now: its type is read there.
    std::string type = proto.has_control() ? absl::StrCat("trigger:", proto.control().subtype())
                                           : OutRecord::ChunkText(proto.chunk_json()).Type();
    std::string what =
        absl::StrCat("a \"", type, "\" chunk of ", bytes, " bytes exceeds the limit of ",
                     kMaxOutRecordBytes, " bytes of a .out record and was dropped");
    LogJson("warn", "dropped an oversized chunk", {{"run_id", slot.run_id}, {"error", what}});
    proto = OutRecordToProto(OutRecord::Chunk(Json{{"type", "error"}, {"errorText", what}}));
    proto.set_seq(seq);
    bytes = proto.ByteSizeLong();
  }
  slot.unacked.push_back(std::move(proto));
  slot.unacked_bytes += bytes;
  unacked_bytes_ += bytes;
  unacked_bytes_gauge_.Add(static_cast<int64_t>(bytes));
  out_records_.Add(1);
  unacked_.Add(1);
  ScheduleFlush(slot);
  return seq;
}

void Worker::SaveSnapshot(Slot& slot, const SnapshotUpdate& snapshot) {
  // A delta holds the entries from the first the run changed since its previous save (or since
  // the stored snapshot it booted from): only to an orchestrator that takes deltas (an older one
  // would store it as a whole snapshot), and never after a doubt about what was stored.
  const size_t from = snapshot_deltas_ && !slot.whole_next
                          ? std::min(snapshot.unchanged, snapshot.count)
                          : size_t{0};
  std::string json;
  if (snapshot_deltas_) {
    std::vector<std::string> entries;
    entries.reserve(snapshot.count - from);
    for (size_t i = from; i < snapshot.count; ++i) entries.push_back(snapshot.EntryJson(i));
    json = SnapshotDocument(snapshot.header, entries);
    slot.snapshot_entries.clear();
    slot.entries_kept = false;
  } else {
    // Whole snapshots only: the entries are kept as text between saves, and a save dumps only
    // those the run changed.
    std::vector<std::string>& kept = slot.snapshot_entries;
    kept.resize(slot.entries_kept ? std::min(snapshot.unchanged, kept.size()) : size_t{0});
    for (size_t i = kept.size(); i < snapshot.count; ++i) {
      kept.push_back(snapshot.EntryJson(i));
    }
    slot.entries_kept = true;
    json = SnapshotDocument(snapshot.header, kept);
  }
  // To an orchestrator without deltas every snapshot is whole, and so is the first after a
  // reconnect to one that takes them: its stored version need not be the one this run numbered
  // (it may have converted an older whole snapshot to a version of its own).
  const bool next_whole = !snapshot_deltas_;
  v1::Snapshot frame;
  frame.set_run_id(slot.run_id);
  frame.set_lease_token(slot.lease_token);
  frame.set_in_seq(SnapshotInSeq(snapshot.header));
  frame.set_out_seq(SnapshotOutSeq(snapshot.header));
  frame.set_snapshot_json(std::move(json));
  frame.set_base_version(slot.snapshot_version);
  frame.set_version(++slot.snapshot_version);
  frame.set_messages_from(static_cast<int64_t>(from));
  snapshot_bytes_.Add(static_cast<int64_t>(frame.snapshot_json().size()));
  if (from == 0) {
    snapshots_whole_.Add(1);
    slot.snapshots.clear();  // a whole snapshot replaces those before it
  } else {
    snapshots_delta_.Add(1);
  }
  slot.whole_next = next_whole;
  slot.snapshots.push_back(std::move(frame));
  Flush(slot);  // the records it refers to go first
  SendSnapshot(slot.snapshots.back());
}

void Worker::DropStoredSnapshots(Slot& slot, int64_t stored) {
  std::deque<v1::Snapshot>& kept = slot.snapshots;
  while (!kept.empty() && kept.front().version() <= stored) kept.pop_front();
  if (kept.empty()) {
    // Nothing to send again. The next delta chains on the stored version, which must be this
    // run's last; when it is not (the store went back, or converted an older snapshot to a
    // version of its own), the next save is whole, numbered above it.
    if (stored != slot.snapshot_version) {
      slot.whole_next = true;
      slot.snapshot_version = std::max(slot.snapshot_version, stored);
    }
    return;
  }
  // The rest go again in order: a whole one first applies on anything, a delta only on the
  // version it changes. One that cannot (the store went back to an older version, say after a
  // power loss; or this orchestrator takes no deltas) is dropped with those after it: the stored
  // snapshot stays older but whole, as a retry would boot from, and the run's next is whole.
  const bool whole_first = kept.front().messages_from() == 0;
  if (snapshot_deltas_ && (whole_first || kept.front().base_version() == stored)) return;
  if (whole_first && kept.size() == 1) return;  // to an orchestrator without deltas, as before
  LogJson("warn", "snapshots the orchestrator cannot apply were dropped; the next is whole",
          {{"run_id", slot.run_id},
           {"stored_version", stored},
           {"first_version", kept.front().version()},
           {"first_base_version", kept.front().base_version()},
           {"takes_deltas", snapshot_deltas_}});
  if (whole_first) {
    kept.erase(kept.begin() + 1, kept.end());
  } else {
    kept.clear();
  }
  slot.whole_next = true;
  slot.snapshot_version = std::max(slot.snapshot_version, stored);
}

void Worker::ObserveTimings(const TurnTimings& t) {
  auto observe = [](Histogram& h, const std::optional<absl::Duration>& d) {
    if (d.has_value()) h.Observe(absl::ToDoubleSeconds(*d));
  };
  observe(turn_queued_, t.queued);
  observe(turn_boot_, t.boot);
  observe(turn_hooks_, t.hooks);
  observe(turn_handover_, t.handover);
  observe(turn_model_first_byte_, t.model_first_byte);
  observe(turn_tools_, t.tools);
  observe(turn_total_, t.turn);
}

void Worker::StartRun(const v1::AssignRun& assign, Slot& slot, absl::Time received) {
  v1::WorkerFrame frame;
  frame.mutable_run_accepted()->set_run_id(assign.run_id());
  frame.mutable_run_accepted()->set_lease_token(assign.lease_token());
  Send(std::move(frame));
  slot.run->Start();
  boot_seconds_.Observe(absl::ToDoubleSeconds(clock_.Now() - received));
  LogJson("debug", "run started",
          {{"worker_id", options_.worker_id},
           {"run_id", assign.run_id()},
           {"attempt", assign.attempt()},
           {"chat_id", assign.chat_id()},
           {"trace_id", assign.traceparent().size() >= 35 ? assign.traceparent().substr(3, 32)
                                                          : std::string()}});
}

void Worker::OnDeliver(const v1::Deliver& deliver) {
  Slot* slot = Find(deliver.run_id(), deliver.lease_token());
  if (slot == nullptr || slot->ended) return;
  if (deliver.record().seq() <= slot->delivered_in) return;  // a re-send after a reconnect
  absl::StatusOr<InRecord> record = InRecordFromProto(deliver.record());
  slot->delivered_in = deliver.record().seq();
  if (record.ok()) {
    Json seen = {{"seq", record->seq}, {"kind", std::string(InKindName(record->kind))}};
    slot->run->Deliver(*std::move(record));
    if (observe) observe(slot->run_id, "$in", seen);
  } else {
    LogJson("warn", "a delivered record does not decode; skipped",
            {{"run_id", slot->run_id},
             {"seq", deliver.record().seq()},
             {"error", record.status().ToString()}});
  }
  v1::WorkerFrame frame;
  frame.mutable_delivered()->set_run_id(slot->run_id);
  frame.mutable_delivered()->set_lease_token(slot->lease_token);
  frame.mutable_delivered()->set_in_seq(slot->delivered_in);
  Send(std::move(frame));
}

void Worker::OnAck(const v1::Ack& ack) {
  auto it = slots_.find(ack.run_id());
  if (it == slots_.end()) return;
  Slot& slot = *it->second;
  slot.acked_out = std::max(slot.acked_out, ack.out_seq());
  slot.end_stored = slot.end_stored || ack.run_ended();
  while (!slot.snapshots.empty() && slot.snapshots.front().version() <= ack.snapshot_version()) {
    slot.snapshots.pop_front();  // stored
  }
  DropAcked(slot);
  MaybeRelease(ack.run_id());
}

void Worker::DropAcked(Slot& slot) {
  size_t freed = 0;
  int64_t records = 0;
  while (!slot.unacked.empty() && slot.unacked.front().seq() <= slot.acked_out) {
    freed += slot.unacked.front().ByteSizeLong();
    ++records;
    slot.unacked.pop_front();
  }
  if (records == 0) return;
  freed = std::min(freed, slot.unacked_bytes);
  slot.unacked_bytes -= freed;
  unacked_bytes_ -= std::min(freed, unacked_bytes_);
  unacked_bytes_gauge_.Add(-static_cast<int64_t>(freed));
  unacked_.Add(-records);
  // Room freed: runs under both bounds again go on. (Few wait at once; a wake that finds no
  // room waits again.)
  for (auto& [run_id, waiters] : waiting_for_room_) {
    auto it = slots_.find(run_id);
    if (it != slots_.end() && !HasRoom(*it->second)) continue;
    for (Waiter* waiter : waiters) waiter->Notify();
  }
}

bool Worker::HasRoom(const Slot& slot) const {
  return slot.unacked_bytes < options_.max_unacked_run_bytes &&
         unacked_bytes_ < options_.max_unacked_bytes;
}

asio::awaitable<void> Worker::WaitForRoom(std::string run_id, std::stop_token stop) {
  std::weak_ptr<bool> alive = alive_;
  bool counted = false;
  for (;;) {
    auto it = slots_.find(run_id);
    if (it == slots_.end() || it->second->dropped || HasRoom(*it->second) ||
        stop.stop_requested()) {
      break;
    }
    if (!counted) {
      counted = true;
      room_waits_.Add(1);
      runs_waiting_.Add(1);
    }
    Waiter waiter(executor_, clock_);
    // Leaves the list however the wait ends (the frame may be destroyed with the loop).
    struct Listed {
      Worker* worker;
      std::weak_ptr<bool> alive;
      const std::string& run_id;
      Waiter* waiter;
      ~Listed() {
        std::shared_ptr<bool> live = alive.lock();
        if (!live || !*live) return;
        auto it = worker->waiting_for_room_.find(run_id);
        if (it == worker->waiting_for_room_.end()) return;
        std::erase(it->second, waiter);
        if (it->second.empty()) worker->waiting_for_room_.erase(it);
      }
    } listed{this, alive, run_id, &waiter};
    waiting_for_room_[run_id].push_back(&waiter);
    Waiter::Result woke = co_await waiter.Wait(absl::InfiniteFuture(), stop);
    std::shared_ptr<bool> live = alive.lock();
    if (!live || !*live) co_return;  // the worker is gone; nothing to count down
    if (woke == Waiter::Result::kStopped) break;
  }
  if (counted) runs_waiting_.Add(-1);
}

void Worker::AbandonAssembly(const std::string& why) {
  v1::AssignRun partial = std::move(*assembling_);
  assembling_.reset();
  LogJson("warn", "an assignment in several frames was cut short; rejected",
          {{"run_id", partial.run_id()}, {"error", why}});
  runs_rejected_.Add(1);
  v1::WorkerFrame frame;
  v1::RunRejected& rejected = *frame.mutable_run_rejected();
  rejected.set_run_id(partial.run_id());
  rejected.set_lease_token(partial.lease_token());
  rejected.set_reason("incomplete-assignment");
  Send(std::move(frame));
  SendCredit(1);
}

void Worker::ScheduleFlush(Slot& slot) {
  // Only the runs that wrote are visited: a worker holding thousands of idle runs pays nothing
  // for them per streamed chunk.
  if (!slot.flush_queued) {
    slot.flush_queued = true;
    to_flush_.push_back(slot.run_id);
  }
  if (flush_posted_) return;
  flush_posted_ = true;
  std::weak_ptr<bool> alive = alive_;
  asio::post(executor_, [this, alive] {
    if (alive.expired()) return;
    flush_posted_ = false;
    std::vector<std::string> runs;
    runs.swap(to_flush_);
    for (const std::string& id : runs) {
      auto it = slots_.find(id);
      if (it == slots_.end()) continue;  // released meanwhile
      it->second->flush_queued = false;
      Flush(*it->second);
    }
  });
}

void Worker::Flush(Slot& slot) {
  if (slot.dropped || !stream_ || !welcomed_) return;
  if (slot.unacked.empty() || slot.unacked.back().seq() <= slot.sent_out) return;
  for (v1::RunOutput& output : FrameRunOutput(slot.run_id, slot.lease_token, slot.unacked,
                                              slot.sent_out, send_frame_bytes_)) {
    v1::WorkerFrame frame;
    *frame.mutable_run_output() = std::move(output);
    Send(std::move(frame));
  }
  slot.sent_out = slot.unacked.back().seq();
}

void Worker::SendSnapshot(const v1::Snapshot& snapshot) {
  for (v1::Snapshot& piece : FrameSnapshot(snapshot, send_frame_bytes_)) {
    v1::WorkerFrame frame;
    *frame.mutable_snapshot() = std::move(piece);
    Send(std::move(frame));
  }
}

void Worker::RunEnded(Slot& slot, const RunOutcome& outcome) {
  slot.ended = true;
  --live_runs_;
  slots_used_.Set(live_runs_);
  slots_free_.Set(options_.capacity - live_runs_);
  if (!slot.dropped) {
    v1::RunFinished finished;
    finished.set_run_id(slot.run_id);
    finished.set_lease_token(slot.lease_token);
    finished.set_end(RunEndProto(outcome.kind));
    // An error can be any text from user code; the orchestrator could not parse non-UTF-8,
    // and refuses text over its limits.
    finished.set_reason(ClipText(ToValidUtf8(outcome.reason), kMaxRunReasonBytes));
    finished.set_error(ClipText(ToValidUtf8(outcome.error), kMaxRunErrorBytes));
    finished.set_retryable(outcome.retryable);
    if (outcome.kind == RunOutcome::Kind::kSuspended) {
      finished.set_resume_deadline_unix_ms(absl::ToUnixMillis(outcome.resume_deadline));
    }
    finished.set_last_out_seq(slot.next_out);
    slot.finish = finished;
    Flush(slot);
    v1::WorkerFrame frame;
    *frame.mutable_run_finished() = std::move(finished);
    Send(std::move(frame));
  }
  SendCredit(1);
  // The ChatRun is done with its host; drop it from here, not from inside its own callback.
  std::string run_id = slot.run_id;
  std::weak_ptr<bool> alive = alive_;
  asio::post(executor_, [this, alive, run_id] {
    if (!alive.expired()) MaybeRelease(run_id);
  });
}

// A slot goes once its run ended and the orchestrator stored its end (or it was dropped): until
// then a reconnect re-sends its output and its RunFinished.
void Worker::MaybeRelease(const std::string& run_id) {
  auto it = slots_.find(run_id);
  if (it == slots_.end()) return;
  Slot& slot = *it->second;
  if (!slot.ended) return;
  if (!slot.dropped && !slot.end_stored) return;
  unacked_.Add(-static_cast<int64_t>(slot.unacked.size()));
  unacked_bytes_ -= std::min(slot.unacked_bytes, unacked_bytes_);
  unacked_bytes_gauge_.Add(-static_cast<int64_t>(slot.unacked_bytes));
  slots_.erase(it);
  // What it held is free: other runs may have waited on the worker's bound.
  for (auto& [run_id, waiters] : waiting_for_room_) {
    for (Waiter* waiter : waiters) waiter->Notify();
  }
  CheckDrained();
}

void Worker::Revoked(const std::string& run_id, int64_t lease_token) {
  Slot* slot = Find(run_id, lease_token);
  if (slot == nullptr) return;
  LogJson("info", "lease revoked: dropping the run",
          {{"worker_id", options_.worker_id}, {"run_id", run_id}});
  slot->dropped = true;
  if (!slot->ended) {
    slot->run->Cancel(/*lost=*/true);  // RunEnded frees its slot
  } else {
    MaybeRelease(run_id);
  }
}

void Worker::Drain(std::function<void()> done) {
  if (done) drained_ = std::move(done);
  if (draining_) return;
  draining_ = true;
  ready_ = false;
  LogJson("info", "draining", {{"worker_id", options_.worker_id}, {"live_runs", live_runs_}});
  v1::WorkerFrame frame;
  frame.mutable_draining()->set_deadline_unix_ms(
      absl::ToUnixMillis(absl::Now() + options_.drain_grace));
  frame.mutable_draining()->set_reason("shutdown");
  Send(std::move(frame));
  drain_timer_.expires_after(absl::ToChronoNanoseconds(options_.drain_grace));
  std::weak_ptr<bool> alive = alive_;
  drain_timer_.async_wait([this, alive](const asio::error_code& ec) {
    if (ec || alive.expired()) return;
    // The grace is over: what still runs goes back to the orchestrator, which boots it
    // elsewhere from its snapshot and the records it did not answer. Ended runs whose last
    // output was never acknowledged are given up: their leases run out and retry them.
    std::vector<std::string> ids;
    for (auto& [id, slot] : slots_) ids.push_back(id);
    for (const std::string& id : ids) {
      Slot& slot = *slots_[id];
      if (slot.dropped) continue;
      if (slot.ended) {
        slot.dropped = true;
        MaybeRelease(id);
      } else {
        HandBack(slot);
      }
    }
    CheckDrained();
  });
  CheckDrained();
}

void Worker::HandBack(Slot& slot) {
  Flush(slot);
  v1::WorkerFrame frame;
  v1::RunFinished& finished = *frame.mutable_run_finished();
  finished.set_run_id(slot.run_id);
  finished.set_lease_token(slot.lease_token);
  finished.set_end(v1::RUN_END_FAILED);
  finished.set_reason("worker-shutdown");
  finished.set_retryable(true);
  finished.set_last_out_seq(slot.next_out);
  Send(std::move(frame));
  slot.dropped = true;
  slot.run->Cancel(/*lost=*/true);
}

void Worker::CheckDrained() {
  if (!draining_ || handed_back_) return;
  for (auto& [id, slot] : slots_) {
    if (!slot->dropped) return;  // a live run, or output not yet stored
    if (!slot->ended) return;
  }
  handed_back_ = true;
  drain_timer_.cancel();
  reconnect_timer_.cancel();
  LogJson("info", "drained", {{"worker_id", options_.worker_id}});
  if (stream_) {
    v1::WorkerFrame frame;
    frame.mutable_goodbye();
    Send(std::move(frame));
    stream_->CloseWrites();  // the orchestrator ends the stream; OnStreamEnd calls done
  } else {
    stopped_ = true;
    if (drained_) std::exchange(drained_, nullptr)();
  }
}

}  // namespace baton
