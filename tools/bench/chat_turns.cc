// BM_ChatTurns: the worker's CPU per turn as a chat grows (issue 15's workload, exactly; the
// peers run the same one in ../shared/peer-bench). One chat booted with preload, then N turns
// sent one after another on LocalSessions (the in-process host: the run, the step loop, the
// accumulator, a snapshot after every turn) with a model that streams a fixed script and keeps
// nothing of what it is called with. Figures and method: docs/BENCHMARKS.md.
//
//   BM_ChatTurns/tool  each turn: step 1 text + one `lookup` call, the tool, step 2 (20 deltas)
//   BM_ChatTurns/text  each turn: one step of 20 deltas
//
// Counters: process CPU per turn at turns 1, 10, 50, 100, 101, 199, 200 (median over the chats),
// the mean of the first and of the last 20 turns, CPU per UI chunk, and UI chunks per turn.
#include "tools/bench/chat_turns.h"

#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "asio/io_context.hpp"
#include "benchmark/benchmark.h"
#include "hooks/agent.h"
#include "hooks/messages.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"
#include "runtime/testkit/local_session.h"
#include "tasks/agents.h"

namespace baton {
namespace {

double ProcessCpuMicros() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// Streams the workload's script. The turn number comes from the bench (`turn`), the step from
// the prompt: a prompt whose last message is a tool message gets step 2. Keeps nothing.
class TurnsModel final : public LanguageModel {
 public:
  explicit TurnsModel(bool tool_turns) : tool_turns_(tool_turns) {}
  std::string provider() const override { return "scripted"; }

  asio::awaitable<void> Stream(ModelCall call, std::function<void(ModelEvent)> on_event,
                               std::stop_token) override {
    bool step_two = !tool_turns_ || (!call.messages.empty() &&
                                     MessageRole(call.messages.back()) == std::string("tool"));
    if (step_two) {
      Text(on_event, kWords);
      Finish(on_event, "stop");
    } else {
      Text(on_event, kLetMeCheck);
      std::string id = absl::StrCat("call-", turn);
      ModelEvent tool_call = ModelEvent::Of(ModelEvent::Type::kToolCall, id);
      tool_call.tool_name = "lookup";
      tool_call.input = absl::StrCat(R"({"key":"k)", turn, R"("})");
      on_event(std::move(tool_call));
      Finish(on_event, "tool-calls");
    }
    co_return;
  }

  int turn = 0;

 private:
  static constexpr const char* kLetMeCheck[] = {"Let ", "me ", "check."};
  static constexpr const char* kWords[] = {"w00 ", "w01 ", "w02 ", "w03 ", "w04 ", "w05 ", "w06 ",
                                           "w07 ", "w08 ", "w09 ", "w10 ", "w11 ", "w12 ", "w13 ",
                                           "w14 ", "w15 ", "w16 ", "w17 ", "w18 ", "w19 "};

  template <size_t N>
  static void Text(const std::function<void(ModelEvent)>& on_event,
                   const char* const (&deltas)[N]) {
    on_event(ModelEvent::Of(ModelEvent::Type::kTextStart, "0"));
    for (const char* text : deltas) {
      ModelEvent delta = ModelEvent::Of(ModelEvent::Type::kTextDelta, "0");
      delta.delta = text;
      on_event(std::move(delta));
    }
    on_event(ModelEvent::Of(ModelEvent::Type::kTextEnd, "0"));
  }

  static void Finish(const std::function<void(ModelEvent)>& on_event, const char* reason) {
    ModelEvent finish = ModelEvent::Of(ModelEvent::Type::kFinish);
    finish.finish_reason = reason;
    finish.usage.input_tokens = 10;
    finish.usage.output_tokens = 5;
    on_event(std::move(finish));
  }

