// The conformance suite through the whole stack: every scenario of tests/conformance/scenarios/
// runs on baton-orchestrator (SQLite), one conformance-worker process (stack_worker.cc, hosting
// the scenario's agent) and fake-llm (playing the scenario's model scripts as Anthropic streams,
// their delays held on fake-llm's script clock), driven through the Sessions API. The
// expectations are the same files the in-process driver (conformance_test.cc) checks, matched
// the same way. tests/conformance/README.md says how each step maps onto the stack.
//
// Waiting is on events: before each step, the stack is brought to where the in-process run of
// the same scenario (the test kit, as an oracle of *how much* happens, never of *what*) was
// after the step before: as many hooks, `.out` records, tool executions and model calls, and the
// same session state and run count. Only the session state and runs are polled (Get has no
// event stream). Then every expectation is matched on what the stack did. The runtime's timers
// are real here; where one may have fired before the driver looked, the attempt is run again
// with longer timeouts (see Beyond).
//
// GatewayConformance runs the same scenarios again with baton-gateway in front of the
// orchestrator: what a browser does goes through the gateway's HTTP routes, and every answer it
// reads is checked by the real `ai` packages and against `.out` (see Browser, CheckAnswers).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/model/scripted_model.h"
#include "runtime/protocol/wire.h"
#include "runtime/testkit/test_kit.h"
#include "runtime/transcript/ui_reducer.h"
#include "tests/conformance/scenario_agent.h"
#include "tests/integration/http_gateway.h"
#include "tests/integration/stack.h"

