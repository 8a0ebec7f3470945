#include "runtime/transcript/convert.h"

#include <vector>

#include "hooks/messages.h"

namespace baton {
namespace {

// {"type": type, "value": value}, built in place: an initializer list copies its values twice.
Json TypedValue(const char* type, const Json& value) {
  Json out(Json::value_t::object);
  out["type"] = type;
  out["value"] = value;
  return out;
}

Json ToolOutputJson(const Json* output) {
  if (output == nullptr) return TypedValue("json", Json());
  return TypedValue(output->is_string() ? "text" : "json", *output);
}

// A part naming a tool call: {"type": type, "toolCallId": id, "toolName": name}.
Json CallPart(const char* type, const std::string& call_id, const std::string& name) {
  Json out(Json::value_t::object);
  out["type"] = type;
  out["toolCallId"] = call_id;
  out["toolName"] = name;
  return out;
}

void WithProviderOptions(Json& target, const Json& part, const char* field) {
  const Json* pm = FindField(part, field);
  if (pm != nullptr && pm->is_object() && !pm->empty()) target["providerOptions"] = *pm;
}

// Appends the model messages of one step's block of UI parts.
void ConvertAssistantBlock(const std::vector<const Json*>& parts_block, Json& out) {
  Json content = Json::array();
  Json results = Json::array();
  for (const Json* p : parts_block) {
    const Json& part = *p;
    std::string type = StringField(part, "type");
    if (type == "text") {
      const Json* text = FindField(part, "text");
      if (text == nullptr || !text->is_string() || text->get_ref<const std::string&>().empty()) {
        continue;
      }
      Json t(Json::value_t::object);
      t["type"] = "text";
      t["text"] = *text;
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
      Json call = CallPart("tool-call", call_id, name);
      const Json* input = FindField(part, "input");
      call["input"] = input != nullptr ? *input : Json::object();
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
        Json result = CallPart("tool-result", call_id, name);
        result["output"] = ToolOutputJson(FindField(part, "output"));
        results.push_back(std::move(result));
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
  for (auto [role, list] : {std::pair{"assistant", &content}, std::pair{"tool", &results}}) {
    if (list->empty()) continue;
    Json message(Json::value_t::object);
    message["role"] = role;
    message["content"] = std::move(*list);
    out.push_back(std::move(message));
  }
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
    AssistantPartsToModelMessages(*parts, 0, out);
  }
  return out;
}

void AssistantPartsToModelMessages(const Json& parts, size_t from, Json& out) {
  if (!parts.is_array()) return;
  std::vector<const Json*> block;
  for (size_t i = from; i < parts.size(); ++i) {
    const Json& part = parts[i];
    if (StringField(part, "type") == "step-start") {
      ConvertAssistantBlock(block, out);
      block.clear();
    } else {
      block.push_back(&part);
    }
  }
  ConvertAssistantBlock(block, out);
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
