#include "tests/integration/stack.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "runtime/protocol/wire.h"
#include "runtime/transcript/ui_reducer.h"

extern char** environ;

namespace baton::testing {

namespace v1 = ::baton::v1;

// ---- Process ----------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Process>> Process::Spawn(std::vector<std::string> argv,
                                                        const std::string& stderr_path,
                                                        const std::vector<std::string>& env) {
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    std::string name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& extra : env) replaced |= extra.substr(0, extra.find('=')) == name;
    if (!replaced) environment.push_back(std::move(entry));
  }
  for (const std::string& extra : env) environment.push_back(extra);
  std::vector<char*> envp;
  for (std::string& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return absl::InternalError(absl::StrCat("cannot start ", argv[0], ": ", strerror(rc)));
  }
  return std::unique_ptr<Process>(new Process(pid, out[0]));
}

Process::~Process() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    Wait();
  }
  close(out_fd_);
}

absl::StatusOr<std::string> Process::WaitForLine(const std::string& prefix,
                                                 std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    size_t newline;
    while ((newline = buffer_.find('\n')) != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      if (absl::StartsWith(line, prefix)) return line.substr(prefix.size());
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError(absl::StrCat("no \"", prefix, "\""));
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    ssize_t n = read(out_fd_, chunk, sizeof(chunk));
    if (n <= 0)
      return absl::UnavailableError(absl::StrCat("process ended before \"", prefix, "\""));
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::string Process::ReadAll() {
  std::string all = std::move(buffer_);
  buffer_.clear();
  char chunk[4096];
  ssize_t n;
  while ((n = read(out_fd_, chunk, sizeof(chunk))) > 0) all.append(chunk, static_cast<size_t>(n));
  return all;
}

void Process::Signal(int signal) {
  if (!reaped_) kill(pid_, signal);
}

int Process::Wait() {
  if (!reaped_) {
    while (waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
}

std::optional<int> Process::WaitFor(std::chrono::milliseconds limit) {
  if (!reaped_) {
    // A pidfd becomes readable when the process exits: poll it with the limit.
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (fd < 0) return Wait();  // no pidfds: the test's own timeout is the bound
    pollfd p{fd, POLLIN, 0};
    int ready;
    while ((ready = poll(&p, 1, static_cast<int>(limit.count()))) < 0 && errno == EINTR) {
    }
    close(fd);
    if (ready <= 0) return std::nullopt;
  }
  return Wait();
}

// ---- HookLog ----------------------------------------------------------------------------------

HookLog::HookLog(std::string path) : path_(std::move(path)) {
  mkfifo(path_.c_str(), 0600);
  reader_ = std::thread([this] {
    std::ifstream in(path_);  // blocks until the worker opens its end
    std::string line;
    while (std::getline(in, line)) {
      absl::StatusOr<Json> json = ParseJson(line);
      if (!json.ok()) continue;
      absl::MutexLock lock(&mu_);
      lines_.push_back(*std::move(json));
    }
  });
}

HookLog::~HookLog() {
  // A worker that never started leaves the reader blocked in open: open the write end once.
  int fd = open(path_.c_str(), O_WRONLY | O_NONBLOCK);
  if (fd >= 0) close(fd);
  reader_.join();
}

bool HookLog::WaitFor(const std::string& name, size_t count, std::chrono::milliseconds limit) {
  absl::MutexLock lock(&mu_);
  auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    for (const Json& line : lines_) n += StringField(line, "hook") == name ? 1 : 0;
    return n >= count;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&seen), absl::FromChrono(limit));
}

bool HookLog::WaitUntil(const std::function<bool(const std::vector<Json>&)>& done,
                        std::chrono::milliseconds limit) {
  absl::MutexLock lock(&mu_);
  auto holds = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(lines_); };
  return mu_.AwaitWithTimeout(absl::Condition(&holds), absl::FromChrono(limit));
}

std::vector<Json> HookLog::lines() const {
  absl::MutexLock lock(&mu_);
  return lines_;
}

// ---- Stack ------------------------------------------------------------------------------------

std::unique_ptr<Stack> Stack::Start(StackOptions options) {
  std::unique_ptr<Stack> stack(new Stack());
  stack->options_ = std::move(options);
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  // One directory per test: a parameterised test's name ("Scenario/01_x") is flattened, so that
  // removing it at the end leaves no empty parent behind.
  std::string name = test != nullptr ? test->name() : "x";
  std::replace(name.begin(), name.end(), '/', '_');
  stack->dir_ = absl::StrCat(::testing::TempDir(), "stack-", getpid(), "-", name);
  std::filesystem::remove_all(stack->dir_);
  std::filesystem::create_directories(stack->dir_);
  if (stack->options_.script.is_null()) stack->options_.script = {{"responses", Json::array()}};
  absl::StatusOr<std::unique_ptr<fakellm::FakeLlm>> llm =
      fakellm::FakeLlm::Start(stack->options_.script);
  EXPECT_TRUE(llm.ok()) << llm.status();
  if (!llm.ok()) return nullptr;
  stack->llm_ = *std::move(llm);
  stack->StartOrchestrator();
  if (stack->address_.empty()) return nullptr;
  grpc::ChannelArguments args;  // reconnect quickly to a restarted orchestrator
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  stack->channel_ = OpenChannel(stack->address_, stack->options_.client, args);
  stack->sessions_ = v1::Sessions::NewStub(stack->channel_);
  stack->gateway_ = v1::WorkerGateway::NewStub(stack->channel_);
  for (int i = 0; i < stack->options_.workers; ++i) stack->AddWorker();
  return stack;
}

void Stack::StartOrchestrator() {
  std::string listen = address_;
  if (listen.empty()) {
    listen =
        options_.unix_socket ? absl::StrCat("unix:", dir_, "/orchestrator.sock") : "127.0.0.1:0";
  }
  std::vector<std::string> argv = {BATON_ORCHESTRATOR_BINARY, absl::StrCat("--listen=", listen),
                                   absl::StrCat("--db=", dir_, "/baton.db")};
  for (const std::string& f : options_.orchestrator_flags) argv.push_back(f);
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Spawn(argv, absl::StrCat(dir_, "/orchestrator.log"), options_.env);
  ASSERT_TRUE(p.ok()) << p.status();
  orchestrator_ = *std::move(p);
  for (const std::string& flag : options_.orchestrator_flags) {
    if (absl::StartsWith(flag, "--admin=")) {
      absl::StatusOr<std::string> admin = orchestrator_->WaitForLine("admin ");
      ASSERT_TRUE(admin.ok()) << admin.status();
      admin_address_ = *admin;
    }
  }
  absl::StatusOr<std::string> line = orchestrator_->WaitForLine("listening ");
  ASSERT_TRUE(line.ok()) << line.status() << "; see " << dir_ << "/orchestrator.log";
  address_ = *line;
}

void Stack::RestartOrchestrator() {
  orchestrator_.reset();  // SIGKILL
  StartOrchestrator();
}

int Stack::AddWorker(std::vector<std::string> extra_flags) {
  int index = static_cast<int>(workers_.size());
  hook_logs_.push_back(std::make_unique<HookLog>(absl::StrCat(dir_, "/hooks-", index)));
  std::vector<std::string> argv = {
      options_.worker_binary.empty() ? std::string(BATON_WORKER_BINARY) : options_.worker_binary,
      absl::StrCat("--orchestrator=", address_),
      absl::StrCat("--worker_id=worker-", index),
      absl::StrCat("--capacity=", options_.capacity),
      absl::StrCat("--base_url=", llm_->base_url()),
      "--provider=anthropic",
      "--api_key_env=BATON_TEST_NO_KEY",
      "--model=test",
      absl::StrCat("--hook_log=", hook_logs_.back()->path())};
  for (const std::string& f : options_.worker_flags) argv.push_back(f);
  for (const std::string& f : extra_flags) argv.push_back(f);
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Spawn(argv, absl::StrCat(dir_, "/worker-", index, ".log"), options_.env);
  EXPECT_TRUE(p.ok()) << p.status();
  workers_.push_back(p.ok() ? *std::move(p) : nullptr);
  worker_endpoints_.emplace_back();
  // The worker prints its admin line before its health line.
  for (const char* kind : {"admin", "health"}) {
    for (const std::string& flag : argv) {
      if (workers_.back() == nullptr || !absl::StartsWith(flag, absl::StrCat("--", kind, "="))) {
        continue;
      }
      absl::StatusOr<std::string> line = workers_.back()->WaitForLine(absl::StrCat(kind, " "));
      EXPECT_TRUE(line.ok()) << line.status();
      if (line.ok()) worker_endpoints_.back()[kind] = *line;
    }
  }
  return index;
}

std::shared_ptr<grpc::Channel> Stack::Channel(const ClientSecurity& security) const {
  return OpenChannel(address_, security);
}

std::string Stack::worker_endpoint(int i, const std::string& kind) const {
  auto it = worker_endpoints_[i].find(kind);
  return it == worker_endpoints_[i].end() ? "" : it->second;
}

Stack::~Stack() {
  workers_.clear();
  orchestrator_.reset();
  hook_logs_.clear();
  // Kept when the test failed (its logs say why) or BATON_KEEP_STACKS is set (to see how long
  // each step took). Otherwise repeated runs would fill the disk.
  if (!::testing::Test::HasFailure() && std::getenv("BATON_KEEP_STACKS") == nullptr) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

namespace {
// Unary calls wait for the channel (an orchestrator restarting) up to the limit.
void Prepare(grpc::ClientContext& context) {
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
}
}  // namespace

v1::Session Stack::Create(const std::string& chat_id, const std::string& agent,
                          const std::string& trigger, Json payload) {
  grpc::ClientContext context;
  Prepare(context);
  v1::CreateSessionRequest request;
  request.set_chat_id(chat_id);
  request.set_agent(agent);
  request.set_trigger(TriggerFromName(trigger));
  request.set_payload_json(DumpJson(payload));
  v1::CreateSessionResponse response;
  grpc::Status status = sessions_->CreateSession(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.session();
}

int64_t Stack::Append(const std::string& chat_id, const Json& body) {
  v1::AppendRequest request;
  request.set_chat_id(chat_id);
  request.set_body_json(DumpJson(body));
  // Retried as a client should when the orchestrator went away mid-call: the record id makes a
  // retry of a stored append return the first seq.
  request.set_client_record_id(absl::StrCat("stack-", ++appends_));
  v1::AppendResponse response;
  grpc::Status status;
  for (int attempt = 0; attempt < 5; ++attempt) {
    grpc::ClientContext context;
    Prepare(context);
    status = sessions_->Append(&context, request, &response);
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
  }
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.seq();
}

int64_t Stack::SendText(const std::string& chat_id, const std::string& id,
                        const std::string& text) {
  return Append(chat_id,
                Json{{"kind", "message"},
                     {"payload",
                      {{"chatId", chat_id},
                       {"trigger", "submit-message"},
                       {"message",
                        {{"id", id},
                         {"role", "user"},
                         {"parts", Json::array({{{"type", "text"}, {"text", text}}})}}}}}});
}

v1::Session Stack::Get(const std::string& chat_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::GetRequest request;
  request.set_chat_id(chat_id);
  v1::Session session;
  grpc::Status status = sessions_->Get(&context, request, &session);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return session;
}

v1::Run Stack::Cancel(const std::string& chat_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::CancelRunRequest request;
  request.set_chat_id(chat_id);
  v1::Run run;
  grpc::Status status = sessions_->CancelRun(&context, request, &run);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return run;
}

std::vector<v1::Run> Stack::Runs(const std::string& chat_id) {
  grpc::ClientContext context;
  Prepare(context);
  v1::ListRunsRequest request;
  request.set_chat_id(chat_id);
  v1::ListRunsResponse response;
  grpc::Status status = sessions_->ListRuns(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.runs().begin(), response.runs().end()};
}

bool Stack::WaitForRunState(const std::string& chat_id, v1::RunState state,
                            std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<v1::Run> runs = Runs(chat_id);
    if (!runs.empty() && runs.back().state() == state) return true;
  }
  return false;
}

bool Stack::WaitForAgent(const std::string& agent, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext context;
    Prepare(context);
    v1::GetAgentRequest request;
    request.set_name(agent);
    v1::AgentInfo info;
    if (sessions_->GetAgent(&context, request, &info).ok()) return true;
  }
  return false;
}

std::vector<Json> Stack::ReadUntil(const std::string& chat_id, int64_t after_seq,
                                   const std::function<bool(const std::vector<Json>&)>& done,
                                   std::chrono::milliseconds limit) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + limit);
  v1::ReadRequest request;
  request.set_chat_id(chat_id);
  request.set_after_seq(after_seq);
  request.set_follow(true);
  request.set_batch(true);
  std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader = sessions_->Read(&context, request);
  std::vector<Json> records;
  v1::ReadResponse response;
  while (!done(records) && reader->Read(&response)) {
    for (const v1::OutRecord& record : response.records()) {
      if (!done(records)) records.push_back(RecordJson(record));
    }
  }
  context.TryCancel();
  std::string seen = DumpJson(Json(records));
  if (seen.size() > 20000)
    seen = seen.substr(0, 10000) + " ... " + seen.substr(seen.size() - 10000);
  EXPECT_TRUE(done(records)) << "read " << records.size() << " records of " << chat_id
                             << " before the limit: " << seen;
  return records;
}

