// The soak (issue 5, DESIGN §8): many chats at once through the whole stack on loopback
// (baton-orchestrator on SQLite, baton-worker processes, fake-llm), for a bounded time, while
// workers are killed (SIGKILL) or drained (SIGTERM) and replaced, and the orchestrator is killed
// and restarted on its file. Then an audit of every chat's logs:
//
//   - every `.in` message the clients appended was answered exactly once: one finished
//     assistant answer, whose text is one whole scripted reply, and one turn-complete whose
//     `.in` floor is that message's seq; no error and no abort reached a reader;
//   - every answer a fault cut short was retracted (or closed), none left dangling;
//   - every turn-complete answers a message that was appended (none invented, none twice with
//     an answer each);
//   - `.out` seqs run from 1 without a gap.
//
// A GoogleTest program so the audit's findings read as failures; ctest runs it for a short
// budget on every CI run (`soak_short`), and it runs longer by hand:
//
//   BATON_SOAK_SECONDS=120 BATON_SOAK_CHATS=100 ./build/tools/bench/baton_soak
//
// Figures (turns, faults, latency) print at the end; docs/BENCHMARKS.md keeps them.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using Clock = std::chrono::steady_clock;

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::atoi(value) : fallback;
}

// Text turns with a little pacing, tool turns for the weather agent (step 1 a tool call, step 2
// text after the tool result), all repeatable.
constexpr char kSteady[] = "A steady answer, in a few pieces, for the soak.";
constexpr char kLook[] = "Let me look.";
constexpr char kMild[] = "It is mild, according to the tool.";

Json SoakScript() {
  Json tool_result_answer = {{"match", {{"contains", "tool_result"}}},
                             {"repeat", true},
                             {"delay_ms", 2},
                             {"reply", {{"text", kMild}}}};
  Json tool_call = {
      {"match", {{"contains", "weather in"}}},
      {"repeat", true},
      {"delay_ms", 2},
      {"reply",
       {{"text", kLook},
        {"tool_calls",
         Json::array(
             {{{"id", "call-1"}, {"name", "get_weather"}, {"input", {{"city", "Oslo"}}}}})}}}};
  Json text = {{"repeat", true}, {"delay_ms", 3}, {"reply", {{"text", kSteady}}}};
  return Json{{"responses", Json::array({tool_result_answer, tool_call, text})}};
}

struct ChatLog {
  std::string chat_id;
  std::string agent;
  std::vector<int64_t> sent;  // `.in` seqs of the messages appended, in order
  int waits_failed = 0;
};

struct Figures {
  std::mutex mu;
  std::vector<double> turn_ms;  // append -> its turn-complete read
  int worker_kills = 0;
  int worker_drains = 0;
  int orchestrator_restarts = 0;
};

// Follows `.out` after `after` until a turn-complete whose `.in` floor reaches `seq`; the seq
// of that record, or -1 on the limit. A broken stream (the orchestrator restarting) resumes from
// the last seq seen.
int64_t WaitForAnswer(Stack& stack, const std::string& chat_id, int64_t after, int64_t seq) {
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(60);
  int64_t cursor = after;
  while (Clock::now() < deadline) {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::ReadRequest request;
    request.set_chat_id(chat_id);
    request.set_after_seq(cursor);
    request.set_follow(true);
    auto reader = stack.sessions().Read(&context, request);
    v1::ReadResponse response;
    while (reader->Read(&response)) {
      const v1::OutRecord& r = response.record();
      cursor = r.seq();
      if (!r.has_control() || r.control().subtype() != "turn-complete") continue;
      for (const v1::Header& h : r.control().headers()) {
        if (h.name() == "session-in-event-id" && std::stoll(h.value()) >= seq) {
          context.TryCancel();
          return r.seq();
        }
      }
    }
    reader->Finish();
  }
  return -1;
}

// One client: appends a message, waits for its answer, again, until `stop`.
void DriveChat(Stack& stack, ChatLog& chat, const std::atomic<bool>& stop, Figures& figures) {
  int64_t out = 0;
  for (int turn = 0; !stop.load(); ++turn) {
    std::string id = absl::StrCat(chat.chat_id, "-u", turn);
    std::string text = chat.agent == "weather" && turn % 2 == 0
                           ? absl::StrCat("What is the weather in Oslo? (", id, ")")
                           : absl::StrCat("Tell me something, turn ", turn, ".");
    Clock::time_point sent = Clock::now();
    int64_t seq = stack.SendText(chat.chat_id, id, text);
    chat.sent.push_back(seq);
    int64_t answered = WaitForAnswer(stack, chat.chat_id, out, seq);
    if (answered < 0) {
      ++chat.waits_failed;
      return;
    }
    out = answered;
    std::lock_guard<std::mutex> lock(figures.mu);
    figures.turn_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
  }
}

