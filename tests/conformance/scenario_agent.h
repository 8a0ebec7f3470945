// File: tests/conformance/scenario_agent.h
//
// The parts of the conformance suite both of its drivers share: the in-process one
// (conformance_test.cc, through the test kit) and the stack one (stack_conformance_test.cc,
// through orchestrator, worker process and fake-llm, whose worker is stack_worker.cc). It builds
// a scenario's agent (its tools and hooks), plays a scenario's steps on a TestKit, and matches
// expectations. The scenario format is described in tests/conformance/README.md.
#ifndef BATON_TESTS_CONFORMANCE_SCENARIO_AGENT_H_
#define BATON_TESTS_CONFORMANCE_SCENARIO_AGENT_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hooks/agent.h"
#include "hooks/json.h"
#include "runtime/testkit/test_kit.h"

namespace baton::conformance {

// Matches `actual` against `expected`: objects by subset (every expected key must match),
// arrays element by element with equal length, strings starting with "$" as variables (bound on
// first use, equal after; "$any" matches anything), everything else by equality.
class Matcher {
 public:
  bool Match(const Json& expected, const Json& actual, const std::string& path, std::string* why);

 private:
  std::map<std::string, Json> vars_;
};

// What a reader that reads `.out` from seq 0 makes of it, as the AI SDK client folds chunks
// (runtime/transcript/ui_reducer.h): `out` is every record in the drivers' form ({"type", "chunk"}
// or
// {"type": "trigger:<subtype>", "headers"}). Each `start` opens a message and `finish` or
// `abort` ends it; a `retract` control record drops the message it names. One entry per
// message: {"id", "parts", "metadata" (when any), "finishReason" (when finished), "end":
// "finish" or "abort" (absent while the message is open)}. InvalidArgument, naming the record,
// for what no reader can fold: a `start` while a message is open, a chunk outside a message
// (an `error` or `data-*` chunk aside), a chunk the reducer refuses (a delta for a part never
// started, a tool result for an unknown call).
absl::StatusOr<Json> ReaderMessages(const Json& out);

// The `.json` files of `dir`, sorted by name.
std::vector<std::string> ScenarioFiles(const std::string& dir);
// A scenario file, parsed.
absl::StatusOr<Json> ReadScenario(const std::string& path);

// Tools scenarios may name. Executions are recorded in `log` (on the pool's threads) as
// "name:callId"; `on_call`, when set, also gets each one as it is recorded.
struct ToolLog {
  absl::Mutex mu;
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);
  std::function<void(const std::string&)> on_call;
};

Tool NamedTool(const std::string& name, ToolLog* log);

// A hook behaviour from the scenario: {"fail": "text"}, {"close": "reason"}, {"upgrade": true},
// {"end_run": true}, {"return": [...]}, {"write": chunk}.
absl::Status Behave(const Json& spec, ChatControl* control);

// The scenario's `agent`: its tools, options and hooks (no model: the driver gives it one).
Agent BuildAgent(const Json& spec, ToolLog* log);

// The scenario's `agent` as the stack runs it: the options of the scenario's `stack` section
// laid over the agent's own, then every timeout option (`*_s`) multiplied by `time_scale`.
Json StackAgentSpec(const Json& scenario, double time_scale);

// Plays one step that is not an `expect` on the kit (`where` names it in failures); false for an
// unknown step.
bool ApplyStep(const Json& step, TestKit& kit, const std::string& where);

}  // namespace baton::conformance

#endif  // BATON_TESTS_CONFORMANCE_SCENARIO_AGENT_H_
