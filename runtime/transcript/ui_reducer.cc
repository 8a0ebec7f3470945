#include "runtime/transcript/ui_reducer.h"

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "hooks/messages.h"

namespace baton {
namespace {

// Merges `patch` into `target`: objects key by key, recursively; anything else replaces.
void DeepMerge(Json& target, const Json& patch) {
  if (!target.is_object() || !patch.is_object()) {
    target = patch;
    return;
  }
  for (const auto& [key, value] : patch.items()) {
    if (target.contains(key)) {
      DeepMerge(target[key], value);
    } else {
      target[key] = value;
    }
  }
}

// The value of a JSON text cut short (a tool's input while it streams): open strings, arrays
// and objects are closed, a dangling key, comma or colon is dropped. Null when nothing sensible
// can be made of it. Like the AI SDK client's parsePartialJson, for display only.
// Parses without exceptions: called on every tool input delta, most of them incomplete.
std::optional<Json> TryParse(const std::string& text) {
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

Json ParsePartialJson(const std::string& text) {
  // Input nested deeper than a tool input may be is shown as nothing (and refused as the call's
  // input when the step ends); closing brackets never makes it shallower.
  if (JsonTextTooDeep(text, kMaxToolInputDepth) != std::string_view::npos) return Json();
  if (std::optional<Json> whole = TryParse(text)) return *whole;
  std::string work = text;
  for (int attempt = 0; attempt < 4 && !work.empty(); ++attempt) {
    std::string closers;
    bool in_string = false, escaped = false;
    for (char c : work) {
      if (in_string) {
        if (escaped) {
          escaped = false;
        } else if (c == '\\') {
          escaped = true;
        } else if (c == '"') {
          in_string = false;
        }
        continue;
      }
      if (c == '"') in_string = true;
      if (c == '{') closers.push_back('}');
      if (c == '[') closers.push_back(']');
      if ((c == '}' || c == ']') && !closers.empty()) closers.pop_back();
    }
    std::string candidate = work;
    if (escaped) candidate.pop_back();  // a lone trailing backslash starts no escape yet
    if (in_string) candidate += '"';
    candidate.append(closers.rbegin(), closers.rend());
    if (std::optional<Json> value = TryParse(candidate)) return *value;
    // Drop the last incomplete member ("key", "key": or a partial value) and try again. The
    // cut may land inside a string; the result is for display, and the attempts are bounded.
    size_t cut = work.find_last_of(",{[:");
    if (cut == std::string::npos) break;
    if (work[cut] == ',') {
      work.resize(cut);
    } else if (work[cut] == '{' || work[cut] == '[') {
      if (cut + 1 == work.size()) break;  // nothing after the opener left to drop
      work.resize(cut + 1);
    } else {
      size_t key_start = work.find_last_of(",{", cut);
      if (key_start == std::string::npos) break;
      work.resize(work[key_start] == ',' ? key_start : key_start + 1);
    }
  }
  return Json();
}

}  // namespace

UiReducer::UiReducer(Json message) : message_(std::move(message)) {
  if (!message_.is_object()) {
    message_ = Json{{"id", ""}, {"role", "assistant"}, {"parts", Json::array()}};
  }
  if (!message_.contains("parts") || !message_["parts"].is_array()) {
    message_["parts"] = Json::array();
  }
}

int UiReducer::ToolPartIndex(const std::string& tool_call_id) const {
  const Json& parts = message_["parts"];
  for (int i = static_cast<int>(parts.size()) - 1; i >= 0; --i) {
    if (IsToolPart(parts[i]) && StringField(parts[i], "toolCallId") == tool_call_id) return i;
  }
  return -1;
}

absl::StatusOr<Json*> UiReducer::OpenPart(bool text, std::string_view id, std::string_view suffix) {
  auto& open = text ? open_text_ : open_reasoning_;
  auto it = open.find(id);
  if (it == open.end()) {
    return absl::InvalidArgumentError(absl::StrCat(text ? "text" : "reasoning", std::string(suffix),
                                                   " for part \"", std::string(id),
                                                   "\" that is not open"));
  }
  return &Parts()[it->second];
}

void UiReducer::StartStep() { Parts().push_back(Json{{"type", "step-start"}}); }

void UiReducer::FinishStep() {
  open_text_.clear();
  open_reasoning_.clear();
}

void UiReducer::OpenBlock(bool text, std::string_view id, const Json* provider_metadata) {
  Json part(Json::value_t::object);
  part["type"] = text ? "text" : "reasoning";
  part["text"] = "";
  part["state"] = "streaming";
  if (provider_metadata != nullptr) part["providerMetadata"] = *provider_metadata;
  Parts().push_back(std::move(part));
  (text ? open_text_ : open_reasoning_)[std::string(id)] = Parts().size() - 1;
}

absl::Status UiReducer::AppendDelta(bool text, std::string_view id, std::string_view delta,
                                    const Json* provider_metadata) {
  absl::StatusOr<Json*> part = OpenPart(text, id, "-delta");
  if (!part.ok()) return part.status();
  // Appended in place: a long answer costs its length, not its length squared.
  Json& so_far = (**part)["text"];
  if (!so_far.is_string()) so_far = "";
  so_far.get_ref<std::string&>().append(delta);
  if (provider_metadata != nullptr) (**part)["providerMetadata"] = *provider_metadata;
  return absl::OkStatus();
}

absl::Status UiReducer::CloseBlock(bool text, std::string_view id, const Json* provider_metadata) {
  absl::StatusOr<Json*> part = OpenPart(text, id, "-end");
  if (!part.ok()) return part.status();
  (**part)["state"] = "done";
  if (provider_metadata != nullptr) (**part)["providerMetadata"] = *provider_metadata;
  auto& open = text ? open_text_ : open_reasoning_;
  open.erase(open.find(id));
  return absl::OkStatus();
}

absl::Status UiReducer::Apply(const Json& chunk) {
  const std::string type = StringField(chunk, "type");
  const Json* pm = FindField(chunk, "providerMetadata");
  if (type == "start") {
    std::string id = StringField(chunk, "messageId");
    if (!id.empty()) message_["id"] = id;
    if (const Json* md = FindField(chunk, "messageMetadata")) DeepMerge(message_["metadata"], *md);
  } else if (type == "start-step") {
    StartStep();
  } else if (type == "finish-step") {
    FinishStep();
  } else if (type == "text-start" || type == "reasoning-start") {
    OpenBlock(type == "text-start", StringField(chunk, "id"), pm);
  } else if (type == "text-delta" || type == "reasoning-delta") {
    const Json* delta = FindField(chunk, "delta");
    std::string_view text;
    if (delta != nullptr && delta->is_string()) text = delta->get_ref<const std::string&>();
    return AppendDelta(type == "text-delta", StringField(chunk, "id"), text, pm);
  } else if (type == "text-end" || type == "reasoning-end") {
    return CloseBlock(type == "text-end", StringField(chunk, "id"), pm);
  } else if (type == "tool-input-start" || type == "tool-input-available" ||
             type == "tool-input-error") {
    std::string call_id = StringField(chunk, "toolCallId");
    int index = ToolPartIndex(call_id);
    if (index < 0) {
      bool dynamic = BoolField(chunk, "dynamic");
      Json part = {{"type", dynamic ? std::string("dynamic-tool")
                                    : absl::StrCat("tool-", StringField(chunk, "toolName"))},
                   {"toolCallId", call_id}};
      if (dynamic) part["toolName"] = StringField(chunk, "toolName");
      Parts().push_back(std::move(part));
      index = static_cast<int>(Parts().size()) - 1;
    }
    Json& part = Parts()[index];
    if (type == "tool-input-start") {
      part["state"] = "input-streaming";
      partial_tool_input_[call_id] = "";
    } else if (type == "tool-input-available") {
      part["state"] = "input-available";
      if (const Json* input = FindField(chunk, "input")) part["input"] = *input;
      partial_tool_input_.erase(call_id);
    } else {
      part["state"] = "output-error";
      if (const Json* input = FindField(chunk, "input")) part["rawInput"] = *input;
      part["errorText"] = StringField(chunk, "errorText");
    }
    if (pm != nullptr) part["callProviderMetadata"] = *pm;
  } else if (type == "tool-input-delta") {
    std::string call_id = StringField(chunk, "toolCallId");
    auto it = partial_tool_input_.find(call_id);
    if (it == partial_tool_input_.end() || ToolPartIndex(call_id) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tool-input-delta for call \"", call_id, "\" that never started"));
    }
    it->second += StringField(chunk, "inputTextDelta");
    Json input = ParsePartialJson(it->second);
    if (!input.is_null()) Parts()[ToolPartIndex(call_id)]["input"] = std::move(input);
  } else if (type == "tool-output-available" || type == "tool-output-error" ||
             type == "tool-approval-request" || type == "tool-output-denied") {
    int index = ToolPartIndex(StringField(chunk, "toolCallId"));
    if (index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(type, " for unknown tool call \"", StringField(chunk, "toolCallId"), "\""));
    }
    Json& part = Parts()[index];
    if (type == "tool-output-available") {
      part["state"] = "output-available";
      part["output"] = chunk.value("output", Json());
      if (BoolField(chunk, "preliminary")) {
        part["preliminary"] = true;
      } else {
        part.erase("preliminary");
      }
      if (pm != nullptr) part["resultProviderMetadata"] = *pm;
    } else if (type == "tool-output-error") {
      part["state"] = "output-error";
      part["errorText"] = StringField(chunk, "errorText");
    } else if (type == "tool-approval-request") {
      part["state"] = "approval-requested";
      part["approval"] = Json{{"id", StringField(chunk, "approvalId")}};
    } else {
      part["state"] = "output-denied";
    }
  } else if (absl::StartsWith(type, "data-")) {
    if (BoolField(chunk, "transient")) return absl::OkStatus();
    Json part = {{"type", type}};
    if (const Json* id = FindField(chunk, "id")) part["id"] = *id;
    part["data"] = chunk.value("data", Json());
    if (part.contains("id")) {
      for (Json& existing : Parts()) {
        if (StringField(existing, "type") == type && existing.value("id", Json()) == part["id"]) {
          existing["data"] = part["data"];
          return absl::OkStatus();
        }
      }
    }
    Parts().push_back(std::move(part));
  } else if (type == "finish") {
    finish_reason_ = StringField(chunk, "finishReason");
    if (const Json* md = FindField(chunk, "messageMetadata")) DeepMerge(message_["metadata"], *md);
  } else if (type == "message-metadata") {
    if (const Json* md = FindField(chunk, "messageMetadata")) DeepMerge(message_["metadata"], *md);
  }
  // error, abort, source-*, file and unknown types do not change the parts here.
  return absl::OkStatus();
}

