#include "runtime/worker/worker_main.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <list>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "asio/io_context.hpp"
#include "asio/signal_set.hpp"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "runtime/base/admin_http.h"
#include "runtime/base/flags.h"
#include "runtime/base/log.h"
#include "runtime/base/parse_errors.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"
#include "runtime/model/http_client.h"
#include "runtime/model/providers.h"
#include "runtime/protocol/wire.h"
#include "runtime/worker/worker.h"

ABSL_FLAG(std::string, orchestrator, "127.0.0.1:7400",
          "the orchestrator's WorkerGateway: host:port or unix:/path");
ABSL_FLAG(int32_t, capacity, 100, "most runs live at once");
ABSL_FLAG(std::string, worker_id, "", "this process's id (default: host-pid-random)");
ABSL_FLAG(int32_t, hook_threads, 8, "threads that run hooks and tool executes");
ABSL_FLAG(int64_t, drain_grace_ms, 30000,
          "on SIGTERM, how long live runs may finish before they are handed back");
ABSL_FLAG(std::string, provider, "",
          "anthropic or openai (default: whichever key is set, else anthropic)");
ABSL_FLAG(std::string, model, "", "the provider's model name");
ABSL_FLAG(std::string, base_url, "", "the provider's base URL (default: its public endpoint)");
ABSL_FLAG(std::string, api_key_env, "",
          "the environment variable holding the key (default: ANTHROPIC_API_KEY or "
          "OPENAI_API_KEY)");
ABSL_FLAG(std::string, admin, "", "host:port of the HTTP /metrics, /healthz, /readyz endpoint");
ABSL_FLAG(std::string, health, "", "host:port of a gRPC server with grpc.health.v1");
ABSL_FLAG(int64_t, idle_timeout_ms, -1,
          "overrides every agent's idle timeout (the warm wait before a run suspends)");
ABSL_FLAG(std::string, token_env, "BATON_TOKEN",
          "the environment variable holding this worker's bearer token (unset: none)");
ABSL_FLAG(bool, tls, false, "dial the orchestrator over TLS (implied by the --tls_* files)");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA of the orchestrator's certificate (default: system)");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate, for mTLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, hook_log, "",
          "a file that gets every lifecycle point of every run as a JSON line (tests)");
ABSL_FLAG(int64_t, max_frame_bytes, 4 << 20,
          "largest frame read from the orchestrator, 64 KiB to 256 MiB (docs/protocol.md, Frames)");
ABSL_FLAG(int64_t, max_unacked_run_bytes, 4 << 20,
          "a run's output the orchestrator has not acknowledged, past which the run waits");
ABSL_FLAG(int64_t, max_unacked_bytes, 64 << 20,
          "all runs' output not acknowledged, past which every run that writes waits");

namespace baton {
namespace {

class Setup final : public WorkerSetup {
 public:
  Setup(HttpClient& http, Worker& worker) : http_(http), worker_(worker) {}

  std::shared_ptr<LanguageModel> Model() override {
    if (!model_) {
      model_ = MakeModel(http_, {absl::GetFlag(FLAGS_provider), absl::GetFlag(FLAGS_base_url),
                                 absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_api_key_env)});
    }
    return model_;
  }

  void Add(const std::string& name, Agent agent) override {
    if (agent.id.empty()) agent.id = name;
    if (int64_t idle = absl::GetFlag(FLAGS_idle_timeout_ms); idle >= 0) {
      agent.options.idle_timeout = absl::Milliseconds(idle);
    }
    agents_.push_back(std::move(agent));
    worker_.AddAgent(name, agents_.back());
  }

 private:
  HttpClient& http_;
  Worker& worker_;
  std::shared_ptr<LanguageModel> model_;
  std::list<Agent> agents_;  // stable addresses
};

// grpc.health.v1.Health/Check for the whole worker: SERVING while `ready`. Served generically,
// as a server whose only service is gRPC's default health service does not start.
class HealthService final : public grpc::CallbackGenericService {
 public:
  explicit HealthService(std::function<bool()> ready) : ready_(std::move(ready)) {}

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      Reactor(bool check, bool serving) : check_(check), serving_(serving) {
        if (!check_) {
          Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "only grpc.health.v1.Health/Check"));
          return;
        }
        StartRead(&request_);
      }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
          return;
        }
        // HealthCheckResponse{status}: field 1, varint; 1 SERVING, 2 NOT_SERVING.
        static const char kServing[] = {0x08, 0x01};
        static const char kNotServing[] = {0x08, 0x02};
        grpc::Slice slice(serving_ ? kServing : kNotServing, 2);
        response_ = grpc::ByteBuffer(&slice, 1);
        StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      bool check_;
      bool serving_;
      grpc::ByteBuffer request_;
      grpc::ByteBuffer response_;
    };
    return new Reactor(context->method() == "/grpc.health.v1.Health/Check", ready_());
  }

 private:
  std::function<bool()> ready_;
};

// A second SIGTERM or SIGINT: no more waiting, no cleanup. The exit code is 128 + the signal
// (143 for SIGTERM, 130 for SIGINT), as a shell reports a process a signal ended: a supervisor
// tells it from a drained exit (0) and from a start-up error (1). Async-signal-safe.
extern "C" void ExitAtOnce(int signal) { _exit(128 + signal); }

}  // namespace

