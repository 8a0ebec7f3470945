// baton-orchestrator: the reference control plane on an embedded SQLite store
// (docs/orchestrator.md). Workers dial it (WorkerGateway), clients use Sessions.
//
//   baton-orchestrator --listen 127.0.0.1:7400 --db baton.db [--admin 127.0.0.1:9400]
//
// Prints "listening <address>" per listening address once it serves (port 0 picks a port).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "runtime/base/admin_http.h"
#include "runtime/base/flags.h"
#include "runtime/base/log.h"
#include "runtime/base/parse_errors.h"
#include "runtime/protocol/wire.h"
#include "tools/orchestrator/orchestrator.h"

ABSL_FLAG(std::vector<std::string>, listen, {"127.0.0.1:7400"},
          "gRPC addresses, comma separated: host:port or unix:/path");
ABSL_FLAG(std::string, db, "baton.db", "the SQLite file of the store (created when missing)");
ABSL_FLAG(bool, durable, false, "sync every commit to disk (synchronous=FULL)");
ABSL_FLAG(std::string, admin, "", "host:port of the HTTP /metrics, /healthz, /readyz endpoint");
ABSL_FLAG(int64_t, heartbeat_ms, 5000, "worker heartbeat interval, sent in Welcome");
ABSL_FLAG(int32_t, heartbeat_misses, 3, "missed heartbeats after which a worker stream closes");
ABSL_FLAG(int64_t, lease_ms, 30000, "run lease TTL");
ABSL_FLAG(int64_t, accept_ms, 5000, "deadline for a worker to accept an assignment");
ABSL_FLAG(int64_t, max_outbox_mb, 32,
          "MiB queued for one worker stream and not yet written, above which the worker is taken "
          "to have stopped reading and its stream is closed");
ABSL_FLAG(std::string, auth, "",
          "the auth file: service tokens with scopes, the chat-token key (docs/security.md); "
          "empty: every call is allowed");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve TLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA: require client certificates it signed (mTLS); needs --tls_cert");
ABSL_FLAG(int64_t, max_in_records, 100000, "most .in records one chat may hold");
ABSL_FLAG(int32_t, max_reads, 10000, "most Read streams open at once");
ABSL_FLAG(int32_t, max_reads_per_chat, 64, "most Read streams open at once on one chat");
ABSL_FLAG(int32_t, max_runs_per_worker, 10000,
          "most runs assigned to one worker at once, whatever capacity it announces (10,000: "
          "the waiting chats one worker is built to hold)");
ABSL_FLAG(int64_t, handover_timeout_ms, 30000,
          "a head start's handover window when no connected worker announced its agent's own");
ABSL_FLAG(int64_t, max_frame_bytes, 4 << 20,
          "largest frame read or sent on a worker stream (64 KiB to 256 MiB); every gRPC message "
          "is limited to this plus 1 MiB and 64 KiB (docs/protocol.md, Frames)");
ABSL_FLAG(int64_t, max_snapshot_bytes, 256 << 20, "largest snapshot a run may store");

namespace {

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    return absl::NotFoundError(absl::StrCat("--", flag, ": cannot read ", path));
  }
  return text.str();
}

// Insecure without --tls_cert; TLS with it; mTLS with --tls_client_ca as well.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials() {
  std::string cert = absl::GetFlag(FLAGS_tls_cert), key = absl::GetFlag(FLAGS_tls_key),
              client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty()) {
    if (!key.empty() || !client_ca.empty()) {
      return absl::InvalidArgumentError("--tls_key and --tls_client_ca need --tls_cert");
    }
    return grpc::InsecureServerCredentials();
  }
  if (key.empty()) return absl::InvalidArgumentError("--tls_cert needs --tls_key");
  grpc::SslServerCredentialsOptions options;
  absl::StatusOr<std::string> cert_pem = ReadPem("tls_cert", cert);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadPem("tls_key", key);
  if (!key_pem.ok()) return key_pem.status();
  options.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  if (!client_ca.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadPem("tls_client_ca", client_ca);
    if (!ca_pem.ok()) return ca_pem.status();
    options.pem_root_certs = *ca_pem;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

}  // namespace

