#include "runtime/model/provider_streams.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "hooks/json.h"

namespace baton {
namespace {

bool IsHex4(std::string_view s) {
  if (s.size() < 4) return false;
  for (int i = 0; i < 4; ++i) {
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

// JSON text with its lone UTF-16 surrogate escapes mended, so that it parses: some compatible
// servers split one character's surrogate pair across two chunks. A high half that no low half
// follows is taken out and kept in `carry`; a low half with no high half before it gets the
// carried one, or becomes U+FFFD.
std::string MendSurrogates(std::string_view text, std::string& carry) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      out.push_back(text[i++]);
      continue;
    }
    if (text[i + 1] != 'u' || !IsHex4(text.substr(i + 2))) {
      out.append(text.substr(i, 2));  // another escape: copied whole
      i += 2;
      continue;
    }
    unsigned code = std::stoul(std::string(text.substr(i + 2, 4)), nullptr, 16);
    std::string_view escape = text.substr(i, 6);
    bool high = code >= 0xD800 && code <= 0xDBFF;
    bool low = code >= 0xDC00 && code <= 0xDFFF;
    if (high) {
      std::string_view next = text.substr(i + 6);
      if (next.size() >= 6 && next[0] == '\\' && next[1] == 'u' && IsHex4(next.substr(2))) {
        unsigned next_code = std::stoul(std::string(next.substr(2, 4)), nullptr, 16);
        if (next_code >= 0xDC00 && next_code <= 0xDFFF) {
          out.append(text.substr(i, 12));
          i += 12;
          continue;
        }
      }
      carry = std::string(escape);  // wait for its low half in a later chunk
    } else if (low) {
      if (!carry.empty()) {
        out += carry;
        out.append(escape);
        carry.clear();
      } else {
        out += "\\ufffd";
      }
    } else {
      out.append(escape);
    }
    i += 6;
  }
  return out;
}

std::optional<int64_t> Count(const Json& usage, std::string_view key) {
  const Json* f = FindField(usage, key);
  if (f == nullptr || !f->is_number_integer()) return std::nullopt;
  return f->get<int64_t>();
}

bool RetryableAnthropicError(std::string_view type) {
  return type == "overloaded_error" || type == "api_error" || type == "rate_limit_error";
}

}  // namespace

std::string AnthropicFinishReason(std::string_view r) {
  if (r == "end_turn" || r == "stop_sequence" || r == "pause_turn") return "stop";
  if (r == "max_tokens" || r == "model_context_window_exceeded") return "length";
  if (r == "refusal") return "content-filter";
  if (r == "tool_use") return "tool-calls";
  return "other";
}

