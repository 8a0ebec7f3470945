// File: tests/integration/tcp_proxy.h
//
// TcpProxy: a loopback TCP proxy for fault tests. It listens on 127.0.0.1 (an ephemeral port)
// and forwards every connection it accepts to a target, bytes both ways, on a thread of its own
// (non-blocking sockets and poll). Pause() makes the connections open at that moment stall:
// nothing more is forwarded on them either way, yet their sockets stay open, so both ends see a
// healthy TCP connection that carries nothing (a stream that stalls while TCP stays up).
// Connections accepted after a pause are forwarded normally.
#ifndef BATON_TESTS_INTEGRATION_TCP_PROXY_H_
#define BATON_TESTS_INTEGRATION_TCP_PROXY_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace baton::testing {

class TcpProxy {
 public:
  // Forwards to `target`, "host:port" (an IPv4 address or "localhost").
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(const std::string& target);
  ~TcpProxy();  // closes every socket, paused ones too, and joins the thread
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // "127.0.0.1:<port>", for a client to dial.
  std::string address() const;
  // Stops forwarding on every connection open now, keeping its sockets open. Once it returns,
  // no byte more passes on those connections.
  void Pause();
  // Connections accepted so far.
  int accepted() const;
  // Blocks until `n` connections were accepted in all; false after `limit`.
  bool WaitForAccepted(int n, std::chrono::milliseconds limit);

 private:
  struct Pipe;
  TcpProxy() = default;
  void Loop();
  void Accept() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves what can be moved from `from` to `to`; false when the pipe is finished.
  bool Pump(Pipe& pipe) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string target_host_;
  int target_port_ = 0;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_fd_ = -1;  // an eventfd: Pause and the destructor wake the loop
  std::thread thread_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<Pipe>> pipes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace baton::testing

#endif  // BATON_TESTS_INTEGRATION_TCP_PROXY_H_
