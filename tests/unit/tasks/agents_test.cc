// The example agents, driven offline through the test kit.
#include "tasks/agents.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/testkit/test_kit.h"

namespace baton {
namespace {

using ::testing::ElementsAre;

// The last turn's records: after the turn-complete before the last one, up to and including the
// last one (control records such as trim that follow it are left out).
std::vector<OutRecord> LastTurn(const TestKit& kit) {
  std::vector<OutRecord> all = kit.out();
  size_t end = all.size();
  while (end > 0 && all[end - 1].Type() != "trigger:turn-complete") --end;
  size_t begin = end > 0 ? end - 1 : 0;
  while (begin > 0 && all[begin - 1].Type() != "trigger:turn-complete") --begin;
  return std::vector<OutRecord>(all.begin() + begin, all.begin() + end);
}

std::vector<std::string> Types(const std::vector<OutRecord>& records) {
  std::vector<std::string> types;
  for (const OutRecord& r : records) types.push_back(r.Type());
  return types;
}

// The first chunk of `type` in `records`, or null.
Json Find(const std::vector<OutRecord>& records, const std::string& type) {
  for (const OutRecord& r : records) {
    if (!r.is_control && r.Type() == type) return r.chunk();
  }
  return Json();
}

// The content parts of `type` in the model messages of `call`.
std::vector<Json> ContentOfType(const ModelCall& call, const std::string& type) {
  std::vector<Json> found;
  for (const Json& m : call.messages) {
    const Json* content = FindField(m, "content");
    if (content == nullptr || !content->is_array()) continue;
    for (const Json& c : *content) {
      if (StringField(c, "type") == type) found.push_back(c);
    }
  }
  return found;
}

std::vector<std::string> Roles(const Json& messages) {
  std::vector<std::string> roles;
  for (const Json& m : messages) roles.push_back(MessageRole(m));
  return roles;
}

// The files agent, counting delete_file executions.
Agent CountingFilesAgent(std::shared_ptr<std::atomic<int>> deletes) {
  Agent agent = tasks::FilesAgent(nullptr);
  for (Tool& tool : agent.tools) {
    if (tool.name != "delete_file") continue;
    auto inner = tool.execute;
    tool.execute = [inner, deletes](const Json& input,
                                    const ToolContext& context) -> absl::StatusOr<Json> {
      deletes->fetch_add(1);
      return inner(input, context);
    };
  }
  return agent;
}

TEST(WeatherAgent, AnswersAToolQuestionInTwoSteps) {
  TestKit kit(tasks::WeatherAgent(nullptr));
  kit.model().Push(ScriptedModel::ToolCall("c1", "get_weather", R"({"city":"Oslo"})"));
  kit.model().Push(ScriptedModel::Text("It is 4 C in Oslo."));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "Weather in Oslo?")}});

  EXPECT_THAT(kit.OutTypes(),
              ElementsAre("start", "start-step", "tool-input-start", "tool-input-delta",
                          "tool-input-available", "tool-output-available", "finish-step",
                          "start-step", "text-start", "text-delta", "text-end", "finish-step",
                          "finish", "trigger:turn-complete"));
  std::vector<OutRecord> out = kit.out();
  Json output = Find(out, "tool-output-available");
  EXPECT_EQ(output["toolCallId"], "c1");
  EXPECT_EQ(output["output"], Json::parse(R"({"city":"Oslo","tempC":4})"));
  EXPECT_EQ(Find(out, "finish")["finishReason"], "stop");

  std::vector<ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].system, kit.agent().system);
  ASSERT_EQ(calls[0].tools.size(), 1u);
  EXPECT_EQ(calls[0].tools[0]["name"], "get_weather");
  EXPECT_THAT(Roles(calls[0].messages), ElementsAre("user"));
  // The step-2 call carries the step-1 call and its result.
  EXPECT_EQ(calls[1].step, 1);
  EXPECT_THAT(Roles(calls[1].messages), ElementsAre("user", "assistant", "tool"));
  std::vector<Json> results = ContentOfType(calls[1], "tool-result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["toolCallId"], "c1");
  EXPECT_EQ(results[0]["output"],
            Json::parse(R"({"type":"json","value":{"city":"Oslo","tempC":4}})"));

  Json snap = kit.snapshot();
  ASSERT_EQ(snap["messages"].size(), 2u);
  Json response = snap["messages"][1]["message"];
  ASSERT_EQ(response["parts"].size(), 4u) << response.dump();
  EXPECT_EQ(response["parts"][0]["type"], "step-start");
  EXPECT_EQ(response["parts"][1]["type"], "tool-get_weather");
  EXPECT_EQ(response["parts"][1]["state"], "output-available");
  EXPECT_EQ(response["parts"][2]["type"], "step-start");
  EXPECT_EQ(MessageText(response), "It is 4 C in Oslo.");
}

