#include "runtime/model/scripted_model.h"

#include "absl/strings/str_cat.h"
#include "asio/this_coro.hpp"
#include "runtime/exec/waiter.h"

namespace baton {
namespace {

void AddText(ScriptedResponse& r, const std::string& block,
             const std::vector<std::string>& deltas) {
  r.push_back({absl::ZeroDuration(), ModelEvent::Of(ModelEvent::Type::kTextStart, block)});
  for (const std::string& d : deltas) {
    ModelEvent e = ModelEvent::Of(ModelEvent::Type::kTextDelta, block);
    e.delta = d;
    r.push_back({absl::ZeroDuration(), std::move(e)});
  }
  r.push_back({absl::ZeroDuration(), ModelEvent::Of(ModelEvent::Type::kTextEnd, block)});
}

void AddToolCall(ScriptedResponse& r, const std::string& id, const std::string& name,
                 const std::string& input) {
  ModelEvent start = ModelEvent::Of(ModelEvent::Type::kToolInputStart, id);
  start.tool_name = name;
  r.push_back({absl::ZeroDuration(), std::move(start)});
  if (!input.empty()) {
    ModelEvent delta = ModelEvent::Of(ModelEvent::Type::kToolInputDelta, id);
    delta.delta = input;
    r.push_back({absl::ZeroDuration(), std::move(delta)});
  }
  ModelEvent call = ModelEvent::Of(ModelEvent::Type::kToolCall, id);
  call.tool_name = name;
  call.input = input;
  r.push_back({absl::ZeroDuration(), std::move(call)});
}

void AddFinish(ScriptedResponse& r, const std::string& reason) {
  ModelEvent e = ModelEvent::Of(ModelEvent::Type::kFinish);
  e.finish_reason = reason;
  e.usage.input_tokens = 10;
  e.usage.output_tokens = 5;
  r.push_back({absl::ZeroDuration(), std::move(e)});
}

}  // namespace

ScriptedResponse ScriptedModel::Text(const std::string& text, const std::string& finish) {
  ScriptedResponse r;
  AddText(r, "0", {text});
  AddFinish(r, finish);
  return r;
}

ScriptedResponse ScriptedModel::ToolCall(const std::string& id, const std::string& name,
                                         const std::string& input_json, const std::string& text) {
  ScriptedResponse r;
  if (!text.empty()) AddText(r, "0", {text});
  AddToolCall(r, id, name, input_json);
  AddFinish(r, "tool-calls");
  return r;
}

void ScriptedModel::Push(ScriptedResponse response) {
  absl::MutexLock lock(&mu_);
  queued_.push_back(std::move(response));
}

void ScriptedModel::SetFallback(std::function<ScriptedResponse(const ModelCall&)> respond) {
  absl::MutexLock lock(&mu_);
  fallback_ = std::move(respond);
}

std::vector<ModelCall> ScriptedModel::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

asio::awaitable<void> ScriptedModel::Stream(ModelCall call,
                                            std::function<void(ModelEvent)> on_event,
                                            std::stop_token stop) {
  ScriptedResponse response;
  std::function<ScriptedResponse(const ModelCall&)> fallback;
  {
    absl::MutexLock lock(&mu_);
    calls_.push_back(call);
    if (!queued_.empty()) {
      response = std::move(queued_.front());
      queued_.pop_front();
    } else if (fallback_) {
      fallback = fallback_;  // called outside the lock: it may Push() or read calls()
    } else {
      ModelEvent error = ModelEvent::Of(ModelEvent::Type::kError);
      error.error = absl::StrCat("scripted model: no response queued for call ", calls_.size());
      response.push_back({absl::ZeroDuration(), std::move(error)});
    }
  }
  if (fallback) response = fallback(call);
  Waiter waiter(co_await asio::this_coro::executor, clock_);
  for (ScriptedStep& step : response) {
    if (step.delay > absl::ZeroDuration()) {
      Waiter::Result woke = co_await waiter.Wait(clock_.Now() + step.delay, stop);
      if (woke == Waiter::Result::kStopped) co_return;
    }
    if (stop.stop_requested()) co_return;
    if (call.backpressure != nullptr) {
      co_await call.backpressure->WaitForRoom();
      if (stop.stop_requested()) co_return;
    }
    bool last =
        step.event.type == ModelEvent::Type::kFinish || step.event.type == ModelEvent::Type::kError;
    on_event(std::move(step.event));
    if (last) co_return;
  }
  ModelEvent error = ModelEvent::Of(ModelEvent::Type::kError);
  error.error = "scripted model: response ended without a finish";
  on_event(std::move(error));
}

absl::StatusOr<ScriptedResponse> ParseScript(const Json& script) {
  if (!script.is_array()) return absl::InvalidArgumentError("a script is an array of entries");
  ScriptedResponse r;
  absl::Duration pending_delay = absl::ZeroDuration();
  bool has_call = false, has_end = false;
  int block = 0;
  for (const Json& entry : script) {
    size_t before = r.size();
    if (const Json* text = FindField(entry, "text")) {
      std::vector<std::string> deltas;
      if (text->is_string()) deltas.push_back(*text);
      if (text->is_array()) {
        for (const Json& d : *text) deltas.push_back(d.is_string() ? d.get<std::string>() : "");
      }
      AddText(r, absl::StrCat(block++), deltas);
    } else if (const Json* reasoning = FindField(entry, "reasoning")) {
      std::string id = absl::StrCat(block++);
      r.push_back({absl::ZeroDuration(), ModelEvent::Of(ModelEvent::Type::kReasoningStart, id)});
      ModelEvent d = ModelEvent::Of(ModelEvent::Type::kReasoningDelta, id);
      d.delta = reasoning->is_string() ? reasoning->get<std::string>() : "";
      r.push_back({absl::ZeroDuration(), std::move(d)});
      if (std::string sig = StringField(entry, "signature"); !sig.empty()) {
        ModelEvent s = ModelEvent::Of(ModelEvent::Type::kReasoningDelta, id);
        s.provider_metadata = Json{{"anthropic", {{"signature", sig}}}};
        r.push_back({absl::ZeroDuration(), std::move(s)});
      }
      r.push_back({absl::ZeroDuration(), ModelEvent::Of(ModelEvent::Type::kReasoningEnd, id)});
    } else if (const Json* call = FindField(entry, "tool_call")) {
      std::string input = call->contains("input_text") ? StringField(*call, "input_text")
                          : call->contains("input")    ? DumpJson((*call)["input"])
                                                       : "";
      AddToolCall(r, StringField(*call, "id"), StringField(*call, "name"), input);
      has_call = true;
    } else if (const Json* delay = FindField(entry, "delay_ms"); delay && delay->is_number()) {
      pending_delay += absl::Milliseconds(delay->get<double>());
    } else if (const Json* finish = FindField(entry, "finish")) {
      AddFinish(r, finish->is_string() ? finish->get<std::string>() : "stop");
      has_end = true;
    } else if (const Json* error = FindField(entry, "error")) {
      ModelEvent e = ModelEvent::Of(ModelEvent::Type::kError);
      e.error = error->is_string() ? error->get<std::string>() : "error";
      r.push_back({absl::ZeroDuration(), std::move(e)});
      has_end = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown script entry ", DumpJson(entry)));
    }
    if (r.size() > before) {
      r[before].delay = pending_delay;
      pending_delay = absl::ZeroDuration();
    }
  }
  if (!has_end) AddFinish(r, has_call ? "tool-calls" : "stop");
  if (pending_delay > absl::ZeroDuration()) r.back().delay += pending_delay;
  return r;
}

}  // namespace baton
