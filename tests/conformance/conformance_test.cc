// The conformance suite: every file in tests/conformance/scenarios/ is one scenario of
// reference/chat-wire-and-hooks.md §9 (or one of baton's deliberate fixes), run through the
// offline test kit. The format is described in tests/conformance/README.md.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "hooks/status.h"
#include "runtime/testkit/test_kit.h"
#include "tests/conformance/scenario_agent.h"

namespace baton {
namespace {

using conformance::ApplyStep;
using conformance::BuildAgent;
using conformance::Matcher;
using conformance::ReaderMessages;
using conformance::ReadScenario;
using conformance::ScenarioFiles;
using conformance::ToolLog;

Json LoadScenario(const std::string& file) {
  absl::StatusOr<Json> json =
      ReadScenario((std::filesystem::path(BATON_SCENARIO_DIR) / file).string());
  EXPECT_TRUE(json.ok()) << file << ": " << json.status();
  return json.ok() ? *json : Json::object();
}

// Checks `expect` against the kit's state; every mismatch is a test failure naming `where`.
void Check(const Json& expect, TestKit& kit, ToolLog& log, Matcher& matcher,
           const std::string& where) {
  std::string why;
  if (expect.contains("hooks")) {
    Json actual = Json::array();
    for (const HookCall& h : kit.hooks()) {
      actual.push_back(expect["hooks"].size() > 0 ? Json{{"name", h.name}, {"args", h.args}}
                                                  : Json());
    }
    Json wanted = Json::array();
    for (const Json& e : expect["hooks"]) {
      wanted.push_back(e.is_string() ? Json{{"name", e}} : e);
    }
    Json names = Json::array();
    for (const HookCall& h : kit.hooks()) names.push_back(h.name);
    EXPECT_TRUE(matcher.Match(wanted, actual, "hooks", &why))
        << where << ": " << why << "\nactual hooks: " << names.dump();
  }
  for (const Json& name : expect.value("hooks_absent", Json::array())) {
    EXPECT_EQ(kit.LastHook(name.get<std::string>()), nullptr)
        << where << ": hook " << name << " fired";
  }
  Json out = Json::array();
  for (const OutRecord& r : kit.out()) {
    Json a = {{"type", r.Type()}};
    if (r.is_control) {
      Json headers = Json::object();
      for (const auto& [k, v] : r.headers) headers[k] = v;
      a["headers"] = headers;
    } else {
      a["chunk"] = r.chunk();
    }
    out.push_back(std::move(a));
  }
  if (expect.contains("out")) {
    const Json& actual = out;
    Json wanted = Json::array();
    for (const Json& e : expect["out"]) wanted.push_back(e.is_string() ? Json{{"type", e}} : e);
    Json types = Json::array();
    for (const std::string& t : kit.OutTypes()) types.push_back(t);
    EXPECT_TRUE(matcher.Match(wanted, actual, "out", &why))
        << where << ": " << why << "\nactual out: " << types.dump();
  }
  if (expect.contains("out_messages")) {
    absl::StatusOr<Json> messages = ReaderMessages(out);
    ASSERT_TRUE(messages.ok()) << where << ": out_messages: " << messages.status();
    EXPECT_TRUE(matcher.Match(expect["out_messages"], *messages, "out_messages", &why))
        << where << ": " << why << "\nreader's messages: " << messages->dump();
  }
  if (expect.contains("state")) {
    static const std::map<LocalSessions::State, std::string> kNames = {
        {LocalSessions::State::kLive, "live"},
        {LocalSessions::State::kSuspended, "suspended"},
        {LocalSessions::State::kExited, "exited"},
        {LocalSessions::State::kFailed, "failed"},
        {LocalSessions::State::kClosed, "closed"}};
    EXPECT_EQ(kNames.at(kit.state()), expect["state"].get<std::string>()) << where;
  }
  if (expect.contains("end_reason")) {
    EXPECT_EQ(kit.last_outcome().reason, expect["end_reason"].get<std::string>()) << where;
  }
  if (expect.contains("runs")) {
    EXPECT_EQ(kit.runs(), expect["runs"].get<int>()) << where;
  }
  if (expect.contains("snapshot")) {
    EXPECT_TRUE(matcher.Match(expect["snapshot"], kit.snapshot(), "snapshot", &why))
        << where << ": " << why << "\nsnapshot: " << kit.snapshot().dump();
  }
  if (expect.contains("model_calls")) {
    EXPECT_EQ(kit.model().calls().size(), expect["model_calls"].get<size_t>()) << where;
  }
  if (expect.contains("last_model_call")) {
    std::vector<ModelCall> calls = kit.model().calls();
    ASSERT_FALSE(calls.empty()) << where << ": no model call";
    Json actual = {{"messages", calls.back().messages}, {"system", calls.back().system}};
    EXPECT_TRUE(matcher.Match(expect["last_model_call"], actual, "last_model_call", &why))
        << where << ": " << why << "\nmessages: " << calls.back().messages.ToJson().dump();
  }
  if (expect.contains("tools_executed")) {
    absl::MutexLock lock(&log.mu);
    Json actual(log.calls);
    EXPECT_TRUE(matcher.Match(expect["tools_executed"], actual, "tools_executed", &why))
        << where << ": " << why;
  }
}

class Conformance : public ::testing::TestWithParam<std::string> {};

TEST_P(Conformance, Scenario) {
  Json scenario = LoadScenario(GetParam());
  SCOPED_TRACE(scenario.value("name", GetParam()));
  ToolLog log;
  TestKit kit(BuildAgent(scenario.value("agent", Json::object()), &log));
  for (const Json& script : scenario.value("model", Json::array())) {
    absl::StatusOr<ScriptedResponse> response = ParseScript(script);
    ASSERT_TRUE(response.ok()) << response.status();
    kit.model().Push(*std::move(response));
  }
  Matcher matcher;
  const Json boot = scenario.value("boot", Json::object());
  const Json early_in = boot.value("in", Json::array());
  std::vector<Json> early(early_in.begin(), early_in.end());
  kit.Boot(boot.value("trigger", "preload"), boot.value("payload", Json::object()), early,
           boot.value("attempt", 1));
  int index = 0;
  for (const Json& step : scenario.value("steps", Json::array())) {
    std::string where = absl::StrCat(GetParam(), " step ", index++);
    if (step.contains("expect")) {
      Check(step["expect"], kit, log, matcher, where);
    } else if (!ApplyStep(step, kit, where)) {
      ADD_FAILURE() << where << ": unknown step " << step.dump();
    }
  }
  Check(scenario.value("expect", Json::object()), kit, log, matcher, GetParam() + " final");
}

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(0, info.param.size() - 5);
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Scenarios, Conformance,
                         ::testing::ValuesIn(ScenarioFiles(BATON_SCENARIO_DIR)), TestName);

}  // namespace
}  // namespace baton
