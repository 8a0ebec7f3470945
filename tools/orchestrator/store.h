// File: tools/orchestrator/store.h
//
// Store: the orchestrator's durable state. Sessions with their `.in` and `.out` logs, runs, the
// latest snapshot of each session (kept by entry, so a save writes what a turn changed), and the
// fencing-token counter. The orchestrator keeps its
// working state in memory and writes through to a Store before it acknowledges anything; on
// start it loads everything back.
//
// Two implementations: SqliteStore (one file, WAL mode; the embedded default) and MemoryStore
// (unit tests only). A PostgreSQL store implements the same interface.
//
// Thread-safety: every method may be called from any thread; implementations serialise calls.
#ifndef BATON_TOOLS_ORCHESTRATOR_STORE_H_
#define BATON_TOOLS_ORCHESTRATOR_STORE_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baton::orchestrator {

// A chat session. Its logs are kept apart (InRow, OutRow).
struct SessionRow {
  std::string chat_id;
  std::string agent;
  std::string state;  // "live", "suspended", "exited", "failed", "closed"
  // The first boot payload minus one-shot fields (JSON text): what a continuation boots with.
  std::string base_payload_json;
  // The first run's submit-message message (JSON text), or "" (it never goes on `.in`).
  std::string boot_message_json;
  std::string traceparent;
  std::string run_id;  // current or latest run
  int32_t runs = 0;
  int64_t created_ms = 0;
  int64_t resume_deadline_ms = 0;  // while suspended
  // A snapshot stored whole (JSON text, "" when none), as before snapshots were kept by entry
  // (PutSnapshot), and the cursors of the latest snapshot, either way. PutSnapshot empties it.
  std::string snapshot_json;
  int64_t snapshot_in_seq = 0;
  int64_t snapshot_out_seq = 0;
  // A head start's headStartMessages (JSON text; "" for other chats): a retry of a head start
  // whose first turn was never completed boots with them again (session_rules.h, NextBootOf).
  std::string head_start_json;
  // While a head start's handover window is open: when it closes (unix ms); 0 otherwise.
  int64_t handover_deadline_ms = 0;
  // The last `.in` seq a chat that gave up (its retry budget spent) answered with an error: the
  // messages up to it are not handed to later runs.
  int64_t failed_in_seq = 0;
};

// The `limit` of a read that wants every row.
inline constexpr size_t kAllRows = std::numeric_limits<size_t>::max();

// One entry of a stored snapshot's "messages" (docs/semantics.md): its message id and its text.
struct SnapshotEntryRow {
  std::string message_id;
  std::string entry_json;
};

// A snapshot write (runtime/protocol/snapshot_delta.h; docs/orchestrator.md, State): the
// snapshot's header (every field but "messages", a JSON object's text), its cursors, and its
// entries from index `from` on; the stored entries before `from` are kept.
struct SnapshotWrite {
  int64_t version = 0;
  std::string header_json;
  int64_t in_seq = 0;
  int64_t out_seq = 0;
  int64_t from = 0;
  std::vector<SnapshotEntryRow> entries;
  int64_t bytes = 0;  // the whole stored snapshot's size once written (SnapshotBytes)
};

// A chat's stored snapshot, its entries in order.
struct StoredSnapshot {
  int64_t version = 0;
  std::string header_json;
  std::vector<SnapshotEntryRow> entries;
};

struct InRow {
  int64_t seq = 0;
  std::string kind;  // "message", "stop", "handover", "handover-skip"
  std::string body_json;
  std::string client_record_id;  // "" when the client gave none
  int64_t appended_ms = 0;
};

// A `.out` record as the serialized baton.v1.OutRecord (seq included).
struct OutRow {
  int64_t seq = 0;
  std::string record;
};

struct RunRow {
  std::string run_id;
  std::string chat_id;
  std::string agent;
  int32_t attempt = 1;
  std::string trigger;       // "preload", ..., "continuation", "resume"
  std::string state;         // "queued", "assigned", "running", "suspended", "exited", "failed",
                             // "cancelled", "lost"
  std::string payload_json;  // the boot payload
  std::string previous_run_id;
  int64_t lease_token = 0;
  std::string worker_id;
  std::string reason;
  std::string error;
  int64_t created_ms = 0;
  int64_t started_ms = 0;
  int64_t ended_ms = 0;
  // A client's CancelRun was acknowledged while the run was running: it ends cancelled however
  // it ends, and is never retried, across restarts.
  bool cancel_requested = false;
};

