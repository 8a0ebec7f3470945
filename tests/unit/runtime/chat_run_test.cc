// Behaviour of a managed agent's run, driven through the test kit.
#include "runtime/chat_run.h"

#include <algorithm>
#include <atomic>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/testkit/test_kit.h"
#include "tasks/agents.h"

namespace baton {
namespace {

using ::testing::ElementsAre;

Agent TextAgent() {
  Agent agent;
  agent.id = "t";
  return agent;
}

TEST(ChatRun, PreloadThenMessageRunsOneTurn) {
  TestKit kit(TextAgent());
  kit.model().Push(ScriptedModel::Text("hello"));
  kit.Boot("preload");
  EXPECT_THAT(kit.HookNames(), ElementsAre("onBoot", "onPreload"));
  int64_t seq = kit.SendText("u1", "hi");
  EXPECT_THAT(kit.HookNames(),
              ElementsAre("onBoot", "onPreload", "onValidateMessages", "onChatStart", "onTurnStart",
                          "run", "onBeforeTurnComplete", "onTurnComplete"));
  EXPECT_THAT(kit.OutTypes(),
              ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                          "finish-step", "finish", "trigger:turn-complete"));
  OutRecord tc = kit.out().back();
  EXPECT_EQ(tc.Header("session-in-event-id"), std::to_string(seq));
  EXPECT_EQ(kit.LastHook("onChatStart")->args["preloaded"], true);
  Json snap = kit.snapshot();
  ASSERT_EQ(snap["messages"].size(), 2u);
  EXPECT_EQ(MessageText(snap["messages"][1]["message"]), "hello");
  EXPECT_EQ(kit.state(), LocalSessions::State::kLive);
}

TEST(ChatRun, IdleSuspendsAndNextMessageResumes) {
  TestKit kit(TextAgent());
  kit.model().Push(ScriptedModel::Text("one"));
  kit.model().Push(ScriptedModel::Text("two"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  kit.Advance(absl::Seconds(31));
  EXPECT_EQ(kit.state(), LocalSessions::State::kSuspended);
  EXPECT_EQ(kit.HookNames().back(), "onRunEnd");
  kit.SendText("u2", "again");
  const HookCall* start = kit.LastHook("onTurnStart");
  ASSERT_NE(start, nullptr);
  EXPECT_EQ(start->args["turn"], 1);
  EXPECT_EQ(start->args["uiMessages"].size(), 3u);
  EXPECT_NE(kit.LastHook("onChatResume"), nullptr);
  EXPECT_EQ(kit.runs(), 2);
}

TEST(ChatRun, HeadStartWithToolCallRunsStepTwoUnderTheWarmId) {
  TestKit kit(tasks::WeatherAgent(nullptr));
  kit.model().Push(ScriptedModel::Text("It is 4 C in Oslo."));
  kit.Boot("handover-prepare", {{"headStartMessages", Json::array({UserMessage("u1", "Oslo?")})}});
  Json partial = Json::parse(R"([
    {"role":"assistant","content":[
      {"type":"reasoning","text":"Need data.","providerOptions":{"anthropic":{"signature":"sig"}}},
      {"type":"text","text":"Let me check."},
      {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-approval-request","approvalId":"handover-approval-1","toolCallId":"c1"}]},
    {"role":"tool","content":[
      {"type":"tool-approval-response","approvalId":"handover-approval-1","approved":true}]}])");
  kit.SendHandover(partial, "M", false);
  EXPECT_THAT(kit.OutTypes(), ElementsAre("start", "tool-output-available", "start-step",
                                          "text-start", "text-delta", "text-end", "finish-step",
                                          "finish", "trigger:turn-complete"));
  EXPECT_EQ(kit.out()[0].chunk["messageId"], "M");
  Json m = kit.snapshot()["messages"][1]["message"];
  EXPECT_EQ(m["id"], "M");
  EXPECT_EQ(m["parts"][0]["providerMetadata"]["anthropic"]["signature"], "sig");
  EXPECT_EQ(m["parts"][2]["state"], "output-available");
  // The step-2 call saw the tool result and the replayed signature.
  std::vector<ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 1u);
  std::string prompt = calls[0].messages.dump();
  EXPECT_NE(prompt.find("\"tool-result\""), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("\"sig\""), std::string::npos);
  EXPECT_EQ(prompt.find("approval"), std::string::npos);
}

TEST(ChatRun, HookWritesGoOutInOrderAroundTheAnswer) {
  Agent agent = TextAgent();
  agent.hooks.on_turn_start = [](const TurnStartEvent&, ChatControl& c) {
    c.Write({{"type", "data-status"}, {"data", "thinking"}, {"transient", true}});
    return absl::OkStatus();
  };
  agent.hooks.on_before_turn_complete = [](const TurnCompleteEvent& e, ChatControl& c) {
    c.Write({{"type", "data-usage"}, {"data", e.usage.ToJson()}});
    return absl::OkStatus();
  };
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("hello"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  EXPECT_THAT(kit.OutTypes(), ElementsAre("data-status", "start", "start-step", "text-start",
                                          "text-delta", "text-end", "finish-step", "finish",
                                          "data-usage", "trigger:turn-complete"));
  EXPECT_EQ(kit.out()[8].chunk["data"]["outputTokens"], 5);
}

TEST(ChatRun, SetMessagesFromAHookReplacesTheTranscript) {
  Agent agent = TextAgent();
  agent.hooks.on_turn_complete = [](const TurnCompleteEvent& e, ChatControl& c) {
    std::vector<Json> kept(e.ui_messages.end() - 1, e.ui_messages.end());  // keep the answer only
    c.SetMessages(std::move(kept));
    return absl::OkStatus();
  };
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("one"));
  kit.model().Push(ScriptedModel::Text("two"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  ASSERT_EQ(kit.snapshot()["messages"].size(), 1u);
  kit.SendText("u2", "again");
  // The second model call saw the trimmed history: the first answer and the new message.
  std::vector<ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 2u);
  ASSERT_EQ(calls[1].messages.size(), 2u);
  EXPECT_EQ(calls[1].messages[0]["role"], "assistant");
}

// The kit calls a process quiet only when user code has returned, so these tests use a budget
// of zero: it runs out before any result can come back (a result is handed back through the
// loop, which is busy awaiting it), and the late result is dropped.
TEST(ChatRun, AHookThatDoesNotReturnInTimeIsATurnError) {
  Agent agent = TextAgent();
  agent.options.hook_timeout = absl::ZeroDuration();
  agent.hooks.on_turn_start = [](const TurnStartEvent&, ChatControl&) { return absl::OkStatus(); };
  TestKit kit(agent);
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  EXPECT_THAT(kit.OutTypes(), ElementsAre("error", "trigger:turn-complete"));
  EXPECT_EQ(kit.out()[0].chunk["errorText"], "user code did not return in time");
  EXPECT_EQ(kit.LastHook("onTurnComplete")->args["finishReason"], "error");
  EXPECT_EQ(kit.state(), LocalSessions::State::kLive);
}

TEST(ChatRun, AToolThatDoesNotFinishInTimeIsAToolError) {
  Agent agent = TextAgent();
  agent.options.tool_timeout = absl::ZeroDuration();
  agent.options.mask_errors = false;
  agent.tools.push_back(
      Tool{"slow", "Never in time", Json{{"type", "object"}},
           [](const Json&, const ToolContext&) -> absl::StatusOr<Json> { return Json("late"); }});
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::ToolCall("c1", "slow", "{}"));
  kit.model().Push(ScriptedModel::Text("Sorry, that took too long."));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "go")}});
  std::vector<OutRecord> out = kit.out();
  auto error = std::find_if(out.begin(), out.end(),
                            [](const OutRecord& r) { return r.Type() == "tool-output-error"; });
  ASSERT_NE(error, out.end());
  EXPECT_EQ(error->chunk["errorText"], "tool slow did not finish in time");
  EXPECT_EQ(kit.OutTypes().back(), "trigger:turn-complete");
  ASSERT_EQ(kit.model().calls().size(), 2u);
}

