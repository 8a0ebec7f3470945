#include "tools/fake-llm/fake_llm.h"

#include <deque>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asio/awaitable.hpp"
#include "asio/co_spawn.hpp"
#include "asio/detached.hpp"
#include "asio/io_context.hpp"
#include "asio/ip/tcp.hpp"
#include "asio/post.hpp"
#include "asio/redirect_error.hpp"
#include "asio/ssl.hpp"
#include "asio/steady_timer.hpp"
#include "asio/this_coro.hpp"
#include "asio/use_awaitable.hpp"
#include "asio/write.hpp"
#include "openssl/ssl.h"
#include "tools/fake-llm/http_request.h"
#include "tools/fake-llm/script.h"

namespace baton::fakellm {
namespace {

using asio::ip::tcp;

constexpr std::string_view kControlPrefix = "/__fake/";
// How long a connection the server closes waits for the client's FIN after sending its own.
constexpr std::chrono::seconds kLinger{2};

// What all connections share.
struct State {
  absl::Mutex mu;
  Script script ABSL_GUARDED_BY(mu);
  std::vector<RecordedRequest> records ABSL_GUARDED_BY(mu);
  // Bumped by every script change, so a connection still answering a request of an old script
  // leaves the new records alone.
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;
  // The script clock (ms): only AdvanceScriptClock and POST /__fake/clock move it. Streams held
  // by `hold_ms` items wait on it.
  int64_t clock_ms ABSL_GUARDED_BY(mu) = 0;
  // The timers of the connections holding a stream (on the loop thread only): an advance of
  // the clock wakes them to look again.
  std::set<asio::steady_timer*> holding;

  void WakeHolding() {
    for (asio::steady_timer* timer : holding) timer->cancel();
  }

  void Replace(Script next) {
    absl::MutexLock lock(&mu);
    script = std::move(next);
    records.clear();
    ++generation;
  }
};

// Where a request's record lives.
struct RecordRef {
  uint64_t generation = 0;
  size_t index = 0;
};

// One thing the writer sends, in the order the requests came.
struct Job {
  bool interim = false;  // a "100 Continue", not an answer
  ResponsePlan plan;
  std::optional<RecordRef> record;  // the recorded request it answers
  int64_t clock_start = 0;          // the script clock when the request arrived
  bool keep_alive = true;
};

Json ErrorBody(std::string_view message) { return Json{{"error", {{"message", message}}}}; }

ResponsePlan JsonPlan(int status, const Json& body) {
  ResponsePlan plan;
  plan.status = status;
  plan.headers = {{"content-type", "application/json"}};
  plan.writes.push_back(DumpJson(body));
  return plan;
}

using TlsStream = asio::ssl::stream<tcp::socket>;

// One client connection: a reader that parses requests as they arrive (and notices the client
// leaving at any time), and a writer that answers them in order. `Stream` is tcp::socket for
// plain HTTP or TlsStream for HTTPS; the handshake, if any, comes first (Serve), the rest is the
// same for both.
//
// Thread-safety: everything runs on the server's one loop thread.
template <typename Stream>
class Connection : public std::enable_shared_from_this<Connection<Stream>> {
 public:
  Connection(Stream socket, State& state)
      : socket_(std::move(socket)),
        state_(state),
        wake_(socket_.get_executor()),
        pause_(socket_.get_executor()),
        hold_(socket_.get_executor()) {}

  // The TLS handshake (nothing for plain TCP); false when it failed and the connection is
  // closed.
  asio::awaitable<bool> Handshake();
  asio::awaitable<void> Read();
  asio::awaitable<void> Write();

 private:
  // Records `request` and picks its answer (a control request is answered at once), so
  // requests are numbered and matched in arrival order.
  void Enqueue(HttpRequest request);
  ResponsePlan Control(const HttpRequest& request);
  // The client closed or reset the connection: marks what it did not get, stops the writer.
  void ClientGone();
  // Parks the writer until the reader has news.
  asio::awaitable<void> Park();
  // Waits `duration`; false when the client went away meanwhile.
  asio::awaitable<bool> Pause(std::chrono::microseconds duration);
  // Waits until the script clock reads `at` (ms); false when the client went away meanwhile.
  asio::awaitable<bool> HoldUntil(int64_t at);
  // Writes all of `bytes`; false when the client went away.
  asio::awaitable<bool> Send(const std::string& bytes);
  // Sends one job; false when the connection must close after it.
  asio::awaitable<bool> Answer(Job& job);
  asio::awaitable<void> Close();

