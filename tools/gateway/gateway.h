// File: tools/gateway/gateway.h
//
// Gateway: baton's web face (DESIGN §1, docs/gateway.md). It answers HTTP requests on the
// gateway's one event loop:
//
//   - the AI SDK's chat transport, so `useChat` with `DefaultChatTransport` works unchanged: a
//     POST answers the turn as a UI message stream, GET .../stream resumes the answer in flight,
//     and baton's additions stop and preload;
//   - a REST/SSE mirror of Sessions for other backends;
//   - the demo page and the user's static files, /healthz and /metrics.
//
// Every answer a browser sees is read from the chat's `.out` through one shared upstream Read
// per chat (ChatFeed), cut to the records of that answer, and written as the AI SDK's SSE.
//
// Thread-safety: everything runs on the executor the Gateway was made with.
#ifndef BATON_TOOLS_GATEWAY_GATEWAY_H_
#define BATON_TOOLS_GATEWAY_GATEWAY_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "asio/steady_timer.hpp"
#include "hooks/agent.h"
#include "hooks/json.h"
#include "runtime/base/metrics.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"
#include "runtime/model/http_client.h"
#include "tools/gateway/feed.h"
#include "tools/gateway/http_server.h"
#include "tools/gateway/sessions_client.h"

namespace baton::gateway {

// Head starts (docs/gateway.md, "Head start"): the first POST of a chat runs step 1 here, on the
// agent its workers announce (Sessions.GetAgent: system prompt, tool schemas, model), while a
// worker boots the run; the run then goes on with step 2+ under the same message id.
struct HeadStartOptions {
  bool enabled = true;
  // The provider's endpoint and key, as a worker takes them (runtime/model/providers.h, MakeModel).
  // A head start needs a key in `api_key_env` (or the provider's own variable) or a `base_url`.
  std::string base_url;
  std::string api_key_env;
  // Override the agent's announced provider and model ("": as announced).
  std::string provider;
  std::string model;
  // How long an agent's announcement is used before it is asked for again.
  absl::Duration agent_ttl = absl::Seconds(10);
};

struct GatewayOptions {
  std::string base = "/api/chat";         // the AI SDK transport's `api`
  std::string agent;                      // the agent of chats whose request names none
  std::string web_dir;                    // the demo page's files; "" serves none
  std::string static_dir;                 // the user's own files, served after the page's; "" none
  std::vector<std::string> cors_origins;  // allowed Origins ("*": any); empty: no CORS
  // Requests without a token may create chats (and get their chat token in the answer).
  bool public_create = false;
  // A streamed answer silent for this long gets an SSE comment, so proxies keep it open.
  absl::Duration keep_alive = absl::Seconds(15);
  // How long a chat this gateway created may be asked again, without its token, by a retry of
  // the request that created it (the network lost the answer, and the token with it).
  absl::Duration retry_window = absl::Seconds(60);
  HeadStartOptions head_start;
};

// A chat POST's body, checked (gateway.cc).
struct ChatPostBody;

class Gateway {
 public:
  Gateway(asio::any_io_executor executor, SessionsClient& sessions, GatewayOptions options);
  ~Gateway();

  // The HttpServer's handler.
  void Handle(std::shared_ptr<HttpConnection> connection, HttpRequest request);

  std::string MetricsText() const { return metrics_.Text(); }
  FeedHub& feeds() { return feeds_; }

  class AnswerStream;  // an SSE response following a chat's `.out`

 private:
  // Where a path of the chat transport ({base}[/{chatId}/{action}], or the same under
  // /api/agents/{agent}/chat) has its chat part, and the agent it names.
  struct Route {
    size_t at = 0;      // the first segment after the base
    std::string agent;  // "": the path names none
  };
  struct Caller {
    std::string token;  // the bearer token the request carried ("" when none)
  };

  // Handle's steps for the chat transport: the route a path is on (none: not the transport's),
  // and the request dispatched to ChatPost, ChatResume, ChatStop or ChatPreload.
  std::optional<Route> ChatRoute(const std::vector<std::string>& segments) const;
  void HandleChat(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                  const std::vector<std::string>& segments, Route route);

  // The coroutines below that take references (FirstPost, CreateChat, AppendMessage and the
  // Rest* steps) are each awaited, directly or through FirstPost, by ChatPost or Rest, whose
  // frame holds what they refer to, so it outlives them (docs/decisions.md).