namespace baton::conformance {
namespace {

namespace v1 = ::baton::v1;
using ::baton::testing::ChunkTypes;
using ::baton::testing::GatewayProcess;
using ::baton::testing::GatewayStack;
using ::baton::testing::HttpClient;
using ::baton::testing::HttpResponse;
using ::baton::testing::ParseSse;
using ::baton::testing::Sse;
using ::baton::testing::SseValidatorAvailable;
using ::baton::testing::Stack;
using ::baton::testing::StackOptions;
using ::baton::testing::ValidateWithAiSdk;

constexpr char kChat[] = "test-chat";  // the test kit's chat id: payloads name it the same
constexpr std::chrono::seconds kStepLimit{15};

// ---- the model scripts as fake-llm responses --------------------------------------------------

std::optional<std::string> AnthropicStopReason(const std::string& finish) {
  if (finish == "stop") return "end_turn";
  if (finish == "tool-calls") return "tool_use";
  if (finish == "length") return "max_tokens";
  if (finish == "content-filter") return "refusal";
  return std::nullopt;
}

// One ScriptedModel script (runtime/model/scripted_model.h ParseScript) as a fake-llm response of
// raw Anthropic events that the Anthropic provider decodes into the same model events: each entry a
// content block in order, the finish as message_delta + message_stop (usage 10 in, 5 out), an
// error as an `error` event (non-retryable, like the scripted model's), a delay as a hold on
// fake-llm's script clock. Nothing when the script has no faithful rendering.
std::optional<Json> AnthropicResponse(const Json& script, int number) {
  Json events = Json::array();
  events.push_back({{"type", "message_start"},
                    {"message",
                     {{"id", absl::StrCat("msg_conf_", number)},
                      {"type", "message"},
                      {"role", "assistant"},
                      {"model", "fake-llm"},
                      {"content", Json::array()},
                      {"stop_reason", nullptr},
                      {"usage", {{"input_tokens", 10}, {"output_tokens", 1}}}}}});
  int index = 0;
  bool has_call = false;
  bool ended = false;
  auto block = [&](Json content, const std::vector<Json>& deltas) {
    events.push_back(
        {{"type", "content_block_start"}, {"index", index}, {"content_block", std::move(content)}});
    for (const Json& d : deltas) {
      events.push_back({{"type", "content_block_delta"}, {"index", index}, {"delta", d}});
    }
    events.push_back({{"type", "content_block_stop"}, {"index", index}});
    ++index;
  };
  auto finish = [&](const std::string& reason) {
    std::optional<std::string> stop = AnthropicStopReason(reason);
    if (!stop) return false;
    events.push_back({{"type", "message_delta"},
                      {"delta", {{"stop_reason", *stop}, {"stop_sequence", nullptr}}},
                      {"usage", {{"output_tokens", 5}}}});
    events.push_back({{"type", "message_stop"}});
    return true;
  };
  for (const Json& entry : script) {
    if (const Json* text = FindField(entry, "text")) {
      std::vector<Json> deltas;
      if (text->is_string()) deltas.push_back({{"type", "text_delta"}, {"text", *text}});
      if (text->is_array()) {
        for (const Json& d : *text) {
          deltas.push_back({{"type", "text_delta"}, {"text", d.is_string() ? d : Json("")}});
        }
      }
      block({{"type", "text"}, {"text", ""}}, deltas);
    } else if (const Json* reasoning = FindField(entry, "reasoning")) {
      std::vector<Json> deltas = {{{"type", "thinking_delta"},
                                   {"thinking", reasoning->is_string() ? *reasoning : Json("")}}};
      if (std::string sig = StringField(entry, "signature"); !sig.empty()) {
        deltas.push_back({{"type", "signature_delta"}, {"signature", sig}});
      }
      block({{"type", "thinking"}, {"thinking", ""}}, deltas);
    } else if (const Json* call = FindField(entry, "tool_call")) {
      std::string input = call->contains("input_text") ? StringField(*call, "input_text")
                          : call->contains("input")    ? DumpJson((*call)["input"])
                                                       : "";
      std::vector<Json> deltas;
      if (!input.empty()) deltas.push_back({{"type", "input_json_delta"}, {"partial_json", input}});
      block({{"type", "tool_use"},
             {"id", StringField(*call, "id")},
             {"name", StringField(*call, "name")},
             {"input", Json::object()}},
            deltas);
      has_call = true;
    } else if (const Json* delay = FindField(entry, "delay_ms")) {
      // Held on fake-llm's script clock, which the driver moves at each `advance_ms` as the
      // test kit moves its fake clock.
      if (!delay->is_number()) return std::nullopt;
      events.push_back({{"hold_ms", std::llround(delay->get<double>())}});
    } else if (const Json* f = FindField(entry, "finish")) {
      if (!finish(f->is_string() ? f->get<std::string>() : "stop")) return std::nullopt;
      ended = true;
      break;  // the scripted model ends the call at its finish
    } else if (const Json* error = FindField(entry, "error")) {
      events.push_back({{"type", "error"},
                        {"error",
                         {{"type", "invalid_request_error"},
                          {"message", error->is_string() ? error->get<std::string>() : "error"}}}});
      ended = true;
      break;
    } else {
      return std::nullopt;
    }
  }
  if (!ended) finish(has_call ? "tool-calls" : "stop");
  return Json{{"format", "anthropic"}, {"events", std::move(events)}};
}

// An Anthropic Messages request as the model call it was built from (reference/llm-wire.md
// §2.2), as far as BuildAnthropicRequest keeps it: tool results come back as the `tool` message
// they were (their output "json" when the text parses as JSON, "error-text" when is_error, else
// "text"; their toolName is not in the request), thinking as reasoning with its signature.
Json ModelCallOfRequest(const Json& request) {
  Json messages = Json::array();
  for (const Json& m : request.value("messages", Json::array())) {
    std::string role = StringField(m, "role");
    Json content = m.value("content", Json::array());
    if (content.is_string()) content = Json::array({{{"type", "text"}, {"text", content}}});
    if (role == "user") {
      Json results = Json::array(), parts = Json::array();
      for (const Json& b : content) {
        if (StringField(b, "type") != "tool_result") {
          parts.push_back(b);
          continue;
        }
        std::string text = StringField(b, "content");
        Json output;
        absl::StatusOr<Json> parsed = ParseJson(text);
        if (b.value("is_error", false)) {
          output = {{"type", "error-text"}, {"value", text}};
        } else if (parsed.ok() && (parsed->is_object() || parsed->is_array())) {
          output = {{"type", "json"}, {"value", *parsed}};
        } else {
          output = {{"type", "text"}, {"value", text}};
        }
        results.push_back({{"type", "tool-result"},
                           {"toolCallId", StringField(b, "tool_use_id")},
                           {"output", output}});
      }
      if (!results.empty()) messages.push_back({{"role", "tool"}, {"content", results}});
      if (!parts.empty()) messages.push_back({{"role", "user"}, {"content", parts}});
    } else {
      Json parts = Json::array();
      for (const Json& b : content) {
        std::string type = StringField(b, "type");
        if (type == "text") {
          parts.push_back({{"type", "text"}, {"text", StringField(b, "text")}});
        } else if (type == "thinking") {
          parts.push_back(
              {{"type", "reasoning"},
               {"text", StringField(b, "thinking")},
               {"providerOptions", {{"anthropic", {{"signature", StringField(b, "signature")}}}}}});
        } else if (type == "redacted_thinking") {
          parts.push_back(
              {{"type", "reasoning"},
               {"text", ""},
               {"providerOptions", {{"anthropic", {{"redactedData", StringField(b, "data")}}}}}});
        } else if (type == "tool_use") {
          parts.push_back({{"type", "tool-call"},
                           {"toolCallId", StringField(b, "id")},
                           {"toolName", StringField(b, "name")},
                           {"input", b.value("input", Json::object())}});
        }
      }
      messages.push_back({{"role", role}, {"content", parts}});
    }
  }
  std::string system;
  if (const Json* s = FindField(request, "system")) {
    if (s->is_string()) system = s->get<std::string>();
    if (s->is_array()) {
      for (const Json& b : *s) system += StringField(b, "text");
    }
  }
  return Json{{"messages", messages}, {"system", system}};
}

// ---- the oracle: how much the in-process run does after each step ----------------------------

struct Progress {
  size_t hooks = 0, out = 0, tools = 0, model_calls = 0;
  std::string state;
  int runs = 0;
};

std::string StateName(LocalSessions::State s) {
  switch (s) {
    case LocalSessions::State::kLive:
      return "live";
    case LocalSessions::State::kSuspended:
      return "suspended";
    case LocalSessions::State::kExited:
      return "exited";
    case LocalSessions::State::kFailed:
      return "failed";
    case LocalSessions::State::kClosed:
      return "closed";
  }
  return "";
}

// The response message ids of `start` chunks, in order, each once.
std::vector<std::string> StartIds(const std::vector<Json>& chunks) {
  std::vector<std::string> ids;
  for (const Json& c : chunks) {
    std::string id = StringField(c, "type") == "start" ? StringField(c, "messageId") : "";
    if (!id.empty() && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

struct OracleRun {
  std::vector<Progress> progress;  // [0] after the boot, [i + 1] after step i
  std::vector<bool> delivered;     // [i]: step i's record went to a live run (not a boot)
  std::vector<std::string> ids;    // the kit's response message ids (StartIds)
};

OracleRun Oracle(const Json& scenario) {
  ToolLog log;
  TestKit kit(BuildAgent(scenario.value("agent", Json::object()), &log));
  for (const Json& script : scenario.value("model", Json::array())) {
    absl::StatusOr<ScriptedResponse> response = ParseScript(script);
    if (response.ok()) kit.model().Push(*std::move(response));
  }
  auto progress = [&] {
    absl::MutexLock lock(&log.mu);
    return Progress{kit.hooks().size(),         kit.out().size(),       log.calls.size(),
                    kit.model().calls().size(), StateName(kit.state()), kit.runs()};
  };
  const Json boot = scenario.value("boot", Json::object());
  const Json early_in = boot.value("in", Json::array());
  kit.Boot(boot.value("trigger", "preload"), boot.value("payload", Json::object()),
           std::vector<Json>(early_in.begin(), early_in.end()), boot.value("attempt", 1));
  OracleRun result{{progress()}, {}, {}};
  for (const Json& step : scenario.value("steps", Json::array())) {
    result.delivered.push_back(kit.state() == LocalSessions::State::kLive);
    if (!step.contains("expect")) ApplyStep(step, kit, "oracle");
    result.progress.push_back(progress());
  }
  std::vector<Json> chunks;
  for (const OutRecord& r : kit.out()) {
    if (!r.is_control) chunks.push_back(r.chunk());
  }
  result.ids = StartIds(chunks);
  return result;
}

// `body` with every string that is one of the kit's response ids replaced by the stack's id at
// the same position: scenarios write the ids the kit numbers (msg_1, ...) where a client echoes
// the id it saw on `start`.
Json EchoIds(const Json& body, const std::vector<std::string>& kit_ids,
             const std::vector<std::string>& stack_ids) {
  if (body.is_string()) {
    for (size_t i = 0; i < kit_ids.size() && i < stack_ids.size(); ++i) {
      if (body == kit_ids[i]) return stack_ids[i];
    }
    return body;
  }
  Json copy = body;
  if (body.is_object() || body.is_array()) {
    for (auto it = copy.begin(); it != copy.end(); ++it) *it = EchoIds(*it, kit_ids, stack_ids);
  }
  return copy;
}

// ---- the stack ---------------------------------------------------------------------------------

// Where the stack went beyond the in-process run: a timer fired before the driver could look.
// The scenario's timers are real on the stack (short ones, from the scenario's `stack`
// options), so a state that lasts until a timer (a chat before its idle timeout, a suspended
// chat before its resume deadline) can only be observed while it lasts; on a machine slow
// enough it may be over before the driver looked. The driver does not guess: it compares what
// it saw with what the in-process run had at that step, and when the stack already did more
// (more hooks, records, model calls, runs, or a suspended chat past its deadline) the attempt
// proves nothing either way and runs again with every timeout doubled.
struct Beyond {
  std::string why;  // empty: not beyond
};

class StackScenario {
 public:
  StackScenario(Stack& stack, bool scripted, int extra_runs)
      : stack_(stack), scripted_(scripted), extra_runs_(extra_runs) {}

  // The worker's lifecycle points, without the driver's "$..." lines.
  std::vector<Json> Hooks() const {
    std::vector<Json> hooks;
    for (const Json& line : stack_.hooks().lines()) {
      if (!absl::StartsWith(StringField(line, "hook"), "$")) hooks.push_back(line);
    }
    return hooks;
  }
  std::vector<Json> Extra(const std::string& kind) const {
    std::vector<Json> args;
    for (const Json& line : stack_.hooks().lines()) {
      if (StringField(line, "hook") == kind) args.push_back(line["args"]);
    }
    return args;
  }
  std::vector<Json> ModelCalls() const {
    if (scripted_) return Extra("$model");
    std::vector<Json> calls;
    for (const fakellm::RecordedRequest& r : stack_.llm().requests()) {
      calls.push_back(ModelCallOfRequest(r.json));
    }
    return calls;
  }

  // Every `.out` record stored so far, in the test kit's form: {"type", "chunk"} or
  // {"type": "trigger:<subtype>", "headers"}.
  std::vector<Json> Out() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kStepLimit);
    v1::ReadRequest request;
    request.set_chat_id(kChat);
    request.set_follow(false);
    std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader =
        stack_.sessions().Read(&context, request);
    std::vector<Json> records;
    v1::ReadResponse response;
    while (reader->Read(&response)) {
      const v1::OutRecord& r = response.record();
      if (r.has_control()) {
        Json headers = Json::object();
        for (const v1::Header& h : r.control().headers()) headers[h.name()] = h.value();
        records.push_back(
            {{"type", absl::StrCat("trigger:", r.control().subtype())}, {"headers", headers}});
      } else {
        absl::StatusOr<Json> chunk = ParseJson(r.chunk_json());
        Json c = chunk.ok() ? *chunk : Json::object();
        records.push_back({{"type", StringField(c, "type")}, {"chunk", c}});
      }
    }
    return records;
  }

  v1::Session Get() { return stack_.Get(kChat); }
  // The session's runs as the in-process run counts them: without the attempts the driver
  // failed on purpose before the scenario's own (a boot with `attempt` > 1).
  int Runs(const v1::Session& s) const { return s.runs() - extra_runs_; }
  Stack& stack() { return stack_; }

  // Whether the stack went beyond `p` (see Beyond). `out`: count the `.out` records too (a
  // Read); the other counts are in memory or one Get.
  Beyond BeyondOf(const Progress& p, bool out = true) {
    v1::Session s = Get();
    std::string state(SessionStateName(s.state()));
    size_t hooks = 0, tools = 0, model_calls = scripted_ ? 0 : stack_.llm().requests().size();
    for (const Json& line : stack_.hooks().lines()) {
      std::string name = StringField(line, "hook");
      hooks += absl::StartsWith(name, "$") ? 0 : 1;
      tools += name == "$tool" ? 1 : 0;
      model_calls += scripted_ && name == "$model" ? 1 : 0;
    }
    size_t records = out ? Out().size() : 0;
    std::string why;
    auto more = [&why](const char* what, size_t stack, size_t in_process) {
      if (stack > in_process) absl::StrAppend(&why, " ", what, " ", stack, " > ", in_process, ";");
    };
    more("hooks", hooks, p.hooks);
    more("tool runs", tools, p.tools);
    more("model calls", model_calls, p.model_calls);
    more(".out records", records, p.out);
    more("runs", static_cast<size_t>(std::max(Runs(s), 0)), static_cast<size_t>(p.runs));
    if (p.state == "suspended" && state == "exited") {
      absl::StrAppend(&why, " the chat is exited, in-process still suspended (a deadline passed);");
    }
    return Beyond{why};
  }

  // Waits until the stack did at least as much as the in-process run had (`p`), and its
  // session agrees on state and runs. Get has no event stream, so the session is asked again
  // at once: each answer is a round trip that waits on the orchestrator, not a timer. A stack
  // that went beyond `p` meanwhile is reported as such, not waited for.
  std::optional<Beyond> Reach(const Progress& p, const std::string& where) {
    size_t tools = p.tools, model_calls = p.model_calls, hooks = p.hooks;
    bool scripted = scripted_;
    bool lines = stack_.hooks().WaitUntil(
        [&](const std::vector<Json>& all) {
          size_t h = 0, t = 0, m = 0;
          for (const Json& line : all) {
            std::string name = StringField(line, "hook");
            h += absl::StartsWith(name, "$") ? 0 : 1;
            t += name == "$tool" ? 1 : 0;
            m += name == "$model" ? 1 : 0;
          }
          return h >= hooks && t >= tools && (!scripted || m >= model_calls);
        },
        kStepLimit);
    if (!lines) {
      ADD_FAILURE() << where << ": the worker reported fewer hooks or tool runs than in-process ("
                    << hooks << " hooks, " << tools << " tools): " << DumpJson(Json(Hooks()));
    }
    if (!scripted && !stack_.llm().WaitForRequests(model_calls, kStepLimit)) {
      ADD_FAILURE() << where << ": fewer model calls than in-process (" << model_calls << ")";
    }
    if (p.out > 0) {
      stack_.ReadUntil(
          kChat, 0, [&](const std::vector<Json>& r) { return r.size() >= p.out; }, kStepLimit);
    }
    auto deadline = std::chrono::steady_clock::now() + kStepLimit;
    while (true) {
      v1::Session s = Get();
      if (std::string(SessionStateName(s.state())) == p.state && Runs(s) == p.runs) break;
      if (Beyond b = BeyondOf(p, /*out=*/false); !b.why.empty()) return b;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << where << ": the session is " << std::string(SessionStateName(s.state()))
                      << " with " << Runs(s) << " runs, in-process " << p.state << " with "
                      << p.runs;
        break;
      }
    }
    if (Beyond b = BeyondOf(p); !b.why.empty()) return b;
    return std::nullopt;
  }

  // Waits until the worker handed `.in` record `seq` to its live run.
  bool WaitDelivered(int64_t seq) {
    return stack_.hooks().WaitUntil(
        [seq](const std::vector<Json>& all) {
          for (const Json& line : all) {
            if (StringField(line, "hook") == "$in" && line["args"].value("seq", int64_t{0}) == seq)
              return true;
          }
          return false;
        },
        kStepLimit);
  }

 private:
  Stack& stack_;
  bool scripted_;
  int extra_runs_;
};

// Checks `expect` against the stack, as conformance_test.cc's Check does against the kit.
void Check(const Json& expect, StackScenario& s, Matcher& matcher, const std::string& where) {
  std::string why;
  if (expect.contains("hooks")) {
    std::vector<Json> hooks = s.Hooks();
    Json actual = Json::array(), names = Json::array();
    for (const Json& h : hooks) {
      actual.push_back(Json{{"name", h["hook"]}, {"args", h["args"]}});
      names.push_back(h["hook"]);
    }
    Json wanted = Json::array();
    for (const Json& e : expect["hooks"]) wanted.push_back(e.is_string() ? Json{{"name", e}} : e);
    EXPECT_TRUE(matcher.Match(wanted, actual, "hooks", &why))
        << where << ": " << why << "\nactual hooks: " << names.dump();
  }
  for (const Json& name : expect.value("hooks_absent", Json::array())) {
    for (const Json& h : s.Hooks()) {
      EXPECT_NE(h["hook"], name) << where << ": hook " << name << " fired";
    }
  }
  if (expect.contains("out")) {
    std::vector<Json> out = s.Out();
    Json types = Json::array();
    for (const Json& r : out) types.push_back(r["type"]);
    Json wanted = Json::array();
    for (const Json& e : expect["out"]) wanted.push_back(e.is_string() ? Json{{"type", e}} : e);
    EXPECT_TRUE(matcher.Match(wanted, Json(out), "out", &why))
        << where << ": " << why << "\nactual out: " << types.dump();
  }
  if (expect.contains("out_messages")) {
    absl::StatusOr<Json> messages = ReaderMessages(Json(s.Out()));
    ASSERT_TRUE(messages.ok()) << where << ": out_messages: " << messages.status();
    EXPECT_TRUE(matcher.Match(expect["out_messages"], *messages, "out_messages", &why))
        << where << ": " << why << "\nreader's messages: " << messages->dump();
  }
  if (expect.contains("state") || expect.contains("runs")) {
    v1::Session session = s.Get();
    if (expect.contains("state")) {
      EXPECT_EQ(std::string(SessionStateName(session.state())), expect["state"].get<std::string>())
          << where;
    }
    if (expect.contains("runs")) {
      EXPECT_EQ(s.Runs(session), expect["runs"].get<int>()) << where;
    }
  }
  if (expect.contains("end_reason")) {
    std::vector<v1::Run> runs = s.stack().Runs(kChat);
    ASSERT_FALSE(runs.empty()) << where;
    EXPECT_EQ(runs.back().reason(), expect["end_reason"].get<std::string>())
        << where << ": last run state " << runs.back().state() << ", error \""
        << runs.back().error() << "\"";
  }
  // `snapshot`: Sessions has no way to read a chat's snapshot; the in-process driver checks it.
  if (expect.contains("model_calls")) {
    EXPECT_EQ(s.ModelCalls().size(), expect["model_calls"].get<size_t>()) << where;
  }
  if (expect.contains("last_model_call")) {
    std::vector<Json> calls = s.ModelCalls();
    ASSERT_FALSE(calls.empty()) << where << ": no model call";
    EXPECT_TRUE(matcher.Match(expect["last_model_call"], calls.back(), "last_model_call", &why))
        << where << ": " << why << "\nmessages: " << calls.back()["messages"].dump();
  }
  if (expect.contains("tools_executed")) {
    EXPECT_TRUE(
        matcher.Match(expect["tools_executed"], Json(s.Extra("$tool")), "tools_executed", &why))
        << where << ": " << why;
  }
}

// The `.in` body of a step, as the test kit builds it (runtime/testkit/test_kit.cc).
Json Body(const Json& step) {
  auto message = [](Json payload) {
    payload["chatId"] = kChat;
    return Json{{"kind", "message"}, {"payload", std::move(payload)}};
  };
  if (step.contains("send")) return step["send"];
  if (step.contains("send_text")) {
    return message({{"trigger", "submit-message"},
                    {"message", UserMessage(step["send_text"][0].get<std::string>(),
                                            step["send_text"][1].get<std::string>())}});
  }
  if (step.contains("message")) {
    Json payload = {{"trigger", "submit-message"}, {"message", step["message"]}};
    if (step.contains("metadata") && !step["metadata"].is_null()) {
      payload["metadata"] = step["metadata"];
    }
    return message(std::move(payload));
  }
  if (step.contains("regenerate")) return message({{"trigger", "regenerate-message"}});
  if (step.contains("close")) return message({{"trigger", "close"}});
  if (step.contains("stop")) {
    Json body = {{"kind", "stop"}};
    if (step["stop"].is_string() && !step["stop"].get<std::string>().empty()) {
      body["message"] = step["stop"];
    }
    return body;
  }
  if (step.contains("handover")) {
    const Json& h = step["handover"];
    return {{"kind", "handover"},
            {"partialAssistantMessage", h["partialAssistantMessage"]},
            {"messageId", StringField(h, "messageId")},
            {"isFinal", h.value("isFinal", false)}};
  }
  if (step.contains("handover_skip")) return {{"kind", "handover-skip"}};
  return Json();
}

bool HasStep(const Json& scenario, const char* kind) {
  for (const Json& step : scenario.value("steps", Json::array())) {
    if (step.contains(kind)) return true;
  }
  return false;
}

bool HasDelay(const Json& scenario) {
  for (const Json& script : scenario.value("model", Json::array())) {
    for (const Json& entry : script) {
      if (entry.contains("delay_ms")) return true;
    }
  }
  return false;
}

bool ForcedScripted() {
  const char* force = std::getenv("BATON_CONFORMANCE_SCRIPTED");
  return force != nullptr && std::string(force) == "1";
}

// Why a scenario does not run through the stack, or "".
std::string SkipReason(const Json& scenario) {
  if (ForcedScripted() && HasDelay(scenario)) {
    return "BATON_CONFORMANCE_SCRIPTED=1: the worker's scripted model waits out a delay on the "
           "real clock, which the driver cannot hold as fake-llm's script clock does";
  }
  return "";
}

// The kit's `reassign` on the stack: the worker stops answering (SIGSTOP, as a frozen process
// or a partition would), its lease runs out, the orchestrator declares the run lost and queues
// its retry; then the worker goes on (SIGCONT), dials again, learns the run is no longer its
// own and cancels it (onRunEnd "cancelled", as the kit's lost run), and only then, its one slot
// free, takes the retry. Returns false when the run was not declared lost in time.
bool Reassign(Stack& stack, const std::string& where) {
  size_t lost_before = 0;
  for (const v1::Run& r : stack.Runs(kChat)) lost_before += r.state() == v1::RUN_STATE_LOST;
  stack.worker().Signal(SIGSTOP);
  auto deadline = std::chrono::steady_clock::now() + kStepLimit;
  bool lost = false;
  while (!lost && std::chrono::steady_clock::now() < deadline) {
    size_t now = 0;
    for (const v1::Run& r : stack.Runs(kChat)) now += r.state() == v1::RUN_STATE_LOST;
    lost = now > lost_before;
  }
  stack.worker().Signal(SIGCONT);
  EXPECT_TRUE(lost) << where << ": the frozen worker's run was not declared lost";
  return lost;
}

// A boot with `attempt` N > 1 on the stack: attempts 1 .. N-1 are taken by a worker written
// frame by frame, which accepts each and reports it failed and retryable (baton's form of the
// reference's out-of-memory retry), so the orchestrator boots the next attempt, from the chat's
// boot message and its `.in` records. The last retry goes to the conformance-worker, started
// after. Returns false when that did not go as planned.
bool FailAttempts(Stack& stack, int attempts, const std::string& where) {
  ::baton::testing::RawWorker raw(stack.gateway(), attempts, "raw-oom", "scenario");
  for (int a = 1; a <= attempts; ++a) {
    v1::GatewayFrame frame = raw.Next(v1::GatewayFrame::kAssignRun);
    const v1::AssignRun& assign = frame.assign_run();
    EXPECT_EQ(assign.attempt(), a) << where;
    v1::WorkerFrame accepted;
    accepted.mutable_run_accepted()->set_run_id(assign.run_id());
    accepted.mutable_run_accepted()->set_lease_token(assign.lease_token());
    raw.Send(accepted);
    v1::WorkerFrame failed;
    v1::RunFinished& finished = *failed.mutable_run_finished();
    finished.set_run_id(assign.run_id());
    finished.set_lease_token(assign.lease_token());
    finished.set_end(v1::RUN_END_FAILED);
    finished.set_reason("out-of-memory");
    finished.set_error("the worker ran out of memory");
    finished.set_retryable(true);
    raw.Send(failed);
  }
  // The last failure is stored (its retry queued) before the raw worker leaves: it had credit
  // for exactly its attempts, so the retry waits for the conformance-worker.
  auto deadline = std::chrono::steady_clock::now() + kStepLimit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (stack.Get(kChat).runs() == attempts + 1) return true;
  }
  ADD_FAILURE() << where << ": the retry after " << attempts << " failed attempts was not booted";
  return false;
}

// ---- the browser: the scenarios through baton-gateway ----------------------------------------

// How the driver reaches the stack. kGateway: a baton-gateway process stands in front of the
// orchestrator, and what a browser does (a chat's first message, a preload, a message, a
// regenerate, a stop) goes through its HTTP routes as the AI SDK's DefaultChatTransport sends it;
// the rest stays on Sessions. Every answer the browser reads is then checked as the AI SDK reads
// it, and against `.out` (CheckAnswers).
enum class Mode { kSessions, kGateway };

// How a boot goes in gateway mode: a chat's first POST (a user message), a preload, or Sessions
// (a head start, whose warm side the scenario plays itself; a boot without a message or with an
// assistant's; `.in` records before the first step; a retried attempt).
enum class BootRoute { kSessions, kPost, kPreload };

BootRoute GatewayBoot(const Json& scenario) {
  const Json boot = scenario.value("boot", Json::object());
  if (!boot.value("in", Json::array()).empty() || boot.value("attempt", 1) != 1) {
    return BootRoute::kSessions;
  }
  const Json payload = boot.value("payload", Json::object());
  auto only = [&payload](std::initializer_list<const char*> keys) {
    for (const auto& [key, value] : payload.items()) {
      if (std::find_if(keys.begin(), keys.end(), [&](const char* k) { return key == k; }) ==
          keys.end()) {
        return false;
      }
    }
    return true;
  };
  const std::string trigger = boot.value("trigger", "preload");
  if (trigger == "submit-message" && payload.contains("message") &&
      MessageRole(payload["message"]) == "user" && only({"message", "metadata"})) {
    return BootRoute::kPost;
  }
  if (trigger == "preload" && only({"metadata"})) return BootRoute::kPreload;
  return BootRoute::kSessions;
}

bool HeadStartBoot(const Json& scenario) {
  return scenario.value("boot", Json::object()).value("trigger", "") == "handover-prepare";
}

// The id of the message a step sends, as the scenario writes it; "" for a step that sends none.
std::string SentId(const Json& step) {
  if (step.contains("send_text")) return step["send_text"][0].get<std::string>();
  if (step.contains("message")) return MessageId(step["message"]);
  return "";
}

// Whether a step goes through the gateway: a message (POST {base}), a regenerate (POST {base}
// with trigger regenerate-message), a stop (POST {base}/{chat}/stop). A message whose id the
// browser sent before is not: to the gateway that is the retry of a lost request, answered with
// the first one's answer and stored once, so a scenario that sends an id twice on purpose (25)
// sends the second on Sessions. `sent`: the ids the browser sent so far (SentId).
bool BrowserStep(const Json& step, const std::set<std::string>& sent) {
  if (step.contains("refused")) return false;
  if (step.contains("stop") || step.contains("regenerate")) return true;
  std::string id = SentId(step);
  return !id.empty() && sent.count(id) == 0;
}

// How many answers a browser reads through the gateway in the scenario: its first POST's, a
// reload's during a head start (the warm side plays on Sessions), one per message or
// regenerate.
int BrowserAnswers(const Json& scenario) {
  int answers = GatewayBoot(scenario) == BootRoute::kPost || HeadStartBoot(scenario) ? 1 : 0;
  std::set<std::string> sent;
  if (GatewayBoot(scenario) == BootRoute::kPost) {
    sent.insert(MessageId(scenario["boot"]["payload"]["message"]));
  }
  for (const Json& step : scenario.value("steps", Json::array())) {
    if (!BrowserStep(step, sent) || step.contains("stop")) continue;
    ++answers;
    if (std::string id = SentId(step); !id.empty()) sent.insert(id);
  }
  return answers;
}

// Why a scenario does not run through the gateway, or "".
std::string GatewaySkipReason(const Json& scenario) {
  if (!SseValidatorAvailable()) {
    return "built without the `ai` packages (BATON_BUILD_WEB=OFF): no answer could be checked "
           "as the AI SDK reads it";
  }
  if (std::string why = StringField(scenario.value("gateway", Json::object()), "skip");
      !why.empty()) {
    return why;
  }
  if (BrowserAnswers(scenario) > 0) return "";
  const Json boot = scenario.value("boot", Json::object());
  std::string why;
  if (GatewayBoot(scenario) == BootRoute::kPreload) {
    why = "a preload (answered with JSON, not a stream)";
  } else if (boot.value("attempt", 1) != 1) {
    why = "a retried attempt, on Sessions";
  } else if (!boot.value("in", Json::array()).empty()) {
    why = "followed by `.in` records a browser does not send, on Sessions";
  } else {
    why =
        "not a browser's first message (a chat's first POST ends with a user message), on "
        "Sessions";
  }
  return absl::StrCat("no answer a browser reads through the gateway: the boot is ", why,
                      ", and no step sends a message or a regenerate");
}

// The body DefaultChatTransport POSTs for a `.in` message body (Body()): the chat id, the
// messages the browser sent so far with this one last (the gateway reads the last), the trigger,
// the metadata, and for a regenerate the id of the message answered again (`last_answer`).
Json PostBodyOf(const Json& in_body, Json& history, const std::string& last_answer) {
  const Json payload = in_body.value("payload", Json::object());
  const std::string trigger = payload.value("trigger", "submit-message");
  if (payload.contains("message")) history.push_back(payload["message"]);
  Json body = {{"id", kChat}, {"messages", history}, {"trigger", trigger}};
  if (payload.contains("metadata")) body["metadata"] = payload["metadata"];
  if (trigger == "regenerate-message") body["messageId"] = last_answer;
  return body;
}

// One answer a browser read through the gateway: the request, the `.in` record it is the answer
// to (0: the boot message), and the response, read to its end by a thread of its own while the
// scenario goes on.
struct Answer {
  std::string where;    // the step
  std::string request;  // e.g. "POST /api/chat submit-message u2"
  int64_t in_seq = 0;
  std::unique_ptr<HttpClient> client;
  HttpResponse response;
  std::thread reader;
  bool done = false;  // guarded by Browser::mu_
};

class Browser {
 public:
  Browser(int port, std::string dir) : port_(port), dir_(std::move(dir)) {}
  ~Browser() ABSL_NO_THREAD_SAFETY_ANALYSIS {  // the readers only set `done`
    for (auto& a : answers_) a->client->Shutdown();
    for (auto& a : answers_) {
      if (a->reader.joinable()) a->reader.join();
    }
  }

