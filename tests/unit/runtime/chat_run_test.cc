// Behaviour of a managed agent's run, driven through the test kit.
#include "runtime/chat_run.h"

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

}  // namespace
}  // namespace baton
