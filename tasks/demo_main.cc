// baton-demo: a whole chat, offline. An in-process session host runs the example agents with a
// model over real HTTP (fake-llm on loopback, or a real provider when its key is set), and prints
// every hook and `.out` record as it happens: a preloaded chat, a head start whose warm step 1
// hands over a tool call (the worker executes it and streams step 2), a second turn, and a
// pure-text head start.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "asio/io_context.hpp"
#include "hooks/messages.h"
#include "runtime/clock.h"
#include "runtime/hook_pool.h"
#include "runtime/http_client.h"
#include "runtime/local_session.h"
#include "runtime/providers.h"
#include "tasks/agents.h"
#include "tools/fake-llm/fake_llm.h"

namespace {

using baton::Json;

// The demo's model without a key: fake-llm on loopback, in the Anthropic wire format, answering
// the demo's four model calls in order at a human pace (30 ms to the first byte, 15 ms between
// events). The worker streams them through the same HTTP client and decoder a real provider uses.
Json DemoScript() {
  auto text = [](const char* t) {
    return Json{{"reply", {{"text", t}}}, {"ttfb_ms", 30}, {"delay_ms", 15}};
  };
  Json lisbon = text("Let me check.");
  lisbon["reply"]["tool_calls"] = Json::array(
      {{{"id", "toolu_lisbon"}, {"name", "get_weather"}, {"input", {{"city", "Lisbon"}}}}});
  return Json{{"responses",
               Json::array({text("Hello! Ask me about the weather in Oslo, Lisbon or Nairobi."),
                            text("It is 4 °C in Oslo right now."), lisbon,
                            text("It is 19 °C in Lisbon right now.")})}};
}

// A real provider when its key is in the environment, else fake-llm.
std::shared_ptr<baton::LanguageModel> DemoModel(baton::HttpClient& http,
                                                std::unique_ptr<baton::fakellm::FakeLlm>& fake,
                                                std::string& description) {
  if (std::getenv("ANTHROPIC_API_KEY") != nullptr) {
    baton::AnthropicOptions options;
    options.request.model = "claude-sonnet-4-5";
    description = "Anthropic (claude-sonnet-4-5), key from ANTHROPIC_API_KEY";
    return std::make_shared<baton::AnthropicModel>(http, options);
  }
  if (std::getenv("OPENAI_API_KEY") != nullptr) {
    baton::OpenAiOptions options;
    options.request.model = "gpt-4.1-mini";
    description = "OpenAI (gpt-4.1-mini), key from OPENAI_API_KEY";
    return std::make_shared<baton::OpenAiModel>(http, options);
  }
  absl::StatusOr<std::unique_ptr<baton::fakellm::FakeLlm>> server =
      baton::fakellm::FakeLlm::Start(DemoScript());
  if (!server.ok()) {
    std::fprintf(stderr, "demo: fake-llm: %s\n", std::string(server.status().message()).c_str());
    std::exit(1);
  }
  fake = std::move(*server);
  baton::AnthropicOptions options;
  options.base_url = fake->base_url();
  options.api_key = "demo";
  options.request.model = "demo";
  description = absl::StrCat("fake-llm at ", fake->base_url(), ", Anthropic wire format");
  return std::make_shared<baton::AnthropicModel>(http, options);
}

class Demo {
 public:
  Demo()
      : http_(io_.get_executor()),
        pool_(4),
        sessions_(io_.get_executor(), clock_, pool_),
        weather_(baton::tasks::WeatherAgent(DemoModel(http_, fake_llm_, model_name_))) {
    std::printf("model: %s\n", model_name_.c_str());
    start_ = clock_.Now();
    sessions_.on_hook = [this](const std::string& chat, std::string_view hook, const Json& args) {
      Print(chat, "hook", std::string(hook) + " " + args.dump());
      last_hook_ = std::string(hook);
      hook_at_ = clock_.Now();
    };
    sessions_.on_out = [this](const std::string& chat, const baton::OutRecord& r) {
      Print(chat, "out ", Describe(r));
      if (!r.is_control && first_chunk_at_ == absl::InfiniteFuture())
        first_chunk_at_ = clock_.Now();
      if (r.is_control && r.control == baton::kTurnComplete) ++turn_completes_;
    };
  }

