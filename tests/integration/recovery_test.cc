// Faults mid-turn, on the whole stack (orchestrator on SQLite, worker processes, fake-llm): a
// worker killed while the model streams or while a tool runs, and a run cancelled while its tool
// is busy. DESIGN §8: runs are reassigned within the lease, no `.in` record and no completed turn
// is lost, and readers never see a turn's output twice (docs/protocol.md, "Answers a dead run
// left open").
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }

// A step that says `text` and calls the fault worker's tool `name` with its gate file.
Json ToolReply(const std::string& text, const std::string& call_id, const std::string& name,
               const std::string& gate) {
  return Json{{"reply",
               {{"text", text},
                {"tool_calls",
                 Json::array({{{"id", call_id}, {"name", name}, {"input", {{"gate", gate}}}}})}}}};
}

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

std::string Header(const Json& record, const std::string& name) {
  return StringField(record.value("headers", Json::object()), name);
}

// Opens a fault-worker tool's gate.
void OpenGate(const std::string& path) { std::ofstream(path) << "open\n"; }

// A fault-worker tool line of the hook log: tool `name`, call `call_id`, `phase` start or done.
bool IsToolLine(const Json& line, const std::string& name, const std::string& call_id,
                const std::string& phase) {
  const Json& args = line.value("args", Json::object());
  return StringField(line, "hook") == "$tool" && StringField(args, "name") == name &&
         StringField(args, "callId") == call_id && StringField(args, "phase") == phase;
}
std::function<bool(const std::vector<Json>&)> ToolLine(const std::string& name,
                                                       const std::string& call_id,
                                                       const std::string& phase) {
  return [=](const std::vector<Json>& lines) {
    for (const Json& line : lines) {
      if (IsToolLine(line, name, call_id, phase)) return true;
    }
    return false;
  };
}
int CountToolLines(const std::vector<Json>& lines, const std::string& phase) {
  int n = 0;
  for (const Json& line : lines) {
    n += StringField(line, "hook") == "$tool" &&
                 StringField(line.value("args", Json::object()), "phase") == phase
             ? 1
             : 0;
  }
  return n;
}

int Count(const std::vector<std::string>& types, const std::string& type) {
  return static_cast<int>(std::count(types.begin(), types.end(), type));
}

// Tool output records (available or error) for `call_id`.
int ToolOutputs(const std::vector<Json>& records, const std::string& call_id) {
  int n = 0;
  for (const Json& r : records) {
    std::string type = StringField(r, "type");
    if ((type == "tool-output-available" || type == "tool-output-error") &&
        StringField(r, "toolCallId") == call_id) {
      ++n;
    }
  }
  return n;
}

// `.out` is numbered from 1 without gaps.
void ExpectGapless(const std::vector<Json>& records) {
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(Seq(records[i]), static_cast<int64_t>(i) + 1) << DumpJson(records[i]);
  }
}

// The reader's view of a turn whose run died: the partial answer up to the `retract` that names
// it, then the retry's output. Checks the retract and returns the index of the retract.
size_t ExpectRetractedPartial(const std::vector<Json>& all) {
  size_t retract = 0;
  while (retract < all.size() && StringField(all[retract], "control") != "retract") ++retract;
  EXPECT_LT(retract, all.size()) << "no retract: " << DumpJson(Json(all));
  if (retract == all.size()) return retract;
  // The partial: an answer with content and no end; the retract names it and its start.
  std::vector<Json> partial(all.begin(), all.begin() + static_cast<ptrdiff_t>(retract));
  EXPECT_FALSE(partial.empty());
  if (partial.empty()) return retract;
  EXPECT_EQ(StringField(partial.front(), "type"), "start");
  EXPECT_EQ(Count(Types(partial), "start"), 1);
  EXPECT_EQ(Count(Types(partial), "finish"), 0);
  EXPECT_EQ(Count(Types(partial), "abort"), 0);
  EXPECT_EQ(CountControl(partial, "turn-complete"), 0);
  EXPECT_EQ(Header(all[retract], "message-id"), StringField(partial.front(), "messageId"));
  EXPECT_EQ(Header(all[retract], "from-seq"), absl::StrCat(Seq(partial.front())));
  EXPECT_EQ(Header(all[retract], "reason"), "run-lost");
  return retract;
}

