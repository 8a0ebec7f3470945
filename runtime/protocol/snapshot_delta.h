// File: runtime/protocol/snapshot_delta.h
//
// Snapshots stored as deltas (docs/protocol.md, Snapshots). A worker sends a run's snapshot
// (docs/semantics.md) with its header whole and its entries ("messages") from the first one the
// run changed since its previous save; the chat's host applies it on top of the version it stored
// before, and keeps the entries as JSON text, one string each, so that a save costs what the turn
// changed and a continuation still boots from the same document, assembled as text. Plain
// functions without coroutines: the orchestrator links them, the fuzz targets build them.
#ifndef BATON_RUNTIME_PROTOCOL_SNAPSHOT_DELTA_H_
#define BATON_RUNTIME_PROTOCOL_SNAPSHOT_DELTA_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "baton/v1/worker.pb.h"
#include "hooks/json.h"

namespace baton {

// The highest snapshot version a worker may send (2^53).
inline constexpr int64_t kMaxSnapshotVersion = int64_t{1} << 53;

// A chat's stored snapshot as its host keeps it: the header (every field of the document but
// "messages", as a JSON object's text) and the entries of "messages", each a JSON object's text,
// with their ids. `ids` and `entries` are as long as each other.
struct SnapshotState {
  int64_t version = 0;  // 0: none stored
  std::string header_json;
  std::vector<std::string> entries;
  std::vector<std::string> ids;  // each entry's "id" ("" when it has none that is a string)
  size_t bytes = 0;              // SnapshotBytes()
};

// A Snapshot frame decoded against the stored snapshot: what to store.
struct SnapshotDelta {
  int64_t version = 0;  // the version it is stored as
  size_t from = 0;      // the stored entries before it are kept; the rest are replaced
  std::string header_json;
  std::vector<std::string> entries;  // the entries from `from` on, as JSON text
  std::vector<std::string> ids;      // their ids
  int64_t in_seq = 0;                // the frame's cursors
  int64_t out_seq = 0;
  size_t bytes = 0;  // SnapshotBytes() of the stored snapshot once this is applied
};

// What a snapshot may hold, from its chat's logs and its host's limit.
struct SnapshotBounds {
  int64_t in_seq = 0;    // the chat's last `.in` seq
  int64_t out_seq = 0;   // the chat's last stored `.out` seq
  size_t max_bytes = 0;  // the largest stored snapshot (SnapshotBytes)
};

// SnapshotBytes()
//
// The size a stored snapshot is counted as (the limit `--max_snapshot_bytes` applies to it): its
// header's text and each entry's text plus one. Within a few bytes of the assembled document.
size_t SnapshotBytes(const SnapshotState& state);

// DecodeSnapshotUpdate()
//
// A whole Snapshot frame (its pieces gathered: AddSnapshotPiece) checked against `stored`, in this
// order, each failure InvalidArgument with the text docs/bad-input.md lists (the run's error,
// after "bad-snapshot: "):
//   - `snapshot_json` as DecodeSnapshot takes it ("snapshot_json: ..."),
//   - its cursors within the logs: "snapshot in_seq N is outside .in (0 to M)", "snapshot out_seq
//     N is outside the stored .out (0 to M)",
//   - "snapshot version N is below 0";
// then a frame whose version is not 0 and at most the stored one is a re-send: nullopt, nothing
// to store. Then:
//   - "snapshot messages_from N is below 0",
//   - "a snapshot with messages_from N needs a version (only a whole snapshot may have none)",
//   - "snapshot messages_from N is past the stored snapshot's M messages",
//   - "snapshot base_version B is not the stored snapshot's version V (a snapshot before it was
//     not stored)" (for a delta: messages_from > 0),
//   - "a snapshot of N bytes or more exceeds the limit of M bytes" (the stored snapshot once
//     applied, SnapshotBytes).
// A frame of version 0 (a worker that does not number its snapshots) is stored as the stored
// version + 1.
absl::StatusOr<std::optional<SnapshotDelta>> DecodeSnapshotUpdate(const baton::v1::Snapshot& frame,
                                                                  const SnapshotState& stored,
                                                                  const SnapshotBounds& bounds);

// ApplySnapshotDelta()
//
// `state` with `delta` applied: its version and header replaced, its entries from `delta.from` on
// replaced by the delta's. `delta` comes from DecodeSnapshotUpdate on this same state (or from
// SplitSnapshotJson, on an empty one).
void ApplySnapshotDelta(SnapshotState& state, SnapshotDelta delta);

// SplitSnapshotJson()
//
// A snapshot stored whole as one text (before snapshots were kept by entry) as a whole delta of
// version 1 (`from` 0, cursors 0: the caller sets them), or DecodeSnapshot's error.
absl::StatusOr<SnapshotDelta> SplitSnapshotJson(std::string_view snapshot_json);

// AssembleSnapshotJson()
//
// The stored snapshot as one document: the header's fields, then "messages" with every entry,
// as DumpJson writes a document whose "messages" comes last. "" when none is stored (version 0
// and nothing held).
std::string AssembleSnapshotJson(const SnapshotState& state);

// SnapshotIdsJson()
//
// What the session rules ask of a snapshot (SnapshotHolds, NextBootOf, LeftUnanswered): which
// message ids it holds, as {"messages":[{"id":...}, ...]}, without parsing any entry. Null when
// none is stored.
Json SnapshotIdsJson(const SnapshotState& state);

}  // namespace baton

#endif  // BATON_RUNTIME_PROTOCOL_SNAPSHOT_DELTA_H_