  // Sends a request whose answer is a UI message stream, and returns once its head came: the
  // gateway writes it after storing what the request asked for (the chat created, the message
  // appended, the resumed answer found), so the next step acts after that, as in the Sessions
  // mode after an Append. The body is read on by a thread of its own. Null when no head came
  // (the test failed).
  Answer* Stream(const std::string& method, const std::string& path, const Json& body,
                 const std::string& request, const std::string& where) {
    auto a = std::make_unique<Answer>();
    a->where = where;
    a->request = absl::StrCat(method, " ", path, " ", request);
    a->client = std::make_unique<HttpClient>(port_);
    if (!a->client->connected()) {
      ADD_FAILURE() << where << ": cannot connect to the gateway";
      return nullptr;
    }
    a->client->Send(method, path, body.is_null() ? "" : DumpJson(body), GatewayStack::WithJson({}));
    if (!a->client->ReadHead(a->response)) {
      ADD_FAILURE() << where << ": " << a->request << " got no answer";
      return nullptr;
    }
    Answer* raw = a.get();
    a->reader = std::thread([this, raw] {
      raw->client->ReadBody(raw->response);
      absl::MutexLock lock(&mu_);
      raw->done = true;
    });
    absl::MutexLock lock(&mu_);
    answers_.push_back(std::move(a));
    return raw;
  }

