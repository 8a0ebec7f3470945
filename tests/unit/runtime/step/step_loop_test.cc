// The step loop against the test vectors of reference/llm-wire.md §5 (at the model-event level;
// the provider wire formats are the providers' tests).
#include "runtime/step/step_loop.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "absl/strings/str_cat.h"
#include "asio/co_spawn.hpp"
#include "asio/detached.hpp"
#include "asio/io_context.hpp"
#include "asio/this_coro.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/client/head_start.h"
#include "runtime/exec/waiter.h"
#include "runtime/model/scripted_model.h"

namespace baton {
namespace {

using ::testing::ElementsAre;

Tool Weather() {
  return Tool{"get_weather", "Current weather",
              Json{{"type", "object"},
                   {"properties", {{"city", {{"type", "string"}}}}},
                   {"required", {"city"}}},
              [](const Json& input, const ToolContext&) -> absl::StatusOr<Json> {
                if (input.value("city", "") != "Oslo") return absl::NotFoundError("City not found");
                return Json{{"tempC", 4}};
              }};
}

Tool Time() {
  return Tool{
      "get_time", "Current time", Json{{"type", "object"}},
      [](const Json&, const ToolContext&) -> absl::StatusOr<Json> { return Json("14:05"); }};
}

ScriptedResponse Script(const char* json) {
  absl::StatusOr<ScriptedResponse> r = ParseScript(Json::parse(json));
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

class StepLoopTest : public ::testing::Test {
 protected:
  StepLoopTest() : model_(std::make_shared<ScriptedModel>(clock_)), pool_(2) {
    agent_.id = "a";
    agent_.model = model_;
  }

  // Runs one turn on `prompt` and returns its result; chunks() holds what it wrote.
  StepLoopResult Run(Json prompt = Json::array({{{"role", "user"}, {"content", "hi"}}}),
                     Json continued = Json()) {
    StepLoop::Env env{io_.get_executor(), &clock_, &pool_, "chat", [this](std::string text) {
                        chunks_.push_back(Json::parse(text));
                        texts_.push_back(std::move(text));
                      }};
    auto loop = std::make_shared<StepLoop>(agent_, std::move(env));
    StepLoopInput input{"msg_A", std::move(continued), std::move(prompt), stop_.get_token()};
    std::optional<StepLoopResult> result;
    asio::co_spawn(
        io_, [loop, input = std::move(input)]() mutable { return loop->Run(std::move(input)); },
        [&result](std::exception_ptr e, StepLoopResult r) {
          if (e) std::rethrow_exception(e);
          result = std::move(r);
        });
    while (!result.has_value()) {
      io_.restart();
      if (io_.poll() == 0) {
        if (stop_on_idle_) stop_.request_stop();
        io_.restart();
        io_.run_one();
      }
    }
    return *result;
  }

  std::vector<std::string> Types() const {
    std::vector<std::string> types;
    for (const Json& c : chunks_) types.push_back(c["type"]);
    return types;
  }

  FakeClock clock_;
  asio::io_context io_;
  std::shared_ptr<ScriptedModel> model_;
  HookPool pool_;
  Agent agent_;
  std::stop_source stop_;
  bool stop_on_idle_ = false;
  std::vector<Json> chunks_;
  std::vector<std::string> texts_;  // each chunk as written
};

TEST_F(StepLoopTest, PlainTextIsOneStep) {  // V1, V2
  model_->Push(Script(R"([{"text": ["Hi ", "there."]}])"));
  StepLoopResult r = Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "text-delta",
                                   "text-end", "finish-step", "finish"));
  EXPECT_EQ(chunks_[0]["messageId"], "msg_A");
  EXPECT_EQ(chunks_[2]["id"], "s0-0");
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.response, Json::parse(R"({"id":"msg_A","role":"assistant","parts":[
      {"type":"step-start"},{"type":"text","text":"Hi there.","state":"done"}]})"));
}

