// Orchestrator::Load on stores a crash left half-written: what was stored must still lead to
// every `.in` message being answered.
#include <memory>

#include "gtest/gtest.h"
#include "tools/orchestrator/orchestrator.h"
#include "tools/orchestrator/store.h"

namespace baton::orchestrator {
namespace {

// The run ended (lost) and was saved, but the orchestrator died before storing the retry that
// EndRun was about to boot: the session still says "live" and names the ended run.
TEST(OrchestratorLoad, AChatWhoseRunEndedButWhoseRetryWasNeverStoredIsAnsweredAfterARestart) {
  std::unique_ptr<Store> store = NewMemoryStore();
  SessionRow session;
  session.chat_id = "c1";
  session.agent = "chat";
  session.state = "live";
  session.base_payload_json = R"({"chatId":"c1"})";
  session.run_id = "run_old";
  session.runs = 1;
  ASSERT_TRUE(store->PutSession(session).ok());
  RunRow run;
  run.run_id = "run_old";
  run.chat_id = "c1";
  run.agent = "chat";
  run.attempt = 1;
  run.trigger = "preload";
  run.state = "lost";
  run.reason = "lease-expired";
  ASSERT_TRUE(store->PutRun(run).ok());
  InRow in;
  in.kind = "message";
  in.body_json =
      R"({"kind":"message","payload":{"message":{"id":"u1","role":"user","parts":[{"type":"text","text":"hi"}]}}})";
  ASSERT_TRUE(store->AppendIn("c1", in).ok());

  Orchestrator orchestrator(*store, Options{});
  ASSERT_TRUE(orchestrator.Load().ok());
  absl::StatusOr<std::vector<RunRow>> runs = store->ListRuns("c1");
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ(runs->back().state, "queued");
  EXPECT_EQ(runs->back().trigger, "continuation");
  orchestrator.Shutdown();
}

// The same gap with nothing left to answer: the chat rests rather than claiming a live run.
TEST(OrchestratorLoad, AChatWithNothingUnansweredRestsAfterTheSameGap) {
  std::unique_ptr<Store> store = NewMemoryStore();
  SessionRow session;
  session.chat_id = "c2";
  session.agent = "chat";
  session.state = "live";
  session.run_id = "run_old";
  ASSERT_TRUE(store->PutSession(session).ok());
  RunRow run;
  run.run_id = "run_old";
  run.chat_id = "c2";
  run.agent = "chat";
  run.state = "lost";
  ASSERT_TRUE(store->PutRun(run).ok());

  Orchestrator orchestrator(*store, Options{});
  ASSERT_TRUE(orchestrator.Load().ok());
  absl::StatusOr<std::vector<SessionRow>> sessions = store->LoadSessions();
  ASSERT_TRUE(sessions.ok());
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(sessions->front().state, "exited");
  EXPECT_EQ(store->ListRuns("c2")->size(), 1u);
  orchestrator.Shutdown();
}

}  // namespace
}  // namespace baton::orchestrator
