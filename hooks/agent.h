// File: hooks/agent.h
//
// The API users write chat agents against. An Agent is an id, a model, a system prompt, tools,
// options and hooks; the runtime drives it (DESIGN §4, reference/chat-wire-and-hooks.md §3).
//
// Example:
//
//   baton::Agent agent;
//   agent.id = "weather";
//   agent.model = std::make_shared<MyModel>();
//   agent.tools.push_back({.name = "get_weather",
//                          .description = "Current weather for a city",
//                          .input_schema = {{"type", "object"}, ...},
//                          .execute = [](const baton::Json& in, const baton::ToolContext&)
//                              -> absl::StatusOr<baton::Json> { return baton::Json{{"tempC", 4}};
//                              }});
//   agent.hooks.on_turn_complete = [](const baton::TurnCompleteEvent& e, baton::ChatControl&) {
//     return SaveToDatabase(e.chat.chat_id, e.ui_messages);
//   };
//
// Hooks and tool executes run on a bounded thread pool, never on the event loop, so they may
// block. A hook fails by returning a non-OK status or by throwing; either becomes a turn error
// (or, for boot-phase hooks, a failed run). The run waits for each hook before going on, so
// hooks of one run do not overlap, unless one overruns its hook_timeout: the run then goes on
// without it, and what it asks of its ChatControl afterwards is ignored.
#ifndef BATON_HOOKS_AGENT_H_
#define BATON_HOOKS_AGENT_H_

#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hooks/json.h"
#include "hooks/model.h"

namespace baton {

// What every hook knows about the run. Constant for the run's life.
struct ChatInfo {
  std::string chat_id;
  std::string run_id;
  Json client_data;           // the boot payload's "metadata", or the turn's when it has one
  bool continuation = false;  // this run took over a session whose earlier run ended
  std::string previous_run_id;
  bool preloaded = false;  // the run booted with trigger "preload"
  int attempt = 1;
  std::string traceparent;  // W3C trace context of the CreateSession that started the chat
};

// ChatControl
//
// Given to hooks: output and requests that take effect when the hook returns.
// Thread-safety: safe to call from the hook's thread (it buffers under a mutex).
class ChatControl {
 public:
  // Writes a UI chunk (usually `data-*`) to `.out`, after the hook returns, in call order.
  void Write(Json chunk);
  // Replaces the UI transcript when the hook returns; the model lane is re-derived from it.
  void SetMessages(std::vector<Json> ui_messages);
  // Ends the run after the current turn completes.
  void EndRun();
  // Closes the chat: the current turn completes with session-closed, then the run ends.
  void Close(std::string reason);
  // Ends the run so that the next record boots a continuation (baton's form of requestUpgrade).
  void RequestUpgrade();

  // Runtime side. Each hook call gets its own ChatControl; when the hook has returned the
  // runtime calls Finish(), then Take() hands over its requests. Requests of a call that did
  // not return in time (or was cancelled) are never taken, and later calls are ignored.
  struct Requests {
    std::vector<Json> chunks;
    std::optional<std::vector<Json>> messages;
    bool end_run = false;
    std::optional<std::string> close_reason;
    bool upgrade = false;
  };
  void Finish();
  Requests Take();

