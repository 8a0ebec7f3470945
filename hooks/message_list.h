// File: hooks/message_list.h
//
// MessageList: the model messages of a model call (AI SDK model messages, reference/llm-wire.md
// §2.2), copied in constant time whatever the chat's length. A list is a prefix shared with the
// run's transcript (the chat's history, never changed while a list refers to it) and the
// messages added to this copy (a turn's steps). It reads like a Json array: size(), operator[],
// back(), iteration; ToJson() or `Json j = list` makes one.
//
// The shared prefix may come with a MessageMemo: what a model provider made of those messages
// for an earlier call (their request bytes), kept so the next call makes only the new ones.
#ifndef BATON_HOOKS_MESSAGE_LIST_H_
#define BATON_HOOKS_MESSAGE_LIST_H_

#include <cstddef>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "hooks/json.h"

namespace baton {

// A provider's request bytes for each message of a shared prefix, made as calls need them. The
// prefix's owner drops the pieces of messages it replaces; a reader takes `mu` while it reads or
// fills them.
struct MessageMemo {
  std::mutex mu;
  std::string owner;                // whose pieces these are (a provider's name); another clears
  std::vector<std::string> pieces;  // pieces[i]: message i's, "" when not made yet
};

class MessageList {
 public:
  using Messages = std::vector<Json>;

  MessageList() = default;
  // The messages of a Json array, copied once; anything but an array makes an empty list.
  MessageList(const Json& messages);  // NOLINT(google-explicit-constructor): reads as an array
  MessageList(Json&& messages);       // NOLINT(google-explicit-constructor)
  // The first `count` messages of `shared`, which no one may change while a list refers to it,
  // and the memo kept with them, if any.
  MessageList(std::shared_ptr<const Messages> shared, size_t count,
              std::shared_ptr<MessageMemo> memo = nullptr);
  MessageList(const MessageList&) = default;
  MessageList& operator=(const MessageList&) = default;
  // A list moved from is empty.
  MessageList(MessageList&& other) noexcept { *this = std::move(other); }
  MessageList& operator=(MessageList&& other) noexcept {
    shared_ = std::move(other.shared_);
    memo_ = std::move(other.memo_);
    count_ = std::exchange(other.count_, 0);
    own_ = std::move(other.own_);
    other.own_.clear();
    return *this;
  }

  size_t size() const { return count_ + own_.size(); }
  bool empty() const { return size() == 0; }
  const Json& operator[](size_t i) const { return i < count_ ? (*shared_)[i] : own_[i - count_]; }
  const Json& back() const { return (*this)[size() - 1]; }

  void push_back(Json message) { own_.push_back(std::move(message)); }
  // The last message (the list must not be empty), to change in this copy only: taken out of
  // the shared prefix first.
  Json& MutableBack();

  // How many of the first messages are the shared prefix's (the rest are this copy's own).
  size_t shared_count() const { return count_; }
  const std::shared_ptr<const Messages>& shared() const { return shared_; }
  // The memo of the shared prefix's messages, or null.
  MessageMemo* memo() const { return memo_.get(); }

  Json ToJson() const;

  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Json;
    using difference_type = std::ptrdiff_t;
    using pointer = const Json*;
    using reference = const Json&;

    const_iterator() = default;
    const_iterator(const MessageList* list, size_t i) : list_(list), i_(i) {}
    reference operator*() const { return (*list_)[i_]; }
    pointer operator->() const { return &(*list_)[i_]; }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator before = *this;
      ++i_;
      return before;
    }
    bool operator==(const const_iterator& other) const { return i_ == other.i_; }
    bool operator!=(const const_iterator& other) const { return i_ != other.i_; }

   private:
    const MessageList* list_ = nullptr;
    size_t i_ = 0;
  };
  const_iterator begin() const { return const_iterator(this, 0); }
  const_iterator end() const { return const_iterator(this, size()); }

 private:
  std::shared_ptr<const Messages> shared_;
  std::shared_ptr<MessageMemo> memo_;  // of *shared_'s messages
  size_t count_ = 0;                   // of *shared_
  Messages own_;
};

// `Json j = list;`: the messages as a Json array (a copy of each).
void to_json(Json& j, const MessageList& list);

}  // namespace baton

#endif  // BATON_HOOKS_MESSAGE_LIST_H_
