// File: tools/orchestrator/states.h
//
// The orchestrator core's states and triggers as types. Their words ("queued", "live",
// "continuation", ...) exist only at its edges: the store keeps them as words (RunRow.state,
// RunRow.trigger, SessionRow.state), the wire as baton.v1 enums.
#ifndef BATON_TOOLS_ORCHESTRATOR_STATES_H_
#define BATON_TOOLS_ORCHESTRATOR_STATES_H_

#include <optional>
#include <string_view>

#include "baton/v1/chat.pb.h"
#include "baton/v1/sessions.pb.h"

namespace baton::orchestrator {

// Where a run is in its life.
enum class RunState {
  kQueued,     // waiting for a worker with credit (or out the delay after a refusal)
  kAssigned,   // sent to a worker that has not accepted it yet (the accept deadline runs)
  kRunning,    // accepted; its worker holds the lease and renews it with heartbeats
  kSuspended,  // ended idle; a message before its resume deadline resumes the chat
  kExited,     // ended; the chat's next message boots a continuation
  kFailed,     // ended by an error; retried when retryable, within the chat's retry budget
  kCancelled,  // ended by a client's cancel; never retried
  kLost,       // its lease ran out (its worker went silent or away); retried
};

// Queued, assigned or running: the chat's one live run.
bool IsLive(RunState state);

// Where a chat is, between and during its runs.
enum class SessionState {
  kLive,       // a run is queued, assigned or running
  kSuspended,  // no run; a message before the resume deadline resumes the suspended one
  kExited,     // no run; the next message boots a continuation
  kFailed,     // its last run failed outside a turn, or it spent its retry budget
  kClosed,     // closed: nothing more is taken
};

// What a run boots on.
enum class BootTrigger {
  kPreload,            // before the user says anything; the run waits for a message
  kSubmitMessage,      // turn 0 at once, on the payload's message
  kHandoverPrepare,    // a head start: the run waits for the warm side's handover signal
  kRegenerateMessage,  // answers the last user message again
  kClose,              // closes the chat
  kContinuation,       // a later run, from the chat's snapshot and the `.in` records after it
  kResume,             // carries on a suspended run's wait, before its resume deadline
};

// The store's words, and back (nullopt for a word that names none).
std::string_view Word(RunState state);
std::string_view Word(SessionState state);
std::string_view Word(BootTrigger trigger);
std::optional<RunState> RunStateOf(std::string_view word);
std::optional<SessionState> SessionStateOf(std::string_view word);
std::optional<BootTrigger> BootTriggerOf(std::string_view word);

// The wire's. A continuation or a resume has no Trigger of its own: TRIGGER_UNSPECIFIED.
baton::v1::RunState ToProto(RunState state);
baton::v1::SessionState ToProto(SessionState state);
baton::v1::Trigger ToProto(BootTrigger trigger);
// The trigger a client names in CreateSession; nullopt for none the wire defines.
std::optional<BootTrigger> BootTriggerOf(baton::v1::Trigger trigger);

}  // namespace baton::orchestrator

#endif  // BATON_TOOLS_ORCHESTRATOR_STATES_H_
