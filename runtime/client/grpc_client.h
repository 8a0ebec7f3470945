// File: runtime/client/grpc_client.h
//
// How a client of the orchestrator (a worker, a warm server, batonctl, a test) reaches it:
// plaintext or TLS (with a client certificate for mTLS), and a bearer token sent as
// `authorization: Bearer <token>` on every call of the channel (docs/security.md).
#ifndef BATON_RUNTIME_CLIENT_GRPC_CLIENT_H_
#define BATON_RUNTIME_CLIENT_GRPC_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace baton {

struct ClientSecurity {
  std::string token;  // empty: no authorization metadata
  bool tls = false;
  std::string root_pem;  // the CA that signed the orchestrator's certificate; empty: system roots
  std::string cert_pem;  // a client certificate and its key, for mTLS
  std::string key_pem;
};

// Reads the token from the environment variable `token_env` (unset or empty: no token) and the
// PEM files named (empty: none). Any file named implies TLS, as does `tls`. The error names
// the file that cannot be read, never a token.
struct ClientSecurityFlags {
  std::string token_env = "BATON_TOKEN";
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
};
absl::StatusOr<ClientSecurity> LoadClientSecurity(const ClientSecurityFlags& flags);

// A channel to `target` ("host:port" or "unix:/path") with `security` applied.
std::shared_ptr<grpc::Channel> OpenChannel(const std::string& target,
                                           const ClientSecurity& security,
                                           const grpc::ChannelArguments& args = {});

}  // namespace baton

#endif  // BATON_RUNTIME_CLIENT_GRPC_CLIENT_H_