TEST_F(StepLoopTest, ToolCallThenSecondStep) {  // V3
  agent_.tools = {Weather()};
  model_->Push(Script(R"([{"text": "Checking."},
      {"tool_call": {"id": "toolu_01", "name": "get_weather", "input_text": "{\"city\": \"Oslo\"}"}}])"));
  model_->Push(Script(R"([{"text": "It is 4 °C in Oslo."}])"));
  StepLoopResult r = Run();
  EXPECT_THAT(Types(),
              ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                          "tool-input-start", "tool-input-delta", "tool-input-available",
                          "tool-output-available", "finish-step", "start-step", "text-start",
                          "text-delta", "text-end", "finish-step", "finish"));
  EXPECT_EQ(chunks_[7]["input"], Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(chunks_[8]["output"], Json::parse(R"({"tempC":4})"));
  EXPECT_EQ(chunks_[11]["id"], "s1-0");  // ids are step-scoped
  EXPECT_EQ(r.finish_reason, "stop");
  // Request 2 ends with the assistant's text and call, then the tool result.
  Json second = model_->calls()[1].messages;
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(second[1], Json::parse(R"({"role":"assistant","content":[
      {"type":"text","text":"Checking."},
      {"type":"tool-call","toolCallId":"toolu_01","toolName":"get_weather","input":{"city":"Oslo"}}]})"));
  EXPECT_EQ(second[2], Json::parse(R"({"role":"tool","content":[{"type":"tool-result",
      "toolCallId":"toolu_01","toolName":"get_weather","output":{"type":"json","value":{"tempC":4}}}]})"));
}

