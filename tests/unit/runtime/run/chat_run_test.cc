// Behaviour of a managed agent's run, driven through the test kit.
#include "runtime/run/chat_run.h"

#include <algorithm>
#include <atomic>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/model/provider_requests.h"
#include "runtime/protocol/wire.h"
#include "runtime/testkit/test_kit.h"
#include "runtime/transcript/ui_reducer.h"
#include "tasks/agents.h"
#include "tests/unit/runtime/run/read_out.h"

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
  // Step 1 first, under the warm id, then the handover-spliced record; step 2 goes on with no
  // second `start`.
  EXPECT_THAT(
      kit.OutTypes(),
      ElementsAre("start", "start-step", "reasoning-start", "reasoning-delta", "reasoning-end",
                  "text-start", "text-delta", "text-end", "tool-input-available", "finish-step",
                  "trigger:handover-spliced", "tool-output-available", "start-step", "text-start",
                  "text-delta", "text-end", "finish-step", "finish", "trigger:turn-complete"));
  std::vector<OutRecord> out = kit.out();
  ASSERT_EQ(out.size(), 19u);
  EXPECT_EQ(out[0].chunk()["messageId"], "M");
  EXPECT_EQ(out[2].chunk()["providerMetadata"]["anthropic"]["signature"], "sig");
  EXPECT_EQ(out[3].chunk()["delta"], "Need data.");
  EXPECT_EQ(out[6].chunk()["delta"], "Let me check.");
  EXPECT_EQ(out[8].chunk()["toolCallId"], "c1");
  EXPECT_EQ(out[8].chunk()["input"], (Json{{"city", "Oslo"}}));
  EXPECT_EQ(out[10].Header("message-id"), "M");
  EXPECT_EQ(out[10].Header("from-seq"), std::to_string(out[0].seq));
  EXPECT_EQ(out[11].chunk()["toolCallId"], "c1");
  EXPECT_EQ(out[14].chunk()["delta"], "It is 4 C in Oslo.");
  EXPECT_TRUE(out[17].chunk()["messageMetadata"]["baton"].contains("timings"));
  // A reader of `.out` from seq 0 gets the whole message: step 1, the call's result, step 2.
  Json read = ReadOut(out);
  EXPECT_EQ(read["id"], "M");
  ASSERT_EQ(read["parts"].size(), 6u) << read.dump();
  EXPECT_EQ(read["parts"][0]["type"], "step-start");
  EXPECT_EQ(read["parts"][1]["text"], "Need data.");
  EXPECT_EQ(read["parts"][1]["providerMetadata"]["anthropic"]["signature"], "sig");
  EXPECT_EQ(read["parts"][2]["text"], "Let me check.");
  EXPECT_EQ(read["parts"][3]["toolCallId"], "c1");
  EXPECT_EQ(read["parts"][3]["state"], "output-available");
  EXPECT_EQ(read["parts"][4]["type"], "step-start");
  EXPECT_EQ(read["parts"][5]["text"], "It is 4 C in Oslo.");
  // The head start's user message is the turn's incoming message, as on any turn.
  ASSERT_NE(kit.LastHook("onValidateMessages"), nullptr);
  EXPECT_EQ(kit.LastHook("onValidateMessages")->args["messages"], Json::array({"u1"}));
  EXPECT_EQ(kit.LastHook("onTurnComplete")->args["newUIMessages"], Json::array({"u1", "M"}));
  Json m = kit.snapshot()["messages"][1]["message"];
  EXPECT_EQ(m["id"], "M");
  EXPECT_EQ(m["parts"][0]["providerMetadata"]["anthropic"]["signature"], "sig");
  EXPECT_EQ(m["parts"][2]["state"], "output-available");
  // The step-2 call saw the tool result and the replayed signature.
  std::vector<ModelCall> calls = kit.model().calls();
  ASSERT_EQ(calls.size(), 1u);
  std::string prompt = calls[0].messages.ToJson().dump();
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
  EXPECT_EQ(kit.out()[8].chunk()["data"]["outputTokens"], 5);
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
  EXPECT_EQ(kit.out()[0].chunk()["errorText"], "user code did not return in time");
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
  EXPECT_EQ(error->chunk()["errorText"], "tool slow did not finish in time");
  EXPECT_EQ(kit.OutTypes().back(), "trigger:turn-complete");
  ASSERT_EQ(kit.model().calls().size(), 2u);
}

