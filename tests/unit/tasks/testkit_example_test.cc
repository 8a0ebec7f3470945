// The example of docs/testkit.md, kept here so the documentation is known to work.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/testkit/test_kit.h"
#include "tasks/agents.h"

TEST(WeatherAgent, AnswersWithTheToolResultInStepTwo) {
  baton::TestKit kit(baton::tasks::WeatherAgent(nullptr));  // the kit supplies the model
  kit.model().Push(baton::ScriptedModel::ToolCall("c1", "get_weather", R"({"city":"Oslo"})"));
  kit.model().Push(baton::ScriptedModel::Text("It is 4 °C in Oslo."));

  kit.Boot("preload");
  kit.SendText("u1", "Weather in Oslo?");

  EXPECT_THAT(kit.HookNames(),
              testing::ElementsAre("onBoot", "onPreload", "onValidateMessages", "onChatStart",
                                   "onTurnStart", "run", "onBeforeTurnComplete", "onTurnComplete"));
  // The tool ran, and the second model call was sent its result.
  std::vector<baton::ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].messages.back()["content"][0]["output"]["value"]["tempC"], 4);
  EXPECT_EQ(kit.OutTypes().back(), "trigger:turn-complete");

  // Idle for the default 30 s: the run suspends; the next message resumes it.
  kit.Advance(absl::Seconds(31));
  EXPECT_EQ(kit.state(), baton::LocalSessions::State::kSuspended);
  kit.model().Push(baton::ScriptedModel::Text("You're welcome."));
  kit.SendText("u2", "Thanks!");
  EXPECT_NE(kit.LastHook("onChatResume"), nullptr);
}
