// File: runtime/run/chat_run.h
//
// ChatRun: one run of a managed chat agent, from boot to its end (DESIGN §4,
// reference/chat-wire-and-hooks.md §3). It boots (preload, submit-message, handover-prepare,
// regenerate-message, close, or a continuation from a snapshot), waits on `.in`, fires the hooks,
// runs turns through the StepLoop, writes `.out` and snapshots, and ends with one RunOutcome.
//
// A run is a coroutine on its host's executor: while it waits it holds a timer and its frame,
// no thread. User code (hooks, tools) runs on the host's HookPool.
#ifndef BATON_RUNTIME_RUN_CHAT_RUN_H_
#define BATON_RUNTIME_RUN_CHAT_RUN_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "hooks/agent.h"
#include "hooks/records.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"
#include "runtime/run/chat_session.h"
#include "runtime/run/inbox.h"
#include "runtime/run/run_host.h"
#include "runtime/step/step_loop.h"
#include "runtime/transcript/accumulator.h"

namespace baton {

// Thread-safety: every method is called on the host's executor.
class ChatRun : public std::enable_shared_from_this<ChatRun> {
 public:
  friend class ChatSession;
  ChatRun(const Agent& agent, RunHost host, BootRequest boot);
  ~ChatRun();

  // Spawns the run's coroutine; RunHost::finished reports its end.
  void Start();
  // A `.in` record for this run, in seq order.
  void Deliver(InRecord record);
  // Cancels the run: the turn in flight is abandoned (its stream ends with `abort`, no
  // turn-complete), the run ends kCancelled. With `lost`, the run writes nothing more at all:
  // how a run whose worker died looks to its session.
  void Cancel(bool lost = false);

  const std::string& run_id() const { return boot_.run_id; }

 private:
  // What a wait returned.
  struct Wake {
    std::optional<InRecord> record;  // set: a message arrived
    RunOutcome outcome;              // otherwise: how the run ends
  };
  struct TurnRequest;  // what a turn answers
  struct TurnState;    // what a turn produced so far

  struct Recovery;  // what recovery learns from the `.out` tail and carries between pieces

