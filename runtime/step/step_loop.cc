#include "runtime/step/step_loop.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/exec/waiter.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_reducer.h"

namespace baton {
namespace {

constexpr char kMaskedError[] = "An error occurred.";

// A tool call the model made, or a handed-over call approved for execution.
struct ToolCall {
  std::string id;
  std::string name;
  Json input;
  const Tool* tool = nullptr;
};

// Checks `input` against the parts of JSON Schema that tool schemas use at the top level: the
// value is an object, required properties are present, and declared property types match.
absl::Status CheckInput(const Json& schema, const Json& input) {
  if (!input.is_object()) return absl::InvalidArgumentError("input is not a JSON object");
  if (const Json* required = FindField(schema, "required"); required && required->is_array()) {
    for (const Json& name : *required) {
      if (name.is_string() && !input.contains(name.get<std::string>())) {
        return absl::InvalidArgumentError(
            absl::StrCat("missing required property \"", name.get<std::string>(), "\""));
      }
    }
  }
  const Json* props = FindField(schema, "properties");
  if (props == nullptr || !props->is_object()) return absl::OkStatus();
  for (const auto& [key, value] : input.items()) {
    const Json* prop = FindField(*props, key);
    if (prop == nullptr) continue;
    std::string type = StringField(*prop, "type");
    bool ok = type.empty() || (type == "string" && value.is_string()) ||
              (type == "number" && value.is_number()) ||
              (type == "integer" && value.is_number_integer()) ||
              (type == "boolean" && value.is_boolean()) ||
              (type == "object" && value.is_object()) || (type == "array" && value.is_array()) ||
              (type == "null" && value.is_null());
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("property \"", key, "\" is not of type ", type));
    }
  }
  return absl::OkStatus();
}

// The prompt as a provider takes it: approval rows are baton's bookkeeping, not model input.
Json ForProvider(const Json& prompt) {
  Json out = Json::array();
  for (const Json& message : prompt) {
    const Json* content = FindField(message, "content");
    if (content == nullptr || !content->is_array()) {
      out.push_back(message);
      continue;
    }
    Json kept = Json::array();
    for (const Json& part : *content) {
      std::string type = StringField(part, "type");
      if (type == "tool-approval-request" || type == "tool-approval-response") continue;
      kept.push_back(part);
    }
    if (kept.empty()) continue;
    Json m = message;
    m["content"] = std::move(kept);
    out.push_back(std::move(m));
  }
  return out;
}

Json ToolResultOutput(const absl::StatusOr<Json>& result) {
  if (!result.ok()) {
    return Json{{"type", "error-text"}, {"value", std::string(result.status().message())}};
  }
  if (result->is_string()) return Json{{"type", "text"}, {"value", *result}};
  return Json{{"type", "json"}, {"value", *result}};
}

// A tool output too large for its chunk to fit a `.out` record, or nested deeper than data may
// be, is an error the model can act on (the output would otherwise be dropped on its way to
// readers, or crash whoever copies it). Depth first: the size is measured by dumping it.
absl::StatusOr<Json> FitOutput(const ToolCall& call, absl::StatusOr<Json> result) {
  if (!result.ok()) return result;
  if (JsonDepth(*result, kMaxDataDepth) > kMaxDataDepth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tool ", call.name, " returned output nested deeper than ", kMaxDataDepth,
                     " levels, the most a tool's ", "output may nest"));
  }
  size_t size = DumpJson(*result).size();
  constexpr size_t kEnvelope = 64;  // {"type":"tool-output-available","toolCallId":..,"output":}
  if (size + call.id.size() + kEnvelope <= kMaxChunkJsonBytes) return result;
  return absl::ResourceExhaustedError(
      absl::StrCat("tool ", call.name, " returned ", size, " bytes of output; the most a tool may ",
                   "return is about ", kMaxChunkJsonBytes, " bytes"));
}

// Number of steps an assistant message already holds, so this turn's part ids do not repeat
// the ids of the steps it continues.
int StepsIn(const Json& message) {
  const Json* parts = FindField(message, "parts");
  if (parts == nullptr || !parts->is_array() || parts->empty()) return 0;
  int steps = 0;
  for (const Json& p : *parts) steps += StringField(p, "type") == "step-start";
  return steps == 0 ? 1 : steps;
}

}  // namespace