TEST_F(StepLoopTest, ParallelCallsKeepCallOrderInTheNextPrompt) {  // V4
  agent_.tools = {Weather(), Time()};
  model_->Push(Script(R"([
      {"tool_call": {"id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}}},
      {"tool_call": {"id": "call_b", "name": "get_time", "input": {"tz": "CET"}}}])"));
  model_->Push(Script(R"([{"text": "done"}])"));
  Run();
  Json tool_message = model_->calls()[1].messages.back();
  ASSERT_EQ(tool_message["content"].size(), 2u);
  EXPECT_EQ(tool_message["content"][0]["toolCallId"], "call_a");
  EXPECT_EQ(tool_message["content"][1]["toolCallId"], "call_b");
  EXPECT_EQ(tool_message["content"][1]["output"],
            Json::parse(R"({"type":"text","value":"14:05"})"));
}

TEST_F(StepLoopTest, ReasoningSignatureSurvivesIntoTheNextCall) {  // V5
  agent_.tools = {Weather()};
  model_->Push(Script(R"([{"reasoning": "Need live data.", "signature": "c2ln"},
      {"tool_call": {"id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}}}])"));
  model_->Push(Script(R"([{"text": "4 °C"}])"));
  StepLoopResult r = Run();
  EXPECT_EQ(chunks_[4]["providerMetadata"], Json::parse(R"({"anthropic":{"signature":"c2ln"}})"));
  EXPECT_EQ(chunks_[4]["delta"], "");
  EXPECT_EQ(r.response["parts"][1]["providerMetadata"]["anthropic"]["signature"], "c2ln");
  Json assistant = model_->calls()[1].messages[1];
  EXPECT_EQ(assistant["content"][0], Json::parse(R"({"type":"reasoning","text":"Need live data.",
                            "providerOptions":{"anthropic":{"signature":"c2ln"}}})"));
}

TEST_F(StepLoopTest, ErrorAfterOutputClosesOpenPartsAndEnds) {  // V6
  // A text block left open when the error arrives.
  ScriptedResponse r;
  ModelEvent start;
  start.type = ModelEvent::Type::kTextStart;
  start.id = "0";
  ModelEvent delta = start;
  delta.type = ModelEvent::Type::kTextDelta;
  delta.delta = "Partial";
  ModelEvent error;
  error.type = ModelEvent::Type::kError;
  error.error = "Overloaded";
  r.push_back({absl::ZeroDuration(), start});
  r.push_back({absl::ZeroDuration(), delta});
  r.push_back({absl::ZeroDuration(), error});
  model_->Push(r);
  StepLoopResult result = Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                                   "error", "finish-step", "finish"));
  EXPECT_EQ(chunks_[5]["errorText"], "An error occurred.");
  EXPECT_EQ(chunks_[7]["finishReason"], "error");
  EXPECT_EQ(result.finish_reason, "error");
  EXPECT_EQ(result.error, "Overloaded");  // unmasked, for the run's log
}

// The AI SDK ends such a stream with `error` alone (V7); baton closes every answer it started,
// so no reader or later recovery takes it for one still streaming.
TEST_F(StepLoopTest, ErrorBeforeAnyOutputStillEndsTheAnswerWithFinish) {  // V7
  model_->Push(Script(R"([{"error": "Overloaded"}])"));
  agent_.options.mask_errors = false;
  Run();
  EXPECT_THAT(Types(), ElementsAre("start", "error", "finish"));
  EXPECT_EQ(chunks_[1]["errorText"], "Overloaded");
  EXPECT_EQ(chunks_[2]["finishReason"], "error");
}

TEST_F(StepLoopTest, EmptyArgumentsAreAnEmptyObject) {  // V10
  agent_.tools = {Time()};
  model_->Push(Script(R"([{"tool_call": {"id": "toolu_07", "name": "get_time"}}])"));
  model_->Push(Script(R"([{"text": "ok"}])"));
  Run();
  std::vector<std::string> types = Types();
  EXPECT_THAT(std::vector<std::string>(types.begin() + 2, types.begin() + 5),
              ElementsAre("tool-input-start", "tool-input-available", "tool-output-available"));
  EXPECT_EQ(chunks_[3]["input"], Json::object());
}

TEST_F(StepLoopTest, StepLimitOfOneStillExecutesTools) {  // V11
  agent_.tools = {Weather()};
  agent_.options.max_steps = 1;
  model_->Push(
      Script(R"([{"tool_call": {"id": "t1", "name": "get_weather", "input": {"city": "Oslo"}}}])"));
  StepLoopResult r = Run();
  EXPECT_EQ(Types().back(), "finish");
  EXPECT_EQ(chunks_.back()["finishReason"], "tool-calls");
  EXPECT_EQ(model_->calls().size(), 1u);
  EXPECT_EQ(r.response["parts"][1]["state"], "output-available");
}

TEST_F(StepLoopTest, FailingToolIsMaskedForTheUiButNotForTheModel) {  // V12
  agent_.tools = {Weather()};
  model_->Push(Script(
      R"([{"tool_call": {"id": "t1", "name": "get_weather", "input": {"city": "Atlantis"}}}])"));
  model_->Push(Script(R"([{"text": "Sorry."}])"));
  Run();
  EXPECT_EQ(chunks_[5]["type"], "tool-output-error");
  EXPECT_EQ(chunks_[5]["errorText"], "An error occurred.");
  Json result = model_->calls()[1].messages.back()["content"][0];
  EXPECT_EQ(result["output"], Json::parse(R"({"type":"error-text","value":"City not found"})"));
}

TEST_F(StepLoopTest, UnknownToolAndBadArgumentsBecomeInputErrorsAndTheLoopGoesOn) {
  agent_.tools = {Weather()};
  model_->Push(Script(R"([
      {"tool_call": {"id": "t1", "name": "get_wether", "input": {"city": "Oslo"}}},
      {"tool_call": {"id": "t2", "name": "get_weather", "input_text": "{\"city\": "}},
      {"tool_call": {"id": "t3", "name": "get_weather", "input": {"town": "Oslo"}}}])"));
  model_->Push(Script(R"([{"text": "Let me retry."}])"));
  StepLoopResult r = Run();
  int input_errors = 0, output_errors = 0;
  for (const Json& c : chunks_) {
    input_errors += c["type"] == "tool-input-error";
    output_errors += c["type"] == "tool-output-error";
  }
  EXPECT_EQ(input_errors, 3);
  EXPECT_EQ(output_errors, 3);
  EXPECT_EQ(model_->calls().size(), 2u);
  std::string results = model_->calls()[1].messages.back().dump();
  EXPECT_NE(results.find("unavailable tool 'get_wether'"), std::string::npos) << results;
  EXPECT_NE(results.find("missing required property"), std::string::npos) << results;
  EXPECT_EQ(r.finish_reason, "stop");
}

TEST_F(StepLoopTest, AToolOutputTooLargeForAnOutRecordIsAToolError) {
  Tool big = Time();
  big.execute = [](const Json&, const ToolContext&) -> absl::StatusOr<Json> {
    return Json(std::string(kMaxOutRecordBytes, 'x'));
  };
  agent_.tools = {big};
  model_->Push(Script(R"([{"tool_call": {"id": "t1", "name": "get_time"}}])"));
  model_->Push(Script(R"([{"text": "Too big."}])"));
  StepLoopResult r = Run();
  int output_errors = 0;
  for (const Json& c : chunks_) {
    EXPECT_NE(c["type"], "tool-output-available");
    output_errors += c["type"] == "tool-output-error";
  }
  EXPECT_EQ(output_errors, 1);
  EXPECT_EQ(r.finish_reason, "stop");
  ASSERT_EQ(model_->calls().size(), 2u);
  std::string results = model_->calls()[1].messages.back().dump();
  EXPECT_NE(results.find("tool get_time returned 1048578 bytes of output"), std::string::npos)
      << results.substr(0, 300);
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

// A tool's output is user code's JSON: at the data limit it is the call's result; one level
// deeper, or a hundred thousand, it is a tool error the model sees, and nothing deep is copied.
TEST_F(StepLoopTest, AToolOutputNestedTooDeeplyIsAToolError) {
  for (int depth : {kMaxDataDepth, kMaxDataDepth + 1, 100000}) {
    SCOPED_TRACE(depth);
    chunks_.clear();
    Tool deep = Time();
    deep.execute = [depth](const Json&, const ToolContext&) -> absl::StatusOr<Json> {
      return Nested(depth);
    };
    agent_.tools = {deep};
    model_->Push(Script(R"([{"tool_call": {"id": "t1", "name": "get_time"}}])"));
    model_->Push(Script(R"([{"text": "Done."}])"));
    size_t calls_before = model_->calls().size();
    StepLoopResult r = Run();
    EXPECT_EQ(r.finish_reason, "stop");
    ASSERT_EQ(model_->calls().size(), calls_before + 2);
    const Json result = model_->calls().back().messages.back();
    bool available = false, failed = false;
    for (const Json& c : chunks_) {
      available = available || c["type"] == "tool-output-available";
      failed = failed || c["type"] == "tool-output-error";
    }
    if (depth <= kMaxDataDepth) {
      EXPECT_TRUE(available);
      EXPECT_EQ(JsonDepth(result["content"][0]["output"]["value"]), depth);
    } else {
      EXPECT_FALSE(available);
      EXPECT_TRUE(failed);
      EXPECT_EQ(StringField(result["content"][0]["output"], "value"),
                absl::StrCat("tool get_time returned output nested deeper than ", kMaxDataDepth,
                             " levels, the most a tool's output may nest"));
    }
  }
}

// The model's tool-call arguments are outside data: nested deeper than their limit, they are an
// input error (as arguments that are not JSON), streamed and final, and the turn goes on.
TEST_F(StepLoopTest, ToolArgumentsNestedTooDeeplyAreAnInputError) {
  agent_.tools = {Weather()};
  std::string deep =
      absl::StrCat(R"({"city":)", std::string(100000, '['), "1", std::string(100000, ']'), "}");
  Json call = {{"tool_call", {{"id", "t1"}, {"name", "get_weather"}, {"input_text", deep}}}};
  model_->Push(Script(Json::array({call}).dump().c_str()));
  model_->Push(Script(R"([{"text": "Try again."}])"));
  StepLoopResult r = Run();
  EXPECT_EQ(r.finish_reason, "stop");
  const Json* input_error = nullptr;
  for (const Json& c : chunks_) {
    if (c["type"] == "tool-input-error") input_error = &c;
  }
  ASSERT_NE(input_error, nullptr);
  EXPECT_EQ(StringField(*input_error, "errorText"),
            absl::StrCat("Invalid input for tool get_weather: JSON nests deeper than ",
                         kMaxToolInputDepth, " levels at byte ", 8 + kMaxToolInputDepth));
  // While it streamed, the partial input was never built either: the part holds none.
  for (const Json& part : r.response["parts"]) {
    if (StringField(part, "type") == "tool-get_weather") {
      EXPECT_FALSE(part.contains("input"));
    }
  }
}

// Arguments at their limit are taken, and a head start's handover carrying them (the warm side
// leaves the call to the worker) is a record the orchestrator takes; one level more is not.
TEST_F(StepLoopTest, ToolArgumentsAtTheirLimitFitAHandoverRecord) {
  for (int depth : {kMaxToolInputDepth, kMaxToolInputDepth + 1}) {
    SCOPED_TRACE(depth);
    chunks_.clear();
    Tool client_side = Time();
    client_side.execute = nullptr;  // as on the warm side: the call is left for the worker
    agent_.tools = {client_side};
    agent_.options.max_steps = 1;
    std::string input = absl::StrCat(R"({"a":)", std::string(depth - 1, '['), "1",
                                     std::string(depth - 1, ']'), "}");
    Json call = {{"tool_call", {{"id", "t1"}, {"name", "get_time"}, {"input_text", input}}}};
    model_->Push(Script(Json::array({call}).dump().c_str()));
    StepLoopResult r = Run();
    bool taken = false;
    for (const Json& c : chunks_) taken = taken || c["type"] == "tool-input-available";
    EXPECT_EQ(taken, depth <= kMaxToolInputDepth);
    Json body = {{"kind", "handover"},
                 {"partialAssistantMessage", HandoverPartial(r.response)},
                 {"messageId", "M"},
                 {"isFinal", false}};
    absl::StatusOr<InRecord> record = DecodeInRecord(1, DumpJson(body));
    EXPECT_TRUE(record.ok()) << record.status();
    if (taken) {
      EXPECT_EQ(JsonDepth(body), depth + 5);
    }
  }
}

// A model written in C++ may hand over provider metadata of any depth: the call fails as on a
// bad event, and the turn ends with an error instead of a crash.
TEST_F(StepLoopTest, ProviderMetadataNestedTooDeeplyFailsTheModelCall) {
  ScriptedResponse response = ScriptedModel::Text("Hi.");
  ASSERT_EQ(response[0].event.type, ModelEvent::Type::kTextStart);
  response[0].event.provider_metadata = Nested(100000);
  model_->Push(std::move(response));
  StepLoopResult r = Run();
  EXPECT_EQ(r.finish_reason, "error");
  EXPECT_EQ(r.error, absl::StrCat("the model sent provider metadata nested deeper than ",
                                  kMaxDataDepth, " levels"));
}

TEST_F(StepLoopTest, ApprovalNeededEndsTheTurnWithARequest) {
  Tool del = Time();
  del.name = "del";
  del.needs_approval = true;
  agent_.tools = {del};
  model_->Push(Script(R"([{"tool_call": {"id": "t1", "name": "del", "input": {}}}])"));
  StepLoopResult r = Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "tool-input-start", "tool-input-delta",
                                   "tool-input-available", "tool-approval-request", "finish-step",
                                   "finish"));
  EXPECT_EQ(r.finish_reason, "tool-calls");
  EXPECT_EQ(r.response["parts"][1]["state"], "approval-requested");
}

TEST_F(StepLoopTest, StopMidStreamEndsWithAbortAndNoFinish) {
  model_->Push(Script(R"([{"text": ["a"]}, {"delay_ms": 100}, {"text": ["b"]}])"));
  stop_on_idle_ = true;  // the model parks on its delay; the stop arrives then
  StepLoopResult r = Run();
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(Types().back(), "abort");
  EXPECT_EQ(r.finish_reason, "");
}

TEST_F(StepLoopTest, HandedOverApprovedCallsRunBeforeTheFirstModelCall) {
  agent_.tools = {Weather()};
  model_->Push(Script(R"([{"text": "4 °C"}])"));
  Json prompt = Json::parse(R"([
    {"role":"user","content":[{"type":"text","text":"Oslo?"}]},
    {"role":"assistant","content":[
      {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-approval-request","approvalId":"a1","toolCallId":"c1"}]},
    {"role":"tool","content":[{"type":"tool-approval-response","approvalId":"a1","approved":true}]}])");
  Json continued = Json::parse(R"({"id":"M","role":"assistant","parts":[
    {"type":"tool-get_weather","toolCallId":"c1","state":"input-available","input":{"city":"Oslo"}}]})");
  StepLoopResult r = Run(prompt, continued);
  std::vector<std::string> types = Types();
  EXPECT_THAT(std::vector<std::string>(types.begin(), types.begin() + 3),
              ElementsAre("start", "tool-output-available", "start-step"));
  EXPECT_EQ(chunks_[3]["id"], "s1-0");  // the continued message already holds a step
  Json sent = model_->calls()[0].messages;
  EXPECT_EQ(sent.back()["content"][0]["type"], "tool-result");
  EXPECT_EQ(sent.dump().find("approval"), std::string::npos);
  EXPECT_EQ(r.response["parts"][0]["state"], "output-available");
}

TEST_F(StepLoopTest, DeniedApprovalIsReportedAndNotExecuted) {
  bool executed = false;
  Tool del = Time();
  del.name = "del";
  del.execute = [&executed](const Json&, const ToolContext&) -> absl::StatusOr<Json> {
    executed = true;
    return Json();
  };
  agent_.tools = {del};
  model_->Push(Script(R"([{"text": "Not deleted."}])"));
  Json prompt = Json::parse(R"([
    {"role":"user","content":[{"type":"text","text":"delete it"}]},
    {"role":"assistant","content":[
      {"type":"tool-call","toolCallId":"c1","toolName":"del","input":{}},
      {"type":"tool-approval-request","approvalId":"a1","toolCallId":"c1"}]},
    {"role":"tool","content":[{"type":"tool-approval-response","approvalId":"a1","approved":false}]}])");
  Json continued = Json::parse(R"({"id":"A","role":"assistant","parts":[{"type":"step-start"},
    {"type":"tool-del","toolCallId":"c1","state":"approval-responded","input":{},
     "approval":{"id":"a1","approved":false}}]})");
  StepLoopResult r = Run(prompt, continued);
  EXPECT_FALSE(executed);
  EXPECT_EQ(chunks_[1]["type"], "tool-output-denied");
  EXPECT_EQ(model_->calls()[0].messages.back()["content"][0]["output"]["type"], "execution-denied");
  EXPECT_EQ(r.response["parts"][1]["state"], "output-denied");
}