  asio::awaitable<void> Main();
  // The run from boot to its outcome, in order: LoadBoot, Resume (a suspended run), the head
  // start's history, Recover (a continuation or retry), onBoot, then RunLoop or StartByTrigger.
  asio::awaitable<RunOutcome> Body();
  // Fills info_ from the boot request and restores the snapshot; true for a fresh head start.
  bool LoadBoot();
  // A suspended run carrying on its wait: onChatResume, then the loop in the saved phase.
  asio::awaitable<RunOutcome> Resume();
  void SeedHeadStartHistory();
  // onBoot; the run's outcome when the hook failed, else nullopt.
  asio::awaitable<std::optional<RunOutcome>> CallOnBoot();
  // The turn loop, started as the boot trigger says.
  asio::awaitable<RunOutcome> StartByTrigger();
  asio::awaitable<RunOutcome> Preload();
  // A head start waits for its handover (or skip) signal; turn 0 answers with it.
  asio::awaitable<RunOutcome> AwaitHandover();
  // After a handover-skip: turn 0 answers the head start's message itself (nullopt: none).
  std::optional<TurnRequest> SkippedHandoverTurn(const InRecord& signal, absl::Duration waited);
  // submit-message or regenerate-message: turn 0 answers the boot payload's message.
  asio::awaitable<RunOutcome> AnswerBootMessage();
  // Turn 0's request with the boot's timings.
  TurnRequest BootTurnRequest() const;
  asio::awaitable<RunOutcome> RunLoop();  // an agent with its own loop
  // `first_phase` names the first wait's phase; it must outlive the call (a literal, or a local
  // of the awaiting coroutine).
  asio::awaitable<RunOutcome> TurnLoop(std::optional<TurnRequest> first,
                                       std::string_view first_phase);
  asio::awaitable<Wake> WaitForMessage(const std::string& phase, absl::Duration idle,
                                       absl::Duration suspended_for, bool hooks);
  // One turn, from its request to its turn-complete and snapshot: BeginTurn, AnswerMessages
  // under the turn's stop, then TurnError, LeaveForUpgrade or CompleteTurn. Returns false after
  // a turn error.
  asio::awaitable<bool> RunTurn(TurnRequest request);
  TurnState BeginTurn(const TurnRequest& request);
  // A message turn: the incoming messages validated, hydrated or merged into the transcript
  // (a head start's step 1 written and spliced), then Respond. An action goes to AnswerAction.
  asio::awaitable<absl::Status> AnswerMessages(const TurnRequest& request, TurnState& state);
  void WriteHandoverStepOne(TurnState& state);
  std::vector<Json> IncomingMessages(const TurnRequest& request) const;
  asio::awaitable<absl::Status> ValidateIncoming(const TurnRequest& request, TurnState& state);
  asio::awaitable<absl::Status> HydrateIncoming(const TurnRequest& request, TurnState& state);
  void MergeIncoming(const TurnRequest& request, TurnState& state);
  // An action: onAction, and the turn it may ask for (Respond).
  asio::awaitable<absl::Status> AnswerAction(const TurnRequest& request, TurnState& state);
  // The answer to the transcript as merged: onChatStart, onTurnStart, prepareMessages, then
  // RunStepLoop (or a head start's final step 1 as the answer); the result lands in `state`.
  asio::awaitable<absl::Status> Respond(const TurnRequest& request, TurnState& state);
  asio::awaitable<absl::Status> CallTurnStartHooks(const TurnState& state);
  absl::Status AnswerWithStepOne(TurnState& state);
  // The turn's prompt: the model lane, or what prepareMessages made of it.
  asio::awaitable<absl::StatusOr<MessageList>> PreparePrompt(const TurnState& state);
  // Waits for a message in `phase` with that phase's idle and suspended windows.
  asio::awaitable<Wake> WaitInPhase(const std::string& phase, bool hooks);
  // Runs the step loop on `prompt` under the turn's stop, continuing a trailing assistant
  // message, and stores the response in the transcript.
  struct Streamed {
    StepLoopResult result;
    std::optional<Json> response;  // cleaned when stopped; absent when nothing streamed
  };
  // `state`: the managed turn it answers, for its timings (null in a user loop). `lane`: the
  // prompt is the transcript's model lane as it is, so the step loop starts from the provider's
  // copy of it (Accumulator::ProviderLane) rather than filtering the whole history per call.
  asio::awaitable<Streamed> RunStepLoop(MessageList prompt, const TurnState* state, bool lane);
  // What the step loop returned, into the turn's state.
  void KeepStreamed(Streamed& streamed, TurnState& state);
  // The turn's end after its answer: onBeforeTurnComplete, turn-complete, onTurnComplete, the
  // snapshot. Returns false after a turn error.
  asio::awaitable<bool> CompleteTurn(const TurnRequest& request, TurnState& state);
  asio::awaitable<void> CallOnTurnComplete(const TurnState& state, int64_t turn_complete_seq);
  // An upgrade asked for before the model call: the message is left for the continuation.
  void LeaveForUpgrade(const TurnRequest& request, TurnState& state);
  // A head start's step 1 on `.out`: the handover's partial as UI chunks of message `id`
  // (`start` through `finish-step`), then the `handover-spliced` record.
  void WriteStepOne(const Json& partial, const std::string& id);
  // The turn's timings so far (`step`: what its step loop measured, if it ran).
  TurnTimings Timings(const TurnState* state, const StepTimings* step) const;
  // The `finish` chunk's messageMetadata: the timings, also handed to the host.
  Json FinishMetadata(const TurnState* state, const StepTimings* step);
  // Ends a head start's answer whose step 1 is on `.out` and that no step loop went on with:
  // `finish` (with `reason`) or, for "" , `abort`. Nothing when none is open.
  void EndStepOne(const std::string& reason, const TurnState* state);
  // Between steps: offers the user messages queued mid-turn to should_inject_pending.
  asio::awaitable<StepLoop::Env::Injection> InjectPending(int next_step);
  asio::awaitable<void> TurnError(const absl::Status& error, const TurnRequest& request,
                                  TurnState& state);
  TurnCompleteEvent MakeTurnCompleteEvent(const TurnState& state) const;
  void RestoreSnapshot();
  // Continuation or retry: folds the `.out` tail into the transcript and settles a partial
  // answer a dead run left behind (onRecoveryBoot): it is retracted, or kept and closed.
  // In order: SplitTail, UnansweredUsers, FoldSettled, SettlePartial.
  asio::awaitable<void> Recover();
  // The tail's answers: the settled ones, and the partial one left open.
  Recovery SplitTail();
  // The users no turn has answered, oldest first.
  std::deque<std::pair<int64_t, Json>> UnansweredUsers() const;
  // Settled answers join the transcript, each after the oldest unanswered user.
  void FoldSettled(Recovery& recovery);
  // onRecoveryBoot decides the partial's fate.
  asio::awaitable<void> SettlePartial(Recovery& recovery);
  RecoveryBootEvent MakeRecoveryBootEvent(Recovery& recovery) const;
  // The chain chosen for the partial becomes the transcript; the partial is retracted or closed.
  void ApplyRecoveryChain(const Recovery& recovery, const RecoveryBootEvent& event,
                          std::vector<Json> chain);
  // The user at `.in` seq `seq` (0: the boot message) is answered: it is not run again.
  void MarkAnswered(int64_t seq);
  // Writes a `retract` of the answer `message_id` whose `start` is at `.out` seq `from_seq`.
  void WriteRetract(const std::string& message_id, int64_t from_seq);
  SnapshotUpdate MakeSnapshot(std::optional<Json> suspended) const;
  int64_t WriteTurnComplete(bool closed, const std::string& close_reason);
  void Observe(std::string_view hook, const std::function<Json()>& args);

