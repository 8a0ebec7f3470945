// Control-plane benchmarks through the real stack (DESIGN §7, issue 4): baton-orchestrator on a
// fresh SQLite file and one baton-worker as child processes, fake-llm in this process, the
// Sessions API over gRPC on loopback TCP (or a Unix socket). Figures and method:
// docs/BENCHMARKS.md.
//
//   BM_Dispatch               CreateSession(preload) -> onPreload fired on the worker
//   BM_HandoverToFirstChunk   handover appended -> the worker's first `.out` record read
//   BM_OutputToReader         `.out` records/s reaching a following reader while a run streams
//   BM_CatchUpReader          `.out` records/s reading a finished chat's log from seq 0
//   BM_IdleChats              worker RSS and threads with 10,000 chats parked on `.in`
//   BM_StackChatTurns         issue 15's long chat: each process's CPU per turn at turns 1 to 200
//   BM_IdleFollowers          orchestrator RSS, threads and CPU with N following Reads idle
//   BM_IdleWorkerStreams      orchestrator RSS, threads and CPU with N idle worker streams
//   BM_GatewayFirstToken      through baton-gateway: POST -> first text-delta, minus the model's
//                             400 ms first byte (cold first message, preload, head start)
//   BM_GatewayReaders         records/s through baton-gateway to 1 and to 1,000 SSE readers
//   BM_GatewayIdleStreams     baton-gateway RSS and threads with N idle SSE responses open
//
// BATON_BENCH_ORCHESTRATOR=<path> and BATON_BENCH_WORKER=<path> run another baton-orchestrator
// or baton-worker binary (an older build, to compare against).
//
// The worker reports lifecycle points as JSON lines on its --hook_log, a FIFO read here by a
// thread that stamps each line with the time read() returned it. Every wait is on an event (a
// hook line, a `.out` record, a line a process printed); none sleeps.
//
// Self-contained on purpose: tests/integration/stack.{h,cc} does the same for tests, but it is
// built only with BATON_BUILD_TESTS, reports failures through gtest, and its HookLog keeps no
// arrival times and rescans every line on each wake (quadratic at 10,000 chats).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "asio/co_spawn.hpp"
#include "asio/detached.hpp"
#include "asio/executor_work_guard.hpp"
#include "asio/io_context.hpp"
#include "asio/post.hpp"
#include "baton/v1/sessions.grpc.pb.h"
#include "baton/v1/worker.grpc.pb.h"
#include "benchmark/benchmark.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "hooks/json.h"
#include "hooks/messages.h"
#include "runtime/client/head_start.h"
#include "runtime/model/http_client.h"
#include "tools/bench/bench_main.h"
#include "tools/fake-llm/fake_llm.h"

extern char** environ;

namespace baton::bench {
namespace {

namespace v1 = ::baton::v1;
using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

constexpr std::chrono::seconds kLimit{60};

double Micros(SteadyClock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}
double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// The value at quantile q (0..1) of the samples, nearest rank.
double Quantile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(samples.size())));
  return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

// VmRSS (KiB) and Threads of a process, from /proc/<pid>/status.
struct ProcStatus {
  long rss_kib = -1;
  long threads = -1;
};

// CPU time (user + system) a process used so far, every thread (also ended ones) counted; 0 for
// pid 0, this process. /proc's resolution is a clock tick (10 ms): use over long runs only.
double CpuSeconds(pid_t pid) {
  if (pid == 0) {
    rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
    return secs(usage.ru_utime) + secs(usage.ru_stime);
  }
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');  // the command name may hold spaces
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of the orchestrator, the worker and this process (client and fake-llm).
struct CpuSample {
  double orchestrator = 0, worker = 0, bench = 0;
};

ProcStatus ReadProcStatus(pid_t pid) {
  ProcStatus s;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "VmRSS:")) s.rss_kib = std::stol(line.substr(6));
    if (absl::StartsWith(line, "Threads:")) s.threads = std::stol(line.substr(8));
  }
  return s;
}

// How many threads of a process carry each name (/proc/<pid>/task/*/comm).
std::map<std::string, int> ThreadNames(pid_t pid) {
  std::map<std::string, int> names;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream in(task.path() / "comm");
    std::string name;
    if (std::getline(in, name)) ++names[name];
  }
  return names;
}

// The threads in `after` that `before` did not have, as "name+count ...".
std::string NewThreads(const std::map<std::string, int>& before,
                       const std::map<std::string, int>& after) {
  std::vector<std::string> added;
  for (const auto& [name, count] : after) {
    auto it = before.find(name);
    int was = it == before.end() ? 0 : it->second;
    if (count > was) added.push_back(absl::StrCat(name, "+", count - was));
  }
  return added.empty() ? "none" : absl::StrJoin(added, " ");
}

// ---- child processes ---------------------------------------------------------------------------