// A worker killed while the model streams: when its lease runs out, the run is retried on the
// other worker. The reader sees the partial answer, a `retract` naming it, then one whole answer
// and one turn-complete for the message; `.in` is as the client left it.
// Starts a turn on chat `chat_id` in which step 1 calls the blocking tool (it waits for `gate`)
// on a new worker with `flags`, and returns once the call is on `.out`: the worker's index and
// the `.in` seq of the user message. The script answers a retried turn the same way, then
// "Found it." after the tool's result.
struct BlockedTurn {
  int worker = -1;
  int64_t in_seq = 0;
};
BlockedTurn StartBlockedToolTurn(Stack& stack, const std::string& chat_id, const std::string& gate,
                                 std::vector<std::string> flags = {}) {
  BlockedTurn turn;
  EXPECT_TRUE(stack.llm()
                  .SetScript(Script({ToolReply("Let me look.", "toolu_1", "block", gate),
                                     ToolReply("Looking again.", "toolu_2", "block", gate),
                                     Reply("Found it.")}))
                  .ok());
  turn.worker = stack.AddWorker(std::move(flags));
  stack.Create(chat_id, "tools", "preload");
  EXPECT_TRUE(stack.hooks(turn.worker).WaitFor("onPreload"));
  turn.in_seq = stack.SendText(chat_id, "u1", "Find the file.");
  EXPECT_TRUE(stack.hooks(turn.worker).WaitUntil(ToolLine("block", "toolu_1", "start")));
  // Step 1 is stored: readers have seen the call.
  stack.ReadUntil(chat_id, 0, [](const std::vector<Json>& r) {
    return !r.empty() && StringField(r.back(), "type") == "tool-input-available";
  });
  return turn;
}