  // A request answered at once (stop, preload): its status, failing the test on another.
  void Call(const std::string& path, const Json& body, int want, const std::string& where) {
    HttpClient client(port_);
    client.Send("POST", path, body.is_null() ? "" : DumpJson(body), GatewayStack::WithJson({}));
    HttpResponse response = client.Read();
    EXPECT_EQ(response.status, want) << where << ": POST " << path << ": " << response.body;
  }

  // Waits until every answer ended, kStepLimit at most (each ends with its turn, and the
  // scenario's turns are over when this is called); one that did not is a failure.
  void WaitAll() ABSL_NO_THREAD_SAFETY_ANALYSIS {  // the readers only set `done`
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(this, &Browser::AllDone), absl::FromChrono(kStepLimit));
    }
    for (auto& a : answers_) {
      a->client->Shutdown();
      a->reader.join();
      EXPECT_TRUE(a->response.complete)
          << a->where << ": the answer to " << a->request << " never ended; it had:\n"
          << a->response.body;
    }
  }

  // Only once WaitAll returned.
  std::vector<std::unique_ptr<Answer>>& answers() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return answers_;
  }
  const std::string& dir() const { return dir_; }

 private:
  bool AllDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    for (const auto& a : answers_) {
      if (!a->done) return false;
    }
    return true;
  }

  int port_;
  std::string dir_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Answer>> answers_ ABSL_GUARDED_BY(mu_);
};

