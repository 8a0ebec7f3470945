// File: tests/integration/stack.h
//
// The whole stack as real processes on loopback, for integration tests: baton-orchestrator on a
// fresh SQLite file, baton-worker processes hosting the agents of tasks/, and fake-llm (in the
// test process, a real HTTP server) as their provider. Tests drive it through the Sessions API
// and wait on events (a `.out` record, a hook, a line a process printed), never on sleeps.
#ifndef BATON_TESTS_INTEGRATION_STACK_H_
#define BATON_TESTS_INTEGRATION_STACK_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "baton/v1/sessions.grpc.pb.h"
#include "baton/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "hooks/json.h"
#include "runtime/client/grpc_client.h"
#include "tools/fake-llm/fake_llm.h"

namespace baton::testing {

inline constexpr std::chrono::seconds kLimit{30};

// A child process whose stdout is read line by line; stderr goes to a file beside it.
class Process {
 public:
  // `env`: "NAME=value" entries added to (or replacing in) the test's environment.
  static absl::StatusOr<std::unique_ptr<Process>> Spawn(std::vector<std::string> argv,
                                                        const std::string& stderr_path,
                                                        const std::vector<std::string>& env = {});
  ~Process();  // SIGKILL when still running, then reaps
  // Blocks until a line starting with `prefix` is printed; returns the rest of the line.
  absl::StatusOr<std::string> WaitForLine(const std::string& prefix,
                                          std::chrono::milliseconds limit = kLimit);
  // Reads stdout to its end (the process closed it, usually by exiting).
  std::string ReadAll();
  void Signal(int signal);
  // Reaps the process; its exit code, or 128 + signal.
  int Wait();
  // As Wait, but gives up after `limit` (nullopt: still running).
  std::optional<int> WaitFor(std::chrono::milliseconds limit);
  pid_t pid() const { return pid_; }

 private:
  Process(pid_t pid, int out_fd) : pid_(pid), out_fd_(out_fd) {}
  pid_t pid_;
  int out_fd_;
  std::string buffer_;
  bool reaped_ = false;
  int status_ = 0;
};

// Lifecycle points a worker reports through its --hook_log (a FIFO the stack reads).
class HookLog {
 public:
  explicit HookLog(std::string path);
  ~HookLog();
  // Blocks until `count` lines with hook `name` were seen (in total).
  bool WaitFor(const std::string& name, size_t count = 1, std::chrono::milliseconds limit = kLimit);
  // Blocks until `done` holds for the lines seen so far.
  bool WaitUntil(const std::function<bool(const std::vector<Json>&)>& done,
                 std::chrono::milliseconds limit = kLimit);
  std::vector<Json> lines() const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::vector<Json> lines_ ABSL_GUARDED_BY(mu_);
};

struct StackOptions {
  Json script;  // fake-llm's script (docs/fake-llm.md)
  int workers = 1;
  int capacity = 100;
  std::vector<std::string> orchestrator_flags;
  std::vector<std::string> worker_flags;
  bool unix_socket = false;   // the orchestrator listens on a Unix socket instead of loopback TCP
  std::string worker_binary;  // empty: baton-worker
  // "NAME=value" entries for the orchestrator's and the workers' environment.
  std::vector<std::string> env;
  // How the stack's own client (sessions(), gateway()) reaches the orchestrator.
  ClientSecurity client;
};

class Stack {
 public:
  static std::unique_ptr<Stack> Start(StackOptions options);
  ~Stack();

  baton::v1::Sessions::Stub& sessions() { return *sessions_; }
  baton::v1::WorkerGateway::Stub& gateway() { return *gateway_; }
  const std::string& address() const { return address_; }
  // Another channel to the orchestrator, as a client with `security` would open it.
  std::shared_ptr<grpc::Channel> Channel(const ClientSecurity& security) const;
  // The orchestrator's admin endpoint (host:port), when started with --admin=...
  const std::string& admin_address() const { return admin_address_; }
  fakellm::FakeLlm& llm() { return *llm_; }
  HookLog& hooks(int worker = 0) { return *hook_logs_[worker]; }
  Process& worker(int i = 0) { return *workers_[i]; }
  Process& orchestrator() { return *orchestrator_; }
  // Starts one more worker; returns its index. With --admin=/--health= among the flags, waits
  // for the worker to print where they listen (see worker_endpoint()).
  int AddWorker(std::vector<std::string> extra_flags = {});
  // "admin" or "health" endpoint (host:port) of worker `i`, when it was started with one.
  std::string worker_endpoint(int i, const std::string& kind) const;
  // Stops the orchestrator (SIGKILL) and starts it again on the same file and port.
  void RestartOrchestrator();
  // A file in the stack's scratch directory.
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Sessions calls, failing the test on error.
  baton::v1::Session Create(const std::string& chat_id, const std::string& agent,
                            const std::string& trigger, Json payload = Json::object());
  int64_t Append(const std::string& chat_id, const Json& body);
  int64_t SendText(const std::string& chat_id, const std::string& id, const std::string& text);
  baton::v1::Session Get(const std::string& chat_id);
  // CancelRun of the chat's live run.
  baton::v1::Run Cancel(const std::string& chat_id);
  std::vector<baton::v1::Run> Runs(const std::string& chat_id = "");
  // Asks until the chat's latest run is in `state` (each answer is a round trip to the
  // orchestrator, so this waits on its state, not on a timer); false after the limit.
  bool WaitForRunState(const std::string& chat_id, baton::v1::RunState state,
                       std::chrono::milliseconds limit = kLimit);

