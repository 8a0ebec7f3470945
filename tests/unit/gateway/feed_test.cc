// What a chat's feed keeps for readers that come late (tools/gateway/feed.h): its bytes and turn
// ends are counted as records come and go, so trimming costs what it removes.
#include "tools/gateway/feed.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/records.h"

namespace baton::gateway {
namespace {

using ::testing::ElementsAre;

FeedRecord Chunk(int64_t seq, const std::string& json) {
  FeedRecord r;
  r.seq = seq;
  r.chunk_json = json;
  return r;
}

FeedRecord TurnEnd(int64_t seq) {
  FeedRecord r;
  r.seq = seq;
  r.control = true;
  r.subtype = std::string(kTurnComplete);
  return r;
}

TEST(KeptRecordsTest, CountsBytesAndTurnEndsAsRecordsComeAndGo) {
  KeptRecords kept;
  kept.Push(Chunk(1, R"({"type":"start"})"));
  kept.Push(TurnEnd(2));
  kept.Push(Chunk(3, "{}"));
  kept.Push(TurnEnd(4));
  EXPECT_EQ(kept.size(), 4u);
  EXPECT_EQ(kept.bytes(), (16u + 64) + 64 + (2 + 64) + 64);
  EXPECT_THAT(kept.turn_ends(), ElementsAre(2, 4));

  kept.PopFront();
  EXPECT_THAT(kept.turn_ends(), ElementsAre(2, 4));
  kept.PopFront();  // the first turn's end goes with its record
  EXPECT_THAT(kept.turn_ends(), ElementsAre(4));
  EXPECT_EQ(kept.bytes(), (2u + 64) + 64);
  EXPECT_EQ(kept.front().seq, 3);

  // A feed that reads again keeps what it holds by moving it: the counts go along.
  KeptRecords moved = std::move(kept);
  EXPECT_EQ(moved.size(), 2u);
  EXPECT_EQ(moved.bytes(), 130u);
  EXPECT_THAT(moved.turn_ends(), ElementsAre(4));
  moved.Clear();
  EXPECT_TRUE(moved.empty());
  EXPECT_EQ(moved.bytes(), 0u);
  EXPECT_TRUE(moved.turn_ends().empty());
}

}  // namespace
}  // namespace baton::gateway
