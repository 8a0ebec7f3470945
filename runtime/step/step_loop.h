// File: runtime/step/step_loop.h
//
// StepLoop: one turn's model work, after the AI SDK's streamText (reference/llm-wire.md §2). A
// step is one model call plus the execution of the tools it called; the loop continues while
// every tool call of the step has an output and fewer than max_steps steps ran. Before the first
// call it resolves pending tool approvals at the end of the prompt (a head start's handed-over
// tool calls, or a client's approval), executing the approved calls with the agent's tools.
#ifndef BATON_RUNTIME_STEP_STEP_LOOP_H_
#define BATON_RUNTIME_STEP_STEP_LOOP_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>

#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "hooks/agent.h"
#include "hooks/json.h"
#include "hooks/message_list.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"

namespace baton {

// Where a turn's model and tool time went, for the turn timings (docs/worker.md).
struct StepTimings {
  absl::Time model_call_at = absl::InfinitePast();  // the first model call was sent
  std::optional<absl::Duration> model_first_byte;   // the first call's first event came
  std::optional<absl::Duration> tools;              // tools executed: their wall time in all
};

struct StepLoopInput {
  std::string message_id;  // sent in the `start` chunk
  Json continued;          // the assistant UI message this turn continues, or null
  MessageList prompt;      // model messages, approval rows included
  std::stop_token stop;    // the turn's stop (a stop record or a run cancel)
  // The message's `start` is on `.out` already (a head start's step 1): none is written.
  bool started = false;
  // Optional: the `finish` chunk's messageMetadata, made when it is written (null: none).
  std::function<Json(const StepTimings&)> finish_metadata;
  // Optional: the first `provider_covers` messages of `prompt` as a provider takes them
  // (Accumulator::ProviderLane), so a model call filters only what the turn added.
  MessageList provider_prompt;
  size_t provider_covers = 0;
};

struct StepLoopResult {
  Json response;              // the UI message reduced from exactly the chunks written
  std::string finish_reason;  // "" when stopped
  std::string error;          // the model error that ended the turn, unmasked ("" when none)
  bool stopped = false;
  Usage usage;
  StepTimings timings;
};

// Thread-safety: one Run() at a time, on the run's executor.
class StepLoop {
 public:
  struct Env {
    asio::any_io_executor executor;
    Clock* clock = nullptr;
    HookPool* pool = nullptr;
    std::string chat_id;
    std::function<void(std::string chunk_json)> emit;  // writes a UI chunk's text to `.out`
    // Optional: called between steps, before step `next_step`'s model call; what it returns
    // joins the turn (model messages appended to the prompt, chunks written and reduced).
    struct Injection {
      Json messages = Json::array();
      std::vector<Json> chunks;
    };
    std::function<asio::awaitable<Injection>(int next_step)> between_steps;
    std::string traceparent;  // passed to every model call (ModelCall::traceparent)
    // Optional (RunHost::writable): awaited before each model call and before tools start, and
    // handed to the model as its Backpressure (ModelCall::backpressure), so the turn pauses
    // while the run's output cannot leave.
    std::function<asio::awaitable<void>(std::stop_token stop)> writable;
  };

  StepLoop(const Agent& agent, Env env) : agent_(agent), env_(std::move(env)) {}

  asio::awaitable<StepLoopResult> Run(StepLoopInput input);

 private:
  const Agent& agent_;
  Env env_;
};

}  // namespace baton

#endif  // BATON_RUNTIME_STEP_STEP_LOOP_H_
