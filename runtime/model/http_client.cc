#include "runtime/model/http_client.h"

#include <curl/curl.h>

#include <cctype>
#include <mutex>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "asio/posix/stream_descriptor.hpp"
#include "runtime/exec/waiter.h"

namespace baton {
namespace {

CURLM* Multi(void* p) { return static_cast<CURLM*>(p); }

// "https://api.example.com:443" from a URL: what an error message may say about the peer. The
// path and query are left out, since some providers take keys there.
std::string Origin(std::string_view url) {
  size_t scheme = url.find("://");
  size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  return std::string(url.substr(0, end));
}

absl::Status TransferError(CURLcode code, const char* detail, std::string_view url) {
  std::string what = absl::StrCat(Origin(url), ": ", *detail ? detail : curl_easy_strerror(code));
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(absl::StrCat("connect timeout: ", what));
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      return absl::UnavailableError(absl::StrCat("cannot connect: ", what));
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return absl::FailedPreconditionError(what);
    default:
      return absl::UnavailableError(absl::StrCat("connection failed: ", what));
  }
}

}  // namespace

std::string HttpHead::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

struct HttpClient::Socket {
  Socket(asio::any_io_executor executor, int fd) : descriptor(std::move(executor), fd), fd(fd) {}
  // curl owns the descriptor: it is only lent to the reactor, never closed here.
  ~Socket() {
    if (descriptor.is_open()) descriptor.release();
  }
  asio::posix::stream_descriptor descriptor;
  int fd;
  int what = 0;  // CURL_POLL_*
  bool reading = false;
  bool writing = false;
  bool removed = false;
};

struct HttpClient::Transfer {
  Transfer(asio::any_io_executor executor, Clock& clock) : clock(clock), waiter(executor, clock) {}

  static size_t OnHeader(char* data, size_t size, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    absl::string_view line(data, size * n);
    t->first_byte = true;
    t->last_read = t->clock.Now();
    if (absl::StartsWith(line, "HTTP/")) {  // a new response: 1xx interim or the final one
      t->head = HttpHead();
      size_t sp = line.find(' ');
      int status = 0;
      if (sp != absl::string_view::npos &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(sp + 1, 3)), &status)) {
        t->head.status = status;
      }
      return size * n;
    }
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty()) {
      if (t->head.status >= 200) {
        t->head_ready = true;
        t->waiter.Notify();
      }
      return size * n;
    }
    size_t colon = trimmed.find(':');
    if (colon != absl::string_view::npos) {
      t->head.headers.emplace_back(
          absl::AsciiStrToLower(trimmed.substr(0, colon)),
          std::string(absl::StripAsciiWhitespace(trimmed.substr(colon + 1))));
    }
    return size * n;
  }

  static size_t OnWrite(char* data, size_t size, size_t n, void* self) {
    auto* t = static_cast<Transfer*>(self);
    if (t->buffer.size() >= HttpClient::kMaxBufferedBytes) {
      // The caller is not taking the body (it waits for room): curl keeps these bytes and reads
      // no more until Fetch resumes the transfer.
      if (!t->paused && t->client != nullptr) ++t->client->paused_;
      t->paused = true;
      return CURL_WRITEFUNC_PAUSE;
    }
    t->buffer.append(data, size * n);
    t->first_byte = true;
    t->last_read = t->clock.Now();
    t->waiter.Notify();
    return size * n;
  }

  // The easy handle's options for `request`: its URL, headers, body, HTTP/2, timeouts, CA file
  // and the callbacks above.
  void Configure(const HttpRequest& request) {
    for (const std::string& h : request.headers) headers = curl_slist_append(headers, h.c_str());
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    CURL* e = easy;
    curl_easy_setopt(e, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    if (!request.body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.size()));
      curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, request.body.c_str());
    }
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_2TLS));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (!request.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, request.ca_file.c_str());
    curl_easy_setopt(
        e, CURLOPT_CONNECTTIMEOUT_MS,
        long(std::max<int64_t>(1, absl::ToInt64Milliseconds(request.connect_timeout))));
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, this);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::OnWrite);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  }

  // The head is in: its final status line and headers, a byte of the body, or a clean end.
  bool HeadIn() const { return head_ready || !buffer.empty() || (done && result == CURLE_OK); }

  // The head to hand over; without a header block (HTTP/0.9-like), the status curl saw.
  const HttpHead& Head() {
    if (!head_ready) {
      long code = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
      head.status = int(code);
    }
    return head;
  }

  // The body bytes buffered so far, taken; a transfer paused for them reads on.
  std::string TakeBody() {
    std::string bytes = std::move(buffer);
    buffer.clear();
    if (paused && in_multi) {
      paused = false;
      --client->paused_;
      curl_easy_pause(easy, CURLPAUSE_CONT);  // may hand over what curl kept at once
    }
    return bytes;
  }

  // When the wait for the next bytes ends: the first-byte deadline, then the idle one.
  absl::Time Deadline(const HttpRequest& request, absl::Time start) const {
    return first_byte ? last_read + request.idle_timeout : start + request.first_byte_timeout;
  }

  // After a wait timed out: DeadlineExceeded when a deadline is still passed, else OK.
  absl::Status Overdue(const HttpRequest& request, absl::Time start) const {
    // A byte may have come in while the timer fired; only a deadline still passed counts.
    absl::Time now = clock.Now();
    if (!first_byte && now >= start + request.first_byte_timeout) {
      return absl::DeadlineExceededError(
          absl::StrCat("no response from ", Origin(request.url), " within ",
                       absl::FormatDuration(request.first_byte_timeout)));
    }
    if (first_byte && now >= last_read + request.idle_timeout) {
      return absl::DeadlineExceededError(absl::StrCat(Origin(request.url), " sent nothing for ",
                                                      absl::FormatDuration(request.idle_timeout)));
    }
    return absl::OkStatus();
  }

  // The end of a transfer curl finished: OK, or the error it ended with.
  absl::Status Result(std::string_view url) const {
    if (result != CURLE_OK) return TransferError(result, error, url);
    return absl::OkStatus();
  }

  Clock& clock;
  Waiter waiter;
  HttpClient* client = nullptr;  // null once the client is gone
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  bool in_multi = false;
  char error[CURL_ERROR_SIZE] = {};

  HttpHead head;
  bool head_ready = false;
  bool first_byte = false;
  absl::Time last_read;
  std::string buffer;   // body bytes not yet handed to the caller
  bool paused = false;  // OnWrite paused the transfer: the buffer was full
  bool done = false;
  CURLcode result = CURLE_OK;
};