// The `.out` chunks of one answer, as a browser following the chat gets them from the gateway:
// the message a `start` opens, up to its `finish` or `abort`, a `retract` of it, or the turn's
// end; or, for a turn that wrote no `start` (an error only, or nothing), that turn's chunks.
// Control records (handover-spliced, trim, ...) are not the browser's.
struct Span {
  size_t begin = 0;  // the index in `.out` it starts at
  std::vector<Json> chunks;
  bool started = false;    // it opens with a `start` of `.out`
  bool ended = false;      // it ends with `finish` or `abort`
  bool retracted = false;  // a `retract` withdrew it first
};

Span SpanFrom(const std::vector<Json>& out, size_t begin, const std::string& id) {
  Span span;
  span.begin = begin;
  for (size_t i = begin; i < out.size(); ++i) {
    const Json& r = out[i];
    const std::string type = StringField(r, "type");
    if (!r.contains("chunk")) {
      if (type == "trigger:turn-complete") break;
      if (type == "trigger:retract" &&
          StringField(r.value("headers", Json::object()), "message-id") == id) {
        span.retracted = true;
        break;
      }
      continue;
    }
    if (type == "start") {
      if (i != begin) break;
      span.started = true;
    }
    span.chunks.push_back(r["chunk"]);
    if (type == "finish" || type == "abort") {
      span.ended = true;
      break;
    }
  }
  return span;
}