 private:
  absl::Mutex mu_;
  Requests requests_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool sealed_ ABSL_GUARDED_BY(mu_) = false;
};

struct BootEvent {
  ChatInfo chat;
};

struct PreloadEvent {
  ChatInfo chat;
};

struct ValidateMessagesEvent {
  std::string chat_id;
  std::vector<Json> messages;  // incoming UI messages, aborted parts cleaned
  int turn = 0;
  std::string trigger;
};

struct HydrateMessagesEvent {
  ChatInfo chat;
  int turn = 0;
  std::string trigger;
  std::vector<Json> incoming_messages;
  std::vector<Json> previous_messages;
};

// An action: a client request that is not a message (`trigger: "action"`), e.g. undo.
struct ActionEvent {
  ChatInfo chat;
  Json action;  // the payload's "action", as sent
  int turn = 0;
  std::vector<Json> ui_messages;
  Json messages;  // the model lane
};

// Steering: user messages that arrive while a turn runs (a turn's "pending messages").
struct PendingMessagesEvent {
  ChatInfo chat;
  int turn = 0;
  int step = 0;                // the step the messages would join (injected before its call)
  std::vector<Json> messages;  // UI messages, oldest first
};

// A continuation or retry of a run that died mid-turn: its `.out` ends in an unfinished answer.
struct RecoveryBootEvent {
  ChatInfo chat;
  std::vector<Json> settled_messages;  // the transcript: snapshot plus finished answers on `.out`
  std::vector<Json> in_flight_users;   // user messages on `.in` that no turn answered
  Json partial_assistant;              // the unfinished answer, cleaned
  Json pending_tool_calls;             // [{toolCallId, toolName, input}] it left unexecuted
};

struct ChatStartEvent {
  ChatInfo chat;
  Json messages;  // the model lane
};

struct TurnStartEvent {
  ChatInfo chat;
  int turn = 0;
  Json messages;  // the model lane
  std::vector<Json> ui_messages;
  Usage previous_turn_usage;
  Usage total_usage;
};

struct PrepareMessagesEvent {
  ChatInfo chat;
  int turn = 0;
  Json messages;  // the model messages about to be sent
};

// Shared by on_before_turn_complete and on_turn_complete.
struct TurnCompleteEvent {
  ChatInfo chat;
  int turn = 0;
  Json messages;  // the model lane after the turn
  std::vector<Json> ui_messages;
  std::vector<Json> new_ui_messages;     // appended this turn (merged HITL messages are not new)
  std::optional<Json> response_message;  // cleaned when stopped; absent if nothing streamed
  std::optional<Json> raw_response_message;  // as streamed
  bool stopped = false;
  std::optional<std::string> finish_reason;  // absent when stopped; "error" on a turn error
  std::optional<std::string> error;
  Usage usage;
  Usage total_usage;
  int64_t last_event_id = 0;  // `.out` seq of the turn-complete record (on_turn_complete only)
};

struct SuspendEvent {
  ChatInfo chat;
  std::string phase;  // "preload", "handover", "continuation" or "turn"
  int turn = -1;      // phase "turn" only
  std::vector<Json> ui_messages;
};

struct RunEndEvent {
  ChatInfo chat;
  std::string reason;  // "close", "timeout", "suspended", "handover-skip", "max-turns", "end-run",
                       // "cancelled", "failed", "upgrade"
  std::string error;   // for "failed"
};

struct ToolContext {
  std::string chat_id;
  std::string tool_call_id;
  std::stop_token stop;  // requested when the turn is stopped or the run cancelled
};

struct Tool {
  std::string name;
  std::string description;
  Json input_schema = Json{{"type", "object"}};
  // Null for a client-side tool: the call is left for the client to answer.
  std::function<absl::StatusOr<Json>(const Json& input, const ToolContext& context)> execute;
  // The call waits for a client's approval (tool-approval-request) before it executes.
  bool needs_approval = false;
};

struct AgentOptions {
  absl::Duration idle_timeout = absl::Seconds(30);     // warm wait before suspending
  absl::Duration turn_timeout = absl::Hours(1);        // suspended wait before the run exits
  std::optional<absl::Duration> preload_idle_timeout;  // default: idle_timeout
  std::optional<absl::Duration> preload_timeout;       // default: turn_timeout
  bool exit_after_preload_idle = false;
  // A head start's handover window (a deliberate fix: the reference waits forever): how long
  // after the chat is created the warm side may append its handover or handover-skip. The
  // chat's host (the orchestrator, from the agent's announcement, or LocalSessions) appends a
  // handover-skip when it passes, and the run then answers the user's message itself; a later
  // signal is refused.
  absl::Duration handover_timeout = absl::Seconds(30);
  // Whether a warm side may run this agent's first step (a head start): it runs step 1 with the
  // agent's announced system prompt, tools and model, outside the agent's hooks (no
  // onTurnStart, prepareMessages or hydrateMessages shape that call). An agent whose first call
  // needs them sets false: the orchestrator then refuses a head start of it, and a warm side
  // sends the first message as a plain submit-message.
  bool allow_head_start = true;
  int max_turns = 100;
  int max_steps = 5;  // stop condition stepCountIs(max_steps)
  absl::Duration hook_timeout = absl::Minutes(5);
  absl::Duration tool_timeout = absl::Minutes(5);
  // Model and tool errors reach the UI as "An error occurred." (the model sees the real text).
  bool mask_errors = true;
};

// Each hook is optional. Statuses and exceptions are errors.
struct AgentHooks {
  // Fires before on_boot when a run takes over from one that died mid-answer. Returns the chain
  // to start from, or nothing for the default: with two or more unanswered users, the partial
  // answer is kept as the answer to the first and the rest are answered; with one, the partial
  // is dropped and that user answered again. A failure is reported and the default applies.
  std::function<absl::StatusOr<std::optional<std::vector<Json>>>(const RecoveryBootEvent&)>
      on_recovery_boot;
  std::function<absl::Status(const BootEvent&, ChatControl&)> on_boot;
  std::function<absl::Status(const PreloadEvent&, ChatControl&)> on_preload;
  // Returns the messages to use instead of the incoming ones.
  std::function<absl::StatusOr<std::vector<Json>>(const ValidateMessagesEvent&)>
      on_validate_messages;
  // Returns the whole UI chain; incoming messages are merged onto it by id.
  std::function<absl::StatusOr<std::vector<Json>>(const HydrateMessagesEvent&)> hydrate_messages;
  // Handles an action. Returns nothing for no turn (only a turn-complete is written and the turn
  // number is not used), or the text of a user message to answer as a turn ("action-turn").
  std::function<absl::StatusOr<std::optional<std::string>>(const ActionEvent&, ChatControl&)>
      on_action;
  // Steering. With should_inject_pending set, user messages that arrive during a turn are
  // offered at each step boundary; when it returns true they join the running turn (before the
  // next model call, confirmed by a data-pending-message-injected chunk), else they stay queued
  // and become the next turn. Unset: every mid-turn message is the next turn.
  std::function<absl::StatusOr<bool>(const PendingMessagesEvent&)> should_inject_pending;
  std::function<absl::Status(const PendingMessagesEvent&)> on_pending_injected;
  std::function<absl::Status(const ChatStartEvent&, ChatControl&)> on_chat_start;
  std::function<absl::Status(const TurnStartEvent&, ChatControl&)> on_turn_start;
  // Returns the model messages to send (the run's own transcript is not changed).
  std::function<absl::StatusOr<Json>(const PrepareMessagesEvent&)> prepare_messages;
  std::function<absl::Status(const TurnCompleteEvent&, ChatControl&)> on_before_turn_complete;
  std::function<absl::Status(const TurnCompleteEvent&, ChatControl&)> on_turn_complete;
  std::function<absl::Status(const SuspendEvent&, ChatControl&)> on_chat_suspend;
  std::function<absl::Status(const SuspendEvent&, ChatControl&)> on_chat_resume;
  std::function<absl::Status(const RunEndEvent&)> on_run_end;
};

class ChatSession;  // runtime/run/chat_session.h

struct Agent {
  std::string id;
  std::string version = "1";
  std::shared_ptr<LanguageModel> model;
  std::string system;
  std::vector<Tool> tools;
  AgentOptions options;
  AgentHooks hooks;
  // Set for an agent whose user code drives its turns (a custom loop or a session loop, see
  // runtime/run/chat_session.h); unset for a managed agent, whose loop is baton's. The loop runs on
  // the run's executor and must not block.
  std::function<asio::awaitable<void>(ChatSession&)> loop;

  const Tool* FindTool(std::string_view name) const;
};

}  // namespace baton

#endif  // BATON_HOOKS_AGENT_H_