std::vector<Json> Stack::ReadTurns(const std::string& chat_id, int64_t after_seq, int turns) {
  return ReadUntil(chat_id, after_seq, [turns](const std::vector<Json>& records) {
    return CountControl(records, "turn-complete") >= turns;
  });
}

std::string HttpGet(const std::string& url, long* status) {
  std::string body;
  *status = 0;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t n, void* out) {
        static_cast<std::string*>(out)->append(data, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  CURLcode code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
  curl_easy_cleanup(curl);
  return code == CURLE_OK ? body : "";
}

bool WaitForFileContains(const std::string& path, const std::string& text,
                         std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  int watch = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (watch < 0) return false;
  // The directory is watched, so a file not created yet is seen when it is.
  std::string dir = std::filesystem::path(path).parent_path().string();
  inotify_add_watch(watch, dir.empty() ? "." : dir.c_str(), IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE);
  bool found = false;
  while (true) {
    std::ifstream in(path);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (content.find(text) != std::string::npos) {
      found = true;
      break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{watch, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) > 0) {
      char events[4096];
      while (read(watch, events, sizeof(events)) > 0) {
      }
    }
  }
  close(watch);
  return found;
}

Json RecordJson(const v1::OutRecord& r) {
  if (r.has_control()) {
    Json headers = Json::object();
    for (const v1::Header& h : r.control().headers()) headers[h.name()] = h.value();
    return Json{{"control", r.control().subtype()}, {"headers", headers}, {"seq", r.seq()}};
  }
  absl::StatusOr<Json> chunk = ParseJson(r.chunk_json());
  EXPECT_TRUE(chunk.ok()) << r.chunk_json();
  Json c = chunk.ok() ? *chunk : Json::object();
  c["$seq"] = r.seq();
  return c;
}

int64_t SeqOf(const Json& record) {
  return record.contains("$seq") ? record["$seq"].get<int64_t>() : record["seq"].get<int64_t>();
}

// ---- RawWorker --------------------------------------------------------------------------------

RawWorker::RawWorker(v1::WorkerGateway::Stub& gateway, int credit, const std::string& worker_id,
                     const std::string& agent) {
  context_.set_deadline(std::chrono::system_clock::now() + kLimit);
  stream_ = gateway.Connect(&context_);
  v1::WorkerFrame hello;
  hello.mutable_hello()->set_worker_id(worker_id);
  hello.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_1);
  hello.mutable_hello()->set_capacity(10);
  hello.mutable_hello()->add_agents()->set_name(agent);
  Send(hello);
  welcome_ = Next(v1::GatewayFrame::kWelcome).welcome();
  v1::WorkerFrame frame;
  frame.mutable_credit()->set_runs(credit);
  Send(frame);
}