  int Run() {
    Section("1. preload: the run boots before the user types");
    absl::Time t0 = clock_.Now();
    Check(sessions_.Create("chat-preload", weather_, "preload", Json::object()));
    Until([&] { return last_hook_ == "onPreload"; });
    absl::Duration boot = hook_at_ - t0;
    SendAndWait("chat-preload", baton::UserMessage("u1", "Hi there"));

    Section("2. head start: a warm server streamed step 1 and hands over a tool call");
    Json history = Json::array({baton::UserMessage("u2", "What is the weather in Oslo?")});
    Check(sessions_.Create("chat-headstart", weather_, "handover-prepare",
                           Json{{"headStartMessages", history}}));
    Until([&] { return last_hook_ == "onBoot"; });
    std::printf(
        "        warm  start{messageId:M1} start-step text \"Let me check.\" "
        "tool-input-available get_weather {\"city\":\"Oslo\"} finish-step  (step 1, "
        "streamed by the warm server)\n");
    Json partial = Json::parse(R"([
      {"role":"assistant","content":[
        {"type":"text","text":"Let me check."},
        {"type":"tool-call","toolCallId":"call_warm_1","toolName":"get_weather","input":{"city":"Oslo"}},
        {"type":"tool-approval-request","approvalId":"handover-approval-1","toolCallId":"call_warm_1"}]},
      {"role":"tool","content":[
        {"type":"tool-approval-response","approvalId":"handover-approval-1","approved":true}]}])");
    first_chunk_at_ = absl::InfiniteFuture();
    absl::Time handed = clock_.Now();
    int before = turn_completes_;
    Append("chat-headstart", Json{{"kind", "handover"},
                                  {"partialAssistantMessage", partial},
                                  {"messageId", "M1"},
                                  {"isFinal", false}});
    Until([&] { return turn_completes_ > before; });
    absl::Duration handover_to_chunk = first_chunk_at_ - handed;

    Section("3. a second turn on the same run: tool call, tool, step 2");
    SendAndWait("chat-headstart", baton::UserMessage("u3", "And in Lisbon?"));

    Section("4. head start, pure text: the warm answer is final, the worker only persists it");
    Check(sessions_.Create(
        "chat-final", weather_, "handover-prepare",
        Json{{"headStartMessages", Json::array({baton::UserMessage("u4", "Say hello")})}}));
    Until([&] { return last_hook_ == "onBoot"; });
    before = turn_completes_;
    Append("chat-final",
           Json{{"kind", "handover"},
                {"partialAssistantMessage",
                 Json::array({{{"role", "assistant"}, {"content", "Hello from the warm side!"}}})},
                {"messageId", "M2"},
                {"isFinal", true}});
    Until([&] { return turn_completes_ > before; });

    Section("timings (wall clock, this machine; fake-llm waits 30 ms before its first byte)");
    std::printf("  preload: session created -> onPreload fired     %8.3f ms\n",
                absl::ToDoubleMilliseconds(boot));
    std::printf("  head start: handover appended -> first chunk    %8.3f ms\n",
                absl::ToDoubleMilliseconds(handover_to_chunk));
    std::printf("  whole demo                                       %8.1f ms\n",
                absl::ToDoubleMilliseconds(clock_.Now() - start_));
    for (const char* chat : {"chat-preload", "chat-headstart", "chat-final"}) {
      const baton::LocalSessions::Session* s = sessions_.Find(chat);
      std::vector<std::string> ids;
      for (const Json& m : s->snapshot["messages"]) ids.push_back(m["id"].get<std::string>());
      std::printf("  %-15s snapshot: [%s], %zu .out records\n", chat,
                  absl::StrJoin(ids, ", ").c_str(), s->out.size());
    }
    return 0;
  }

 private:
  static std::string Describe(const baton::OutRecord& r) {
    if (r.is_control) {
      std::vector<std::string> h;
      for (const auto& [k, v] : r.headers) h.push_back(absl::StrCat(k, "=", v));
      return absl::StrCat("[", r.control, "] ", absl::StrJoin(h, " "));
    }
    std::string type = r.Type();
    if (type == "text-delta")
      return absl::StrCat("text-delta \"", r.chunk.value("delta", ""), "\"");
    Json rest = r.chunk;
    rest.erase("type");
    return rest.empty() ? type : absl::StrCat(type, " ", rest.dump());
  }

  void Print(const std::string& chat, const char* kind, const std::string& what) {
    std::printf("%9.3f ms  %-15s %s %s\n", absl::ToDoubleMilliseconds(clock_.Now() - start_),
                chat.c_str(), kind, what.c_str());
  }
  static void Section(const char* title) { std::printf("\n== %s\n", title); }
  static void Check(const absl::Status& s) {
    if (!s.ok()) {
      std::fprintf(stderr, "demo: %s\n", std::string(s.message()).c_str());
      std::exit(1);
    }
  }
  void Append(const std::string& chat, const Json& body) {
    absl::StatusOr<int64_t> seq = sessions_.Append(chat, body);
    Check(seq.status());
  }
  void SendAndWait(const std::string& chat, const Json& message) {
    int before = turn_completes_;
    Append(chat, Json{{"kind", "message"},
                      {"payload", {{"trigger", "submit-message"}, {"message", message}}}});
    Until([&] { return turn_completes_ > before; });
  }
  template <typename Pred>
  void Until(Pred done) {
    while (!done()) io_.run_one();
  }

  baton::RealClock clock_;
  std::unique_ptr<baton::fakellm::FakeLlm> fake_llm_;
  std::string model_name_;
  asio::io_context io_;
  baton::HttpClient http_;
  baton::HookPool pool_;
  baton::LocalSessions sessions_;
  baton::Agent weather_;
  absl::Time start_;
  std::string last_hook_;
  absl::Time hook_at_;
  absl::Time first_chunk_at_ = absl::InfiniteFuture();
  int turn_completes_ = 0;
};

}  // namespace

int main() {
  std::printf(
      "baton demo: the weather agent on the in-process session host, its model over HTTP\n");
  Demo demo;
  return demo.Run();
}