  Stream socket_;
  State& state_;
  asio::steady_timer wake_;   // the writer parks on it; cancelling it wakes the writer
  asio::steady_timer pause_;  // the writer's waits (ttfb, gaps, linger)
  asio::steady_timer hold_;   // the writer's waits on the script clock
  HttpRequestParser parser_;
  std::deque<Job> jobs_;
  std::optional<RecordRef> answering_;  // the recorded request being answered
  bool client_gone_ = false;
  bool closing_ = false;  // the server is closing; the reader only waits for the client's FIN
};

template <typename Stream>
asio::awaitable<void> Connection<Stream>::Read() {
  std::shared_ptr<Connection> self = this->shared_from_this();
  std::vector<char> buffer(64 << 10);
  bool failed = false;
  for (;;) {
    asio::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    asio::mutable_buffer into = asio::buffer(buffer);
    size_t n = co_await socket_.async_read_some(into, token);
    if (ec) break;
    if (failed || closing_) continue;  // only the end of the connection matters now
    std::vector<HttpRequest> requests;
    absl::Status status = parser_.Feed(std::string_view(buffer.data(), n), requests);
    for (HttpRequest& request : requests) Enqueue(std::move(request));
    if (parser_.TakeExpectContinue()) {
      Job job;
      job.interim = true;
      jobs_.push_back(std::move(job));
    }
    if (!status.ok()) {
      failed = true;
      Job job;
      job.plan = JsonPlan(HttpRequestParser::HttpStatusFor(status),
                          ErrorBody(absl::StrCat("fake-llm: ", status.message())));
      job.keep_alive = false;
      jobs_.push_back(std::move(job));
    }
    wake_.cancel();
  }
  if (closing_) {
    pause_.cancel();  // the client's FIN came: the linger is over
  } else {
    ClientGone();
  }
}

template <typename Stream>
void Connection<Stream>::Enqueue(HttpRequest request) {
  Job job;
  job.keep_alive = request.KeepAlive();
  if (request.Path().starts_with(kControlPrefix)) {
    job.plan = Control(request);
    jobs_.push_back(std::move(job));
    return;
  }
  RecordedRequest record;
  record.method = std::move(request.method);
  record.path = std::string(request.Path());
  record.headers = std::move(request.headers);
  record.body = std::move(request.body);
  if (!record.body.empty()) {
    absl::StatusOr<Json> json = ParseJson(record.body);
    if (json.ok()) record.json = *std::move(json);
  }
  {
    absl::MutexLock lock(&state_.mu);
    int64_t order = state_.script.requests() + 1;
    int index = state_.script.Pick(record.path, record.body);
    record.response = index;
    job.plan = index >= 0 ? state_.script.Render(static_cast<size_t>(index), record.path, order)
                          : Script::NoResponse(order);
    job.record = RecordRef{state_.generation, state_.records.size()};
    job.clock_start = state_.clock_ms;
    state_.records.push_back(std::move(record));
  }
  jobs_.push_back(std::move(job));
}

template <typename Stream>
ResponsePlan Connection<Stream>::Control(const HttpRequest& request) {
  std::string_view path = request.Path();
  if (path == "/__fake/requests" && request.method == "GET") {
    Json list = Json::array();
    absl::MutexLock lock(&state_.mu);
    for (const RecordedRequest& record : state_.records) list.push_back(ToJson(record));
    return JsonPlan(200, list);
  }
  if (path == "/__fake/script" && request.method == "POST") {
    absl::StatusOr<Script> script = Script::ParseText(request.body);
    if (!script.ok()) {
      return JsonPlan(400, ErrorBody(absl::StrCat("fake-llm: ", script.status().message())));
    }
    size_t responses = script->size();
    state_.Replace(*std::move(script));
    return JsonPlan(200, Json{{"ok", true}, {"responses", responses}});
  }
  if (path == "/__fake/clock" && request.method == "POST") {
    absl::StatusOr<Json> body = ParseJson(request.body);
    const Json* advance = body.ok() ? FindField(*body, "advance_ms") : nullptr;
    if (advance == nullptr || !advance->is_number_integer() || advance->get<int64_t>() < 0) {
      return JsonPlan(400, ErrorBody("fake-llm: the body must be {\"advance_ms\": <ms, >= 0>}"));
    }
    int64_t now = 0;
    {
      absl::MutexLock lock(&state_.mu);
      state_.clock_ms += advance->get<int64_t>();
      now = state_.clock_ms;
    }
    state_.WakeHolding();
    return JsonPlan(200, Json{{"ok", true}, {"clock_ms", now}});
  }
  std::string message =
      absl::StrCat("fake-llm: no control endpoint ", request.method, " ", std::string(path),
                   " (there are GET /__fake/requests, POST /__fake/script, POST /__fake/clock)");
  return JsonPlan(404, ErrorBody(message));
}

template <typename Stream>
void Connection<Stream>::ClientGone() {
  if (client_gone_ || closing_) return;
  client_gone_ = true;
  {
    absl::MutexLock lock(&state_.mu);
    auto mark = [this](const std::optional<RecordRef>& ref)
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_.mu) {
                      if (ref.has_value() && ref->generation == state_.generation &&
                          ref->index < state_.records.size()) {
                        state_.records[ref->index].client_closed = true;
                      }
                    };
    mark(answering_);
    for (const Job& job : jobs_) mark(job.record);
  }
  jobs_.clear();
  asio::error_code ec;
  socket_.lowest_layer().cancel(ec);  // a write in progress ends
  wake_.cancel();
  pause_.cancel();
  hold_.cancel();
}

template <typename Stream>
asio::awaitable<void> Connection<Stream>::Park() {
  wake_.expires_at(asio::steady_timer::time_point::max());
  asio::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  co_await wake_.async_wait(token);
}

template <typename Stream>
asio::awaitable<bool> Connection<Stream>::Pause(std::chrono::microseconds duration) {
  if (duration.count() > 0 && !client_gone_) {
    pause_.expires_after(duration);
    asio::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    co_await pause_.async_wait(token);
  }
  co_return !client_gone_;
}

template <typename Stream>
asio::awaitable<bool> Connection<Stream>::HoldUntil(int64_t at) {
  for (;;) {
    {
      absl::MutexLock lock(&state_.mu);
      if (state_.clock_ms >= at) break;
    }
    if (client_gone_) co_return false;
    state_.holding.insert(&hold_);
    hold_.expires_at(asio::steady_timer::time_point::max());
    asio::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    co_await hold_.async_wait(token);
    state_.holding.erase(&hold_);
  }
  co_return !client_gone_;
}

template <typename Stream>
asio::awaitable<bool> Connection<Stream>::Send(const std::string& bytes) {
  if (client_gone_) co_return false;
  asio::error_code ec;
  auto token = asio::redirect_error(asio::use_awaitable, ec);
  asio::const_buffer from = asio::buffer(bytes);
  co_await asio::async_write(socket_, from, token);
  if (ec) ClientGone();
  co_return !client_gone_;
}

template <typename Stream>
asio::awaitable<bool> Connection<Stream>::Answer(Job& job) {
  if (job.interim) {
    std::string line = "HTTP/1.1 100 Continue\r\n\r\n";
    co_return co_await Send(line);
  }
  ResponsePlan& plan = job.plan;
  if (plan.hang) {
    while (!client_gone_) co_await Park();
    co_return false;
  }
  std::chrono::microseconds ttfb = plan.ttfb;
  if (!co_await Pause(ttfb)) co_return false;
  bool keep_alive = job.keep_alive && !plan.truncated;
  std::string head = RenderHead(plan, keep_alive);
  if (!co_await Send(head)) co_return false;
  for (size_t i = 0; i < plan.writes.size(); ++i) {
    if (i > 0) {
      std::chrono::microseconds gap = plan.gap;
      if (!co_await Pause(gap)) co_return false;
    }
    if (i < plan.holds_ms.size() && plan.holds_ms[i] > 0) {
      int64_t at = job.clock_start + plan.holds_ms[i];
      if (!co_await HoldUntil(at)) co_return false;
    }
    std::string bytes = plan.stream ? ChunkFrame(plan.writes[i]) : std::move(plan.writes[i]);
    if (!co_await Send(bytes)) co_return false;
  }
  if (plan.truncated) co_return false;  // no terminating chunk: the stream is cut
  if (plan.hold_end_ms > 0) {
    int64_t at = job.clock_start + plan.hold_end_ms;
    if (!co_await HoldUntil(at)) co_return false;
  }
  if (plan.stream) {
    std::string last(kLastChunk);
    if (!co_await Send(last)) co_return false;
  }
  co_return keep_alive;
}

template <typename Stream>
asio::awaitable<void> Connection<Stream>::Write() {
  std::shared_ptr<Connection> self = this->shared_from_this();
  bool open = true;
  while (open && !client_gone_) {
    if (jobs_.empty()) {
      co_await Park();
      continue;
    }
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    answering_ = job.record;
    open = co_await Answer(job);
    answering_.reset();
  }
  co_await Close();
}

template <typename Stream>
asio::awaitable<void> Connection<Stream>::Close() {
  asio::error_code ec;
  if (!client_gone_) {
    // A lingering close: send our FIN, then give the client a moment to send its own, so
    // request bytes still unread here do not turn the close into a reset that could destroy
    // the response in flight.
    closing_ = true;
    // Over TLS this is a TCP close without a close_notify: every response is framed
    // (Content-Length or chunked), so the client has all of it by then.
    socket_.lowest_layer().shutdown(tcp::socket::shutdown_send, ec);
    pause_.expires_after(kLinger);
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    co_await pause_.async_wait(token);
  }
  socket_.lowest_layer().close(ec);
}

template <typename Stream>
asio::awaitable<bool> Connection<Stream>::Handshake() {
  if constexpr (std::is_same_v<Stream, TlsStream>) {
    asio::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    co_await socket_.async_handshake(asio::ssl::stream_base::server, token);
    if (ec) {
      // A client that does not trust the certificate ends up here; it is gone.
      socket_.lowest_layer().close(ec);
      co_return false;
    }
  }
  co_return true;
}

// Runs one connection: its handshake, then its reader and its writer.
template <typename Stream>
asio::awaitable<void> Serve(std::shared_ptr<Connection<Stream>> connection) {
  if (!co_await connection->Handshake()) co_return;
  asio::any_io_executor executor = co_await asio::this_coro::executor;
  asio::co_spawn(executor, connection->Read(), asio::detached);
  asio::co_spawn(executor, connection->Write(), asio::detached);
}

// `tls`: the context of an HTTPS server, null for plain HTTP.
asio::awaitable<void> Accept(tcp::acceptor& acceptor, State& state, asio::ssl::context* tls) {
  for (;;) {
    asio::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    tcp::socket socket = co_await acceptor.async_accept(token);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);  // each write leaves at once
    if (tls != nullptr) {
      auto connection =
          std::make_shared<Connection<TlsStream>>(TlsStream(std::move(socket), *tls), state);
      asio::co_spawn(acceptor.get_executor(), Serve(std::move(connection)), asio::detached);
    } else {
      auto connection = std::make_shared<Connection<tcp::socket>>(std::move(socket), state);
      asio::co_spawn(acceptor.get_executor(), Serve(std::move(connection)), asio::detached);
    }
  }
}

