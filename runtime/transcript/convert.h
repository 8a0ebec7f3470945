// File: runtime/transcript/convert.h
//
// Conversions between the two transcripts a run keeps (reference/llm-wire.md §2.3 and
// chat-wire-and-hooks.md §5.5): UI messages (what users see and what is persisted) and model
// messages (what the model is sent).
#ifndef BATON_RUNTIME_TRANSCRIPT_CONVERT_H_
#define BATON_RUNTIME_TRANSCRIPT_CONVERT_H_

#include <optional>
#include <string>

#include "hooks/json.h"

namespace baton {

// UiToModelMessages()
//
// The model messages for one UI message, as the AI SDK's convertToModelMessages with
// ignoreIncompleteToolCalls: an assistant message splits into one assistant message per step
// (at each step-start part), each followed by a tool message with the step's results. Tool parts
// still streaming, or waiting for input with no output, are left out. Tool parts waiting on or
// answered by an approval become tool-approval-request / tool-approval-response parts, which the
// step loop resolves before its first model call. Provider metadata becomes providerOptions.
Json UiToModelMessages(const Json& ui_message);
// The same for an assistant message's parts from `from` on (one step's, say), appended to `out`
// (a JSON array); the parts are read in place.
void AssistantPartsToModelMessages(const Json& parts, size_t from, Json& out);

// PartialToUiMessage()
//
// The UI message for a head start's partial (the model messages the warm server produced in
// step 1), under `message_id`: from the first assistant message, text becomes a text part,
// reasoning a done reasoning part with its providerOptions as providerMetadata, a tool call a
// tool part in input-available. Approval requests are skipped.
Json PartialToUiMessage(const Json& partial, const std::string& message_id);

// ForProvider()
//
// A model message as a provider takes it: approval parts (tool-approval-request and -response)
// are baton's bookkeeping, not model input, and are left out; nullopt when no content is left
// (an empty content array included).
std::optional<Json> ForProvider(const Json& model_message);

// StripOpenAiItemId()
//
// Removes providerMetadata.openai.itemId from every part (the reference's
// stripProviderMetadata) and keeps all other metadata, Anthropic signatures included.
Json StripOpenAiItemId(Json ui_message);

}  // namespace baton

#endif  // BATON_RUNTIME_TRANSCRIPT_CONVERT_H_