// `depth` nested arrays around 1, built by moves (a copy of a deep one would recurse).
Json Nested(int depth) {
  Json value = 1;
  for (int i = 0; i < depth; ++i) {
    Json outer = Json::array();
    outer.push_back(std::move(value));
    value = std::move(outer);
  }
  return value;
}

// What user code hands back nested deeper than data may be is never stored: a chunk it writes
// becomes an error chunk, messages it returns or sets are the hook's error (a turn error), and
// the chat answers the next message.
TEST(ChatRun, JsonNestedTooDeeplyFromHooksIsAnErrorAndNeverStored) {
  Agent agent = TextAgent();
  agent.hooks.on_turn_start = [](const TurnStartEvent& e, ChatControl& c) {
    if (e.turn == 0) {
      Json chunk = Json::object();
      chunk["type"] = "data-deep";
      chunk["data"] = Nested(100000);
      c.Write(std::move(chunk));
    }
    return absl::OkStatus();
  };
  agent.hooks.on_validate_messages =
      [](const ValidateMessagesEvent& e) -> absl::StatusOr<std::vector<Json>> {
    std::vector<Json> messages = e.messages;
    if (MessageText(messages[0]) == "return deep") {
      messages[0]["metadata"] = Nested(100000);
    }
    return messages;
  };
  agent.hooks.on_before_turn_complete = [](const TurnCompleteEvent& e, ChatControl& c) {
    if (e.ui_messages.size() >= 2 &&
        MessageText(e.ui_messages[e.ui_messages.size() - 2]) == "set deep") {
      std::vector<Json> messages = e.ui_messages;
      messages.back()["metadata"] = Nested(kMaxDataDepth);
      c.SetMessages(std::move(messages));
    }
    return absl::OkStatus();
  };
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::Text("one"));
  kit.model().Push(ScriptedModel::Text("three"));
  kit.model().Push(ScriptedModel::Text("four"));
  kit.Boot("submit-message", {{"message", UserMessage("u1", "hi")}});
  std::vector<OutRecord> out = kit.out();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0].Type(), "error");
  EXPECT_EQ(out[0].chunk()["errorText"], absl::StrCat("a \"data-deep\" chunk nests deeper than ",
                                                      kMaxDataDepth, " levels and was dropped"));
  EXPECT_EQ(MessageText(kit.snapshot()["messages"][1]["message"]), "one");

  // The error, then the turn's end: each turn below ends with a turn-complete (and a trim).
  auto error_then_turn_complete = [&](size_t from, const std::string& text) {
    std::vector<OutRecord> records = kit.out();
    for (size_t i = from; i < records.size(); ++i) {
      if (records[i].Type() != "error" || StringField(records[i].chunk(), "errorText") != text) {
        continue;
      }
      for (size_t j = i + 1; j < records.size(); ++j) {
        if (records[j].Type() == "trigger:turn-complete") return true;
      }
    }
    return false;
  };
  size_t before = kit.out().size();
  kit.SendText("u2", "return deep");
  EXPECT_TRUE(error_then_turn_complete(
      before,
      absl::StrCat("the hook returned JSON nested deeper than ", kMaxDataDepth, " levels")));

  // The model's answer streams; the transcript the hook asked for is refused, and said so.
  before = kit.out().size();
  kit.SendText("u3", "set deep");
  EXPECT_TRUE(error_then_turn_complete(
      before, absl::StrCat("SetMessages was given a message nested deeper than ", kMaxDataDepth,
                           " levels")));
  EXPECT_LE(JsonDepth(kit.snapshot()), kMaxJsonDepth);

  kit.SendText("u4", "and now?");
  EXPECT_EQ(MessageText(kit.snapshot()["messages"].back()["message"]), "four");
  EXPECT_EQ(kit.state(), LocalSessions::State::kLive);
}