Clock& HttpClient::clock() {
  static RealClock* clock = new RealClock();  // never destroyed: parked waits may still read it
  return *clock;
}

HttpClient::HttpClient(asio::any_io_executor executor) : executor_(executor), timer_(executor) {
  static std::once_flag global;
  std::call_once(global, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  multi_ = curl_multi_init();
  curl_multi_setopt(Multi(multi_), CURLMOPT_SOCKETFUNCTION, &HttpClient::OnSocket);
  curl_multi_setopt(Multi(multi_), CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(Multi(multi_), CURLMOPT_TIMERFUNCTION, &HttpClient::OnTimer);
  curl_multi_setopt(Multi(multi_), CURLMOPT_TIMERDATA, this);
}

HttpClient::~HttpClient() {
  for (Transfer* t : live_) {
    if (t->in_multi) curl_multi_remove_handle(Multi(multi_), t->easy);
    t->in_multi = false;
    t->client = nullptr;
    t->done = true;
    t->result = CURLE_ABORTED_BY_CALLBACK;
  }
  // Closing the multi handle closes its cached connections, which reports their removal here.
  curl_multi_cleanup(Multi(multi_));
  timer_.cancel();
  for (auto& [fd, socket] : sockets_) {
    socket->removed = true;
    socket->descriptor.release();
  }
}

int HttpClient::OnSocket(void*, int fd, int what, void* self, void*) {
  auto* client = static_cast<HttpClient*>(self);
  auto it = client->sockets_.find(fd);
  if (what == CURL_POLL_REMOVE) {
    if (it != client->sockets_.end()) {
      it->second->removed = true;
      it->second->descriptor.release();  // cancels its waits; curl closes the fd
      client->sockets_.erase(it);
    }
    return 0;
  }
  if (it == client->sockets_.end()) {
    it = client->sockets_.emplace(fd, std::make_shared<Socket>(client->executor_, fd)).first;
  }
  it->second->what = what;
  client->Watch(it->second);
  return 0;
}

void HttpClient::Watch(const std::shared_ptr<Socket>& socket) {
  if ((socket->what & CURL_POLL_IN) && !socket->reading) {
    socket->reading = true;
    socket->descriptor.async_wait(asio::posix::descriptor_base::wait_read,
                                  [this, socket](const asio::error_code& ec) {
                                    socket->reading = false;
                                    if (ec || socket->removed) return;
                                    Act(socket->fd, CURL_CSELECT_IN);
                                    if (!socket->removed) Watch(socket);
                                  });
  }
  if ((socket->what & CURL_POLL_OUT) && !socket->writing) {
    socket->writing = true;
    socket->descriptor.async_wait(asio::posix::descriptor_base::wait_write,
                                  [this, socket](const asio::error_code& ec) {
                                    socket->writing = false;
                                    if (ec || socket->removed) return;
                                    Act(socket->fd, CURL_CSELECT_OUT);
                                    if (!socket->removed) Watch(socket);
                                  });
  }
}

int HttpClient::OnTimer(void*, long timeout_ms, void* self) {
  auto* client = static_cast<HttpClient*>(self);
  if (timeout_ms < 0) {
    client->timer_.cancel();
    return 0;
  }
  // Never act from inside curl: even a zero timeout goes through the loop.
  client->timer_.expires_after(std::chrono::milliseconds(timeout_ms));
  client->timer_.async_wait([client](const asio::error_code& ec) {
    if (!ec) client->Act(CURL_SOCKET_TIMEOUT, 0);
  });
  return 0;
}

void HttpClient::Act(int fd, int events) {
  int running = 0;
  curl_multi_socket_action(Multi(multi_), fd, events, &running);
  Drain();
}

void HttpClient::Drain() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(Multi(multi_), &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode result = msg->data.result;
    Transfer* t = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &t);
    curl_multi_remove_handle(Multi(multi_), easy);
    t->in_multi = false;
    t->done = true;
    t->result = result;
    t->waiter.Notify();
  }
}

