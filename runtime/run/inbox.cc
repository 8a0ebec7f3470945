#include "runtime/run/inbox.h"

namespace baton {

void Inbox::StartAfter(int64_t seq, int64_t consumed) {
  // A resumed run is handed the records after `seq`; the stops among them at or below
  // `consumed` were applied before and are dropped by the `consumed_through_` check in Deliver().
  applied_through_ = seq;
  consumed_through_ = consumed;
}

void Inbox::Deliver(InRecord record) {
  if (record.seq <= applied_through_) return;
  applied_through_ = record.seq;
  switch (record.kind) {
    case InKind::kMessage:
      messages_.push_back(std::move(record));
      waiter_.Notify();
      break;
    case InKind::kStop:
      if (record.seq > consumed_through_ && stop_handler_) stop_handler_(record);
      break;
    case InKind::kHandover:
    case InKind::kHandoverSkip:
      if (handover_open_ && record.seq > consumed_through_ && !handover_.has_value()) {
        handover_ = std::move(record);
        waiter_.Notify();
      }
      break;
  }
}

std::optional<InRecord> Inbox::TakeMessage() {
  if (messages_.empty()) return std::nullopt;
  InRecord r = std::move(messages_.front());
  messages_.pop_front();
  return r;
}

bool Inbox::HasQueuedMessage(const std::string& message_id) const {
  for (const InRecord& r : messages_) {
    if (StringField(r.message(), "id") == message_id) return true;
  }
  return false;
}

std::vector<InRecord> Inbox::TakeUserMessages() {
  std::vector<InRecord> out;
  while (!messages_.empty()) {
    const InRecord& r = messages_.front();
    std::string trigger = r.trigger();
    if ((trigger != "submit-message" && !trigger.empty()) ||
        StringField(r.message(), "role") != "user") {
      break;
    }
    out.push_back(std::move(messages_.front()));
    messages_.pop_front();
  }
  return out;
}

void Inbox::Drop(int64_t seq) {
  std::erase_if(messages_, [seq](const InRecord& r) { return r.seq == seq; });
}

void Inbox::Requeue(std::vector<InRecord> records) {
  for (auto it = records.rbegin(); it != records.rend(); ++it) messages_.push_front(std::move(*it));
}

asio::awaitable<std::optional<InRecord>> Inbox::NextMessage(absl::Time deadline,
                                                            std::stop_token cancel) {
  for (;;) {
    if (!messages_.empty()) co_return TakeMessage();
    Waiter::Result woke = co_await waiter_.Wait(deadline, cancel);
    if (woke != Waiter::Result::kNotified && messages_.empty()) co_return std::nullopt;
  }
}

asio::awaitable<std::optional<InRecord>> Inbox::NextHandover(absl::Time deadline,
                                                             std::stop_token cancel) {
  for (;;) {
    if (handover_.has_value()) {
      std::optional<InRecord> r = std::move(handover_);
      handover_.reset();
      co_return r;
    }
    Waiter::Result woke = co_await waiter_.Wait(deadline, cancel);
    if (woke != Waiter::Result::kNotified && !handover_.has_value()) co_return std::nullopt;
  }
}

}  // namespace baton