TEST(RecoveryTest, AWorkerKilledMidAnswerIsReplacedWithinTheLease) {
  Json slow = Reply("This answer will never finish because its worker dies.");
  slow["delay_ms"] = 200;
  auto stack = Stack::Start(
      {.script = Script({slow, Reply("Answered by the second worker."), Reply("Second turn.")}),
       .workers = 0,
       .orchestrator_flags = {"--lease_ms=500", "--heartbeat_ms=100"}});
  ASSERT_NE(stack, nullptr);
  int first = stack->AddWorker();
  stack->Create("k1", "chat", "preload");
  ASSERT_TRUE(stack->hooks(first).WaitFor("onPreload"));
  int64_t in_seq = stack->SendText("k1", "u1", "What is the capital of Norway?");
  // The first delta is on .out: the answer is streaming.
  stack->ReadUntil("k1", 0, [](const std::vector<Json>& r) {
    return !r.empty() && StringField(r.back(), "type") == "text-delta";
  });
  int second = stack->AddWorker();
  stack->worker(first).Signal(SIGKILL);
  stack->worker(first).Wait();
  ASSERT_TRUE(stack->hooks(second).WaitFor("onBoot"));

  // A second turn after it: everything the first turn wrote is on .out before its answer.
  std::vector<Json> turn = stack->ReadTurns("k1", 0);
  ASSERT_FALSE(turn.empty());
  stack->SendText("k1", "u2", "Thanks.");
  std::vector<Json> all = stack->ReadTurns("k1", 0, 2);
  ExpectGapless(all);
  size_t retract = ExpectRetractedPartial(all);
  ASSERT_LT(retract, all.size());
  EXPECT_THAT(Text(std::vector<Json>(all.begin(), all.begin() + retract)), HasSubstr("This "));

  // Then exactly one whole answer under a new id, and one turn-complete for the message.
  std::vector<Json> answer(all.begin() + static_cast<ptrdiff_t>(retract) + 1,
                           all.begin() + static_cast<ptrdiff_t>(turn.size()));
  ASSERT_FALSE(answer.empty());
  EXPECT_EQ(StringField(answer.front(), "type"), "start");
  EXPECT_NE(StringField(answer.front(), "messageId"), StringField(all.front(), "messageId"));
  EXPECT_EQ(Count(Types(answer), "start"), 1);
  EXPECT_EQ(Count(Types(answer), "finish"), 1);
  EXPECT_EQ(Text(answer), "Answered by the second worker.");
  EXPECT_EQ(Types(answer).back(), "trigger:turn-complete");
  int answered = 0;
  for (const Json& r : all) {
    answered += StringField(r, "control") == "turn-complete" &&
                        Header(r, "session-in-event-id") == absl::StrCat(in_seq)
                    ? 1
                    : 0;
  }
  EXPECT_EQ(answered, 1);
  EXPECT_EQ(Count(Types(all), "trigger:retract"), 1);
  EXPECT_EQ(Text(std::vector<Json>(all.begin() + static_cast<ptrdiff_t>(turn.size()), all.end())),
            "Second turn.");

  // .in holds what the client appended, and the retry's model call had the message.
  EXPECT_EQ(stack->Get("k1").in_seq(), 2);
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_THAT(requests[1].body, HasSubstr("capital of Norway"));
  EXPECT_THAT(requests[1].body, Not(HasSubstr("never finish")));  // the partial was dropped
  std::vector<v1::Run> runs = stack->Runs("k1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_LOST);
  EXPECT_EQ(runs[1].attempt(), 2);
  EXPECT_EQ(runs[1].worker_id(), "worker-1");
}

// A worker killed while a tool runs (step 1 called it; it blocks until the test opens its gate,
// which happens only after the kill): the retry retracts the partial, runs the turn again from
// the start, and the tool's result reaches .out once, from the retry.
TEST(RecoveryTest, AWorkerKilledMidToolIsReplacedAndTheTurnRunsOnce) {
  auto stack = Stack::Start({.workers = 0,
                             .orchestrator_flags = {"--lease_ms=500", "--heartbeat_ms=100"},
                             .worker_binary = FAULT_WORKER_BINARY});
  ASSERT_NE(stack, nullptr);
  const std::string gate = stack->Path("gate");
  auto [first, in_seq] = StartBlockedToolTurn(*stack, "t1", gate);
  int second = stack->AddWorker();
  stack->worker(first).Signal(SIGKILL);
  stack->worker(first).Wait();
  OpenGate(gate);  // the retry's call passes; the first worker's call never returned
  ASSERT_TRUE(stack->hooks(second).WaitFor("onBoot"));

  std::vector<Json> all = stack->ReadTurns("t1", 0);
  ExpectGapless(all);
  size_t retract = ExpectRetractedPartial(all);
  ASSERT_LT(retract, all.size());
  std::vector<Json> partial(all.begin(), all.begin() + static_cast<ptrdiff_t>(retract));
  std::vector<Json> answer(all.begin() + static_cast<ptrdiff_t>(retract) + 1, all.end());
  EXPECT_THAT(Types(partial), Contains("tool-input-available"));
  EXPECT_EQ(Text(partial), "Let me look.");

  // The turn ran again from the start, and completed once.
  ASSERT_FALSE(answer.empty());
  EXPECT_EQ(StringField(answer.front(), "type"), "start");
  EXPECT_EQ(Count(Types(answer), "start"), 1);
  EXPECT_EQ(Count(Types(answer), "finish"), 1);
  EXPECT_EQ(Text(answer), "Looking again.Found it.");
  EXPECT_EQ(CountControl(all, "turn-complete"), 1);
  EXPECT_EQ(Header(all.back(), "session-in-event-id"), absl::StrCat(in_seq));
  // The tool's result reached .out once: the retry's call; none for the dead worker's.
  EXPECT_EQ(ToolOutputs(all, "toolu_1"), 0);
  EXPECT_EQ(ToolOutputs(all, "toolu_2"), 1);
  EXPECT_EQ(Count(Types(all), "tool-output-available"), 1);
  for (const Json& r : answer) {
    if (StringField(r, "type") == "tool-output-available") {
      EXPECT_EQ(r["output"], (Json{{"tool", "block"}, {"released", true}}));
    }
  }
  // On the second worker the tool ran once, for the retry's call. The hook log is read on its
  // own thread: wait for the tool's last line before counting.
  EXPECT_TRUE(stack->hooks(second).WaitUntil(ToolLine("block", "toolu_2", "done")));
  std::vector<Json> lines = stack->hooks(second).lines();
  EXPECT_EQ(CountToolLines(lines, "start"), 1);
  EXPECT_TRUE(ToolLine("block", "toolu_2", "done")(lines));
  // The retried step 1 did not see the dead worker's call: the partial was dropped.
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_THAT(requests[1].body, HasSubstr("Find the file."));
  EXPECT_THAT(requests[1].body, Not(HasSubstr("toolu_1")));
  EXPECT_THAT(requests[2].body, HasSubstr("toolu_2"));
  EXPECT_EQ(stack->Get("t1").in_seq(), in_seq);
  std::vector<v1::Run> runs = stack->Runs("t1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_LOST);
  EXPECT_EQ(runs[1].worker_id(), "worker-1");
}

// A head start whose worker dies in step 2 (while the tool the warm side handed over runs): the
// retry is a head start again. It retracts the dead run's start of the answer (step 1, which the
// run wrote before the tool ran), takes the same handover from `.in`, writes step 1 again, runs
// the tool and step 2 under the warm message id, and the message is answered with no further
// message from the user: a reader gets step 1 once, in the one whole message.
TEST(RecoveryTest, AHeadStartWhoseWorkerDiesInStepTwoIsAnsweredByTheRetry) {
  auto stack = Stack::Start({.script = Script({Reply("Found it.")}),
                             .workers = 0,
                             .orchestrator_flags = {"--lease_ms=500", "--heartbeat_ms=100"},
                             .worker_binary = FAULT_WORKER_BINARY});
  ASSERT_NE(stack, nullptr);
  const std::string gate = stack->Path("gate");
  int first = stack->AddWorker();
  stack->Create("hs", "tools", "handover-prepare",
                Json{{"headStartMessages", Json::array({UserMessage("u1", "Find the file.")})}});
  Json handover = {
      {"kind", "handover"},
      {"messageId", "M"},
      {"isFinal", false},
      {"partialAssistantMessage",
       Json::array({{{"role", "assistant"},
                     {"content", Json::array({{{"type", "text"}, {"text", "Let me look."}},
                                              {{"type", "tool-call"},
                                               {"toolCallId", "c1"},
                                               {"toolName", "block"},
                                               {"input", {{"gate", gate}}}},
                                              {{"type", "tool-approval-request"},
                                               {"approvalId", "h1"},
                                               {"toolCallId", "c1"}}})}},
                    {{"role", "tool"},
                     {"content", Json::array({{{"type", "tool-approval-response"},
                                               {"approvalId", "h1"},
                                               {"approved", true}}})}}})}};
  int64_t signal = stack->Append("hs", handover);
  ASSERT_TRUE(stack->hooks(first).WaitUntil(ToolLine("block", "c1", "start")));
  // Step 1 is stored: readers have seen it, and the call.
  stack->ReadUntil(
      "hs", 0, [](const std::vector<Json>& r) { return CountControl(r, "handover-spliced") > 0; });
  // Accepted, so its death is a lost run and retried (not an assignment put back in the queue).
  ASSERT_TRUE(stack->WaitForRunState("hs", v1::RUN_STATE_RUNNING));
  int second = stack->AddWorker();
  stack->worker(first).Signal(SIGKILL);
  stack->worker(first).Wait();
  OpenGate(gate);

  std::vector<Json> all = stack->ReadTurns("hs", 0);
  ExpectGapless(all);
  // The dead run's step 1 is withdrawn: its partial ends at its handover-spliced record.
  size_t retract = ExpectRetractedPartial(all);
  ASSERT_LT(retract, all.size());
  std::vector<Json> partial(all.begin(), all.begin() + static_cast<ptrdiff_t>(retract));
  EXPECT_EQ(Text(partial), "Let me look.");
  EXPECT_EQ(CountControl(partial, "handover-spliced"), 1);
  EXPECT_EQ(ToolOutputs(partial, "c1"), 0);
  // The retry's answer: step 1 again under the warm id, the tool's result, step 2.
  std::vector<Json> answer(all.begin() + static_cast<ptrdiff_t>(retract) + 1, all.end());
  ASSERT_FALSE(answer.empty());
  EXPECT_EQ(StringField(answer.front(), "type"), "start");
  EXPECT_EQ(StringField(answer.front(), "messageId"), "M");
  EXPECT_EQ(CountControl(answer, "handover-spliced"), 1);
  EXPECT_EQ(ToolOutputs(answer, "c1"), 1);
  EXPECT_EQ(Text(answer), "Let me look.Found it.");
  EXPECT_EQ(Count(Types(answer), "finish"), 1);
  Json message = ReadMessage(answer);
  EXPECT_EQ(message["id"], "M");
  ASSERT_EQ(message["parts"].size(), 5u) << message.dump();
  EXPECT_EQ(message["parts"][1]["text"], "Let me look.");
  EXPECT_EQ(message["parts"][2]["toolCallId"], "c1");
  EXPECT_EQ(message["parts"][2]["state"], "output-available");
  EXPECT_EQ(message["parts"][4]["text"], "Found it.");
  EXPECT_EQ(CountControl(all, "turn-complete"), 1);
  EXPECT_EQ(Header(all.back(), "session-in-event-id"), absl::StrCat(signal));
  // The hook log is read on a thread of its own: the line may come after the turn-complete.
  EXPECT_TRUE(stack->hooks(second).WaitUntil(ToolLine("block", "c1", "done")));
  // Step 2's one model call saw the warm side's step 1 and the tool's result.
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0].body, HasSubstr("Let me look."));
  EXPECT_THAT(requests[0].body, HasSubstr("released"));
  std::vector<v1::Run> runs = stack->Runs("hs");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_LOST);
  EXPECT_EQ(runs[1].attempt(), 2);
}

