// File: runtime/model/provider_requests.h
//
// Request bodies for the two providers, built from a ModelCall (AI SDK model messages, tool
// schemas, system prompt); reference/llm-wire.md §3.1 and §4.1.
//
// Anthropic: `system` is top level; tool results travel in user turns (results first);
// consecutive turns of one role are merged; reasoning is replayed as `thinking` with its
// signature byte for byte (or `redacted_thinking`), and reasoning without a signature is left
// out, since the API refuses unsigned thinking.
// OpenAI Chat Completions: the system prompt is the first message; tool calls are
// `assistant.tool_calls` with arguments as a JSON string (`{}` when empty); each result is a
// `role: "tool"` message with string content, in call order.
//
// Every call sends the whole history; its bytes are made once per message and kept (see the
// *RequestBody functions), so a call's cost follows what the turn added, not the chat's length.
#ifndef BATON_RUNTIME_MODEL_PROVIDER_REQUESTS_H_
#define BATON_RUNTIME_MODEL_PROVIDER_REQUESTS_H_

#include <optional>
#include <string>

#include "hooks/json.h"
#include "hooks/model_events.h"

namespace baton {

struct AnthropicRequestOptions {
  std::string model;
  int max_tokens = 4096;
  std::optional<int> thinking_budget;  // extended thinking when set (>= 1024)
};

struct OpenAiRequestOptions {
  std::string model;
  std::optional<int> max_completion_tokens;
  bool include_usage = true;  // stream_options.include_usage; some compatible servers refuse it
};

// The request as a JSON tree.
Json BuildAnthropicRequest(const ModelCall& call, const AnthropicRequestOptions& options);
Json BuildOpenAiRequest(const ModelCall& call, const OpenAiRequestOptions& options);

// The request body: the same bytes as DumpJson of the tree, put together from each message's
// bytes. Those of the messages' shared prefix are kept in its memo (MessageList::memo), so a
// call makes only the bytes of the messages added since the last one; the rest is copying.
std::string AnthropicRequestBody(const ModelCall& call, const AnthropicRequestOptions& options);
std::string OpenAiRequestBody(const ModelCall& call, const OpenAiRequestOptions& options);

}  // namespace baton

#endif  // BATON_RUNTIME_MODEL_PROVIDER_REQUESTS_H_
