// File: runtime/transcript/ui_reducer.h
//
// UiReducer: folds AI SDK UI message chunks into a UI message, the way the AI SDK client does
// (reference/llm-wire.md §1.5). The runtime reduces exactly the chunks it wrote in a turn to get
// the turn's response message, so what is persisted is what readers saw.
#ifndef BATON_RUNTIME_TRANSCRIPT_UI_REDUCER_H_
#define BATON_RUNTIME_TRANSCRIPT_UI_REDUCER_H_

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hooks/json.h"

namespace baton {

// Thread-safety: none; owned by one run.
class UiReducer {
 public:
  // Starts from `message` (an assistant message being continued) or an empty assistant message.
  explicit UiReducer(Json message = Json());

  // Applies one chunk. Returns InvalidArgument for a chunk that breaks the stream grammar (a
  // delta for a part that is not open, a tool result for an unknown call); the message is left
  // as it was.
  absl::Status Apply(const Json& chunk);

  // The same for the chunks the runtime writes as text (runtime/transcript/ui_chunk.h), without
  // a tree: `start-step`; `finish-step`; `text-start`/`reasoning-start` (`text` picks which),
  // their deltas and ends, without provider metadata. Apply goes through these too.
  void StartStep();
  void FinishStep();
  void OpenBlock(bool text, std::string_view id, const Json* provider_metadata = nullptr);
  absl::Status AppendDelta(bool text, std::string_view id, std::string_view delta,
                           const Json* provider_metadata = nullptr);
  absl::Status CloseBlock(bool text, std::string_view id, const Json* provider_metadata = nullptr);

  const Json& message() const { return message_; }
  // The message, moved out: the reducer is done with (message() is null after).
  Json TakeMessage() { return std::move(message_); }
  std::string finish_reason() const { return finish_reason_; }
  // Index of the part in parts[] for a toolCallId, or -1.
  int ToolPartIndex(const std::string& tool_call_id) const;

 private:
  Json& Parts() { return message_["parts"]; }
  // The open text or reasoning part with chunk id `id`, or an error naming the chunk type.
  absl::StatusOr<Json*> OpenPart(bool text, std::string_view id, std::string_view suffix);

  Json message_;
  std::map<std::string, size_t, std::less<>> open_text_;
  std::map<std::string, size_t, std::less<>> open_reasoning_;
  std::map<std::string, std::string> partial_tool_input_;
  std::string finish_reason_;
};

// UiMessageChunks()
//
// The UI chunks that build `message`'s parts, for a reader that never saw them streamed (a head
// start's step 1 on `.out`): per part, text-start/-delta/-end and reasoning-start/-delta/-end
// (ids `<id_prefix><n>`, provider metadata kept, so reasoning signatures survive),
// tool-input-available (with tool-output-available, -error, tool-approval-request or
// tool-output-denied for a part past its input), data-*, source-url, source-document and file.
// No start, step or finish chunks: the caller frames them. UiReducer folds the chunks back into
// the same parts (step-start parts aside).
std::vector<Json> UiMessageChunks(const Json& message, std::string_view id_prefix);

}  // namespace baton

#endif  // BATON_RUNTIME_TRANSCRIPT_UI_REDUCER_H_
