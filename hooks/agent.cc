#include "hooks/agent.h"

namespace baton {

void ChatControl::Write(Json chunk) {
  absl::MutexLock lock(&mu_);
  if (sealed_) return;
  requests_.chunks.push_back(std::move(chunk));
}

void ChatControl::SetMessages(std::vector<Json> ui_messages) {
  absl::MutexLock lock(&mu_);
  if (sealed_) return;
  requests_.messages = std::move(ui_messages);
}

void ChatControl::EndRun() {
  absl::MutexLock lock(&mu_);
  if (sealed_) return;
  requests_.end_run = true;
}

void ChatControl::Close(std::string reason) {
  absl::MutexLock lock(&mu_);
  if (sealed_) return;
  if (reason.size() > 256) reason.resize(256);
  requests_.close_reason = std::move(reason);
}

void ChatControl::RequestUpgrade() {
  absl::MutexLock lock(&mu_);
  if (sealed_) return;
  requests_.upgrade = true;
}

void ChatControl::Finish() {
  absl::MutexLock lock(&mu_);
  finished_ = true;
}

ChatControl::Requests ChatControl::Take() {
  absl::MutexLock lock(&mu_);
  sealed_ = true;
  if (!finished_) return Requests();
  Requests out = std::move(requests_);
  requests_ = Requests();
  return out;
}

const Tool* Agent::FindTool(std::string_view name) const {
  for (const Tool& tool : tools) {
    if (tool.name == name) return &tool;
  }
  return nullptr;
}

Usage& Usage::operator+=(const Usage& other) {
  if (other.input_tokens) input_tokens = input_tokens.value_or(0) + *other.input_tokens;
  if (other.output_tokens) output_tokens = output_tokens.value_or(0) + *other.output_tokens;
  return *this;
}

Json Usage::ToJson() const {
  Json j = Json::object();
  if (input_tokens) j["inputTokens"] = *input_tokens;
  if (output_tokens) j["outputTokens"] = *output_tokens;
  return j;
}

}  // namespace baton
