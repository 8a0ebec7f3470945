// File: hooks/records.h
//
// The records of a chat session (DESIGN §4). A session has two seq-numbered logs:
//   .in   what clients append: message, stop, handover, handover-skip
//   .out  what the agent writes: AI SDK UI message chunks, plus control records
//         (turn-complete, trim, session-closed, upgrade-required, retract)
//
// `.in` bodies are the JSON of a ChatInputChunk, exactly as Trigger.dev's chat agent reads them:
//   {"kind":"message","payload":{"chatId":..,"trigger":"submit-message","message":{..}}}
//   {"kind":"stop","message":"user cancelled"}
//   {"kind":"handover","partialAssistantMessage":[..],"messageId":"M","isFinal":false}
//   {"kind":"handover-skip"}
#ifndef BATON_HOOKS_RECORDS_H_
#define BATON_HOOKS_RECORDS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hooks/json.h"

namespace baton {

// Largest `.in` record body accepted, in bytes (as Trigger.dev's 1 MiB append cap).
inline constexpr size_t kMaxInRecordBytes = 1 << 20;

// Largest `.out` record accepted from a worker, serialized (one UI chunk or control record). A
// reader's gRPC channel takes 4 MiB messages by default; this keeps every record well inside.
inline constexpr size_t kMaxOutRecordBytes = 1 << 20;
// The most a chunk's JSON text may take so that its record fits (a record adds its seq and two
// field headers: at most 16 bytes).
inline constexpr size_t kMaxChunkJsonBytes = kMaxOutRecordBytes - 16;

// The deepest `.out` chunk (docs/bad-input.md, "Nesting"): data of at most kMaxDataDepth levels
// inside the chunk's own levels (one today), with room to spare. What readers and continuations
// build from a chunk (its message, a snapshot holding the message, a model request) adds a few
// levels more and so stays well inside kMaxJsonDepth.
inline constexpr int kMaxChunkDepth = kMaxDataDepth + 8;

enum class InKind { kMessage, kStop, kHandover, kHandoverSkip };
std::string_view InKindName(InKind kind);

// One `.in` record. `seq` is its position in the session's `.in` log (1-based).
struct InRecord {
  int64_t seq = 0;
  InKind kind = InKind::kMessage;
  Json body;  // the whole ChatInputChunk
  // When the record was stored on `.in` (the host's clock; InfinitePast when unknown) and when
  // the run got it (the run's clock): the turn timings' `queued` and `turn` start from these.
  absl::Time appended_at = absl::InfinitePast();
  absl::Time received_at = absl::InfinitePast();

  // For kMessage: body["payload"]["trigger"], or "" when absent.
  std::string trigger() const;
  // For kMessage: body["payload"]["message"], or null.
  const Json& message() const;
  const Json& payload() const;
};

// DecodeInRecord()
//
// Validates a `.in` body: a JSON object with a known `kind` and the fields that kind needs, no
// larger than kMaxInRecordBytes, nested no deeper than kMaxDataDepth (".in record nests deeper
// than 128 levels at byte N"). Returns InvalidArgument saying what is wrong; the caller keeps
// the bytes, nothing is lost.
absl::StatusOr<InRecord> DecodeInRecord(int64_t seq, std::string_view body);
// The same checks on a body already parsed (the size limit is the caller's).
absl::StatusOr<InRecord> InRecordFromJson(int64_t seq, Json body);

// CheckUiMessage()
//
// The shape every UI message baton takes from a client must have (as the AI SDK's
// validateUIMessages): an object with a non-empty string id, a role of "system", "user" or
// "assistant", and a "parts" array whose items are objects with a string "type". Returns
// InvalidArgument naming `where` ("payload.message") and what is wrong.
absl::Status CheckUiMessage(const Json& message, std::string_view where);

// CheckBootPayload()
//
// The checks CreateSession applies to its payload (a JSON object): it nests no deeper than
// kMaxDataDepth, a "message" that is present and not null is a UI message (CheckUiMessage), and
// "headStartMessages", when present, is an array of them.
absl::Status CheckBootPayload(const Json& payload);

// Control record subtypes on `.out`.
inline constexpr std::string_view kTurnComplete = "turn-complete";
inline constexpr std::string_view kTrim = "trim";
inline constexpr std::string_view kSessionClosed = "session-closed";
inline constexpr std::string_view kUpgradeRequired = "upgrade-required";
// Withdraws an answer a run that died left unfinished, before its retry answers again: headers
// `message-id` (the answer), `from-seq` (the `.out` seq of its `start` chunk; the records from
// there up to the retract are withdrawn) and `reason` (docs/protocol.md).
inline constexpr std::string_view kRetract = "retract";
// Follows step 1 of a head start, which the run writes to `.out` when it takes the handover
// (`start{messageId}` through `finish-step`): headers `message-id` (the warm side's message id)
// and `from-seq` (the `.out` seq of that `start`). A warm side that streamed step 1 itself
// forwards what comes after it; the answer then goes on with no second `start`
// (docs/protocol.md).
inline constexpr std::string_view kHandoverSpliced = "handover-spliced";

// One `.out` record: either a UI message chunk or a control record with header-style fields.
// A chunk travels as its JSON text, the bytes that go on the wire: the runtime writes most chunks
// straight to text (runtime/transcript/ui_chunk.h), and a worker sends them as they are.
struct OutRecord {
  int64_t seq = 0;  // assigned by the session log
  bool is_control = false;
  std::string chunk_json;  // the UI chunk's JSON text when !is_control: an object with a "type"
  std::string control;     // subtype when is_control
  std::vector<std::pair<std::string, std::string>> headers;

  static OutRecord Chunk(const Json& chunk);     // DumpJson(chunk)
  static OutRecord ChunkText(std::string json);  // a chunk already written as JSON text
  static OutRecord Control(std::string_view subtype,
                           std::vector<std::pair<std::string, std::string>> headers = {});

  // The chunk parsed (null for a control record, or a text that does not parse). A copy each
  // call: for readers and tests, not for the hot path.
  Json chunk() const;
  std::string Header(std::string_view name) const;  // "" when absent
  // "text-delta", ..., or "trigger:turn-complete" for control records (the test kit projection).
  std::string Type() const;
  Json ToJson() const;
};

}  // namespace baton

#endif  // BATON_HOOKS_RECORDS_H_
