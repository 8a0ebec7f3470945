#include "runtime/transcript/accumulator.h"

#include "hooks/messages.h"
#include "runtime/transcript/convert.h"

namespace baton {
namespace {

// Overlays the client-advanced tool states of `incoming` onto `existing`.
void MergeToolStates(Json& existing, const Json& incoming) {
  const Json* in_parts = FindField(incoming, "parts");
  if (in_parts == nullptr || !in_parts->is_array() || !existing.contains("parts")) return;
  for (const Json& in : *in_parts) {
    if (!IsToolPart(in)) continue;
    std::string state = StringField(in, "state");
    if (!IsClientAdvanceableToolState(state)) continue;
    std::string call_id = StringField(in, "toolCallId");
    for (Json& part : existing["parts"]) {
      if (!IsToolPart(part) || StringField(part, "toolCallId") != call_id) continue;
      std::string current = StringField(part, "state");
      if (IsTerminalToolState(current) || current == state) break;
      part["state"] = state;
      for (const char* field : {"output", "errorText", "approval"}) {
        if (in.contains(field)) part[field] = in[field];
      }
      break;
    }
  }
}

}  // namespace

int Accumulator::Find(const std::string& id) const {
  for (int i = static_cast<int>(ui_.size()) - 1; i >= 0; --i) {
    if (MessageId(ui_[i]) == id) return i;
  }
  return -1;
}

void Accumulator::Remember(const Json& message) {
  if (MessageRole(message) != "assistant") return;
  const Json* parts = FindField(message, "parts");
  if (parts == nullptr || !parts->is_array()) return;
  for (const Json& part : *parts) {
    if (IsToolPart(part)) tool_call_owner_[StringField(part, "toolCallId")] = MessageId(message);
  }
}

void Accumulator::Set(size_t index, Json message) {
  Remember(message);
  model_[index] = UiToModelMessages(StripOpenAiItemId(message));
  ui_[index] = std::move(message);
}

Accumulator::AddResult Accumulator::Add(Json incoming) {
  std::string id = MessageId(incoming);
  int index = Find(id);
  if (index < 0 && MessageRole(incoming) == "assistant") {
    const Json* parts = FindField(incoming, "parts");
    for (const Json& part : parts != nullptr && parts->is_array() ? *parts : Json::array()) {
      if (!IsToolPart(part)) continue;
      auto owner = tool_call_owner_.find(StringField(part, "toolCallId"));
      if (owner != tool_call_owner_.end()) {
        index = Find(owner->second);
        break;
      }
    }
  }
  if (index >= 0) {
    if (MessageRole(incoming) != "assistant") return AddResult::kDuplicate;
    Json merged = ui_[index];
    MergeToolStates(merged, incoming);
    Set(index, std::move(merged));
    return AddResult::kMerged;
  }
  ui_.push_back(Json());
  model_.push_back(Json::array());
  Set(ui_.size() - 1, std::move(incoming));
  return AddResult::kAppended;
}

void Accumulator::PopToLastUser() {
  while (!ui_.empty() && MessageRole(ui_.back()) != "user") {
    ui_.pop_back();
    model_.pop_back();
  }
}

bool Accumulator::Splice(const Json& partial, const std::string& message_id) {
  if (Contains(message_id)) return false;
  Json ui_message = PartialToUiMessage(partial, message_id);
  Remember(ui_message);
  ui_.push_back(std::move(ui_message));
  model_.push_back(partial);
  return true;
}

void Accumulator::PutResponse(Json response) {
  int index = Find(MessageId(response));
  if (index >= 0) {
    Set(index, std::move(response));
    return;
  }
  ui_.push_back(Json());
  model_.push_back(Json::array());
  Set(ui_.size() - 1, std::move(response));
}

void Accumulator::Replace(std::vector<Json> ui_messages) {
  ui_.clear();
  model_.clear();
  tool_call_owner_.clear();
  for (Json& m : ui_messages) {
    ui_.push_back(Json());
    model_.push_back(Json::array());
    Set(ui_.size() - 1, std::move(m));
  }
}

Json Accumulator::ModelMessages() const {
  Json out = Json::array();
  for (const Json& segment : model_) {
    for (const Json& m : segment) out.push_back(m);
  }
  return out;
}

}  // namespace baton