// The span of the answer to `.in` record `in_seq` (0: the boot message) whose `start` has `id`.
// Its turn, by the orchestrator's rule for where an answer is (AppendResponse): the records after
// the turn-complete before it, through the first turn-complete whose resume floor
// (`session-in-event-id`) is `in_seq` or past it, or to `.out`'s end when there is none (a
// cancelled run writes none). In that turn, the message of `id`; where it has none (the gateway
// gave the answer an id of its own), the turn's chunks, which must then hold no `start`.
std::optional<Span> SpanOf(const std::vector<Json>& out, int64_t in_seq, const std::string& id) {
  size_t begin = 0, end = out.size();
  for (size_t i = 0; i < out.size(); ++i) {
    if (StringField(out[i], "type") != "trigger:turn-complete") continue;
    int64_t floor = 0;
    if (!absl::SimpleAtoi(StringField(out[i]["headers"], "session-in-event-id"), &floor)) {
      floor = 0;
    }
    if (floor >= in_seq) {
      end = i;
      break;
    }
    begin = i + 1;
  }
  for (size_t i = begin; i < end; ++i) {
    if (StringField(out[i], "type") != "start") continue;
    if (StringField(out[i]["chunk"], "messageId") == id) return SpanFrom(out, i, id);
  }
  for (size_t i = begin; i < end; ++i) {
    if (StringField(out[i], "type") == "start") return std::nullopt;  // not the turn's message
  }
  return SpanFrom(out, begin, "");
}

// A `finish` chunk as `.out` has it: the gateway adds its own phase to the run's timings
// (docs/gateway.md, `firstChunkOut`); the objects that only held it go with it.
Json WithoutGatewayTimings(Json finish) {
  if (!finish.contains("messageMetadata") || !finish["messageMetadata"].is_object()) return finish;
  Json* metadata = &finish["messageMetadata"];
  if (!metadata->contains("baton")) return finish;
  Json& baton = (*metadata)["baton"];
  if (baton.is_object() && baton.contains("timings") && baton["timings"].is_object()) {
    baton["timings"].erase("firstChunkOut");
    if (baton["timings"].empty()) baton.erase("timings");
  }
  if (baton.is_object() && baton.empty()) metadata->erase("baton");
  if (metadata->empty()) finish.erase("messageMetadata");
  return finish;
}

// What the parts of a message say, as a browser shows them: text and reasoning with their text,
// tool parts with their call, state, input, output, error and approval, data parts with their
// data; step boundaries. (Provider metadata and a text part's streaming state are how it got
// there, not what it says.)
Json PartsShown(const Json& message) {
  Json shown = Json::array();
  for (const Json& part : message.value("parts", Json::array())) {
    Json p = {{"type", part.value("type", "")}};
    for (const char* key : {"text", "toolCallId", "toolName", "input", "output", "errorText",
                            "approval", "data", "url"}) {
      if (part.contains(key)) p[key] = part[key];
    }
    if (IsToolPart(part) && part.contains("state")) p["state"] = part["state"];
    shown.push_back(std::move(p));
  }
  return shown;
}

// Whether an answer's chunks are `.out`'s span, in order and in full, followed by nothing but
// what the gateway adds to end an answer `.out` did not end (failing the test where not).
bool SameAsOut(const Sse& sse, const Span& span, const std::string& where) {
  std::vector<Json> chunks = sse.chunks;
  if (!span.started) chunks.erase(chunks.begin());  // the gateway's own start
  for (Json& c : chunks) {
    if (StringField(c, "type") == "finish") c = WithoutGatewayTimings(c);
  }
  Json out_types = Json::array();
  for (const Json& c : span.chunks) out_types.push_back(c["type"]);
  std::string listing =
      absl::StrCat("\n.out: ", out_types.dump(), "\nSSE:  ", Json(ChunkTypes(sse)).dump());
  bool same = chunks.size() >= span.chunks.size() &&
              std::equal(span.chunks.begin(), span.chunks.end(), chunks.begin());
  EXPECT_TRUE(same) << where << ": the answer is not `.out`'s" << listing;
  if (!same) return false;
  std::vector<std::string> added;
  for (size_t i = span.chunks.size(); i < chunks.size(); ++i) {
    added.push_back(StringField(chunks[i], "type"));
  }
  if (span.ended) {
    EXPECT_TRUE(added.empty()) << where << ": chunks after `.out`'s end" << listing;
    return added.empty();
  }
  // The gateway ends it: for a withdrawn answer an error first, then the open parts closed, the
  // step finished, and `finish`.
  size_t i = 0;
  if (span.retracted) {
    EXPECT_TRUE(!added.empty() && added[0] == "error")
        << where << ": a withdrawn answer ends with an error saying so" << listing;
    i = 1;
  }
  for (; i + 1 < added.size(); ++i) {
    EXPECT_THAT(added[i], ::testing::AnyOf("text-end", "reasoning-end", "finish-step"))
        << where << ": the gateway added chunk " << i << listing;
  }
  EXPECT_TRUE(!added.empty() && added.back() == "finish")
      << where << ": an answer `.out` did not end ends with finish" << listing;
  return true;
}