struct Audit {
  int answers = 0;      // assistant answers closed by finish (or abort, for a kept partial)
  int interrupted = 0;  // answers begun, never closed and never retracted
  int retracted = 0;
  int turn_completes = 0;
};

// Reads the chat's whole `.out` and checks it against what was appended.
Audit AuditChat(Stack& stack, const ChatLog& chat) {
  Audit audit;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ReadRequest request;
  request.set_chat_id(chat.chat_id);
  auto reader = stack.sessions().Read(&context, request);
  v1::ReadResponse response;
  int64_t expected_seq = 1;
  std::map<int64_t, int> answers_by_floor;  // .in floor -> finished answers in its turns
  std::map<int64_t, int> turns_by_floor;    // .in floor -> turn-completes naming it
  int answers_in_turn = 0;
  std::set<std::string> unfinished;  // answers begun and not (yet) finished
  std::string current;               // the answer the chunks belong to
  std::string text;                  // its text so far
  while (reader->Read(&response)) {
    const v1::OutRecord& r = response.record();
    EXPECT_EQ(r.seq(), expected_seq) << chat.chat_id << ": a gap or a repeat in .out";
    expected_seq = r.seq() + 1;
    if (r.has_control()) {
      if (r.control().subtype() == "retract") {
        ++audit.retracted;
        for (const v1::Header& h : r.control().headers()) {
          if (h.name() == "message-id") unfinished.erase(h.value());
        }
      }
      if (r.control().subtype() != "turn-complete") continue;
      ++audit.turn_completes;
      for (const v1::Header& h : r.control().headers()) {
        if (h.name() == "session-in-event-id") {
          answers_by_floor[std::stoll(h.value())] += answers_in_turn;
          turns_by_floor[std::stoll(h.value())] += 1;
        }
      }
      answers_in_turn = 0;
      continue;
    }
    Json chunk = Json::parse(r.chunk_json(), nullptr, false);
    std::string type = chunk.value("type", "");
    if (type == "start") {
      current = chunk.value("messageId", "");
      unfinished.insert(current);
      text.clear();
    }
    if (type == "text-delta") text += chunk.value("delta", "");
    // One message in flight per chat, no hook keeps partials, nothing cancels: an error or an
    // abort is a fault that reached a reader.
    EXPECT_NE(type, "error") << chat.chat_id << ": " << r.chunk_json();
    EXPECT_NE(type, "abort") << chat.chat_id << " seq " << r.seq();
    if (type == "finish") {
      EXPECT_NE(chunk.value("finishReason", ""), "error") << chat.chat_id << " seq " << r.seq();
      // Each answer is one whole scripted reply (a weather turn's two steps make one), never
      // a reply twice or a fragment.
      EXPECT_TRUE(text == kSteady || text == kMild || text == absl::StrCat(kLook, kMild))
          << chat.chat_id << " seq " << r.seq() << ": \"" << text << "\"";
      ++answers_in_turn;
      ++audit.answers;
      unfinished.erase(current);
    }
  }
  EXPECT_TRUE(reader->Finish().ok()) << chat.chat_id;
  audit.interrupted = static_cast<int>(unfinished.size());
  // Every message appended got exactly one finished answer, under a turn-complete naming it.
  for (int64_t seq : chat.sent) {
    auto it = answers_by_floor.find(seq);
    EXPECT_NE(it, answers_by_floor.end()) << chat.chat_id << ": .in " << seq << " unanswered";
    if (it != answers_by_floor.end()) {
      EXPECT_EQ(it->second, 1) << chat.chat_id << ": .in " << seq << " answered " << it->second
                               << " times";
    }
    EXPECT_EQ(turns_by_floor[seq], 1)
        << chat.chat_id << ": .in " << seq << " has " << turns_by_floor[seq] << " turn-completes";
  }
  // No turn-complete answers a message nobody appended.
  for (const auto& [floor, count] : answers_by_floor) {
    if (count == 0) continue;
    EXPECT_NE(std::find(chat.sent.begin(), chat.sent.end(), floor), chat.sent.end())
        << chat.chat_id << ": an answer for .in " << floor << ", which no client appended";
  }
  return audit;
}

