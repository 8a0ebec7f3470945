// File: hooks/model_events.h
//
// What a model call streams, provider-neutral (the AI SDK's LanguageModel stream parts, reduced
// to what baton uses). Plain data: no executor, so parsers and their fuzz targets can use it.
#ifndef BATON_HOOKS_MODEL_EVENTS_H_
#define BATON_HOOKS_MODEL_EVENTS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "hooks/json.h"
#include "hooks/message_list.h"

namespace baton {

class Backpressure;  // hooks/model.h

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
  bool retryable = false;  // kError: a rate limit or overload that a retry may get past

  static ModelEvent Of(Type type, std::string id = "") {
    ModelEvent e;
    e.type = type;
    e.id = std::move(id);
    return e;
  }
};

// One streaming model call.
struct ModelCall {
  std::string system;
  MessageList messages;  // AI SDK model messages (reference/llm-wire.md §2.2), shared: a copy
                         // of a call costs the same at any history
  Json tools = Json::array();  // [{name, description, inputSchema}]
  int step = 0;                // 0-based step within the turn
  std::string traceparent;     // the run's W3C trace context ("" when none); sent on
                               // provider requests as a `traceparent` header
  // Optional, valid while Stream() runs: the run's output is bounded, and the model awaits
  // backpressure->WaitForRoom() before it passes on more events (see hooks/model.h).
  Backpressure* backpressure = nullptr;
};

}  // namespace baton

#endif  // BATON_HOOKS_MODEL_EVENTS_H_