int WorkerMain(int argc, char** argv, const std::function<void(WorkerSetup&)>& register_agents) {
  SetUpHelp("a baton worker: hosts chat agents for an orchestrator");
  absl::ParseCommandLine(argc, argv);
  CaptureProtobufLogs();  // protobuf's own log lines as JSON lines, like ours

  asio::io_context io(1);
  RealClock clock;
  HookPool pool(absl::GetFlag(FLAGS_hook_threads));
  HttpClient http(io.get_executor());
  WorkerOptions options;
  options.target = absl::GetFlag(FLAGS_orchestrator);
  options.capacity = absl::GetFlag(FLAGS_capacity);
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  options.drain_grace = absl::Milliseconds(absl::GetFlag(FLAGS_drain_grace_ms));
  if (absl::GetFlag(FLAGS_max_frame_bytes) < static_cast<int64_t>(kMinFrameBytes) ||
      absl::GetFlag(FLAGS_max_frame_bytes) > static_cast<int64_t>(kMaxFrameBytes) ||
      absl::GetFlag(FLAGS_max_unacked_run_bytes) < 1 ||
      absl::GetFlag(FLAGS_max_unacked_bytes) < 1) {
    std::fprintf(stderr,
                 "worker: --max_frame_bytes must be 65536 to 268435456, --max_unacked_run_bytes "
                 "and --max_unacked_bytes at least 1\n");
    return 1;
  }
  options.max_frame_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_frame_bytes));
  options.max_unacked_run_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_unacked_run_bytes));
  options.max_unacked_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_unacked_bytes));
  absl::StatusOr<ClientSecurity> security = LoadClientSecurity(
      {absl::GetFlag(FLAGS_token_env), absl::GetFlag(FLAGS_tls), absl::GetFlag(FLAGS_tls_ca),
       absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key)});
  if (!security.ok()) {
    std::fprintf(stderr, "worker: %s\n", security.status().ToString().c_str());
    return 1;
  }
  options.security = *std::move(security);
  // Read once; hooks, tools and the processes they start need not inherit it.
  if (!absl::GetFlag(FLAGS_token_env).empty()) unsetenv(absl::GetFlag(FLAGS_token_env).c_str());
  Worker worker(io.get_executor(), clock, pool, options);
  Setup setup(http, worker);
  register_agents(setup);

  std::ofstream hook_log;
  if (!absl::GetFlag(FLAGS_hook_log).empty()) {
    hook_log.open(absl::GetFlag(FLAGS_hook_log), std::ios::app);
    worker.observe = [&hook_log](const std::string& run_id, std::string_view hook,
                                 const Json& args) {
      hook_log << DumpJson(Json{{"run_id", run_id}, {"hook", hook}, {"args", args}}) << "\n";
      hook_log.flush();
    };
  }

  std::unique_ptr<AdminHttp> admin;
  if (!absl::GetFlag(FLAGS_admin).empty()) {
    absl::StatusOr<std::unique_ptr<AdminHttp>> started = AdminHttp::Start(
        absl::GetFlag(FLAGS_admin),
        {.metrics = [&] { return worker.MetricsText(); }, .ready = [&] { return worker.ready(); }});
    if (!started.ok()) {
      std::fprintf(stderr, "worker: %s\n", started.status().ToString().c_str());
      return 1;
    }
    admin = *std::move(started);
    std::string host = absl::GetFlag(FLAGS_admin).substr(0, absl::GetFlag(FLAGS_admin).rfind(':'));
    std::printf("admin %s:%d\n", host.c_str(), admin->port());
  }
  std::unique_ptr<grpc::Server> health;
  HealthService health_service([&worker] { return worker.ready(); });
  if (!absl::GetFlag(FLAGS_health).empty()) {
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&health_service);
    int port = 0;
    std::string address = absl::GetFlag(FLAGS_health);
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
    health = builder.BuildAndStart();
    if (health == nullptr) {
      std::fprintf(stderr, "worker: cannot listen on %s\n", address.c_str());
      return 1;
    }
    std::printf("health %s:%d\n", address.substr(0, address.rfind(':')).c_str(), port);
  }
  std::fflush(stdout);  // the lines above tell a harness the ports chosen

  asio::signal_set signals(io, SIGTERM, SIGINT);
  int received = 0;
  std::function<void(const asio::error_code&, int)> on_signal = [&](const asio::error_code& ec,
                                                                    int signal) {
    if (ec) return;
    if (++received > 1) ExitAtOnce(signal);  // both arrived before the loop took the first
    // From now on the next signal ends the process in the handler itself, whatever the loop is
    // doing.
    struct sigaction now = {};
    now.sa_handler = ExitAtOnce;
    sigemptyset(&now.sa_mask);
    sigaction(SIGTERM, &now, nullptr);
    sigaction(SIGINT, &now, nullptr);
    worker.Drain([&] {
      signals.cancel();
      io.stop();
    });
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  worker.Start();
  LogJson("info", "worker started",
          {{"worker_id", worker.worker_id()},
           {"orchestrator", options.target},
           {"capacity", options.capacity}});
  io.run();
  if (health) health->Shutdown();
  LogJson("info", "worker stopped", {{"worker_id", worker.worker_id()}});
  if (int running = pool.outstanding(); running > 0) {
    // User code that ignores its stop token (a tool in a busy loop, a call that never returns)
    // would hold the process forever in the pool's join. The drain is over and its runs are
    // handed back, so nothing is owed: leave without waiting for it.
    LogJson("warn", "exiting with hook or tool calls still running",
            {{"worker_id", worker.worker_id()}, {"calls", running}});
    std::fflush(nullptr);
    std::_Exit(0);
  }
  return 0;
}

}  // namespace baton
