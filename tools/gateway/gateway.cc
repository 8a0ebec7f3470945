#include "tools/gateway/gateway.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "asio/co_spawn.hpp"
#include "asio/detached.hpp"
#include "google/protobuf/util/json_util.h"
#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/base/log.h"
#include "runtime/client/head_start.h"
#include "runtime/model/providers.h"
#include "runtime/protocol/wire.h"

namespace baton::gateway {

namespace v1 = ::baton::v1;

namespace {

constexpr size_t kMaxChatIdBytes = 256;

HttpHeaders SseHeaders() {
  return {{"Content-Type", "text/event-stream"},
          {"Cache-Control", "no-cache"},
          {"X-Vercel-AI-UI-Message-Stream", "v1"},
          {"X-Accel-Buffering", "no"}};
}

// A stable 64-bit FNV-1a of `bytes`, as hex: the same on every gateway replica and restart.
std::string Fingerprint(std::string_view bytes) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return absl::StrFormat("%016x", h);
}

std::string NewMessageId() {
  absl::BitGen gen;
  return absl::StrFormat("msg_%016x", absl::Uniform<uint64_t>(gen));
}

std::string ProtoJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

Json ProtoToJson(const google::protobuf::Message& message) {
  absl::StatusOr<Json> json = ParseJson(ProtoJson(message));
  return json.ok() ? *std::move(json) : Json::object();
}

// A chat id from a path segment: decoded, 1 to 256 bytes.
absl::StatusOr<std::string> ChatIdOf(std::string_view segment) {
  std::string id = PercentDecode(segment);
  if (id.empty() || id.size() > kMaxChatIdBytes) {
    return absl::InvalidArgumentError("a chat id is 1 to 256 bytes");
  }
  return id;
}

std::string ContentType(std::string_view path) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".map", "application/json"},
      {".txt", "text/plain; charset=utf-8"}};
  for (const auto& [ext, type] : kTypes) {
    if (absl::EndsWith(absl::string_view(path.data(), path.size()), ext)) return type;
  }
  return "application/octet-stream";
}

}  // namespace

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kFailedPrecondition:
      return 412;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

absl::StatusOr<std::string> BearerToken(const HttpRequest& request) {
  int count = request.HeaderCount("authorization");
  if (count == 0) return std::string();
  if (count > 1) return absl::UnauthenticatedError("more than one Authorization header");
  std::string_view header = request.Header("authorization");
  absl::string_view value(header.data(), header.size());
  if (!absl::StartsWithIgnoreCase(value, "Bearer ") || value.size() <= 7) {
    return absl::UnauthenticatedError("the Authorization header is not \"Bearer <token>\"");
  }
  return std::string(absl::StripAsciiWhitespace(value.substr(7)));
}

// ---- an answer, streamed ----------------------------------------------------------------------