  // Asks until a connected worker announces `agent` (Sessions.GetAgent answers), as
  // WaitForRunState asks; false after the limit.
  bool WaitForAgent(const std::string& agent, std::chrono::milliseconds limit = kLimit);

  // Follows `.out` after `after_seq` until `done` holds for the records read so far (each
  // chunk as its JSON, a control record as {"control": subtype, "headers": {...}, "seq": n}).
  std::vector<Json> ReadUntil(const std::string& chat_id, int64_t after_seq,
                              const std::function<bool(const std::vector<Json>&)>& done,
                              std::chrono::milliseconds limit = kLimit);
  // Follows `.out` until `turns` more turn-complete records.
  std::vector<Json> ReadTurns(const std::string& chat_id, int64_t after_seq, int turns = 1);

 private:
  Stack() = default;
  void StartOrchestrator();

  StackOptions options_;
  std::string dir_;
  std::string address_;
  std::string admin_address_;
  std::atomic<int64_t> appends_{0};  // record ids; tests may append from many threads
  std::unique_ptr<fakellm::FakeLlm> llm_;
  std::unique_ptr<Process> orchestrator_;
  std::vector<std::unique_ptr<Process>> workers_;
  std::vector<std::unique_ptr<HookLog>> hook_logs_;
  std::vector<std::map<std::string, std::string>> worker_endpoints_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<baton::v1::Sessions::Stub> sessions_;
  std::unique_ptr<baton::v1::WorkerGateway::Stub> gateway_;
};

// GET `url` (an admin endpoint); its body, with the HTTP status in `status` (0 when none came).
std::string HttpGet(const std::string& url, long* status);

// Blocks until the file at `path` contains `text` (it may not exist yet); false after `limit`.
// For a process's log: waits on the file's changes (inotify), not on a timer.
bool WaitForFileContains(const std::string& path, const std::string& text,
                         std::chrono::milliseconds limit = kLimit);

// A `.out` record as the helpers above give it: a chunk as its JSON with "$seq", a control
// record as {"control": subtype, "headers": {...}, "seq": n}.
Json RecordJson(const baton::v1::OutRecord& record);
// The seq of a record in that form.
int64_t SeqOf(const Json& record);

// A worker written by hand: speaks WorkerGateway frame by frame over its own Connect stream
// (Hello as worker `worker_id` hosting `agent` with capacity 10, then Credit{credit}), so a
// test sees each protocol rule exactly.
class RawWorker {
 public:
  RawWorker(baton::v1::WorkerGateway::Stub& gateway, int credit,
            const std::string& worker_id = "raw", const std::string& agent = "chat");
  ~RawWorker() { context_.TryCancel(); }

  void Send(const baton::v1::WorkerFrame& frame) { EXPECT_TRUE(TrySend(frame)); }
  bool TrySend(const baton::v1::WorkerFrame& frame) { return stream_->Write(frame); }
  // The next frame of kind `kind`, skipping others (heartbeat acks, ...).
  baton::v1::GatewayFrame Next(baton::v1::GatewayFrame::FrameCase kind);
  // Reads to the end of the stream (the orchestrator closed it); its status.
  grpc::Status Finish();
  const baton::v1::Welcome& welcome() const { return welcome_; }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<baton::v1::WorkerFrame, baton::v1::GatewayFrame>>
      stream_;
  baton::v1::Welcome welcome_;
};

// The `.out` records' chunk types, with "trigger:<subtype>" for control records.
std::vector<std::string> Types(const std::vector<Json>& records);
// The text of every text-delta, joined.
std::string Text(const std::vector<Json>& records);
int CountControl(const std::vector<Json>& records, const std::string& subtype);
// A record's `.out` seq, chunk or control record.
int64_t Seq(const Json& record);
// The one assistant message a reader folds from `records` (one answer: its `start` and what
// follows), as the AI SDK client folds chunks (runtime/transcript/ui_reducer.h); control records
// are not part of it. Fails the test on a second `start` or a chunk the reducer refuses (a delta
// for a part never started, a tool result for a call it never saw).
Json ReadMessage(const std::vector<Json>& records);

}  // namespace baton::testing

#endif  // BATON_TESTS_INTEGRATION_STACK_H_