// Checks every answer the browser read: the gateway's framing, the AI SDK's reading of it
// (validate-sse.mjs: a refusal fails), and that it is the answer `.out` holds for its request,
// chunk for chunk, with only what docs/gateway.md says the gateway adds: its `firstChunkOut`
// timing, a `start` for a turn that wrote none, the end of an answer the run did not end (open
// parts closed, `finish`), and for a withdrawn answer an `error` saying so.
void CheckAnswers(Browser& browser, const std::vector<Json>& out) {
  std::map<std::string, Json> shown;       // message id -> what the browser shows (the AI SDK's)
  std::map<std::string, Json> folded_out;  // message id -> the same message folded from `.out`
  std::map<size_t, std::string> taken;     // span begin -> the request whose answer it is
  for (auto& a : browser.answers()) {
    const std::string where = absl::StrCat(a->where, ": ", a->request);
    const HttpResponse& response = a->response;
    if (!response.complete) continue;  // WaitAll said so
    if (response.status != 200) {
      ADD_FAILURE() << where << ": status " << response.status << ": " << response.body;
      continue;
    }
    Sse sse = ParseSse(response.body);
    std::vector<std::string> types = ChunkTypes(sse);
    EXPECT_TRUE(sse.done) << where << ": no data: [DONE]";
    if (types.empty() || types.front() != "start") {
      ADD_FAILURE() << where << ": the answer does not open with start: " << response.body;
      continue;
    }
    EXPECT_EQ(std::count(types.begin(), types.end(), "start"), 1) << where << ": " << response.body;
    EXPECT_EQ(std::count(types.begin(), types.end(), "finish") +
                  std::count(types.begin(), types.end(), "abort"),
              1)
        << where << ": one finish or abort per answer: " << response.body;
    EXPECT_TRUE(types.back() == "finish" || types.back() == "abort") << where;

    // A run that failed before it answered wrote nothing: the gateway ends the response with an
    // error of its own (docs/gateway.md), which the AI SDK must read as a failed turn.
    if (types == std::vector<std::string>{"start", "error", "finish"} &&
        absl::StartsWith(StringField(sse.chunks[1], "errorText"), "The agent failed before")) {
      ValidateWithAiSdk(browser.dir(), response, "--expect-error");
      continue;
    }
    const std::string id = StringField(sse.chunks.front(), "messageId");
    std::optional<Span> span = SpanOf(out, a->in_seq, id);
    if (!span) {
      ADD_FAILURE() << where << ": message " << id << " is not the answer `.out` holds for `.in` "
                    << a->in_seq << "; the answer:\n"
                    << response.body;
      continue;
    }
    if (auto [it, fresh] = taken.emplace(span->begin, where); !fresh) {
      // A message the turn took in (steering) shares that turn's answer, which says so.
      const std::string message_id = a->request.substr(a->request.rfind(' ') + 1);
      bool steered = false;
      for (const Json& c : span->chunks) {
        if (StringField(c, "type") == "data-pending-message-injected" &&
            absl::StrContains(DumpJson(c), absl::StrCat("\"", message_id, "\""))) {
          steered = true;
        }
      }
      if (steered) continue;
      ADD_FAILURE() << where << ": the same answer (`.out` record " << span->begin + 1 << ") as "
                    << it->second;
    }

    if (!SameAsOut(sse, *span, where)) continue;

    // As the AI SDK reads it: a continuation is folded into the message the browser shows.
    std::string args = absl::StrCat("--chat-id ", kChat);
    if (absl::StrContains(response.body, "\"tool-approval-request\"") ||
        absl::StrContains(response.body, "\"tool-output-denied\"")) {
      absl::StrAppend(&args, " --ai 6");  // ai 5 has no tool approvals
    }
    bool error = span->retracted;
    for (const Json& c : span->chunks) error = error || StringField(c, "type") == "error";
    if (error) absl::StrAppend(&args, " --expect-error");
    Json reducer_start;
    if (auto it = shown.find(id); it != shown.end()) {
      std::string file = absl::StrCat(browser.dir(), "/continued-", span->begin, ".json");
      std::ofstream(file) << it->second.dump();
      absl::StrAppend(&args, " --message ", file);
      reducer_start = folded_out[id];
    }
    Json message = ValidateWithAiSdk(browser.dir(), response, args);
    if (message.is_null()) continue;  // refused: the validator's failure says why

    // What the browser shows is what a reader of `.out` folds: text, reasoning, tool calls with
    // their inputs and results.
    UiReducer reducer(reducer_start.is_null() ? Json() : reducer_start);
    for (const Json& c : span->chunks) {
      absl::Status applied = reducer.Apply(c);
      EXPECT_TRUE(applied.ok()) << where << ": `.out` does not fold: " << applied;
    }
    EXPECT_EQ(PartsShown(message).dump(), PartsShown(reducer.message()).dump())
        << where << ": the browser's message is not `.out`'s";
    if (span->started) {
      EXPECT_EQ(StringField(message, "id"), id) << where;
      shown[id] = message;
      folded_out[id] = reducer.message();
    }
    std::printf("%s: %zu chunks to %s, `.out` from record %zu, read by the AI SDK\n", where.c_str(),
                types.size(), types.back().c_str(), span->begin + 1);
  }
}

struct Attempt {
  std::optional<Beyond> beyond;  // set: inconclusive, the stack went beyond the oracle here
  std::string where;
};