// A model call's Backpressure: the step loop's Env::writable under the turn's stop.
class RoomToWrite final : public Backpressure {
 public:
  RoomToWrite(const std::function<asio::awaitable<void>(std::stop_token)>& writable,
              std::stop_token stop)
      : writable_(writable), stop_(std::move(stop)) {}
  asio::awaitable<void> WaitForRoom() override {
    if (writable_) co_await writable_(stop_);
  }

 private:
  const std::function<asio::awaitable<void>(std::stop_token)>& writable_;
  std::stop_token stop_;
};

// Everything one Run() works on; lives in the coroutine frame.
class TurnStreams {
 public:
  TurnStreams(const Agent& agent, const StepLoop::Env& env, Json start_message)
      : agent_(agent), env_(env), reducer_(std::move(start_message)) {}

  // Writes a chunk, unless it would break the stream's grammar (a result for a call the message
  // does not hold, when a handover's partial and its approvals disagree): readers would reject
  // it, so it is dropped with a note on stderr, and the turn goes on.
  void Emit(Json chunk) {
    absl::Status s = reducer_.Apply(chunk);
    if (!s.ok()) {
      std::fprintf(stderr, "baton: dropped an ill-formed chunk: %s\n",
                   std::string(s.message()).c_str());
      return;
    }
    env_.emit(std::move(chunk));
  }

  std::string ErrorText(absl::string_view real) const {
    return agent_.options.mask_errors ? std::string(kMaskedError) : std::string(real);
  }

  void EmitOutput(const ToolCall& call, const absl::StatusOr<Json>& result) {
    if (result.ok()) {
      Emit({{"type", "tool-output-available"}, {"toolCallId", call.id}, {"output", *result}});
    } else {
      real_errors_[call.id] = std::string(result.status().message());
      Emit({{"type", "tool-output-error"},
            {"toolCallId", call.id},
            {"errorText", ErrorText(result.status().message())}});
    }
  }

  // Runs `calls` in parallel on the pool and writes each output as it completes. Returns the
  // results by call index, or nullopt when stopped (outputs still missing are never written).
  asio::awaitable<std::optional<std::vector<absl::StatusOr<Json>>>> Execute(
      const std::vector<ToolCall>& calls, std::stop_token stop) {
    if (stop.stop_requested()) co_return std::nullopt;  // stopped before any call started
    const absl::Time began = env_.clock->Now();
    absl::Cleanup timed = [this, began] {
      tools_ = tools_.value_or(absl::ZeroDuration()) + (env_.clock->Now() - began);
    };
    struct Shared {
      std::vector<std::pair<size_t, absl::StatusOr<Json>>> done;
      Waiter* waiter = nullptr;
    };
    auto shared = std::make_shared<Shared>();
    Waiter waiter(env_.executor, *env_.clock);
    shared->waiter = &waiter;
    for (size_t i = 0; i < calls.size(); ++i) {
      const Tool* tool = calls[i].tool;
      ToolContext context{env_.chat_id, calls[i].id, stop};
      Json input = calls[i].input;
      env_.pool->Submit<absl::StatusOr<Json>>(
          env_.executor,
          [tool, input = std::move(input), context = std::move(context)]() {
            return tool->execute(input, context);
          },
          [shared, i](absl::StatusOr<Json> result) {
            shared->done.emplace_back(i, std::move(result));
            if (shared->waiter != nullptr) shared->waiter->Notify();
          });
    }
    std::vector<std::optional<absl::StatusOr<Json>>> results(calls.size());
    size_t remaining = calls.size();
    absl::Time deadline = env_.clock->Now() + agent_.options.tool_timeout;
    while (remaining > 0) {
      for (auto& [i, result] : shared->done) {
        result = FitOutput(calls[i], std::move(result));
        EmitOutput(calls[i], result);
        results[i] = std::move(result);
        --remaining;
      }
      shared->done.clear();
      if (remaining == 0) break;
      Waiter::Result woke = co_await waiter.Wait(deadline, stop);
      if (woke == Waiter::Result::kStopped) {
        shared->waiter = nullptr;
        co_return std::nullopt;
      }
      if (woke == Waiter::Result::kTimeout && shared->done.empty()) {
        for (size_t i = 0; i < calls.size(); ++i) {
          if (results[i].has_value()) continue;
          results[i] = absl::DeadlineExceededError(
              absl::StrCat("tool ", calls[i].name, " did not finish in time"));
          EmitOutput(calls[i], *results[i]);
        }
        break;
      }
    }
    shared->waiter = nullptr;
    std::vector<absl::StatusOr<Json>> out;
    for (auto& r : results) out.push_back(std::move(*r));
    co_return out;
  }

