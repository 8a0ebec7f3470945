// File: runtime/run/inbox.h
//
// Inbox: a run's view of the session's `.in` log (reference/chat-wire-and-hooks.md §2.2). Records
// arrive in seq order and are routed by kind:
//   message        queued until the run takes it (never dropped)
//   stop           handed to the stop handler if one is set (a turn is in flight), else dropped
//   handover(-skip) kept while the run waits for a handover, else dropped
// It also keeps the two cursors stamped on every turn-complete: the resume floor (the highest
// seq seen, held below the earliest message still queued) and applied-through (the highest seq
// seen).
#ifndef BATON_RUNTIME_RUN_INBOX_H_
#define BATON_RUNTIME_RUN_INBOX_H_

#include <deque>
#include <functional>
#include <optional>
#include <stop_token>

#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "hooks/records.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/waiter.h"

namespace baton {

// Thread-safety: owned by the run's executor.
class Inbox {
 public:
  Inbox(asio::any_io_executor executor, Clock& clock) : waiter_(std::move(executor), clock) {}

  // Routes `record`. Records at or below applied_through() were seen before and are dropped.
  void Deliver(InRecord record);

  // Records up to `seq` were answered by an earlier run: messages at or below it are dropped,
  // and so are stops and handovers at or below `consumed` (never re-applied after a resume).
  void StartAfter(int64_t seq, int64_t consumed);

  void set_stop_handler(std::function<void(const InRecord&)> handler) {
    stop_handler_ = std::move(handler);
  }
  void set_handover_open(bool open) {
    handover_open_ = open;
    if (!open) handover_.reset();
  }

  // The next queued message, waiting until `deadline` (nullopt) or `cancel` (nullopt).
  asio::awaitable<std::optional<InRecord>> NextMessage(absl::Time deadline, std::stop_token cancel);
  // The handover or handover-skip record, waiting likewise.
  asio::awaitable<std::optional<InRecord>> NextHandover(absl::Time deadline,
                                                        std::stop_token cancel);
  std::optional<InRecord> TakeMessage();
  // Takes the queued user messages at the front of the queue (submit-message with a user
  // message), oldest first; Requeue() puts such a batch back in front, unchanged.
  std::vector<InRecord> TakeUserMessages();
  void Requeue(std::vector<InRecord> records);
  // The queued message records, oldest first (not taken).
  const std::deque<InRecord>& queued() const { return messages_; }
  // Removes a queued record: it is answered (by a recovered partial).
  void Drop(int64_t seq);
  bool has_message() const { return !messages_.empty(); }
  // Whether a queued message record carries a UI message with this id.
  bool HasQueuedMessage(const std::string& message_id) const;

  int64_t resume_floor() const {
    return messages_.empty() ? applied_through_ : messages_.front().seq - 1;
  }
  int64_t applied_through() const { return applied_through_; }

 private:
  Waiter waiter_;
  std::deque<InRecord> messages_;
  std::optional<InRecord> handover_;
  // Open until the run says otherwise, so a handover delivered before the run started is kept.
  bool handover_open_ = true;
  std::function<void(const InRecord&)> stop_handler_;
  int64_t applied_through_ = 0;
  int64_t consumed_through_ = 0;  // stops and handovers at or below were applied before
};

}  // namespace baton

#endif  // BATON_RUNTIME_RUN_INBOX_H_
