// The session rules both hosts of a chat's logs apply (LocalSessions and the orchestrator):
// what a run's end does to its chat, and whether it leaves a message for the next run.
#include "runtime/protocol/session_rules.h"

#include <vector>

#include "gtest/gtest.h"
#include "hooks/json.h"
#include "hooks/messages.h"
#include "hooks/records.h"

namespace baton {
namespace {

InRecord Record(int64_t seq, const Json& body) {
  absl::StatusOr<InRecord> record = DecodeInRecord(seq, DumpJson(body));
  EXPECT_TRUE(record.ok()) << record.status();
  return record.ok() ? *record : InRecord();
}

Json Message(const std::string& id) {
  return Json{{"kind", "message"},
              {"payload", {{"trigger", "submit-message"}, {"message", UserMessage(id, "hi")}}}};
}

TEST(AfterRunEnds, TheRunsEndSetsTheChatsState) {
  EXPECT_EQ(AfterRunEnds(true, false, "suspended", false, true).chat, ChatAfterRun::kSuspended);
  EXPECT_EQ(AfterRunEnds(false, true, "failed", false, true).chat, ChatAfterRun::kFailed);
  EXPECT_EQ(AfterRunEnds(false, false, "close", false, true).chat, ChatAfterRun::kClosed);
  EXPECT_EQ(AfterRunEnds(false, false, "end-run", false, true).chat, ChatAfterRun::kExited);
  EXPECT_EQ(AfterRunEnds(false, false, "cancelled", false, true).chat, ChatAfterRun::kExited);
}

TEST(AfterRunEnds, AMessageLeftUnansweredBootsTheNextRunAtOnce) {
  EXPECT_EQ(AfterRunEnds(false, false, "end-run", false, true).next, NextRun::kNone);
  EXPECT_EQ(AfterRunEnds(false, false, "end-run", true, true).next, NextRun::kContinuation);
  // A message that came while the run was suspending resumes it, before its deadline.
  EXPECT_EQ(AfterRunEnds(true, false, "suspended", true, true).next, NextRun::kResume);
  EXPECT_EQ(AfterRunEnds(true, false, "suspended", true, false).next, NextRun::kContinuation);
  // A failed or closed chat boots nothing by itself.
  EXPECT_EQ(AfterRunEnds(false, true, "failed", true, true).next, NextRun::kNone);
  EXPECT_EQ(AfterRunEnds(false, false, "close", true, true).next, NextRun::kNone);
}

TEST(LeftUnanswered, OnlyMessagesAfterTheFloorAndAnUpgradesBootMessageCount) {
  std::vector<InRecord> none;
  std::vector<InRecord> stop = {Record(3, Json{{"kind", "stop"}})};
  std::vector<InRecord> message = {Record(3, Json{{"kind", "stop"}}), Record(4, Message("u2"))};
  EXPECT_FALSE(LeftUnanswered(none, false, Json(), Json()));
  EXPECT_FALSE(LeftUnanswered(stop, false, Json(), Json()));
  EXPECT_TRUE(LeftUnanswered(message, false, Json(), Json()));

  Json boot = UserMessage("u1", "first");
  Json holds = {{"messages", Json::array({Json{{"id", "u1"}, {"message", boot}}})}};
  EXPECT_TRUE(LeftUnanswered(none, /*upgrade=*/true, boot, Json()));
  EXPECT_FALSE(LeftUnanswered(none, /*upgrade=*/true, boot, holds));
  EXPECT_FALSE(LeftUnanswered(none, /*upgrade=*/false, boot, Json()));
}

}  // namespace
}  // namespace baton
