// Custom loops and session loops: user code drives the turns, on the managed agent's core.
#include "runtime/run/chat_session.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/testkit/test_kit.h"
#include "runtime/transcript/ui_reducer.h"
#include "tasks/agents.h"
#include "tests/unit/runtime/run/read_out.h"

namespace baton {
namespace {

using ::testing::ElementsAre;

Json ToolHandover() {
  return Json::parse(R"([
    {"role":"assistant","content":[
      {"type":"text","text":"Checking."},
      {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-approval-request","approvalId":"h1","toolCallId":"c1"}]},
    {"role":"tool","content":[{"type":"tool-approval-response","approvalId":"h1","approved":true}]}])");
}

asio::awaitable<void> CustomLoop(ChatSession& s) {
  Handover h = co_await s.ConsumeHandover();
  if (h.received) {
    if (!h.is_final) co_await s.StreamResponse();
    s.CompleteTurn();
  }
  for (;;) {
    std::optional<IncomingMessage> m = co_await s.NextMessage();
    if (!m.has_value()) break;
    s.transcript().Add(m->message);
    co_await s.StreamResponse();
    s.CompleteTurn();
  }
}

TEST(ChatSession, CustomLoopConsumesTheHandoverThenAnswersMessages) {
  Agent agent = tasks::WeatherAgent(nullptr);
  agent.loop = CustomLoop;
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("It is 4 C."));
  kit.model().Push(ScriptedModel::Text("You are welcome."));
  kit.Boot("handover-prepare",
           {{"headStartMessages", Json::array({UserMessage("u1", "Weather in Oslo?")})}});
  kit.SendHandover(ToolHandover(), "M", false);
  // ConsumeHandover writes step 1 under the warm id, as a managed agent does; StreamResponse
  // goes on with the same message.
  EXPECT_THAT(kit.OutTypes(),
              ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                          "tool-input-available", "finish-step", "trigger:handover-spliced",
                          "tool-output-available", "start-step", "text-start", "text-delta",
                          "text-end", "finish-step", "finish", "trigger:turn-complete"));
  std::vector<OutRecord> out = kit.out();
  ASSERT_EQ(out.size(), 16u);
  EXPECT_EQ(out[0].chunk()["messageId"], "M");
  EXPECT_EQ(out[3].chunk()["delta"], "Checking.");
  EXPECT_EQ(out[5].chunk()["toolCallId"], "c1");
  EXPECT_EQ(out[7].Header("message-id"), "M");
  EXPECT_EQ(out[7].Header("from-seq"), std::to_string(out[0].seq));
  EXPECT_EQ(out[8].chunk()["toolCallId"], "c1");
  EXPECT_EQ(out[11].chunk()["delta"], "It is 4 C.");
  Json read = ReadOut(out);
  EXPECT_EQ(read["id"], "M");
  ASSERT_EQ(read["parts"].size(), 5u) << read.dump();
  EXPECT_EQ(read["parts"][1]["text"], "Checking.");
  EXPECT_EQ(read["parts"][2]["state"], "output-available");
  EXPECT_EQ(read["parts"][4]["text"], "It is 4 C.");
  kit.SendText("u2", "thanks");
  EXPECT_EQ(kit.OutTypes().back(), "trigger:trim");
  Json snap = kit.snapshot();
  ASSERT_EQ(snap["messages"].size(), 4u);
  EXPECT_EQ(snap["messages"][1]["id"], "M");
  EXPECT_EQ(snap["messages"][1]["message"]["parts"][1]["state"], "output-available");
  EXPECT_EQ(snap["turn"], 2);
}

TEST(ChatSession, CustomLoopIdlesIntoSuspensionAndResumesFromTheTop) {
  Agent agent = tasks::ChatAgent(nullptr);
  agent.loop = CustomLoop;
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("one"));
  kit.model().Push(ScriptedModel::Text("two"));
  kit.Boot("preload");
  kit.SendText("u1", "hi");
  kit.Advance(absl::Seconds(31));
  EXPECT_EQ(kit.state(), LocalSessions::State::kSuspended);
  kit.SendText("u2", "again");
  EXPECT_EQ(kit.runs(), 2);
  ASSERT_EQ(kit.snapshot()["messages"].size(), 4u);
  EXPECT_EQ(MessageText(kit.snapshot()["messages"][3]["message"]), "two");
}

asio::awaitable<void> SessionLoop(ChatSession& s) {
  for (;;) {
    std::optional<Turn> turn = co_await s.NextTurn();
    if (!turn.has_value()) break;
    if (!(turn->handover && turn->handover->is_final)) co_await s.StreamResponse();
    s.CompleteTurn();
  }
}

TEST(ChatSession, SessionLoopExposesAFinalHandoverAndRunsNoModel) {
  Agent agent = tasks::ChatAgent(nullptr);
  agent.loop = SessionLoop;
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("later"));
  kit.Boot("handover-prepare", {{"headStartMessages", Json::array({UserMessage("u1", "hi")})}});
  Json partial = Json::array({{{"role", "assistant"}, {"content", "Hello!"}}});
  int64_t seq = kit.SendHandover(partial, "M", true);
  // Step 1 is the whole answer: written, then ended by CompleteTurn.
  EXPECT_THAT(kit.OutTypes(), ElementsAre("start", "start-step", "text-start", "text-delta",
                                          "text-end", "finish-step", "trigger:handover-spliced",
                                          "finish", "trigger:turn-complete"));
  std::vector<OutRecord> out = kit.out();
  ASSERT_EQ(out.size(), 9u);
  EXPECT_EQ(out[0].chunk()["messageId"], "M");
  EXPECT_EQ(out[3].chunk()["delta"], "Hello!");
  EXPECT_EQ(out[6].Header("message-id"), "M");
  EXPECT_EQ(out[7].chunk()["finishReason"], "stop");
  EXPECT_EQ(out[8].Header("session-in-event-id"), std::to_string(seq));
  Json read = ReadOut(out);
  EXPECT_EQ(read["id"], "M");
  EXPECT_EQ(MessageText(read), "Hello!");
  EXPECT_TRUE(kit.model().calls().empty());
  kit.SendText("u2", "more");
  EXPECT_EQ(kit.model().calls().size(), 1u);
  EXPECT_EQ(kit.snapshot()["messages"][1]["message"]["parts"][0]["text"], "Hello!");
}

