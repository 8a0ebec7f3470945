// File: runtime/model/http_client.h
//
// HttpClient: streaming HTTP requests through libcurl's multi interface, driven by the worker's
// Asio event loop. curl's sockets are watched by the loop's reactor and its timeouts run on an
// Asio timer, so a thousand streaming model calls hold a thousand sockets and no thread.
// HTTP/2 is negotiated over TLS (ALPN), HTTP/1.1 otherwise; connections are reused across calls.
//
// A transfer's bytes are handed to the caller from the caller's coroutine, never from inside a
// curl callback, so the caller may do anything with them (including stop the transfer).
#ifndef BATON_RUNTIME_MODEL_HTTP_CLIENT_H_
#define BATON_RUNTIME_MODEL_HTTP_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <stop_token>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "asio/any_io_executor.hpp"
#include "asio/awaitable.hpp"
#include "asio/steady_timer.hpp"
#include "runtime/exec/clock.h"

namespace baton {

struct HttpRequest {
  std::string url;
  std::vector<std::string> headers;  // "name: value"
  std::string body;                  // sent as a POST when not empty, else a GET
  // A PEM file of the CAs that may sign the server's certificate (CURLOPT_CAINFO), in place of
  // the system's; empty: the system's CA store. For a private CA or a test certificate.
  std::string ca_file;
  absl::Duration connect_timeout = absl::Seconds(10);
  // From the start of the transfer to the first byte of the response.
  absl::Duration first_byte_timeout = absl::Seconds(60);
  // Longest silence between two reads once the response has started.
  absl::Duration idle_timeout = absl::Seconds(60);
  // Optional: backpressure. Awaited before each read of the body is handed to `on_body`; while
  // it waits, the transfer buffers at most kMaxBufferedBytes and then stops reading from the
  // socket (the server waits in the TCP window). The idle timeout counts from its return.
  std::function<asio::awaitable<void>()> wait_for_room;
};

struct HttpHead {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased, in order

  // The value of the first header named `name` (lowercase), or "" when absent.
  std::string Header(std::string_view name) const;
};

// HttpClient
//
// Thread-safety: none. Construct it with the executor of a single-threaded event loop (the
// worker's) and call Fetch() only from coroutines on that executor; stop requests must come from
// that thread too. Destroy the client before its loop. Transfers still in flight then are torn
// down; their coroutines, if ever resumed or destroyed, see a failed transfer.
class HttpClient {
 public:
  // Body bytes a transfer holds that its caller has not taken yet; past this it pauses reading.
  static constexpr size_t kMaxBufferedBytes = 64 << 10;

  explicit HttpClient(asio::any_io_executor executor);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs `request`. Calls `on_head` once, when the status line and headers are in, then
  // `on_body` for each read of the body, in order. `on_body` returning false ends the transfer
  // (the connection is closed) and Fetch returns OK.
  //
  // Returns OK when the body ended cleanly (whatever the status); DeadlineExceeded for the
  // connect, first-byte and idle timeouts; Unavailable when the connection failed or broke;
  // Cancelled when `stop` was requested, at once, with the transfer torn down. Messages name the
  // host and the failure, never headers or bodies (they hold keys).
  asio::awaitable<absl::Status> Fetch(HttpRequest request,
                                      std::function<void(const HttpHead&)> on_head,
                                      std::function<bool(std::string_view)> on_body,
                                      std::stop_token stop);

  asio::any_io_executor executor() const { return executor_; }
  // The monotonic clock of its timeouts (one for the process, so it outlives every client).
  static Clock& clock();

  // Transfers in flight (for tests and metrics).
  size_t active() const { return live_.size(); }
  // Transfers that stopped reading because their caller did not take the body (backpressure).
  size_t paused() const { return paused_; }

  struct Socket;
  struct Transfer;

 private:
  static int OnSocket(void* easy, int fd, int what, void* self, void* socket);
  static int OnTimer(void* multi, long timeout_ms, void* self);
  void Watch(const std::shared_ptr<Socket>& socket);
  void Act(int fd, int events);
  void Drain();

  asio::any_io_executor executor_;
  void* multi_ = nullptr;  // CURLM*
  asio::steady_timer timer_;
  std::map<int, std::shared_ptr<Socket>> sockets_;
  std::set<Transfer*> live_;
  size_t paused_ = 0;
};

}  // namespace baton

#endif  // BATON_RUNTIME_MODEL_HTTP_CLIENT_H_
