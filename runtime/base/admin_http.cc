#include "runtime/base/admin_http.h"

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "asio/awaitable.hpp"
#include "asio/co_spawn.hpp"
#include "asio/detached.hpp"
#include "asio/io_context.hpp"
#include "asio/ip/tcp.hpp"
#include "asio/read_until.hpp"
#include "asio/redirect_error.hpp"
#include "asio/streambuf.hpp"
#include "asio/use_awaitable.hpp"
#include "asio/write.hpp"

namespace baton {

using asio::ip::tcp;

struct AdminHttp::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  Handlers handlers;
  std::thread thread;
};

namespace {

std::string Response(int status, const std::string& reason, const std::string& type,
                     const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: ", type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

std::string Answer(const AdminHttp::Handlers& handlers, std::string_view head) {
  // "GET /path HTTP/1.1"
  size_t sp1 = head.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : head.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos)
    return Response(400, "Bad Request", "text/plain", "bad request\n");
  std::string_view method = head.substr(0, sp1);
  std::string_view path = head.substr(sp1 + 1, sp2 - sp1 - 1);
  if (method != "GET") return Response(405, "Method Not Allowed", "text/plain", "GET only\n");
  if (path == "/metrics") {
    return Response(200, "OK", "text/plain; version=0.0.4",
                    handlers.metrics ? handlers.metrics() : "");
  }
  if (path == "/healthz") return Response(200, "OK", "text/plain", "ok\n");
  if (path == "/readyz") {
    bool ready = !handlers.ready || handlers.ready();
    return ready ? Response(200, "OK", "text/plain", "ready\n")
                 : Response(503, "Service Unavailable", "text/plain", "not ready\n");
  }
  return Response(404, "Not Found", "text/plain", "not found\n");
}

asio::awaitable<void> Serve(tcp::socket socket, const AdminHttp::Handlers& handlers) {
  asio::error_code ec;
  asio::streambuf buffer(8192);
  co_await asio::async_read_until(socket, buffer, "\r\n\r\n",
                                  asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  std::string head(asio::buffers_begin(buffer.data()), asio::buffers_end(buffer.data()));
  std::string reply = Answer(handlers, head.substr(0, head.find("\r\n")));
  co_await asio::async_write(socket, asio::buffer(reply),
                             asio::redirect_error(asio::use_awaitable, ec));
}

asio::awaitable<void> Accept(tcp::acceptor& acceptor, const AdminHttp::Handlers& handlers) {
  while (true) {
    asio::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    asio::co_spawn(acceptor.get_executor(), Serve(std::move(socket), handlers), asio::detached);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminHttp>> AdminHttp::Start(const std::string& address,
                                                            Handlers handlers) {
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("admin address \"", address, "\" is not host:port"));
  }
  auto impl = std::make_unique<Impl>();
  impl->handlers = std::move(handlers);
  asio::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(address.substr(0, colon), ec),
                         static_cast<uint16_t>(port));
  if (ec) return absl::InvalidArgumentError(absl::StrCat("admin address: ", ec.message()));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("admin endpoint ", address, ": ", ec.message()));
  }
  asio::co_spawn(impl->io, Accept(impl->acceptor, impl->handlers), asio::detached);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<AdminHttp>(new AdminHttp(std::move(impl)));
}

AdminHttp::AdminHttp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminHttp::~AdminHttp() {
  impl_->io.stop();
  impl_->thread.join();
}

int AdminHttp::port() const { return impl_->acceptor.local_endpoint().port(); }

}  // namespace baton
