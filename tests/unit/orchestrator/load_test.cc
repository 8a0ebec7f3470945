// Orchestrator::Load on stores a crash left half-written: what was stored must still lead to
// every `.in` message being answered.
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

// A snapshot stored whole in the session row (schema 3, before snapshots were kept by entry) is
// converted at load: stored by entry as version 1, the row's copy emptied in the same write, so
// a second load finds nothing to convert.
TEST(OrchestratorLoad, ASnapshotStoredWholeIsConvertedToEntriesOnce) {
  std::unique_ptr<Store> store = NewMemoryStore();
  SessionRow session;
  session.chat_id = "c3";
  session.agent = "chat";
  session.state = "exited";
  session.run_id = "run_old";
  session.snapshot_json =
      R"({"version":1,"messages":[{"id":"u1","final":true},{"id":"a1","final":true}],"turn":2})";
  session.snapshot_in_seq = 0;
  session.snapshot_out_seq = 0;
  ASSERT_TRUE(store->PutSession(session).ok());
  for (int load = 0; load < 2; ++load) {
    SCOPED_TRACE(load);
    Orchestrator orchestrator(*store, Options{});
    ASSERT_TRUE(orchestrator.Load().ok());
    orchestrator.Shutdown();
    absl::StatusOr<std::optional<StoredSnapshot>> stored = store->LoadSnapshot("c3");
    ASSERT_TRUE(stored.ok()) << stored.status();
    ASSERT_TRUE(stored->has_value());
    EXPECT_EQ((*stored)->version, 1);
    EXPECT_EQ((*stored)->header_json, R"({"version":1,"turn":2})");
    ASSERT_EQ((*stored)->entries.size(), 2u);
    EXPECT_EQ((*stored)->entries[0].message_id, "u1");
    EXPECT_EQ((*stored)->entries[1].entry_json, R"({"id":"a1","final":true})");
    absl::StatusOr<std::vector<SessionRow>> sessions = store->LoadSessions();
    ASSERT_TRUE(sessions.ok());
    ASSERT_EQ(sessions->size(), 1u);
    EXPECT_EQ(sessions->front().snapshot_json, "");
  }
}

// One that no longer decodes is kept as it was (and handed to the next run as it is, which
// refuses it): a load does not fail on it.
TEST(OrchestratorLoad, ASnapshotStoredWholeThatDoesNotDecodeIsKept) {
  std::unique_ptr<Store> store = NewMemoryStore();
  SessionRow session;
  session.chat_id = "c4";
  session.agent = "chat";
  session.state = "exited";
  session.snapshot_json = R"({"messages":7})";
  ASSERT_TRUE(store->PutSession(session).ok());
  Orchestrator orchestrator(*store, Options{});
  ASSERT_TRUE(orchestrator.Load().ok());
  orchestrator.Shutdown();
  absl::StatusOr<std::optional<StoredSnapshot>> stored = store->LoadSnapshot("c4");
  ASSERT_TRUE(stored.ok());
  EXPECT_FALSE(stored->has_value());
  absl::StatusOr<std::vector<SessionRow>> sessions = store->LoadSessions();
  ASSERT_TRUE(sessions.ok());
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(sessions->front().snapshot_json, R"({"messages":7})");
}

}  // namespace
}  // namespace baton::orchestrator
