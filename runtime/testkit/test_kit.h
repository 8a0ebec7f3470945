// File: runtime/testkit/test_kit.h
//
// TestKit: drive any agent offline, in-process, deterministically. It hosts the agent's session
// (LocalSessions) on an executor it runs itself, with a FakeClock that moves only when the test
// says, a scripted model, and a record of every hook (with a JSON summary of its arguments) and
// every `.out` record, control records with their raw headers. Suspension and wake are real: a
// run that idles out ends suspended with its snapshot, and the next record resumes it.
//
//   baton::TestKit kit(MyAgent());          // MyAgent() may use kit-independent parts
//   kit.model().Push(baton::ScriptedModel::Text("hello"));
//   kit.Boot("preload");
//   kit.SendText("u1", "hi");
//   EXPECT_THAT(kit.HookNames(), ElementsAre("onBoot", "onPreload", ...));
//   EXPECT_EQ(kit.OutTypes().back(), "trigger:turn-complete");
//
// Every call returns once the process is quiet: every run is waiting (on `.in`, a timer or the
// clock) and no hook or tool is running. Waiting is on events, never on sleeps.
//
// Thread-safety: use a TestKit from one thread.
#ifndef BATON_RUNTIME_TESTKIT_TEST_KIT_H_
#define BATON_RUNTIME_TESTKIT_TEST_KIT_H_

#include <memory>
#include <string>
#include <vector>

#include "asio/io_context.hpp"
#include "hooks/agent.h"
#include "runtime/exec/clock.h"
#include "runtime/exec/hook_pool.h"
#include "runtime/model/scripted_model.h"
#include "runtime/testkit/local_session.h"

namespace baton {

struct HookCall {
  std::string name;
  Json args;
};

class TestKit {
 public:
  struct Options {
    std::string chat_id = "test-chat";
    int pool_threads = 2;
  };

  // The agent's model is replaced by the kit's scripted model unless `keep_model`.
  explicit TestKit(Agent agent);
  TestKit(Agent agent, Options options, bool keep_model = false);
  ~TestKit();

  // Starts the chat's first run: trigger "preload", "submit-message", "handover-prepare", ...
  // `early` records are appended to `.in` right after the run is created, before it has run a
  // single step (a record that beats the run's boot).
  // `attempt` > 1 boots a retry of a failed run.
  void Boot(const std::string& trigger, Json payload = Json::object(),
            const std::vector<Json>& early = {}, int attempt = 1);

  // Appends a `.in` record body; returns its seq (or the error for a malformed record).
  absl::StatusOr<int64_t> Send(const Json& body);
  int64_t SendMessage(const Json& ui_message, const Json& metadata = Json());
  int64_t SendText(const std::string& id, const std::string& text);
  int64_t SendRegenerate();
  int64_t SendStop(const std::string& reason = "");
  int64_t SendHandover(const Json& partial, const std::string& message_id, bool is_final);
  int64_t SendHandoverSkip();
  int64_t SendClose();
  void Cancel();
  // The run is lost mid-flight (its worker died): a retry boots from what it left.
  void Reassign();

  // Moves the fake clock forward, firing every timer due, and runs until quiet.
  void Advance(absl::Duration d);
  void RunUntilIdle();

  const std::vector<HookCall>& hooks() const { return hooks_; }
  std::vector<std::string> HookNames() const;
  const HookCall* LastHook(const std::string& name) const;
  std::vector<OutRecord> out() const;
  std::vector<std::string> OutTypes() const;
  Json snapshot() const;
  LocalSessions::State state() const;
  const RunOutcome& last_outcome() const;
  int runs() const;

  ScriptedModel& model() { return *model_; }
  FakeClock& clock() { return clock_; }
  Agent& agent() { return agent_; }

 private:
  const LocalSessions::Session& session() const;

  // Declared so that the clock outlives the executor (parked coroutines disarm their timers when
  // the executor destroys them) and the pool joins before the executor goes.
  Options options_;
  Agent agent_;
  FakeClock clock_;
  asio::io_context io_;
  std::shared_ptr<ScriptedModel> model_;
  std::vector<HookCall> hooks_;
  HookPool pool_;
  LocalSessions sessions_;
};

}  // namespace baton

#endif  // BATON_RUNTIME_TESTKIT_TEST_KIT_H_