// ALPN: http/1.1 when the client offers it, else no protocol (there is no HTTP/2 here).
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_length,
               const unsigned char* offered, unsigned int offered_length, void*) {
  static constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  int found = SSL_select_next_proto(&selected, out_length, kHttp11, sizeof(kHttp11), offered,
                                    offered_length);
  if (found != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// The server's TLS context: the certificate chain and key of `tls`, TLS 1.2 and up.
absl::Status MakeTlsContext(const TlsOptions& tls, std::optional<asio::ssl::context>& context) {
  asio::ssl::context& ctx = context.emplace(asio::ssl::context::tls_server);
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1);
  asio::error_code ec;
  ctx.use_certificate_chain_file(tls.cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("fake-llm: cannot use the certificate file ",
                                                   tls.cert_file, ": ", ec.message()));
  }
  ctx.use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("fake-llm: cannot use the key file ", tls.key_file, ": ", ec.message()));
  }
  SSL_CTX_set_alpn_select_cb(ctx.native_handle(), &SelectAlpn, nullptr);
  return absl::OkStatus();
}

}  // namespace

class FakeLlm::Impl {
 public:
  // Declared first: they outlive the loop, whose destruction destroys the connections.
  State state;
  std::optional<asio::ssl::context> tls;  // set for HTTPS
  asio::io_context io{1};
  std::optional<tcp::acceptor> acceptor;
  std::thread thread;
  std::string host;
  uint16_t port = 0;
};