// An SSE response that follows a chat's `.out` and writes the AI SDK UI message stream of one
// answer: the records after `after_seq`, past the turn-completes of `skip_turns` earlier
// answers, up to the answer's own turn-complete. It guarantees the stream's shape whatever the
// run wrote: one `start` (with a message id) first, `finish` or `abort` last, then [DONE]; no
// baton control record reaches the client.
class Gateway::AnswerStream : public ChatFeed::Reader,
                              public std::enable_shared_from_this<AnswerStream> {
 public:
  AnswerStream(Gateway& gateway, std::shared_ptr<HttpConnection> connection, std::string chat_id,
               int skip_turns, absl::Time received)
      : gateway_(gateway),
        connection_(std::move(connection)),
        chat_id_(std::move(chat_id)),
        skip_turns_(skip_turns),
        received_(received),
        keep_alive_(gateway.executor_) {}

  ~AnswerStream() override { Leave(); }

  void Begin(int64_t after_seq, const std::string& token, HttpHeaders extra) {
    Open(std::move(extra), nullptr);
    // An answer behind the one in flight is read from that one's start, when the chat's feed has
    // seen it: the message may join it (steering), and this response then carries it whole.
    const ChatFeed& feed = gateway_.feeds_.Feed(chat_id_);
    if (in_seq_ > 0 && skip_turns_ > 0 && feed.end_seq() >= after_seq &&
        feed.open_turn_after() >= 0 && feed.open_turn_after() < after_seq) {
      after_seq = feed.open_turn_after();
    }
    Follow(after_seq, token);
  }

  // A resumed answer (GET .../stream): the AI SDK takes it as a replay of the whole message. An
  // answer that continues a message of an earlier turn (after an approval, or a client tool's
  // output) so also gets that message's earlier records, from the kKeepBack records before the
  // answer in flight (`after_seq`, the last turn-complete).
  void BeginResume(int64_t after_seq, const std::string& token, HttpHeaders extra) {
    Open(std::move(extra), nullptr);
    resume_after_ = after_seq;
    Follow(std::max<int64_t>(0, after_seq - kKeepBack), token);
  }

  // ---- a head start (Gateway::HeadStart): step 1 streamed here, then the run's step 2+ --------

  // Opens the response for step 1. `on_close` runs if the client goes away before the end.
  void BeginWarm(HttpHeaders extra, std::function<void()> on_close) {
    Open(std::move(extra), std::move(on_close));
  }
  bool open() const { return !done_; }

  // A chunk of step 1. Its `start` and `start-step` wait for the first part, so a step 1 that
  // makes nothing leaves the response untouched; its `finish`, `abort` and `error` are not the
  // answer's end (the run goes on, or answers the message itself).
  void Warm(const Json& chunk) {
    if (done_) return;
    std::string type = StringField(chunk, "type");
    if (type == "finish" || type == "abort" || type == "error") return;
    if (type == "start" || (type == "start-step" && !warm_visible_)) {
      warm_held_.push_back(chunk);
      return;
    }
    if (!warm_visible_) {
      warm_visible_ = true;
      for (const Json& held : warm_held_) Forward(RecordOf(held));
      warm_held_.clear();
    }
    Forward(RecordOf(chunk));
  }

  // Step 1 was handed over under `message_id`: the run writes it to `.out` again (for other
  // readers), then `handover-spliced`; this response goes on with what follows that.
  void Splice(const std::string& message_id, const std::string& token) {
    if (done_) return;
    if (!warm_visible_) {
      for (const Json& held : warm_held_) Forward(RecordOf(held));
      warm_held_.clear();
    }
    splice_id_ = message_id;
    Follow(0, token);
  }

  // Step 1 was skipped (it failed, or came too late): the run answers the message itself. A
  // response that showed none of step 1 carries that answer; one that did cannot take it back.
  void AfterSkip(const std::string& token) {
    if (done_) return;
    warm_held_.clear();
    if (warm_visible_) {
      Chunk(Json{{"type", "error"},
                 {"errorText",
                  "The head start was cut short and the answer is being given again: reload "
                  "to see it."}}
                .dump());
      Finish("error");
      return;
    }
    Follow(0, token);
  }

  void OnRecord(const FeedRecord& record) override {
    if (done_) return;
    if (resume_after_ >= 0) {
      if (record.seq <= resume_after_) {
        earlier_.push_back(record);
        return;
      }
      ReplayEarlierParts(record);
    }
    if (!splice_id_.empty()) {
      // Step 1 again, as the run wrote it for other readers: this response has it already.
      if (record.control && record.subtype == kHandoverSpliced &&
          record.Header("message-id") == splice_id_) {
        splice_id_.clear();
      } else if (record.control && record.subtype == kSessionClosed) {
        Finish("stop");
      }
      return;
    }
    if (record.control) {
      if (record.subtype == kTurnComplete) {
        if (skip_turns_ > 0) {
          // A message that joined a turn ahead of it (steering) was answered by that turn: this
          // response carries that turn's answer, and ends with it.
          int64_t through = 0;
          if (in_seq_ > 0 && absl::SimpleAtoi(record.Header("session-in-event-id"), &through) &&
              through >= in_seq_) {
            std::vector<FeedRecord> turn = std::move(skipped_);
            skipped_.clear();
            skip_turns_ = 0;
            for (const FeedRecord& r : turn) {
              if (!done_) Forward(r);
            }
            Finish("stop");
            return;
          }
          skipped_.clear();
          --skip_turns_;
          return;
        }
        Finish("stop");
        return;
      }
      if (record.subtype == kSessionClosed && skip_turns_ == 0) {
        Finish("stop");
        return;
      }
      if (record.subtype == kRetract && skip_turns_ == 0 && started_ &&
          record.Header("message-id") == message_id_) {
        // The answer being streamed was withdrawn (its run died); the run answers again, and
        // this stream cannot take parts back: it says so and ends. A reload shows the new
        // answer.
        Chunk(Json{{"type", "error"},
                   {"errorText",
                    "The answer was interrupted and is being given again: reload "
                    "to see it."}}
                  .dump());
        Finish("error");
      }
      return;
    }
    if (skip_turns_ > 0) {
      if (in_seq_ > 0 && skipped_.size() < static_cast<size_t>(kKeepBack)) {
        skipped_.push_back(record);
      }
      return;
    }
    Forward(record);
  }

  // The `.in` seq of the message this answer is for (0: the boot message), for a message that a
  // turn ahead of it takes in (steering).
  void set_in_seq(int64_t seq) { in_seq_ = seq; }

  void OnFeedError(const absl::Status& status) override {
    feed_ = nullptr;
    if (done_) return;
    if (!status.ok()) {
      Chunk(Json{{"type", "error"}, {"errorText", std::string(status.message())}}.dump());
    }
    Finish(status.ok() ? "stop" : "error");
  }

 private:
  void Open(HttpHeaders extra, std::function<void()> on_close) {
    HttpHeaders headers = SseHeaders();
    for (auto& h : extra) headers.push_back(std::move(h));
    connection_->StartStream(200, std::move(headers));
    gateway_.streams_open_.Add(1);
    counted_ = true;
    std::weak_ptr<AnswerStream> weak = weak_from_this();
    self_ = shared_from_this();  // alive while it follows the feed
    connection_->OnClose([weak, on_close = std::move(on_close)] {
      // The client went away: the turn goes on upstream; this reader stops.
      if (on_close) on_close();
      if (std::shared_ptr<AnswerStream> self = weak.lock()) self->Leave();
    });
    ArmKeepAlive();
  }

  void Follow(int64_t after_seq, const std::string& token) {
    if (done_) return;
    token_ = token;
    feed_ = &gateway_.feeds_.Feed(chat_id_);
    feed_->Attach(this, after_seq, token);
  }

  // While nothing of the answer came: a run that failed before it answered (its onBoot threw,
  // say) writes nothing on `.out`, and the chat waits for its next message. Asked at each
  // keep-alive, so the response ends instead of waiting for ever.
  asio::awaitable<void> CheckNotDropped() {
    std::shared_ptr<AnswerStream> self = shared_from_this();
    v1::GetRequest get;
    get.set_chat_id(chat_id_);
    absl::StatusOr<v1::Session> session = co_await gateway_.sessions_.Get(std::move(get), token_);
    if (done_ || started_ || !session.ok()) co_return;
    if (session->state() != v1::SESSION_STATE_FAILED) co_return;
    started_ = true;
    message_id_ = NewMessageId();
    Chunk(Json{{"type", "start"}, {"messageId", message_id_}}.dump());
    Chunk(Json{{"type", "error"},
               {"errorText", "The agent failed before it answered: send the message again."}}
              .dump());
    Finish("error");
  }

  // At the first record of the answer in flight: when it starts a message an earlier turn
  // started, that message's earlier parts go first (not its ends, nor control records).
  void ReplayEarlierParts(const FeedRecord& first) {
    std::vector<FeedRecord> earlier = std::move(earlier_);
    earlier_.clear();
    resume_after_ = -1;
    if (first.control || first.type != "start" || first.message_id.empty()) return;
    auto from = std::find_if(earlier.begin(), earlier.end(), [&](const FeedRecord& r) {
      return !r.control && r.type == "start" && r.message_id == first.message_id;
    });
    for (auto it = from; it != earlier.end() && !done_; ++it) {
      const std::string& type = it->type;
      if (it->control || type == "finish" || type == "abort" || type == "error") continue;
      Forward(*it);
    }
  }

  static FeedRecord RecordOf(const Json& chunk) {
    FeedRecord record;
    record.chunk_json = DumpJson(chunk);
    record.type = StringField(chunk, "type");
    if (record.type == "start") record.message_id = StringField(chunk, "messageId");
    return record;
  }

  void Forward(const FeedRecord& record) {
    if (record.type == "start") {
      if (started_) return;  // one start per answer
      started_ = true;
      message_id_ = record.message_id;
      if (message_id_.empty()) {
        // A start without an id: the client needs one to place the message.
        message_id_ = NewMessageId();
        Chunk(Json{{"type", "start"}, {"messageId", message_id_}}.dump());
        return;
      }
      Chunk(record.chunk_json);
      return;
    }
    if (!started_) {
      started_ = true;
      message_id_ = NewMessageId();
      Chunk(Json{{"type", "start"}, {"messageId", message_id_}}.dump());
    }
    if (record.type == "finish") {
      // The gateway adds its own phase to the run's timings.
      absl::StatusOr<Json> finish = ParseJson(record.chunk_json);
      if (finish.ok()) {
        Json& timings = (*finish)["messageMetadata"]["baton"]["timings"];
        if (!timings.is_object()) timings = Json::object();
        timings["firstChunkOut"] = first_chunk_ms_;
        ended_ = true;
        Chunk(DumpJson(*finish));
        return;
      }
    }
    if (record.type == "abort") {
      // A stopped answer: its open parts are closed first, so the page shows them done rather
      // than still streaming (the AI SDK leaves parts open at a bare abort). Nothing of the
      // answer comes after it, and a turn-complete may never come (a cancelled run writes none,
      // nor does a recovery that keeps a dead run's partial answer for no message): the
      // response ends here.
      CloseOpenParts();
      ended_ = true;
      Chunk(record.chunk_json);
      Finish("stop");
      return;
    }
    if (record.type == "finish") ended_ = true;
    TrackParts(record);
    Chunk(record.chunk_json);
  }

  // The text and reasoning parts started and not ended yet (a finish-step forgets them all).
  void TrackParts(const FeedRecord& record) {
    const std::string& type = record.type;
    if (type == "start-step") in_step_ = true;
    if (type == "finish-step") {
      in_step_ = false;
      open_parts_.clear();
      return;
    }
    bool start = type == "text-start" || type == "reasoning-start";
    bool end = type == "text-end" || type == "reasoning-end";
    if (!start && !end) return;
    // The part's id was read once for every reader, when the feed took the record.
    std::string part = absl::StrCat(type.substr(0, type.find('-')), "-end");
    std::pair<std::string, std::string> key = {part, record.part_id};
    if (start) {
      open_parts_.push_back(std::move(key));
    } else {
      open_parts_.erase(std::remove(open_parts_.begin(), open_parts_.end(), key),
                        open_parts_.end());
    }
  }

  void CloseOpenParts() {
    for (const auto& [end_type, id] : open_parts_) {
      Chunk(Json{{"type", end_type}, {"id", id}}.dump());
    }
    open_parts_.clear();
  }

  void Chunk(std::string_view json) {
    if (done_) return;
    if (first_chunk_ms_ < 0) {
      first_chunk_ms_ = absl::ToInt64Milliseconds(absl::Now() - received_);
      gateway_.first_chunk_seconds_.Observe(absl::ToDoubleSeconds(absl::Now() - received_));
    }
    std::string event;
    event.reserve(json.size() + 8);
    event.append("data: ").append(json).append("\n\n");
    if (!connection_->Write(event)) Leave();
    ArmKeepAlive();
  }

  void Finish(const char* reason) {
    if (done_) return;
    if (!started_) {
      started_ = true;
      message_id_ = NewMessageId();
      Chunk(Json{{"type", "start"}, {"messageId", message_id_}}.dump());
    }
    if (!ended_) {
      ended_ = true;
      CloseOpenParts();
      if (in_step_) Chunk(R"({"type":"finish-step"})");
      Chunk(Json{{"type", "finish"}, {"finishReason", reason}}.dump());
    }
    connection_->Write("data: [DONE]\n\n");
    connection_->End();
    Leave();
  }

  void ArmKeepAlive() {
    keep_alive_.expires_after(absl::ToChronoNanoseconds(gateway_.options_.keep_alive));
    std::weak_ptr<AnswerStream> weak = weak_from_this();
    keep_alive_.async_wait([weak](const asio::error_code& ec) {
      std::shared_ptr<AnswerStream> self = weak.lock();
      if (ec || !self || self->done_) return;
      if (!self->connection_->Write(": keep-alive\n\n")) {
        self->Leave();
        return;
      }
      self->ArmKeepAlive();
      if (!self->started_ && self->feed_ != nullptr) {
        asio::co_spawn(self->gateway_.executor_, self->CheckNotDropped(), asio::detached);
      }
    });
  }

  // Stops following (at the end, or when the client left); the object goes once nothing holds
  // it.
  void Leave() {
    if (done_) return;
    done_ = true;
    keep_alive_.cancel();
    if (feed_ != nullptr) feed_->Detach(this);
    feed_ = nullptr;
    if (counted_) gateway_.streams_open_.Add(-1);
    counted_ = false;
    if (connection_->open() && connection_->streaming()) connection_->Close();
    std::shared_ptr<AnswerStream> self = std::move(self_);
    if (self) asio::post(gateway_.executor_, [self] {});  // released after this call returns
  }

  Gateway& gateway_;
  std::shared_ptr<HttpConnection> connection_;
  std::string chat_id_;
  int skip_turns_ = 0;
  absl::Time received_;
  asio::steady_timer keep_alive_;
  ChatFeed* feed_ = nullptr;
  std::shared_ptr<AnswerStream> self_;
  std::string message_id_;
  int64_t first_chunk_ms_ = -1;
  bool started_ = false;
  bool ended_ = false;
  bool in_step_ = false;
  std::vector<std::pair<std::string, std::string>> open_parts_;  // ("text-end", id), ...
  // A head start: step 1's framing held until its first part; whether a part was sent; the
  // message whose `handover-spliced` this response waits for on `.out`.
  std::vector<Json> warm_held_;
  bool warm_visible_ = false;
  std::string splice_id_;
  // A resumed answer: the records up to the answer in flight, kept until its first record.
  static constexpr int64_t kKeepBack = 4096;
  int64_t resume_after_ = -1;
  std::vector<FeedRecord> earlier_;
  // The message's `.in` seq (-1: unknown), and the records of the turn being skipped.
  int64_t in_seq_ = -1;
  std::vector<FeedRecord> skipped_;
  std::string token_;  // the reader's, for the checks it makes
  bool done_ = false;
  bool counted_ = false;
};