// The host's room for output, as a test sets it: a wait returns once `open()` holds.
struct TestRoom {
  Clock* clock = nullptr;
  std::function<bool()> open;
  int waits = 0;  // waits that found no room
  Waiter* waiter = nullptr;
  void Changed() {
    if (waiter != nullptr) waiter->Notify();
  }
};

asio::awaitable<void> WaitForTestRoom(TestRoom* room, std::stop_token stop) {
  while (!room->open() && !stop.stop_requested()) {
    ++room->waits;
    Waiter waiter(co_await asio::this_coro::executor, *room->clock);
    room->waiter = &waiter;
    co_await waiter.Wait(absl::InfiniteFuture(), stop);
    room->waiter = nullptr;
  }
}

// Backpressure: while the host has no room for output, the turn pulls no more model events and
// starts no tools; once there is room again it goes on, and its output is whole.
TEST_F(StepLoopTest, WithoutRoomForOutputTheTurnWaitsThenGoesOnWhole) {
  auto executed = std::make_shared<std::atomic<bool>>(false);
  Tool weather = Weather();
  weather.execute = [executed, inner = weather.execute](const Json& input,
                                                        const ToolContext& context) {
    *executed = true;
    return inner(input, context);
  };
  agent_.tools = {weather};
  model_->Push(Script(R"([{"text": ["a ", "b ", "c "]},
      {"tool_call": {"id": "toolu_01", "name": "get_weather", "input_text": "{\"city\": \"Oslo\"}"}}])"));
  model_->Push(Script(R"([{"text": "4 °C."}])"));
  auto count = [this](const std::string& type) {
    std::vector<std::string> types = Types();
    return std::count(types.begin(), types.end(), type);
  };
  TestRoom room{&clock_};
  int phase = 0;
  room.open = [&] {
    switch (phase) {
      case 0:
        return false;  // no room at all
      case 1:
        return count("text-delta") < 1;  // room for one delta
      case 2:
        return count("tool-input-available") == 0;  // room until the step's tool calls
      default:
        return true;
    }
  };
  StepLoop::Env env{io_.get_executor(), &clock_, &pool_, "chat",
                    [this](const std::string& text) { chunks_.push_back(Json::parse(text)); }};
  env.writable = [&room](std::stop_token stop) { return WaitForTestRoom(&room, stop); };
  auto loop = std::make_shared<StepLoop>(agent_, std::move(env));
  StepLoopInput input{"msg_A", Json(), Json::array({{{"role", "user"}, {"content", "hi"}}}),
                      stop_.get_token()};
  std::optional<StepLoopResult> result;
  asio::co_spawn(
      io_, [loop, input = std::move(input)]() mutable { return loop->Run(std::move(input)); },
      [&result](std::exception_ptr e, StepLoopResult r) {
        if (e) std::rethrow_exception(e);
        result = std::move(r);
      });
  auto settle = [this] {
    io_.restart();
    while (io_.poll() > 0) io_.restart();
  };

  settle();  // no model call while there is no room
  EXPECT_THAT(Types(), ElementsAre("start"));
  EXPECT_TRUE(model_->calls().empty());
  EXPECT_EQ(room.waits, 1);

  phase = 1;  // the model is called and hands on events until the output is full again
  room.Changed();
  settle();
  EXPECT_EQ(model_->calls().size(), 1u);
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta"));

  phase = 2;  // the step's events come, but its tool does not start
  room.Changed();
  settle();
  EXPECT_EQ(count("tool-input-available"), 1);
  EXPECT_EQ(count("tool-output-available"), 0);
  EXPECT_FALSE(*executed);

  phase = 3;
  room.Changed();
  while (!result.has_value()) {
    io_.restart();
    io_.run_one();  // the tool's result comes from the pool
  }
  EXPECT_TRUE(*executed);
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "text-delta",
                                   "text-delta", "text-end", "tool-input-start", "tool-input-delta",
                                   "tool-input-available", "tool-output-available", "finish-step",
                                   "start-step", "text-start", "text-delta", "text-end",
                                   "finish-step", "finish"));
  EXPECT_EQ(result->finish_reason, "stop");
  EXPECT_GE(room.waits, 3);
}