TEST(ChatSession, SessionLoopAnswersASkippedHeadStartsMessageAsTurnZero) {
  Agent agent = tasks::ChatAgent(nullptr);
  agent.loop = SessionLoop;
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("Hello from the run."));
  kit.Boot("handover-prepare", {{"headStartMessages", Json::array({UserMessage("u1", "hi")})}});
  int64_t skip = kit.SendHandoverSkip();
  EXPECT_EQ(kit.state(), LocalSessions::State::kLive);
  ASSERT_EQ(kit.model().calls().size(), 1u);
  EXPECT_EQ(kit.model().calls()[0].messages.size(), 1u);  // u1 once, not twice
  ASSERT_FALSE(kit.out().empty());
  EXPECT_EQ(kit.out().back().Header("session-in-event-id"), std::to_string(skip));
  ASSERT_EQ(kit.snapshot()["messages"].size(), 2u);
  EXPECT_EQ(kit.snapshot()["messages"][0]["id"], "u1");
}

TEST(ChatSession, CustomLoopGetsASkippedHeadStartsMessageFromNextMessage) {
  Agent agent = tasks::ChatAgent(nullptr);
  agent.loop = CustomLoop;
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("Answered."));
  kit.Boot("handover-prepare", {{"headStartMessages", Json::array({UserMessage("u1", "hi")})}});
  int64_t skip = kit.SendHandoverSkip();
  ASSERT_EQ(kit.model().calls().size(), 1u);
  EXPECT_EQ(kit.model().calls()[0].messages.size(), 1u);
  EXPECT_EQ(kit.out().back().Header("session-in-event-id"), std::to_string(skip));
}

}  // namespace
}  // namespace baton
