// A waiting run holds no thread: 10,000 runs wait on `.in` in one process, on one event loop
// thread plus a bounded hook pool, and each answers when its message arrives.
#include <atomic>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "asio/io_context.hpp"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/model/scripted_model.h"
#include "runtime/testkit/local_session.h"

namespace baton {
namespace {

int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

TEST(RunExecutor, TenThousandWaitingRunsHoldNoThreads) {
  constexpr int kRuns = 10'000;
  constexpr int kPoolThreads = 4;
  const int threads_before = ThreadCount();

  FakeClock clock;  // outlives `io`: parked runs disarm their timers when `io` destroys them
  asio::io_context io;
  auto model = std::make_shared<ScriptedModel>(clock);
  model->SetFallback([](const ModelCall&) { return ScriptedModel::Text("hello"); });
  Agent agent;
  agent.id = "waiting";
  agent.model = model;
  std::atomic<int> preloads{0};
  agent.hooks.on_preload = [&preloads](const PreloadEvent&, ChatControl&) {
    preloads.fetch_add(1);
    return absl::OkStatus();
  };
  HookPool pool(kPoolThreads);
  LocalSessions sessions(io.get_executor(), clock, pool);
  int turn_completes = 0;
  int waiting = 0;
  sessions.on_out = [&](const std::string&, const OutRecord& r) {
    if (r.is_control && r.control == kTurnComplete) ++turn_completes;
  };
  sessions.on_hook = [&](const std::string&, std::string_view hook, const Json&) {
    if (hook == "onPreload") ++waiting;  // the next thing a preloaded run does is wait on `.in`
  };

  for (int i = 0; i < kRuns; ++i) {
    ASSERT_TRUE(sessions.Create(absl::StrCat("chat-", i), agent, "preload", Json::object()).ok());
  }
  RunUntilQuiet(io, pool);  // every run has booted and parked
  ASSERT_EQ(waiting, kRuns);
  EXPECT_EQ(sessions.live_runs(), static_cast<size_t>(kRuns));
  const int threads_waiting = ThreadCount();
  // This thread runs every run; the pool is the only other thread baton starts.
  EXPECT_LE(threads_waiting, threads_before + kPoolThreads);

  for (int i = 0; i < kRuns; ++i) {
    Json body = {
        {"kind", "message"},
        {"payload",
         {{"trigger", "submit-message"}, {"message", UserMessage(absl::StrCat("u", i), "hi")}}}};
    ASSERT_TRUE(sessions.Append(absl::StrCat("chat-", i), body).ok());
  }
  while (turn_completes < kRuns) {
    io.restart();
    io.run_one();
  }
  EXPECT_EQ(turn_completes, kRuns);
  EXPECT_EQ(model->calls().size(), static_cast<size_t>(kRuns));
  EXPECT_LE(ThreadCount(), threads_before + kPoolThreads);
  EXPECT_EQ(preloads, kRuns);
  for (int i = 0; i < kRuns; i += 997) {
    const LocalSessions::Session* s = sessions.Find(absl::StrCat("chat-", i));
    ASSERT_NE(s, nullptr);
    ASSERT_EQ(s->out.back().control, kTurnComplete);
    EXPECT_EQ(s->out.back().Header("session-in-event-id"), "1");
  }
}

}  // namespace
}  // namespace baton
