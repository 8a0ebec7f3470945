#include "tools/gateway/feed.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "hooks/records.h"
#include "runtime/base/log.h"

namespace baton::gateway {

namespace v1 = ::baton::v1;

namespace {

// Records kept per chat beyond the turn in flight: a bound on memory, not a rule readers see
// (a reader further back is served by reading again from the orchestrator).
constexpr size_t kMaxKeptBytes = 16 * 1024 * 1024;

}  // namespace

std::string FeedRecord::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return {};
}

FeedRecord FeedRecord::From(const v1::OutRecord& record) {
  FeedRecord r;
  r.seq = record.seq();
  if (record.has_control()) {
    r.control = true;
    r.subtype = record.control().subtype();
    for (const v1::Header& h : record.control().headers())
      r.headers.emplace_back(h.name(), h.value());
    return r;
  }
  r.chunk_json = record.chunk_json();
  absl::StatusOr<Json> chunk = ParseJson(r.chunk_json);
  if (chunk.ok()) {
    r.type = StringField(*chunk, "type");
    if (r.type == "start") r.message_id = StringField(*chunk, "messageId");
    if (r.type == "text-start" || r.type == "text-end" || r.type == "reasoning-start" ||
        r.type == "reasoning-end") {
      r.part_id = StringField(*chunk, "id");
    }
  }
  return r;
}

ChatFeed::ChatFeed(SessionsClient& sessions, std::string chat_id)
    : sessions_(sessions), chat_id_(std::move(chat_id)) {}

ChatFeed::~ChatFeed() {
  *alive_ = false;
  if (upstream_) upstream_->Cancel();
  if (retry_) retry_->cancel();
}

void ChatFeed::Attach(Reader* reader, int64_t after_seq, const std::string& token) {
  // The feed reads with the gateway's own token: every reader was authorized by a call of its
  // own (Get or Append) with its token, and one reader's chat token expiring must not end the
  // others' streams.
  static_cast<void>(token);
  after_seq = std::max<int64_t>(0, after_seq);
  int64_t kept_from = kept_.empty() ? end_seq_ : kept_.front().seq - 1;
  if (end_seq_ < 0 || after_seq < kept_from) {
    // The first reader, or one further back than what is kept: read again from its seq. The
    // others are not given anything twice (each has its cursor).
    readers_[reader] = after_seq;
    StartUpstream(std::min(after_seq, end_seq_ < 0 ? after_seq : kept_from));
    return;
  }
  readers_[reader] = after_seq;
  if (!upstream_ && !(retry_ && retry_pending_)) {
    // The upstream ended (the chat closed, or an error while nobody read): read again from
    // where the feed was, keeping what it holds.
    KeptRecords kept = std::move(kept_);
    int64_t from = end_seq_;
    int64_t open = open_turn_after_;
    StartUpstream(from);
    kept_ = std::move(kept);
    open_turn_after_ = open;
  }
  for (const FeedRecord& record : kept_) {
    if (readers_.count(reader) == 0) return;  // it left while being caught up
    if (record.seq <= readers_[reader]) continue;
    readers_[reader] = record.seq;
    reader->OnRecord(record);
  }
}

void ChatFeed::Detach(Reader* reader) { readers_.erase(reader); }

void ChatFeed::StartUpstream(int64_t after_seq) {
  if (upstream_) upstream_->Cancel();
  kept_.Clear();
  end_seq_ = after_seq;
  open_turn_after_ = -1;
  v1::ReadRequest request;
  request.set_chat_id(chat_id_);
  request.set_after_seq(after_seq);
  request.set_follow(true);
  std::weak_ptr<bool> alive = alive_;
  std::shared_ptr<SessionsClient::ReadStream>* slot = &upstream_;
  auto stream = std::make_shared<std::shared_ptr<SessionsClient::ReadStream>>();
  upstream_ = sessions_.Read(
      std::move(request), /*token=*/"",
      [this, alive, stream](v1::OutRecord record) {
        if (alive.expired() || *stream != upstream_) return;  // a stream given up
        OnUpstream(std::move(record));
      },
      [this, alive, stream](absl::Status status) {
        if (alive.expired() || *stream != upstream_) return;
        OnUpstreamEnd(std::move(status));
      });
  *stream = upstream_;
  static_cast<void>(slot);
}

