#include "runtime/transcript/convert.h"

#include "hooks/messages.h"

namespace baton {
namespace {

Json ToolOutputJson(const Json& output) {
  if (output.is_string()) return Json{{"type", "text"}, {"value", output}};
  return Json{{"type", "json"}, {"value", output}};
}

void WithProviderOptions(Json& target, const Json& part, const char* field) {
  const Json* pm = FindField(part, field);
  if (pm != nullptr && pm->is_object() && !pm->empty()) target["providerOptions"] = *pm;
}

// Appends the model messages of one step's block of UI parts.
void ConvertAssistantBlock(const Json& parts_block, Json& out) {
  Json content = Json::array();
  Json results = Json::array();
  for (const Json& part : parts_block) {
    std::string type = StringField(part, "type");
    if (type == "text") {
      std::string text = StringField(part, "text");
      if (text.empty()) continue;
      Json t = {{"type", "text"}, {"text", text}};
      WithProviderOptions(t, part, "providerMetadata");
      content.push_back(std::move(t));
    } else if (type == "reasoning") {
      Json r = {{"type", "reasoning"}, {"text", StringField(part, "text")}};
      WithProviderOptions(r, part, "providerMetadata");
      content.push_back(std::move(r));
    } else if (IsToolPart(part)) {
      std::string state = StringField(part, "state");
      bool has_outcome = IsTerminalToolState(state) || state == "approval-requested" ||
                         state == "approval-responded";
      if (!has_outcome) continue;  // streaming, or waiting for a client output
      std::string call_id = StringField(part, "toolCallId");
      std::string name = ToolPartName(part);
      Json call = {{"type", "tool-call"},
                   {"toolCallId", call_id},
                   {"toolName", name},
                   {"input", part.value("input", Json::object())}};
      WithProviderOptions(call, part, "callProviderMetadata");
      content.push_back(std::move(call));
      const Json* approval = FindField(part, "approval");
      std::string approval_id = approval != nullptr ? StringField(*approval, "id") : "";
      if (state == "approval-requested" || state == "approval-responded") {
        content.push_back({{"type", "tool-approval-request"},
                           {"approvalId", approval_id},
                           {"toolCallId", call_id}});
      }
      if (state == "approval-responded") {
        Json response = {{"type", "tool-approval-response"},
                         {"approvalId", approval_id},
                         {"approved", approval != nullptr && BoolField(*approval, "approved")}};
        if (const Json* reason = approval != nullptr ? FindField(*approval, "reason") : nullptr) {
          response["reason"] = *reason;
        }
        results.push_back(std::move(response));
      } else if (state == "output-available") {
        results.push_back({{"type", "tool-result"},
                           {"toolCallId", call_id},
                           {"toolName", name},
                           {"output", ToolOutputJson(part.value("output", Json()))}});
      } else if (state == "output-error") {
        results.push_back(
            {{"type", "tool-result"},
             {"toolCallId", call_id},
             {"toolName", name},
             {"output", {{"type", "error-text"}, {"value", StringField(part, "errorText")}}}});
      } else if (state == "output-denied") {
        const Json* a = FindField(part, "approval");
        std::string reason = a != nullptr ? StringField(*a, "reason") : "";
        Json output = {{"type", "execution-denied"}};
        if (!reason.empty()) output["reason"] = reason;
        results.push_back({{"type", "tool-result"},
                           {"toolCallId", call_id},
                           {"toolName", name},
                           {"output", output}});
      }
    }
  }
  if (!content.empty()) out.push_back(Json{{"role", "assistant"}, {"content", std::move(content)}});
  if (!results.empty()) out.push_back(Json{{"role", "tool"}, {"content", std::move(results)}});
}

}  // namespace

Json UiToModelMessages(const Json& ui_message) {
  Json out = Json::array();
  std::string role = MessageRole(ui_message);
  const Json* parts = FindField(ui_message, "parts");
  if (parts == nullptr || !parts->is_array()) return out;
  if (role == "system") {
    out.push_back(Json{{"role", "system"}, {"content", MessageText(ui_message)}});
  } else if (role == "user") {
    Json content = Json::array();
    for (const Json& part : *parts) {
      std::string type = StringField(part, "type");
      if (type == "text") {
        content.push_back(Json{{"type", "text"}, {"text", StringField(part, "text")}});
      } else if (type == "file") {
        content.push_back(Json{{"type", "file"},
                               {"mediaType", StringField(part, "mediaType")},
                               {"data", StringField(part, "url")}});
      }
    }
    out.push_back(Json{{"role", "user"}, {"content", std::move(content)}});
  } else if (role == "assistant") {
    Json block = Json::array();
    for (const Json& part : *parts) {
      if (StringField(part, "type") == "step-start") {
        ConvertAssistantBlock(block, out);
        block = Json::array();
      } else {
        block.push_back(part);
      }
    }
    ConvertAssistantBlock(block, out);
  }
  return out;
}

Json PartialToUiMessage(const Json& partial, const std::string& message_id) {
  Json parts = Json::array();
  for (const Json& message : partial) {
    if (MessageRole(message) != "assistant") continue;
    const Json* content = FindField(message, "content");
    if (content != nullptr && content->is_string()) {
      parts.push_back(Json{{"type", "text"}, {"text", *content}});
    } else if (content != nullptr && content->is_array()) {
      for (const Json& c : *content) {
        std::string type = StringField(c, "type");
        if (type == "text") {
          parts.push_back(Json{{"type", "text"}, {"text", StringField(c, "text")}});
        } else if (type == "reasoning") {
          Json r = {{"type", "reasoning"}, {"text", StringField(c, "text")}, {"state", "done"}};
          if (const Json* po = FindField(c, "providerOptions")) r["providerMetadata"] = *po;
          parts.push_back(std::move(r));
        } else if (type == "tool-call") {
          Json t = {{"type", "tool-" + StringField(c, "toolName")},
                    {"toolCallId", StringField(c, "toolCallId")},
                    {"state", "input-available"},
                    {"input", c.value("input", Json::object())}};
          if (const Json* po = FindField(c, "providerOptions")) t["callProviderMetadata"] = *po;
          parts.push_back(std::move(t));
        }
      }
    }
    break;  // the first assistant message only
  }
  return Json{{"id", message_id}, {"role", "assistant"}, {"parts", std::move(parts)}};
}

Json StripOpenAiItemId(Json ui_message) {
  Json* parts =
      ui_message.is_object() && ui_message.contains("parts") ? &ui_message["parts"] : nullptr;
  if (parts == nullptr || !parts->is_array()) return ui_message;
  for (Json& part : *parts) {
    for (const char* field : {"providerMetadata", "callProviderMetadata"}) {
      if (!part.contains(field) || !part[field].is_object()) continue;
      Json& pm = part[field];
      if (pm.contains("openai") && pm["openai"].is_object()) {
        pm["openai"].erase("itemId");
        if (pm["openai"].empty()) pm.erase("openai");
      }
      if (pm.empty()) part.erase(field);
    }
  }
  return ui_message;
}

std::optional<Json> ForProvider(const Json& model_message) {
  const Json* content = FindField(model_message, "content");
  if (content == nullptr || !content->is_array()) return model_message;
  bool approvals = false;
  for (const Json& part : *content) {
    std::string type = StringField(part, "type");
    approvals = approvals || type == "tool-approval-request" || type == "tool-approval-response";
  }
  if (!approvals) {
    if (content->empty()) return std::nullopt;
    return model_message;
  }
  Json kept = Json::array();
  for (const Json& part : *content) {
    std::string type = StringField(part, "type");
    if (type == "tool-approval-request" || type == "tool-approval-response") continue;
    kept.push_back(part);
  }
  if (kept.empty()) return std::nullopt;
  Json m = model_message;
  m["content"] = std::move(kept);
  return m;
}

}  // namespace baton
