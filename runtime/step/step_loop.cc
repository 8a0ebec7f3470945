#include "runtime/step/step_loop.h"

#include <algorithm>
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
#include "runtime/transcript/ui_chunk.h"
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

// The assistant message the turn writes into: the one it continues, or a new one.
Json StartMessage(const StepLoopInput& input) {
  if (!input.continued.is_null()) return input.continued;
  return Json{{"id", input.message_id}, {"role", "assistant"}, {"parts", Json::array()}};
}

// The agent's tools as a model call lists them.
Json ToolsForModel(const Agent& agent) {
  Json tools = Json::array();
  for (const Tool& tool : agent.tools) {
    tools.push_back({{"name", tool.name},
                     {"description", tool.description},
                     {"inputSchema", tool.input_schema}});
  }
  return tools;
}

// A `tool-result` part of a tool message, for the prompt.
Json ToolResultPart(const ToolCall& call, Json output) {
  return Json{{"type", "tool-result"},
              {"toolCallId", call.id},
              {"toolName", call.name},
              {"output", std::move(output)}};
}

// The prompt's pending approvals: the call each approval asks about, and the calls by id.
struct ApprovalIndex {
  absl::flat_hash_map<std::string, std::string> approval_to_call;
  absl::flat_hash_map<std::string, ToolCall> calls_by_id;

  // The call `approval_id` asks about, or null.
  const ToolCall* Find(const std::string& approval_id) const {
    auto call_id = approval_to_call.find(approval_id);
    if (call_id == approval_to_call.end()) return nullptr;
    auto call = calls_by_id.find(call_id->second);
    return call == calls_by_id.end() ? nullptr : &call->second;
  }
};

ApprovalIndex IndexApprovals(const Agent& agent, const MessageList& prompt) {
  ApprovalIndex index;
  for (const Json& m : prompt) {
    const Json* content = FindField(m, "content");
    if (MessageRole(m) != "assistant" || content == nullptr || !content->is_array()) continue;
    for (const Json& c : *content) {
      std::string type = StringField(c, "type");
      if (type == "tool-approval-request") {
        index.approval_to_call[StringField(c, "approvalId")] = StringField(c, "toolCallId");
      } else if (type == "tool-call") {
        std::string name = StringField(c, "toolName");
        const Json* call_input = FindField(c, "input");
        index.calls_by_id[StringField(c, "toolCallId")] = ToolCall{
            StringField(c, "toolCallId"), name,
            call_input != nullptr && call_input->is_object() ? *call_input : Json::object(),
            agent.FindTool(name)};
      }
    }
  }
  return index;
}

// A tool call the model made, checked at the end of its step: the input parsed and matched
// against the tool's schema.
struct CheckedCall {
  ToolCall call;
  Json raw_input;        // the input as the `tool-input-error` chunk shows it
  absl::Status invalid;  // why the call cannot run; ok when it can
};

