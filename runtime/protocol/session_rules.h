// File: runtime/protocol/session_rules.h
//
// The session rules that whoever hosts a chat's logs applies, the same in-process
// (LocalSessions) and in the orchestrator: what a continuation boots with, and when a run's end
// leaves records that boot the next run (DESIGN §4).
#ifndef BATON_RUNTIME_PROTOCOL_SESSION_RULES_H_
#define BATON_RUNTIME_PROTOCOL_SESSION_RULES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "hooks/json.h"
#include "hooks/records.h"

namespace baton {

// The first boot payload minus its one-shot fields (message, trigger, head-start messages,
// message id): what every continuation of the chat boots with.
Json BasePayload(Json payload);

// The user message the first run boots to answer, which never goes through `.in`:
// `payload.message` of a submit-message, the last user message of a head start's
// `headStartMessages`; null for other triggers. Until a snapshot holds it, a retry or
// continuation is handed it again as a submit-message, so a worker that dies before answering
// (a head start's, too, before or after the handover) does not lose it.
Json BootMessage(const std::string& trigger, const Json& payload);

// Whether `snapshot` (null when none) holds a message with the id of `message`: the first run's
// boot message never goes through `.in`, so until a snapshot holds it (it was answered), a
// continuation is handed it again.
bool SnapshotHolds(const Json& snapshot, const Json& message);

// The `.in` seq a snapshot answered through, and the `.out` seq of its turn-complete (0 when the
// snapshot is null).
int64_t SnapshotInSeq(const Json& snapshot);
int64_t SnapshotOutSeq(const Json& snapshot);

// Whether a `.in` record left after a run's end needs an answer, so that it boots the next run:
// messages do; stops, handover signals and a close do not.
bool NeedsAnswer(const InRecord& record);

// What a run's end does to its chat, and which run comes next (DESIGN §4): the same in
// LocalSessions and in the orchestrator, which add only what is theirs (a retry of a lost or
// failed run, the retry budget).
enum class ChatAfterRun {
  kSuspended,  // the run waits, suspended, for a message until its resume deadline
  kFailed,     // the run failed outside a turn
  kClosed,     // the run closed the chat
  kExited,     // the run ended; the next message boots a continuation
};
enum class NextRun {
  kNone,          // nothing waits for an answer
  kResume,        // a message came while the run was suspending: resume it at once
  kContinuation,  // a message is left unanswered: the next run boots at once
};
struct AfterRun {
  ChatAfterRun chat = ChatAfterRun::kExited;
  NextRun next = NextRun::kNone;
};
// `suspended`/`failed`: how the run ended; `reason`: its reason ("close" closes the chat);
// `unanswered`: LeftUnanswered; `resumable`: a suspension's deadline has not passed.
AfterRun AfterRunEnds(bool suspended, bool failed, std::string_view reason, bool unanswered,
                      bool resumable);

// Whether a run's end leaves a message that boots the next run: a `.in` record after the chat's
// floor that needs an answer (NeedsAnswer), or, after an upgrade, the first run's boot message
// that no snapshot holds yet.
bool LeftUnanswered(absl::Span<const InRecord> after_floor, bool upgrade, const Json& boot_message,
                    const Json& snapshot);

// What the next run of a chat boots with: a continuation after a run ended, a resume of a
// suspended one, or a retry of a lost or failed one. Until a snapshot holds the first run's boot
// message (its first turn was never completed), the next run boots as the first one did: a
// submit-message with that message, or a head start with its headStartMessages, which waits for
// the warm side's signal again (or finds it on `.in`). Otherwise it is a plain continuation
// (`trigger` empty) on the chat's base payload.
struct NextBoot {
  std::string trigger;  // "submit-message", "handover-prepare", or "" (a continuation)
  Json payload;
};
NextBoot NextBootOf(const std::string& first_trigger, const Json& base_payload,
                    const Json& boot_message, const Json& head_start_messages,
                    const Json& snapshot);

// The head start's handover window, as the host of a chat's logs keeps it. A chat created with
// trigger handover-prepare takes exactly one signal: the first `handover` or `handover-skip`
// appended closes the window, and so does its deadline, at which the host appends
// HandoverTimeoutSkip() itself. A skipped head start is answered by the run on its own, so the
// user's message is answered exactly once either way.
struct HandoverWindow {
  bool head_start = false;  // the chat was created with trigger handover-prepare
  bool open = false;        // no signal yet, and the deadline has not passed
  int64_t closed_by = 0;    // the `.in` seq of the signal that closed it (0: unknown or open)
};

// OK when a `.in` record of `kind` may be appended; FailedPrecondition, saying why, for a
// handover or handover-skip on a chat that is not a head start or whose window is closed (the
// run no longer waits for it, so taking it would lose it).
absl::Status CheckSignal(std::string_view chat_id, const HandoverWindow& window, InKind kind);

// The `.in` body the host appends when a head start's window passes with no signal.
Json HandoverTimeoutSkip();

}  // namespace baton

#endif  // BATON_RUNTIME_PROTOCOL_SESSION_RULES_H_