// A stop ends a turn that waits for room, as it ends any wait.
TEST_F(StepLoopTest, AStopEndsATurnWaitingForRoom) {
  model_->Push(Script(R"([{"text": ["a ", "b "]}])"));
  TestRoom room{&clock_};
  room.open = [this] { return chunks_.size() < 4; };  // start, start-step, text-start, a delta
  StepLoop::Env env{io_.get_executor(), &clock_, &pool_, "chat",
                    [this](const std::string& text) { chunks_.push_back(Json::parse(text)); }};
  env.writable = [&room](std::stop_token stop) { return WaitForTestRoom(&room, stop); };
  auto loop = std::make_shared<StepLoop>(agent_, std::move(env));
  StepLoopInput input{"msg_A", Json(), Json::array({{{"role", "user"}, {"content", "hi"}}}),
                      stop_.get_token()};
  std::optional<StepLoopResult> result;
  asio::co_spawn(
      io_, [loop, input = std::move(input)]() mutable { return loop->Run(std::move(input)); },
      [&result](std::exception_ptr e, StepLoopResult r) {
        if (e) std::rethrow_exception(e);
        result = std::move(r);
      });
  io_.restart();
  while (io_.poll() > 0) io_.restart();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(room.waits, 1);
  stop_.request_stop();
  while (!result.has_value()) {
    io_.restart();
    io_.run_one();
  }
  EXPECT_TRUE(result->stopped);
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "abort"));
}