CheckedCall CheckToolCall(const Agent& agent, const ModelEvent& c) {
  CheckedCall checked{ToolCall{c.id, c.tool_name, Json::object(), agent.FindTool(c.tool_name)},
                      c.input, absl::OkStatus()};
  ToolCall& tc = checked.call;
  if (!c.input.empty()) {
    absl::StatusOr<Json> parsed = ParseJson(c.input, kMaxToolInputDepth);
    if (parsed.ok()) {
      tc.input = *parsed;
      checked.raw_input = *parsed;
    } else {
      checked.invalid = absl::InvalidArgumentError(
          absl::StrCat("Invalid input for tool ", c.tool_name, ": ", parsed.status().message()));
    }
  }
  if (checked.invalid.ok() && tc.tool == nullptr) {
    checked.invalid = absl::NotFoundError(
        absl::StrCat("Model tried to call unavailable tool '", c.tool_name, "'"));
  }
  if (checked.invalid.ok()) {
    absl::Status schema = CheckInput(tc.tool->input_schema, tc.input);
    if (!schema.ok()) {
      checked.invalid = absl::InvalidArgumentError(
          absl::StrCat("Invalid input for tool ", c.tool_name, ": ", schema.message()));
    }
  }
  return checked;
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
  void Emit(const Json& chunk) {
    absl::Status s = reducer_.Apply(chunk);
    if (!s.ok()) return Dropped(s);
    std::string why;
    std::string text = DumpChunk(chunk, &why);
    if (!why.empty()) std::fprintf(stderr, "baton: %s\n", why.c_str());
    env_.emit(std::move(text));
  }

  // The chunks a turn writes most, straight to text (no tree): `start-step` or `finish-step`.
  void EmitStep(bool start) {
    if (start) {
      reducer_.StartStep();
    } else {
      reducer_.FinishStep();
    }
    env_.emit(ChunkText(start ? "start-step" : "finish-step"));
  }

  // `text-start` or `reasoning-start`, `-delta`, `-end`, without provider metadata.
  void EmitOpen(bool text, std::string_view id) {
    reducer_.OpenBlock(text, id);
    env_.emit(ChunkText(text ? "text-start" : "reasoning-start", {{"id", id}}));
  }
  void EmitDelta(bool text, std::string_view id, std::string_view delta) {
    absl::Status s = reducer_.AppendDelta(text, id, delta);
    if (!s.ok()) return Dropped(s);
    env_.emit(ChunkText(text ? "text-delta" : "reasoning-delta", {{"id", id}, {"delta", delta}}));
  }
  void EmitClose(bool text, std::string_view id) {
    absl::Status s = reducer_.CloseBlock(text, id);
    if (!s.ok()) return Dropped(s);
    env_.emit(ChunkText(text ? "text-end" : "reasoning-end", {{"id", id}}));
  }

  static void Dropped(const absl::Status& s) {
    std::fprintf(stderr, "baton: dropped an ill-formed chunk: %s\n",
                 std::string(s.message()).c_str());
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

namespace {

// One step's model call: its events become UI chunks as they come. Text and reasoning blocks
// get ids from the step's number (`s<n>-<block>`), so a continued message's ids do not repeat.
struct ModelStep {
  ModelStep(TurnStreams& streams, StepLoopResult& result, const Clock& clock, int index,
            int ui_step)
      : streams(streams),
        result(result),
        clock(clock),
        index(index),
        id_prefix(absl::StrCat("s", ui_step, "-")),
        parts_before(streams.reducer().message()["parts"].size()) {}

  // The model's event `e`, as the call's sink receives it.
  void OnEvent(ModelEvent e) {
    if (!error.empty()) return;  // the call has failed: nothing after that is the answer
    if (JsonDepth(e.provider_metadata, kMaxDataDepth) > kMaxDataDepth) {
      // Only a model written in C++ can send this (a provider's events are parsed within the
      // limit): the call fails as on any other bad event.
      e = ModelEvent::Of(ModelEvent::Type::kError);
      e.error = absl::StrCat("the model sent provider metadata nested deeper than ", kMaxDataDepth,
                             " levels");
    }
    if (!result.timings.model_first_byte.has_value()) {
      result.timings.model_first_byte = clock.Now() - result.timings.model_call_at;
    }
    if (e.type == ModelEvent::Type::kError) {
      // An error as the first event leaves no step behind: `start`, `error` (V7).
      error = e.error.empty() ? "model call failed" : e.error;
      return;
    }
    Start();
    Translate(std::move(e));
  }

  // Writes `start-step`, once.
  void Start() {
    if (started) return;
    streams.EmitStep(true);
    started = true;
  }

  // Ends the blocks still open, the last opened first.
  void EndOpenBlocks() {
    for (auto it = open_blocks.rbegin(); it != open_blocks.rend(); ++it) {
      streams.EmitClose(it->first, it->second);
    }
  }

  TurnStreams& streams;
  StepLoopResult& result;  // usage and the model timings
  const Clock& clock;
  const int index;  // 0-based step within the turn
  const std::string id_prefix;
  const size_t parts_before;  // the message's parts before this step's
  int next_block = 0;
  bool started = false;  // `start-step` written
  std::string error;     // the model call failed: why
  std::string finish_reason = "other";
  absl::flat_hash_map<std::string, std::string> text_ids, reasoning_ids;  // event id -> ui id
  std::vector<std::pair<bool, std::string>> open_blocks;                  // (text, ui id)
  std::vector<ModelEvent> calls;                                          // the step's tool calls

 private:
  // An event past the first checks, as UI chunks.
  void Translate(ModelEvent e) {
    switch (e.type) {
      case ModelEvent::Type::kTextStart:
        Open(text_ids, true, e);
        break;
      case ModelEvent::Type::kReasoningStart:
        Open(reasoning_ids, false, e);
        break;
      case ModelEvent::Type::kTextDelta:
      case ModelEvent::Type::kReasoningDelta:
        Delta(e);
        break;
      case ModelEvent::Type::kTextEnd:
        Close(text_ids, true, e);
        break;
      case ModelEvent::Type::kReasoningEnd:
        Close(reasoning_ids, false, e);
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
        finish_reason = e.finish_reason.empty() ? "other" : e.finish_reason;
        result.usage += e.usage;
        break;
      case ModelEvent::Type::kError:
        break;  // handled in OnEvent
    }
  }

  // Opens a text or reasoning block for event `e`; returns its UI id.
  std::string Open(absl::flat_hash_map<std::string, std::string>& ids, bool text,
                   const ModelEvent& e) {
    std::string ui_id = absl::StrCat(id_prefix, next_block++);
    ids[e.id] = ui_id;
    open_blocks.emplace_back(text, ui_id);
    if (e.provider_metadata.is_null()) {
      streams.EmitOpen(text, ui_id);
    } else {
      streams.Emit({{"type", text ? "text-start" : "reasoning-start"},
                    {"id", ui_id},
                    {"providerMetadata", e.provider_metadata}});
    }
    return ui_id;
  }

  void Close(absl::flat_hash_map<std::string, std::string>& ids, bool text, const ModelEvent& e) {
    auto it = ids.find(e.id);
    if (it == ids.end()) return;
    std::string ui_id = std::move(it->second);
    std::erase(open_blocks, std::make_pair(text, ui_id));
    ids.erase(it);
    streams.EmitClose(text, ui_id);
  }

  // A text or reasoning delta; opens its block when the model sent no start.
  void Delta(const ModelEvent& e) {
    bool text = e.type == ModelEvent::Type::kTextDelta;
    if (text && e.delta.empty() && e.provider_metadata.is_null()) return;
    auto& ids = text ? text_ids : reasoning_ids;
    auto it = ids.find(e.id);
    std::string ui_id = it != ids.end() ? it->second : Open(ids, text, e);
    if (e.provider_metadata.is_null()) {
      streams.EmitDelta(text, ui_id, e.delta);
    } else {
      streams.Emit({{"type", text ? "text-delta" : "reasoning-delta"},
                    {"id", ui_id},
                    {"delta", e.delta},
                    {"providerMetadata", e.provider_metadata}});
    }
  }
};

// One Run(): its input, the prompt as the steps add to it, the result, and the pieces Run()
// calls in order. Lives in Run()'s coroutine frame. The awaiting pieces return false (or
// nullopt) when the turn's stop came; Run() then returns Stopped().
class StepLoopTurn {
 public:
  StepLoopTurn(const Agent& agent, const StepLoop::Env& env, StepLoopInput input,
               Json start_message)
      : agent_(agent),
        env_(env),
        input_(std::move(input)),
        prompt_(std::move(input_.prompt)),
        provider_prompt_(std::move(input_.provider_prompt)),
        provider_covers_(std::min(input_.provider_covers, prompt_.size())),
        step_base_(StepsIn(start_message)),
        streams_(agent, env, std::move(start_message)) {}

  // Writes the message's `start`, unless it is on `.out` already.
  void Start() {
    if (!input_.started) streams_.Emit({{"type", "start"}, {"messageId", input_.message_id}});
  }

  // Pending approvals at the end of the prompt: writes the denials and executes the approved
  // calls, before any model call; their results replace the approvals in the prompt.
  asio::awaitable<bool> ResolveApprovals() {
    if (prompt_.empty() || MessageRole(prompt_.back()) != "tool") co_return true;
    ApprovalIndex index = IndexApprovals(agent_, prompt_);
    Json& last = prompt_.MutableBack();
    // The provider's copy of the history, when it holds this message, holds it as it was.
    if (provider_covers_ == prompt_.size()) ProviderFromScratch();
    if (!last.contains("content")) last["content"] = Json::array();
    Json& tail = last["content"];
    ApprovalAnswers answers = AnswerApprovals(index, tail);
    if (!answers.approved.empty()) {
      auto outputs = co_await Execute(answers.approved);
      if (!outputs.has_value()) co_return false;
      for (size_t i = 0; i < answers.approved.size(); ++i) {
        answers.rewritten[answers.slots[i]] =
            ToolResultPart(answers.approved[i], ToolResultOutput((*outputs)[i]));
      }
    }
    tail = std::move(answers.rewritten);
    co_return true;
  }

  // Step `index`, its model call not yet made.
  ModelStep NewStep(int index) {
    return ModelStep(streams_, result_, *env_.clock, index, step_base_ + index);
  }

  // The step's model call, once the run's output has room; its events go to `step`.
  asio::awaitable<bool> CallModel(ModelStep& step, const Json& tools) {
    if (env_.writable) co_await Room();
    if (input_.stop.stop_requested()) co_return false;
    ModelCall call{agent_.system, ProviderPrompt(), tools, step.index, env_.traceparent};
    RoomToWrite room(env_.writable, input_.stop);
    if (env_.writable) call.backpressure = &room;
    if (result_.timings.model_call_at == absl::InfinitePast()) {
      result_.timings.model_call_at = env_.clock->Now();
    }
    // Named: see docs/decisions.md.
    std::function<void(ModelEvent)> sink = [&step](ModelEvent e) { step.OnEvent(std::move(e)); };
    co_await agent_.model->Stream(std::move(call), std::move(sink), input_.stop);
    co_return !input_.stop.stop_requested();
  }

  // The turn's end after a failed model call: a stream that breaks after partial output closes
  // its open parts and says so.
  StepLoopResult Failed(ModelStep& step) {
    step.EndOpenBlocks();
    streams_.Emit({{"type", "error"}, {"errorText", streams_.ErrorText(step.error)}});
    // Every answer that was started ends like any other, with `finish`, even when the model
    // failed before its first chunk (the AI SDK then ends with `error` alone): a reader, or a
    // later recovery, must never take a failed answer for one still streaming.
    if (step.started) streams_.EmitStep(false);
    EmitFinish("error");
    result_.finish_reason = "error";
    result_.error = step.error;
    result_.response = streams_.reducer().TakeMessage();
    return std::move(result_);
  }

  // The step's tool calls, final only now, at the end of the step (never on JSON that merely
  // parses): each is written as an input error, an approval request, a client-side call or a
  // call to execute.
  struct StepCalls {
    std::vector<ToolCall> to_execute;
    bool all_answered = true;  // every call has an output once `to_execute` ran
  };
  StepCalls AnswerToolCalls(const std::vector<ModelEvent>& calls) {
    StepCalls out;
    for (const ModelEvent& c : calls) {
      CheckedCall checked = CheckToolCall(agent_, c);
      ToolCall& tc = checked.call;
      if (!checked.invalid.ok()) {
        streams_.Emit({{"type", "tool-input-error"},
                       {"toolCallId", tc.id},
                       {"toolName", tc.name},
                       {"input", checked.raw_input},
                       {"errorText", std::string(checked.invalid.message())}});
        streams_.EmitOutput(tc, checked.invalid);
        continue;
      }
      streams_.Emit({{"type", "tool-input-available"},
                     {"toolCallId", tc.id},
                     {"toolName", tc.name},
                     {"input", tc.input}});
      if (tc.tool->needs_approval) {
        streams_.Emit({{"type", "tool-approval-request"},
                       {"approvalId", absl::StrCat("approval-", tc.id)},
                       {"toolCallId", tc.id}});
        out.all_answered = false;
      } else if (!tc.tool->execute) {
        out.all_answered = false;  // a client-side tool: the client supplies the output
      } else {
        out.to_execute.push_back(std::move(tc));
      }
    }
    return out;
  }

  // Runs `calls` on the pool once the run's output has room; their outputs are written as
  // they complete (TurnStreams::Execute).
  asio::awaitable<std::optional<std::vector<absl::StatusOr<Json>>>> Execute(
      const std::vector<ToolCall>& calls) {
    if (env_.writable) co_await Room();
    co_return co_await streams_.Execute(calls, input_.stop);
  }

  void EndStep() { streams_.EmitStep(false); }

  // The next step's prompt: this step's parts, converted like any assistant message, with the
  // real tool error texts (the UI may have seen masked ones).
  void AddStepToPrompt(const ModelStep& step) {
    Json added = Json::array();
    AssistantPartsToModelMessages(streams_.reducer().message()["parts"], step.parts_before, added);
    for (Json& m : added) {
      if (MessageRole(m) == "tool") {
        for (Json& r : m["content"]) {
          auto real = streams_.real_errors().find(StringField(r, "toolCallId"));
          if (real != streams_.real_errors().end() &&
              StringField(r["output"], "type") == "error-text") {
            r["output"]["value"] = real->second;
          }
        }
      }
      prompt_.push_back(std::move(m));
    }
  }

  // Env::between_steps, before step `next_step`: what it returns joins the turn.
  asio::awaitable<bool> Inject(int next_step) {
    StepLoop::Env::Injection injection = co_await env_.between_steps(next_step);
    if (input_.stop.stop_requested()) co_return false;
    for (Json& chunk : injection.chunks) streams_.Emit(std::move(chunk));
    for (Json& m : injection.messages) prompt_.push_back(std::move(m));
    co_return true;
  }

  // The turn's end: `finish`, and the result.
  StepLoopResult Finished(const std::string& finish_reason) {
    EmitFinish(finish_reason);
    result_.finish_reason = finish_reason;
    result_.response = streams_.reducer().TakeMessage();
    return std::move(result_);
  }

  // The turn's end when its stop came: `abort`, and the result so far.
  StepLoopResult Stopped() {
    streams_.Emit({{"type", "abort"}});
    result_.stopped = true;
    result_.timings.tools = streams_.tools();
    result_.response = streams_.reducer().TakeMessage();
    return std::move(result_);
  }

 private:
  // The approval responses of the prompt's last message, answered: denials and calls that cannot
  // run become results, approved calls await execution.
  struct ApprovalAnswers {
    Json rewritten = Json::array();  // the tool message's new content
    std::vector<ToolCall> approved;  // to execute
    std::vector<size_t> slots;       // where each approved call's result goes in `rewritten`
  };
  ApprovalAnswers AnswerApprovals(const ApprovalIndex& index, const Json& tail) {
    ApprovalAnswers out;
    for (const Json& c : tail.is_array() ? tail : Json::array()) {
      if (StringField(c, "type") != "tool-approval-response") {
        out.rewritten.push_back(c);
        continue;
      }
      const ToolCall* call = index.Find(StringField(c, "approvalId"));
      if (call == nullptr) continue;
      const ToolCall& tc = *call;
      if (!BoolField(c, "approved")) {
        streams_.Emit({{"type", "tool-output-denied"}, {"toolCallId", tc.id}});
        Json output = {{"type", "execution-denied"}};
        if (const Json* reason = FindField(c, "reason")) output["reason"] = *reason;
        out.rewritten.push_back(ToolResultPart(tc, std::move(output)));
        continue;
      }
      if (tc.tool == nullptr || !tc.tool->execute) {
        absl::Status missing =
            absl::NotFoundError(absl::StrCat("tool \"", tc.name, "\" is not available to execute"));
        streams_.EmitOutput(tc, missing);
        out.rewritten.push_back(ToolResultPart(tc, ToolResultOutput(missing)));
        continue;
      }
      out.approved.push_back(tc);
      out.slots.push_back(out.rewritten.size());
      out.rewritten.push_back(Json());  // filled with the result once executed
    }
    return out;
  }

  // Every `finish` of the turn carries its metadata (the turn timings), made as it is written.
  void EmitFinish(const std::string& reason) {
    result_.timings.tools = streams_.tools();
    Json chunk = {{"type", "finish"}, {"finishReason", reason}};
    if (input_.finish_metadata) {
      Json metadata = input_.finish_metadata(result_.timings);
      if (!metadata.is_null()) chunk["messageMetadata"] = std::move(metadata);
    }
    streams_.Emit(std::move(chunk));
  }

  // Waits for Env::writable.
  asio::awaitable<void> Room() { co_await env_.writable(input_.stop); }

  // The prompt as a provider takes it: the provider's copy of the history the input came with,
  // then the rest of the prompt filtered (ForProvider).
  MessageList ProviderPrompt() const {
    MessageList out = provider_prompt_;
    for (size_t i = provider_covers_; i < prompt_.size(); ++i) {
      if (std::optional<Json> m = ForProvider(prompt_[i])) out.push_back(*std::move(m));
    }
    return out;
  }

  // Drops the provider's copy: every model call filters the whole prompt.
  void ProviderFromScratch() {
    provider_prompt_ = MessageList();
    provider_covers_ = 0;
  }

  const Agent& agent_;
  const StepLoop::Env& env_;
  StepLoopInput input_;  // its prompt moved to prompt_, its provider prompt to provider_prompt_
  MessageList prompt_;   // model messages: the input's, then each step's
  MessageList provider_prompt_;  // the first provider_covers_ of prompt_, as a provider takes them
  size_t provider_covers_;
  const int step_base_;  // steps the continued message holds already
  TurnStreams streams_;
  StepLoopResult result_;
};

}  // namespace

// A turn: `start`, the approvals pending at the end of the prompt, then steps (a model call and
// the tools it called) while every call has an output, then `finish`.
asio::awaitable<StepLoopResult> StepLoop::Run(StepLoopInput input) {
  Json start_message = StartMessage(input);
  StepLoopTurn turn(agent_, env_, std::move(input), std::move(start_message));
  turn.Start();
  if (!co_await turn.ResolveApprovals()) co_return turn.Stopped();
  const Json tools = ToolsForModel(agent_);
  std::string finish_reason = "stop";
  for (int index = 0; index < agent_.options.max_steps; ++index) {
    ModelStep step = turn.NewStep(index);
    if (!co_await turn.CallModel(step, tools)) co_return turn.Stopped();
    if (!step.error.empty()) co_return turn.Failed(step);
    step.Start();
    step.EndOpenBlocks();
    StepLoopTurn::StepCalls calls = turn.AnswerToolCalls(step.calls);
    if (!calls.to_execute.empty()) {
      auto outputs = co_await turn.Execute(calls.to_execute);
      if (!outputs.has_value()) co_return turn.Stopped();
    }
    turn.EndStep();
    finish_reason = step.finish_reason;
    turn.AddStepToPrompt(step);
    if (step.calls.empty() || !calls.all_answered) break;
    if (index + 1 < agent_.options.max_steps && env_.between_steps) {
      if (!co_await turn.Inject(index + 1)) co_return turn.Stopped();
    }
  }
  co_return turn.Finished(finish_reason);
}

}  // namespace baton