// A child process. With `pipe_stdout`, its stdout is a pipe read by WaitForLine; otherwise
// stdout and stderr both go to `log_path`.
class Process {
 public:
  static std::unique_ptr<Process> Spawn(std::vector<std::string> argv, const std::string& log_path,
                                        bool pipe_stdout, std::string* error) {
    int out[2] = {-1, -1};
    if (pipe_stdout && pipe2(out, O_CLOEXEC) != 0) {
      *error = "pipe failed";
      return nullptr;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (pipe_stdout) {
      posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    } else {
      posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
    }
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (pipe_stdout) close(out[1]);
    if (rc != 0) {
      if (pipe_stdout) close(out[0]);
      *error = absl::StrCat("cannot start ", argv[0], ": ", strerror(rc));
      return nullptr;
    }
    return std::unique_ptr<Process>(new Process(pid, out[0]));
  }

  ~Process() {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    if (out_fd_ >= 0) close(out_fd_);
  }

  // Blocks until a line starting with `prefix` is printed; the rest of the line, or nullopt
  // when the process closed stdout first.
  std::optional<std::string> WaitForLine(const std::string& prefix) {
    char chunk[4096];
    while (true) {
      size_t newline;
      while ((newline = buffer_.find('\n')) != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        if (absl::StartsWith(line, prefix)) return line.substr(prefix.size());
      }
      ssize_t n = read(out_fd_, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  pid_t pid() const { return pid_; }

 private:
  Process(pid_t pid, int out_fd) : pid_(pid), out_fd_(out_fd) {}
  pid_t pid_;
  int out_fd_;
  std::string buffer_;
};

// The worker's --hook_log: a FIFO read on a thread of its own. Each line is stamped with the
// time the read() that returned it came back, and indexed by hook name and by (run id, hook).
class HookLog {
 public:
  explicit HookLog(std::string path) : path_(std::move(path)) {
    mkfifo(path_.c_str(), 0600);
    reader_ = std::thread([this] { ReadLoop(); });
  }

  // The worker must be gone (its end closed) before this runs.
  ~HookLog() {
    // A worker that never opened the FIFO leaves the reader in open(): open the write end once.
    int fd = open(path_.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) close(fd);
    reader_.join();
  }

  // When the `n`-th line (from 1) of hook `hook` was read; nullopt after the limit.
  std::optional<TimePoint> WaitCount(const std::string& hook, size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    bool ok = cv_.wait_for(lock, kLimit, [&] {
      auto it = by_hook_.find(hook);
      return it != by_hook_.end() && it->second.size() >= n;
    });
    if (!ok) return std::nullopt;
    return by_hook_[hook][n - 1];
  }

  // When run `run_id` first reported `hook`; nullopt after the limit.
  std::optional<TimePoint> WaitRun(const std::string& run_id, const std::string& hook) {
    std::unique_lock<std::mutex> lock(mu_);
    auto key = std::make_pair(run_id, hook);
    bool ok = cv_.wait_for(lock, kLimit, [&] { return by_run_.contains(key); });
    if (!ok) return std::nullopt;
    return by_run_[key];
  }

  const std::string& path() const { return path_; }

 private:
  void ReadLoop() {
    int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);  // blocks until the worker opens its end
    if (fd < 0) return;
    std::string buffer;
    char chunk[65536];
    while (true) {
      ssize_t n = read(fd, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      TimePoint at = SteadyClock::now();
      buffer.append(chunk, static_cast<size_t>(n));
      std::vector<std::pair<std::string, std::string>> lines;  // (run id, hook)
      size_t start = 0, newline;
      while ((newline = buffer.find('\n', start)) != std::string::npos) {
        absl::StatusOr<Json> json =
            ParseJson(std::string_view(buffer).substr(start, newline - start));
        start = newline + 1;
        if (json.ok()) lines.emplace_back(StringField(*json, "run_id"), StringField(*json, "hook"));
      }
      buffer.erase(0, start);
      if (lines.empty()) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [run_id, hook] : lines) {
          by_hook_[hook].push_back(at);
          by_run_.emplace(std::make_pair(std::move(run_id), std::move(hook)), at);
        }
      }
      cv_.notify_all();
    }
    close(fd);
  }

  std::string path_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<TimePoint>> by_hook_;
  std::map<std::pair<std::string, std::string>, TimePoint> by_run_;
};

// ---- the stack ---------------------------------------------------------------------------------

// The binary named by the environment variable `name` (another build's, to compare), or
// `built`, this build's.
std::string BinaryOr(const char* name, const char* built) {
  const char* binary = std::getenv(name);
  return binary != nullptr && *binary != '\0' ? std::string(binary) : std::string(built);
}

struct StackOptions {
  bool unix_socket = false;  // orchestrator, worker and this client over a Unix socket
  Json script;               // fake-llm's script (docs/fake-llm.md)
  int capacity = 5000;
  std::vector<std::string> orchestrator_flags;
  std::vector<std::string> worker_flags;
  bool hook_log = true;  // the worker writes every lifecycle point to a FIFO the bench reads
};

class Stack {
 public:
  static std::unique_ptr<Stack> Start(StackOptions options, std::string* error) {
    std::unique_ptr<Stack> stack(new Stack());
    const char* tmp = std::getenv("TMPDIR");
    std::string dir_template =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/baton-stack-bench-XXXXXX");
    if (mkdtemp(dir_template.data()) == nullptr) {
      *error = "mkdtemp failed";
      return nullptr;
    }
    stack->dir_ = dir_template;
    if (options.script.is_null()) options.script = {{"responses", Json::array()}};
    absl::StatusOr<std::unique_ptr<fakellm::FakeLlm>> llm = fakellm::FakeLlm::Start(options.script);
    if (!llm.ok()) {
      *error = llm.status().ToString();
      return nullptr;
    }
    stack->llm_ = *std::move(llm);

    std::string listen = options.unix_socket ? absl::StrCat("unix:", stack->dir_, "/orch.sock")
                                             : std::string("127.0.0.1:0");
    // The orchestrator takes as many runs on the worker as the worker announces: the bench
    // measures the stack at the worker's capacity, not at the orchestrator's default cap.
    std::vector<std::string> argv = {
        BinaryOr("BATON_BENCH_ORCHESTRATOR", BATON_ORCHESTRATOR_BINARY),
        absl::StrCat("--listen=", listen), absl::StrCat("--db=", stack->dir_, "/baton.db"),
        absl::StrCat("--max_runs_per_worker=", options.capacity)};
    for (const std::string& f : options.orchestrator_flags) argv.push_back(f);
    stack->orchestrator_ =
        Process::Spawn(argv, stack->dir_ + "/orchestrator.log", /*pipe_stdout=*/true, error);
    if (stack->orchestrator_ == nullptr) return nullptr;
    std::optional<std::string> address = stack->orchestrator_->WaitForLine("listening ");
    if (!address.has_value()) {
      *error =
          absl::StrCat("the orchestrator did not start; see ", stack->dir_, "/orchestrator.log");
      stack->keep_ = true;
      return nullptr;
    }
    stack->address_ = *address;
    stack->channel_ = grpc::CreateChannel(stack->address_, grpc::InsecureChannelCredentials());
    stack->sessions_ = v1::Sessions::NewStub(stack->channel_);

    stack->hooks_ = std::make_unique<HookLog>(stack->dir_ + "/hooks");
    argv = {BinaryOr("BATON_BENCH_WORKER", BATON_WORKER_BINARY),
            absl::StrCat("--orchestrator=", stack->address_),
            "--worker_id=bench-worker",
            absl::StrCat("--capacity=", options.capacity),
            absl::StrCat("--base_url=", stack->llm_->base_url()),
            "--provider=anthropic",
            "--api_key_env=BATON_BENCH_NO_KEY",
            "--model=test"};
    if (options.hook_log) argv.push_back(absl::StrCat("--hook_log=", stack->hooks_->path()));
    for (const std::string& f : options.worker_flags) argv.push_back(f);
    stack->worker_ =
        Process::Spawn(argv, stack->dir_ + "/worker.log", /*pipe_stdout=*/false, error);
    if (stack->worker_ == nullptr) return nullptr;
    return stack;
  }

  ~Stack() {
    worker_.reset();  // SIGKILL: closes the FIFO's write end, so the hook reader ends
    hooks_.reset();
    sessions_.reset();
    channel_.reset();
    orchestrator_.reset();
    llm_.reset();
    if (!keep_ && !dir_.empty()) std::filesystem::remove_all(dir_);
  }

  v1::Sessions::Stub& sessions() { return *sessions_; }
  const std::string& address() const { return address_; }
  std::string llm_url() const { return llm_->base_url(); }
  HookLog& hooks() { return *hooks_; }
  pid_t worker_pid() const { return worker_->pid(); }
  pid_t orchestrator_pid() const { return orchestrator_->pid(); }
  CpuSample Cpu() const {
    return {CpuSeconds(orchestrator_->pid()), CpuSeconds(worker_->pid()), CpuSeconds(0)};
  }
  // Sets `<name>_cpu_us_per_<unit>` counters: each process's CPU time since `before`, per unit.
  void CountCpu(benchmark::State& state, const CpuSample& before, double units,
                const std::string& unit) const {
    CpuSample now = Cpu();
    state.counters[absl::StrCat("orch_cpu_us_per_", unit)] =
        (now.orchestrator - before.orchestrator) * 1e6 / units;
    state.counters[absl::StrCat("worker_cpu_us_per_", unit)] =
        (now.worker - before.worker) * 1e6 / units;
    state.counters[absl::StrCat("bench_cpu_us_per_", unit)] =
        (now.bench - before.bench) * 1e6 / units;
  }
  // Keeps the scratch directory (logs, database) after a failure.
  void Keep() { keep_ = true; }
  const std::string& dir() const { return dir_; }

  grpc::Status Create(const std::string& chat_id, const std::string& agent, v1::Trigger trigger,
                      const Json& payload, v1::Session* session) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kLimit);
    v1::CreateSessionRequest request;
    request.set_chat_id(chat_id);
    request.set_agent(agent);
    request.set_trigger(trigger);
    request.set_payload_json(DumpJson(payload));
    v1::CreateSessionResponse response;
    grpc::Status status = sessions_->CreateSession(&context, request, &response);
    if (session != nullptr) *session = response.session();
    return status;
  }

  grpc::Status Append(const std::string& chat_id, const Json& body) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kLimit);
    v1::AppendRequest request;
    request.set_chat_id(chat_id);
    request.set_body_json(DumpJson(body));
    v1::AppendResponse response;
    return sessions_->Append(&context, request, &response);
  }

  // Creates a preload session of agent "chat" and waits until its onPreload fired.
  bool Preload(const std::string& chat_id, std::string* error) {
    v1::Session session;
    grpc::Status s = Create(chat_id, "chat", v1::TRIGGER_PRELOAD, Json::object(), &session);
    if (!s.ok()) {
      *error = absl::StrCat("CreateSession: ", s.error_message());
      return false;
    }
    if (!hooks_->WaitRun(session.run_id(), "onPreload").has_value()) {
      *error = absl::StrCat("no onPreload for ", chat_id, "; see ", dir_);
      keep_ = true;
      return false;
    }
    return true;
  }

 private:
  Stack() = default;

  std::string dir_;
  bool keep_ = false;
  std::string address_;
  std::unique_ptr<fakellm::FakeLlm> llm_;
  std::unique_ptr<Process> orchestrator_;
  std::unique_ptr<HookLog> hooks_;
  std::unique_ptr<Process> worker_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
};