TEST(WeatherAgent, UnknownCityIsAMaskedToolErrorTheModelSeesInFull) {
  TestKit kit(tasks::WeatherAgent(nullptr));
  kit.model().Push(ScriptedModel::ToolCall("c1", "get_weather", R"({"city":"Atlantis"})"));
  kit.model().Push(ScriptedModel::Text("I could not find Atlantis."));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "Weather in Atlantis?")}});

  std::vector<OutRecord> out = kit.out();
  Json error = Find(out, "tool-output-error");
  ASSERT_FALSE(error.is_null()) << ::testing::PrintToString(kit.OutTypes());
  EXPECT_EQ(error["toolCallId"], "c1");
  EXPECT_EQ(error["errorText"], "An error occurred.");
  EXPECT_TRUE(Find(out, "tool-output-available").is_null());
  for (const OutRecord& r : out) {
    EXPECT_EQ(r.ToJson().dump().find("City not found"), std::string::npos) << r.ToJson().dump();
  }

  std::vector<ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 2u);
  std::vector<Json> results = ContentOfType(calls[1], "tool-result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["output"], Json::parse(R"({"type":"error-text","value":"City not found"})"));
  EXPECT_EQ(calls[1].messages.ToJson().dump().find("An error occurred."), std::string::npos);

  Json response = kit.snapshot()["messages"][1]["message"];
  EXPECT_EQ(response["parts"][1]["state"], "output-error");
  EXPECT_EQ(response["parts"][1]["errorText"], "An error occurred.");
  EXPECT_EQ(MessageText(response), "I could not find Atlantis.");
}

// Boots the files agent on a request to delete todo.txt; returns the approval id it asked for.
std::string AskToDelete(TestKit& kit) {
  kit.model().Push(ScriptedModel::ToolCall("c1", "delete_file", R"({"path":"todo.txt"})"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "Delete todo.txt")}});
  return StringField(Find(kit.out(), "tool-approval-request"), "approvalId");
}

// The approval answer a client sends back (slim HITL wire).
Json ApprovalAnswer(const std::string& message_id, const std::string& approval_id, bool approved) {
  Json part = {{"type", "tool-delete_file"},
               {"toolCallId", "c1"},
               {"state", "approval-responded"},
               {"approval", {{"id", approval_id}, {"approved", approved}}}};
  return Json{{"id", message_id}, {"role", "assistant"}, {"parts", Json::array({part})}};
}

TEST(FilesAgent, DeleteFileAsksForApprovalAndStops) {
  auto deletes = std::make_shared<std::atomic<int>>(0);
  TestKit kit(CountingFilesAgent(deletes));
  std::string approval_id = AskToDelete(kit);

  EXPECT_THAT(kit.OutTypes(),
              ElementsAre("start", "start-step", "tool-input-start", "tool-input-delta",
                          "tool-input-available", "tool-approval-request", "finish-step", "finish",
                          "trigger:turn-complete"));
  std::vector<OutRecord> out = kit.out();
  EXPECT_FALSE(approval_id.empty());
  EXPECT_EQ(Find(out, "tool-approval-request")["toolCallId"], "c1");
  EXPECT_EQ(Find(out, "finish")["finishReason"], "tool-calls");
  EXPECT_EQ(deletes->load(), 0);
  EXPECT_EQ(kit.model().calls().size(), 1u);

  Json response = kit.snapshot()["messages"][1]["message"];
  ASSERT_EQ(response["parts"].size(), 2u) << response.dump();
  EXPECT_EQ(response["parts"][1]["state"], "approval-requested");
  EXPECT_EQ(response["parts"][1]["approval"]["id"], approval_id);
}

