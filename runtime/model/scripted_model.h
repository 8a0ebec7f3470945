// File: runtime/model/scripted_model.h
//
// ScriptedModel: a LanguageModel that plays back scripted responses, one per call, in order, with
// optional delays on the run's clock. It records every call it received. The test kit and the
// offline demo use it; no API key needed.
#ifndef BATON_RUNTIME_MODEL_SCRIPTED_MODEL_H_
#define BATON_RUNTIME_MODEL_SCRIPTED_MODEL_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hooks/model.h"
#include "runtime/exec/clock.h"

namespace baton {

struct ScriptedStep {
  absl::Duration delay = absl::ZeroDuration();  // waited before the event
  ModelEvent event;
};
using ScriptedResponse = std::vector<ScriptedStep>;

// Thread-safety: Push() and calls() are safe from any thread; Stream() runs on a run's executor.
class ScriptedModel final : public LanguageModel {
 public:
  explicit ScriptedModel(Clock& clock) : clock_(clock) {}

  std::string provider() const override { return "scripted"; }
  asio::awaitable<void> Stream(ModelCall call, std::function<void(ModelEvent)> on_event,
                               std::stop_token stop) override;

  // Queues the response for the next call. A call with nothing queued fails with an error event.
  void Push(ScriptedResponse response);
  // Queues a response that `respond` builds from the call when it arrives (e.g. a fixed answer
  // for every call of a benchmark).
  void SetFallback(std::function<ScriptedResponse(const ModelCall&)> respond);
  std::vector<ModelCall> calls() const;

  // Builders for common responses.
  static ScriptedResponse Text(const std::string& text, const std::string& finish = "stop");
  static ScriptedResponse ToolCall(const std::string& id, const std::string& name,
                                   const std::string& input_json, const std::string& text = "");

 private:
  Clock& clock_;
  mutable absl::Mutex mu_;
  std::deque<ScriptedResponse> queued_ ABSL_GUARDED_BY(mu_);
  std::function<ScriptedResponse(const ModelCall&)> fallback_ ABSL_GUARDED_BY(mu_);
  std::vector<ModelCall> calls_ ABSL_GUARDED_BY(mu_);
};

// ParseScript()
//
// A response from its JSON form (used by the conformance scenarios and the demo): an array of
//   {"text": "hi"}                      a text block (one delta), or {"text": ["a", "b"]}
//   {"reasoning": "..", "signature": "sig"}  a reasoning block, with an Anthropic signature
//   {"tool_call": {"id": "c1", "name": "weather", "input": {..}}}   (or "input_text": "..")
//   {"delay_ms": 60}                    a delay before the next event
//   {"finish": "stop"}                  the finish reason (default: tool-calls if any call, else
//   stop)
//   {"error": "Overloaded"}             an error event, ending the call
absl::StatusOr<ScriptedResponse> ParseScript(const Json& script);

}  // namespace baton

#endif  // BATON_RUNTIME_MODEL_SCRIPTED_MODEL_H_
