#include "runtime/model/provider_requests.h"

#include <vector>

#include "hooks/messages.h"

namespace baton {
namespace {

const Json& Content(const Json& message) {
  static const Json* empty = new Json(Json::array());
  const Json* c = FindField(message, "content");
  return c != nullptr ? *c : *empty;
}

// A tool result's output as the text a provider takes.
std::string OutputText(const Json& output, bool* is_error) {
  std::string type = StringField(output, "type");
  const Json* value = FindField(output, "value");
  *is_error = type == "error-text" || type == "error-json" || type == "execution-denied";
  if (type == "execution-denied") {
    std::string reason = StringField(output, "reason");
    return reason.empty() ? "The user denied this tool call." : reason;
  }
  if (value == nullptr) return "";
  if (value->is_string()) return value->get<std::string>();
  return DumpJson(*value);
}

// The parts of a user message, as text parts.
void UserParts(const Json& content, std::vector<Json>& parts) {
  if (content.is_string()) {
    parts.push_back({{"type", "text"}, {"text", content}});
    return;
  }
  if (!content.is_array()) return;
  for (const Json& p : content) {
    if (StringField(p, "type") == "text") {
      parts.push_back({{"type", "text"}, {"text", StringField(p, "text")}});
    }
  }
}

// Anthropic's turns as (role, content blocks); consecutive blocks of one role are merged into
// one turn.
using AnthropicTurns = std::vector<std::pair<std::string, Json>>;

void AddTurn(AnthropicTurns& turns, const std::string& role, std::vector<Json> blocks,
             bool results_first) {
  if (blocks.empty()) return;
  if (turns.empty() || turns.back().first != role) turns.emplace_back(role, Json::array());
  Json& content = turns.back().second;
  if (results_first) {
    // Every tool_use is answered at the start of the next user turn.
    Json merged = Json::array();
    for (Json& b : blocks) merged.push_back(std::move(b));
    for (Json& b : content) merged.push_back(std::move(b));
    content = std::move(merged);
  } else {
    for (Json& b : blocks) content.push_back(std::move(b));
  }
}

// An assistant message's content as Anthropic content blocks: text, thinking (signed, or
// redacted) and tool_use.
std::vector<Json> AnthropicAssistantBlocks(const Json& content) {
  std::vector<Json> blocks;
  if (content.is_string()) {
    if (!content.get<std::string>().empty())
      blocks.push_back({{"type", "text"}, {"text", content}});
  } else if (content.is_array()) {
    for (const Json& p : content) {
      std::string type = StringField(p, "type");
      const Json* anthropic = nullptr;
      if (const Json* po = FindField(p, "providerOptions")) anthropic = FindField(*po, "anthropic");
      if (type == "text") {
        std::string text = StringField(p, "text");
        if (!text.empty()) blocks.push_back({{"type", "text"}, {"text", text}});
      } else if (type == "reasoning") {
        std::string signature = anthropic != nullptr ? StringField(*anthropic, "signature") : "";
        std::string redacted = anthropic != nullptr ? StringField(*anthropic, "redactedData") : "";
        if (!signature.empty()) {
          blocks.push_back({{"type", "thinking"},
                            {"thinking", StringField(p, "text")},
                            {"signature", signature}});
        } else if (!redacted.empty()) {
          blocks.push_back({{"type", "redacted_thinking"}, {"data", redacted}});
        }
      } else if (type == "tool-call") {
        const Json* input = FindField(p, "input");
        blocks.push_back(
            {{"type", "tool_use"},
             {"id", StringField(p, "toolCallId")},
             {"name", StringField(p, "toolName")},
             {"input", input != nullptr && input->is_object() ? *input : Json::object()}});
      }
    }
  }
  return blocks;
}

// A tool message's results as Anthropic tool_result blocks.
std::vector<Json> AnthropicToolResults(const Json& content) {
  std::vector<Json> results;
  for (const Json& p : content) {
    if (StringField(p, "type") != "tool-result") continue;
    bool is_error = false;
    const Json* output = FindField(p, "output");
    Json r = {{"type", "tool_result"},
              {"tool_use_id", StringField(p, "toolCallId")},
              {"content", output != nullptr ? OutputText(*output, &is_error) : ""}};
    if (is_error) r["is_error"] = true;
    results.push_back(std::move(r));
  }
  return results;
}

// The call's tools as Anthropic's `tools`.
Json AnthropicTools(const Json& tools) {
  Json out = Json::array();
  for (const Json& t : tools) {
    out.push_back({{"name", StringField(t, "name")},
                   {"description", StringField(t, "description")},
                   {"input_schema", t.value("inputSchema", Json{{"type", "object"}})}});
  }
  return out;
}

}  // namespace

Json BuildAnthropicRequest(const ModelCall& call, const AnthropicRequestOptions& options) {
  std::string system = call.system;
  AnthropicTurns turns;
  for (const Json& m : call.messages) {
    std::string role = MessageRole(m);
    const Json& content = Content(m);
    if (role == "system") {
      std::string text = content.is_string() ? content.get<std::string>() : "";
      if (!text.empty()) system = system.empty() ? text : system + "\n\n" + text;
    } else if (role == "user") {
      std::vector<Json> parts;
      UserParts(content, parts);
      AddTurn(turns, "user", std::move(parts), false);
    } else if (role == "assistant") {
      AddTurn(turns, "assistant", AnthropicAssistantBlocks(content), false);
    } else if (role == "tool" && content.is_array()) {
      AddTurn(turns, "user", AnthropicToolResults(content), true);
    }
  }
  Json request = {{"model", options.model}, {"max_tokens", options.max_tokens}, {"stream", true}};
  if (!system.empty()) request["system"] = system;
  if (options.thinking_budget.has_value()) {
    request["thinking"] = {{"type", "enabled"}, {"budget_tokens", *options.thinking_budget}};
    request["max_tokens"] = options.max_tokens + *options.thinking_budget;
  }
  if (call.tools.is_array() && !call.tools.empty()) request["tools"] = AnthropicTools(call.tools);
  Json messages = Json::array();
  for (auto& [role, content] : turns)
    messages.push_back({{"role", role}, {"content", std::move(content)}});
  request["messages"] = std::move(messages);
  return request;
}

Json BuildOpenAiRequest(const ModelCall& call, const OpenAiRequestOptions& options) {
  Json messages = Json::array();
  if (!call.system.empty()) messages.push_back({{"role", "system"}, {"content", call.system}});
  for (const Json& m : call.messages) {
    std::string role = MessageRole(m);
    const Json& content = Content(m);
    if (role == "system") {
      messages.push_back(
          {{"role", "system"}, {"content", content.is_string() ? content : Json("")}});
    } else if (role == "user") {
      std::vector<Json> parts;
      UserParts(content, parts);
      if (parts.size() == 1) {
        messages.push_back({{"role", "user"}, {"content", parts[0]["text"]}});
      } else {
        messages.push_back({{"role", "user"}, {"content", Json(parts)}});
      }
    } else if (role == "assistant") {
      std::string text;
      Json calls = Json::array();
      if (content.is_string()) text = content.get<std::string>();
      for (const Json& p : content.is_array() ? content : Json::array()) {
        std::string type = StringField(p, "type");
        if (type == "text") text += StringField(p, "text");
        if (type == "tool-call") {
          const Json* input = FindField(p, "input");
          calls.push_back({{"id", StringField(p, "toolCallId")},
                           {"type", "function"},
                           {"function",
                            {{"name", StringField(p, "toolName")},
                             {"arguments",
                              input != nullptr && input->is_object() ? DumpJson(*input) : "{}"}}}});
        }
      }
      Json message = {{"role", "assistant"}, {"content", text.empty() ? Json() : Json(text)}};
      if (!calls.empty()) message["tool_calls"] = std::move(calls);
      messages.push_back(std::move(message));
    } else if (role == "tool" && content.is_array()) {
      for (const Json& p : content) {
        if (StringField(p, "type") != "tool-result") continue;
        bool is_error = false;
        const Json* output = FindField(p, "output");
        messages.push_back({{"role", "tool"},
                            {"tool_call_id", StringField(p, "toolCallId")},
                            {"content", output != nullptr ? OutputText(*output, &is_error) : ""}});
      }
    }
  }
  Json request = {{"model", options.model}, {"stream", true}};
  if (options.include_usage) request["stream_options"] = {{"include_usage", true}};
  if (options.max_completion_tokens.has_value()) {
    request["max_completion_tokens"] = *options.max_completion_tokens;
  }
  request["messages"] = std::move(messages);
  if (call.tools.is_array() && !call.tools.empty()) {
    Json tools = Json::array();
    for (const Json& t : call.tools) {
      tools.push_back({{"type", "function"},
                       {"function",
                        {{"name", StringField(t, "name")},
                         {"description", StringField(t, "description")},
                         {"parameters", t.value("inputSchema", Json{{"type", "object"}})}}}});
    }
    request["tools"] = std::move(tools);
  }
  return request;
}

}  // namespace baton