class Store {
 public:
  virtual ~Store() = default;

  // "sqlite:<path>" or "memory".
  virtual std::string Describe() const = 0;

  // Inserts or replaces the session row (keyed by chat_id). Does not touch its logs.
  virtual absl::Status PutSession(const SessionRow& session) = 0;
  virtual absl::StatusOr<std::vector<SessionRow>> LoadSessions() = 0;

  // Appends to `.in` with the next seq (last + 1), unless `row.client_record_id` is non-empty
  // and already in this chat's `.in`: then nothing is written and the earlier row is returned
  // with `duplicate` set. `row.seq` is ignored.
  struct Appended {
    InRow row;
    bool duplicate = false;
  };
  virtual absl::StatusOr<Appended> AppendIn(const std::string& chat_id, InRow row) = 0;
  // `.in` rows with seq > after_seq, in order, at most `limit`.
  virtual absl::StatusOr<std::vector<InRow>> ReadIn(const std::string& chat_id, int64_t after_seq,
                                                    size_t limit) = 0;
  virtual absl::StatusOr<int64_t> LastInSeq(const std::string& chat_id) = 0;

  // Appends rows to `.out` in one transaction. Each row's seq must be the next one (last + 1,
  // then + 1 per row): rows at or below the stored end are skipped (re-sends), and a gap is
  // FailedPrecondition with nothing written. Returns the last stored seq afterwards.
  virtual absl::StatusOr<int64_t> AppendOut(const std::string& chat_id,
                                            const std::vector<OutRow>& rows) = 0;
  // `.out` rows with seq > after_seq, in order, at most `limit`.
  virtual absl::StatusOr<std::vector<OutRow>> ReadOut(const std::string& chat_id, int64_t after_seq,
                                                      size_t limit) = 0;
  virtual absl::StatusOr<int64_t> LastOutSeq(const std::string& chat_id) = 0;

  // Stores a snapshot of the chat in one transaction, when the stored one is version
  // `base_version` (0: none stored): the header, the entries from `write.from` on replaced by
  // `write.entries` (those after them deleted), and the session row's snapshot cursors, its
  // `snapshot_json` emptied. FailedPrecondition, nothing written, when the stored version is
  // another, or when `write.from` is past the stored entries (a gap).
  virtual absl::Status PutSnapshot(const std::string& chat_id, int64_t base_version,
                                   const SnapshotWrite& write) = 0;
  // The chat's stored snapshot; nullopt when none was stored with PutSnapshot.
  virtual absl::StatusOr<std::optional<StoredSnapshot>> LoadSnapshot(
      const std::string& chat_id) = 0;

  // Inserts or replaces the run row (keyed by run_id).
  virtual absl::Status PutRun(const RunRow& run) = 0;
  // Inserts or replaces both rows in one transaction (a boot: the new run and its session).
  virtual absl::Status PutRunAndSession(const RunRow& run, const SessionRow& session) = 0;
  // Every run (chat_id empty) or the chat's runs, oldest first.
  virtual absl::StatusOr<std::vector<RunRow>> ListRuns(const std::string& chat_id) = 0;

  // The next fencing token: larger than every token this store returned before, across restarts
  // (a restart may skip some).
  virtual absl::StatusOr<int64_t> NextLeaseToken() = 0;
  // The next run number (for run ids), never one returned before, across restarts.
  virtual absl::StatusOr<int64_t> NextRunNumber() = 0;
};

// An in-memory Store, for unit tests.
std::unique_ptr<Store> NewMemoryStore();

// Opens (creating when missing) the SQLite database at `path` in WAL mode.
// With `durable`, every commit is synced to disk (synchronous=FULL); otherwise commits survive a
// process crash but the last ones may be lost on power loss (synchronous=NORMAL).
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                                       bool durable = false);

}  // namespace baton::orchestrator

#endif  // BATON_TOOLS_ORCHESTRATOR_STORE_H_