// The deepest JSON a client or user code may hand baton, all at once: a message part, message
// metadata and a tool's output each at the data limit. Everything baton builds around them
// stays inside the hard limit: every `.out` record passes the orchestrator's check, the
// snapshot decodes, and both providers' requests parse.
TEST(ChatRun, WhatBatonBuildsAroundTheDeepestDataStaysParseable) {
  Agent agent = TextAgent();
  agent.tools.push_back(Tool{"deep", "Deep output", Json{{"type", "object"}},
                             [](const Json&, const ToolContext&) -> absl::StatusOr<Json> {
                               return Nested(kMaxDataDepth);
                             }});
  TestKit kit(agent);
  kit.model().Push(ScriptedModel::ToolCall("c1", "deep", "{}"));
  kit.model().Push(ScriptedModel::Text("done"));
  kit.Boot("preload");
  // The record nests exactly kMaxDataDepth: record, payload, message, parts, part, data.
  Json message = UserMessage("u1", "hi");
  message["metadata"] = Nested(kMaxDataDepth - 3);
  Json part = Json::object();
  part["type"] = "data-x";
  part["data"] = Nested(kMaxDataDepth - 5);
  message["parts"].push_back(std::move(part));
  kit.SendMessage(message);
  ASSERT_EQ(kit.OutTypes().back(), "trigger:turn-complete");
  EXPECT_EQ(MessageText(kit.snapshot()["messages"].back()["message"]), "done");
  for (const OutRecord& r : kit.out()) {
    v1::OutRecord proto = OutRecordToProto(r);
    proto.set_seq(std::max<int64_t>(r.seq, 1));
    EXPECT_TRUE(CheckOutRecord(proto).ok()) << CheckOutRecord(proto);
  }
  Json snapshot = kit.snapshot();
  EXPECT_GT(JsonDepth(snapshot), kMaxDataDepth);  // the data is in it, wrapped
  EXPECT_LE(JsonDepth(snapshot), kMaxJsonDepth);
  EXPECT_TRUE(DecodeSnapshot(DumpJson(snapshot)).ok());
  for (const ModelCall& call : kit.model().calls()) {
    for (const Json& request : {BuildAnthropicRequest(call, {}), BuildOpenAiRequest(call, {})}) {
      absl::StatusOr<Json> parsed = ParseJson(DumpJson(request));
      EXPECT_TRUE(parsed.ok()) << parsed.status();
    }
  }
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

// A retry booted by hand on a fake host: the snapshot of a dead run's chat (u0 answered by R0,
// its turn-complete at `.out` seq 10, `.in` answered through 1), the `.in` records after it,
// and the `.out` tail the dead run left after seq 10.
class ChatRunRecovery : public ::testing::Test {
 protected:
  ChatRunRecovery() : model_(std::make_shared<ScriptedModel>(clock_)) {
    agent_.id = "t";
    agent_.model = model_;
    boot_.run_id = "run_2";
    boot_.chat_id = "c";
    boot_.continuation = true;
    boot_.attempt = 2;
    Json r0 = {{"id", "R0"},
               {"role", "assistant"},
               {"parts", Json::array({{{"type", "text"}, {"text", "zero"}}})}};
    boot_.snapshot = {
        {"messages",
         Json::array({{{"id", "u0"}, {"final", true}, {"message", UserMessage("u0", "a")}},
                      {{"id", "R0"}, {"final", true}, {"message", r0}}})},
        {"lastOutEventId", 10},
        {"lastInEventId", 1}};
  }

  ~ChatRunRecovery() override {
    if (run_ != nullptr) {
      run_->Cancel();
      RunUntilQuiet(io_, pool_);
    }
  }

  // A user message on `.in` at `seq`.
  void Pending(int64_t seq, const std::string& id) {
    Json body = {{"kind", "message"},
                 {"payload", {{"trigger", "submit-message"}, {"message", UserMessage(id, id)}}}};
    boot_.pending.push_back(*InRecordFromJson(seq, std::move(body)));
  }
  // Chunks on the tail, numbered on from the last one (or from 11).
  void Tail(std::vector<Json> chunks) {
    for (Json& chunk : chunks) {
      OutRecord r = OutRecord::Chunk(std::move(chunk));
      r.seq = NextTailSeq();
      boot_.out_tail.push_back(std::move(r));
    }
  }
  void TailControl(std::string_view subtype,
                   std::vector<std::pair<std::string, std::string>> headers) {
    OutRecord r = OutRecord::Control(subtype, std::move(headers));
    r.seq = NextTailSeq();
    boot_.out_tail.push_back(std::move(r));
  }
  // An answer `id` cut off mid-text: start, start-step, text-start, one delta.
  void OpenAnswer(const std::string& id, const std::string& text) {
    Tail({{{"type", "start"}, {"messageId", id}},
          {{"type", "start-step"}},
          {{"type", "text-start"}, {"id", "s0-0"}},
          {{"type", "text-delta"}, {"id", "s0-0"}, {"delta", text}}});
  }

  void Start() {
    RunHost host;
    host.executor = io_.get_executor();
    host.clock = &clock_;
    host.pool = &pool_;
    host.write = [this](OutRecord r) {
      r.seq = 100 + static_cast<int64_t>(out_.size());
      out_.push_back(r);
      return r.seq;
    };
    host.save_snapshot = [this](const SnapshotUpdate& s) {
      snapshot_ = s.Whole();
      unchanged_.push_back(s.unchanged);
    };
    host.finished = [this](const RunOutcome& o) { outcome_ = o; };
    host.observe = [this](std::string_view hook, const Json& args) {
      hooks_.push_back(Json{{"hook", hook}, {"args", args}});
    };
    host.new_message_id = [] { return std::string("msg_new"); };
    run_ = std::make_shared<ChatRun>(agent_, host, std::move(boot_));
    run_->Start();
    RunUntilQuiet(io_, pool_);
  }

  std::vector<std::string> OutTypes() const {
    std::vector<std::string> types;
    for (const OutRecord& r : out_) types.push_back(r.Type());
    return types;
  }
  std::vector<std::string> SnapshotIds() const {
    std::vector<std::string> ids;
    for (const Json& m : snapshot_["messages"]) ids.push_back(m["id"]);
    return ids;
  }
  int CountType(const std::string& type) const {
    int n = 0;
    for (const OutRecord& r : out_) n += r.Type() == type ? 1 : 0;
    return n;
  }
  int HookCount(const std::string& name) const {
    int n = 0;
    for (const Json& h : hooks_) n += h["hook"] == name ? 1 : 0;
    return n;
  }
  const Json* LastHook(const std::string& name) const {
    for (auto it = hooks_.rbegin(); it != hooks_.rend(); ++it) {
      if ((*it)["hook"] == name) return &(*it)["args"];
    }
    return nullptr;
  }

  FakeClock clock_;
  asio::io_context io_;
  HookPool pool_{1};
  std::shared_ptr<ScriptedModel> model_;
  Agent agent_;
  BootRequest boot_;
  std::vector<OutRecord> out_;
  Json snapshot_;
  std::vector<size_t> unchanged_;  // each save's entries kept from the one before
  std::optional<RunOutcome> outcome_;
  std::vector<Json> hooks_;
  std::shared_ptr<ChatRun> run_;

 private:
  int64_t NextTailSeq() const {
    return boot_.out_tail.empty() ? 11 : boot_.out_tail.back().seq + 1;
  }
};

// A continuation restored from a stored snapshot counts its entries as saved: its first save
// keeps them and writes only what its turn added.
TEST_F(ChatRunRecovery, TheFirstSaveAfterARestoreKeepsTheStoredEntries) {
  model_->Push(ScriptedModel::Text("for u1"));
  Pending(2, "u1");
  Start();
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "msg_new"));
  ASSERT_FALSE(unchanged_.empty());
  EXPECT_EQ(unchanged_.front(), 2u);
}