// CancelRun while a tool spins on the CPU and ignores its stop token: the run ends `cancelled`
// at once and its slot is free (the worker, capacity 1, answers a second chat while the tool
// still spins); the tool's late result is dropped: no tool output on .out, and nothing of the
// cancelled run after its `abort`.
TEST(RecoveryTest, CancelWhileAToolSpinsFreesTheSlotAndDropsTheLateResult) {
  auto stack = Stack::Start({.workers = 1,
                             .capacity = 1,
                             .worker_flags = {"--hook_threads=2", "--idle_timeout_ms=300"},
                             .worker_binary = FAULT_WORKER_BINARY});
  ASSERT_NE(stack, nullptr);
  const std::string gate = stack->Path("gate");
  ASSERT_TRUE(stack->llm()
                  .SetScript(Script({ToolReply("Spinning.", "toolu_s", "spin", gate),
                                     Reply("Second chat answered."), Reply("After the cancel.")}))
                  .ok());
  stack->Create("c1", "tools", "submit-message",
                Json{{"message", UserMessage("u1", "Spin, please.")}});
  ASSERT_TRUE(stack->hooks().WaitUntil(ToolLine("spin", "toolu_s", "start")));
  // The client has seen the call (so the orchestrator knows the run runs; a cancel before that
  // revokes the run with nothing of it stored, a different case).
  stack->ReadUntil("c1", 0, [](const std::vector<Json>& r) {
    return !r.empty() && StringField(r.back(), "type") == "tool-input-available";
  });
  // The worker's one slot is taken: a second chat waits in the queue.
  stack->Create("c2", "chat", "submit-message",
                Json{{"message", UserMessage("v1", "Are you free?")}});
  ASSERT_EQ(stack->Runs("c2").back().state(), v1::RUN_STATE_QUEUED);

  stack->Cancel("c1");
  ASSERT_TRUE(stack->WaitForRunState("c1", v1::RUN_STATE_CANCELLED));
  EXPECT_EQ(Text(stack->ReadTurns("c2", 0)), "Second chat answered.");
  EXPECT_EQ(stack->Runs("c2").back().worker_id(), "worker-0");
  // All this while the tool spun: its gate is still closed.
  EXPECT_EQ(CountToolLines(stack->hooks().lines(), "done"), 0);

  // Let the spin end: the tool returns, and its result goes nowhere.
  OpenGate(gate);
  ASSERT_TRUE(stack->hooks().WaitUntil(ToolLine("spin", "toolu_s", "done")));
  // The chat goes on: its next message boots a run on the same worker (once the second chat's
  // run has idled out and left the slot), after the late result came back there.
  int64_t next = stack->SendText("c1", "u2", "And now?");
  std::vector<Json> all = stack->ReadUntil("c1", 0, [next](const std::vector<Json>& r) {
    return !r.empty() && StringField(r.back(), "control") == "turn-complete" &&
           Header(r.back(), "session-in-event-id") == absl::StrCat(next);
  });
  ExpectGapless(all);
  EXPECT_EQ(ToolOutputs(all, "toolu_s"), 0);
  // The cancelled run's output ends with its `abort`; every record after it is the next run's.
  size_t abort = 0;
  while (abort < all.size() && StringField(all[abort], "type") != "abort") ++abort;
  ASSERT_LT(abort, all.size());
  std::vector<Json> cancelled(all.begin(), all.begin() + static_cast<ptrdiff_t>(abort) + 1);
  EXPECT_EQ(StringField(cancelled.front(), "type"), "start");
  EXPECT_THAT(Types(cancelled), Contains("tool-input-available"));
  EXPECT_EQ(Text(cancelled), "Spinning.");
  std::vector<Json> after(all.begin() + static_cast<ptrdiff_t>(abort) + 1, all.end());
  for (const Json& r : after) {
    EXPECT_NE(StringField(r, "toolCallId"), "toolu_s") << DumpJson(r);
    if (StringField(r, "type") == "start") {
      EXPECT_NE(StringField(r, "messageId"), StringField(cancelled.front(), "messageId"));
    }
  }
  EXPECT_EQ(Text(after), "After the cancel.");
  // The new run answered the new message, with the cancelled turn before it.
  std::vector<fakellm::RecordedRequest> requests = stack->llm().requests();
  ASSERT_EQ(requests.size(), 3u);
  const Json& messages = requests[2].json["messages"];
  ASSERT_FALSE(messages.empty());
  EXPECT_THAT(messages.back().dump(), HasSubstr("And now?"));
  EXPECT_THAT(messages.front().dump(), HasSubstr("Spin, please."));
  std::vector<v1::Run> runs = stack->Runs("c1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state(), v1::RUN_STATE_CANCELLED);
}

// SIGTERM while a tool is stuck (it blocks and ignores its stop token): the drain hands the run
// back after its grace and the worker exits without waiting for the tool; the run is retried on
// another worker, which retracts the partial and answers the message once.
TEST(RecoveryTest, ADrainingWorkerExitsWhileAToolIsStuckAndItsRunIsRetried) {
  auto stack = Stack::Start({.workers = 0, .worker_binary = FAULT_WORKER_BINARY});
  ASSERT_NE(stack, nullptr);
  const std::string gate = stack->Path("gate");
  auto [first, in_seq] = StartBlockedToolTurn(*stack, "g1", gate, {"--drain_grace_ms=100"});
  int second = stack->AddWorker();
  stack->worker(first).Signal(SIGTERM);
  // The worker ends (its stdout closes) while the tool is still blocked: the gate is closed.
  absl::StatusOr<std::string> never = stack->worker(first).WaitForLine("never printed");
  ASSERT_EQ(never.status().code(), absl::StatusCode::kUnavailable) << never.status();
  EXPECT_EQ(stack->worker(first).Wait(), 0);
  EXPECT_FALSE(ToolLine("block", "toolu_1", "done")(stack->hooks(first).lines()));

  OpenGate(gate);
  ASSERT_TRUE(stack->hooks(second).WaitFor("onBoot"));
  std::vector<Json> all = stack->ReadTurns("g1", 0);
  ExpectGapless(all);
  size_t retract = ExpectRetractedPartial(all);
  ASSERT_LT(retract, all.size());
  std::vector<Json> answer(all.begin() + static_cast<ptrdiff_t>(retract) + 1, all.end());
  EXPECT_EQ(Text(answer), "Looking again.Found it.");
  EXPECT_EQ(ToolOutputs(all, "toolu_1"), 0);
  EXPECT_EQ(ToolOutputs(all, "toolu_2"), 1);
  EXPECT_EQ(CountControl(all, "turn-complete"), 1);
  EXPECT_EQ(Header(all.back(), "session-in-event-id"), absl::StrCat(in_seq));
  std::vector<v1::Run> runs = stack->Runs("g1");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].reason(), "worker-shutdown");
  EXPECT_EQ(runs[1].worker_id(), "worker-1");
}

}  // namespace
}  // namespace baton::testing