  // The AI SDK transport.
  //
  // A POST: the caller's token, the body checked (ParseChatPost), then, without a token, the
  // chat's first POST (FirstPost), else or after it a message on the chat (AppendMessage).
  asio::awaitable<void> ChatPost(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                                 std::string agent);
  // A POST without a token: creates the chat (CreateChat) or refuses. True when the request is
  // answered; false: it goes on as a message on an existing chat.
  asio::awaitable<bool> FirstPost(const std::shared_ptr<HttpConnection>& connection,
                                  const HttpRequest& request, const ChatPostBody& post,
                                  absl::Time received);
  // CreateSession (a head start's when the agent allows one), then the answer: HeadStart, or
  // StreamAnswer from the chat's start. False for an existing chat of an orchestrator without
  // chat tokens.
  asio::awaitable<bool> CreateChat(const std::shared_ptr<HttpConnection>& connection,
                                   const HttpRequest& request, const ChatPostBody& post,
                                   absl::Time received);
  // Appends the POST's message to its chat (MessageAppend) and streams its answer.
  asio::awaitable<void> AppendMessage(const std::shared_ptr<HttpConnection>& connection,
                                      const HttpRequest& request, const ChatPostBody& post,
                                      const std::string& token, absl::Time received);
  asio::awaitable<void> ChatResume(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                                   std::string chat_id);
  asio::awaitable<void> ChatStop(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                                 std::string chat_id);
  asio::awaitable<void> ChatPreload(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                                    std::string chat_id, std::string agent);
  // The warm side of a head start: the agent to run step 1 with (null: no head start for it).
  asio::awaitable<std::shared_ptr<const Agent>> WarmAgent(const std::string& agent);
  // Streams step 1 of a chat just created with handover-prepare, signals the run, and splices
  // its step 2+ into the same response.
  asio::awaitable<void> HeadStart(std::shared_ptr<AnswerStream> stream, std::string chat_id,
                                  std::string token, std::shared_ptr<const Agent> agent,
                                  Json messages, std::string traceparent, absl::Time deadline,
                                  HttpHeaders headers);
  // The REST mirror: Rest checks the token and the chat id and routes to one of the others.
  asio::awaitable<void> Rest(std::shared_ptr<HttpConnection> connection, HttpRequest request,
                             std::vector<std::string> segments);
  // POST /v1/sessions
  asio::awaitable<void> RestCreate(const std::shared_ptr<HttpConnection>& connection,
                                   const HttpRequest& request, const std::string& token);
  // GET /v1/sessions/{chatId}
  asio::awaitable<void> RestGet(const std::shared_ptr<HttpConnection>& connection,
                                const HttpRequest& request, const std::string& token,
                                const std::string& chat_id);
  // POST /v1/sessions/{chatId}/records
  asio::awaitable<void> RestAppend(const std::shared_ptr<HttpConnection>& connection,
                                   const HttpRequest& request, const std::string& token,
                                   const std::string& chat_id);
  // GET /v1/sessions/{chatId}/records: SSE, from Last-Event-ID or ?after, ?follow to go on.
  asio::awaitable<void> RestRecords(const std::shared_ptr<HttpConnection>& connection,
                                    const HttpRequest& request, const std::string& token,
                                    const std::string& chat_id);
  // GET /v1/sessions/{chatId}/runs
  asio::awaitable<void> RestRuns(const std::shared_ptr<HttpConnection>& connection,
                                 const HttpRequest& request, const std::string& token,
                                 const std::string& chat_id);
  // POST /v1/sessions/{chatId}/cancel
  asio::awaitable<void> RestCancel(const std::shared_ptr<HttpConnection>& connection,
                                   const HttpRequest& request, const std::string& token,
                                   const std::string& chat_id);
  // POST /v1/sessions/{chatId}/close
  asio::awaitable<void> RestClose(const std::shared_ptr<HttpConnection>& connection,
                                  const HttpRequest& request, const std::string& token,
                                  const std::string& chat_id);

  // The caller's bearer token; "" (the gateway's own token) only with --public_create.
  absl::StatusOr<std::string> CallerToken(const HttpRequest& request) const;

  void Static(const std::shared_ptr<HttpConnection>& connection, const HttpRequest& request);
  void Preflight(const std::shared_ptr<HttpConnection>& connection, const HttpRequest& request);
  // CORS headers for a request from an allowed Origin (none otherwise).
  HttpHeaders Cors(const HttpRequest& request) const;
  // A JSON error answer with the HTTP status of `status`'s code.
  void Error(const std::shared_ptr<HttpConnection>& connection, const HttpRequest& request,
             const absl::Status& status);
  void Json200(const std::shared_ptr<HttpConnection>& connection, const HttpRequest& request,
               int http_status, const Json& body, HttpHeaders extra = {});
  // Starts an SSE answer following `chat_id` from `after_seq` (see AnswerStream).
  void StreamAnswer(std::shared_ptr<HttpConnection> connection, const HttpRequest& request,
                    const std::string& chat_id, const std::string& token, int64_t after_seq,
                    int skip_turns, absl::Time received, HttpHeaders extra, int64_t in_seq = -1);
  void Sweep();

  asio::any_io_executor executor_;
  SessionsClient& sessions_;
  GatewayOptions options_;
  FeedHub feeds_;
  asio::steady_timer sweeper_;
  // Chats this gateway created without a token, for a retry of the request that created them.
  struct Created {
    std::string first_message_id;
    absl::Time at;
  };
  std::map<std::string, Created> created_;

  // Head starts: agents as announced (with when they were asked for), models by provider and
  // id, and what step 1 runs on.
  struct Warm {
    std::shared_ptr<const Agent> agent;  // null: no head start
    absl::Time at;
  };
  std::map<std::string, Warm> warm_;
  std::map<std::string, std::shared_ptr<LanguageModel>> models_;
  RealClock clock_;
  std::unique_ptr<HookPool> pool_;
  std::unique_ptr<HttpClient> http_;

  Metrics metrics_;
  Counter& requests_;
  Counter& errors_;
  Gauge& streams_open_;
  Gauge& feeds_open_;
  Histogram& first_chunk_seconds_;
  Counter& head_start_handover_;
  Counter& head_start_final_;
  Counter& head_start_skip_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The bearer token of a request's Authorization header; "" when none. An error when the header
// is not "Bearer <token>" or appears more than once.
absl::StatusOr<std::string> BearerToken(const HttpRequest& request);

// The HTTP status for a gRPC / absl status code.
int HttpStatusOf(absl::StatusCode code);

}  // namespace baton::gateway

#endif  // BATON_TOOLS_GATEWAY_GATEWAY_H_