// An entry that is not what a save writes (here its fields in another order, a final that
// does not say what the run believes, an id that is not its message's) makes the first save
// whole: what is stored is not known to be what the run holds.
TEST_F(ChatRunRecovery, ARestoredEntryUnlikeASavedOneMakesTheFirstSaveWhole) {
  const BootRequest original = boot_;
  for (int variant = 0; variant < 3; ++variant) {
    SCOPED_TRACE(variant);
    boot_ = original;
    Json& entry = boot_.snapshot["messages"][1];
    if (variant == 0) {
      entry = {{"final", true}, {"id", "R0"}, {"message", entry["message"]}};
    } else if (variant == 1) {
      entry["final"] = "yes";
    } else {
      entry["id"] = "R9";
    }
    Pending(2, "u1");
    model_->Push(ScriptedModel::Text("for u1"));
    unchanged_.clear();
    Start();
    ASSERT_FALSE(unchanged_.empty());
    EXPECT_EQ(unchanged_.front(), 0u);
    run_->Cancel();
    RunUntilQuiet(io_, pool_);
    run_.reset();
  }
}

// The dead run's answer to u1 finished, but the run died before saving the snapshot that would
// have recorded it.
TEST_F(ChatRunRecovery, AFinishedAnswerOnTheTailIsNotAnsweredAgain) {
  model_->Push(ScriptedModel::Text("for u2"));
  Pending(2, "u1");
  Pending(3, "u2");
  Tail({{{"type", "start"}, {"messageId", "R1"}},
        {{"type", "start-step"}},
        {{"type", "text-start"}, {"id", "s0-0"}},
        {{"type", "text-delta"}, {"id", "s0-0"}, {"delta", "one"}},
        {{"type", "text-end"}, {"id", "s0-0"}},
        {{"type", "finish-step"}},
        {{"type", "finish"}, {"finishReason", "stop"}}});
  Start();
  // Only u2 is answered; the transcript reads u0, R0, u1, R1, u2, and u2's answer.
  ASSERT_EQ(model_->calls().size(), 1u);
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "R1", "u2", "msg_new"));
  EXPECT_EQ(HookCount("onRecoveryBoot"), 0);
  EXPECT_EQ(HookCount("onTurnComplete"), 1);
  EXPECT_EQ(CountType("trigger:retract"), 0);
  // The dead run did not write u1's turn-complete: the retry does, before anything else.
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Type(), "trigger:turn-complete");
  EXPECT_EQ(out_[0].Header("session-in-event-id"), "2");
  EXPECT_EQ(CountType("trigger:turn-complete"), 2);
}