TEST(FilesAgent, DeleteFileExecutesAfterApproval) {
  auto deletes = std::make_shared<std::atomic<int>>(0);
  TestKit kit(CountingFilesAgent(deletes));
  std::string approval_id = AskToDelete(kit);
  std::string message_id = StringField(kit.out()[0].chunk(), "messageId");
  ASSERT_FALSE(message_id.empty());

  kit.model().Push(ScriptedModel::Text("Deleted todo.txt."));
  kit.SendMessage(ApprovalAnswer(message_id, approval_id, true));

  std::vector<OutRecord> turn = LastTurn(kit);
  EXPECT_THAT(Types(turn), ElementsAre("start", "tool-output-available", "start-step", "text-start",
                                       "text-delta", "text-end", "finish-step", "finish",
                                       "trigger:turn-complete"));
  EXPECT_EQ(turn[0].chunk()["messageId"], message_id);
  Json output = Find(turn, "tool-output-available");
  EXPECT_EQ(output["toolCallId"], "c1");
  EXPECT_EQ(output["output"], Json::parse(R"({"deleted":"todo.txt"})"));
  EXPECT_EQ(Find(turn, "finish")["finishReason"], "stop");
  EXPECT_EQ(deletes->load(), 1);

  std::vector<ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 2u);
  std::vector<Json> results = ContentOfType(calls[1], "tool-result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["output"], Json::parse(R"({"type":"json","value":{"deleted":"todo.txt"}})"));
  EXPECT_EQ(calls[1].messages.ToJson().dump().find("approval"), std::string::npos);

  // The approval continued the same message; it was replaced in place.
  Json snap = kit.snapshot();
  ASSERT_EQ(snap["messages"].size(), 2u);
  Json response = snap["messages"][1]["message"];
  EXPECT_EQ(response["id"], message_id);
  EXPECT_EQ(response["parts"][1]["state"], "output-available");
  EXPECT_EQ(MessageText(response), "Deleted todo.txt.");
}

TEST(FilesAgent, DeniedDeleteIsNeverExecuted) {
  auto deletes = std::make_shared<std::atomic<int>>(0);
  TestKit kit(CountingFilesAgent(deletes));
  std::string approval_id = AskToDelete(kit);
  std::string message_id = StringField(kit.out()[0].chunk(), "messageId");

  kit.model().Push(ScriptedModel::Text("OK, I kept it."));
  kit.SendMessage(ApprovalAnswer(message_id, approval_id, false));

  std::vector<OutRecord> turn = LastTurn(kit);
  EXPECT_THAT(Types(turn),
              ElementsAre("start", "tool-output-denied", "start-step", "text-start", "text-delta",
                          "text-end", "finish-step", "finish", "trigger:turn-complete"));
  EXPECT_EQ(Find(turn, "tool-output-denied")["toolCallId"], "c1");
  EXPECT_TRUE(Find(turn, "tool-output-available").is_null());
  EXPECT_EQ(deletes->load(), 0);

  std::vector<ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 2u);
  std::vector<Json> results = ContentOfType(calls[1], "tool-result");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["output"]["type"], "execution-denied");

  Json response = kit.snapshot()["messages"][1]["message"];
  EXPECT_EQ(response["parts"][1]["state"], "output-denied");
  EXPECT_EQ(MessageText(response), "OK, I kept it.");
}

}  // namespace
}  // namespace baton
