// File: runtime/base/admin_http.h
//
// AdminHttp: the small HTTP/1.1 endpoint a baton process serves next to its gRPC port, for
// Prometheus and probes (not a control channel): GET /metrics (text exposition), /healthz
// (the process is alive) and /readyz (it takes work). One thread of its own; each request is
// answered and the connection closed.
#ifndef BATON_RUNTIME_BASE_ADMIN_HTTP_H_
#define BATON_RUNTIME_BASE_ADMIN_HTTP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace baton {

class AdminHttp {
 public:
  struct Handlers {
    std::function<std::string()> metrics;
    std::function<bool()> ready;  // null: always ready
  };

  // Listens on `host:port` (port 0 picks one) and serves until destroyed.
  static absl::StatusOr<std::unique_ptr<AdminHttp>> Start(const std::string& address,
                                                          Handlers handlers);
  ~AdminHttp();
  int port() const;

 private:
  struct Impl;
  explicit AdminHttp(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton

#endif  // BATON_RUNTIME_BASE_ADMIN_HTTP_H_