// The dead run wrote u1's turn-complete too: it is not written again.
TEST_F(ChatRunRecovery, AFinishedAnswerWithItsTurnCompleteGetsNoSecond) {
  Pending(2, "u1");
  Tail({{{"type", "start"}, {"messageId", "R1"}},
        {{"type", "start-step"}},
        {{"type", "text-start"}, {"id", "s0-0"}},
        {{"type", "text-delta"}, {"id", "s0-0"}, {"delta", "one"}},
        {{"type", "text-end"}, {"id", "s0-0"}},
        {{"type", "finish-step"}},
        {{"type", "finish"}, {"finishReason", "stop"}}});
  TailControl(kTurnComplete, {{"session-in-event-id", "2"}});
  Start();
  EXPECT_TRUE(model_->calls().empty());
  EXPECT_TRUE(out_.empty());
}

// The chat's first message came with the boot payload (never on `.in`), and the run answering it
// was cancelled (its answer ends in `abort`). The next message boots a continuation that is
// handed the boot message again: the aborted answer is that message's, which is not answered
// again; the new message is.
TEST_F(ChatRunRecovery, AnAnswerOnTheTailAnswersTheBootMessageFirst) {
  boot_.snapshot = Json();
  boot_.attempt = 1;
  boot_.trigger = "submit-message";
  boot_.payload = {{"message", UserMessage("u1", "first")}};
  Pending(1, "u2");
  OpenAnswer("R1", "cut");
  Tail({{{"type", "abort"}}});
  model_->Push(ScriptedModel::Text("for u2"));
  Start();
  ASSERT_EQ(model_->calls().size(), 1u);
  EXPECT_THAT(SnapshotIds(), ElementsAre("u1", "R1", "u2", "msg_new"));
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Type(), "trigger:turn-complete");  // u1's turn ends
  EXPECT_EQ(CountType("trigger:turn-complete"), 2);
  ASSERT_EQ(OutTypes().back(), "trigger:trim");
  EXPECT_EQ(out_[out_.size() - 2].Header("session-in-event-id"), "1");  // u2's
}