// One run of the scenario on a fresh stack, with the agent's timeouts times `time_scale`; in
// gateway mode with a baton-gateway in front of it, which the browser's steps go through.
Attempt RunOnStack(const std::string& file, const Json& scenario, const OracleRun& oracle,
                   double time_scale, Mode mode) {
  const std::string path = (std::filesystem::path(BATON_SCENARIO_DIR) / file).string();
  // The model scripts as fake-llm responses; a script with no faithful rendering makes the
  // worker play them in-process instead (as BATON_CONFORMANCE_SCRIPTED=1 does for every one).
  Json responses = Json::array();
  bool scripted = ForcedScripted();
  int number = 0;
  for (const Json& script : scenario.value("model", Json::array())) {
    std::optional<Json> response = AnthropicResponse(script, ++number);
    if (!response) scripted = true;
    responses.push_back(response.value_or(Json::object()));
  }
  const Json boot = scenario.value("boot", Json::object());
  const int failed_attempts = boot.value("attempt", 1) - 1;
  const bool reassign = HasStep(scenario, "reassign");
  StackOptions options;
  options.script = {{"responses", scripted ? Json::array() : responses}};
  options.worker_binary = CONFORMANCE_WORKER_BINARY;
  options.worker_flags = {absl::StrCat("--scenario=", path),
                          absl::StrCat("--time_scale=", time_scale)};
  if (scripted) options.worker_flags.push_back("--scripted_model");
  if (failed_attempts > 0) options.workers = 0;  // started once the failed attempts are done
  // A head start's window is the orchestrator's: the agent's handover_timeout reaches it in the
  // worker's Hello, and the same value as its own default covers a CreateSession that comes
  // before the worker has connected.
  const Json spec = StackAgentSpec(scenario, time_scale);
  const Json agent_options = spec.value("options", Json::object());
  if (const Json* timeout = FindField(agent_options, "handover_timeout_s")) {
    options.orchestrator_flags.push_back(
        absl::StrCat("--handover_timeout_ms=", std::llround(timeout->get<double>() * 1000)));
  }
  if (reassign) {
    // A lost worker is noticed within a second; one slot, so that the retry boots only once
    // the lost run is gone from the worker (as in the kit, where one ends before the next).
    options.capacity = 1;
    options.orchestrator_flags.push_back("--heartbeat_ms=100");
    options.orchestrator_flags.push_back("--lease_ms=1000");
  }
  std::unique_ptr<Stack> stack = Stack::Start(options);
  if (stack == nullptr) {
    ADD_FAILURE() << file << ": the stack did not start";
    return {};
  }

  std::unique_ptr<GatewayProcess> gateway;
  std::optional<Browser> browser;
  if (mode == Mode::kGateway) {
    gateway = GatewayProcess::Start(*stack, "scenario", {"--keep_alive_ms=250"});
    if (gateway == nullptr) return {};
    browser.emplace(gateway->port(), stack->Path(""));
  }
  Json history = Json::array();  // the messages the browser sent
  std::set<std::string> sent;    // their ids (SentId)

  Matcher matcher;
  const std::string trigger = boot.value("trigger", "preload");
  const Json payload = boot.value("payload", Json::object());
  const BootRoute boot_route = browser ? GatewayBoot(scenario) : BootRoute::kSessions;
  if (boot_route == BootRoute::kPost) {
    // The chat's first POST creates it with the boot message.
    sent.insert(MessageId(payload["message"]));
    Json in_body = {{"payload", payload}};
    in_body["payload"]["trigger"] = trigger;
    browser->Stream("POST", "/api/chat", PostBodyOf(in_body, history, ""),
                    absl::StrCat(trigger, " ", MessageId(payload["message"])), file + " boot");
  } else if (boot_route == BootRoute::kPreload) {
    browser->Call(absl::StrCat("/api/chat/", kChat, "/preload"), payload, 200, file + " boot");
  } else {
    stack->Create(kChat, "scenario", trigger, payload);
    if (browser && HeadStartBoot(scenario)) {
      // The warm side is the scenario's; the browser reloads while the run waits for its
      // signal (the signal, even one in `boot.in`, comes after), and follows the answer.
      browser->Stream("GET", absl::StrCat("/api/chat/", kChat, "/stream"), Json(), "(a reload)",
                      file + " boot");
    }
  }
  for (const Json& body : boot.value("in", Json::array())) stack->Append(kChat, body);
  if (failed_attempts > 0) {
    if (!FailAttempts(*stack, failed_attempts, file + " boot")) return {};
    stack->AddWorker();
  }
  StackScenario s(*stack, scripted, failed_attempts);
  if (std::optional<Beyond> b = s.Reach(oracle.progress[0], file + " boot")) {
    return {b, file + " boot"};
  }
  int index = 0;
  for (const Json& step : scenario.value("steps", Json::array())) {
    std::string where = absl::StrCat(file, " step ", index);
    if (step.contains("expect")) {
      Check(step["expect"], s, matcher, where);
      // What was checked is only what the in-process run had at this step if the stack had
      // not already gone past it.
      if (Beyond b = s.BeyondOf(oracle.progress[index]); !b.why.empty()) return {b, where};
    } else if (step.contains("cancel")) {
      grpc::ClientContext context;
      v1::CancelRunRequest request;
      request.set_chat_id(kChat);
      v1::Run run;
      grpc::Status status = stack->sessions().CancelRun(&context, request, &run);
      EXPECT_TRUE(status.ok()) << where << ": " << status.error_message();
    } else if (step.contains("advance_ms")) {
      // The runtime's timers are real on the stack: Reach below waits for what they do. The
      // model's delays are holds on fake-llm's script clock, moved here as the kit's clock.
      stack->llm().AdvanceScriptClock(
          std::chrono::milliseconds(std::llround(step["advance_ms"].get<double>())));
    } else if (step.contains("reassign")) {
      if (!Reassign(*stack, where)) return {};
    } else if (step.contains("refused")) {
      // A record the orchestrator must refuse, naming why; nothing is stored.
      Json body = Body(step);
      grpc::ClientContext context;
      v1::AppendRequest request;
      request.set_chat_id(kChat);
      request.set_body_json(DumpJson(body));
      v1::AppendResponse response;
      grpc::Status status = stack->sessions().Append(&context, request, &response);
      EXPECT_FALSE(status.ok()) << where << ": appended as seq " << response.seq();
      EXPECT_THAT(status.error_message(), ::testing::HasSubstr(StringField(step, "refused")))
          << where;
    } else if (Json body = Body(step); !body.is_null()) {
      std::vector<Json> out = s.Out();
      std::vector<Json> chunks;
      for (const Json& r : out) {
        if (r.contains("chunk")) chunks.push_back(r["chunk"]);
      }
      std::vector<std::string> ids = StartIds(chunks);
      body = EchoIds(body, oracle.ids, ids);
      int64_t seq = 0;
      if (browser && BrowserStep(step, sent)) {
        Answer* answer = nullptr;
        if (step.contains("stop")) {
          browser->Call(absl::StrCat("/api/chat/", kChat, "/stop"), Json(), 204, where);
        } else {
          if (std::string id = SentId(step); !id.empty()) sent.insert(id);
          Json post = PostBodyOf(body, history, ids.empty() ? "" : ids.back());
          std::string what = post.contains("messageId") ? StringField(post, "messageId")
                                                        : MessageId(post["messages"].back());
          answer = browser->Stream("POST", "/api/chat", post,
                                   absl::StrCat(StringField(post, "trigger"), " ", what), where);
        }
        // What the gateway appended, before it answered: the driver's steps are the only
        // appends meanwhile.
        seq = stack->Get(kChat).in_seq();
        if (answer != nullptr) answer->in_seq = seq;
      } else {
        seq = stack->Append(kChat, body);
      }
      // In-process the record reached the live run before the step returned; here, before the
      // next step acts (a message that must join a turn before its model call goes on).
      if (oracle.delivered[index] && !s.WaitDelivered(seq)) {
        if (Beyond b = s.BeyondOf(oracle.progress[index]); !b.why.empty()) return {b, where};
        ADD_FAILURE() << where << ": record " << seq << " never reached the live run";
      }
    } else {
      ADD_FAILURE() << where << ": unknown step " << step.dump();
    }
    ++index;
    if (std::optional<Beyond> b = s.Reach(oracle.progress[index], where)) return {b, where};
  }
  std::string where = file + " final";
  Check(scenario.value("expect", Json::object()), s, matcher, where);
  if (Beyond b = s.BeyondOf(oracle.progress[index]); !b.why.empty()) return {b, where};
  if (browser) {
    browser->WaitAll();
    CheckAnswers(*browser, s.Out());
  }
  return {};
}

// Runs one scenario file through the stack in `mode`.
void RunScenario(const std::string& file, Mode mode) {
  absl::StatusOr<Json> loaded =
      ReadScenario((std::filesystem::path(BATON_SCENARIO_DIR) / file).string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Json& scenario = *loaded;
  SCOPED_TRACE(scenario.value("name", file));
  if (std::string reason = SkipReason(scenario); !reason.empty()) GTEST_SKIP() << reason;
  if (mode == Mode::kGateway) {
    if (std::string reason = GatewaySkipReason(scenario); !reason.empty()) {
      GTEST_SKIP() << reason;
    }
  }
  OracleRun oracle = Oracle(scenario);

  // An attempt that went beyond the in-process run before it could look (see Beyond) proves
  // nothing: its failures are dropped and the scenario runs again with every timeout doubled.
  // The last attempt reports whatever it found.
  constexpr int kAttempts = 3;
  double time_scale = 1;
  for (int attempt = 1; attempt <= kAttempts; ++attempt, time_scale *= 2) {
    if (attempt == kAttempts) {
      Attempt last = RunOnStack(file, scenario, oracle, time_scale, mode);
      if (last.beyond) {
        ADD_FAILURE() << last.where << ": in every attempt the stack went past the in-process "
                      << "run before the driver could look (the last time with timeouts x"
                      << time_scale << "):" << last.beyond->why;
      }
      return;
    }
    ::testing::TestPartResultArray failures;
    Attempt result;
    {
      ::testing::ScopedFakeTestPartResultReporter intercept(
          ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
      result = RunOnStack(file, scenario, oracle, time_scale, mode);
    }
    if (!result.beyond) {
      for (int i = 0; i < failures.size(); ++i) {
        const ::testing::TestPartResult& f = failures.GetTestPartResult(i);
        ADD_FAILURE_AT(f.file_name() != nullptr ? f.file_name() : "?", f.line_number())
            << f.message();
      }
      return;
    }
    std::printf("%s: attempt %d inconclusive at %s:%s again with timeouts x%g\n", file.c_str(),
                attempt, result.where.c_str(), result.beyond->why.c_str(), time_scale * 2);
  }
}

class StackConformance : public ::testing::TestWithParam<std::string> {};
TEST_P(StackConformance, Scenario) { RunScenario(GetParam(), Mode::kSessions); }

// The same scenarios with a browser's steps through baton-gateway (tests/conformance/README.md,
// "Through the gateway").
class GatewayConformance : public ::testing::TestWithParam<std::string> {};
TEST_P(GatewayConformance, Scenario) { RunScenario(GetParam(), Mode::kGateway); }

std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param.substr(0, info.param.size() - 5);
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Scenarios, StackConformance,
                         ::testing::ValuesIn(ScenarioFiles(BATON_SCENARIO_DIR)), TestName);
INSTANTIATE_TEST_SUITE_P(Scenarios, GatewayConformance,
                         ::testing::ValuesIn(ScenarioFiles(BATON_SCENARIO_DIR)), TestName);

}  // namespace
}  // namespace baton::conformance
