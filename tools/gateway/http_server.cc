#include "tools/gateway/http_server.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "asio/buffer.hpp"
#include "asio/post.hpp"
#include "asio/write.hpp"
#include "hooks/json.h"
#include "runtime/base/log.h"

namespace baton::gateway {

using asio::ip::tcp;

const char* StatusText(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

// ---- a connection -----------------------------------------------------------------------------

HttpConnection::HttpConnection(
    tcp::socket socket, const HttpServerOptions& options,
    std::function<void(std::shared_ptr<HttpConnection>, HttpRequest)> handler,
    std::function<void()> on_gone)
    : socket_(std::move(socket)),
      options_(options),
      handler_(std::move(handler)),
      on_gone_(std::move(on_gone)),
      parser_(
          std::make_unique<HttpRequestParser>(options.max_header_bytes, options.max_body_bytes)),
      timer_(socket_.get_executor()) {
  asio::error_code ec;
  tcp::endpoint remote = socket_.remote_endpoint(ec);
  if (!ec) peer_ = absl::StrCat(remote.address().to_string(), ":", remote.port());
  socket_.set_option(tcp::no_delay(true), ec);
}

HttpConnection::~HttpConnection() {
  if (on_gone_) on_gone_();
}

void HttpConnection::Start() {
  ArmTimer(options_.header_timeout);
  ReadMore();
}

void HttpConnection::ArmTimer(absl::Duration after) {
  timer_.expires_after(absl::ToChronoNanoseconds(after));
  std::weak_ptr<HttpConnection> weak = weak_from_this();
  timer_.async_wait([weak](const asio::error_code& ec) {
    std::shared_ptr<HttpConnection> self = weak.lock();
    if (ec || !self || self->closed_) return;
    // A request head that never completes, or a keep-alive connection left idle. A response
    // under way is the handler's to end; the timer is not armed then.
    if (self->busy_) return;
    if (self->parser_->head_bytes() > 0) {
      self->Fail(408, "the request was not sent in time");
    } else {
      self->Close();
    }
  });
}

void HttpConnection::ReadMore() {
  if (reading_ || closed_) return;
  reading_ = true;
  std::shared_ptr<HttpConnection> self = shared_from_this();
  socket_.async_read_some(asio::buffer(read_buffer_), [self](const asio::error_code& ec, size_t n) {
    self->reading_ = false;
    if (ec) {
      self->Close();
      return;
    }
    self->OnRead(n);
  });
}

void HttpConnection::OnRead(size_t n) {
  pending_.append(read_buffer_, n);
  if (busy_) {
    // The client sent more while its response is under way (pipelining): it waits, within the
    // head limit. What matters now is that the read stays open, to notice the client leave.
    if (pending_.size() > options_.max_header_bytes + options_.max_body_bytes) Close();
    ReadMore();
    return;
  }
  Dispatch();
}

void HttpConnection::Dispatch() {
  while (!busy_ && !closed_ && !pending_.empty()) {
    size_t used = parser_->Feed(pending_);
    pending_.erase(0, used);
    if (parser_->error_status() != 0) {
      Fail(parser_->error_status(), parser_->error());
      return;
    }
    if (!parser_->complete()) {
      if (used == 0) break;
      continue;
    }
    HttpRequest request = parser_->Take(peer_, &keep_alive_);
    busy_ = true;
    timer_.cancel();
    handler_(shared_from_this(), std::move(request));
  }
  // Reading goes on while a request is answered too: a client that goes away is noticed then.
  if (!closed_) ReadMore();
}

void HttpConnection::Respond(int status, HttpHeaders headers, std::string body) {
  if (closed_ || !busy_ || streaming_) return;
  std::string head = absl::StrCat("HTTP/1.1 ", status, " ", StatusText(status), "\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  if (status != 204 && status != 304) {
    absl::StrAppend(&head, "Content-Length: ", body.size(), "\r\n");
  }
  if (!keep_alive_) absl::StrAppend(&head, "Connection: close\r\n");
  head.append("\r\n");
  head.append(body);
  Send(std::move(head));
  Finished();
}

void HttpConnection::StartStream(int status, HttpHeaders headers) {
  if (closed_ || !busy_ || streaming_) return;
  streaming_ = true;
  std::string head = absl::StrCat("HTTP/1.1 ", status, " ", StatusText(status), "\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  head.append("Transfer-Encoding: chunked\r\n");
  if (!keep_alive_) head.append("Connection: close\r\n");
  head.append("\r\n");
  Send(std::move(head));
  ReadMore();  // to notice the client going away
}

bool HttpConnection::Write(std::string_view data) {
  if (closed_ || !streaming_) return false;
  if (data.empty()) return true;
  if (buffered_ + data.size() > options_.max_buffered) {
    // The client does not read: it is dropped, and reads again from where it was (nothing it
    // was sent is lost on `.out`).
    LogJson("warn", "a client that does not read its answer: dropped",
            {{"buffered_bytes", static_cast<int64_t>(buffered_)},
             {"limit", static_cast<int64_t>(options_.max_buffered)}});
    Close();
    return false;
  }
  char size[32];
  int len = snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string chunk;
  chunk.reserve(static_cast<size_t>(len) + data.size() + 2);
  chunk.append(size, static_cast<size_t>(len));
  chunk.append(data);
  chunk.append("\r\n");
  Send(std::move(chunk));
  return true;
}

void HttpConnection::End() {
  if (closed_ || !streaming_) return;
  Send("0\r\n\r\n");
  streaming_ = false;
  on_close_ = nullptr;
  Finished();
}

void HttpConnection::Finished() {
  busy_ = false;
  if (!keep_alive_) {
    close_after_write_ = true;
    if (!writing_) Close();
    return;
  }
  ArmTimer(options_.idle_timeout);
  // The next request, when the client already sent it.
  std::shared_ptr<HttpConnection> self = shared_from_this();
  asio::post(socket_.get_executor(), [self] { self->Dispatch(); });
}

void HttpConnection::Send(std::string data) {
  buffered_ += data.size();
  outbox_.push_back(std::move(data));
  Flush();
}

void HttpConnection::Flush() {
  if (writing_ || closed_ || outbox_.empty()) return;
  writing_ = true;
  std::vector<asio::const_buffer> buffers;
  size_t count = std::min<size_t>(outbox_.size(), 64);
  for (size_t i = 0; i < count; ++i) buffers.push_back(asio::buffer(outbox_[i]));
  std::shared_ptr<HttpConnection> self = shared_from_this();
  asio::async_write(socket_, buffers, [self, count](const asio::error_code& ec, size_t) {
    self->writing_ = false;
    if (ec || self->closed_) {
      // The buffers of this write are freed only now that it is over (Close leaves them).
      self->outbox_.clear();
      self->buffered_ = 0;
      self->Close();
      return;
    }
    for (size_t i = 0; i < count; ++i) {
      self->buffered_ -= self->outbox_.front().size();
      self->outbox_.pop_front();
    }
    if (!self->outbox_.empty()) {
      self->Flush();
    } else if (self->close_after_write_) {
      self->Close();
    }
  });
}

void HttpConnection::Fail(int status, std::string_view message) {
  keep_alive_ = false;
  busy_ = true;
  const char* code = status == 413 || status == 431 ? "RESOURCE_EXHAUSTED"
                     : status == 408                ? "DEADLINE_EXCEEDED"
                                                    : "INVALID_ARGUMENT";
  std::string body = DumpJson(Json{{"error", {{"code", code}, {"message", std::string(message)}}}});
  Respond(status, {{"Content-Type", "application/json"}}, std::move(body));
}

void HttpConnection::Close() {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  asio::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  // A write in flight still reads its buffers from the outbox: they go when it completes.
  if (!writing_) {
    outbox_.clear();
    buffered_ = 0;
  }
  if (busy_ && on_close_) std::exchange(on_close_, nullptr)();
}

// ---- the server -------------------------------------------------------------------------------

HttpServer::HttpServer(asio::any_io_executor executor, HttpServerOptions options, Handler handler)
    : acceptor_(executor), options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  *alive_ = false;
  asio::error_code ec;
  acceptor_.close(ec);
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(asio::any_io_executor executor,
                                                              const std::string& address,
                                                              HttpServerOptions options,
                                                              Handler handler) {
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  asio::error_code ec;
  asio::ip::address ip = asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: \"", host, "\" is not an address"));
  }
  std::unique_ptr<HttpServer> server(
      new HttpServer(std::move(executor), std::move(options), std::move(handler)));
  tcp::endpoint endpoint(ip, static_cast<uint16_t>(port));
  server->acceptor_.open(endpoint.protocol(), ec);
  if (!ec) server->acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) server->acceptor_.bind(endpoint, ec);
  if (!ec) server->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", ec.message()));
  }
  server->Accept();
  return server;
}

int HttpServer::port() const {
  asio::error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

void HttpServer::Accept() {
  std::weak_ptr<bool> alive = alive_;
  acceptor_.async_accept([this, alive](const asio::error_code& ec, tcp::socket socket) {
    if (alive.expired() || !*alive.lock()) return;
    if (!ec) {
      if (connections_ >= static_cast<size_t>(options_.max_connections)) {
        asio::error_code ignored;
        socket.close(ignored);  // over the limit: refused before anything is read
      } else {
        ++connections_;
        auto connection =
            std::make_shared<HttpConnection>(std::move(socket), options_, handler_, [this, alive] {
              if (!alive.expired() && *alive.lock()) --connections_;
            });
        connection->Start();
      }
    }
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      Accept();
      return;
    }
    // Out of file descriptors, say: try again shortly rather than spin on the one thread.
    baton::LogJson("warn", "accepting a connection failed", {{"error", ec.message()}});
    auto timer = std::make_shared<asio::steady_timer>(acceptor_.get_executor(),
                                                      std::chrono::milliseconds(100));
    timer->async_wait([this, alive, timer](const asio::error_code& waited) {
      if (!waited && !alive.expired() && *alive.lock()) Accept();
    });
  });
}

}  // namespace baton::gateway