// The boot message counts as an in-flight user: with u2 queued behind it, the default keeps the
// partial as the boot message's answer and answers u2.
TEST_F(ChatRunRecovery, TheBootMessageIsAnInFlightUser) {
  boot_.trigger = "submit-message";
  boot_.payload = {{"message", UserMessage("u1", "first")}};
  Pending(2, "u2");
  OpenAnswer("R1", "Half an ");
  model_->Push(ScriptedModel::Text("for u2"));
  Start();
  ASSERT_NE(LastHook("onRecoveryBoot"), nullptr);
  EXPECT_EQ((*LastHook("onRecoveryBoot"))["inFlightUsers"], Json::array({"u1", "u2"}));
  ASSERT_EQ(model_->calls().size(), 1u);
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "R1", "u2", "msg_new"));
  ASSERT_GE(out_.size(), 2u);
  EXPECT_EQ(out_[0].Type(), "abort");
  EXPECT_EQ(out_[1].Type(), "trigger:turn-complete");
  EXPECT_EQ(CountType("trigger:turn-complete"), 2);
}

// One user in flight: the partial is dropped, and a `retract` naming it is the retry's first
// record, before the answer that replaces it.
TEST_F(ChatRunRecovery, ADroppedPartialIsRetractedBeforeAnyNewOutput) {
  model_->Push(ScriptedModel::Text("whole"));
  Pending(2, "u1");
  OpenAnswer("R1", "Half an ");
  Start();
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Type(), "trigger:retract");
  EXPECT_EQ(out_[0].Header("message-id"), "R1");
  EXPECT_EQ(out_[0].Header("from-seq"), "11");
  EXPECT_EQ(out_[0].Header("reason"), "run-lost");
  EXPECT_THAT(OutTypes(), ElementsAre("trigger:retract", "start", "start-step", "text-start",
                                      "text-delta", "text-end", "finish-step", "finish",
                                      "trigger:turn-complete", "trigger:trim"));
  EXPECT_EQ(out_[1].chunk()["messageId"], "msg_new");
  EXPECT_EQ(out_[8].Header("session-in-event-id"), "2");
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "msg_new"));
  ASSERT_NE(LastHook("onRecoveryBoot"), nullptr);
  EXPECT_EQ((*LastHook("onRecoveryBoot"))["partialAssistant"], "R1");
}

// An answer an earlier recovery retracted is gone: neither settled into the transcript nor
// offered as the partial. Only the retry's own unfinished answer is.
TEST_F(ChatRunRecovery, ARetractedAnswerOnTheTailIsNeitherSettledNorThePartial) {
  model_->Push(ScriptedModel::Text("third time"));
  Pending(2, "u1");
  OpenAnswer("R1", "first try");  // seqs 11-14
  TailControl(kRetract, {{"message-id", "R1"}, {"from-seq", "11"}, {"reason", "run-lost"}});
  OpenAnswer("R1b", "second try");  // seqs 16-19
  Start();
  ASSERT_NE(LastHook("onRecoveryBoot"), nullptr);
  EXPECT_EQ((*LastHook("onRecoveryBoot"))["partialAssistant"], "R1b");
  EXPECT_EQ((*LastHook("onRecoveryBoot"))["settledMessages"], Json::array({"u0", "R0"}));
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Type(), "trigger:retract");
  EXPECT_EQ(out_[0].Header("message-id"), "R1b");
  EXPECT_EQ(out_[0].Header("from-seq"), "16");
  EXPECT_EQ(CountType("trigger:retract"), 1);  // R1 was retracted before, not again
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "msg_new"));
}

// A retracted answer that reads as closed after all (a stray `abort`) is not settled either.
TEST_F(ChatRunRecovery, ARetractedAnswerIsNotSettledEvenWhenItReadsAsClosed) {
  model_->Push(ScriptedModel::Text("again"));
  Pending(2, "u1");
  OpenAnswer("R1", "cut");  // seqs 11-14
  TailControl(kRetract, {{"message-id", "R1"}, {"from-seq", "11"}, {"reason", "run-lost"}});
  Tail({{{"type", "abort"}}});  // a stray close of the withdrawn answer
  Start();
  EXPECT_EQ(HookCount("onRecoveryBoot"), 0);
  EXPECT_EQ(CountType("trigger:retract"), 0);
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "msg_new"));
}