void ChatFeed::OnUpstream(v1::OutRecord record) {
  if (record.seq() <= end_seq_) return;  // a repeat across a re-read
  failures_ = 0;
  FeedRecord r = FeedRecord::From(record);
  end_seq_ = r.seq;
  if (r.control && r.subtype == kTurnComplete) {
    open_turn_after_ = -1;
  } else if (!r.control && open_turn_after_ < 0) {
    open_turn_after_ = r.seq - 1;
  }
  kept_.Push(std::move(r));
  Deliver(kept_.back());
  Trim();
}

void ChatFeed::Deliver(const FeedRecord& record) {
  std::vector<Reader*> readers;
  readers.reserve(readers_.size());
  for (const auto& [reader, cursor] : readers_) {
    if (record.seq > cursor) readers.push_back(reader);
  }
  for (Reader* reader : readers) {
    auto it = readers_.find(reader);
    if (it == readers_.end() || record.seq <= it->second) continue;  // left meanwhile
    it->second = record.seq;
    reader->OnRecord(record);
  }
}

void ChatFeed::Trim() {
  // What a reader may still ask for: the turn in flight (a resumed stream replays it from its
  // start) and the turn before it (a retried request that lost its answer gets it again).
  while (kept_.turn_ends().size() >= 3) {
    const int64_t through = kept_.turn_ends().front();
    while (!kept_.empty() && kept_.front().seq <= through) kept_.PopFront();
  }
  while (kept_.bytes() > kMaxKeptBytes && kept_.size() > 1) kept_.PopFront();
}

void KeptRecords::Push(FeedRecord record) {
  bytes_ += Cost(record);
  if (record.control && record.subtype == kTurnComplete) turn_ends_.push_back(record.seq);
  records_.push_back(std::move(record));
}

void KeptRecords::PopFront() {
  bytes_ -= Cost(records_.front());
  if (!turn_ends_.empty() && turn_ends_.front() == records_.front().seq) turn_ends_.pop_front();
  records_.pop_front();
}

void KeptRecords::Clear() {
  records_.clear();
  bytes_ = 0;
  turn_ends_.clear();
}

void ChatFeed::OnUpstreamEnd(absl::Status status) {
  upstream_.reset();
  absl::StatusCode code = status.code();
  bool transient = code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kInternal ||
                   code == absl::StatusCode::kUnknown ||
                   code == absl::StatusCode::kDeadlineExceeded ||
                   code == absl::StatusCode::kResourceExhausted ||
                   code == absl::StatusCode::kAborted || code == absl::StatusCode::kCancelled;
  if (status.ok()) {
    // The chat was closed: every reader has all there is.
    status = absl::OkStatus();
  } else if (transient && !readers_.empty()) {
    // The orchestrator restarted or the connection broke: read again from where the feed was,
    // with a backoff, for as long as readers wait.
    ++failures_;
    auto delay = std::chrono::milliseconds(std::min(5000, 50 << std::min(failures_, 7)));
    retry_ = std::make_unique<asio::steady_timer>(sessions_.executor(), delay);
    retry_pending_ = true;
    std::weak_ptr<bool> alive = alive_;
    retry_->async_wait([this, alive](const asio::error_code& ec) {
      if (ec || alive.expired()) return;
      retry_pending_ = false;
      if (readers_.empty()) return;  // the next reader to come starts it again (Attach)
      int64_t from = end_seq_;
      KeptRecords kept = std::move(kept_);
      int64_t open = open_turn_after_;
      StartUpstream(from);
      kept_ = std::move(kept);
      open_turn_after_ = open;
    });
    return;
  }
  if (!status.ok()) {
    LogJson("info", "a chat's upstream read ended",
            {{"chat_id", chat_id_}, {"error", status.ToString()}});
  }
  std::vector<Reader*> readers;
  for (const auto& [reader, cursor] : readers_) readers.push_back(reader);
  readers_.clear();
  for (Reader* reader : readers) reader->OnFeedError(status);
}

ChatFeed& FeedHub::Feed(const std::string& chat_id) {
  std::unique_ptr<ChatFeed>& feed = feeds_[chat_id];
  if (!feed) feed = std::make_unique<ChatFeed>(sessions_, chat_id);
  return *feed;
}

void FeedHub::Sweep() {
  for (auto it = feeds_.begin(); it != feeds_.end();) {
    it = it->second->idle() ? feeds_.erase(it) : std::next(it);
  }
}

}  // namespace baton::gateway
