#include "runtime/transcript/accumulator.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>

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

// Whether StripOpenAiItemId would change what a model message is made of: a part's provider
// metadata holds OpenAI's entry. Most messages hold none and are converted without a copy.
bool HoldsOpenAiMetadata(const Json& message) {
  const Json* parts = FindField(message, "parts");
  if (parts == nullptr || !parts->is_array()) return false;
  for (const Json& part : *parts) {
    for (const char* field : {"providerMetadata", "callProviderMetadata"}) {
      const Json* pm = FindField(part, field);
      if (pm != nullptr && pm->is_object() && pm->contains("openai")) return true;
    }
  }
  return false;
}

}  // namespace

int Accumulator::Find(const std::string& id) const {
  auto it = index_.find(id);
  return it == index_.end() ? -1 : it->second.last;
}

void Accumulator::Changed(size_t index) {
  model_fresh_ = std::min(model_fresh_, index);
  provider_fresh_ = std::min(provider_fresh_, index);
  dirty_from_ = std::min(dirty_from_, index);
}

void Accumulator::Touch(const std::string& id) {
  // Every message with the id changes with it: from the first.
  auto it = index_.find(id);
  if (it != index_.end())
    dirty_from_ = std::min(dirty_from_, static_cast<size_t>(it->second.first));
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
  model_[index] = HoldsOpenAiMetadata(message) ? UiToModelMessages(StripOpenAiItemId(message))
                                               : UiToModelMessages(message);
  ui_[index] = std::move(message);
  // A message keeps its id when replaced (it is found by it), so the index only gains one.
  const int i = static_cast<int>(index);
  auto [it, added] = index_.try_emplace(MessageId(ui_[index]), Where{i, i});
  if (!added) it->second = Where{std::min(it->second.first, i), std::max(it->second.last, i)};
  Changed(index);
}

void Accumulator::Push(Json message) {
  ui_.push_back(Json());
  model_.push_back(Json::array());
  Set(ui_.size() - 1, std::move(message));
}

void Accumulator::PopBack() {
  std::string id = MessageId(ui_.back());
  ui_.pop_back();
  model_.pop_back();
  Changed(ui_.size());
  auto it = index_.find(id);
  if (it == index_.end()) return;
  Where& where = it->second;
  if (where.first >= static_cast<int>(ui_.size())) {
    index_.erase(it);
    return;
  }
  // An id held twice (only a client can send that): its last message left.
  for (int i = static_cast<int>(ui_.size()) - 1; i >= where.first; --i) {
    if (MessageId(ui_[i]) == id) {
      where.last = i;
      break;
    }
  }
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
  Push(std::move(incoming));
  return AddResult::kAppended;
}

void Accumulator::PopToLastUser() {
  while (!ui_.empty() && MessageRole(ui_.back()) != "user") PopBack();
}

bool Accumulator::Splice(const Json& partial, const std::string& message_id) {
  if (Contains(message_id)) return false;
  Json ui_message = PartialToUiMessage(partial, message_id);
  Remember(ui_message);
  ui_.push_back(std::move(ui_message));
  model_.push_back(partial);
  const int i = static_cast<int>(ui_.size() - 1);
  index_[message_id] = Where{i, i};  // not Contains: the only message with this id
  Changed(ui_.size() - 1);
  return true;
}

void Accumulator::PutResponse(Json response) {
  int index = Find(MessageId(response));
  if (index >= 0) {
    Set(index, std::move(response));
    return;
  }
  Push(std::move(response));
}

void Accumulator::Replace(std::vector<Json> ui_messages) {
  ui_.clear();
  model_.clear();
  index_.clear();
  tool_call_owner_.clear();
  Changed(0);
  for (Json& m : ui_messages) Push(std::move(m));
}

void Accumulator::Refresh(Flat& flat, size_t& fresh, bool for_provider) const {
  if (fresh == model_.size() && flat.ends.size() == fresh) return;
  size_t keep = fresh == 0 ? 0 : flat.ends[fresh - 1];
  if (flat.messages.use_count() > 1 || flat.memo.use_count() > 1) {
    // A list made before still refers to it: that one stays as it was, this one is new, with the
    // pieces of the messages it keeps.
    flat.messages =
        std::make_shared<std::vector<Json>>(flat.messages->begin(), flat.messages->begin() + keep);
    if (flat.memo != nullptr) {
      auto memo = std::make_shared<MessageMemo>();
      std::lock_guard<std::mutex> lock(flat.memo->mu);
      memo->owner = flat.memo->owner;
      size_t kept = std::min(keep, flat.memo->pieces.size());
      memo->pieces.assign(flat.memo->pieces.begin(), flat.memo->pieces.begin() + kept);
      flat.memo = std::move(memo);
    }
  } else {
    flat.messages->resize(keep);
    if (flat.memo != nullptr) {
      std::lock_guard<std::mutex> lock(flat.memo->mu);
      if (flat.memo->pieces.size() > keep) flat.memo->pieces.resize(keep);
    }
  }
  flat.ends.resize(fresh);
  for (size_t i = fresh; i < model_.size(); ++i) {
    for (const Json& m : model_[i]) {
      if (!for_provider) {
        flat.messages->push_back(m);
      } else if (std::optional<Json> p = ForProvider(m)) {
        flat.messages->push_back(*std::move(p));
      }
    }
    flat.ends.push_back(flat.messages->size());
  }
  fresh = model_.size();
}

MessageList Accumulator::ModelLane() const {
  Refresh(model_flat_, model_fresh_, false);
  return MessageList(model_flat_.messages, model_flat_.messages->size());
}

MessageList Accumulator::ProviderLane() const {
  if (provider_flat_.memo == nullptr) provider_flat_.memo = std::make_shared<MessageMemo>();
  Refresh(provider_flat_, provider_fresh_, true);
  return MessageList(provider_flat_.messages, provider_flat_.messages->size(), provider_flat_.memo);
}

Json Accumulator::ModelMessages() const { return ModelLane().ToJson(); }

}  // namespace baton