int main(int argc, char** argv) {
  baton::SetUpHelp("the control plane of a baton fleet");
  absl::ParseCommandLine(argc, argv);
  using baton::LogJson;
  baton::CaptureProtobufLogs();
  // SIGTERM and SIGINT are taken by sigwait below: blocked before any thread starts, so every
  // thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<baton::orchestrator::Store>> store =
      baton::orchestrator::OpenSqliteStore(absl::GetFlag(FLAGS_db), absl::GetFlag(FLAGS_durable));
  if (!store.ok()) {
    std::fprintf(stderr, "baton-orchestrator: %s\n", store.status().ToString().c_str());
    return 1;
  }
  baton::orchestrator::Auth auth;
  if (!absl::GetFlag(FLAGS_auth).empty()) {
    absl::StatusOr<baton::orchestrator::Auth> loaded =
        baton::orchestrator::Auth::FromFile(absl::GetFlag(FLAGS_auth));
    if (!loaded.ok()) {
      std::fprintf(stderr, "baton-orchestrator: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    auth = *std::move(loaded);
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = ServerCredentials();
  if (!credentials.ok()) {
    std::fprintf(stderr, "baton-orchestrator: %s\n", credentials.status().ToString().c_str());
    return 1;
  }
  baton::orchestrator::Options options;
  if (auth.enabled()) options.auth = &auth;
  options.max_in_records = absl::GetFlag(FLAGS_max_in_records);
  options.max_reads = absl::GetFlag(FLAGS_max_reads);
  options.max_reads_per_chat = absl::GetFlag(FLAGS_max_reads_per_chat);
  options.max_runs_per_worker = absl::GetFlag(FLAGS_max_runs_per_worker);
  int64_t max_frame_bytes = absl::GetFlag(FLAGS_max_frame_bytes);
  if (max_frame_bytes < static_cast<int64_t>(baton::kMinFrameBytes) ||
      max_frame_bytes > static_cast<int64_t>(baton::kMaxFrameBytes) ||
      absl::GetFlag(FLAGS_max_snapshot_bytes) < 1) {
    std::fprintf(stderr,
                 "baton-orchestrator: --max_frame_bytes must be 65536 to 268435456 and "
                 "--max_snapshot_bytes at least 1\n");
    return 1;
  }
  options.max_frame_bytes = static_cast<size_t>(max_frame_bytes);
  options.max_snapshot_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_snapshot_bytes));
  if (options.max_in_records < 1 || options.max_reads < 1 || options.max_reads_per_chat < 1 ||
      options.max_runs_per_worker < 1) {
    std::fprintf(stderr,
                 "baton-orchestrator: --max_in_records, --max_reads, --max_reads_per_chat and "
                 "--max_runs_per_worker must be at least 1\n");
    return 1;
  }
  if (absl::GetFlag(FLAGS_handover_timeout_ms) < 1) {
    std::fprintf(stderr, "baton-orchestrator: --handover_timeout_ms must be at least 1\n");
    return 1;
  }
  options.handover_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_handover_timeout_ms));
  if (absl::GetFlag(FLAGS_max_outbox_mb) < 1 || absl::GetFlag(FLAGS_max_outbox_mb) > 65536) {
    std::fprintf(stderr, "baton-orchestrator: --max_outbox_mb must be 1 to 65536\n");
    return 1;
  }
  options.max_outbox_bytes = absl::GetFlag(FLAGS_max_outbox_mb) << 20;
  options.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_ms));
  options.heartbeat_misses = absl::GetFlag(FLAGS_heartbeat_misses);
  options.lease_ttl = absl::Milliseconds(absl::GetFlag(FLAGS_lease_ms));
  options.accept_deadline = absl::Milliseconds(absl::GetFlag(FLAGS_accept_ms));
  baton::orchestrator::Orchestrator orchestrator(**store, options);
  if (absl::Status loaded = orchestrator.Load(); !loaded.ok()) {
    std::fprintf(stderr, "baton-orchestrator: loading the store: %s\n", loaded.ToString().c_str());
    return 1;
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  std::vector<std::string> addresses = absl::GetFlag(FLAGS_listen);
  std::vector<int> ports(addresses.size(), 0);
  for (size_t i = 0; i < addresses.size(); ++i) {
    builder.AddListeningPort(addresses[i], *credentials, &ports[i]);
  }
  builder.RegisterService(orchestrator.gateway_service());
  builder.RegisterService(orchestrator.sessions_service());
  // A request that does not parse (a string field that is not UTF-8) is INVALID_ARGUMENT.
  builder.experimental().SetInterceptorCreators(baton::ParseErrorInterceptors());
  // No request is read past the frame bound and one record (docs/protocol.md, Frames): so at
  // most that much of a call is read before its token is checked. Worker streams are split to
  // the bound; what the orchestrator sends clients (a Read record, ListRuns) keeps the old
  // 64 MiB limit for ListRuns of many runs.
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(baton::GrpcMessageLimit(options.max_frame_bytes)));
  builder.SetMaxSendMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "baton-orchestrator: cannot listen on %s\n",
                 absl::StrJoin(addresses, ",").c_str());
    return 1;
  }
  std::unique_ptr<baton::AdminHttp> admin;
  if (!absl::GetFlag(FLAGS_admin).empty()) {
    absl::StatusOr<std::unique_ptr<baton::AdminHttp>> started = baton::AdminHttp::Start(
        absl::GetFlag(FLAGS_admin), {.metrics = [&] { return orchestrator.MetricsText(); }});
    if (!started.ok()) {
      std::fprintf(stderr, "baton-orchestrator: %s\n", started.status().ToString().c_str());
      return 1;
    }
    admin = *std::move(started);
    std::string host = absl::GetFlag(FLAGS_admin).substr(0, absl::GetFlag(FLAGS_admin).rfind(':'));
    std::printf("admin %s:%d\n", host.c_str(), admin->port());
  }
  for (size_t i = 0; i < addresses.size(); ++i) {
    std::string address = addresses[i];
    if (address.rfind("unix:", 0) != 0) {
      address = absl::StrCat(address.substr(0, address.rfind(':')), ":", ports[i]);
    }
    std::printf("listening %s\n", address.c_str());
  }
  std::fflush(stdout);
  LogJson("info", "orchestrator serving",
          {{"store", (*store)->Describe()},
           {"listen", absl::StrJoin(addresses, ",")},
           {"auth", auth.enabled() ? "tokens" : "off"},
           {"tls", absl::GetFlag(FLAGS_tls_cert).empty()        ? "off"
                   : absl::GetFlag(FLAGS_tls_client_ca).empty() ? "tls"
                                                                : "mtls"}});

  int signal = 0;
  sigwait(&signals, &signal);
  LogJson("info", "orchestrator stopping");
  orchestrator.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
