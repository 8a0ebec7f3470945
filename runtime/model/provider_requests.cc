#include "runtime/model/provider_requests.h"

#include <mutex>
#include <string>
#include <string_view>
#include <utility>
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

// The request's fields before `messages` (Anthropic's `messages` is its last field).
Json AnthropicHead(const ModelCall& call, const AnthropicRequestOptions& options,
                   const std::string& system) {
  Json request = {{"model", options.model}, {"max_tokens", options.max_tokens}, {"stream", true}};
  if (!system.empty()) request["system"] = system;
  if (options.thinking_budget.has_value()) {
    request["thinking"] = {{"type", "enabled"}, {"budget_tokens", *options.thinking_budget}};
    request["max_tokens"] = options.max_tokens + *options.thinking_budget;
  }
  if (call.tools.is_array() && !call.tools.empty()) request["tools"] = AnthropicTools(call.tools);
  return request;
}

// One model message as Anthropic takes it: system text, or content blocks of a turn.
struct AnthropicMessage {
  enum class Kind { kNone, kSystem, kUser, kAssistant, kResults } kind = Kind::kNone;
  std::string system;
  std::vector<Json> blocks;
};

AnthropicMessage ToAnthropic(const Json& m) {
  using Kind = AnthropicMessage::Kind;
  AnthropicMessage out;
  std::string role = MessageRole(m);
  const Json& content = Content(m);
  if (role == "system") {
    out.kind = Kind::kSystem;
    if (content.is_string()) out.system = content.get<std::string>();
  } else if (role == "user") {
    out.kind = Kind::kUser;
    UserParts(content, out.blocks);
  } else if (role == "assistant") {
    out.kind = Kind::kAssistant;
    out.blocks = AnthropicAssistantBlocks(content);
  } else if (role == "tool" && content.is_array()) {
    out.kind = Kind::kResults;
    out.blocks = AnthropicToolResults(content);
  }
  return out;
}

// The request's fields before `messages`, and its `tools` (after them).
Json OpenAiHead(const OpenAiRequestOptions& options) {
  Json request = {{"model", options.model}, {"stream", true}};
  if (options.include_usage) request["stream_options"] = {{"include_usage", true}};
  if (options.max_completion_tokens.has_value()) {
    request["max_completion_tokens"] = *options.max_completion_tokens;
  }
  return request;
}

Json OpenAiTools(const Json& tools) {
  Json out = Json::array();
  for (const Json& t : tools) {
    out.push_back({{"type", "function"},
                   {"function",
                    {{"name", StringField(t, "name")},
                     {"description", StringField(t, "description")},
                     {"parameters", t.value("inputSchema", Json{{"type", "object"}})}}}});
  }
  return out;
}