  // Runs a user hook on the pool and applies its ChatControl requests.
  template <typename R, typename E>
  asio::awaitable<R> CallHook(const std::function<R(const E&, ChatControl&)>& hook, E event);
  template <typename R, typename E>
  asio::awaitable<R> CallHook(const std::function<R(const E&)>& hook, E event);
  template <typename R>
  asio::awaitable<R> RunUserCode(absl::AnyInvocable<R()> fn, bool* in_time = nullptr);
  // Applies a hook's requests; an error when one of them cannot be taken (messages nested
  // deeper than kMaxDataDepth), which becomes the hook's error.
  absl::Status ApplyControl(ChatControl& control);
  // Every `.out` record and snapshot of the run goes through these: a lost run writes nothing.
  int64_t Write(OutRecord record);
  // A chunk given as a tree: written as its text, or as an `error` chunk (logged) when it nests
  // deeper than kMaxChunkDepth (DumpChunk).
  int64_t WriteChunk(const Json& chunk);
  // A chunk from user code (ChatControl::Write, ChatSession::Write): one nested deeper than
  // kMaxDataDepth is replaced by an `error` chunk saying so.
  int64_t WriteUserChunk(Json chunk);
  void SaveSnapshot(const SnapshotUpdate& snapshot);

  const Agent& agent_;
  RunHost host_;
  BootRequest boot_;
  ChatInfo info_;
  Inbox inbox_;
  Accumulator acc_;
  std::stop_source cancel_;                    // run cancel
  bool lost_ = false;                          // cancelled as lost: the run writes nothing more
  std::optional<std::stop_source> turn_stop_;  // the turn in flight's stop (stop record or cancel)

  int turn_ = 0;                    // next turn number (per run)
  bool chat_started_ = false;       // a turn has begun in this chat (any run)
  int64_t last_turn_complete_ = 0;  // `.out` seq of the latest turn-complete (trim target)
  Usage total_usage_;
  Usage previous_turn_usage_;
  // Recovery found the boot payload's message answered on the `.out` tail.
  bool boot_answered_ = false;
  // Head start: the handover to splice into turn 0 (consumed once).
  std::optional<InRecord> handover_;
  bool end_run_ = false;
  std::optional<std::string> close_reason_;
  bool upgrade_ = false;
  // Ids of responses cut short by a stop (saved final:false until a later turn completes them).
  std::set<std::string> unfinished_;
  // A user loop's end, decided by ChatSession::NextMessage().
  std::optional<RunOutcome> loop_outcome_;
  // For the turn timings: when the run started, time spent in hooks so far, turns run.
  absl::Time started_at_ = absl::InfinitePast();
  absl::Duration hook_time_;
  int turns_run_ = 0;
  // The message id of a head start's answer whose step 1 is on `.out` and that has not ended
  // yet ("" when none): its `start` is written, so the step loop writes none.
  std::string step_one_open_;
};

}  // namespace baton

#endif  // BATON_RUNTIME_RUN_CHAT_RUN_H_