  UiReducer& reducer() { return reducer_; }
  absl::flat_hash_map<std::string, std::string>& real_errors() { return real_errors_; }
  const std::optional<absl::Duration>& tools() const { return tools_; }

 private:
  const Agent& agent_;
  const StepLoop::Env& env_;
  UiReducer reducer_;
  absl::flat_hash_map<std::string, std::string> real_errors_;  // toolCallId -> unmasked text
  std::optional<absl::Duration> tools_;                        // time spent executing tools
};

asio::awaitable<void> StepLoop::Room(std::stop_token stop) {
  if (env_.writable) co_await env_.writable(stop);
}

asio::awaitable<StepLoopResult> StepLoop::Run(StepLoopInput input) {
  Json start_message = input.continued;
  if (start_message.is_null()) {
    start_message = Json{{"id", input.message_id}, {"role", "assistant"}, {"parts", Json::array()}};
  }
  const int step_base = StepsIn(start_message);
  TurnStreams streams(agent_, env_, std::move(start_message));
  StepLoopResult result;
  Json prompt = std::move(input.prompt);
  if (!input.started) streams.Emit({{"type", "start"}, {"messageId", input.message_id}});
  // Every `finish` of the turn carries its metadata (the turn timings), made as it is written.
  auto finish = [&](const std::string& reason) {
    result.timings.tools = streams.tools();
    Json chunk = {{"type", "finish"}, {"finishReason", reason}};
    if (input.finish_metadata) {
      Json metadata = input.finish_metadata(result.timings);
      if (!metadata.is_null()) chunk["messageMetadata"] = std::move(metadata);
    }
    streams.Emit(std::move(chunk));
  };

  auto stopped = [&]() -> StepLoopResult {
    streams.Emit({{"type", "abort"}});
    result.stopped = true;
    result.timings.tools = streams.tools();
    result.response = streams.reducer().message();
    return result;
  };

  // Pending approvals at the end of the prompt: execute the approved calls before any model call.
  if (!prompt.empty() && MessageRole(prompt.back()) == "tool") {
    absl::flat_hash_map<std::string, std::string> approval_to_call;
    absl::flat_hash_map<std::string, ToolCall> calls_by_id;
    for (const Json& m : prompt) {
      const Json* content = FindField(m, "content");
      if (MessageRole(m) != "assistant" || content == nullptr || !content->is_array()) continue;
      for (const Json& c : *content) {
        std::string type = StringField(c, "type");
        if (type == "tool-approval-request") {
          approval_to_call[StringField(c, "approvalId")] = StringField(c, "toolCallId");
        } else if (type == "tool-call") {
          std::string name = StringField(c, "toolName");
          const Json* call_input = FindField(c, "input");
          calls_by_id[StringField(c, "toolCallId")] = ToolCall{
              StringField(c, "toolCallId"), name,
              call_input != nullptr && call_input->is_object() ? *call_input : Json::object(),
              agent_.FindTool(name)};
        }
      }
    }
    if (!prompt.back().contains("content")) prompt.back()["content"] = Json::array();
    Json& tail = prompt.back()["content"];
    std::vector<ToolCall> approved;
    std::vector<size_t> approved_slots;
    Json rewritten = Json::array();
    for (const Json& c : tail.is_array() ? tail : Json::array()) {
      if (StringField(c, "type") != "tool-approval-response") {
        rewritten.push_back(c);
        continue;
      }
      auto call_id = approval_to_call.find(StringField(c, "approvalId"));
      if (call_id == approval_to_call.end()) continue;
      auto call = calls_by_id.find(call_id->second);
      if (call == calls_by_id.end()) continue;
      const ToolCall& tc = call->second;
      if (!BoolField(c, "approved")) {
        streams.Emit({{"type", "tool-output-denied"}, {"toolCallId", tc.id}});
        Json output = {{"type", "execution-denied"}};
        if (const Json* reason = FindField(c, "reason")) output["reason"] = *reason;
        rewritten.push_back({{"type", "tool-result"},
                             {"toolCallId", tc.id},
                             {"toolName", tc.name},
                             {"output", output}});
        continue;
      }
      if (tc.tool == nullptr || !tc.tool->execute) {
        absl::Status missing =
            absl::NotFoundError(absl::StrCat("tool \"", tc.name, "\" is not available to execute"));
        streams.EmitOutput(tc, missing);
        rewritten.push_back({{"type", "tool-result"},
                             {"toolCallId", tc.id},
                             {"toolName", tc.name},
                             {"output", ToolResultOutput(missing)}});
        continue;
      }
      approved.push_back(tc);
      approved_slots.push_back(rewritten.size());
      rewritten.push_back(Json());  // filled with the result below
    }
    if (!approved.empty()) {
      if (env_.writable) co_await Room(input.stop);
      auto outputs = co_await streams.Execute(approved, input.stop);
      if (!outputs.has_value()) co_return stopped();
      for (size_t i = 0; i < approved.size(); ++i) {
        rewritten[approved_slots[i]] = {{"type", "tool-result"},
                                        {"toolCallId", approved[i].id},
                                        {"toolName", approved[i].name},
                                        {"output", ToolResultOutput((*outputs)[i])}};
      }
    }
    tail = std::move(rewritten);
  }

  Json tools = Json::array();
  for (const Tool& tool : agent_.tools) {
    tools.push_back({{"name", tool.name},
                     {"description", tool.description},
                     {"inputSchema", tool.input_schema}});
  }

  std::string finish_reason = "stop";
  for (int step = 0; step < agent_.options.max_steps; ++step) {
    const std::string id_prefix = absl::StrCat("s", step_base + step, "-");
    int next_block = 0;
    bool started = false;
    std::string error;
    std::string step_finish = "other";
    absl::flat_hash_map<std::string, std::string> text_ids, reasoning_ids;
    std::vector<std::pair<std::string, std::string>> open_blocks;  // (chunk prefix, ui id)
    std::vector<ModelEvent> calls;
    const size_t parts_before = streams.reducer().message()["parts"].size();

    auto on_event = [&](ModelEvent e) {
      if (!error.empty()) return;  // the call has failed: nothing after that is the answer
      if (JsonDepth(e.provider_metadata, kMaxDataDepth) > kMaxDataDepth) {
        // Only a model written in C++ can send this (a provider's events are parsed within the
        // limit): the call fails as on any other bad event.
        e = ModelEvent::Of(ModelEvent::Type::kError);
        e.error = absl::StrCat("the model sent provider metadata nested deeper than ",
                               kMaxDataDepth, " levels");
      }
      if (!result.timings.model_first_byte.has_value()) {
        result.timings.model_first_byte = env_.clock->Now() - result.timings.model_call_at;
      }
      if (e.type == ModelEvent::Type::kError) {
        // An error as the first event leaves no step behind: `start`, `error` (V7).
        error = e.error.empty() ? "model call failed" : e.error;
        return;
      }
      if (!started) {
        streams.Emit({{"type", "start-step"}});
        started = true;
      }
      auto open = [&](absl::flat_hash_map<std::string, std::string>& ids, const char* kind) {
        std::string ui_id = absl::StrCat(id_prefix, next_block++);
        ids[e.id] = ui_id;
        open_blocks.emplace_back(kind, ui_id);
        Json c = {{"type", absl::StrCat(kind, "-start")}, {"id", ui_id}};
        if (!e.provider_metadata.is_null()) c["providerMetadata"] = e.provider_metadata;
        streams.Emit(std::move(c));
        return ui_id;
      };
      auto close = [&](absl::flat_hash_map<std::string, std::string>& ids, const char* kind) {
        auto it = ids.find(e.id);
        if (it == ids.end()) return;
        Json c = {{"type", absl::StrCat(kind, "-end")}, {"id", it->second}};
        std::erase(open_blocks, std::make_pair(std::string(kind), it->second));
        ids.erase(it);
        streams.Emit(std::move(c));
      };
      switch (e.type) {
        case ModelEvent::Type::kTextStart:
          open(text_ids, "text");
          break;
        case ModelEvent::Type::kReasoningStart:
          open(reasoning_ids, "reasoning");
          break;
        case ModelEvent::Type::kTextDelta:
        case ModelEvent::Type::kReasoningDelta: {
          bool text = e.type == ModelEvent::Type::kTextDelta;
          if (text && e.delta.empty() && e.provider_metadata.is_null()) break;
          auto& ids = text ? text_ids : reasoning_ids;
          auto it = ids.find(e.id);
          std::string ui_id = it != ids.end() ? it->second : open(ids, text ? "text" : "reasoning");
          Json c = {
              {"type", text ? "text-delta" : "reasoning-delta"}, {"id", ui_id}, {"delta", e.delta}};
          if (!e.provider_metadata.is_null()) c["providerMetadata"] = e.provider_metadata;
          streams.Emit(std::move(c));
          break;
        }
        case ModelEvent::Type::kTextEnd:
          close(text_ids, "text");
          break;
        case ModelEvent::Type::kReasoningEnd:
          close(reasoning_ids, "reasoning");
          break;
        case ModelEvent::Type::kToolInputStart:
          streams.Emit(
              {{"type", "tool-input-start"}, {"toolCallId", e.id}, {"toolName", e.tool_name}});
          break;
        case ModelEvent::Type::kToolInputDelta:
          if (e.delta.empty()) break;
          streams.Emit(
              {{"type", "tool-input-delta"}, {"toolCallId", e.id}, {"inputTextDelta", e.delta}});
          break;
        case ModelEvent::Type::kToolCall:
          calls.push_back(std::move(e));
          break;
        case ModelEvent::Type::kFinish:
          step_finish = e.finish_reason.empty() ? "other" : e.finish_reason;
          result.usage += e.usage;
          break;
        case ModelEvent::Type::kError:
          break;  // handled above
      }
    };

    if (env_.writable) co_await Room(input.stop);
    if (input.stop.stop_requested()) co_return stopped();
    ModelCall call{agent_.system, ForProvider(prompt), tools, step, env_.traceparent};
    RoomToWrite room(env_.writable, input.stop);
    if (env_.writable) call.backpressure = &room;
    if (result.timings.model_call_at == absl::InfinitePast()) {
      result.timings.model_call_at = env_.clock->Now();
    }
    std::function<void(ModelEvent)> sink = on_event;  // named: see docs/decisions.md
    co_await agent_.model->Stream(std::move(call), std::move(sink), input.stop);
    if (input.stop.stop_requested()) co_return stopped();

    if (!error.empty()) {
      // A stream that breaks after partial output closes its open parts and says so.
      for (auto it = open_blocks.rbegin(); it != open_blocks.rend(); ++it) {
        streams.Emit({{"type", absl::StrCat(it->first, "-end")}, {"id", it->second}});
      }
      streams.Emit({{"type", "error"}, {"errorText", streams.ErrorText(error)}});
      // Every answer that was started ends like any other, with `finish`, even when the model
      // failed before its first chunk (the AI SDK then ends with `error` alone): a reader, or a
      // later recovery, must never take a failed answer for one still streaming.
      if (started) streams.Emit({{"type", "finish-step"}});
      finish("error");
      result.finish_reason = "error";
      result.error = error;
      result.response = streams.reducer().message();
      co_return result;
    }
    if (!started) {
      streams.Emit({{"type", "start-step"}});
      started = true;
    }
    for (auto it = open_blocks.rbegin(); it != open_blocks.rend(); ++it) {
      streams.Emit({{"type", absl::StrCat(it->first, "-end")}, {"id", it->second}});
    }

    // Tool calls are final only now, at the end of the step (never on JSON that merely parses).
    std::vector<ToolCall> to_execute;
    bool all_answered = true;
    for (const ModelEvent& c : calls) {
      ToolCall tc{c.id, c.tool_name, Json::object(), agent_.FindTool(c.tool_name)};
      absl::Status invalid;
      Json raw_input = c.input;
      if (!c.input.empty()) {
        absl::StatusOr<Json> parsed = ParseJson(c.input, kMaxToolInputDepth);
        if (parsed.ok()) {
          tc.input = *parsed;
          raw_input = *parsed;
        } else {
          invalid = absl::InvalidArgumentError(absl::StrCat("Invalid input for tool ", c.tool_name,
                                                            ": ", parsed.status().message()));
        }
      }
      if (invalid.ok() && tc.tool == nullptr) {
        invalid = absl::NotFoundError(
            absl::StrCat("Model tried to call unavailable tool '", c.tool_name, "'"));
      }
      if (invalid.ok()) {
        absl::Status schema = CheckInput(tc.tool->input_schema, tc.input);
        if (!schema.ok()) {
          invalid = absl::InvalidArgumentError(
              absl::StrCat("Invalid input for tool ", c.tool_name, ": ", schema.message()));
        }
      }
      if (!invalid.ok()) {
        streams.Emit({{"type", "tool-input-error"},
                      {"toolCallId", tc.id},
                      {"toolName", tc.name},
                      {"input", raw_input},
                      {"errorText", std::string(invalid.message())}});
        streams.EmitOutput(tc, invalid);
        continue;
      }
      streams.Emit({{"type", "tool-input-available"},
                    {"toolCallId", tc.id},
                    {"toolName", tc.name},
                    {"input", tc.input}});
      if (tc.tool->needs_approval) {
        streams.Emit({{"type", "tool-approval-request"},
                      {"approvalId", absl::StrCat("approval-", tc.id)},
                      {"toolCallId", tc.id}});
        all_answered = false;
      } else if (!tc.tool->execute) {
        all_answered = false;  // a client-side tool: the client supplies the output
      } else {
        to_execute.push_back(std::move(tc));
      }
    }
    if (!to_execute.empty()) {
      if (env_.writable) co_await Room(input.stop);
      auto outputs = co_await streams.Execute(to_execute, input.stop);
      if (!outputs.has_value()) co_return stopped();
    }
    streams.Emit({{"type", "finish-step"}});
    finish_reason = step_finish;

    // The next step's prompt: this step's parts, converted like any assistant message, with the
    // real tool error texts (the UI may have seen masked ones).
    const Json& parts = streams.reducer().message()["parts"];
    Json step_message = {{"role", "assistant"}, {"parts", Json::array()}};
    for (size_t i = parts_before; i < parts.size(); ++i) step_message["parts"].push_back(parts[i]);
    for (Json& m : UiToModelMessages(step_message)) {
      if (MessageRole(m) == "tool") {
        for (Json& r : m["content"]) {
          auto real = streams.real_errors().find(StringField(r, "toolCallId"));
          if (real != streams.real_errors().end() &&
              StringField(r["output"], "type") == "error-text") {
            r["output"]["value"] = real->second;
          }
        }
      }
      prompt.push_back(std::move(m));
    }
    if (calls.empty() || !all_answered) break;
    if (step + 1 < agent_.options.max_steps && env_.between_steps) {
      StepLoop::Env::Injection injection = co_await env_.between_steps(step + 1);
      if (input.stop.stop_requested()) co_return stopped();
      for (Json& chunk : injection.chunks) streams.Emit(std::move(chunk));
      for (Json& m : injection.messages) prompt.push_back(std::move(m));
    }
  }
  finish(finish_reason);
  result.finish_reason = finish_reason;
  result.response = streams.reducer().message();
  co_return result;
}

}  // namespace baton