// One model message as OpenAI messages, appended to `messages`: none, one, or (a tool message)
// one per result.
void AddOpenAiMessages(const Json& m, Json& messages) {
  std::string role = MessageRole(m);
  const Json& content = Content(m);
  if (role == "system") {
    messages.push_back({{"role", "system"}, {"content", content.is_string() ? content : Json("")}});
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
        calls.push_back(
            {{"id", StringField(p, "toolCallId")},
             {"type", "function"},
             {"function",
              {{"name", StringField(p, "toolName")},
               {"arguments", input != nullptr && input->is_object() ? DumpJson(*input) : "{}"}}}});
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

// ---- Request bytes made message by message
//
// A message's piece is its request bytes with a leading kind: '-' nothing, 's' system text (raw),
// 'u' / 'a' / 'r' a user / assistant / tool-results turn's content blocks (Anthropic), 'm'
// messages (OpenAI); JSON values are comma-joined, as DumpJson joins array elements, so a body
// put together from pieces is the same bytes as the dumped tree.

template <typename Values>
std::string Joined(char kind, const Values& values) {
  std::string out(1, kind);
  for (const Json& v : values) {
    if (out.size() > 1) out += ',';
    out += DumpJson(v);
  }
  return out;
}

std::string AnthropicPiece(const Json& m) {
  using Kind = AnthropicMessage::Kind;
  AnthropicMessage a = ToAnthropic(m);
  switch (a.kind) {
    case Kind::kSystem:
      return "s" + a.system;
    case Kind::kUser:
      return Joined('u', a.blocks);
    case Kind::kAssistant:
      return Joined('a', a.blocks);
    case Kind::kResults:
      return Joined('r', a.blocks);
    case Kind::kNone:
      break;
  }
  return "-";
}

std::string OpenAiPiece(const Json& m) {
  Json messages = Json::array();
  AddOpenAiMessages(m, messages);
  return Joined('m', messages);
}

// The pieces of a call's messages: the shared prefix's from its memo (made there when missing,
// the memo locked until this goes), the rest made now.
class Pieces {
 public:
  Pieces(const MessageList& messages, const char* owner, std::string (*make)(const Json&)) {
    MessageMemo* memo = messages.memo();
    const size_t shared = memo != nullptr ? messages.shared_count() : 0;
    views_.reserve(messages.size());
    if (shared > 0) {
      lock_ = std::unique_lock<std::mutex>(memo->mu);
      if (memo->owner != owner) {
        memo->owner = owner;
        memo->pieces.clear();
      }
      if (memo->pieces.size() < shared) memo->pieces.resize(shared);
      for (size_t i = 0; i < shared; ++i) {
        std::string& piece = memo->pieces[i];
        if (piece.empty()) piece = make(messages[i]);
        views_.push_back(piece);
      }
    }
    own_.reserve(messages.size() - shared);  // no reallocation: views_ points into it
    for (size_t i = shared; i < messages.size(); ++i) {
      own_.push_back(make(messages[i]));
      views_.push_back(own_.back());
    }
    for (std::string_view v : views_) bytes_ += v.size();
  }

  const std::vector<std::string_view>& views() const { return views_; }
  size_t bytes() const { return bytes_; }

 private:
  std::unique_lock<std::mutex> lock_;
  std::vector<std::string> own_;
  std::vector<std::string_view> views_;
  size_t bytes_ = 0;
};

// A dumped object without its closing brace, for more fields to follow.
std::string OpenObject(const Json& object, size_t more) {
  std::string out = DumpJson(object);
  out.pop_back();
  out.reserve(out.size() + more);
  return out;
}

}  // namespace

Json BuildAnthropicRequest(const ModelCall& call, const AnthropicRequestOptions& options) {
  using Kind = AnthropicMessage::Kind;
  std::string system = call.system;
  AnthropicTurns turns;
  for (const Json& m : call.messages) {
    AnthropicMessage a = ToAnthropic(m);
    if (a.kind == Kind::kSystem) {
      if (!a.system.empty()) system = system.empty() ? a.system : system + "\n\n" + a.system;
    } else if (a.kind != Kind::kNone) {
      AddTurn(turns, a.kind == Kind::kAssistant ? "assistant" : "user", std::move(a.blocks),
              a.kind == Kind::kResults);
    }
  }
  Json request = AnthropicHead(call, options, system);
  Json messages = Json::array();
  for (auto& [role, content] : turns)
    messages.push_back({{"role", role}, {"content", std::move(content)}});
  request["messages"] = std::move(messages);
  return request;
}

Json BuildOpenAiRequest(const ModelCall& call, const OpenAiRequestOptions& options) {
  Json messages = Json::array();
  if (!call.system.empty()) messages.push_back({{"role", "system"}, {"content", call.system}});
  for (const Json& m : call.messages) AddOpenAiMessages(m, messages);
  Json request = OpenAiHead(options);
  request["messages"] = std::move(messages);
  if (call.tools.is_array() && !call.tools.empty()) request["tools"] = OpenAiTools(call.tools);
  return request;
}

std::string AnthropicRequestBody(const ModelCall& call, const AnthropicRequestOptions& options) {
  Pieces pieces(call.messages, "anthropic", AnthropicPiece);
  // Consecutive blocks of one role make one turn; tool results go first in theirs (AddTurn).
  struct Turn {
    bool user;
    std::string content;
  };
  std::vector<Turn> turns;
  std::string system = call.system;
  for (std::string_view piece : pieces.views()) {
    const char kind = piece.front();
    std::string_view body = piece.substr(1);
    if (kind == 's') {
      if (!body.empty())
        system = system.empty() ? std::string(body) : system + "\n\n" + std::string(body);
      continue;
    }
    if (kind == '-' || body.empty()) continue;
    const bool user = kind != 'a';
    if (turns.empty() || turns.back().user != user) turns.push_back({user, {}});
    std::string& content = turns.back().content;
    if (kind == 'r' && !content.empty()) {
      content = std::string(body) + "," + content;
    } else {
      if (!content.empty()) content += ',';
      content.append(body);
    }
  }
  std::string out =
      OpenObject(AnthropicHead(call, options, system), pieces.bytes() + 40 * turns.size() + 16);
  out += ",\"messages\":[";
  for (size_t i = 0; i < turns.size(); ++i) {
    if (i > 0) out += ',';
    out += turns[i].user ? R"({"role":"user","content":[)" : R"({"role":"assistant","content":[)";
    out += turns[i].content;
    out += "]}";
  }
  out += "]}";
  return out;
}

std::string OpenAiRequestBody(const ModelCall& call, const OpenAiRequestOptions& options) {
  Pieces pieces(call.messages, "openai", OpenAiPiece);
  std::string out = OpenObject(OpenAiHead(options), pieces.bytes() + call.system.size() + 64);
  out += ",\"messages\":[";
  bool first = true;
  if (!call.system.empty()) {
    out += DumpJson(Json{{"role", "system"}, {"content", call.system}});
    first = false;
  }
  for (std::string_view piece : pieces.views()) {
    if (piece.size() <= 1) continue;  // no messages
    if (!first) out += ',';
    out.append(piece.substr(1));
    first = false;
  }
  out += ']';
  if (call.tools.is_array() && !call.tools.empty()) {
    out += ",\"tools\":";
    out += DumpJson(OpenAiTools(call.tools));
  }
  out += '}';
  return out;
}

}  // namespace baton