std::string OpenAiFinishReason(std::string_view r) {
  if (r == "stop") return "stop";
  if (r == "length") return "length";
  if (r == "content_filter") return "content-filter";
  if (r == "tool_calls" || r == "function_call") return "tool-calls";
  return "other";
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages

void AnthropicStream::Fail(std::string message, bool retryable, std::vector<ModelEvent>& out) {
  ModelEvent e = ModelEvent::Of(ModelEvent::Type::kError);
  e.error = std::move(message);
  e.retryable = retryable;
  out.push_back(std::move(e));
  done_ = true;
}

absl::Status AnthropicStream::OnEvent(const SseEvent& event, std::vector<ModelEvent>& out) {
  if (done_) return absl::OkStatus();  // nothing after the end counts
  absl::StatusOr<Json> parsed = ParseJson(event.data, kMaxDataDepth);
  if (!parsed.ok()) {
    Fail(absl::StrCat("the model's stream sent an event that is not JSON baton takes: ",
                      parsed.status().message()),
         false, out);
    return absl::InvalidArgumentError(
        absl::StrCat("anthropic stream: event \"", event.event, "\": ", parsed.status().message()));
  }
  const Json& e = *parsed;
  std::string type = StringField(e, "type");
  if (type.empty()) type = event.event;

  if (type == "message_start") return OnMessageStart(e, out);
  if (type == "content_block_start") {
    OnBlockStart(e, out);
  } else if (type == "content_block_delta") {
    OnBlockDelta(e, out);
  } else if (type == "content_block_stop") {
    OnBlockStop(e, out);
  } else if (type == "message_delta") {
    OnMessageDelta(e);
  } else if (type == "message_stop") {
    OnMessageStop(out);
  } else if (type == "error") {
    OnError(e, out);
  }
  // ping and event types added later are ignored.
  return absl::OkStatus();
}

absl::Status AnthropicStream::OnMessageStart(const Json& e, std::vector<ModelEvent>& out) {
  const Json* message = FindField(e, "message");
  std::string id = message != nullptr ? StringField(*message, "id") : "";
  if (!message_id_.empty() && id != message_id_) {
    // A second generation spliced into this one: stop, and keep none of it (V14b).
    Fail("the model's stream began a second message", false, out);
    return absl::DataLossError("anthropic stream: a second message_start with another id");
  }
  message_id_ = id;
  if (message != nullptr) {
    if (const Json* usage = FindField(*message, "usage")) {
      usage_.input_tokens = Count(*usage, "input_tokens");
      if (auto o = Count(*usage, "output_tokens")) usage_.output_tokens = o;
    }
  }
  return absl::OkStatus();
}

void AnthropicStream::OnBlockStart(const Json& e, std::vector<ModelEvent>& out) {
  int64_t index = IntField(e, "index", -1);
  const Json* block = FindField(e, "content_block");
  if (index < 0 || block == nullptr) return;
  Block b;
  b.type = StringField(*block, "type");
  std::string id = absl::StrCat(index);
  if (b.type == "text") {
    out.push_back(ModelEvent::Of(ModelEvent::Type::kTextStart, id));
  } else if (b.type == "thinking") {
    out.push_back(ModelEvent::Of(ModelEvent::Type::kReasoningStart, id));
  } else if (b.type == "redacted_thinking") {
    ModelEvent start = ModelEvent::Of(ModelEvent::Type::kReasoningStart, id);
    start.provider_metadata = {{"anthropic", {{"redactedData", StringField(*block, "data")}}}};
    out.push_back(std::move(start));
  } else if (b.type == "tool_use") {
    b.id = StringField(*block, "id");
    b.name = StringField(*block, "name");
    ModelEvent start = ModelEvent::Of(ModelEvent::Type::kToolInputStart, b.id);
    start.tool_name = b.name;
    out.push_back(std::move(start));
  }
  blocks_[index] = std::move(b);
}

void AnthropicStream::OnBlockDelta(const Json& e, std::vector<ModelEvent>& out) {
  auto it = blocks_.find(IntField(e, "index", -1));
  const Json* delta = FindField(e, "delta");
  if (it == blocks_.end() || delta == nullptr) return;
  std::string id = absl::StrCat(it->first);
  std::string dtype = StringField(*delta, "type");
  if (dtype == "text_delta") {
    ModelEvent d = ModelEvent::Of(ModelEvent::Type::kTextDelta, id);
    d.delta = StringField(*delta, "text");
    out.push_back(std::move(d));
  } else if (dtype == "thinking_delta") {
    ModelEvent d = ModelEvent::Of(ModelEvent::Type::kReasoningDelta, id);
    d.delta = StringField(*delta, "thinking");
    out.push_back(std::move(d));
  } else if (dtype == "signature_delta") {
    ModelEvent d = ModelEvent::Of(ModelEvent::Type::kReasoningDelta, id);
    d.provider_metadata = {{"anthropic", {{"signature", StringField(*delta, "signature")}}}};
    out.push_back(std::move(d));
  } else if (dtype == "input_json_delta") {
    std::string part = StringField(*delta, "partial_json");
    if (part.empty() || it->second.type != "tool_use") return;
    it->second.input += part;
    ModelEvent d = ModelEvent::Of(ModelEvent::Type::kToolInputDelta, it->second.id);
    d.delta = std::move(part);
    out.push_back(std::move(d));
  }
}

void AnthropicStream::OnBlockStop(const Json& e, std::vector<ModelEvent>& out) {
  auto it = blocks_.find(IntField(e, "index", -1));
  if (it == blocks_.end()) return;
  const Block& b = it->second;
  std::string id = absl::StrCat(it->first);
  if (b.type == "text") {
    out.push_back(ModelEvent::Of(ModelEvent::Type::kTextEnd, id));
  } else if (b.type == "thinking" || b.type == "redacted_thinking") {
    out.push_back(ModelEvent::Of(ModelEvent::Type::kReasoningEnd, id));
  } else if (b.type == "tool_use") {
    ModelEvent call = ModelEvent::Of(ModelEvent::Type::kToolCall, b.id);
    call.tool_name = b.name;
    call.input = b.input;  // "" means {}
    out.push_back(std::move(call));
  }
  blocks_.erase(it);
}

void AnthropicStream::OnMessageDelta(const Json& e) {
  if (const Json* delta = FindField(e, "delta")) stop_reason_ = StringField(*delta, "stop_reason");
  if (const Json* usage = FindField(e, "usage")) {
    // Counts here are cumulative: they replace, never add.
    if (auto o = Count(*usage, "output_tokens")) usage_.output_tokens = o;
    if (auto i = Count(*usage, "input_tokens")) usage_.input_tokens = i;
  }
}

void AnthropicStream::OnMessageStop(std::vector<ModelEvent>& out) {
  ModelEvent finish = ModelEvent::Of(ModelEvent::Type::kFinish);
  finish.finish_reason = AnthropicFinishReason(stop_reason_);
  finish.usage = usage_;
  out.push_back(std::move(finish));
  done_ = true;
}

void AnthropicStream::OnError(const Json& e, std::vector<ModelEvent>& out) {
  const Json* error = FindField(e, "error");
  std::string etype = error != nullptr ? StringField(*error, "type") : "";
  std::string message = error != nullptr ? StringField(*error, "message") : "";
  Fail(message.empty() ? "the model's stream reported an error" : message,
       RetryableAnthropicError(etype), out);
}

void AnthropicStream::Finish(std::vector<ModelEvent>& out) {
  if (!done_) Fail("the model's stream ended before message_stop", false, out);
}

// ---------------------------------------------------------------------------------------------
// OpenAI Chat Completions

void OpenAiStream::Fail(std::string message, bool retryable, std::vector<ModelEvent>& out) {
  CloseText(out);
  CloseReasoning(out);
  ModelEvent e = ModelEvent::Of(ModelEvent::Type::kError);
  e.error = std::move(message);
  e.retryable = retryable;
  out.push_back(std::move(e));
  done_ = true;
}

void OpenAiStream::CloseText(std::vector<ModelEvent>& out) {
  if (!text_open_) return;
  if (!pending_high_.empty()) {
    // A high half that never got its low half: the replacement character, as the vector asks.
    ModelEvent d = ModelEvent::Of(ModelEvent::Type::kTextDelta, "txt-0");
    d.delta = "\xEF\xBF\xBD";
    out.push_back(std::move(d));
    pending_high_.clear();
  }
  out.push_back(ModelEvent::Of(ModelEvent::Type::kTextEnd, "txt-0"));
  text_open_ = false;
}

void OpenAiStream::CloseReasoning(std::vector<ModelEvent>& out) {
  if (!reasoning_open_) return;
  out.push_back(ModelEvent::Of(ModelEvent::Type::kReasoningEnd, "reasoning-0"));
  reasoning_open_ = false;
}

absl::Status OpenAiStream::OnEvent(const SseEvent& event, std::vector<ModelEvent>& out) {
  if (done_) return absl::OkStatus();
  if (event.data == "[DONE]") {
    OnDone(out);
    return absl::OkStatus();
  }
  absl::StatusOr<Json> parsed =
      event.data.find("\\u") == std::string::npos
          ? ParseJson(event.data, kMaxDataDepth)
          : ParseJson(MendSurrogates(event.data, pending_high_), kMaxDataDepth);
  if (!parsed.ok()) {
    Fail(absl::StrCat("the model's stream sent a chunk that is not JSON baton takes: ",
                      parsed.status().message()),
         false, out);
    return absl::InvalidArgumentError(absl::StrCat("openai stream: ", parsed.status().message()));
  }
  OnChunk(*parsed, out);
  return absl::OkStatus();
}

void OpenAiStream::OnDone(std::vector<ModelEvent>& out) {
  if (finish_reason_.empty()) {
    Fail("the model's stream ended without a finish reason", false, out);
    return;
  }
  CloseText(out);
  CloseReasoning(out);
  FinishCalls(out);
  ModelEvent finish = ModelEvent::Of(ModelEvent::Type::kFinish);
  finish.finish_reason = OpenAiFinishReason(finish_reason_);
  finish.usage = usage_;
  out.push_back(std::move(finish));
  done_ = true;
}

void OpenAiStream::FinishCalls(std::vector<ModelEvent>& out) {
  // Calls are final only now, in index order; a call whose id never came gets one.
  for (auto& [index, call] : calls_) {
    // A server that never sends an id: one made from the response id stays unique per step.
    if (call.id.empty()) {
      call.id = response_id_.empty() ? absl::StrCat("call_", index)
                                     : absl::StrCat("call_", response_id_, "_", index);
    }
    if (!call.started) {
      ModelEvent start = ModelEvent::Of(ModelEvent::Type::kToolInputStart, call.id);
      start.tool_name = call.name;
      out.push_back(std::move(start));
      call.started = true;
    }
    if (call.sent < call.arguments.size()) {
      ModelEvent d = ModelEvent::Of(ModelEvent::Type::kToolInputDelta, call.id);
      d.delta = call.arguments.substr(call.sent);
      out.push_back(std::move(d));
    }
    ModelEvent c = ModelEvent::Of(ModelEvent::Type::kToolCall, call.id);
    c.tool_name = call.name;
    c.input = call.arguments;
    out.push_back(std::move(c));
  }
}

void OpenAiStream::OnChunk(const Json& chunk, std::vector<ModelEvent>& out) {
  if (response_id_.empty()) response_id_ = StringField(chunk, "id");
  if (const Json* error = FindField(chunk, "error"); error != nullptr && !error->is_null()) {
    std::string message = StringField(*error, "message");
    std::string type = StringField(*error, "type");
    Fail(message.empty() ? "the model's stream reported an error" : message,
         type == "server_error" || type == "rate_limit_exceeded", out);
    return;
  }
  if (const Json* usage = FindField(chunk, "usage"); usage != nullptr && usage->is_object()) {
    usage_.input_tokens = Count(*usage, "prompt_tokens");
    usage_.output_tokens = Count(*usage, "completion_tokens");
  }
  const Json* choices = FindField(chunk, "choices");
  if (choices == nullptr || !choices->is_array() || choices->empty()) return;
  const Json& choice = (*choices)[0];
  if (const Json* delta = FindField(choice, "delta"); delta != nullptr && delta->is_object()) {
    OnDelta(*delta, out);
  }
  if (std::string reason = StringField(choice, "finish_reason"); !reason.empty()) {
    finish_reason_ = reason;
  }
}

void OpenAiStream::OnDelta(const Json& delta, std::vector<ModelEvent>& out) {
  std::string reasoning = StringField(delta, "reasoning_content");
  if (reasoning.empty()) reasoning = StringField(delta, "reasoning");
  if (!reasoning.empty()) {
    if (!reasoning_open_) {
      out.push_back(ModelEvent::Of(ModelEvent::Type::kReasoningStart, "reasoning-0"));
      reasoning_open_ = true;
    }
    ModelEvent d = ModelEvent::Of(ModelEvent::Type::kReasoningDelta, "reasoning-0");
    d.delta = std::move(reasoning);
    out.push_back(std::move(d));
  }
  std::string content = StringField(delta, "content");
  if (!content.empty()) {
    CloseReasoning(out);
    if (!text_open_) {
      out.push_back(ModelEvent::Of(ModelEvent::Type::kTextStart, "txt-0"));
      text_open_ = true;
    }
    ModelEvent d = ModelEvent::Of(ModelEvent::Type::kTextDelta, "txt-0");
    d.delta = std::move(content);
    out.push_back(std::move(d));
  }
  const Json* tool_calls = FindField(delta, "tool_calls");
  if (tool_calls != nullptr && tool_calls->is_array()) OnToolCallDeltas(*tool_calls, out);
}

void OpenAiStream::OnToolCallDeltas(const Json& tool_calls, std::vector<ModelEvent>& out) {
  CloseReasoning(out);
  for (const Json& tc : tool_calls) {
    Call& call = calls_[IntField(tc, "index", 0)];
    if (std::string id = StringField(tc, "id"); !id.empty() && call.id.empty()) call.id = id;
    if (const Json* fn = FindField(tc, "function")) {
      if (std::string name = StringField(*fn, "name"); !name.empty()) call.name = name;
      call.arguments += StringField(*fn, "arguments");
    }
    // Buffer until both id and name are known, then start and send what was held.
    if (!call.started && !call.id.empty() && !call.name.empty()) {
      ModelEvent start = ModelEvent::Of(ModelEvent::Type::kToolInputStart, call.id);
      start.tool_name = call.name;
      out.push_back(std::move(start));
      call.started = true;
    }
    if (call.started && call.sent < call.arguments.size()) {
      ModelEvent d = ModelEvent::Of(ModelEvent::Type::kToolInputDelta, call.id);
      d.delta = call.arguments.substr(call.sent);
      call.sent = call.arguments.size();
      out.push_back(std::move(d));
    }
  }
}

void OpenAiStream::Finish(std::vector<ModelEvent>& out) {
  if (!done_) {
    Fail(finish_reason_.empty() ? "the model's stream ended without a finish reason"
                                : "the model's stream ended without [DONE]",
         false, out);
  }
}

}  // namespace baton
