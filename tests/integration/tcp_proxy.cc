#include "tests/integration/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace baton::testing {

namespace {

constexpr size_t kBufferLimit = 256 << 10;  // per direction: reading stops while this is pending

void Wake(int fd) {
  uint64_t one = 1;
  ssize_t ignored = write(fd, &one, sizeof(one));
  (void)ignored;
}

}  // namespace

// One proxied connection: the client's socket and the one to the target, and a byte queue per
// direction.
struct TcpProxy::Pipe {
  struct Direction {
    int from = -1;
    int to = -1;
    std::string pending;  // read from `from`, not yet written to `to`
    bool eof = false;     // `from` has nothing more to send
    bool shut = false;    // ...and everything reached `to`, which was told (SHUT_WR)
  };
  int client = -1;
  int upstream = -1;
  bool paused = false;
  Direction dirs[2];

  ~Pipe() {
    close(client);
    close(upstream);
  }
};

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(const std::string& target) {
  std::unique_ptr<TcpProxy> proxy(new TcpProxy());
  size_t colon = target.rfind(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(target.substr(colon + 1), &proxy->target_port_)) {
    return absl::InvalidArgumentError(absl::StrCat("not host:port: ", target));
  }
  proxy->target_host_ = target.substr(0, colon);
  if (proxy->target_host_ == "localhost") proxy->target_host_ = "127.0.0.1";

  proxy->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (proxy->listen_fd_ < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(proxy->listen_fd_, 64) != 0 ||
      getsockname(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(proxy->listen_fd_);
    return absl::InternalError(absl::StrCat("cannot listen: ", strerror(errno)));
  }
  proxy->port_ = ntohs(addr.sin_port);
  proxy->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (proxy->wake_fd_ < 0) {
    close(proxy->listen_fd_);
    return absl::InternalError("eventfd failed");
  }
  TcpProxy* raw = proxy.get();
  proxy->thread_ = std::thread([raw] { raw->Loop(); });
  return proxy;
}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake(wake_fd_);
  thread_.join();
  absl::MutexLock lock(&mu_);
  pipes_.clear();
  close(listen_fd_);
  close(wake_fd_);
}

std::string TcpProxy::address() const { return absl::StrCat("127.0.0.1:", port_); }

void TcpProxy::Pause() {
  absl::MutexLock lock(&mu_);
  for (auto& pipe : pipes_) pipe->paused = true;
  Wake(wake_fd_);  // the loop stops polling them
}

int TcpProxy::accepted() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

bool TcpProxy::WaitForAccepted(int n, std::chrono::milliseconds limit) {
  absl::MutexLock lock(&mu_);
  auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return accepted_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::FromChrono(limit));
}

void TcpProxy::Loop() {
  std::vector<pollfd> fds;
  while (true) {
    fds.clear();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      fds.push_back({wake_fd_, POLLIN, 0});
      fds.push_back({listen_fd_, POLLIN, 0});
      for (auto& pipe : pipes_) {
        if (pipe->paused) continue;  // not even polled: its bytes stay where they are
        for (const Pipe::Direction& d : pipe->dirs) {
          if (!d.eof && d.pending.size() < kBufferLimit) fds.push_back({d.from, POLLIN, 0});
          if (!d.pending.empty()) fds.push_back({d.to, POLLOUT, 0});
        }
      }
    }
    if (poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
    uint64_t drained;
    ssize_t ignored = read(wake_fd_, &drained, sizeof(drained));
    (void)ignored;
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    Accept();
    for (auto it = pipes_.begin(); it != pipes_.end();) {
      Pipe& pipe = **it;
      if (pipe.paused || Pump(pipe)) {
        ++it;
      } else {
        it = pipes_.erase(it);
      }
    }
  }
}

void TcpProxy::Accept() {
  while (true) {
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0) return;
    ++accepted_;
    int upstream = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(target_port_));
    inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
    // A blocking connect: on loopback it completes (or is refused) at once.
    if (upstream < 0 || connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (upstream >= 0) close(upstream);
      close(client);  // the target is not there: the client sees its connection end
      continue;
    }
    fcntl(upstream, F_SETFL, fcntl(upstream, F_GETFL) | O_NONBLOCK);
    auto pipe = std::make_unique<Pipe>();
    pipe->client = client;
    pipe->upstream = upstream;
    pipe->dirs[0].from = client;
    pipe->dirs[0].to = upstream;
    pipe->dirs[1].from = upstream;
    pipe->dirs[1].to = client;
    pipes_.push_back(std::move(pipe));
  }
}

bool TcpProxy::Pump(Pipe& pipe) {
  char chunk[64 << 10];
  for (Pipe::Direction& d : pipe.dirs) {
    while (!d.eof && d.pending.size() < kBufferLimit) {
      ssize_t n = read(d.from, chunk, sizeof(chunk));
      if (n > 0) {
        d.pending.append(chunk, static_cast<size_t>(n));
      } else if (n == 0) {
        d.eof = true;
      } else if (errno == EAGAIN || errno == EINTR) {
        break;
      } else {
        return false;  // reset: the whole connection goes
      }
    }
    while (!d.pending.empty()) {
      ssize_t n = send(d.to, d.pending.data(), d.pending.size(), MSG_NOSIGNAL);
      if (n > 0) {
        d.pending.erase(0, static_cast<size_t>(n));
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        break;
      } else {
        return false;
      }
    }
    if (d.eof && d.pending.empty() && !d.shut) {
      shutdown(d.to, SHUT_WR);
      d.shut = true;
    }
  }
  return !(pipe.dirs[0].shut && pipe.dirs[1].shut);
}

}  // namespace baton::testing
