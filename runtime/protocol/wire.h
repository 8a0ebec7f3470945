// File: runtime/protocol/wire.h
//
// Session records between their runtime form (hooks/records.h) and their protocol form
// (proto/baton/v1/chat.proto). JSON travels as JSON text, dumped without reformatting.
#ifndef BATON_RUNTIME_PROTOCOL_WIRE_H_
#define BATON_RUNTIME_PROTOCOL_WIRE_H_

#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "baton/v1/chat.pb.h"
#include "baton/v1/sessions.pb.h"
#include "baton/v1/worker.pb.h"
#include "hooks/records.h"

namespace baton {

// The chunk's text is moved into the proto, not copied.
baton::v1::OutRecord OutRecordToProto(OutRecord record);
// InvalidArgument when a chunk is not a JSON object with a string "type"; the chunk's text is kept
// as it is, checked without building it.
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

// ---- Frames (docs/protocol.md, "Frames") ----------------------------------------------------
//
// No frame between orchestrator and worker is larger than its receiver's frame bound, unless it
// holds one record (or an assignment's payload) that alone is larger. What does not fit is
// split: an assignment into AssignRun + AssignMore frames, a snapshot into several Snapshot
// frames, output into several RunOutput frames.

// The protocol's frame bound: what a side reads when its peer announced none (gRPC's default
// receive limit).
inline constexpr size_t kDefaultFrameBytes = 4 << 20;
// The least and the most a side may set as its bound.
inline constexpr size_t kMinFrameBytes = 64 << 10;
inline constexpr size_t kMaxFrameBytes = 256 << 20;

// GrpcMessageLimit()
//
// The gRPC message limit (send and receive) of a side whose frame bound is `frame_bytes`: the
// bound, plus room for a frame that holds one record of the largest size alone.
size_t GrpcMessageLimit(size_t frame_bytes);

// SendFrameBytes()
//
// The bound to send within: the smaller of `own` and the bound the peer announced (0: the
// protocol's default), never below kMinFrameBytes.
size_t SendFrameBytes(int64_t announced, size_t own);

// Utf8Cut()
//
// The longest prefix of `text`, at most `n` bytes, that does not end inside a UTF-8 character
// (`n` itself when the text has no character start to cut at).
size_t Utf8Cut(std::string_view text, size_t n);

// FrameAssignment()
//
// An assignment as the frames that carry it: the AssignRun (with `more` when more follow), then
// AssignMore frames with the rest of its snapshot, pending and out-tail records, in order.
std::vector<baton::v1::GatewayFrame> FrameAssignment(baton::v1::AssignRun assign,
                                                     size_t frame_bytes);

// MergeAssignMore()
//
// Appends a continuation frame to the assignment it continues (whose `more` it takes over).
// InvalidArgument when it names another run or lease token.
absl::Status MergeAssignMore(baton::v1::AssignRun& assign, baton::v1::AssignMore more);

// FrameSnapshot()
//
// A snapshot as the Snapshot frames that carry it: one, or pieces of its JSON text cut between
// characters, all but the last with `more`.
std::vector<baton::v1::Snapshot> FrameSnapshot(const baton::v1::Snapshot& snapshot,
                                               size_t frame_bytes);

// AddSnapshotPiece()
//
// Gathers a snapshot sent in pieces. `partial` holds the pieces so far of one run's snapshot
// (empty when none). Returns the whole snapshot when `piece` is its last (a snapshot in one
// frame is returned as it is) and clears `partial`; nullopt while more pieces are to come.
// InvalidArgument, with `partial` cleared, when `piece` names another run, lease token, cursors
// or version (version, base_version, messages_from) than the pieces before it, or when the pieces
// together exceed `max_bytes`.
absl::StatusOr<std::optional<baton::v1::Snapshot>> AddSnapshotPiece(
    std::optional<baton::v1::Snapshot>& partial, baton::v1::Snapshot piece, size_t max_bytes);

// FrameRunOutput()
//
// The records of `records` after seq `after_seq` as RunOutput frames of the run, in order.
std::vector<baton::v1::RunOutput> FrameRunOutput(const std::string& run_id, int64_t lease_token,
                                                 const std::deque<baton::v1::OutRecord>& records,
                                                 int64_t after_seq, size_t frame_bytes);

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

// CheckAgentInfo()
//
// What an agent's announcement (Hello.agents, chat.proto AgentInfo) may hold besides its name
// (CheckAgentName): a version of at most kMaxAgentVersionBytes, a system prompt of at most
// kMaxAgentSystemBytes, `tools_json` of at most kMaxAgentToolsBytes that is empty or a JSON
// array of objects each with a non-empty string "name", and model fields of at most
// kMaxAgentModelBytes. InvalidArgument naming the field and what is wrong.
inline constexpr size_t kMaxAgentVersionBytes = 128;
inline constexpr size_t kMaxAgentSystemBytes = 256 * 1024;
inline constexpr size_t kMaxAgentToolsBytes = 1 << 20;
inline constexpr size_t kMaxAgentModelBytes = 256;
absl::Status CheckAgentInfo(const baton::v1::AgentInfo& agent);

// Whether `value` is a W3C traceparent: "vv-<32 hex trace id>-<16 hex parent id>-<2 hex flags>",
// lowercase, trace and parent ids not all zero. Only such values are carried into a run and
// its provider requests.
bool ValidTraceparent(std::string_view value);

}  // namespace baton

#endif  // BATON_RUNTIME_PROTOCOL_WIRE_H_
