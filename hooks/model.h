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

namespace baton {

// Token counts of one call; a count a provider did not report stays unknown, never 0.
struct Usage {
  std::optional<int64_t> input_tokens;
  std::optional<int64_t> output_tokens;

  Usage& operator+=(const Usage& other);
  Json ToJson() const;
};

struct ModelEvent {
  enum class Type {
    kTextStart,       // id
    kTextDelta,       // id, delta
    kTextEnd,         // id
    kReasoningStart,  // id, provider_metadata (e.g. Anthropic redactedData)
    kReasoningDelta,  // id, delta, provider_metadata (e.g. Anthropic signature with empty delta)
    kReasoningEnd,    // id
    kToolInputStart,  // id = toolCallId, tool_name
    kToolInputDelta,  // id = toolCallId, delta = raw JSON text fragment
    kToolCall,        // id = toolCallId, tool_name, input = whole JSON text ("" means {})
    kFinish,          // finish_reason (unified: stop, length, content-filter, tool-calls, other)
    kError,           // error (message); ends the call
  };
  Type type = Type::kTextDelta;
  std::string id;
  std::string tool_name;
  std::string delta;
  std::string input;
  Json provider_metadata;  // null when absent
  std::string finish_reason;
  Usage usage;
  std::string error;
};

// One streaming model call.
struct ModelCall {
  std::string system;
  Json messages = Json::array();  // AI SDK model messages (reference/llm-wire.md §2.2)
  Json tools = Json::array();     // [{name, description, inputSchema}]
  int step = 0;                   // 0-based step within the turn
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

  // Streams `call`. Calls `on_event` for each event, in order, on the caller's executor, and
  // returns after the last one. A call ends with exactly one kFinish or kError event, unless
  // `stop` is requested first: then it returns at once and emits nothing more.
  virtual asio::awaitable<void> Stream(ModelCall call, std::function<void(ModelEvent)> on_event,
                                       std::stop_token stop) = 0;
};

}  // namespace baton

#endif  // BATON_HOOKS_MODEL_H_
