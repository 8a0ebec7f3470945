// File: tools/gateway/http_server.h
//
// HttpServer: the gateway's HTTP/1.1 server on one Asio executor (docs/gateway.md). Requests are
// parsed by Debian's http-parser (libhttp-parser, nodejs/http-parser 2.9), never by hand; each
// connection is a state machine of asynchronous reads and writes, so thousands of open SSE
// responses cost memory, not threads.
//
// A handler gets the whole request (head and body, within the limits) and answers through its
// HttpConnection: with one whole response, or with a streamed one (chunked transfer encoding),
// written as it goes. While a response streams, the connection keeps reading: the client going
// away is noticed at once (OnClose) and so is one that sends a new request too early. A client
// that does not read what it is sent is dropped once more than `max_buffered` bytes wait for it.
//
// Thread-safety: everything runs on the server's executor; HttpConnection is used from there.
#ifndef BATON_TOOLS_GATEWAY_HTTP_SERVER_H_
#define BATON_TOOLS_GATEWAY_HTTP_SERVER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/ip/tcp.hpp"
#include "asio/steady_timer.hpp"
#include "tools/gateway/http_request.h"

namespace baton::gateway {

struct HttpServerOptions {
  size_t max_header_bytes = 16 * 1024;                // request line and headers
  size_t max_body_bytes = 8 * 1024 * 1024;            // larger: 413, the body is not read
  size_t max_buffered = 1024 * 1024;                  // unsent bytes a streamed response may queue
  absl::Duration header_timeout = absl::Seconds(30);  // to send a whole request head
  absl::Duration idle_timeout = absl::Seconds(75);    // keep-alive between requests
  int max_connections = 20000;
};

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(asio::ip::tcp::socket socket, const HttpServerOptions& options,
                 std::function<void(std::shared_ptr<HttpConnection>, HttpRequest)> handler,
                 std::function<void()> on_gone);
  ~HttpConnection();

  void Start();

  // A whole response. `headers` need not carry Content-Length or Connection.
  void Respond(int status, HttpHeaders headers, std::string body);
  // A streamed response: the head now, then Write() as it goes, then End().
  void StartStream(int status, HttpHeaders headers);
  // False when the client is gone, or was dropped for being too far behind.
  bool Write(std::string_view data);
  void End();

  bool open() const { return !closed_; }
  bool streaming() const { return streaming_; }
  size_t buffered() const { return buffered_; }
  // Called once when the connection closes while a response is under way (the client went
  // away, was too slow, or the server stops). Not called after End().
  void OnClose(std::function<void()> callback) { on_close_ = std::move(callback); }
  // Closes the connection now.
  void Close();

 private:
  void ReadMore();
  void OnRead(size_t n);
  void Dispatch();
  void Send(std::string data);
  void Flush();
  void ArmTimer(absl::Duration after);
  void Fail(int status, std::string_view message);
  void Finished();

  asio::ip::tcp::socket socket_;
  const HttpServerOptions& options_;
  std::function<void(std::shared_ptr<HttpConnection>, HttpRequest)> handler_;
  std::function<void()> on_gone_;
  std::function<void()> on_close_;
  std::unique_ptr<HttpRequestParser> parser_;
  asio::steady_timer timer_;
  std::string peer_;
  char read_buffer_[16 * 1024];
  std::string pending_;  // bytes read but not parsed (a pipelined request waits its turn)
  std::deque<std::string> outbox_;
  size_t buffered_ = 0;
  bool writing_ = false;
  bool reading_ = false;
  bool busy_ = false;       // a request is being answered
  bool streaming_ = false;  // its response is a stream
  bool keep_alive_ = true;
  bool close_after_write_ = false;
  bool closed_ = false;
};

class HttpServer {
 public:
  using Handler = std::function<void(std::shared_ptr<HttpConnection>, HttpRequest)>;

  // Listens on `address` ("host:port"; port 0 picks one) and serves on `executor`.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(asio::any_io_executor executor,
                                                           const std::string& address,
                                                           HttpServerOptions options,
                                                           Handler handler);
  ~HttpServer();
  int port() const;
  size_t connections() const { return connections_; }

 private:
  HttpServer(asio::any_io_executor executor, HttpServerOptions options, Handler handler);
  void Accept();

  asio::ip::tcp::acceptor acceptor_;
  HttpServerOptions options_;
  Handler handler_;
  size_t connections_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The reason phrase of an HTTP status.
const char* StatusText(int status);
// Percent-decodes `text` (a path segment or query value); "+" stays "+" in paths.
std::string PercentDecode(std::string_view text, bool plus_is_space = false);

}  // namespace baton::gateway

#endif  // BATON_TOOLS_GATEWAY_HTTP_SERVER_H_
