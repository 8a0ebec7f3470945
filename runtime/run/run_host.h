// File: runtime/run/run_host.h
//
// What a run and the process hosting it say to each other: how a run starts (BootRequest), what
// it asks of its host (RunHost: write `.out`, save snapshots, report its end), and what it hands
// back (SnapshotUpdate, TurnTimings, RunOutcome). The two hosts are the worker
// (runtime/worker/worker.h) and the test kit's LocalSessions (runtime/testkit/local_session.h);
// the run itself is ChatRun (runtime/run/chat_run.h), which they need not expose.
#ifndef BATON_RUNTIME_RUN_RUN_HOST_H_
#define BATON_RUNTIME_RUN_RUN_HOST_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"

namespace baton {

// What starts a run. `trigger` is the boot kind: "preload", "submit-message",
// "handover-prepare", "regenerate-message", "close", or "" for a continuation (a run taking over
// a session whose earlier run ended; `snapshot` and `pending` carry what it left).
struct BootRequest {
  std::string run_id;
  std::string chat_id;
  std::string trigger;
  Json payload = Json::object();  // ChatTaskWirePayload: message, headStartMessages, metadata, ...
  bool continuation = false;
  std::string previous_run_id;
  int attempt = 1;
  Json snapshot;                    // null when there is none
  bool resume = false;              // the earlier run suspended; this run carries on its wait
  std::vector<InRecord> pending;    // `.in` records after the snapshot's cursor
  std::vector<OutRecord> out_tail;  // `.out` records after the snapshot's turn-complete
  std::string traceparent;          // W3C trace context, carried into provider calls
  // When the run was queued (for the chat's first run: when the chat was created; the boot
  // message was stored then) and when its host got the assignment, for the turn timings.
  absl::Time queued_at = absl::InfinitePast();
  absl::Time assigned_at = absl::InfinitePast();
};

// One turn's timings, written on its `finish` chunk as messageMetadata.baton.timings (in
// milliseconds) and observed by the host (docs/worker.md). Each is set when it applies.
struct TurnTimings {
  std::optional<absl::Duration> queued;    // message stored -> the run had it
  std::optional<absl::Duration> boot;      // assignment received -> run started (first turn)
  std::optional<absl::Duration> hooks;     // hooks before the model call
  std::optional<absl::Duration> handover;  // a head start's wait for its signal
  std::optional<absl::Duration> model_first_byte;  // model call sent -> its first event
  std::optional<absl::Duration> tools;             // tool executions
  std::optional<absl::Duration> turn;              // message stored -> `finish`
  // {"queued": 1.5, "turn": 120, ...}: milliseconds, keys only for what is set.
  Json ToJson() const;
};

// How a run ended.
struct RunOutcome {
  enum class Kind {
    kExited,     // finished; the next record boots a continuation
    kSuspended,  // idle; the next record before `resume_deadline` resumes it
    kFailed,     // an error outside a turn (a boot hook); `retryable` says whether to reassign
    kCancelled,  // cancelled from outside
  };
  Kind kind = Kind::kExited;
  std::string reason;  // see RunEndEvent::reason
  std::string error;
  bool retryable = false;
  absl::Time resume_deadline = absl::InfinitePast();
};

// A snapshot as a run saves it (docs/semantics.md): the header (every field but "messages") and
// the transcript's entries ({"id", "final", "message"}), of which the first `unchanged` are as
// in the run's previous save. A host that kept those rewrites only the rest, so a save costs
// what the turn changed, not the chat. Valid only during RunHost::save_snapshot.
struct SnapshotUpdate {
  // An entry: the message is the run's own, read where it is.
  struct Entry {
    std::string id;
    bool final = true;
    const Json* message = nullptr;
  };

  Json header;
  size_t unchanged = 0;
  size_t count = 0;
  std::function<Entry(size_t index)> entry;  // index < count

  // Entry `index` as a JSON object {"id", "final", "message"} (the message copied).
  Json EntryTree(size_t index) const;
  // Its JSON text, DumpJson(EntryTree(index)) byte for byte, without copying the message.
  std::string EntryJson(size_t index) const;
  // The whole snapshot document: the header, then "messages".
  Json Whole() const;
};

// What a run needs from the process hosting it. All callbacks are called on `executor`.
struct RunHost {
  asio::any_io_executor executor;
  Clock* clock = nullptr;
  HookPool* pool = nullptr;
  // Appends a record to the session's `.out` and returns its seq. It always takes the record.
  std::function<int64_t(OutRecord)> write;
  // Optional: returns once the host has room for more output (its outbox of unacknowledged
  // records is under its bound), or at once when `stop` is requested. The step loop awaits it
  // before each model call, between the model's reads and before it starts tools, so a run
  // whose output cannot leave stops producing it (backpressure). Empty: no bound.
  std::function<asio::awaitable<void>(std::stop_token stop)> writable;
  // Stores the run's snapshot (see docs/semantics.md for the format).
  std::function<void(const SnapshotUpdate& snapshot)> save_snapshot;
  // Called once, when the run has ended.
  std::function<void(const RunOutcome&)> finished;
  // Optional: sees every lifecycle point with a JSON summary of its arguments (the test kit).
  std::function<void(std::string_view hook, const Json& args)> observe;
  // Makes a fresh assistant message id.
  std::function<std::string()> new_message_id;
  // Optional: each turn's timings, as its `finish` is written.
  std::function<void(const TurnTimings&)> timings;
};

}  // namespace baton

#endif  // BATON_RUNTIME_RUN_RUN_HOST_H_
