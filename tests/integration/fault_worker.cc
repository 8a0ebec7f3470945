// fault-worker: a baton worker (WorkerMain, with all of its flags) hosting agents whose tools
// misbehave on purpose, for the fault tests of recovery_test.cc.
//
//   chat   answers in text (no tools)
//   tools  two tools; each takes {"gate": PATH} and runs until the file PATH exists:
//            block  waits, checking now and then (a tool stuck on I/O or a lock)
//            spin   spins on the CPU, ignoring its stop token (a tool stuck in a busy loop)
//          and returns {"tool": name, "released": true}.
//
// Besides the lifecycle points the worker writes to --hook_log, each tool execution is written
// there when it starts and when it returns, as {"hook": "$tool", "args": {"name", "callId",
// "phase": "start" | "done"}}: the tests wait on those lines.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/synchronization/mutex.h"
#include "hooks/json.h"
#include "runtime/worker/worker_main.h"

ABSL_DECLARE_FLAG(std::string, hook_log);

namespace baton::faults {
namespace {

// Extra lines for the hook log, each written with one write() (atomic on a FIFO: they do not
// interleave with the worker's own lines).
class ToolLog {
 public:
  explicit ToolLog(const std::string& path) {
    if (!path.empty()) fd_ = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  }
  void Write(const std::string& name, const std::string& call_id, const std::string& phase) {
    if (fd_ < 0) return;
    Json args = {{"name", name}, {"callId", call_id}, {"phase", phase}};
    std::string line = DumpJson(Json{{"run_id", ""}, {"hook", "$tool"}, {"args", args}}) + "\n";
    absl::MutexLock lock(&mu_);
    (void)!write(fd_, line.data(), line.size());
  }

 private:
  absl::Mutex mu_;
  int fd_ = -1;
};

bool Exists(const std::string& path) { return !path.empty() && access(path.c_str(), F_OK) == 0; }

Tool GatedTool(const std::string& name, bool spin, ToolLog* log) {
  Tool tool;
  tool.name = name;
  tool.description =
      spin ? "Spins on the CPU until its gate file exists." : "Waits until its gate file exists.";
  tool.input_schema = Json{{"type", "object"},
                           {"properties", {{"gate", {{"type", "string"}}}}},
                           {"required", Json::array({"gate"})}};
  tool.execute = [name, spin, log](const Json& input, const ToolContext& context) {
    const std::string gate = StringField(input, "gate");
    log->Write(name, context.tool_call_id, "start");
    if (spin) {
      // Busy: no sleep, and the stop token is never looked at.
      std::atomic<uint64_t> turns{0};
      while (!Exists(gate)) {
        for (int i = 0; i < 100000; ++i) turns.fetch_add(1, std::memory_order_relaxed);
      }
    } else {
      // A blocked call: it does not return until the gate opens, stopped or not.
      while (!Exists(gate)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    log->Write(name, context.tool_call_id, "done");
    return absl::StatusOr<Json>(Json{{"tool", name}, {"released", true}});
  };
  return tool;
}

}  // namespace
}  // namespace baton::faults

int main(int argc, char** argv) {
  using namespace baton;
  using namespace baton::faults;
  static std::unique_ptr<ToolLog>
      log;  // outlives the worker: tools use it until WorkerMain returns
  return WorkerMain(argc, argv, [](WorkerSetup& setup) {
    log = std::make_unique<ToolLog>(absl::GetFlag(FLAGS_hook_log));
    Agent chat;
    chat.id = "chat";
    chat.model = setup.Model();
    chat.system = "You are a helpful assistant.";
    setup.Add("chat", std::move(chat));

    Agent tools;
    tools.id = "tools";
    tools.model = setup.Model();
    tools.system = "You are a helpful assistant with tools.";
    tools.tools.push_back(GatedTool("block", /*spin=*/false, log.get()));
    tools.tools.push_back(GatedTool("spin", /*spin=*/true, log.get()));
    setup.Add("tools", std::move(tools));
  });
}
