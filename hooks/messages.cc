#include "hooks/messages.h"

#include "absl/strings/match.h"

namespace baton {

std::string MessageId(const Json& message) { return StringField(message, "id"); }
std::string MessageRole(const Json& message) { return StringField(message, "role"); }

Json UserMessage(std::string_view id, std::string_view text) {
  Json part = {{"type", "text"}, {"text", text}};
  return Json{{"id", id}, {"role", "user"}, {"parts", Json::array({part})}};
}

bool IsToolPart(const Json& part) {
  std::string type = StringField(part, "type");
  return absl::StartsWith(type, "tool-") || type == "dynamic-tool";
}

std::string ToolPartName(const Json& part) {
  std::string type = StringField(part, "type");
  if (type == "dynamic-tool") return StringField(part, "toolName");
  return absl::StartsWith(type, "tool-") ? type.substr(5) : std::string();
}

bool IsTerminalToolState(std::string_view state) {
  return state == "output-available" || state == "output-error" || state == "output-denied";
}

bool IsClientAdvanceableToolState(std::string_view state) {
  return IsTerminalToolState(state) || state == "approval-responded";
}

Json CleanupAbortedParts(Json message) {
  if (MessageRole(message) != "assistant") return message;
  const Json* parts = FindField(message, "parts");
  if (parts == nullptr || !parts->is_array()) return message;
  Json kept = Json::array();
  for (const Json& part : *parts) {
    if (IsToolPart(part)) {
      std::string state = StringField(part, "state");
      if (state == "input-streaming" || state == "input-available" || state == "partial-call") {
        continue;
      }
    }
    Json p = part;
    std::string type = StringField(p, "type");
    if ((type == "text" || type == "reasoning") && StringField(p, "state") == "streaming") {
      p["state"] = "done";
    }
    kept.push_back(std::move(p));
  }
  message["parts"] = std::move(kept);
  return message;
}

std::string MessageText(const Json& message) {
  std::string text;
  const Json* parts = FindField(message, "parts");
  if (parts == nullptr || !parts->is_array()) return text;
  for (const Json& part : *parts) {
    if (StringField(part, "type") == "text") text += StringField(part, "text");
  }
  return text;
}

}  // namespace baton
