// baton-gateway: baton's web face (docs/gateway.md). An HTTP/1.1 server on one event loop in
// front of the orchestrator's Sessions service: the AI SDK's chat transport (useChat works
// unchanged), the warm side of head starts, a REST/SSE mirror of Sessions, and the demo page.
//
//   baton-gateway --listen 127.0.0.1:8080 --orchestrator unix:/run/baton.sock --agent chat
//
// Prints "listening <host:port>" once it serves; SIGTERM or SIGINT stop it.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "asio/io_context.hpp"
#include "asio/signal_set.hpp"
#include "grpcpp/create_channel.h"
#include "runtime/base/flags.h"
#include "runtime/base/log.h"
#include "runtime/client/grpc_client.h"
#include "tools/gateway/gateway.h"
#include "tools/gateway/http_server.h"
#include "tools/gateway/sessions_client.h"

#ifndef BATON_WEB_DIR
#define BATON_WEB_DIR ""
#endif

ABSL_FLAG(std::string, listen, "127.0.0.1:8080", "host:port to serve HTTP on (port 0 picks one)");
ABSL_FLAG(std::string, orchestrator, "127.0.0.1:7400", "the orchestrator: host:port or unix:/path");
ABSL_FLAG(std::string, agent, "", "the agent of chats whose request names none");
ABSL_FLAG(std::string, base, "/api/chat", "the path of the AI SDK chat transport (its `api`)");
ABSL_FLAG(std::string, web_dir, BATON_WEB_DIR,
          "the demo page's files (the build's web/ directory by default); empty: no page");
ABSL_FLAG(std::string, static_dir, "", "a directory of your own files to serve");
ABSL_FLAG(std::string, cors_origins, "",
          "comma-separated Origins allowed to call from a browser (\"*\": any); empty: CORS off");
ABSL_FLAG(bool, public_create, false,
          "let requests without a token create chats (each gets its chat token in the answer)");
ABSL_FLAG(std::string, token_env, "BATON_TOKEN",
          "the environment variable with the gateway's own service token");
ABSL_FLAG(bool, tls, false, "dial the orchestrator over TLS (implied by the --tls_* files)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA of the orchestrator's certificate");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate, for mTLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(int64_t, max_body_bytes, 8 << 20, "the largest request body taken");
ABSL_FLAG(int64_t, max_buffered_bytes, 1 << 20,
          "unsent bytes a streamed answer may queue for a slow client before it is dropped");
ABSL_FLAG(int32_t, max_connections, 20000, "HTTP connections open at once");
ABSL_FLAG(int64_t, keep_alive_ms, 15000,
          "a streamed answer silent this long gets a keep-alive comment (and, before its first "
          "chunk, a check that its run did not fail)");
ABSL_FLAG(bool, head_start, true,
          "run step 1 of a chat's first message here while a worker boots (needs a provider key "
          "in the environment or --base_url)");
ABSL_FLAG(std::string, provider, "", "head starts: the provider (default: the agent's announced)");
ABSL_FLAG(std::string, model, "", "head starts: the model (default: the agent's announced)");
ABSL_FLAG(std::string, base_url, "",
          "head starts: the provider's base URL (default: its public one)");
ABSL_FLAG(std::string, api_key_env, "",
          "head starts: the environment variable with the provider key (default: "
          "ANTHROPIC_API_KEY or OPENAI_API_KEY)");

int main(int argc, char** argv) {
  baton::SetUpHelp(
      "the AI SDK chat transport, head starts and a REST mirror of Sessions, "
      "over HTTP/SSE in front of a baton orchestrator");
  absl::ParseCommandLine(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<baton::ClientSecurity> security =
      baton::LoadClientSecurity({.token_env = absl::GetFlag(FLAGS_token_env),
                                 .tls = absl::GetFlag(FLAGS_tls),
                                 .tls_ca = absl::GetFlag(FLAGS_tls_ca),
                                 .tls_cert = absl::GetFlag(FLAGS_tls_cert),
                                 .tls_key = absl::GetFlag(FLAGS_tls_key)});
  if (!security.ok()) {
    std::fprintf(stderr, "baton-gateway: %s\n", security.status().ToString().c_str());
    return 1;
  }
  // Tokens go per call (the browser's own, or this one), not on the channel.
  std::string own_token = security->token;
  security->token.clear();
  unsetenv(absl::GetFlag(FLAGS_token_env).c_str());

  asio::io_context io(1);
  std::shared_ptr<grpc::Channel> channel =
      baton::OpenChannel(absl::GetFlag(FLAGS_orchestrator), *security);
  baton::gateway::SessionsClient sessions(channel, io.get_executor(), own_token);

  baton::gateway::GatewayOptions options;
  options.base = absl::GetFlag(FLAGS_base);
  options.agent = absl::GetFlag(FLAGS_agent);
  options.web_dir = absl::GetFlag(FLAGS_web_dir);
  options.static_dir = absl::GetFlag(FLAGS_static_dir);
  options.public_create = absl::GetFlag(FLAGS_public_create);
  options.keep_alive =
      absl::Milliseconds(std::max<int64_t>(10, absl::GetFlag(FLAGS_keep_alive_ms)));
  options.head_start.enabled = absl::GetFlag(FLAGS_head_start);
  options.head_start.provider = absl::GetFlag(FLAGS_provider);
  options.head_start.model = absl::GetFlag(FLAGS_model);
  options.head_start.base_url = absl::GetFlag(FLAGS_base_url);
  options.head_start.api_key_env = absl::GetFlag(FLAGS_api_key_env);
  for (absl::string_view origin :
       absl::StrSplit(absl::GetFlag(FLAGS_cors_origins), ',', absl::SkipEmpty())) {
    options.cors_origins.emplace_back(origin);
  }
  baton::gateway::Gateway gateway(io.get_executor(), sessions, options);

  baton::gateway::HttpServerOptions http;
  http.max_body_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes));
  http.max_buffered = static_cast<size_t>(absl::GetFlag(FLAGS_max_buffered_bytes));
  http.max_connections = absl::GetFlag(FLAGS_max_connections);
  absl::StatusOr<std::unique_ptr<baton::gateway::HttpServer>> server =
      baton::gateway::HttpServer::Start(
          io.get_executor(), absl::GetFlag(FLAGS_listen), http,
          [&gateway](std::shared_ptr<baton::gateway::HttpConnection> connection,
                     baton::gateway::HttpRequest request) {
            gateway.Handle(std::move(connection), std::move(request));
          });
  if (!server.ok()) {
    std::fprintf(stderr, "baton-gateway: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::string listen = absl::GetFlag(FLAGS_listen);
  std::printf("listening %s:%d\n", listen.substr(0, listen.rfind(':')).c_str(), (*server)->port());
  std::fflush(stdout);
  baton::LogJson("info", "gateway serving",
                 {{"listen", listen},
                  {"orchestrator", absl::GetFlag(FLAGS_orchestrator)},
                  {"web_dir", options.web_dir}});

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const asio::error_code&, int) {
    baton::LogJson("info", "gateway stopping");
    server->reset();
    io.stop();
  });
  io.run();
  return 0;
}
