// File: runtime/client/head_start.h
//
// The warm side of a head start (DESIGN §4; reference/chat-agent-semantics.md, head start): what
// a warm server does so the user sees the first tokens before any agent has booted.
//
//   1. CreateSession with trigger handover-prepare and the first turn's messages: a worker boots
//      the agent and waits for a signal, while
//   2. the warm server runs step 1 itself against the provider, with the agent's system prompt
//      and tool schemas but no executes, and streams the UI chunks to its caller as they arrive;
//   3. it appends `handover` with the partial assistant message and the message id (tool calls
//      pending: the worker executes them and runs step 2+ under the same id; pure text:
//      `isFinal`, the worker runs the turn hooks and persists it), or `handover-skip` when
//      step 1 failed;
//   4. the caller then follows `.out` (Sessions.Read) for step 2+ and every later turn.
//
// The Sessions calls are blocking gRPC calls (a loopback round trip each); the model call is
// asynchronous on the executor.
#ifndef BATON_RUNTIME_CLIENT_HEAD_START_H_
#define BATON_RUNTIME_CLIENT_HEAD_START_H_

#include <functional>
#include <stop_token>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "baton/v1/sessions.grpc.pb.h"
#include "hooks/agent.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"

namespace baton {

struct HeadStartRequest {
  std::string chat_id;
  std::string agent;        // the agent's name on the orchestrator
  Json messages;            // the first turn's UI messages (headStartMessages)
  Json metadata;            // optional client data for the run
  std::string message_id;   // the assistant message's id; "" makes one
  std::string traceparent;  // optional W3C trace context
};

struct HeadStartResult {
  enum class Signal { kHandover, kFinal, kSkip };
  Signal signal = Signal::kSkip;
  std::string message_id;
  int64_t signal_seq = 0;         // `.in` seq of the handover or handover-skip record
  Json partial;                   // the partial assistant message handed over (model messages)
  std::string step_error;         // why step 1 failed, for kSkip
  absl::Duration create_session;  // CreateSession round trip
  absl::Duration first_chunk;     // from the start to step 1's first chunk
  absl::Duration step1;           // from the start to step 1's end
};

struct HeadStartEnv {
  asio::any_io_executor executor;
  Clock* clock = nullptr;
  HookPool* pool = nullptr;
  baton::v1::Sessions::Stub* sessions = nullptr;
  // Step 1 runs on this agent's model, system prompt and tool schemas (executes are not used).
  const Agent* agent = nullptr;
  std::function<void(const Json& chunk)> on_chunk;  // each UI chunk of step 1, as it streams
};

// The agent as the warm side knows it from its workers' announcement (Sessions.GetAgent): name,
// version, system prompt, tool schemas, handover window and head-start setting, on `model`.
// A tool the run executes gets a stand-in execute that fails (the warm side never runs it); a
// client-side one none, as on the worker. InvalidArgument when the announcement breaks
// CheckAgentInfo's rules.
absl::StatusOr<Agent> AgentFromInfo(const baton::v1::AgentInfo& info,
                                    std::shared_ptr<LanguageModel> model);

// Step 1 alone (step 2 above, without the Sessions calls): what an event-driven warm side such as
// baton-gateway runs between its own CreateSession and Append.
struct StepOneResult {
  // The `.in` record to append: `handover` (with `isFinal` for a pure-text step 1) or
  // `handover-skip` when step 1 failed, was stopped, or made nothing.
  Json signal;
  bool skipped = true;
  std::string error;  // why step 1 failed, unmasked ("" when it did not)
};

// Runs step 1 of `agent` (its model, system prompt and tool schemas; executes and hooks unused)
// on `messages` (UI messages), streaming its UI chunks to `on_chunk` under `message_id`. `stop`
// ends it at once (the caller went away, or its deadline passed): the result is then a skip.
asio::awaitable<StepOneResult> RunStepOne(asio::any_io_executor executor, Clock& clock,
                                          HookPool& pool, const Agent& agent, std::string chat_id,
                                          Json messages, std::string message_id,
                                          std::string traceparent,
                                          std::function<void(const Json& chunk)> on_chunk,
                                          std::stop_token stop);

// Runs steps 1 to 3 above. Errors are the Sessions calls' (a step 1 failure is not an error: it
// ends in handover-skip).
asio::awaitable<absl::StatusOr<HeadStartResult>> RunHeadStart(HeadStartEnv env,
                                                              HeadStartRequest request);

// The partial a handover carries for step 1's response (a UI message): its model messages, with
// (when `approve`) every tool call that has no result and asks for no approval marked approved,
// so the worker executes it before its step-2 model call (reference/chat-wire-and-hooks.md
// §5.5). A call that asks for the user's approval is never approved here.
Json HandoverPartial(Json response, bool approve = true);

}  // namespace baton

#endif  // BATON_RUNTIME_CLIENT_HEAD_START_H_