std::vector<Json> UiMessageChunks(const Json& message, std::string_view id_prefix) {
  std::vector<Json> out;
  const Json* parts = FindField(message, "parts");
  if (parts == nullptr || !parts->is_array()) return out;
  int next = 0;
  for (const Json& part : *parts) {
    if (!part.is_object()) continue;
    const std::string type = StringField(part, "type");
    if (type == "text" || type == "reasoning") {
      std::string id = absl::StrCat(std::string(id_prefix), next++);
      const Json* pm = FindField(part, "providerMetadata");
      Json start = {{"type", absl::StrCat(type, "-start")}, {"id", id}};
      if (pm != nullptr) start["providerMetadata"] = *pm;
      out.push_back(std::move(start));
      std::string text = StringField(part, "text");
      if (!text.empty()) {
        out.push_back({{"type", absl::StrCat(type, "-delta")}, {"id", id}, {"delta", text}});
      }
      Json end = {{"type", absl::StrCat(type, "-end")}, {"id", id}};
      if (pm != nullptr) end["providerMetadata"] = *pm;
      out.push_back(std::move(end));
    } else if (IsToolPart(part)) {
      const std::string call_id = StringField(part, "toolCallId");
      const bool dynamic = type == "dynamic-tool";
      Json input = {{"type", "tool-input-available"},
                    {"toolCallId", call_id},
                    {"toolName", dynamic ? StringField(part, "toolName") : ToolPartName(part)},
                    {"input", part.value("input", Json::object())}};
      if (dynamic) input["dynamic"] = true;
      if (const Json* pm = FindField(part, "callProviderMetadata")) input["providerMetadata"] = *pm;
      out.push_back(std::move(input));
      const std::string state = StringField(part, "state");
      if (state == "output-available") {
        out.push_back({{"type", "tool-output-available"},
                       {"toolCallId", call_id},
                       {"output", part.value("output", Json())}});
      } else if (state == "output-error") {
        out.push_back({{"type", "tool-output-error"},
                       {"toolCallId", call_id},
                       {"errorText", StringField(part, "errorText")}});
      } else if (state == "approval-requested") {
        const Json* approval = FindField(part, "approval");
        out.push_back({{"type", "tool-approval-request"},
                       {"approvalId", approval != nullptr ? StringField(*approval, "id") : ""},
                       {"toolCallId", call_id}});
      } else if (state == "output-denied") {
        out.push_back({{"type", "tool-output-denied"}, {"toolCallId", call_id}});
      }
    } else if (absl::StartsWith(type, "data-")) {
      Json data = {{"type", type}};
      if (const Json* id = FindField(part, "id")) data["id"] = *id;
      data["data"] = part.value("data", Json());
      out.push_back(std::move(data));
    } else if (type == "source-url" || type == "source-document" || type == "file") {
      out.push_back(part);  // the chunk carries the part's own fields
    }
    // step-start parts are the caller's step framing; other types have no chunk.
  }
  return out;
}

}  // namespace baton
