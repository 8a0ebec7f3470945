// File: runtime/transcript/accumulator.h
//
// Accumulator: a run's transcript in two lanes kept in step (reference/chat-wire-and-hooks.md
// §5): the UI lane (UI messages, persisted and shown) and the model lane (model messages, sent to
// the model). The model lane is kept per UI message, so replacing one message (an approval
// continuation, a head start's step 2) re-converts only that message, and as one list shared
// with the model calls made from it (ModelLane, ProviderLane): a turn converts and copies what
// it added, not the chat's history.
#ifndef BATON_RUNTIME_TRANSCRIPT_ACCUMULATOR_H_
#define BATON_RUNTIME_TRANSCRIPT_ACCUMULATOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "hooks/json.h"
#include "hooks/message_list.h"

namespace baton {

// Thread-safety: none; owned by one run.
class Accumulator {
 public:
  enum class AddResult {
    kAppended,   // a new message, added to both lanes
    kMerged,     // an assistant message merged onto the one with its id (or its tool call ids)
    kDuplicate,  // a user message whose id is already in the lane; nothing changed
  };

  // Adds an incoming message, already cleaned (CleanupAbortedParts). An assistant message whose
  // id is unknown but whose tool call ids belong to a known assistant message takes that id.
  // Merging only advances tool parts (state and output/errorText/approval, never text, reasoning
  // or input), and never moves a part out of a terminal state.
  AddResult Add(Json incoming);

  // regenerate-message: drops messages from the end until the last one is a user message.
  void PopToLastUser();
  // Drops the last message (there must be one).
  void PopBack();

  // Head start: appends the warm server's partial under `message_id`, the model messages
  // verbatim (approval rows included) and a UI message converted from them. Returns false and
  // changes nothing when `message_id` is already in the UI lane (never spliced twice).
  bool Splice(const Json& partial, const std::string& message_id);

  // Stores a turn's response: replaces the message with the same id in place, else appends.
  void PutResponse(Json response);

  // Replaces the UI lane (hydrate, SetMessages, snapshot restore) and re-derives the model lane.
  void Replace(std::vector<Json> ui_messages);

  const std::vector<Json>& ui() const { return ui_; }
  // The model lane as one Json array (a copy: for hooks, which take Json).
  Json ModelMessages() const;
  // The model lane, approval rows included, and as a provider takes it (ForProvider): lists that
  // share the lane, so making one copies only what changed since the last. A list is released on
  // the run's executor (the lane is changed in place when no list refers to it any more).
  MessageList ModelLane() const;
  MessageList ProviderLane() const;
  bool Contains(const std::string& id) const { return Find(id) >= 0; }
  // The index of the last UI message with this id, or -1.
  int Find(const std::string& id) const;

  // The first UI message changed, added or removed since MarkSaved() (ui().size() when none):
  // a snapshot need only rewrite the messages from there on.
  size_t dirty_from() const { return dirty_from_; }
  void MarkSaved() { dirty_from_ = ui_.size(); }
  // Marks the message with this id changed, as what a snapshot says of it changed.
  void Touch(const std::string& id);

 private:
  // The lanes as flat lists, brought up to date from the per-message segments on demand.
  struct Flat {
    std::shared_ptr<std::vector<Json>> messages = std::make_shared<std::vector<Json>>();
    std::vector<size_t> ends;  // ends[i]: messages.size() once segment i is in
    // The provider's request bytes of `messages` (the provider lane's only), handed out with it.
    std::shared_ptr<MessageMemo> memo;
  };

  void Set(size_t index, Json message);
  void Push(Json message);
  void Remember(const Json& message);
  void Changed(size_t index);
  void Refresh(Flat& flat, size_t& fresh, bool for_provider) const;

  std::vector<Json> ui_;
  std::vector<Json> model_;  // model_[i]: the model messages of ui_[i]
  struct Where {
    int first, last;  // the indexes of the first and the last message with an id
  };
  absl::flat_hash_map<std::string, Where> index_;  // message id -> where its messages are
  absl::flat_hash_map<std::string, std::string> tool_call_owner_;  // toolCallId -> message id
  mutable Flat model_flat_, provider_flat_;
  mutable size_t model_fresh_ = 0, provider_fresh_ = 0;  // segments below are in the flat list
  size_t dirty_from_ = 0;
};

}  // namespace baton

#endif  // BATON_RUNTIME_TRANSCRIPT_ACCUMULATOR_H_
