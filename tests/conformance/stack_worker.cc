// conformance-worker: a baton worker (WorkerMain, with all of its flags) that hosts one
// conformance scenario's agent under the name "scenario", for stack_conformance_test.cc.
//
//   conformance-worker --scenario FILE [--scripted_model] [--time_scale X] <baton-worker flags>
//
// The agent is the scenario's, with the options of its `stack` section laid over its own (real
// timeouts short enough for a test where the scenario's fake clock jumps a minute), every
// timeout then multiplied by --time_scale (the driver's next attempt when a machine was too
// slow to observe a state before a timer ended it: see stack_conformance_test.cc).
//
// The agent's model is the one the worker flags describe (the test points it at fake-llm, which
// plays the scenario's `model` scripts), or with --scripted_model an in-process ScriptedModel
// playing them, on the real clock. Besides the lifecycle points the worker writes to --hook_log,
// every tool execution is written there as {"hook": "$tool", "args": "name:callId"}, and with
// --scripted_model every model call as {"hook": "$model", "args": {"messages", "system"}}.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/synchronization/mutex.h"
#include "hooks/json.h"
#include "runtime/exec/clock.h"
#include "runtime/model/scripted_model.h"
#include "runtime/worker/worker_main.h"
#include "tests/conformance/scenario_agent.h"

ABSL_DECLARE_FLAG(std::string, hook_log);
ABSL_FLAG(std::string, scenario, "", "the conformance scenario file whose agent to host");
ABSL_FLAG(bool, scripted_model, false,
          "play the scenario's model scripts in-process instead of using the flags' provider");
ABSL_FLAG(double, time_scale, 1.0,
          "multiply the agent's timeouts (after the scenario's stack options) by this");

namespace baton::conformance {
namespace {

// Extra lines for the hook log, each written with one write() (atomic on a FIFO: they do not
// interleave with the worker's own lines).
class ExtraLog {
 public:
  explicit ExtraLog(const std::string& path) {
    if (!path.empty()) fd_ = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  }
  void Write(const std::string& hook, const Json& args) {
    if (fd_ < 0) return;
    std::string line = DumpJson(Json{{"run_id", ""}, {"hook", hook}, {"args", args}}) + "\n";
    absl::MutexLock lock(&mu_);
    (void)!write(fd_, line.data(), line.size());
  }

 private:
  absl::Mutex mu_;
  int fd_ = -1;
};

// Reports each call to the log, then plays the scripted model.
class LoggedModel final : public LanguageModel {
 public:
  LoggedModel(std::shared_ptr<LanguageModel> inner, ExtraLog* log)
      : inner_(std::move(inner)), log_(log) {}
  std::string provider() const override { return inner_->provider(); }
  asio::awaitable<void> Stream(ModelCall call, std::function<void(ModelEvent)> on_event,
                               std::stop_token stop) override {
    log_->Write("$model", Json{{"messages", call.messages}, {"system", call.system}});
    co_await inner_->Stream(std::move(call), std::move(on_event), std::move(stop));
  }

 private:
  std::shared_ptr<LanguageModel> inner_;
  ExtraLog* log_;
};

}  // namespace
}  // namespace baton::conformance

int main(int argc, char** argv) {
  using namespace baton;
  using namespace baton::conformance;
  // Outlive the worker: its runs use them until WorkerMain returns.
  static RealClock clock;
  static ToolLog tools;
  static std::unique_ptr<ExtraLog> extra;
  return WorkerMain(argc, argv, [](WorkerSetup& setup) {
    extra = std::make_unique<ExtraLog>(absl::GetFlag(FLAGS_hook_log));
    absl::StatusOr<Json> scenario = ReadScenario(absl::GetFlag(FLAGS_scenario));
    if (!scenario.ok()) {
      std::fprintf(stderr, "conformance-worker: %s\n", scenario.status().ToString().c_str());
      std::exit(2);
    }
    tools.on_call = [](const std::string& call) { extra->Write("$tool", call); };
    Agent agent = BuildAgent(StackAgentSpec(*scenario, absl::GetFlag(FLAGS_time_scale)), &tools);
    if (absl::GetFlag(FLAGS_scripted_model)) {
      auto model = std::make_shared<ScriptedModel>(clock);
      for (const Json& script : scenario->value("model", Json::array())) {
        absl::StatusOr<ScriptedResponse> response = ParseScript(script);
        if (!response.ok()) {
          std::fprintf(stderr, "conformance-worker: %s\n", response.status().ToString().c_str());
          std::exit(2);
        }
        model->Push(*std::move(response));
      }
      agent.model = std::make_shared<LoggedModel>(model, extra.get());
    } else {
      agent.model = setup.Model();
    }
    setup.Add("scenario", std::move(agent));
  });
}
