#include "hooks/message_list.h"

#include <algorithm>
#include <utility>

namespace baton {

MessageList::MessageList(const Json& messages) {
  if (!messages.is_array()) return;
  own_.reserve(messages.size());
  for (const Json& m : messages) own_.push_back(m);
}

MessageList::MessageList(Json&& messages) {
  if (!messages.is_array()) return;
  own_.reserve(messages.size());
  for (Json& m : messages) own_.push_back(std::move(m));
}

MessageList::MessageList(std::shared_ptr<const Messages> shared, size_t count,
                         std::shared_ptr<MessageMemo> memo)
    : shared_(std::move(shared)),
      memo_(std::move(memo)),
      count_(shared_ == nullptr ? 0 : std::min(count, shared_->size())) {}

Json& MessageList::MutableBack() {
  if (own_.empty()) {
    // The last message is the prefix's: this copy takes it as its own, the prefix stays as is.
    own_.push_back((*shared_)[count_ - 1]);
    --count_;
  }
  return own_.back();
}

Json MessageList::ToJson() const {
  Json out = Json::array();
  for (const Json& m : *this) out.push_back(m);
  return out;
}

void to_json(Json& j, const MessageList& list) { j = list.ToJson(); }

}  // namespace baton
