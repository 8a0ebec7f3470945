// File: runtime/wire.h
//
// Session records between their runtime form (hooks/records.h) and their protocol form
// (proto/baton/v1/chat.proto). JSON travels as JSON text, dumped without reformatting.
#ifndef BATON_RUNTIME_WIRE_H_
#define BATON_RUNTIME_WIRE_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "baton/v1/chat.pb.h"
#include "baton/v1/sessions.pb.h"
#include "baton/v1/worker.pb.h"
#include "hooks/records.h"

namespace baton {

baton::v1::OutRecord OutRecordToProto(const OutRecord& record);
// InvalidArgument when a chunk is not a JSON object.
absl::StatusOr<OutRecord> OutRecordFromProto(const baton::v1::OutRecord& record);

// CheckOutRecord()
//
// What the orchestrator takes from a worker as a `.out` record: a seq from 1, no larger than
// kMaxOutRecordBytes serialized, and either a chunk that is a JSON object with a string "type"
// nested at most kMaxChunkDepth levels, or a control record with a subtype. InvalidArgument
// naming the seq and what is wrong. OutRecordFromProto takes every chunk this takes.
absl::Status CheckOutRecord(const baton::v1::OutRecord& record);

// DecodeSnapshot()
//
// A run's snapshot (JSON text, see ChatRun::MakeSnapshot): a JSON object whose "messages", when
// present, is an array of objects. InvalidArgument saying what is wrong.
absl::StatusOr<Json> DecodeSnapshot(std::string_view snapshot_json);

// What a worker reads from an AssignRun before it starts the run.
struct Assignment {
  Json payload = Json::object();  // the boot payload
  Json snapshot;                  // null when there is none
  std::vector<InRecord> pending;
  std::vector<OutRecord> out_tail;
};

// DecodeAssignment()
//
// Decodes and checks what an assignment carries: a payload that is a JSON object nested at most
// kMaxDataDepth levels whose message and head-start messages are UI messages (CheckBootPayload),
// a snapshot DecodeSnapshot takes (at most kMaxJsonDepth levels, as every JSON text),
// `.in` records DecodeInRecord takes, `.out` records OutRecordFromProto takes. On failure,
// InvalidArgument whose message is the RunRejected reason the worker answers with: "bad-payload",
// "bad-snapshot", "bad-pending-record" or "bad-out-record", then ": " and what is wrong.
absl::StatusOr<Assignment> DecodeAssignment(const baton::v1::AssignRun& assign);

baton::v1::InKind InKindToProto(InKind kind);
// Validates the body as DecodeInRecord does.
absl::StatusOr<InRecord> InRecordFromProto(const baton::v1::InRecord& record);

// "preload", "submit-message", ... and back; "" for TRIGGER_UNSPECIFIED. Unknown names give
// TRIGGER_UNSPECIFIED.
std::string_view TriggerName(baton::v1::Trigger trigger);
baton::v1::Trigger TriggerFromName(std::string_view name);

// "live", "suspended", "exited", "failed", "closed" and back ("unspecified" / UNSPECIFIED
// otherwise).
std::string_view SessionStateName(baton::v1::SessionState state);
baton::v1::SessionState SessionStateFromName(std::string_view name);

// "queued", "assigned", "running", "suspended", "exited", "failed", "cancelled", "lost" and
// back ("unspecified" / UNSPECIFIED otherwise).
std::string_view RunStateName(baton::v1::RunState state);
baton::v1::RunState RunStateFromName(std::string_view name);

// Limits of what a worker writes in its own words (docs/bad-input.md): the worker clips its
// text to fit, and the orchestrator refuses a frame over them.
inline constexpr size_t kMaxRunReasonBytes = 256;  // RunRejected.reason, RunFinished.reason
inline constexpr size_t kMaxRunErrorBytes = 4096;  // RunFinished.error

// CheckAgentName()
//
// An agent's name, as CreateSession names it and a worker's Hello announces it: 1 to
// kMaxAgentNameBytes of ASCII letters, digits and `-_.:/@`. InvalidArgument saying which rule
// `name` breaks (quoting it clipped).
inline constexpr size_t kMaxAgentNameBytes = 128;
absl::Status CheckAgentName(std::string_view name);

// Whether `value` is a W3C traceparent: "vv-<32 hex trace id>-<16 hex parent id>-<2 hex flags>",
// lowercase, trace and parent ids not all zero. Only such values are carried into a run and
// its provider requests.
bool ValidTraceparent(std::string_view value);

}  // namespace baton

#endif  // BATON_RUNTIME_WIRE_H_