TEST(Soak, ManyChatsThroughKilledWorkersAndARestartedOrchestratorLoseNothing) {
  const int seconds = EnvInt("BATON_SOAK_SECONDS", 15);
  const int chats = EnvInt("BATON_SOAK_CHATS", 40);
  const int workers = EnvInt("BATON_SOAK_WORKERS", 3);
  const int fault_every_ms = EnvInt("BATON_SOAK_FAULT_MS", 1500);
  auto stack = Stack::Start(
      {.script = SoakScript(),
       .workers = workers,
       .capacity = 64,
       .orchestrator_flags = {"--lease_ms=1500", "--heartbeat_ms=250", "--accept_ms=1000"},
       .worker_flags = {"--drain_grace_ms=300"}});
  ASSERT_NE(stack, nullptr);

  std::vector<ChatLog> logs(chats);
  for (int i = 0; i < chats; ++i) {
    logs[i].chat_id = absl::StrCat("soak-", i);
    logs[i].agent = i % 3 == 0 ? "weather" : "chat";
    stack->Create(logs[i].chat_id, logs[i].agent, "preload");
  }
  std::atomic<bool> stop{false};
  Figures figures;
  std::vector<std::thread> drivers;
  for (ChatLog& log : logs) {
    drivers.emplace_back([&, chat = &log] { DriveChat(*stack, *chat, stop, figures); });
  }

  // Faults, one at a time, on a schedule: kill a worker, drain a worker, and once, midway, kill
  // the orchestrator. Each victim is replaced, so capacity comes back.
  std::mt19937 random(20261124);
  std::vector<int> alive;
  for (int i = 0; i < workers; ++i) alive.push_back(i);
  Clock::time_point end = Clock::now() + std::chrono::seconds(seconds);
  Clock::time_point restart_at = Clock::now() + std::chrono::seconds(seconds) / 2;
  bool restarted = false;
  for (int fault = 0; Clock::now() < end; ++fault) {
    // Pacing of the fault schedule, not a wait on anything: the drivers and the audit wait on
    // events only.
    std::this_thread::sleep_for(std::chrono::milliseconds(fault_every_ms));
    if (!restarted && Clock::now() >= restart_at) {
      stack->RestartOrchestrator();
      restarted = true;
      ++figures.orchestrator_restarts;
      continue;
    }
    size_t pick = random() % alive.size();
    int victim = alive[pick];
    alive.erase(alive.begin() + static_cast<long>(pick));
    if (fault % 2 == 0) {
      stack->worker(victim).Signal(SIGKILL);
      ++figures.worker_kills;
    } else {
      stack->worker(victim).Signal(SIGTERM);
      ++figures.worker_drains;
    }
    alive.push_back(stack->AddWorker());
    stack->worker(victim).Wait();
  }
  stop = true;
  for (std::thread& t : drivers) t.join();

  Audit total;
  int sent = 0, failed_waits = 0;
  for (const ChatLog& log : logs) {
    Audit a = AuditChat(*stack, log);
    total.answers += a.answers;
    total.interrupted += a.interrupted;
    total.retracted += a.retracted;
    total.turn_completes += a.turn_completes;
    sent += static_cast<int>(log.sent.size());
    failed_waits += log.waits_failed;
  }
  // The soak did something: messages flowed and every kind of fault happened.
  EXPECT_GT(sent, chats);
  EXPECT_GT(figures.worker_kills, 0);
  EXPECT_GT(figures.worker_drains, 0);
  EXPECT_EQ(figures.orchestrator_restarts, 1);
  EXPECT_EQ(failed_waits, 0) << "turns that were not answered within a minute";
  EXPECT_EQ(total.answers, sent);
  // Answers a fault cut short are withdrawn (retract) or closed (abort), never left dangling.
  EXPECT_EQ(total.interrupted, 0);

  std::sort(figures.turn_ms.begin(), figures.turn_ms.end());
  auto at = [&](double q) {
    return figures.turn_ms.empty()
               ? 0.0
               : figures.turn_ms[std::min(figures.turn_ms.size() - 1,
                                          static_cast<size_t>(q * figures.turn_ms.size()))];
  };
  std::printf(
      "soak: %d s, %d chats, %d workers; %d messages, %d answers, %d turn-completes; "
      "faults: %d worker kills, %d drains, %d orchestrator restarts; %d answers interrupted, "
      "%d retracted; turn latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
      seconds, chats, workers, sent, total.answers, total.turn_completes, figures.worker_kills,
      figures.worker_drains, figures.orchestrator_restarts, total.interrupted, total.retracted,
      at(0.5), at(0.99), figures.turn_ms.empty() ? 0.0 : figures.turn_ms.back());
}

}  // namespace
}  // namespace baton::testing