// ---- the gateway ------------------------------------------------------------------------------

Gateway::Gateway(asio::any_io_executor executor, SessionsClient& sessions, GatewayOptions options)
    : executor_(std::move(executor)),
      sessions_(sessions),
      options_(std::move(options)),
      feeds_(sessions),
      sweeper_(executor_),
      requests_(metrics_.AddCounter("baton_gateway_requests_total", "HTTP requests answered.")),
      errors_(metrics_.AddCounter("baton_gateway_errors_total",
                                  "HTTP requests answered with an error status.")),
      streams_open_(metrics_.AddGauge("baton_gateway_streams_open",
                                      "SSE answers open (AI SDK streams and REST followers).")),
      feeds_open_(metrics_.AddGauge("baton_gateway_chat_feeds",
                                    "Chats with an upstream Read shared by their readers.")),
      first_chunk_seconds_(metrics_.AddHistogram(
          "baton_gateway_first_chunk_seconds",
          "From a chat request received to the first chunk of its answer written.")),
      head_start_handover_(metrics_.AddCounter(
          "baton_gateway_head_starts_total{signal=\"handover\"}",
          "Head starts by the signal that ended step 1: handover (tool calls for the run), "
          "final (step 1 was the answer), skip (step 1 failed, was too late, or its client "
          "left).")),
      head_start_final_(
          metrics_.AddCounter("baton_gateway_head_starts_total{signal=\"final\"}", "")),
      head_start_skip_(
          metrics_.AddCounter("baton_gateway_head_starts_total{signal=\"skip\"}", "")) {
  if (options_.head_start.enabled) {
    pool_ = std::make_unique<HookPool>(1);
    http_ = std::make_unique<HttpClient>(executor_);
  }
  Sweep();
}

Gateway::~Gateway() { *alive_ = false; }

void Gateway::Sweep() {
  feeds_.Sweep();
  feeds_open_.Set(static_cast<int64_t>(feeds_.feeds()));
  absl::Time now = absl::Now();
  for (auto it = created_.begin(); it != created_.end();) {
    it = now - it->second.at > options_.retry_window ? created_.erase(it) : std::next(it);
  }
  sweeper_.expires_after(std::chrono::seconds(5));
  std::weak_ptr<bool> alive = alive_;
  sweeper_.async_wait([this, alive](const asio::error_code& ec) {
    if (!ec && !alive.expired() && *alive.lock()) Sweep();
  });
}

HttpHeaders Gateway::Cors(const HttpRequest& request) const {
  std::string_view origin = request.Header("origin");
  if (origin.empty() || options_.cors_origins.empty()) return {};
  bool allowed = false;
  for (const std::string& o : options_.cors_origins) allowed = allowed || o == "*" || o == origin;
  if (!allowed) return {};
  return {{"Access-Control-Allow-Origin", std::string(origin)},
          {"Vary", "Origin"},
          {"Access-Control-Expose-Headers",
           "x-baton-chat-id, x-baton-chat-token, x-baton-chat-token-expires"}};
}

void Gateway::Preflight(const std::shared_ptr<HttpConnection>& connection,
                        const HttpRequest& request) {
  HttpHeaders headers = Cors(request);
  if (headers.empty()) {
    Error(connection, request, absl::PermissionDeniedError("this origin is not allowed (CORS)"));
    return;
  }
  headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  headers.emplace_back("Access-Control-Allow-Headers",
                       "authorization, content-type, idempotency-key, last-event-id");
  headers.emplace_back("Access-Control-Max-Age", "600");
  connection->Respond(204, std::move(headers), "");
}

void Gateway::Error(const std::shared_ptr<HttpConnection>& connection, const HttpRequest& request,
                    const absl::Status& status) {
  errors_.Add(1);
  Json body = {{"error",
                {{"code", absl::StatusCodeToString(status.code())},
                 {"message", std::string(status.message())}}}};
  HttpHeaders headers = Cors(request);
  headers.emplace_back("Content-Type", "application/json");
  int http = HttpStatusOf(status.code());
  if (http == 499) http = 400;
  connection->Respond(http, std::move(headers), DumpJson(body));
}

