// File: runtime/transcript/accumulator.h
//
// Accumulator: a run's transcript in two lanes kept in step (reference/chat-wire-and-hooks.md
// §5): the UI lane (UI messages, persisted and shown) and the model lane (model messages, sent to
// the model). The model lane is kept per UI message, so replacing one message (an approval
// continuation, a head start's step 2) re-converts only that message.
#ifndef BATON_RUNTIME_TRANSCRIPT_ACCUMULATOR_H_
#define BATON_RUNTIME_TRANSCRIPT_ACCUMULATOR_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "hooks/json.h"

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

  // Head start: appends the warm server's partial under `message_id`, the model messages
  // verbatim (approval rows included) and a UI message converted from them. Returns false and
  // changes nothing when `message_id` is already in the UI lane (never spliced twice).
  bool Splice(const Json& partial, const std::string& message_id);

  // Stores a turn's response: replaces the message with the same id in place, else appends.
  void PutResponse(Json response);

  // Replaces the UI lane (hydrate, SetMessages, snapshot restore) and re-derives the model lane.
  void Replace(std::vector<Json> ui_messages);

  const std::vector<Json>& ui() const { return ui_; }
  Json ModelMessages() const;
  bool Contains(const std::string& id) const { return Find(id) >= 0; }
  int Find(const std::string& id) const;

 private:
  void Set(size_t index, Json message);
  void Remember(const Json& message);

  std::vector<Json> ui_;
  std::vector<Json> model_;  // model_[i]: the model messages of ui_[i]
  absl::flat_hash_map<std::string, std::string> tool_call_owner_;  // toolCallId -> message id
};

}  // namespace baton

#endif  // BATON_RUNTIME_TRANSCRIPT_ACCUMULATOR_H_
