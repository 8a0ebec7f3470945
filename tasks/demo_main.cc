// baton-demo: a whole chat, offline. An in-process session host runs the example agents with a
// scripted model that streams at a human pace, and prints every hook and `.out` record as it
// happens: a preloaded chat, a head start whose warm step 1 hands over a tool call (the worker
// executes it and streams step 2), a second turn, and a pure-text head start.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "asio/io_context.hpp"
#include "hooks/messages.h"
#include "runtime/clock.h"
#include "runtime/hook_pool.h"
#include "runtime/local_session.h"
#include "runtime/scripted_model.h"
#include "tasks/agents.h"

namespace {

using baton::Json;

// The demo's model: looks at the prompt and answers like a small weather assistant would.
baton::ScriptedResponse Respond(const baton::ModelCall& call) {
  const Json& last = call.messages.back();
  std::string role = baton::MessageRole(last);
  baton::ScriptedResponse r;
  std::string text;
  if (role == "tool") {
    const Json& output = last["content"][0]["output"]["value"];
    text = absl::StrCat("It is ", output.value("tempC", 0), " °C in ", output.value("city", ""),
                        " right now.");
  } else {
    std::string question = last["content"][0].value("text", "");
    for (const char* city : {"Oslo", "Lisbon", "Nairobi"}) {
      if (question.find(city) != std::string::npos && !call.tools.empty()) {
        return baton::ScriptedModel::ToolCall(absl::StrCat("call_", city), "get_weather",
                                              Json{{"city", city}}.dump(), "Let me check.");
      }
    }
    text = "Hello! Ask me about the weather in Oslo, Lisbon or Nairobi.";
  }
  baton::ScriptedResponse words;
  auto add = [&](baton::ModelEvent::Type type, std::string delta = "") {
    baton::ModelEvent e;
    e.type = type;
    e.id = "0";
    e.delta = std::move(delta);
    words.push_back({absl::Milliseconds(15), std::move(e)});
  };
  add(baton::ModelEvent::Type::kTextStart);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start + 1);
    if (end == std::string::npos) end = text.size();
    add(baton::ModelEvent::Type::kTextDelta, text.substr(start, end - start));
    start = end;
  }
  add(baton::ModelEvent::Type::kTextEnd);
  baton::ModelEvent finish;
  finish.type = baton::ModelEvent::Type::kFinish;
  finish.finish_reason = "stop";
  words.push_back({absl::ZeroDuration(), std::move(finish)});
  return words;
}

class Demo {
 public:
  Demo()
      : model_(std::make_shared<baton::ScriptedModel>(clock_)),
        pool_(4),
        sessions_(io_.get_executor(), clock_, pool_),
        weather_(baton::tasks::WeatherAgent(model_)) {
    model_->SetFallback(Respond);
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

    Section("timings (wall clock, this machine, scripted model at 15 ms per word)");
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
  asio::io_context io_;
  std::shared_ptr<baton::ScriptedModel> model_;
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
  std::printf("baton demo: the weather agent on the in-process session host, scripted model\n");
  Demo demo;
  return demo.Run();
}
