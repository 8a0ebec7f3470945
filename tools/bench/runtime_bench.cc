// Micro benchmarks of the worker core (DESIGN §7). Figures and method: docs/BENCHMARKS.md.
//
//   BM_Boot          run created -> parked on `.in` (a preload boot, no hooks)
//   BM_ToolTurn      one managed turn: step 1 text + a tool call, the tool, step 2 with 20
//                    deltas (35 UI chunks), scripted model without delays; process CPU time
//   BM_IdleRunMemory resident memory per run parked on `.in`, at 10,000 runs
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "asio/io_context.hpp"
#include "benchmark/benchmark.h"
#include "hooks/messages.h"
#include "runtime/model/scripted_model.h"
#include "runtime/testkit/local_session.h"
#include "tasks/agents.h"
#include "tools/bench/bench_main.h"
#include "tools/bench/chat_turns.h"

namespace baton {
namespace {

long ResidentKiB() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// The process under test: one event loop (this thread), a hook pool, the session host.
struct Host {
  explicit Host(int pool_threads = 1)
      : model(std::make_shared<ScriptedModel>(clock)),
        pool(pool_threads),
        sessions(io.get_executor(), clock, pool) {}

  void Settle() { RunUntilQuiet(io, pool); }

  FakeClock clock;
  asio::io_context io;
  std::shared_ptr<ScriptedModel> model;
  HookPool pool;
  LocalSessions sessions;
};

// First, so that memory freed by other benchmarks does not hide its growth.
void BM_IdleRunMemory(benchmark::State& state) {
  const int runs = static_cast<int>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    auto host = std::make_unique<Host>(4);
    Agent agent = tasks::ChatAgent(host->model);
    long before = ResidentKiB();
    state.ResumeTiming();
    for (int i = 0; i < runs; ++i) {
      benchmark::DoNotOptimize(
          host->sessions.Create(absl::StrCat("c", i), agent, "preload", Json::object()));
    }
    host->Settle();
    state.PauseTiming();
    long after = ResidentKiB();
    state.counters["KiB_per_idle_run"] = static_cast<double>(after - before) / runs;
    state.counters["MiB_total"] = static_cast<double>(after - before) / 1024.0;
    host.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_IdleRunMemory)->Arg(10'000)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_Boot(benchmark::State& state) {
  Host host;
  Agent agent = tasks::ChatAgent(host.model);
  int64_t n = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        host.sessions.Create(absl::StrCat("c", n++), agent, "preload", Json::object()));
    host.Settle();
  }
  state.counters["live_runs"] = static_cast<double>(host.sessions.live_runs());
}
BENCHMARK(BM_Boot)->Unit(benchmark::kMicrosecond);

ScriptedResponse StepOne() {
  ScriptedResponse r =
      ScriptedModel::ToolCall("call_1", "get_weather", R"({"city":"Oslo"})", "Let me check.");
  return r;
}

ScriptedResponse StepTwo() {
  ScriptedResponse r;
  auto event = [&](ModelEvent::Type type, std::string delta = "") {
    ModelEvent e;
    e.type = type;
    e.id = "0";
    e.delta = std::move(delta);
    r.push_back({absl::ZeroDuration(), std::move(e)});
  };
  event(ModelEvent::Type::kTextStart);
  for (int i = 0; i < 20; ++i) event(ModelEvent::Type::kTextDelta, "word ");
  event(ModelEvent::Type::kTextEnd);
  ModelEvent finish;
  finish.type = ModelEvent::Type::kFinish;
  finish.finish_reason = "stop";
  r.push_back({absl::ZeroDuration(), std::move(finish)});
  return r;
}

void BM_ToolTurn(benchmark::State& state) {
  Host host;
  host.model->SetFallback([](const ModelCall& call) {
    return MessageRole(call.messages.back()) == "tool" ? StepTwo() : StepOne();
  });
  Agent agent = tasks::WeatherAgent(host.model);
  int64_t n = 0;
  size_t chunks = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::string chat = absl::StrCat("c", n++);
    benchmark::DoNotOptimize(host.sessions.Create(chat, agent, "preload", Json::object()));
    host.Settle();
    Json body = {
        {"kind", "message"},
        {"payload",
         {{"trigger", "submit-message"}, {"message", UserMessage("u1", "Weather in Oslo?")}}}};
    state.ResumeTiming();
    benchmark::DoNotOptimize(host.sessions.Append(chat, body));
    host.Settle();
    state.PauseTiming();
    chunks = host.sessions.Find(chat)->out.size() - 1;  // minus the turn-complete
    host.sessions.Cancel(chat);
    host.Settle();
    state.ResumeTiming();
  }
  state.counters["ui_chunks"] = static_cast<double>(chunks);
}
BENCHMARK(BM_ToolTurn)->Unit(benchmark::kMicrosecond)->MeasureProcessCPUTime()->UseRealTime();

}  // namespace
}  // namespace baton

// Registered above, but BM_ChatTurns, whose chats `--smoke` shortens (ctest also passes a short
// --benchmark_min_time).
int main(int argc, char** argv) {
  return baton::bench::BenchMain(argc, argv, [](bool smoke) { baton::RegisterChatTurns(smoke); });
}
