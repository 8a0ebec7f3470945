// File: hooks/model.h
//
// The language model seam. A LanguageModel streams one model call as provider-neutral events
// (the AI SDK's LanguageModel stream parts, reduced to what baton uses). The step loop turns them
// into UI message chunks. Implementations: the scripted model (tests, demo), and the Anthropic and
// OpenAI providers over HTTP.
#ifndef BATON_HOOKS_MODEL_H_
#define BATON_HOOKS_MODEL_H_

#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

#include "asio/awaitable.hpp"
#include "hooks/json.h"
#include "hooks/model_events.h"

namespace baton {

// Backpressure
//
// A run's output is bounded (the worker keeps what the orchestrator has not yet acknowledged,
// up to a limit). A model awaits WaitForRoom() before it passes on more events, e.g. before it
// hands on each read of the provider's response, and so stops reading while the run's output
// cannot leave; a provider stream then waits in the TCP window. The built-in models do this; a
// model that does not still works, its events then wait in the worker's memory.
class Backpressure {
 public:
  virtual ~Backpressure() = default;
  // Returns once the run's output has room again, or at once when the call's stop is requested.
  virtual asio::awaitable<void> WaitForRoom() = 0;
};

// LanguageModel
//
// Thread-safety: Stream() is called on the run's executor and must not block it; it may be
// called concurrently for different runs.
class LanguageModel {
 public:
  virtual ~LanguageModel() = default;

  // Provider name, used as the key of provider metadata ("anthropic", "openai", "scripted").
  virtual std::string provider() const = 0;

  // The model's id as its provider names it ("claude-sonnet-4-5"), or "" when the model cannot
  // say (a scripted model). Workers announce it with the agent (docs/protocol.md, AgentInfo).
  virtual std::string model_id() const { return ""; }

  // Streams `call`. Calls `on_event` for each event, in order, on the caller's executor, and
  // returns after the last one. A call ends with exactly one kFinish or kError event, unless
  // `stop` is requested first: then it returns at once and emits nothing more.
  virtual asio::awaitable<void> Stream(ModelCall call, std::function<void(ModelEvent)> on_event,
                                       std::stop_token stop) = 0;
};

}  // namespace baton

#endif  // BATON_HOOKS_MODEL_H_
