// File: hooks/messages.h
//
// Helpers over AI SDK message shapes, kept as JSON so unknown fields survive:
//   UI message     {id, role: "system"|"user"|"assistant", metadata?, parts: [...]}
//   model message  {role: "system"|"user"|"assistant"|"tool", content}
// See reference/llm-wire.md §1.6 and §2.3 for the part types.
#ifndef BATON_HOOKS_MESSAGES_H_
#define BATON_HOOKS_MESSAGES_H_

#include <string>
#include <string_view>
#include <vector>

#include "hooks/json.h"

namespace baton {

std::string MessageId(const Json& message);
std::string MessageRole(const Json& message);

// A user UI message with one text part.
Json UserMessage(std::string_view id, std::string_view text);

// Tool parts are "tool-<name>" or "dynamic-tool" (with a toolName field).
bool IsToolPart(const Json& part);
std::string ToolPartName(const Json& part);

// States after which a tool part never changes: output-available, output-error, output-denied.
bool IsTerminalToolState(std::string_view state);
// States a client may send back (slim HITL wire): the terminal ones and approval-responded.
bool IsClientAdvanceableToolState(std::string_view state);

// CleanupAbortedParts()
//
// What an interrupted assistant message looks like once settled: tool parts still being streamed
// or waiting for input (input-streaming, input-available, partial-call) are dropped, text and
// reasoning marked "done". Other roles are returned unchanged.
Json CleanupAbortedParts(Json message);

// The concatenated text of a message's text parts.
std::string MessageText(const Json& message);

}  // namespace baton

#endif  // BATON_HOOKS_MESSAGES_H_