// One `.out` record as read: when it arrived, its seq, and its chunk type ("trigger:<subtype>"
// for a control record).
struct Arrival {
  TimePoint at;
  int64_t seq = 0;
  std::string type;
};

std::string RecordType(const v1::OutRecord& record) {
  if (record.has_control()) return absl::StrCat("trigger:", record.control().subtype());
  absl::StatusOr<Json> chunk = ParseJson(record.chunk_json());
  return chunk.ok() ? StringField(*chunk, "type") : "?";
}

// A following Read of a chat's `.out` on a thread of its own, stamping each record on arrival.
class Follower {
 public:
  Follower(v1::Sessions::Stub& sessions, const std::string& chat_id, int64_t after_seq) {
    context_.set_deadline(std::chrono::system_clock::now() + kLimit);
    v1::ReadRequest request;
    request.set_chat_id(chat_id);
    request.set_after_seq(after_seq);
    request.set_follow(true);
    thread_ = std::thread([this, &sessions, request] {
      std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader =
          sessions.Read(&context_, request);
      v1::ReadResponse response;
      while (reader->Read(&response)) {
        Arrival a{SteadyClock::now(), response.record().seq(), RecordType(response.record())};
        {
          std::lock_guard<std::mutex> lock(mu_);
          arrivals_.push_back(std::move(a));
        }
        cv_.notify_all();
      }
      reader->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      ended_ = true;
      cv_.notify_all();
    });
  }

  ~Follower() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits until a record of `type` arrived; every arrival so far, or nullopt when the stream
  // ended or the limit passed first.
  std::optional<std::vector<Arrival>> WaitForType(const std::string& type) {
    std::unique_lock<std::mutex> lock(mu_);
    auto seen = [&] {
      return std::any_of(arrivals_.begin(), arrivals_.end(),
                         [&](const Arrival& a) { return a.type == type; });
    };
    cv_.wait_for(lock, kLimit, [&] { return ended_ || seen(); });
    if (!seen()) return std::nullopt;
    return arrivals_;
  }

 private:
  grpc::ClientContext context_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Arrival> arrivals_;
  bool ended_ = false;
};

// The one-way latency of a pipe between two threads of this process (a write -> the blocked
// reader's read() returns), the mechanism the hook FIFO adds to the dispatch figure: half the
// round trip of a ping-pong over two pipes; p50 in µs.
double PipeWakeMicros() {
  int ping[2], pong[2];
  if (pipe(ping) != 0) return -1;
  if (pipe(pong) != 0) return -1;
  constexpr int kRounds = 1000;
  std::thread echo([&] {
    char c;
    for (int i = 0; i < kRounds; ++i) {
      if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1) return;
    }
  });
  std::vector<double> samples;
  char c = 'x';
  for (int i = 0; i < kRounds; ++i) {
    TimePoint t0 = SteadyClock::now();
    if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) break;
    samples.push_back(Micros(SteadyClock::now() - t0) / 2);
  }
  echo.join();
  for (int fd : {ping[0], ping[1], pong[0], pong[1]}) close(fd);
  return Quantile(samples, 0.5);
}

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(std::move(responses))}}; }

// ---- 1. dispatch -------------------------------------------------------------------------------