  bool tool_turns_;
};

// One chat of `turns` turns; CPU per turn (µs) in `cpu`, UI chunks of the last turn in `chunks`
// (control records, such as turn-complete, not counted).
bool RunChat(bool tool_turns, int turns, const std::string& chat, std::vector<double>& cpu,
             size_t& chunks, std::string& error) {
  FakeClock clock;
  asio::io_context io;
  HookPool pool(1);
  LocalSessions sessions(io.get_executor(), clock, pool);
  auto model = std::make_shared<TurnsModel>(tool_turns);
  Agent agent = tasks::LookupAgent(model);
  if (absl::Status created = sessions.Create(chat, agent, "preload", Json::object());
      !created.ok()) {
    error = created.ToString();
    return false;
  }
  RunUntilQuiet(io, pool);
  cpu.assign(turns, 0);
  for (int t = 1; t <= turns; ++t) {
    model->turn = t;
    Json body = {
        {"kind", "message"},
        {"payload",
         {{"trigger", "submit-message"},
          {"message", UserMessage(absl::StrCat("u", t), "What is the value for my key?")}}}};
    size_t before = sessions.Find(chat)->out.size();
    double start = ProcessCpuMicros();
    absl::StatusOr<int64_t> appended = sessions.Append(chat, body);
    RunUntilQuiet(io, pool);
    cpu[t - 1] = ProcessCpuMicros() - start;
    if (!appended.ok()) {
      error = appended.status().ToString();
      return false;
    }
    const std::vector<OutRecord>& out = sessions.Find(chat)->out;
    chunks = std::count_if(out.begin() + static_cast<std::ptrdiff_t>(before), out.end(),
                           [](const OutRecord& record) { return !record.is_control; });
  }
  return true;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int turns_per_chat = 200;
int chats = 5;

void BM_ChatTurns(benchmark::State& state) {
  const bool tool_turns = state.range(0) == 1;
  const int turns = turns_per_chat;
  std::vector<std::vector<double>> per_chat;  // [chat][turn]
  size_t chunks = 0;
  for (auto _ : state) {
    std::vector<double> cpu;
    std::string error;
    // A warm-up chat first (allocator, caches), not counted.
    if (!RunChat(tool_turns, turns, "warm-up", cpu, chunks, error)) {
      state.SkipWithError(error.c_str());
      return;
    }
    for (int c = 0; c < chats; ++c) {
      if (!RunChat(tool_turns, turns, absl::StrCat("chat-", c), cpu, chunks, error)) {
        state.SkipWithError(error.c_str());
        return;
      }
      per_chat.push_back(cpu);
    }
  }
  // The median over the chats at each turn, then the figures of that curve.
  std::vector<double> curve(turns);
  for (int t = 0; t < turns; ++t) {
    std::vector<double> at;
    for (const std::vector<double>& chat : per_chat) at.push_back(chat[t]);
    curve[t] = Median(at);
  }
  auto mean = [&](int from, int to) {
    double sum = 0;
    for (int t = from; t < to; ++t) sum += curve[t];
    return sum / (to - from);
  };
  for (int t : {1, 10, 50, 100, 101, 199, 200}) {
    if (t <= turns) state.counters[absl::StrCat("us_turn_", t)] = curve[t - 1];
  }
  // The whole curve, one line per turn, for a plot: BATON_BENCH_CURVE=<file prefix> writes
  // <prefix>-tool.csv and <prefix>-text.csv.
  if (const char* prefix = std::getenv("BATON_BENCH_CURVE")) {
    std::ofstream csv(absl::StrCat(prefix, tool_turns ? "-tool" : "-text", ".csv"));
    csv << "turn,cpu_us\n";
    for (int t = 0; t < turns; ++t) csv << t + 1 << "," << curve[t] << "\n";
  }
  int window = std::min(20, turns);
  state.counters["us_first20"] = mean(0, window);
  state.counters["us_last20"] = mean(turns - window, turns);
  state.counters["us_mean"] = mean(0, turns);
  state.counters["ui_chunks"] = static_cast<double>(chunks);
  state.counters["us_per_chunk"] = mean(0, turns) / static_cast<double>(chunks + 1);
}

}  // namespace

void RegisterChatTurns(bool smoke) {
  if (const char* env = std::getenv("BATON_BENCH_TURNS")) {
    if (!absl::SimpleAtoi(env, &turns_per_chat) || turns_per_chat < 1) turns_per_chat = 200;
  }
  if (smoke) {
    turns_per_chat = std::min(turns_per_chat, 20);
    chats = 1;
  }
  benchmark::RegisterBenchmark("BM_ChatTurns/tool", BM_ChatTurns)
      ->Arg(1)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_ChatTurns/text", BM_ChatTurns)
      ->Arg(0)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace baton
