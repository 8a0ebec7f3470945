// File: tools/gateway/feed.h
//
// ChatFeed: one upstream Sessions.Read per chat, shared by every HTTP reader of that chat in this
// gateway (a browser tab's answer, a resumed stream, a REST follower), so a hundred tabs on one
// chat cost the orchestrator one stream. The feed keeps the chat's recent `.out` records in
// memory (from the start of the turn in flight, or further back while a reader needs them), hands
// each reader every record after its cursor in order, and reads again from where it was when the
// upstream stream breaks (an orchestrator restart), so readers see no gap and no repeat.
//
// FeedHub owns the feeds: a feed starts with its first reader and ends a while after its last
// one leaves.
//
// Thread-safety: everything on the gateway's executor.
#ifndef BATON_TOOLS_GATEWAY_FEED_H_
#define BATON_TOOLS_GATEWAY_FEED_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "asio/steady_timer.hpp"
#include "hooks/json.h"
#include "tools/gateway/sessions_client.h"

namespace baton::gateway {

// A `.out` record as the gateway handles it.
struct FeedRecord {
  int64_t seq = 0;
  bool control = false;
  std::string subtype;  // a control record's
  std::vector<std::pair<std::string, std::string>> headers;
  std::string chunk_json;  // a chunk, as stored
  std::string type;        // a chunk's "type"
  std::string message_id;  // a `start` chunk's messageId
  std::string part_id;     // a text or reasoning part's id, on its start and end chunks

  std::string Header(std::string_view name) const;
  static FeedRecord From(const baton::v1::OutRecord& record);
};

// The records a feed keeps, contiguous and in seq order, with their bytes and turn ends counted
// as they come and go: trimming costs what it removes, not what is kept.
class KeptRecords {
 public:
  void Push(FeedRecord record);
  void PopFront();
  void Clear();
  bool empty() const { return records_.empty(); }
  size_t size() const { return records_.size(); }
  const FeedRecord& front() const { return records_.front(); }
  const FeedRecord& back() const { return records_.back(); }
  std::deque<FeedRecord>::const_iterator begin() const { return records_.begin(); }
  std::deque<FeedRecord>::const_iterator end() const { return records_.end(); }
  size_t bytes() const { return bytes_; }
  // The turn-complete records kept, oldest first (their seqs).
  const std::deque<int64_t>& turn_ends() const { return turn_ends_; }

 private:
  static size_t Cost(const FeedRecord& r) { return r.chunk_json.size() + 64; }
  std::deque<FeedRecord> records_;
  size_t bytes_ = 0;
  std::deque<int64_t> turn_ends_;
};

class ChatFeed {
 public:
  class Reader {
   public:
    virtual ~Reader() = default;
    virtual void OnRecord(const FeedRecord& record) = 0;
    // The feed cannot go on for this reader (the chat does not exist, the gateway may not read
    // it, the gateway stops).
    virtual void OnFeedError(const absl::Status& status) = 0;
  };

  ChatFeed(SessionsClient& sessions, std::string chat_id);
  ~ChatFeed();

  // `reader` gets every record after `after_seq`, in order: those kept at once, then the rest as
  // they come. `token` is the reader's own (it was authorized with it); the feed reads upstream
  // with the gateway's own token.
  void Attach(Reader* reader, int64_t after_seq, const std::string& token);
  void Detach(Reader* reader);

  const std::string& chat_id() const { return chat_id_; }
  bool idle() const { return readers_.empty(); }
  int64_t end_seq() const { return end_seq_; }
  // The seq after which the answer in flight begins (its turn's first record), or -1 when the
  // feed does not know (it started mid-turn) or no answer is in flight.
  int64_t open_turn_after() const { return open_turn_after_; }
  size_t kept() const { return kept_.size(); }

 private:
  struct Catchup;
  void StartUpstream(int64_t after_seq);
  void OnUpstream(baton::v1::OutRecord record);
  void OnUpstreamEnd(absl::Status status);
  void Deliver(const FeedRecord& record);
  void Trim();

  SessionsClient& sessions_;
  std::string chat_id_;
  std::map<Reader*, int64_t> readers_;  // reader -> the last seq it was given
  KeptRecords kept_;                    // contiguous, ending at end_seq_
  int64_t end_seq_ = -1;                // last seq seen; -1 before the upstream starts
  int64_t open_turn_after_ = -1;
  std::shared_ptr<SessionsClient::ReadStream> upstream_;
  std::unique_ptr<asio::steady_timer> retry_;
  bool retry_pending_ = false;  // retry_ waits to read again
  int failures_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class FeedHub {
 public:
  explicit FeedHub(SessionsClient& sessions) : sessions_(sessions) {}
  ChatFeed& Feed(const std::string& chat_id);
  // Ends feeds with no readers (called now and then).
  void Sweep();
  size_t feeds() const { return feeds_.size(); }

 private:
  SessionsClient& sessions_;
  std::map<std::string, std::unique_ptr<ChatFeed>> feeds_;
};

}  // namespace baton::gateway

#endif  // BATON_TOOLS_GATEWAY_FEED_H_