TEST(ChatRun, RegenerateCarryingTheUserMessageAnswersAgain) {
  TestKit kit(TextAgent());
  kit.model().Push(ScriptedModel::Text("first"));
  kit.model().Push(ScriptedModel::Text("second"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  ASSERT_TRUE(
      kit.Send({{"kind", "message"},
                {"payload",
                 {{"trigger", "regenerate-message"}, {"message", UserMessage("u1", "hi")}}}})
          .ok());
  Json messages = kit.snapshot()["messages"];
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(MessageText(messages[1]["message"]), "second");
}

TEST(ChatRun, ASubmitMessageWithoutAMessageIsOnlyABoundary) {
  TestKit kit(TextAgent());
  kit.model().Push(ScriptedModel::Text("first"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  size_t before = kit.out().size();
  ASSERT_TRUE(kit.Send({{"kind", "message"}, {"payload", {{"trigger", "submit-message"}}}}).ok());
  std::vector<std::string> types = kit.OutTypes();
  ASSERT_EQ(types.size(), before + 2);  // a turn-complete and its trim
  EXPECT_EQ(types[before], "trigger:turn-complete");
  EXPECT_EQ(kit.model().calls().size(), 1u);
}

TEST(ChatRun, WhatALateHookAsksForIsIgnored) {
  Agent agent = TextAgent();
  agent.options.hook_timeout = absl::ZeroDuration();
  agent.hooks.on_turn_start = [](const TurnStartEvent&, ChatControl& c) {
    c.Write({{"type", "data-late"}, {"data", 1}});
    c.Close("late");
    return absl::OkStatus();
  };
  TestKit kit(agent);
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  for (const std::string& type : kit.OutTypes()) EXPECT_NE(type, "data-late");
  EXPECT_EQ(kit.state(), LocalSessions::State::kLive);  // the late Close() was not applied
}

TEST(ChatRun, ABootMessageLeftUnansweredByAnUpgradeIsAnsweredByTheContinuation) {
  Agent agent = TextAgent();
  auto upgrades = std::make_shared<std::atomic<int>>(0);
  agent.hooks.on_turn_start = [upgrades](const TurnStartEvent&, ChatControl& c) {
    if (upgrades->fetch_add(1) == 0) c.RequestUpgrade();  // only the first run asks
    return absl::OkStatus();
  };
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("answered after the upgrade"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  EXPECT_EQ(kit.runs(), 2);
  Json messages = kit.snapshot()["messages"];
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0]["id"], "u1");
  EXPECT_EQ(MessageText(messages[1]["message"]), "answered after the upgrade");
}

TEST(ChatRun, TotalUsageSurvivesASuspension) {
  TestKit kit(TextAgent());
  kit.model().Push(ScriptedModel::Text("one"));
  kit.model().Push(ScriptedModel::Text("two"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  kit.Advance(absl::Seconds(31));
  ASSERT_EQ(kit.state(), LocalSessions::State::kSuspended);
  kit.SendText("u2", "again");
  EXPECT_EQ(kit.snapshot()["totalUsage"]["outputTokens"], 10);  // 5 per scripted answer
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

// A retry booted by hand, with the `.out` tail a dead run left: its answer to u1 finished, but
// the run died before saving the snapshot that would have recorded it.
TEST(ChatRunRecovery, AFinishedAnswerOnTheTailIsNotAnsweredAgain) {
  FakeClock clock;
  asio::io_context io;
  HookPool pool(1);
  auto model = std::make_shared<ScriptedModel>(clock);
  model->Push(ScriptedModel::Text("for u2"));
  Agent agent = TextAgent();
  agent.model = model;
  std::vector<OutRecord> out;
  Json snapshot;
  std::optional<RunOutcome> outcome;
  std::vector<std::string> hooks;
  RunHost host;
  host.executor = io.get_executor();
  host.clock = &clock;
  host.pool = &pool;
  host.write = [&](OutRecord r) {
    r.seq = 100 + static_cast<int64_t>(out.size());
    out.push_back(r);
    return r.seq;
  };
  host.save_snapshot = [&](Json s) { snapshot = std::move(s); };
  host.finished = [&](const RunOutcome& o) { outcome = o; };
  host.observe = [&](std::string_view hook, const Json&) { hooks.emplace_back(hook); };
  host.new_message_id = [] { return std::string("msg_new"); };

  BootRequest boot;
  boot.run_id = "run_2";
  boot.chat_id = "c";
  boot.continuation = true;
  boot.attempt = 2;
  Json r0 = {{"id", "R0"},
             {"role", "assistant"},
             {"parts", Json::array({{{"type", "text"}, {"text", "zero"}}})}};
  boot.snapshot = {
      {"messages",
       Json::array({{{"id", "u0"}, {"final", true}, {"message", UserMessage("u0", "a")}},
                    {{"id", "R0"}, {"final", true}, {"message", r0}}})},
      {"lastOutEventId", 10},
      {"lastInEventId", 1}};
  auto message = [](const std::string& id) {
    return Json{{"kind", "message"},
                {"payload", {{"trigger", "submit-message"}, {"message", UserMessage(id, id)}}}};
  };
  boot.pending.push_back(*InRecordFromJson(2, message("u1")));
  boot.pending.push_back(*InRecordFromJson(3, message("u2")));
  for (Json chunk : {Json{{"type", "start"}, {"messageId", "R1"}}, Json{{"type", "start-step"}},
                     Json{{"type", "text-start"}, {"id", "s0-0"}},
                     Json{{"type", "text-delta"}, {"id", "s0-0"}, {"delta", "one"}},
                     Json{{"type", "text-end"}, {"id", "s0-0"}}, Json{{"type", "finish-step"}},
                     Json{{"type", "finish"}, {"finishReason", "stop"}}}) {
    boot.out_tail.push_back(OutRecord::Chunk(std::move(chunk)));
  }
  auto run = std::make_shared<ChatRun>(agent, host, std::move(boot));
  run->Start();
  RunUntilQuiet(io, pool);

  // Only u2 is answered; the transcript reads u0, R0, u1, R1, u2, and u2's answer.
  ASSERT_EQ(model->calls().size(), 1u);
  std::vector<std::string> ids;
  for (const Json& m : snapshot["messages"]) ids.push_back(m["id"]);
  EXPECT_THAT(ids, ElementsAre("u0", "R0", "u1", "R1", "u2", "msg_new"));
  EXPECT_EQ(std::count(hooks.begin(), hooks.end(), "onRecoveryBoot"), 0);
  EXPECT_EQ(std::count(hooks.begin(), hooks.end(), "onTurnComplete"), 1);
  run->Cancel();
  RunUntilQuiet(io, pool);
  EXPECT_TRUE(outcome.has_value());
}

}  // namespace
}  // namespace baton
