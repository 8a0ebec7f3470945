// baton-orchestrator: the reference control plane on an embedded SQLite store
// (docs/orchestrator.md). Workers dial it (WorkerGateway), clients use Sessions.
//
//   baton-orchestrator --listen 127.0.0.1:7400 --db baton.db [--admin 127.0.0.1:9400]
//
// Prints "listening <address>" per listening address once it serves (port 0 picks a port).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "runtime/admin_http.h"
#include "runtime/log.h"
#include "runtime/parse_errors.h"
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

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("baton-orchestrator: the control plane of a baton fleet");
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
  baton::orchestrator::Options options;
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
    builder.AddListeningPort(addresses[i], grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.RegisterService(orchestrator.gateway_service());
  builder.RegisterService(orchestrator.sessions_service());
  // A request that does not parse (a string field that is not UTF-8) is INVALID_ARGUMENT.
  builder.experimental().SetInterceptorCreators(baton::ParseErrorInterceptors());
  // Snapshots and continuations' assignments carry whole transcripts.
  builder.SetMaxReceiveMessageSize(64 << 20);
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
          {{"store", (*store)->Describe()}, {"listen", absl::StrJoin(addresses, ",")}});

  int signal = 0;
  sigwait(&signals, &signal);
  LogJson("info", "orchestrator stopping");
  orchestrator.Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