std::string RecordedRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, absl::string_view(name.data(), name.size()))) return value;
  }
  return std::string();
}

Json ToJson(const RecordedRequest& request) {
  Json headers = Json::object();
  for (const auto& [name, value] : request.headers) {
    auto it = headers.find(name);
    if (it == headers.end()) {
      headers[name] = value;
    } else {
      *it = absl::StrCat(it->get<std::string>(), ", ", value);
    }
  }
  return Json{{"method", request.method},
              {"path", request.path},
              {"headers", std::move(headers)},
              {"body", request.body},
              {"json", request.json},
              {"response", request.response},
              {"client_closed", request.client_closed}};
}

FakeLlm::FakeLlm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FakeLlm::~FakeLlm() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

absl::StatusOr<std::unique_ptr<FakeLlm>> FakeLlm::Start(Json script, std::string host,
                                                        uint16_t port, TlsOptions tls) {
  absl::StatusOr<Script> parsed = Script::Parse(script);
  if (!parsed.ok()) return parsed.status();
  auto impl = std::make_unique<Impl>();
  impl->state.Replace(*std::move(parsed));
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("fake-llm: TLS needs both a certificate and a key file");
  }
  if (!tls.cert_file.empty()) {
    absl::Status made = MakeTlsContext(tls, impl->tls);
    if (!made.ok()) return made;
  }

  auto cannot = [&](const asio::error_code& ec) {
    return absl::UnavailableError(
        absl::StrCat("fake-llm: cannot listen on ", host, ":", port, ": ", ec.message()));
  };
  asio::error_code ec;
  tcp::endpoint endpoint;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, port);
  } else {
    tcp::resolver resolver(impl->io);
    tcp::resolver::results_type results = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return cannot(ec);
    if (results.empty()) return cannot(asio::error::host_not_found);
    endpoint = *results.begin();
  }
  tcp::acceptor& acceptor = impl->acceptor.emplace(impl->io);
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return cannot(ec);
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  acceptor.bind(endpoint, ec);
  if (ec) return cannot(ec);
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return cannot(ec);
  tcp::endpoint local = acceptor.local_endpoint(ec);
  if (ec) return cannot(ec);
  impl->port = local.port();
  impl->host = local.address().is_v6() ? absl::StrCat("[", host, "]") : host;

  asio::ssl::context* context = impl->tls.has_value() ? &*impl->tls : nullptr;
  asio::co_spawn(impl->io, Accept(acceptor, impl->state, context), asio::detached);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<FakeLlm>(new FakeLlm(std::move(impl)));
}

