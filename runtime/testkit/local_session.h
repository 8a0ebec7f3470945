// File: runtime/testkit/local_session.h
//
// LocalSessions: chat sessions hosted in one process, with no orchestrator: each session's `.in`
// and `.out` logs, its latest snapshot, and its run. It applies the session rules of DESIGN §4
// the way the orchestrator does for a fleet: one live run per chat; an append reaches the live
// run, resumes a suspended one before its deadline, or boots a continuation from the snapshot
// with the records it never answered. The test kit and the offline demo are built on it.
#ifndef BATON_RUNTIME_TESTKIT_LOCAL_SESSION_H_
#define BATON_RUNTIME_TESTKIT_LOCAL_SESSION_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "asio/any_io_executor.hpp"
#include "asio/steady_timer.hpp"
#include "hooks/agent.h"
#include "hooks/records.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/run/run_host.h"

namespace baton {

class ChatRun;  // runtime/run/chat_run.h, internal

// Thread-safety: every method must be called on `executor` (the sessions' single thread).
class LocalSessions {
 public:
  enum class State { kLive, kSuspended, kExited, kFailed, kClosed };

  struct Session {
    std::string chat_id;
    const Agent* agent = nullptr;
    Json base_payload;          // the boot payload, minus one-shot fields, for continuations
    Json boot_message;          // the first run's boot message (never on `.in`), or null
    std::string first_trigger;  // the first run's trigger
    Json head_start_messages;   // a head start's headStartMessages, or null
    HandoverWindow handover;    // a head start's window for its signal
    // Fires at the head start's handover deadline.
    std::unique_ptr<asio::steady_timer> handover_timer;
    std::vector<InRecord> in;    // `.in`, seq = index + 1
    std::vector<OutRecord> out;  // `.out`, seq = index + 1
    Json snapshot;               // latest, or null
    State state = State::kExited;
    std::shared_ptr<ChatRun> run;
    std::string run_id;  // current or latest run
    RunOutcome last_outcome;
    int runs = 0;
    // While suspended: fires at the resume deadline, when the session's run counts as exited.
    std::unique_ptr<asio::steady_timer> expiry;
    int64_t expiry_generation = 0;
    bool reassign = false;  // the ending run was lost: boot its retry
    int attempt = 1;
  };

  LocalSessions(asio::any_io_executor executor, Clock& clock, HookPool& pool);
  ~LocalSessions();

  // Creates chat `chat_id` and boots its first run with `trigger` and `payload`
  // (a ChatTaskWirePayload). AlreadyExists when the chat has a session.
  // `attempt` > 1 boots the run as a retry of a failed one (the orchestrator's reassignment).
  absl::Status Create(const std::string& chat_id, const Agent& agent, const std::string& trigger,
                      Json payload, int attempt = 1);

  // Appends a `.in` record (its JSON body) and returns its seq. InvalidArgument for a malformed
  // record (nothing stored), NotFound for an unknown chat, FailedPrecondition when closed, and
  // for a handover or handover-skip the chat's head start cannot take (CheckSignal).
  absl::StatusOr<int64_t> Append(const std::string& chat_id, const Json& body);

  // Cancels the chat's live run.
  void Cancel(const std::string& chat_id);
  // The chat's run is lost (as when its worker dies): it is stopped where it is, with no more
  // output, and a retry (attempt + 1) boots from the snapshot with what it left unanswered.
  void Reassign(const std::string& chat_id);

  const Session* Find(const std::string& chat_id) const;
  size_t live_runs() const { return live_runs_; }

  // Observers (optional): every `.out` record, every lifecycle point of every run (of the runs
  // booted once on_hook was set), every run end.
  std::function<void(const std::string& chat_id, const OutRecord&)> on_out;
  std::function<void(const std::string& chat_id, std::string_view hook, const Json& args)> on_hook;
  std::function<void(const std::string& chat_id, const RunOutcome&)> on_run_end;
  // Checks every snapshot kept from a partial save against the whole one, and aborts when they
  // differ (the test kit sets it: every test of it then checks the incremental save).
  bool check_snapshots = false;

 private:
  void Boot(Session& session, BootRequest boot);
  void ArmExpiry(Session& session);
  // At a head start's handover deadline with no signal, appends HandoverTimeoutSkip().
  void ArmHandoverDeadline(Session& session, absl::Time deadline);
  RunHost MakeHost(Session& session);

  asio::any_io_executor executor_;
  Clock& clock_;
  HookPool& pool_;
  std::map<std::string, std::unique_ptr<Session>> sessions_;
  size_t live_runs_ = 0;
  int64_t next_run_ = 1;
  int64_t next_message_ = 1;
};

}  // namespace baton

#endif  // BATON_RUNTIME_TESTKIT_LOCAL_SESSION_H_
