// File: runtime/session_rules.h
//
// The session rules that whoever hosts a chat's logs applies, the same in-process
// (LocalSessions) and in the orchestrator: what a continuation boots with, and when a run's end
// leaves records that boot the next run (DESIGN §4).
#ifndef BATON_RUNTIME_SESSION_RULES_H_
#define BATON_RUNTIME_SESSION_RULES_H_

#include <cstdint>
#include <string>

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

}  // namespace baton

#endif  // BATON_RUNTIME_SESSION_RULES_H_