absl::StatusOr<Json> FakeLlm::LoadScript(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the script file ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<Json> json = ParseJson(text.str());
  if (!json.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", json.status().message()));
  }
  absl::StatusOr<Script> script = Script::Parse(*json);
  if (!script.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", script.status().message()));
  }
  return *std::move(json);
}

uint16_t FakeLlm::port() const { return impl_->port; }

std::string FakeLlm::base_url() const {
  return absl::StrCat(impl_->tls.has_value() ? "https://" : "http://", impl_->host, ":",
                      impl_->port);
}

absl::Status FakeLlm::SetScript(Json script) {
  absl::StatusOr<Script> parsed = Script::Parse(script);
  if (!parsed.ok()) return parsed.status();
  impl_->state.Replace(*std::move(parsed));
  return absl::OkStatus();
}

void FakeLlm::AdvanceScriptClock(std::chrono::milliseconds by) {
  {
    absl::MutexLock lock(&impl_->state.mu);
    impl_->state.clock_ms += by.count();
  }
  State* state = &impl_->state;
  asio::post(impl_->io, [state] { state->WakeHolding(); });
}

std::vector<RecordedRequest> FakeLlm::requests() const {
  absl::MutexLock lock(&impl_->state.mu);
  return impl_->state.records;
}

bool FakeLlm::WaitForRequests(size_t n, std::chrono::milliseconds limit) {
  State& state = impl_->state;
  absl::MutexLock lock(&state.mu);
  auto enough = [&state, n]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) { return state.records.size() >= n; };
  return state.mu.AwaitWithTimeout(absl::Condition(&enough), absl::FromChrono(limit));
}

bool FakeLlm::WaitForClientClose(size_t request_index, std::chrono::milliseconds limit) {
  State& state = impl_->state;
  absl::MutexLock lock(&state.mu);
  auto closed = [&state, request_index]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
    return request_index < state.records.size() && state.records[request_index].client_closed;
  };
  return state.mu.AwaitWithTimeout(absl::Condition(&closed), absl::FromChrono(limit));
}

}  // namespace baton::fakellm