// The hook keeps the partial as u1's answer: it is closed with `abort` and u1's turn completes
// (turn-complete, then the snapshot); nothing is retracted and no model call answers u1.
TEST_F(ChatRunRecovery, AKeptPartialIsClosedWithAbortAndItsTurnCompletes) {
  agent_.hooks.on_recovery_boot =
      [](const RecoveryBootEvent& e) -> absl::StatusOr<std::optional<std::vector<Json>>> {
    std::vector<Json> chain = e.settled_messages;
    chain.push_back(e.in_flight_users.front());
    chain.push_back(e.partial_assistant);
    return chain;
  };
  Pending(2, "u1");
  OpenAnswer("R1", "Half an ");
  Start();
  EXPECT_TRUE(model_->calls().empty());
  ASSERT_THAT(OutTypes(), ElementsAre("abort", "trigger:turn-complete", "trigger:trim"));
  EXPECT_EQ(out_[1].Header("session-in-event-id"), "2");
  EXPECT_EQ(out_[2].Header("through"), "10");
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "R1"));
  EXPECT_EQ(snapshot_["lastOutEventId"], out_[1].seq);
  EXPECT_EQ(snapshot_["lastInEventId"], 2);
  EXPECT_FALSE(outcome_.has_value());  // the run waits for the next message
}

// The hook's chain leaves the partial out: it is retracted, as by default.
TEST_F(ChatRunRecovery, APartialTheHookLeavesOutIsRetracted) {
  agent_.hooks.on_recovery_boot =
      [](const RecoveryBootEvent& e) -> absl::StatusOr<std::optional<std::vector<Json>>> {
    return e.settled_messages;
  };
  model_->Push(ScriptedModel::Text("whole"));
  Pending(2, "u1");
  OpenAnswer("R1", "Half an ");
  Start();
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Type(), "trigger:retract");
  EXPECT_EQ(out_[0].Header("message-id"), "R1");
  EXPECT_EQ(CountType("abort"), 0);
  EXPECT_THAT(SnapshotIds(), ElementsAre("u0", "R0", "u1", "msg_new"));
}

// An answer cut off before any content (readers saw its `start`) is retracted without asking
// the hook: there is nothing to keep.
TEST_F(ChatRunRecovery, AnEmptyPartialIsRetractedWithoutTheHook) {
  model_->Push(ScriptedModel::Text("whole"));
  Pending(2, "u1");
  Tail({{{"type", "start"}, {"messageId", "R1"}}, {{"type", "start-step"}}});
  Start();
  EXPECT_EQ(HookCount("onRecoveryBoot"), 0);
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Type(), "trigger:retract");
  EXPECT_EQ(out_[0].Header("from-seq"), "11");
}

// An agent with hydrateMessages keeps its own transcript, so nothing is folded; its readers
// still see the partial retracted before the user is answered again.
TEST_F(ChatRunRecovery, AHydratingAgentRetractsThePartialToo) {
  agent_.hooks.hydrate_messages = [](const HydrateMessagesEvent& e) {
    return absl::StatusOr<std::vector<Json>>(e.previous_messages);
  };
  model_->Push(ScriptedModel::Text("whole"));
  Pending(2, "u1");
  OpenAnswer("R1", "Half an ");
  Start();
  EXPECT_EQ(HookCount("onRecoveryBoot"), 0);
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Type(), "trigger:retract");
  EXPECT_EQ(out_[0].Header("message-id"), "R1");
  EXPECT_EQ(CountType("trigger:turn-complete"), 1);
}

// A continuation after a run that ended (not lost) says so in the reason.
TEST_F(ChatRunRecovery, AContinuationRetractsWithReasonRecovered) {
  boot_.attempt = 1;
  model_->Push(ScriptedModel::Text("whole"));
  Pending(2, "u1");
  OpenAnswer("R1", "Half an ");
  Start();
  ASSERT_FALSE(out_.empty());
  EXPECT_EQ(out_[0].Header("reason"), "recovered");
}

}  // namespace
}  // namespace baton
