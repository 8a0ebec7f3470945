// baton-demo: drives a whole chat through a running stack (scripts/demo.sh starts it:
// baton-orchestrator on SQLite, a baton-worker, and fake-llm or a real provider) and prints what
// happens and how long each part took:
//   1. preload: the run boots before the user types; then the first message
//   2. head start: this program plays the warm server, streams step 1 itself and hands over a
//      tool call; the worker executes it and streams step 2 under the same message id
//   3. a second turn on the same chat: tool call, tool, step 2, all on the worker
//   4. a pure-text head start: the warm answer is final, the worker only persists it
//
//   baton-demo --orchestrator ADDR --hooks FIFO [--base_url URL] [--provider anthropic|openai]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "asio/co_spawn.hpp"
#include "asio/io_context.hpp"
#include "grpcpp/create_channel.h"
#include "hooks/messages.h"
#include "runtime/base/flags.h"
#include "runtime/client/head_start.h"
#include "runtime/model/http_client.h"
#include "runtime/model/providers.h"
#include "runtime/protocol/wire.h"
#include "tasks/agents.h"

ABSL_FLAG(std::string, orchestrator, "127.0.0.1:7400", "the orchestrator's address");
ABSL_FLAG(std::string, hooks, "", "the worker's --hook_log FIFO: lifecycle points to show");
ABSL_FLAG(std::string, provider, "", "the warm side's provider: anthropic or openai");
ABSL_FLAG(std::string, base_url, "", "the warm side's provider base URL (fake-llm)");
ABSL_FLAG(std::string, model, "", "the warm side's model");
ABSL_FLAG(std::string, api_key_env, "", "the environment variable holding the warm side's key");

namespace {

namespace v1 = ::baton::v1;
using baton::Json;
using Clock = std::chrono::steady_clock;

const Clock::time_point kStart = Clock::now();
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double Now() { return Ms(Clock::now() - kStart); }

// Lifecycle points the worker reports, read from its hook log as they happen.
class Hooks {
 public:
  explicit Hooks(const std::string& path) {
    if (path.empty()) return;
    reader_ = std::thread([this, path] {
      std::ifstream in(path);
      std::string line;
      while (std::getline(in, line)) {
        absl::StatusOr<Json> json = baton::ParseJson(line);
        if (!json.ok()) continue;
        std::string hook = baton::StringField(*json, "hook");
        if (hook.starts_with("$")) continue;  // a test's marker (a delivered record), no hook
        std::printf("%9.3f ms  worker  hook %s\n", Now(), hook.c_str());
        std::fflush(stdout);
        absl::MutexLock lock(&mu_);
        seen_.push_back({hook, Clock::now()});
      }
    });
  }
  ~Hooks() {
    if (reader_.joinable()) reader_.detach();  // the FIFO closes when the worker exits
  }
  // Waits for the next `hook` after `from`; returns when it was seen.
  Clock::time_point WaitFor(const std::string& hook, Clock::time_point from) {
    absl::MutexLock lock(&mu_);
    Clock::time_point at{};
    auto found = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const auto& [name, when] : seen_) {
        if (name == hook && when >= from) {
          at = when;
          return true;
        }
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&found), absl::Seconds(30));
    return at;
  }

 private:
  std::thread reader_;
  absl::Mutex mu_;
  std::vector<std::pair<std::string, Clock::time_point>> seen_ ABSL_GUARDED_BY(mu_);
};

std::string Describe(const v1::OutRecord& record) {
  if (record.has_control()) {
    std::vector<std::string> headers;
    for (const v1::Header& h : record.control().headers()) {
      headers.push_back(absl::StrCat(h.name(), "=", h.value()));
    }
    return absl::StrCat("[", record.control().subtype(), "] ", absl::StrJoin(headers, " "));
  }
  absl::StatusOr<Json> chunk = baton::ParseJson(record.chunk_json());
  if (!chunk.ok()) return record.chunk_json();
  std::string type = baton::StringField(*chunk, "type");
  if (type == "text-delta") return absl::StrCat("text-delta \"", chunk->value("delta", ""), "\"");
  Json rest = *chunk;
  rest.erase("type");
  return rest.empty() ? type : absl::StrCat(type, " ", rest.dump());
}