asio::awaitable<absl::Status> HttpClient::Fetch(HttpRequest request,
                                                std::function<void(const HttpHead&)> on_head,
                                                std::function<bool(std::string_view)> on_body,
                                                std::stop_token stop) {
  auto t = std::make_unique<Transfer>(executor_, clock());
  t->easy = curl_easy_init();
  if (t->easy == nullptr) co_return absl::ResourceExhaustedError("curl_easy_init failed");
  t->client = this;
  live_.insert(t.get());
  // Whatever way this coroutine ends (even destroyed unresumed), the transfer leaves the multi
  // handle before its state goes away.
  struct Cleanup {
    Transfer* t;
    ~Cleanup() {
      if (t->client != nullptr) {
        if (t->paused) --t->client->paused_;
        if (t->in_multi) curl_multi_remove_handle(Multi(t->client->multi_), t->easy);
        t->client->live_.erase(t);
      }
      curl_easy_cleanup(t->easy);
      curl_slist_free_all(t->headers);
    }
  } cleanup{t.get()};

  t->Configure(request);

  const absl::Time start = clock().Now();
  if (CURLMcode mc = curl_multi_add_handle(Multi(multi_), t->easy); mc != CURLM_OK) {
    co_return absl::InternalError(absl::StrCat("curl_multi_add_handle: ", curl_multi_strerror(mc)));
  }
  t->in_multi = true;

  bool head_delivered = false;
  for (;;) {
    if (!head_delivered && t->HeadIn()) {
      head_delivered = true;
      on_head(t->Head());
      if (stop.stop_requested()) co_return absl::CancelledError("stopped");
    }
    if (head_delivered && !t->buffer.empty()) {
      if (request.wait_for_room) {
        co_await request.wait_for_room();
        if (stop.stop_requested()) co_return absl::CancelledError("stopped");
        // Our own pause is no silence of the server's: the idle timeout counts from here.
        t->last_read = std::max(t->last_read, clock().Now());
      }
      std::string bytes = t->TakeBody();
      if (!on_body(bytes)) co_return absl::OkStatus();
      if (stop.stop_requested()) co_return absl::CancelledError("stopped");
      continue;
    }
    if (t->done) co_return t->Result(request.url);
    absl::Time deadline = t->Deadline(request, start);
    Waiter::Result r = co_await t->waiter.Wait(deadline, stop);
    if (r == Waiter::Result::kStopped) co_return absl::CancelledError("stopped");
    if (r == Waiter::Result::kTimeout) {
      if (absl::Status overdue = t->Overdue(request, start); !overdue.ok()) co_return overdue;
    }
  }
}

}  // namespace baton