// The exact bytes of each kind of chunk a turn writes, as readers get them: the AI SDK parses
// them, the gateway forwards them unchanged, and a change to how chunks are written (issue 15's
// chunk path) must keep them byte for byte. Key order, escapes (a quote, a newline, a control
// character, UTF-8 kept as is) and the provider metadata of a reasoning signature included.
TEST_F(StepLoopTest, EveryKindOfChunkIsWrittenByteForByte) {
  agent_.tools = {Weather()};
  model_->Push(Script(R"([{"reasoning": "Thinking.", "signature": "sig1"},
      {"text": "Checking \"Oslo\" é\n\u0001"},
      {"tool_call": {"id": "c1", "name": "get_weather", "input_text": "{\"city\": \"Oslo\"}"}}])"));
  model_->Push(Script(R"([{"text": "It is 4 °C."}])"));
  Run();
  EXPECT_THAT(
      texts_,
      ElementsAre(
          R"({"type":"start","messageId":"msg_A"})", R"({"type":"start-step"})",
          R"({"type":"reasoning-start","id":"s0-0"})",
          R"({"type":"reasoning-delta","id":"s0-0","delta":"Thinking."})",
          R"({"type":"reasoning-delta","id":"s0-0","delta":"","providerMetadata":{"anthropic":{"signature":"sig1"}}})",
          R"({"type":"reasoning-end","id":"s0-0"})", R"({"type":"text-start","id":"s0-1"})",
          R"({"type":"text-delta","id":"s0-1","delta":"Checking \"Oslo\" é\n\u0001"})",
          R"({"type":"text-end","id":"s0-1"})",
          R"({"type":"tool-input-start","toolCallId":"c1","toolName":"get_weather"})",
          R"({"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"{\"city\": \"Oslo\"}"})",
          R"({"type":"tool-input-available","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}})",
          R"({"type":"tool-output-available","toolCallId":"c1","output":{"tempC":4}})",
          R"({"type":"finish-step"})", R"({"type":"start-step"})",
          R"({"type":"text-start","id":"s1-0"})",
          R"({"type":"text-delta","id":"s1-0","delta":"It is 4 °C."})",
          R"({"type":"text-end","id":"s1-0"})", R"({"type":"finish-step"})",
          R"({"type":"finish","finishReason":"stop"})"));
}

}  // namespace
}  // namespace baton