class Demo {
 public:
  Demo()
      : channel_(grpc::CreateChannel(absl::GetFlag(FLAGS_orchestrator),
                                     grpc::InsecureChannelCredentials())),
        sessions_(v1::Sessions::NewStub(channel_)),
        hooks_(absl::GetFlag(FLAGS_hooks)),
        http_(io_.get_executor()),
        pool_(1) {}

  int Run() {
    {
      // Opens the channel first, so the timings below are of baton, not of a TCP handshake.
      grpc::ClientContext context;
      context.set_wait_for_ready(true);
      v1::GetRequest request;
      request.set_chat_id("-");
      v1::Session ignored;
      sessions_->Get(&context, request, &ignored);
    }
    Section("1. preload: the run boots before the user types");
    Clock::time_point t0 = Clock::now();
    Create("chat-preload", "weather", v1::TRIGGER_PRELOAD, Json::object());
    preload_ = hooks_.WaitFor("onPreload", t0) - t0;
    Turn("chat-preload", baton::UserMessage("u1", "Hi there"));

    Section("2. head start: a warm server streams step 1 and hands over a tool call");
    HeadStart("chat-headstart", "weather", "What is the weather in Oslo?", &handover_to_chunk_);

    Section("3. a second turn on the same chat: tool call, tool, step 2 on the worker");
    Turn("chat-headstart", baton::UserMessage("u3", "And in Lisbon?"));

    Section("4. head start, pure text: the warm answer is final, the worker persists it");
    HeadStart("chat-final", "chat", "Say hello", nullptr);

    Section(
        "timings (one cold sample each, wall clock, this machine; fake-llm waits 30 ms before "
        "each first byte; docs/BENCHMARKS.md has distributions)");
    std::printf("  preload: CreateSession -> onPreload fired on the worker   %8.3f ms\n",
                Ms(preload_));
    std::printf("  head start: handover appended -> first step-2 chunk read  %8.3f ms\n",
                Ms(handover_to_chunk_));
    std::printf("  whole demo                                                %8.1f ms\n", Now());
    for (const char* chat : {"chat-preload", "chat-headstart", "chat-final"}) {
      grpc::ClientContext context;
      v1::GetRequest request;
      request.set_chat_id(chat);
      v1::Session session;
      Check(sessions_->Get(&context, request, &session), "Get");
      std::printf("  %-15s %d run(s), %lld .in records, %lld .out records\n", chat, session.runs(),
                  static_cast<long long>(session.in_seq()),
                  static_cast<long long>(session.out_seq()));
    }
    return 0;
  }

 private:
  static void Section(const char* title) { std::printf("\n== %s\n", title); }

  static void Check(const grpc::Status& status, const char* call) {
    if (status.ok()) return;
    std::fprintf(stderr, "demo: %s: %s\n", call, status.error_message().c_str());
    std::exit(1);
  }

  void Create(const std::string& chat, const std::string& agent, v1::Trigger trigger,
              const Json& payload) {
    grpc::ClientContext context;
    v1::CreateSessionRequest request;
    request.set_chat_id(chat);
    request.set_agent(agent);
    request.set_trigger(trigger);
    request.set_payload_json(baton::DumpJson(payload));
    v1::CreateSessionResponse response;
    Check(sessions_->CreateSession(&context, request, &response), "CreateSession");
    std::printf("%9.3f ms  client  CreateSession %s (agent %s, %s)\n", Now(), chat.c_str(),
                agent.c_str(), std::string(baton::TriggerName(trigger)).c_str());
  }

  // Appends a user message and prints `.out` until its turn completes.
  void Turn(const std::string& chat, const Json& message) {
    grpc::ClientContext context;
    v1::AppendRequest request;
    request.set_chat_id(chat);
    request.set_body_json(baton::DumpJson(Json{
        {"kind", "message"},
        {"payload", {{"chatId", chat}, {"trigger", "submit-message"}, {"message", message}}}}));
    v1::AppendResponse response;
    Check(sessions_->Append(&context, request, &response), "Append");
    std::printf("%9.3f ms  client  Append .in %lld: user \"%s\"\n", Now(),
                static_cast<long long>(response.seq()), baton::MessageText(message).c_str());
    Follow(chat, nullptr);
  }