void Gateway::Json200(const std::shared_ptr<HttpConnection>& connection, const HttpRequest& request,
                      int http_status, const Json& body, HttpHeaders extra) {
  HttpHeaders headers = Cors(request);
  headers.emplace_back("Content-Type", "application/json");
  for (auto& h : extra) headers.push_back(std::move(h));
  connection->Respond(http_status, std::move(headers), DumpJson(body));
}

void Gateway::Handle(std::shared_ptr<HttpConnection> connection, HttpRequest request) {
  requests_.Add(1);
  const std::string& method = request.method;
  std::vector<std::string> segments = absl::StrSplit(request.path, '/', absl::SkipEmpty());
  if (method == "OPTIONS") {
    Preflight(connection, request);
    return;
  }
  if (method == "GET" && (request.path == "/healthz" || request.path == "/readyz")) {
    connection->Respond(200, {{"Content-Type", "text/plain"}}, "ok\n");
    return;
  }
  if (method == "GET" && request.path == "/metrics") {
    connection->Respond(200, {{"Content-Type", "text/plain; version=0.0.4"}}, MetricsText());
    return;
  }
  if (std::optional<Route> route = ChatRoute(segments)) {
    HandleChat(std::move(connection), std::move(request), segments, *std::move(route));
    return;
  }
  if (segments.size() >= 2 && segments[0] == "v1" && segments[1] == "sessions") {
    asio::co_spawn(executor_, Rest(connection, std::move(request), std::move(segments)),
                   asio::detached);
    return;
  }
  if (method == "GET" || method == "HEAD") {
    Static(connection, request);
    return;
  }
  Error(connection, request,
        absl::NotFoundError(absl::StrCat("no route ", method, " ", request.path)));
}

std::optional<Gateway::Route> Gateway::ChatRoute(const std::vector<std::string>& segments) const {
  // The chat transport: {base}[/{chatId}/{stream|stop|preload}], or the same under
  // /api/agents/{agent}/chat, which names the agent.
  std::vector<std::string> base = absl::StrSplit(options_.base, '/', absl::SkipEmpty());
  auto starts_with = [&](const std::vector<std::string>& prefix) {
    if (segments.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i) {
      if (segments[i] != prefix[i]) return false;
    }
    return true;
  };
  Route route;
  if (!base.empty() && starts_with(base)) {
    route.at = base.size();
    return route;
  }
  if (segments.size() >= 4 && segments[0] == "api" && segments[1] == "agents" &&
      segments[3] == "chat") {
    route.agent = PercentDecode(segments[2]);
    route.at = 4;
    return route;
  }
  return std::nullopt;
}

void Gateway::HandleChat(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                         const std::vector<std::string>& segments, Route route) {
  const std::string& method = request.method;
  const size_t at = route.at;
  size_t rest = segments.size() - at;
  if (rest == 0 && method == "POST") {
    asio::co_spawn(executor_, ChatPost(connection, std::move(request), std::move(route.agent)),
                   asio::detached);
    return;
  }
  if (rest == 2) {
    absl::StatusOr<std::string> chat_id = ChatIdOf(segments[at]);
    if (!chat_id.ok()) {
      Error(connection, request, chat_id.status());
      return;
    }
    const std::string& action = segments[at + 1];
    if (action == "stream" && method == "GET") {
      asio::co_spawn(executor_, ChatResume(connection, std::move(request), *chat_id),
                     asio::detached);
      return;
    }
    if (action == "stop" && method == "POST") {
      asio::co_spawn(executor_, ChatStop(connection, std::move(request), *chat_id), asio::detached);
      return;
    }
    if (action == "preload" && method == "POST") {
      asio::co_spawn(executor_,
                     ChatPreload(connection, std::move(request), *chat_id, std::move(route.agent)),
                     asio::detached);
      return;
    }
  }
  Error(connection, request,
        absl::NotFoundError(absl::StrCat("no route ", method, " ", request.path)));
}

void Gateway::StreamAnswer(std::shared_ptr<HttpConnection> connection, const HttpRequest& request,
                           const std::string& chat_id, const std::string& token, int64_t after_seq,
                           int skip_turns, absl::Time received, HttpHeaders extra, int64_t in_seq) {
  HttpHeaders headers = Cors(request);
  headers.emplace_back("x-baton-chat-id", chat_id);
  for (auto& h : extra) headers.push_back(std::move(h));
  auto stream =
      std::make_shared<AnswerStream>(*this, std::move(connection), chat_id, skip_turns, received);
  stream->set_in_seq(in_seq);
  stream->Begin(after_seq, token, std::move(headers));
}

// ---- the AI SDK transport ---------------------------------------------------------------------

absl::StatusOr<std::string> Gateway::CallerToken(const HttpRequest& request) const {
  absl::StatusOr<std::string> token = BearerToken(request);
  if (!token.ok()) return token;
  // Without a token, a caller acts with the gateway's own only where --public_create makes the
  // gateway public (a demo, one user); otherwise the orchestrator must see who is asking.
  if (token->empty() && !options_.public_create) {
    return absl::UnauthenticatedError(
        "send a token as \"Authorization: Bearer <token>\" (a chat token or a service token)");
  }
  return token;
}

// A chat POST's body, checked (ParseChatPost): what the AI SDK transport sends.
struct ChatPostBody {
  Json body;            // the JSON object, its "messages" moved out to `messages`
  std::string chat_id;  // "id"
  std::string trigger;  // "submit-message" or "regenerate-message"
  Json messages;        // the client's messages, an array
  Json last;            // the last of them; null when there are none
  std::string agent;    // the route's, the body's or --agent's ("": none)
  Json metadata;        // null when none
};