v1::GatewayFrame RawWorker::Next(v1::GatewayFrame::FrameCase kind) {
  v1::GatewayFrame frame;
  while (stream_->Read(&frame)) {
    if (frame.frame_case() == kind) return frame;
  }
  ADD_FAILURE() << "the stream ended before a frame of kind " << kind;
  return frame;
}

grpc::Status RawWorker::Finish() {
  v1::GatewayFrame frame;
  while (stream_->Read(&frame)) {
  }
  return stream_->Finish();
}

std::vector<std::string> Types(const std::vector<Json>& records) {
  std::vector<std::string> types;
  for (const Json& r : records) {
    types.push_back(r.contains("control") ? absl::StrCat("trigger:", StringField(r, "control"))
                                          : StringField(r, "type"));
  }
  return types;
}

std::string Text(const std::vector<Json>& records) {
  std::string text;
  for (const Json& r : records) {
    if (StringField(r, "type") == "text-delta") text += StringField(r, "delta");
  }
  return text;
}

int CountControl(const std::vector<Json>& records, const std::string& subtype) {
  int n = 0;
  for (const Json& r : records) n += StringField(r, "control") == subtype ? 1 : 0;
  return n;
}

int64_t Seq(const Json& record) {
  const Json* seq = FindField(record, record.contains("$seq") ? "$seq" : "seq");
  return seq != nullptr && seq->is_number_integer() ? seq->get<int64_t>() : 0;
}

Json ReadMessage(const std::vector<Json>& records) {
  UiReducer reducer;
  int starts = 0;
  for (const Json& r : records) {
    if (r.contains("control")) continue;
    Json chunk = r;
    chunk.erase("$seq");
    if (StringField(chunk, "type") == "start") ++starts;
    absl::Status applied = reducer.Apply(chunk);
    EXPECT_TRUE(applied.ok()) << applied << ": " << DumpJson(r);
  }
  EXPECT_EQ(starts, 1) << DumpJson(Json(records));
  return reducer.message();
}

}  // namespace baton::testing
