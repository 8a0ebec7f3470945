// File: runtime/model/provider_streams.h
//
// Decoders of the two streaming wire formats baton's providers speak, from SSE events to the
// provider-neutral ModelEvents of hooks/model.h (reference/llm-wire.md §3 and §4):
//
//   AnthropicStream   Anthropic Messages: message_start, content_block_*, message_delta,
//                     message_stop, ping, error
//   OpenAiStream      OpenAI Chat Completions (and compatible servers: llama.cpp, vLLM,
//                     Ollama): chat.completion.chunk objects, then [DONE]
//
// Both are strict about the end of a stream (a stream cut before its clean end is an error,
// never a silent "other" finish), lenient about what they do not know (unknown event types and
// fields are ignored), and finalise tool calls only at the end of their block or of the stream,
// never because the JSON so far happens to parse.
#ifndef BATON_RUNTIME_MODEL_PROVIDER_STREAMS_H_
#define BATON_RUNTIME_MODEL_PROVIDER_STREAMS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "hooks/model_events.h"
#include "runtime/model/sse_parser.h"

namespace baton {

// Maps a provider's stop reason to the unified finish reason (reference/llm-wire.md §2.4).
std::string AnthropicFinishReason(std::string_view stop_reason);
std::string OpenAiFinishReason(std::string_view finish_reason);

// Thread-safety: none; one decoder per model call.
class AnthropicStream {
 public:
  // Decodes one event, appending what it means to `out`. After an error event, or an error
  // return (a spliced second message, a body that is not JSON), the call is over.
  absl::Status OnEvent(const SseEvent& event, std::vector<ModelEvent>& out);
  // The body ended: appends an error event unless message_stop was seen.
  void Finish(std::vector<ModelEvent>& out);
  bool done() const { return done_; }

 private:
  struct Block {
    std::string type;   // text, thinking, redacted_thinking, tool_use
    std::string id;     // tool_use id
    std::string name;   // tool_use name
    std::string input;  // tool_use input JSON so far
  };
  // One function per event type (the event's JSON `e`); OnEvent parses and picks.
  absl::Status OnMessageStart(const Json& e, std::vector<ModelEvent>& out);
  void OnBlockStart(const Json& e, std::vector<ModelEvent>& out);
  void OnBlockDelta(const Json& e, std::vector<ModelEvent>& out);
  void OnBlockStop(const Json& e, std::vector<ModelEvent>& out);
  void OnMessageDelta(const Json& e);
  void OnMessageStop(std::vector<ModelEvent>& out);
  void OnError(const Json& e, std::vector<ModelEvent>& out);
  void Fail(std::string message, bool retryable, std::vector<ModelEvent>& out);

  std::string message_id_;
  std::map<int64_t, Block> blocks_;
  std::string stop_reason_;
  Usage usage_;
  bool done_ = false;
};

class OpenAiStream {
 public:
  absl::Status OnEvent(const SseEvent& event, std::vector<ModelEvent>& out);
  void Finish(std::vector<ModelEvent>& out);
  bool done() const { return done_; }

 private:
  struct Call {
    std::string id;
    std::string name;
    std::string arguments;  // all argument text so far
    size_t sent = 0;        // how much of it went out as deltas
    bool started = false;   // tool-input-start went out
  };
  // The stream's end ([DONE]): the open parts closed, the calls final, the finish.
  void OnDone(std::vector<ModelEvent>& out);
  void FinishCalls(std::vector<ModelEvent>& out);
  // A chat.completion.chunk: its id, error, usage, delta and finish reason.
  void OnChunk(const Json& chunk, std::vector<ModelEvent>& out);
  // A choice's delta: reasoning, text, then tool calls (OnToolCallDeltas).
  void OnDelta(const Json& delta, std::vector<ModelEvent>& out);
  void OnToolCallDeltas(const Json& tool_calls, std::vector<ModelEvent>& out);
  void CloseText(std::vector<ModelEvent>& out);
  void CloseReasoning(std::vector<ModelEvent>& out);
  void Fail(std::string message, bool retryable, std::vector<ModelEvent>& out);

  std::string response_id_;  // the chunks' "id" (chatcmpl-...)
  // A high surrogate escape ("\ud83d") that ended a chunk, waiting for its low half (V9b).
  std::string pending_high_;
  bool text_open_ = false;
  bool reasoning_open_ = false;
  std::map<int64_t, Call> calls_;  // by index
  std::string finish_reason_;
  Usage usage_;
  bool done_ = false;
};

}  // namespace baton

#endif  // BATON_RUNTIME_MODEL_PROVIDER_STREAMS_H_