namespace {

// The body of a chat POST, checked: its chat id, trigger and messages (a submit-message's own
// last), and the chat's agent: `agent` (the route's), else the body's, else `default_agent`.
absl::StatusOr<ChatPostBody> ParseChatPost(const std::string& text, std::string agent,
                                           const std::string& default_agent) {
  absl::StatusOr<Json> body = ParseJson(text);
  if (!body.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body is not JSON: ", body.status().message()));
  }
  if (!body->is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  ChatPostBody post;
  post.chat_id = StringField(*body, "id");
  if (post.chat_id.empty() || post.chat_id.size() > kMaxChatIdBytes) {
    return absl::InvalidArgumentError("\"id\" (the chat id) must be a string of 1 to 256 bytes");
  }
  post.trigger = StringField(*body, "trigger");
  if (post.trigger.empty()) post.trigger = "submit-message";
  if (post.trigger != "submit-message" && post.trigger != "regenerate-message") {
    return absl::InvalidArgumentError(
        absl::StrCat("\"trigger\" must be \"submit-message\" or \"regenerate-message\", not ",
                     Quoted(post.trigger)));
  }
  auto messages = body->find("messages");
  if (messages == body->end() || !messages->is_array()) {
    return absl::InvalidArgumentError("\"messages\" must be an array");
  }
  post.messages = std::move(*messages);
  post.last = post.messages.empty() ? Json() : post.messages.back();
  if (post.trigger == "submit-message" &&
      (!post.last.is_object() || MessageId(post.last).empty())) {
    return absl::InvalidArgumentError(
        "a submit-message needs its message as the last of \"messages\", with an id");
  }
  post.agent = std::move(agent);
  if (post.agent.empty()) post.agent = StringField(*body, "agent");
  if (post.agent.empty()) post.agent = default_agent;
  post.metadata = body->value("metadata", Json());
  post.body = *std::move(body);
  return post;
}

// The CreateSession of a chat's first POST: a head start's (`warm`: handover-prepare, with the
// messages step 1 answers) or a plain submit-message's.
v1::CreateSessionRequest FirstSession(const ChatPostBody& post, bool warm,
                                      const std::string& traceparent) {
  v1::CreateSessionRequest create;
  create.set_chat_id(post.chat_id);
  create.set_agent(post.agent);
  create.set_trigger(warm ? v1::TRIGGER_HANDOVER_PREPARE : v1::TRIGGER_SUBMIT_MESSAGE);
  Json payload = warm ? Json{{"headStartMessages", post.messages}} : Json{{"message", post.last}};
  if (!post.metadata.is_null()) payload["metadata"] = post.metadata;
  create.set_payload_json(DumpJson(payload));
  if (ValidTraceparent(traceparent)) create.set_traceparent(traceparent);
  return create;
}

// The `.in` record of a POST on an existing chat, as an Append.
v1::AppendRequest MessageAppend(const ChatPostBody& post) {
  Json record = {{"kind", "message"}};
  Json payload = {{"chatId", post.chat_id}, {"trigger", post.trigger}};
  if (post.trigger == "submit-message") payload["message"] = post.last;
  if (const Json* id = FindField(post.body, "messageId"); id != nullptr && id->is_string()) {
    payload["messageId"] = *id;
  }
  if (!post.metadata.is_null()) payload["metadata"] = post.metadata;
  record["payload"] = std::move(payload);
  v1::AppendRequest append;
  append.set_chat_id(post.chat_id);
  append.set_body_json(DumpJson(record));
  // A retried POST is the same record, never appended twice: a user message by its id; a
  // regenerate by the message it replaces (a second regenerate names the new answer); a
  // continuation (tool outputs, approvals on the last answer) by that answer and its content.
  if (post.trigger == "submit-message" && MessageRole(post.last) == "user") {
    append.set_client_record_id(absl::StrCat("ui:", MessageId(post.last)));
  } else if (post.trigger == "regenerate-message") {
    std::string replaced = StringField(post.body, "messageId");
    if (replaced.empty() && post.last.is_object()) replaced = MessageId(post.last);
    append.set_client_record_id(absl::StrCat("regenerate:", replaced));
  } else if (post.last.is_object()) {
    append.set_client_record_id(
        absl::StrCat("continue:", MessageId(post.last), ":", Fingerprint(DumpJson(post.last))));
  }
  return append;
}

}  // namespace

asio::awaitable<void> Gateway::ChatPost(std::shared_ptr<HttpConnection> connection,
                                        HttpRequest request, std::string agent) {
  const absl::Time received = absl::Now();
  absl::StatusOr<std::string> token = CallerToken(request);
  if (!token.ok()) {
    Error(connection, request, token.status());
    co_return;
  }
  absl::StatusOr<ChatPostBody> post = ParseChatPost(request.body, std::move(agent), options_.agent);
  if (!post.ok()) {
    Error(connection, request, post.status());
    co_return;
  }
  // 1. A request without a token may create the chat (the first POST of a chat).
  if (token->empty()) {
    bool answered = co_await FirstPost(connection, request, *post, received);
    if (answered) co_return;
  }
  // 2. A message on an existing chat.
  co_await AppendMessage(connection, request, *post, *token, received);
}

asio::awaitable<bool> Gateway::FirstPost(const std::shared_ptr<HttpConnection>& connection,
                                         const HttpRequest& request, const ChatPostBody& post,
                                         absl::Time received) {
  if (post.agent.empty()) {
    Error(connection, request,
          absl::InvalidArgumentError("no agent: name it in the route "
                                     "(/api/agents/{agent}/chat), the body, or --agent"));
    co_return true;
  }
  if (post.trigger == "submit-message" && MessageRole(post.last) == "user") {
    bool answered = co_await CreateChat(connection, request, post, received);
    co_return answered;
  }
  if (!options_.public_create) {
    Error(connection, request,
          absl::UnauthenticatedError("send the chat's token as \"Authorization: Bearer "
                                     "<token>\""));
    co_return true;
  }
  co_return false;
}

asio::awaitable<bool> Gateway::CreateChat(const std::shared_ptr<HttpConnection>& connection,
                                          const HttpRequest& request, const ChatPostBody& post,
                                          absl::Time received) {
  const std::string& chat_id = post.chat_id;
  // A chat whose agent allows it gets a head start: step 1 runs here while a worker boots.
  std::shared_ptr<const Agent> warm = co_await WarmAgent(post.agent);
  std::string traceparent(request.Header("traceparent"));
  v1::CreateSessionRequest create = FirstSession(post, warm != nullptr, traceparent);
  absl::StatusOr<v1::CreateSessionResponse> created =
      co_await sessions_.CreateSession(std::move(create), "");
  if (!created.ok()) {
    Error(connection, request, created.status());
    co_return true;
  }
  bool retry = false;
  if (!created->created()) {
    // Only the retry of the request that created it may go on without the chat's token.
    auto known = created_.find(chat_id);
    retry = known != created_.end() && known->second.first_message_id == MessageId(post.last) &&
            absl::Now() - known->second.at <= options_.retry_window;
    if (!retry && !created->chat_token().empty()) {
      Error(connection, request,
            absl::UnauthenticatedError(absl::StrCat("chat ", Quoted(chat_id),
                                                    " exists: send its chat token as "
                                                    "\"Authorization: Bearer <token>\"")));
      co_return true;
    }
  } else {
    created_[chat_id] = Created{MessageId(post.last), absl::Now()};
  }
  HttpHeaders extra;
  if (!created->chat_token().empty()) {
    extra.emplace_back("x-baton-chat-token", created->chat_token());
    extra.emplace_back("x-baton-chat-token-expires",
                       absl::StrCat(created->chat_token_expires_unix_ms()));
  }
  if (created->created() && warm) {
    HttpHeaders headers = Cors(request);
    headers.emplace_back("x-baton-chat-id", chat_id);
    for (auto& h : extra) headers.push_back(std::move(h));
    auto stream = std::make_shared<AnswerStream>(*this, connection, chat_id, 0, received);
    // The run waits for the signal until this deadline (the agent's window, by the
    // orchestrator's clock); step 1 must end before it.
    absl::Time deadline = created->handover_deadline_unix_ms() > 0
                              ? absl::FromUnixMillis(created->handover_deadline_unix_ms())
                              : absl::Now() + warm->options.handover_timeout;
    co_await HeadStart(std::move(stream), chat_id, created->chat_token(), std::move(warm),
                       post.messages, traceparent, deadline, std::move(headers));
    co_return true;
  }
  if (created->created() || retry) {
    // The boot message's answer is the chat's first (a retry of a head start's POST too:
    // the run writes step 1 to `.out` when it takes the handover).
    StreamAnswer(connection, request, chat_id, created->chat_token(), 0, 0, received,
                 std::move(extra));
    co_return true;
  }
  // An existing chat of an orchestrator without chat tokens: append as any message.
  co_return false;
}

asio::awaitable<void> Gateway::AppendMessage(const std::shared_ptr<HttpConnection>& connection,
                                             const HttpRequest& request, const ChatPostBody& post,
                                             const std::string& token, absl::Time received) {
  v1::AppendRequest append = MessageAppend(post);
  absl::StatusOr<v1::AppendResponse> appended = co_await sessions_.Append(std::move(append), token);
  if (!appended.ok()) {
    Error(connection, request, appended.status());
    co_return;
  }
  if (appended->duplicate() && appended->answered()) {
    Error(connection, request,
          absl::AlreadyExistsError("this message was answered already: reload the chat"));
    co_return;
  }
  // A retry of a message whose answer is under way, or waits behind others, gets that answer as
  // the first POST would have. (A first POST that comes here created nothing: it has no chat
  // token to send back.)
  StreamAnswer(connection, request, post.chat_id, token, appended->out_seq(),
               appended->turns_before(), received, HttpHeaders(), appended->seq());
}

// ---- head starts -------------------------------------------------------------------------------

asio::awaitable<std::shared_ptr<const Agent>> Gateway::WarmAgent(const std::string& agent) {
  const HeadStartOptions& o = options_.head_start;
  if (!o.enabled) co_return nullptr;
  const absl::Time now = absl::Now();
  if (auto it = warm_.find(agent); it != warm_.end() && now - it->second.at < o.agent_ttl) {
    co_return it->second.agent;
  }
  v1::GetAgentRequest get;
  get.set_name(agent);
  absl::StatusOr<v1::AgentInfo> info = co_await sessions_.GetAgent(std::move(get), "");
  std::shared_ptr<const Agent> warm;
  if (!info.ok()) {
    // No worker hosts it yet (the run will wait for one), or the orchestrator is away: the chat
    // is created as a plain one, and its run answers the message.
    LogJson("debug", "no head start: the agent's announcement is not available",
            {{"agent", agent}, {"error", std::string(info.status().message())}});
  } else if (info->head_start_disabled()) {
    LogJson("debug", "no head start: the agent does not allow one", {{"agent", agent}});
  } else {
    std::string provider = o.provider.empty() ? info->model_provider() : o.provider;
    std::string model_id = o.model.empty() ? info->model_id() : o.model;
    std::string key_env = o.api_key_env;
    if (key_env.empty()) key_env = provider == "openai" ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
    const char* key = std::getenv(key_env.c_str());
    if (provider.empty()) {
      LogJson("debug", "no head start: the agent announces no provider model", {{"agent", agent}});
    } else if (o.base_url.empty() && (key == nullptr || *key == '\0')) {
      LogJson("warn", "no head start: no provider key in the environment",
              {{"agent", agent}, {"variable", key_env}});
    } else {
      std::shared_ptr<LanguageModel>& model = models_[absl::StrCat(provider, "/", model_id)];
      if (!model) model = MakeModel(*http_, {provider, o.base_url, model_id, o.api_key_env});
      absl::StatusOr<Agent> made = AgentFromInfo(*info, model);
      if (made.ok()) {
        warm = std::make_shared<const Agent>(*std::move(made));
      } else {
        LogJson("warn", "no head start: the agent's announcement is unusable",
                {{"agent", agent}, {"error", std::string(made.status().message())}});
      }
    }
  }
  // Kept for a while when known; asked again next time when the agent's workers were not there.
  if (info.ok()) warm_[agent] = Warm{warm, now};
  co_return warm;
}

asio::awaitable<void> Gateway::HeadStart(std::shared_ptr<AnswerStream> stream, std::string chat_id,
                                         std::string token, std::shared_ptr<const Agent> agent,
                                         Json messages, std::string traceparent,
                                         absl::Time deadline, HttpHeaders headers) {
  // Step 1 stops when the client goes away (nothing waits for it) or when the run's handover
  // window is about to close: the signal is then a skip, in time, and the run answers the
  // message itself. Never a signal the run no longer waits for.
  auto stop = std::make_shared<std::stop_source>();
  stream->BeginWarm(std::move(headers), [stop] { stop->request_stop(); });
  // Ended with a margin for the signal's own trip (and the two clocks' skew).
  const absl::Duration window = std::max(absl::ZeroDuration(), deadline - absl::Now());
  const absl::Duration margin = std::min(absl::Seconds(2), window / 4);
  asio::steady_timer step_deadline(executor_);
  step_deadline.expires_after(absl::ToChronoNanoseconds(window - margin));
  step_deadline.async_wait([stop](const asio::error_code& ec) {
    if (!ec) stop->request_stop();
  });

  const std::string message_id = NewMessageId();
  // Arguments named, not temporaries of the co_await (docs/decisions.md, the GCC 12 rule).
  std::function<void(const Json&)> sink = [stream](const Json& chunk) { stream->Warm(chunk); };
  std::stop_token stopped = stop->get_token();
  StepOneResult step =
      co_await RunStepOne(executor_, clock_, *pool_, *agent, chat_id, std::move(messages),
                          message_id, std::move(traceparent), sink, stopped);
  step_deadline.cancel();

  v1::AppendRequest append;
  append.set_chat_id(chat_id);
  append.set_body_json(DumpJson(step.signal));
  append.set_client_record_id(absl::StrCat("handover:", message_id));  // a retry: stored once
  // With the gateway's own token: only the warm server may signal (a chat token appends
  // messages and stops only, docs/security.md).
  absl::StatusOr<v1::AppendResponse> appended = co_await sessions_.Append(std::move(append), "");
  if (!appended.ok()) {
    // Refused (the window closed first: the host skipped the head start itself) or lost: the
    // run answers the message, and this response follows that answer.
    LogJson("warn", "head start signal not stored",
            {{"chat_id", chat_id}, {"error", std::string(appended.status().message())}});
  }
  if (step.skipped || !appended.ok()) {
    if (!step.error.empty() && step.error != "stopped") {
      LogJson("warn", "head start step 1 failed: the run answers the message",
              {{"chat_id", chat_id}, {"error", step.error}});
    }
    head_start_skip_.Add(1);
    stream->AfterSkip(token);
    co_return;
  }
  (BoolField(step.signal, "isFinal") ? head_start_final_ : head_start_handover_).Add(1);
  stream->Splice(message_id, token);
}

asio::awaitable<void> Gateway::ChatResume(std::shared_ptr<HttpConnection> connection,
                                          HttpRequest request, std::string chat_id) {
  const absl::Time received = absl::Now();
  absl::StatusOr<std::string> token = CallerToken(request);
  if (!token.ok()) {
    Error(connection, request, token.status());
    co_return;
  }
  v1::GetRequest get;
  get.set_chat_id(chat_id);
  absl::StatusOr<v1::Session> session = co_await sessions_.Get(std::move(get), *token);
  if (!session.ok()) {
    if (session.status().code() == absl::StatusCode::kNotFound) {
      // useChat asks on every page load, for new chats too: nothing to resume.
      HttpHeaders headers = Cors(request);
      connection->Respond(204, std::move(headers), "");
      co_return;
    }
    Error(connection, request, session.status());
    co_return;
  }
  if (!session->answering()) {
    connection->Respond(204, Cors(request), "");
    co_return;
  }
  HttpHeaders headers = Cors(request);
  headers.emplace_back("x-baton-chat-id", chat_id);
  auto stream = std::make_shared<AnswerStream>(*this, std::move(connection), chat_id, 0, received);
  stream->BeginResume(session->turn_out_seq(), *token, std::move(headers));
}

asio::awaitable<void> Gateway::ChatStop(std::shared_ptr<HttpConnection> connection,
                                        HttpRequest request, std::string chat_id) {
  absl::StatusOr<std::string> token = CallerToken(request);
  if (!token.ok()) {
    Error(connection, request, token.status());
    co_return;
  }
  v1::AppendRequest append;
  append.set_chat_id(chat_id);
  append.set_body_json(R"({"kind":"stop"})");
  absl::StatusOr<v1::AppendResponse> appended =
      co_await sessions_.Append(std::move(append), *token);
  if (!appended.ok()) {
    Error(connection, request, appended.status());
    co_return;
  }
  connection->Respond(204, Cors(request), "");
}

asio::awaitable<void> Gateway::ChatPreload(std::shared_ptr<HttpConnection> connection,
                                           HttpRequest request, std::string chat_id,
                                           std::string agent) {
  absl::StatusOr<std::string> token = CallerToken(request);
  if (!token.ok()) {
    Error(connection, request, token.status());
    co_return;
  }
  Json metadata;
  if (!request.body.empty()) {
    absl::StatusOr<Json> body = ParseJson(request.body);
    if (!body.ok() || !body->is_object()) {
      Error(connection, request,
            absl::InvalidArgumentError("the body, when sent, must be a JSON object"));
      co_return;
    }
    if (agent.empty()) agent = StringField(*body, "agent");
    metadata = body->value("metadata", Json());
  }
  if (agent.empty()) agent = options_.agent;
  if (agent.empty()) {
    Error(connection, request, absl::InvalidArgumentError("no agent to preload"));
    co_return;
  }
  if (token->empty() && !options_.public_create) {
    Error(connection, request,
          absl::UnauthenticatedError("preloading a chat needs a token (or --public_create)"));
    co_return;
  }
  v1::CreateSessionRequest create;
  create.set_chat_id(chat_id);
  create.set_agent(agent);
  create.set_trigger(v1::TRIGGER_PRELOAD);
  Json payload = Json::object();
  if (!metadata.is_null()) payload["metadata"] = metadata;
  create.set_payload_json(DumpJson(payload));
  absl::StatusOr<v1::CreateSessionResponse> created =
      co_await sessions_.CreateSession(std::move(create), *token);
  if (!created.ok()) {
    Error(connection, request, created.status());
    co_return;
  }
  Json answer = {{"chatId", chat_id}, {"created", created->created()}};
  HttpHeaders extra;
  if (!created->chat_token().empty()) {
    answer["chatToken"] = created->chat_token();
    answer["chatTokenExpiresAt"] = created->chat_token_expires_unix_ms();
  }
  Json200(connection, request, 200, answer, std::move(extra));
}

// ---- the REST mirror --------------------------------------------------------------------------

namespace {

// A REST request's body: a JSON object, {} when empty.
absl::StatusOr<Json> RestBody(const HttpRequest& request) {
  if (request.body.empty()) return Json::object();
  absl::StatusOr<Json> body = ParseJson(request.body);
  if (!body.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body is not JSON: ", body.status().message()));
  }
  if (!body->is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  return body;
}

// A `.out` record as the REST mirror shows it.
Json RecordJson(const FeedRecord& record) {
  if (record.control) {
    Json headers = Json::object();
    for (const auto& [k, v] : record.headers) headers[k] = v;
    return {{"seq", record.seq}, {"control", record.subtype}, {"headers", headers}};
  }
  absl::StatusOr<Json> chunk = ParseJson(record.chunk_json);
  return {{"seq", record.seq}, {"chunk", chunk.ok() ? *chunk : Json()}};
}

// Every record after a seq, as SSE events with their seq as the id, until the client leaves
// (with `follow`) or the records stored now are sent.
class RecordStream : public ChatFeed::Reader, public std::enable_shared_from_this<RecordStream> {
 public:
  RecordStream(FeedHub& feeds, std::shared_ptr<HttpConnection> connection, std::string chat_id,
               int64_t until, Gauge& open, absl::Duration keep_alive)
      : feeds_(feeds),
        connection_(std::move(connection)),
        chat_id_(std::move(chat_id)),
        until_(until),
        open_(open),
        keep_alive_(keep_alive) {}

  void Begin(int64_t after_seq, const std::string& token, HttpHeaders headers,
             asio::any_io_executor executor) {
    timer_ = std::make_unique<asio::steady_timer>(executor);
    connection_->StartStream(200, std::move(headers));
    open_.Add(1);
    self_ = shared_from_this();
    std::weak_ptr<RecordStream> weak = weak_from_this();
    connection_->OnClose([weak] {
      if (auto self = weak.lock()) self->Leave();
    });
    if (until_ >= 0 && after_seq >= until_) {
      End();
      return;
    }
    Arm();
    feed_ = &feeds_.Feed(chat_id_);
    feed_->Attach(this, after_seq, token);
  }

  void OnRecord(const FeedRecord& record) override {
    if (done_) return;
    std::string event =
        absl::StrCat("id: ", record.seq, "\nevent: ", record.control ? "control" : "chunk",
                     "\ndata: ", DumpJson(RecordJson(record)), "\n\n");
    if (!connection_->Write(event)) {
      Leave();
      return;
    }
    Arm();
    if (until_ >= 0 && record.seq >= until_) End();
  }

  void OnFeedError(const absl::Status& status) override {
    feed_ = nullptr;
    if (!status.ok() && !done_) {
      connection_->Write(
          absl::StrCat("event: error\ndata: ",
                       DumpJson(Json{{"error",
                                      {{"code", absl::StatusCodeToString(status.code())},
                                       {"message", std::string(status.message())}}}}),
                       "\n\n"));
    }
    End();
  }

 private:
  void Arm() {
    timer_->expires_after(absl::ToChronoNanoseconds(keep_alive_));
    std::weak_ptr<RecordStream> weak = weak_from_this();
    timer_->async_wait([weak](const asio::error_code& ec) {
      auto self = weak.lock();
      if (ec || !self || self->done_) return;
      if (!self->connection_->Write(": keep-alive\n\n")) {
        self->Leave();
        return;
      }
      self->Arm();
    });
  }
  void End() {
    if (done_) return;
    connection_->End();
    Leave();
  }
  void Leave() {
    if (done_) return;
    done_ = true;
    if (timer_) timer_->cancel();
    if (feed_ != nullptr) feed_->Detach(this);
    feed_ = nullptr;
    open_.Add(-1);
    if (connection_->open() && connection_->streaming()) connection_->Close();
    std::shared_ptr<RecordStream> self = std::move(self_);
    if (self && timer_) asio::post(timer_->get_executor(), [self] {});
  }

  FeedHub& feeds_;
  std::shared_ptr<HttpConnection> connection_;
  std::string chat_id_;
  int64_t until_;
  Gauge& open_;
  absl::Duration keep_alive_;
  std::unique_ptr<asio::steady_timer> timer_;
  ChatFeed* feed_ = nullptr;
  std::shared_ptr<RecordStream> self_;
  bool done_ = false;
};

}  // namespace

asio::awaitable<void> Gateway::Rest(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                                    std::vector<std::string> segments) {
  absl::StatusOr<std::string> token = CallerToken(request);
  if (!token.ok()) {
    Error(connection, request, token.status());
    co_return;
  }
  const std::string& method = request.method;
  // POST /v1/sessions
  if (segments.size() == 2) {
    if (method != "POST") {
      Error(connection, request, absl::NotFoundError("POST /v1/sessions creates a session"));
      co_return;
    }
    co_await RestCreate(connection, request, *token);
    co_return;
  }
  absl::StatusOr<std::string> chat = ChatIdOf(segments[2]);
  if (!chat.ok()) {
    Error(connection, request, chat.status());
    co_return;
  }
  const std::string& chat_id = *chat;
  std::string what = segments.size() > 3 ? segments[3] : "";
  if (segments.size() > 4) what = "?";
  if (what.empty() && method == "GET") {
    co_await RestGet(connection, request, *token, chat_id);
  } else if (what == "records" && method == "POST") {
    co_await RestAppend(connection, request, *token, chat_id);
  } else if (what == "records" && method == "GET") {
    co_await RestRecords(connection, request, *token, chat_id);
  } else if (what == "runs" && method == "GET") {
    co_await RestRuns(connection, request, *token, chat_id);
  } else if (what == "cancel" && method == "POST") {
    co_await RestCancel(connection, request, *token, chat_id);
  } else if (what == "close" && method == "POST") {
    co_await RestClose(connection, request, *token, chat_id);
  } else {
    Error(connection, request,
          absl::NotFoundError(absl::StrCat("no route ", method, " ", request.path)));
  }
}

asio::awaitable<void> Gateway::RestCreate(const std::shared_ptr<HttpConnection>& connection,
                                          const HttpRequest& request, const std::string& token) {
  if (token.empty() && !options_.public_create) {
    Error(connection, request, absl::UnauthenticatedError("creating a session needs a token"));
    co_return;
  }
  absl::StatusOr<Json> body = RestBody(request);
  if (!body.ok()) {
    Error(connection, request, body.status());
    co_return;
  }
  v1::CreateSessionRequest create;
  create.set_chat_id(StringField(*body, "chatId"));
  create.set_agent(StringField(*body, "agent"));
  create.set_trigger(TriggerFromName(StringField(*body, "trigger")));
  if (const Json* payload = FindField(*body, "payload"); payload != nullptr) {
    create.set_payload_json(DumpJson(*payload));
  }
  create.set_traceparent(StringField(*body, "traceparent"));
  if (create.trigger() == v1::TRIGGER_UNSPECIFIED && !StringField(*body, "trigger").empty()) {
    Error(connection, request,
          absl::InvalidArgumentError(
              absl::StrCat("unknown trigger ", Quoted(StringField(*body, "trigger")))));
    co_return;
  }
  absl::StatusOr<v1::CreateSessionResponse> created =
      co_await sessions_.CreateSession(std::move(create), token);
  if (!created.ok()) {
    Error(connection, request, created.status());
    co_return;
  }
  Json answer = ProtoToJson(created->session());
  if (!created->chat_token().empty()) {
    answer["chatToken"] = created->chat_token();
    answer["chatTokenExpiresAt"] = created->chat_token_expires_unix_ms();
  }
  if (created->handover_deadline_unix_ms() > 0) {
    answer["handoverDeadline"] = created->handover_deadline_unix_ms();
  }
  Json200(connection, request, created->created() ? 201 : 200, answer);
}

asio::awaitable<void> Gateway::RestGet(const std::shared_ptr<HttpConnection>& connection,
                                       const HttpRequest& request, const std::string& token,
                                       const std::string& chat_id) {
  v1::GetRequest get;
  get.set_chat_id(chat_id);
  absl::StatusOr<v1::Session> session = co_await sessions_.Get(std::move(get), token);
  if (!session.ok()) {
    Error(connection, request, session.status());
    co_return;
  }
  Json200(connection, request, 200, ProtoToJson(*session));
}

asio::awaitable<void> Gateway::RestAppend(const std::shared_ptr<HttpConnection>& connection,
                                          const HttpRequest& request, const std::string& token,
                                          const std::string& chat_id) {
  v1::AppendRequest append;
  append.set_chat_id(chat_id);
  append.set_body_json(request.body);
  append.set_client_record_id(std::string(request.Header("idempotency-key")));
  absl::StatusOr<v1::AppendResponse> appended = co_await sessions_.Append(std::move(append), token);
  if (!appended.ok()) {
    Error(connection, request, appended.status());
    co_return;
  }
  Json200(connection, request, 200,
          {{"seq", appended->seq()},
           {"duplicate", appended->duplicate()},
           {"answered", appended->answered()},
           {"runId", appended->run_id()}});
}

asio::awaitable<void> Gateway::RestRecords(const std::shared_ptr<HttpConnection>& connection,
                                           const HttpRequest& request, const std::string& token,
                                           const std::string& chat_id) {
  int64_t after = 0;
  std::string last = std::string(request.Header("last-event-id"));
  std::string param = request.Param("after");
  if (!last.empty() && !absl::SimpleAtoi(last, &after)) {
    Error(connection, request, absl::InvalidArgumentError("Last-Event-ID is not a seq"));
    co_return;
  }
  if (last.empty() && !param.empty() && !absl::SimpleAtoi(param, &after)) {
    Error(connection, request, absl::InvalidArgumentError("\"after\" is not a seq"));
    co_return;
  }
  bool follow = request.Param("follow") == "true" || request.Param("follow") == "1";
  // Authorized as the caller: a Get with its token (the feed reads with the gateway's own).
  v1::GetRequest get;
  get.set_chat_id(chat_id);
  absl::StatusOr<v1::Session> session = co_await sessions_.Get(std::move(get), token);
  if (!session.ok()) {
    Error(connection, request, session.status());
    co_return;
  }
  HttpHeaders headers = Cors(request);
  headers.emplace_back("Content-Type", "text/event-stream");
  headers.emplace_back("Cache-Control", "no-cache");
  headers.emplace_back("X-Accel-Buffering", "no");
  auto stream =
      std::make_shared<RecordStream>(feeds_, connection, chat_id, follow ? -1 : session->out_seq(),
                                     streams_open_, options_.keep_alive);
  stream->Begin(after, token, std::move(headers), executor_);
}

asio::awaitable<void> Gateway::RestRuns(const std::shared_ptr<HttpConnection>& connection,
                                        const HttpRequest& request, const std::string& token,
                                        const std::string& chat_id) {
  v1::ListRunsRequest list;
  list.set_chat_id(chat_id);
  absl::StatusOr<v1::ListRunsResponse> runs = co_await sessions_.ListRuns(std::move(list), token);
  if (!runs.ok()) {
    Error(connection, request, runs.status());
    co_return;
  }
  Json200(connection, request, 200, ProtoToJson(*runs));
}

asio::awaitable<void> Gateway::RestCancel(const std::shared_ptr<HttpConnection>& connection,
                                          const HttpRequest& request, const std::string& token,
                                          const std::string& chat_id) {
  v1::CancelRunRequest cancel;
  cancel.set_chat_id(chat_id);
  absl::StatusOr<Json> body = RestBody(request);
  if (!body.ok()) {
    Error(connection, request, body.status());
    co_return;
  }
  cancel.set_run_id(StringField(*body, "runId"));
  absl::StatusOr<v1::Run> run = co_await sessions_.CancelRun(std::move(cancel), token);
  if (!run.ok()) {
    Error(connection, request, run.status());
    co_return;
  }
  Json200(connection, request, 200, ProtoToJson(*run));
}

asio::awaitable<void> Gateway::RestClose(const std::shared_ptr<HttpConnection>& connection,
                                         const HttpRequest& request, const std::string& token,
                                         const std::string& chat_id) {
  absl::StatusOr<Json> body = RestBody(request);
  if (!body.ok()) {
    Error(connection, request, body.status());
    co_return;
  }
  v1::CloseRequest close;
  close.set_chat_id(chat_id);
  close.set_reason(StringField(*body, "reason"));
  absl::StatusOr<v1::Session> session = co_await sessions_.Close(std::move(close), token);
  if (!session.ok()) {
    Error(connection, request, session.status());
    co_return;
  }
  Json200(connection, request, 200, ProtoToJson(*session));
}

// ---- static files -----------------------------------------------------------------------------

void Gateway::Static(const std::shared_ptr<HttpConnection>& connection,
                     const HttpRequest& request) {
  std::string path = PercentDecode(request.path);
  // Only plain paths below the directories: no "..", no NUL, no hidden files.
  bool plain = !path.empty() && path[0] == '/' && path.find('\0') == std::string::npos &&
               path.find("/.") == std::string::npos && path.find('\\') == std::string::npos;
  if (plain && path.back() == '/') path += "index.html";
  for (const std::string& dir : {options_.web_dir, options_.static_dir}) {
    if (!plain || dir.empty()) continue;
    std::string file = dir + path;
    struct stat st;
    if (stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    std::ifstream in(file, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    if (!in) continue;
    HttpHeaders headers = Cors(request);
    headers.emplace_back("Content-Type", ContentType(path));
    headers.emplace_back("Cache-Control", "no-cache");
    headers.emplace_back("X-Content-Type-Options", "nosniff");
    connection->Respond(200, std::move(headers),
                        request.method == "HEAD" ? std::string() : content.str());
    return;
  }
  Error(connection, request, absl::NotFoundError(absl::StrCat("no file ", Quoted(request.path))));
}

}  // namespace baton::gateway