  // Prints `.out` records after the last one shown until a turn-complete; the time the first
  // record arrived goes to `first`.
  void Follow(const std::string& chat, Clock::time_point* first) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::ReadRequest request;
    request.set_chat_id(chat);
    request.set_after_seq(read_[chat]);
    request.set_follow(true);
    request.set_batch(true);  // several records per response
    auto reader = sessions_->Read(&context, request);
    v1::ReadResponse response;
    bool complete = false;
    while (!complete && reader->Read(&response)) {
      if (first != nullptr && *first == Clock::time_point{}) *first = Clock::now();
      for (const v1::OutRecord& record : response.records()) {
        read_[chat] = record.seq();
        std::printf("%9.3f ms  .out %-3lld %s\n", Now(), static_cast<long long>(record.seq()),
                    Describe(record).c_str());
        complete = record.has_control() && record.control().subtype() == "turn-complete";
        if (complete) break;
      }
    }
    context.TryCancel();
  }

  // Plays the warm server: step 1 on the same provider as the worker, streamed here, then the
  // handover; then follows the worker's part on `.out`.
  void HeadStart(const std::string& chat, const std::string& agent_name, const std::string& text,
                 Clock::duration* handover_to_chunk) {
    std::shared_ptr<baton::LanguageModel> model = WarmModel();
    baton::Agent agent = agent_name == "weather" ? baton::tasks::WeatherAgent(model)
                                                 : baton::tasks::ChatAgent(model);
    baton::HeadStartEnv env{
        io_.get_executor(), &clock_, &pool_, sessions_.get(), &agent, [](const Json& chunk) {
          v1::OutRecord shown;
          shown.set_chunk_json(baton::DumpJson(chunk));
          std::printf("%9.3f ms  warm    %s\n", Now(), Describe(shown).c_str());
        }};
    baton::HeadStartRequest request;
    request.chat_id = chat;
    request.agent = agent_name;
    request.messages = Json::array({baton::UserMessage(absl::StrCat("u-", chat), text)});
    std::printf("%9.3f ms  client  head start %s: user \"%s\"\n", Now(), chat.c_str(),
                text.c_str());
    absl::StatusOr<baton::HeadStartResult> result = absl::UnknownError("not run");
    asio::co_spawn(io_, baton::RunHeadStart(env, request),
                   [&](std::exception_ptr e, absl::StatusOr<baton::HeadStartResult> r) {
                     if (!e) result = std::move(r);
                   });
    io_.restart();
    io_.run();
    Clock::time_point handed = Clock::now();
    if (!result.ok()) {
      std::fprintf(stderr, "demo: head start: %s\n", result.status().ToString().c_str());
      std::exit(1);
    }
    const char* signal = result->signal == baton::HeadStartResult::Signal::kHandover ? "handover"
                         : result->signal == baton::HeadStartResult::Signal::kFinal
                             ? "handover (isFinal)"
                             : "handover-skip";
    std::printf("%9.3f ms  warm    appended .in %lld: %s, messageId %s (step 1 took %.1f ms)\n",
                Now(), static_cast<long long>(result->signal_seq), signal,
                result->message_id.c_str(), absl::ToDoubleMilliseconds(result->step1));
    Clock::time_point first{};
    Follow(chat, &first);
    if (handover_to_chunk != nullptr) *handover_to_chunk = first - handed;
  }

  // The same provider as the worker's (the same flags).
  std::shared_ptr<baton::LanguageModel> WarmModel() {
    return baton::MakeModel(http_, {absl::GetFlag(FLAGS_provider), absl::GetFlag(FLAGS_base_url),
                                    absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_api_key_env)});
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Sessions::Stub> sessions_;
  Hooks hooks_;
  asio::io_context io_;
  baton::RealClock clock_;
  baton::HttpClient http_;
  baton::HookPool pool_;
  std::map<std::string, int64_t> read_;  // last `.out` seq shown per chat
  Clock::duration preload_{};
  Clock::duration handover_to_chunk_{};
};

}  // namespace

int main(int argc, char** argv) {
  baton::SetUpHelp(
      "a whole chat (preload, head start, tools, step 2) through a running stack; "
      "scripts/demo.sh starts one");
  absl::ParseCommandLine(argc, argv);
  std::printf("baton demo: a chat through orchestrator %s and its worker\n",
              absl::GetFlag(FLAGS_orchestrator).c_str());
  Demo demo;
  return demo.Run();
}