// CreateSession(preload) -> the worker's onPreload line read from its hook FIFO. One session at a
// time; the sessions stay live (parked on `.in`), so the worker holds up to ~1,000 runs.
void BM_Dispatch(benchmark::State& state) {
  std::string error;
  auto stack = Stack::Start(
      {.unix_socket = state.range(0) == 1, .worker_flags = {"--idle_timeout_ms=3600000"}}, &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  for (int i = 0; i < 20; ++i) {  // warm up: connections, allocator, SQLite pages
    if (!stack->Preload(absl::StrCat("warm-", i), &error))
      return state.SkipWithError(error.c_str());
  }
  std::vector<double> fired_us, rpc_us;
  CpuSample cpu = stack->Cpu();
  int n = 0;
  for (auto _ : state) {
    std::string chat = absl::StrCat("d", n++);
    v1::Session session;
    TimePoint t0 = SteadyClock::now();
    grpc::Status s = stack->Create(chat, "chat", v1::TRIGGER_PRELOAD, Json::object(), &session);
    TimePoint returned = SteadyClock::now();
    if (!s.ok()) return state.SkipWithError(s.error_message().c_str());
    std::optional<TimePoint> fired = stack->hooks().WaitRun(session.run_id(), "onPreload");
    if (!fired.has_value()) return state.SkipWithError("no onPreload");
    state.SetIterationTime(Seconds(*fired - t0));
    fired_us.push_back(Micros(*fired - t0));
    rpc_us.push_back(Micros(returned - t0));
  }
  state.counters["p50_us"] = Quantile(fired_us, 0.5);
  state.counters["p95_us"] = Quantile(fired_us, 0.95);
  state.counters["p99_us"] = Quantile(fired_us, 0.99);
  state.counters["max_us"] = Quantile(fired_us, 1.0);
  state.counters["rpc_p50_us"] = Quantile(rpc_us, 0.5);
  state.counters["rpc_p95_us"] = Quantile(rpc_us, 0.95);
  stack->CountCpu(state, cpu, n, "session");
  state.counters["pipe_wake_p50_us"] = PipeWakeMicros();
}

// ---- 2. handover -------------------------------------------------------------------------------

// The partial a warm server hands over after step 1 answered with a tool call: its UI message
// through HandoverPartial (the call marked approved: tool-call, tool-approval-request, and a
// tool message with the tool-approval-response), as runtime/client/head_start.cc builds it.
Json HandoverBody(const std::string& message_id) {
  Json ui = {
      {"id", message_id},
      {"role", "assistant"},
      {"parts", Json::array({{{"type", "step-start"}},
                             {{"type", "text"}, {"text", "Let me check."}, {"state", "done"}},
                             {{"type", "tool-get_weather"},
                              {"toolCallId", absl::StrCat("toolu_", message_id)},
                              {"state", "input-available"},
                              {"input", {{"city", "Oslo"}}}}})}};
  return Json{{"kind", "handover"},
              {"partialAssistantMessage", HandoverPartial(ui)},
              {"messageId", message_id},
              {"isFinal", false}};
}

// A session with trigger handover-prepare (agent "weather"); once onBoot fired and a following
// Read is open, Append the handover and time it to the records the Read gets: the first one
// (`start`, before the tool runs), `tool-output-available` (the tool ran on the worker's hook
// pool), and the first `text-delta` (after the step-2 model call to fake-llm, ttfb 0).
void BM_HandoverToFirstChunk(benchmark::State& state) {
  std::string error;
  auto stack = Stack::Start(
      {.script = Script({{{"repeat", true}, {"reply", {{"text", "It is 4 degrees in Oslo."}}}}}),
       .worker_flags = {"--idle_timeout_ms=3600000"}},
      &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  if (!stack->Preload("warm", &error)) return state.SkipWithError(error.c_str());
  std::vector<double> first_us, tool_us, text_us, done_us, append_us;
  std::vector<std::string> first_types;
  int n = 0;
  auto once = [&](bool timed) -> std::string {
    std::string chat = absl::StrCat(timed ? "h" : "hw", n++);
    v1::Session session;
    grpc::Status s = stack->Create(
        chat, "weather", v1::TRIGGER_HANDOVER_PREPARE,
        Json{{"headStartMessages", Json::array({UserMessage("u1", "Weather in Oslo?")})}},
        &session);
    if (!s.ok()) return s.error_message();
    Follower follower(stack->sessions(), chat, 0);
    if (!stack->hooks().WaitRun(session.run_id(), "onBoot").has_value()) return "no onBoot";
    Json body = HandoverBody(absl::StrCat("M-", chat));
    TimePoint t0 = SteadyClock::now();
    s = stack->Append(chat, body);
    TimePoint appended = SteadyClock::now();
    if (!s.ok()) return s.error_message();
    std::optional<std::vector<Arrival>> out = follower.WaitForType("trigger:turn-complete");
    if (!out.has_value() || out->empty()) return "no turn-complete";
    auto first_of = [&](const std::string& type) -> std::optional<TimePoint> {
      for (const Arrival& a : *out) {
        if (a.type == type) return a.at;
      }
      return std::nullopt;
    };
    std::optional<TimePoint> tool = first_of("tool-output-available");
    std::optional<TimePoint> text = first_of("text-delta");
    if (!tool.has_value() || !text.has_value()) return "no tool output or no text";
    if (!timed) return "";
    first_types.clear();
    for (size_t i = 0; i < out->size() && i < 5; ++i) first_types.push_back((*out)[i].type);
    state.SetIterationTime(Seconds(out->front().at - t0));
    first_us.push_back(Micros(out->front().at - t0));
    tool_us.push_back(Micros(*tool - t0));
    text_us.push_back(Micros(*text - t0));
    done_us.push_back(Micros(out->back().at - t0));
    append_us.push_back(Micros(appended - t0));
    return "";
  };
  for (int i = 0; i < 10; ++i) {  // warm up
    if (std::string e = once(false); !e.empty()) return state.SkipWithError(e.c_str());
  }
  for (auto _ : state) {
    if (std::string e = once(true); !e.empty()) return state.SkipWithError(e.c_str());
  }
  state.SetLabel(absl::StrCat("records: ", absl::StrJoin(first_types, " "), " ..."));
  state.counters["first_p50_us"] = Quantile(first_us, 0.5);
  state.counters["first_p95_us"] = Quantile(first_us, 0.95);
  state.counters["tool_out_p50_us"] = Quantile(tool_us, 0.5);
  state.counters["tool_out_p95_us"] = Quantile(tool_us, 0.95);
  state.counters["text_p50_us"] = Quantile(text_us, 0.5);
  state.counters["text_p95_us"] = Quantile(text_us, 0.95);
  state.counters["turn_done_p50_us"] = Quantile(done_us, 0.5);
  state.counters["append_rpc_p50_us"] = Quantile(append_us, 0.5);
}

// ---- 3. output to a reader ---------------------------------------------------------------------

// A reply of `deltas` text deltas: the worker turns each into one text-delta UI chunk.
Json LongReply(int deltas) {
  Json chunks = Json::array();
  for (int i = 0; i < deltas; ++i) chunks.push_back(absl::StrCat("w", i % 10, " "));
  return Script({{{"repeat", true}, {"reply", {{"text_chunks", chunks}}}}});
}

// Reads the chat's `.out` from the start until a turn-complete (follow) or its end, one record
// per response or (batch) several; the number of records, and when the first and the last
// arrived.
struct ReadResult {
  int64_t records = 0;
  TimePoint first, last;
  std::string error;
};

ReadResult ReadAll(v1::Sessions::Stub& sessions, const std::string& chat_id, bool follow,
                   bool batch = true) {
  ReadResult result;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::ReadRequest request;
  request.set_chat_id(chat_id);
  request.set_follow(follow);
  request.set_batch(batch);
  std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader = sessions.Read(&context, request);
  v1::ReadResponse response;
  bool complete = false;
  while (!complete && reader->Read(&response)) {
    result.last = SteadyClock::now();
    if (result.records == 0) result.first = result.last;
    // Unbatched, or an orchestrator from before `batch`: the record is in `record`.
    if (response.has_record()) *response.add_records() = std::move(*response.mutable_record());
    for (const v1::OutRecord& r : response.records()) {
      ++result.records;
      complete = follow && r.has_control() && r.control().subtype() == "turn-complete";
      if (complete) break;
    }
  }
  if (follow) context.TryCancel();
  grpc::Status status = reader->Finish();
  if (!follow && !status.ok()) result.error = status.error_message();
  if (result.records == 0) result.error = "no records";
  return result;
}

// A run streams `deltas` text deltas from fake-llm; a reader follows the chat's `.out` from the
// start, one record per response or batched. Time: first record read -> turn-complete read; items:
// records read.
void BM_OutputToReader(benchmark::State& state) {
  const int deltas = static_cast<int>(state.range(0));
  const bool batch = state.range(2) == 1;
  std::string error;
  auto stack = Stack::Start({.unix_socket = state.range(1) == 1,
                             .script = LongReply(deltas),
                             .worker_flags = {"--idle_timeout_ms=3600000"}},
                            &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  int64_t records = 0;
  double end_to_end = 0;
  CpuSample cpu = stack->Cpu();
  int n = 0;
  for (auto _ : state) {
    std::string chat = absl::StrCat("o", n++);
    TimePoint t0 = SteadyClock::now();
    grpc::Status s = stack->Create(chat, "chat", v1::TRIGGER_SUBMIT_MESSAGE,
                                   Json{{"message", UserMessage("u1", "Talk to me.")}}, nullptr);
    if (!s.ok()) return state.SkipWithError(s.error_message().c_str());
    ReadResult r = ReadAll(stack->sessions(), chat, /*follow=*/true, batch);
    if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
    state.SetIterationTime(Seconds(r.last - r.first));
    records += r.records;
    end_to_end += Seconds(r.last - t0);
  }
  state.SetItemsProcessed(records);
  state.counters["records_per_turn"] = static_cast<double>(records) / n;
  state.counters["from_create_per_s"] = static_cast<double>(records) / end_to_end;
  stack->CountCpu(state, cpu, static_cast<double>(records), "record");
}

// A finished chat of `deltas` text deltas read from seq 0 without follow (catching up).
void BM_CatchUpReader(benchmark::State& state) {
  const int deltas = static_cast<int>(state.range(0));
  const bool batch = state.range(2) == 1;
  std::string error;
  auto stack = Stack::Start({.unix_socket = state.range(1) == 1,
                             .script = LongReply(deltas),
                             .worker_flags = {"--idle_timeout_ms=3600000"}},
                            &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  grpc::Status s = stack->Create("c", "chat", v1::TRIGGER_SUBMIT_MESSAGE,
                                 Json{{"message", UserMessage("u1", "Talk to me.")}}, nullptr);
  if (!s.ok()) return state.SkipWithError(s.error_message().c_str());
  ReadResult done = ReadAll(stack->sessions(), "c", /*follow=*/true);
  if (!done.error.empty()) return state.SkipWithError(done.error.c_str());
  int64_t records = 0;
  CpuSample cpu = stack->Cpu();
  for (auto _ : state) {
    TimePoint t0 = SteadyClock::now();
    ReadResult r = ReadAll(stack->sessions(), "c", /*follow=*/false, batch);
    if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
    state.SetIterationTime(Seconds(r.last - t0));
    records += r.records;
  }
  state.SetItemsProcessed(records);
  state.counters["records_per_read"] = static_cast<double>(records) / state.iterations();
  stack->CountCpu(state, cpu, static_cast<double>(records), "record");
}

// ---- 4. idle chats -----------------------------------------------------------------------------

// `chats` preload sessions of agent "chat" on one worker (capacity above that, idle timeout an
// hour), created one after another; once every onPreload fired, the worker's and the
// orchestrator's VmRSS and threads against their values after a warm-up of 10 chats. Time: the
// first CreateSession -> the last onPreload.
void BM_IdleChats(benchmark::State& state) {
  const int chats = static_cast<int>(state.range(0));
  constexpr int kWarm = 10;
  std::string error;
  auto stack = Stack::Start({.capacity = chats + kWarm + 100,
                             .orchestrator_flags = {"--accept_ms=600000"},
                             .worker_flags = {"--idle_timeout_ms=3600000"}},
                            &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  for (int i = 0; i < kWarm; ++i) {
    if (!stack->Preload(absl::StrCat("warm-", i), &error))
      return state.SkipWithError(error.c_str());
  }
  ProcStatus worker_before = ReadProcStatus(stack->worker_pid());
  ProcStatus orch_before = ReadProcStatus(stack->orchestrator_pid());
  std::map<std::string, int> worker_threads_before = ThreadNames(stack->worker_pid());
  std::map<std::string, int> worker_threads_after;
  ProcStatus worker_after, orch_after;
  for (auto _ : state) {
    TimePoint t0 = SteadyClock::now();
    for (int i = 0; i < chats; ++i) {
      grpc::Status s = stack->Create(absl::StrCat("idle-", i), "chat", v1::TRIGGER_PRELOAD,
                                     Json::object(), nullptr);
      if (!s.ok()) return state.SkipWithError(s.error_message().c_str());
    }
    std::optional<TimePoint> last = stack->hooks().WaitCount("onPreload", kWarm + chats);
    if (!last.has_value()) {
      stack->Keep();
      return state.SkipWithError("not every onPreload fired");
    }
    state.SetIterationTime(Seconds(*last - t0));
    worker_after = ReadProcStatus(stack->worker_pid());
    orch_after = ReadProcStatus(stack->orchestrator_pid());
    worker_threads_after = ThreadNames(stack->worker_pid());
  }
  state.SetLabel(absl::StrCat("new worker threads: ",
                              NewThreads(worker_threads_before, worker_threads_after)));
  state.counters["worker_KiB_per_chat"] =
      static_cast<double>(worker_after.rss_kib - worker_before.rss_kib) / chats;
  state.counters["worker_MiB_before"] = worker_before.rss_kib / 1024.0;
  state.counters["worker_MiB_after"] = worker_after.rss_kib / 1024.0;
  state.counters["worker_threads_before"] = static_cast<double>(worker_before.threads);
  state.counters["worker_threads_after"] = static_cast<double>(worker_after.threads);
  state.counters["orch_KiB_per_chat"] =
      static_cast<double>(orch_after.rss_kib - orch_before.rss_kib) / chats;
  state.counters["orch_MiB_before"] = orch_before.rss_kib / 1024.0;
  state.counters["orch_MiB_after"] = orch_after.rss_kib / 1024.0;
  state.counters["orch_threads_before"] = static_cast<double>(orch_before.threads);
  state.counters["orch_threads_after"] = static_cast<double>(orch_after.threads);
}

// ---- 4b. a long chat through the stack (issue 15)
// -------------------------------------------------

// Issue 15's workload, as BM_ChatTurns runs it in process (tools/bench/chat_turns.cc): per turn,
// step 1 streams "Let me check." and a `lookup` call, step 2 twenty words; usage on each finish.
Json ChatTurnsScript(int turns) {
  Json words = Json::array();
  for (int i = 0; i < 20; ++i) words.push_back(absl::StrCat("w", i < 10 ? "0" : "", i, " "));
  const Json usage = {{"input_tokens", 10}, {"output_tokens", 5}};
  std::vector<Json> responses;
  for (int t = 1; t <= turns; ++t) {
    Json call = {{"id", absl::StrCat("call-", t)},
                 {"name", "lookup"},
                 {"input", {{"key", absl::StrCat("k", t)}}}};
    responses.push_back({{"reply",
                          {{"text_chunks", Json::array({"Let ", "me ", "check."})},
                           {"tool_calls", Json::array({std::move(call)})},
                           {"usage", usage}}}});
    responses.push_back({{"reply", {{"text_chunks", words}, {"usage", usage}}}});
  }
  return Script(std::move(responses));
}

// Follows the chat's `.out` after `after_seq` to the next turn-complete; its seq, or -1.
int64_t FollowTurn(v1::Sessions::Stub& sessions, const std::string& chat_id, int64_t after_seq,
                   std::string* error) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  v1::ReadRequest request;
  request.set_chat_id(chat_id);
  request.set_after_seq(after_seq);
  request.set_follow(true);
  std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader = sessions.Read(&context, request);
  v1::ReadResponse response;
  int64_t done = -1;
  while (reader->Read(&response)) {
    const v1::OutRecord& r = response.record();
    if (r.has_control() && r.control().subtype() == "turn-complete") {
      done = r.seq();
      break;
    }
  }
  context.TryCancel();
  grpc::Status status = reader->Finish();
  if (done < 0)
    *error = absl::StrCat("no turn-complete after seq ", after_seq, ": ", status.error_message());
  return done;
}

// One chat of `turns` tool turns through orchestrator, worker and fake-llm over HTTP, sent one
// after another (each once the last one's turn-complete was read). The CPU of each process per
// turn over windows of 10 turns starting at turns 1, 50, 100 and 200 (/proc counts in 10 ms
// ticks: one turn is too short to measure alone), and over the whole chat. No hook log, as in
// production.
void BM_StackChatTurns(benchmark::State& state) {
  const int turns = static_cast<int>(state.range(0));
  std::string error;
  auto stack = Stack::Start({.script = ChatTurnsScript(turns),
                             .worker_flags = {"--idle_timeout_ms=3600000"},
                             .hook_log = false},
                            &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  const std::string chat = "long";
  grpc::Status created =
      stack->Create(chat, "lookup", v1::TRIGGER_PRELOAD, Json::object(), nullptr);
  if (!created.ok()) return state.SkipWithError(created.error_message().c_str());
  std::vector<int> starts;
  for (int at : {1, 50, 100, 200}) {
    if (at + 9 <= turns) starts.push_back(at);
  }
  if (starts.empty()) starts.push_back(1);
  std::map<int, CpuSample> window_start;
  std::map<int, double> orch_us, worker_us;
  int64_t seq = 0;
  CpuSample chat_start, chat_end;
  for (auto _ : state) {
    chat_start = stack->Cpu();
    for (int t = 1; t <= turns; ++t) {
      for (int at : starts) {
        if (t == at) window_start[at] = stack->Cpu();
      }
      Json body = {
          {"kind", "message"},
          {"payload",
           {{"trigger", "submit-message"},
            {"message", UserMessage(absl::StrCat("u", t), "What is the value for my key?")}}}};
      grpc::Status appended = stack->Append(chat, body);
      if (!appended.ok()) return state.SkipWithError(appended.error_message().c_str());
      seq = FollowTurn(stack->sessions(), chat, seq, &error);
      if (seq < 0) {
        stack->Keep();
        return state.SkipWithError(error.c_str());
      }
      for (int at : starts) {
        const int width = std::min(10, turns - at + 1);
        if (t != at + width - 1) continue;
        CpuSample now = stack->Cpu();
        orch_us[at] = (now.orchestrator - window_start[at].orchestrator) * 1e6 / width;
        worker_us[at] = (now.worker - window_start[at].worker) * 1e6 / width;
      }
    }
    chat_end = stack->Cpu();
  }
  // The whole chat's mean, to a 10 ms tick over all its turns (the windows' resolution is 1 ms).
  state.counters["orch_us_per_turn"] =
      (chat_end.orchestrator - chat_start.orchestrator) * 1e6 / turns;
  state.counters["worker_us_per_turn"] = (chat_end.worker - chat_start.worker) * 1e6 / turns;
  for (int at : starts) {
    state.counters[absl::StrCat("orch_us_per_turn_at_", at)] = orch_us[at];
    state.counters[absl::StrCat("worker_us_per_turn_at_", at)] = worker_us[at];
  }
}

// Every benchmark above. `smoke` (ctest): each once, short, over TCP only; BM_Dispatch and
// BM_IdleChats still put more than 1,000 runs on the worker, the load they once broke at.
void Register(bool smoke) {
  auto* dispatch = benchmark::RegisterBenchmark("BM_Dispatch", BM_Dispatch)->ArgName("unix");
  if (smoke) {
    dispatch->Arg(0)->Iterations(1000);
  } else {
    dispatch->Arg(0)->Arg(1)->Iterations(1000);
  }
  dispatch->UseManualTime()->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("BM_HandoverToFirstChunk", BM_HandoverToFirstChunk)
      ->Iterations(smoke ? 5 : 200)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  for (auto* fn : {BM_OutputToReader, BM_CatchUpReader}) {
    const char* name = fn == BM_OutputToReader ? "BM_OutputToReader" : "BM_CatchUpReader";
    auto* b = benchmark::RegisterBenchmark(name, fn)->ArgNames({"deltas", "unix", "batch"});
    if (smoke) {
      b->Args({2'000, 0, 0})->Args({2'000, 0, 1})->Iterations(2);
    } else {
      for (int unix_socket : {0, 1}) {
        for (int batch : {0, 1}) b->Args({20'000, unix_socket, batch});
      }
      b->Iterations(fn == BM_OutputToReader ? 5 : 10);
    }
    b->UseManualTime()->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("BM_IdleChats", BM_IdleChats)
      ->Arg(smoke ? 1'100 : 10'000)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_StackChatTurns", BM_StackChatTurns)
      ->Arg(smoke ? 20 : 209)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
}

// ---- 5. idle streams ---------------------------------------------------------------------------

// Counts down to zero; Wait blocks until it is there or the limit passed.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void CountDown() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ == 0) cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kLimit, [&] { return count_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

// A following Read on gRPC's client callback API (no thread of this process per stream). It is
// ready once it has read its chat's turn-complete; then it waits, as a browser's tab would.
class IdleFollower final : public grpc::ClientReadReactor<v1::ReadResponse> {
 public:
  IdleFollower(v1::Sessions::Stub& sessions, const std::string& chat_id, Latch& ready, Latch& done)
      : ready_(ready), done_(done) {
    request_.set_chat_id(chat_id);
    request_.set_follow(true);
    sessions.async()->Read(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended: OnDone follows
    const v1::OutRecord& r = response_.record();
    if (!counted_ && r.has_control() && r.control().subtype() == "turn-complete") {
      counted_ = true;
      ready_.CountDown();
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status&) override { done_.CountDown(); }

 private:
  grpc::ClientContext context_;
  v1::ReadRequest request_;
  v1::ReadResponse response_;
  Latch& ready_;
  Latch& done_;
  bool counted_ = false;
};

// A worker stream that does nothing but heartbeat (Hello with no capacity, then a Heartbeat
// when asked), on the client callback API, reading whatever the orchestrator sends.
class IdleWorkerStream final : public grpc::ClientBidiReactor<v1::WorkerFrame, v1::GatewayFrame> {
 public:
  IdleWorkerStream(v1::WorkerGateway::Stub& gateway, const std::string& worker_id, Latch& welcomed,
                   Latch& done)
      : welcomed_(welcomed), done_(done) {
    v1::Hello& hello = *out_.mutable_hello();
    hello.set_worker_id(worker_id);
    hello.set_protocol_version(v1::PROTOCOL_VERSION_1);
    hello.add_agents()->set_name("idle");
    gateway.async()->Connect(&context_, this);
    writing_ = true;
    StartWrite(&out_);
    StartRead(&in_);
    StartCall();
  }
  void Heartbeat() {
    std::lock_guard<std::mutex> lock(mu_);
    if (writing_ || ended_) return;
    writing_ = true;
    out_.mutable_heartbeat()->set_seq(++seq_);
    StartWrite(&out_);
  }
  void Cancel() { context_.TryCancel(); }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    ended_ = ended_ || !ok;
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (in_.has_welcome() && !welcomed_once_) {
      welcomed_once_ = true;
      welcomed_.CountDown();
    }
    StartRead(&in_);
  }
  void OnDone(const grpc::Status&) override { done_.CountDown(); }

 private:
  grpc::ClientContext context_;
  v1::WorkerFrame out_;
  v1::GatewayFrame in_;
  Latch& welcomed_;
  Latch& done_;
  std::mutex mu_;
  bool writing_ = false;
  bool ended_ = false;
  bool welcomed_once_ = false;
  int64_t seq_ = 0;
};

// How long the idle benchmarks measure, before and after the streams open: 15 s, or
// $BATON_BENCH_IDLE_SECONDS (a smoke run can take 1).
std::chrono::seconds IdleInterval() {
  const char* text = std::getenv("BATON_BENCH_IDLE_SECONDS");
  int seconds = text != nullptr ? std::atoi(text) : 0;
  return std::chrono::seconds(seconds > 0 ? seconds : 15);
}

// The orchestrator's CPU time over `interval` (while `during` runs now and then), as a share of
// one core, and its VmRSS and threads at the end.
struct IdleSample {
  double cpu_share = 0;
  ProcStatus status;
};

IdleSample MeasureIdle(pid_t pid, const std::function<void()>& during = nullptr,
                       std::chrono::seconds every = std::chrono::seconds(5)) {
  double cpu = CpuSeconds(pid);
  TimePoint start = SteadyClock::now();
  TimePoint end = start + IdleInterval();
  TimePoint next = start;
  while (SteadyClock::now() < end) {
    if (during != nullptr && SteadyClock::now() >= next) {
      during();
      next += every;
    }
    std::this_thread::sleep_until(std::min(next, end));
  }
  IdleSample sample;
  sample.cpu_share = (CpuSeconds(pid) - cpu) / Seconds(SteadyClock::now() - start);
  sample.status = ReadProcStatus(pid);
  return sample;
}

void CountIdle(benchmark::State& state, const IdleSample& before, const IdleSample& after, int n,
               const std::string& unit) {
  state.counters[absl::StrCat("orch_KiB_per_", unit)] =
      static_cast<double>(after.status.rss_kib - before.status.rss_kib) / n;
  state.counters["orch_MiB_before"] = before.status.rss_kib / 1024.0;
  state.counters["orch_MiB_after"] = after.status.rss_kib / 1024.0;
  state.counters["orch_threads_before"] = static_cast<double>(before.status.threads);
  state.counters["orch_threads_after"] = static_cast<double>(after.status.threads);
  state.counters["orch_cpu_pct_before"] = before.cpu_share * 100;
  state.counters["orch_cpu_pct_after"] = after.cpu_share * 100;
  state.counters[absl::StrCat("orch_cpu_us_per_s_per_", unit)] =
      (after.cpu_share - before.cpu_share) * 1e6 / n;
}

// `n` following Reads on idle chats (50 per chat, each chat answered once before), opened from
// one client channel. The orchestrator's VmRSS, threads and CPU share over 15 s of idle, before
// and after they are open.
void BM_IdleFollowers(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  constexpr int kPerChat = 50;
  const int chats = (n + kPerChat - 1) / kPerChat;
  std::string error;
  auto stack =
      Stack::Start({.script = Script({{{"repeat", true}, {"reply", {{"text", "Idle now."}}}}}),
                    .worker_flags = {"--idle_timeout_ms=3600000"}},
                   &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  for (int c = 0; c < chats; ++c) {
    std::string chat = absl::StrCat("idle-", c);
    grpc::Status s = stack->Create(chat, "chat", v1::TRIGGER_SUBMIT_MESSAGE,
                                   Json{{"message", UserMessage("u1", "Hello.")}}, nullptr);
    if (!s.ok()) return state.SkipWithError(s.error_message().c_str());
    ReadResult r = ReadAll(stack->sessions(), chat, /*follow=*/true);
    if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
  }
  pid_t orchestrator = stack->orchestrator_pid();
  for (auto _ : state) {
    IdleSample before = MeasureIdle(orchestrator);
    auto channel = grpc::CreateChannel(stack->address(), grpc::InsecureChannelCredentials());
    auto sessions = v1::Sessions::NewStub(channel);
    Latch ready(n), done(n);
    std::vector<std::unique_ptr<IdleFollower>> followers;
    for (int i = 0; i < n; ++i) {
      followers.push_back(std::make_unique<IdleFollower>(
          *sessions, absl::StrCat("idle-", i / kPerChat), ready, done));
    }
    if (!ready.Wait()) {
      stack->Keep();
      return state.SkipWithError("not every follower read its chat");
    }
    IdleSample after = MeasureIdle(orchestrator);
    CountIdle(state, before, after, n, "follower");
    state.SetIterationTime(Seconds(IdleInterval()));
    for (auto& f : followers) f->Cancel();
    if (!done.Wait()) return state.SkipWithError("followers did not end");
  }
}
BENCHMARK(BM_IdleFollowers)
    ->Arg(1'000)
    ->Arg(10'000)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

// `n` worker streams that only heartbeat, every 5 s (the orchestrator's default interval), each
// on a channel (a TCP connection) of its own as separate worker processes would be. The
// orchestrator's VmRSS, threads and CPU share over 15 s, before and after they are open.
void BM_IdleWorkerStreams(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::string error;
  auto stack = Stack::Start({}, &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  pid_t orchestrator = stack->orchestrator_pid();
  for (auto _ : state) {
    IdleSample before = MeasureIdle(orchestrator);
    std::vector<std::unique_ptr<v1::WorkerGateway::Stub>> gateways;
    std::vector<std::unique_ptr<IdleWorkerStream>> streams;
    Latch welcomed(n), done(n);
    for (int i = 0; i < n; ++i) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      gateways.push_back(v1::WorkerGateway::NewStub(
          grpc::CreateCustomChannel(stack->address(), grpc::InsecureChannelCredentials(), args)));
      streams.push_back(std::make_unique<IdleWorkerStream>(
          *gateways.back(), absl::StrCat("idle-worker-", i), welcomed, done));
    }
    if (!welcomed.Wait()) {
      stack->Keep();
      return state.SkipWithError("not every stream was welcomed");
    }
    IdleSample after = MeasureIdle(orchestrator, [&] {
      for (auto& s : streams) s->Heartbeat();
    });
    CountIdle(state, before, after, n, "stream");
    state.SetIterationTime(Seconds(IdleInterval()));
    for (auto& s : streams) s->Cancel();
    if (!done.Wait()) return state.SkipWithError("streams did not end");
  }
}
BENCHMARK(BM_IdleWorkerStreams)
    ->Arg(100)
    ->Arg(1'000)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

// ---- 6. through baton-gateway (issue 13) -------------------------------------------------------

// baton-gateway in front of a Stack, a child process like the others.
class GatewayProcess {
 public:
  static std::unique_ptr<GatewayProcess> Start(Stack& stack, std::vector<std::string> flags,
                                               std::string* error) {
    std::vector<std::string> argv = {BATON_GATEWAY_BINARY,
                                     "--listen=127.0.0.1:0",
                                     absl::StrCat("--orchestrator=", stack.address()),
                                     "--agent=chat",
                                     "--public_create",
                                     "--web_dir="};
    for (std::string& f : flags) argv.push_back(std::move(f));
    std::unique_ptr<GatewayProcess> g(new GatewayProcess());
    g->process_ = Process::Spawn(argv, stack.dir() + "/gateway.log", /*pipe_stdout=*/true, error);
    if (g->process_ == nullptr) return nullptr;
    std::optional<std::string> listening = g->process_->WaitForLine("listening ");
    if (!listening.has_value()) {
      *error = absl::StrCat("the gateway did not start; see ", stack.dir(), "/gateway.log");
      stack.Keep();
      return nullptr;
    }
    g->url_ = absl::StrCat("http://", *listening);
    return g;
  }
  const std::string& url() const { return url_; }
  pid_t pid() const { return process_->pid(); }

 private:
  GatewayProcess() = default;
  std::unique_ptr<Process> process_;
  std::string url_;
};

// An HTTP transfer's SSE as this process saw it: when it was sent, when its first text-delta
// came, how many events it carried, how it ended.
struct SseTransfer {
  TimePoint sent;
  std::optional<TimePoint> first_delta;
  int64_t events = 0;
  int status = 0;
  std::string error;
  std::stop_source stop;
  std::function<void()> on_head;  // optional: runs when the response's head came
};

// Requests from this process on an event loop of its own, with baton's HttpClient (libcurl).
class HttpLoop {
 public:
  HttpLoop() : work_(asio::make_work_guard(io_)), http_(io_.get_executor()) {
    thread_ = std::thread([this] { io_.run(); });
  }
  ~HttpLoop() {
    asio::post(io_, [this] { work_.reset(); });
    thread_.join();
  }

  // Starts `request` on the loop; `done` runs there when it ended.
  void Start(HttpRequest request, SseTransfer* t, std::function<void()> done) {
    asio::post(io_, [this, request = std::move(request), t, done = std::move(done)]() mutable {
      asio::co_spawn(io_, Run(std::move(request), t, std::move(done)), asio::detached);
    });
  }

 private:
  asio::awaitable<void> Run(HttpRequest request, SseTransfer* t, std::function<void()> done) {
    std::string carry;  // the end of the last read: an event or a marker may span two reads
    auto on_head = [t](const HttpHead& head) {
      t->status = head.status;
      if (t->on_head) t->on_head();
    };
    auto on_body = [t, &carry](std::string_view bytes) {
      std::string text = carry + std::string(bytes);
      if (!t->first_delta.has_value() &&
          text.find("\"type\":\"text-delta\"") != std::string::npos) {
        t->first_delta = SteadyClock::now();
      }
      for (size_t at = text.find("\n\n", carry.size() > 0 ? carry.size() - 1 : 0);
           at != std::string::npos; at = text.find("\n\n", at + 2)) {
        ++t->events;
      }
      carry = text.substr(text.size() > 24 ? text.size() - 24 : 0);
      return true;
    };
    t->sent = SteadyClock::now();
    absl::Status status =
        co_await http_.Fetch(std::move(request), on_head, on_body, t->stop.get_token());
    if (!status.ok() && !t->stop.stop_requested()) t->error = status.ToString();
    done();
  }

  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  HttpClient http_;
  std::thread thread_;
};

HttpRequest PostChat(const std::string& url, const std::string& chat_id, const std::string& text) {
  HttpRequest request;
  request.url = absl::StrCat(url, "/api/chat");
  request.headers = {"Content-Type: application/json"};
  request.body = DumpJson(Json{{"id", chat_id},
                               {"messages", Json::array({UserMessage("u1", text)})},
                               {"trigger", "submit-message"}});
  return request;
}

// Waits until the worker has announced its agents (a head start needs them), asking as
// WaitForRunState-style round trips.
bool WaitForAgent(Stack& stack) {
  auto until = SteadyClock::now() + kLimit;
  while (SteadyClock::now() < until) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kLimit);
    v1::GetAgentRequest request;
    request.set_name("chat");
    v1::AgentInfo info;
    if (stack.sessions().GetAgent(&context, request, &info).ok()) return true;
  }
  return false;
}

// A chat's first answer through the gateway, as the AI SDK's transport asks for it: time from
// the POST to the first text-delta read, with fake-llm's first byte 400 ms after each request
// (the figure reported is what baton adds: TTFT - 400 ms). Paths: 0 cold (the chat's first
// POST, the run boots for it, no head start), 1 preload (the run was booted before the POST), 2
// head start (the gateway runs step 1 itself while the run boots).
void BM_GatewayFirstToken(benchmark::State& state) {
  const int path = static_cast<int>(state.range(0));
  constexpr int kFirstByteMs = 400;
  std::string error;
  auto stack =
      Stack::Start({.script = Script({{{"repeat", true},
                                       {"ttfb_ms", kFirstByteMs},
                                       {"reply", {{"text", "Calm and clear, 12 degrees."}}}}}),
                    .worker_flags = {"--idle_timeout_ms=3600000"}},
                   &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  std::vector<std::string> flags = {"--head_start=false"};
  if (path == 2) {
    flags = {"--head_start", absl::StrCat("--base_url=", stack->llm_url()),
             "--api_key_env=BATON_BENCH_NO_KEY"};
  }
  auto gateway = GatewayProcess::Start(*stack, flags, &error);
  if (gateway == nullptr) return state.SkipWithError(error.c_str());
  if (!WaitForAgent(*stack)) return state.SkipWithError("the worker never announced its agents");
  HttpLoop loop;
  std::vector<double> overhead_ms;
  int n = 0;
  for (auto _ : state) {
    std::string chat = absl::StrCat("ttft-", path, "-", n++);
    if (path == 1 && !stack->Preload(chat, &error)) return state.SkipWithError(error.c_str());
    SseTransfer t;
    Latch done(1);
    loop.Start(PostChat(gateway->url(), chat, "How is the weather?"), &t,
               [&] { done.CountDown(); });
    if (!done.Wait()) return state.SkipWithError("the answer did not end");
    if (!t.error.empty() || t.status != 200 || !t.first_delta.has_value()) {
      stack->Keep();
      return state.SkipWithError(
          absl::StrCat("no answer: status ", t.status, " ", t.error).c_str());
    }
    double ttft = Seconds(*t.first_delta - t.sent);
    state.SetIterationTime(ttft);
    overhead_ms.push_back(ttft * 1e3 - kFirstByteMs);
  }
  state.counters["overhead_p50_ms"] = Quantile(overhead_ms, 0.5);
  state.counters["overhead_p95_ms"] = Quantile(overhead_ms, 0.95);
  state.counters["overhead_max_ms"] = Quantile(overhead_ms, 1.0);
}

// A finished chat's `.out` (a 2,000-delta answer: 2,007 records) read from seq 0 by `readers`
// clients at once through the gateway's REST mirror (GET /v1/sessions/{id}/records, SSE), all
// sharing the gateway's one upstream Read. Time: first request sent -> last reader done; the
// figure: SSE events delivered per second, all readers together, and the gateway's CPU per
// event.
void BM_GatewayReaders(benchmark::State& state) {
  const int readers = static_cast<int>(state.range(0));
  std::string error;
  auto stack = Stack::Start({.script = LongReply(2'000)}, &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  grpc::Status s = stack->Create("long", "chat", v1::TRIGGER_SUBMIT_MESSAGE,
                                 Json{{"message", UserMessage("u1", "Talk.")}}, nullptr);
  if (!s.ok()) return state.SkipWithError(s.error_message().c_str());
  ReadResult whole = ReadAll(stack->sessions(), "long", /*follow=*/true);
  if (!whole.error.empty()) return state.SkipWithError(whole.error.c_str());
  auto gateway = GatewayProcess::Start(*stack, {"--head_start=false"}, &error);
  if (gateway == nullptr) return state.SkipWithError(error.c_str());
  HttpLoop loop;
  int64_t events = 0;
  double gateway_cpu = 0;
  for (auto _ : state) {
    std::vector<SseTransfer> transfers(static_cast<size_t>(readers));
    Latch done(readers);
    double cpu_before = CpuSeconds(gateway->pid());
    TimePoint start = SteadyClock::now();
    for (SseTransfer& t : transfers) {
      HttpRequest request;
      request.url = absl::StrCat(gateway->url(), "/v1/sessions/long/records?after=0");
      loop.Start(std::move(request), &t, [&] { done.CountDown(); });
    }
    if (!done.Wait()) return state.SkipWithError("the readers did not end");
    state.SetIterationTime(Seconds(SteadyClock::now() - start));
    gateway_cpu += CpuSeconds(gateway->pid()) - cpu_before;
    for (const SseTransfer& t : transfers) {
      if (!t.error.empty() || t.status != 200 || t.events < whole.records) {
        stack->Keep();
        return state.SkipWithError(absl::StrCat("a reader got ", t.events, " of ", whole.records,
                                                " events: status ", t.status, " ", t.error)
                                       .c_str());
      }
      events += t.events;
    }
  }
  state.SetItemsProcessed(events);
  state.counters["gateway_cpu_us_per_event"] = gateway_cpu * 1e6 / static_cast<double>(events);
}

// `n` SSE responses open on the gateway and idle: following readers of chats answered once (50
// per chat), each an HTTP connection of its own. The gateway's VmRSS and threads before and
// after they are open.
void BM_GatewayIdleStreams(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  constexpr int kPerChat = 50;
  const int chats = (n + kPerChat - 1) / kPerChat;
  std::string error;
  auto stack =
      Stack::Start({.script = Script({{{"repeat", true}, {"reply", {{"text", "Idle now."}}}}}),
                    .worker_flags = {"--idle_timeout_ms=3600000"}},
                   &error);
  if (stack == nullptr) return state.SkipWithError(error.c_str());
  int64_t after_seq = 0;
  for (int c = 0; c < chats; ++c) {
    std::string chat = absl::StrCat("idle-", c);
    grpc::Status s = stack->Create(chat, "chat", v1::TRIGGER_SUBMIT_MESSAGE,
                                   Json{{"message", UserMessage("u1", "Hello.")}}, nullptr);
    if (!s.ok()) return state.SkipWithError(s.error_message().c_str());
    ReadResult r = ReadAll(stack->sessions(), chat, /*follow=*/true);
    if (!r.error.empty()) return state.SkipWithError(r.error.c_str());
    after_seq = r.records;
  }
  auto gateway = GatewayProcess::Start(*stack, {"--head_start=false"}, &error);
  if (gateway == nullptr) return state.SkipWithError(error.c_str());
  HttpLoop loop;
  for (auto _ : state) {
    ProcStatus before = ReadProcStatus(gateway->pid());
    std::vector<SseTransfer> transfers(static_cast<size_t>(n));
    Latch done(n), heads(n);
    TimePoint start = SteadyClock::now();
    for (int i = 0; i < n; ++i) {
      transfers[static_cast<size_t>(i)].on_head = [&] { heads.CountDown(); };
      HttpRequest request;
      request.url = absl::StrCat(gateway->url(), "/v1/sessions/idle-", i / kPerChat,
                                 "/records?follow=true&after=", after_seq);
      request.idle_timeout = absl::Hours(1);
      loop.Start(std::move(request), &transfers[static_cast<size_t>(i)], [&] { done.CountDown(); });
    }
    if (!heads.Wait()) return state.SkipWithError("not every stream was answered");
    ProcStatus after = ReadProcStatus(gateway->pid());
    state.SetIterationTime(Seconds(SteadyClock::now() - start));
    state.counters["gateway_rss_mib_before"] = static_cast<double>(before.rss_kib) / 1024.0;
    state.counters["gateway_rss_mib_after"] = static_cast<double>(after.rss_kib) / 1024.0;
    state.counters["gateway_kib_per_stream"] =
        static_cast<double>(after.rss_kib - before.rss_kib) / n;
    state.counters["gateway_threads_before"] = static_cast<double>(before.threads);
    state.counters["gateway_threads_after"] = static_cast<double>(after.threads);
    for (SseTransfer& t : transfers) t.stop.request_stop();
    if (!done.Wait()) return state.SkipWithError("the streams did not end");
  }
}

void RegisterGateway(bool smoke) {
  benchmark::RegisterBenchmark("BM_GatewayFirstToken", BM_GatewayFirstToken)
      ->ArgName("path")
      ->DenseRange(0, 2)
      ->Iterations(smoke ? 2 : 30)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  auto* readers = benchmark::RegisterBenchmark("BM_GatewayReaders", BM_GatewayReaders);
  readers->ArgName("readers")->Arg(1);
  if (!smoke) readers->Arg(1'000);
  readers->Iterations(smoke ? 1 : 3)->UseManualTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_GatewayIdleStreams", BM_GatewayIdleStreams)
      ->Arg(smoke ? 100 : 5'000)
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

}  // namespace
}  // namespace baton::bench

int main(int argc, char** argv) {
  return baton::bench::BenchMain(argc, argv, [](bool smoke) {
    baton::bench::Register(smoke);
    baton::bench::RegisterGateway(smoke);
  });
}
