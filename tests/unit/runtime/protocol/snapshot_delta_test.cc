// Snapshots stored as deltas (runtime/protocol/snapshot_delta.h): every refusal's text, re-sends
// skipped, deltas applied on the version they change, the assembled document, a snapshot stored
// whole split into entries, the ids the session rules read, and snapshot pieces that disagree on
// their version.
#include "runtime/protocol/snapshot_delta.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/wire.h"

namespace baton {
namespace {

constexpr size_t kNoLimit = size_t{1} << 40;

SnapshotBounds Bounds(int64_t in_seq = 10, int64_t out_seq = 100, size_t max_bytes = kNoLimit) {
  SnapshotBounds bounds;
  bounds.in_seq = in_seq;
  bounds.out_seq = out_seq;
  bounds.max_bytes = max_bytes;
  return bounds;
}

// A Snapshot frame of run_1.
baton::v1::Snapshot Frame(const std::string& json, int64_t version = 0, int64_t base_version = 0,
                          int64_t messages_from = 0, int64_t in_seq = 0, int64_t out_seq = 0) {
  baton::v1::Snapshot frame;
  frame.set_run_id("run_1");
  frame.set_lease_token(3);
  frame.set_snapshot_json(json);
  frame.set_version(version);
  frame.set_base_version(base_version);
  frame.set_messages_from(messages_from);
  frame.set_in_seq(in_seq);
  frame.set_out_seq(out_seq);
  return frame;
}

// {"id": id, "final": true}, as its text.
std::string Entry(const std::string& id) {
  return absl::StrCat(R"({"id":")", id, R"(","final":true})");
}

// A snapshot document of `turn` with `entries` (texts) as its "messages".
std::string Document(int turn, const std::vector<std::string>& entries) {
  std::string json = absl::StrCat(R"({"version":1,"turn":)", turn, R"(,"messages":[)");
  for (size_t i = 0; i < entries.size(); ++i) absl::StrAppend(&json, i > 0 ? "," : "", entries[i]);
  return json + "]}";
}

// The state after applying `frame` to `state`; fails the test when it is refused or skipped.
void ApplyOk(SnapshotState& state, const baton::v1::Snapshot& frame) {
  absl::StatusOr<std::optional<SnapshotDelta>> decoded =
      DecodeSnapshotUpdate(frame, state, Bounds());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_TRUE(decoded->has_value()) << "skipped as a re-send";
  ApplySnapshotDelta(state, std::move(**decoded));
}

// Why `frame` is refused against `state` ("" when it is not).
std::string Refusal(const SnapshotState& state, const baton::v1::Snapshot& frame,
                    const SnapshotBounds& bounds = Bounds()) {
  absl::StatusOr<std::optional<SnapshotDelta>> decoded = DecodeSnapshotUpdate(frame, state, bounds);
  if (decoded.ok()) return "";
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(decoded.status().message());
}

// A stored snapshot of version 2 holding u1, a1, u2, a2.
SnapshotState FourMessages() {
  SnapshotState state;
  ApplyOk(state, Frame(Document(1, {Entry("u1"), Entry("a1")}), 1));
  ApplyOk(state, Frame(Document(2, {Entry("u2"), Entry("a2")}), 2, 1, 2));
  return state;
}

TEST(SnapshotDeltaTest, AWholeSnapshotThenADeltaAssembleToTheWholeDocument) {
  SnapshotState state;
  EXPECT_EQ(AssembleSnapshotJson(state), "");
  EXPECT_TRUE(SnapshotIdsJson(state).is_null());

  ApplyOk(state, Frame(Document(1, {Entry("u1"), Entry("a1")}), 1));
  EXPECT_EQ(state.version, 1);
  EXPECT_EQ(AssembleSnapshotJson(state), Document(1, {Entry("u1"), Entry("a1")}));

  // The turn's message and answer only: the two before are the stored version's.
  ApplyOk(state, Frame(Document(2, {Entry("u2"), Entry("a2")}), 2, 1, 2));
  EXPECT_EQ(state.version, 2);
  EXPECT_EQ(state.header_json, R"({"version":1,"turn":2})");
  EXPECT_THAT(state.ids, ::testing::ElementsAre("u1", "a1", "u2", "a2"));
  const std::string whole = Document(2, {Entry("u1"), Entry("a1"), Entry("u2"), Entry("a2")});
  EXPECT_EQ(AssembleSnapshotJson(state), whole);
  EXPECT_EQ(state.bytes, SnapshotBytes(state));
  absl::StatusOr<Json> decoded = DecodeSnapshot(AssembleSnapshotJson(state));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, Json::parse(whole));
}

TEST(SnapshotDeltaTest, ADeltaReplacesTheEntriesFromItsIndexAndDropsTheRest) {
  // A regenerate: the last answer replaced.
  SnapshotState state = FourMessages();
  ApplyOk(state, Frame(Document(3, {Entry("a2b")}), 3, 2, 3));
  EXPECT_THAT(state.ids, ::testing::ElementsAre("u1", "a1", "u2", "a2b"));
  // A regenerate that ended in an error: the answer gone, nothing in its place.
  ApplyOk(state, Frame(Document(4, {}), 4, 3, 3));
  EXPECT_THAT(state.ids, ::testing::ElementsAre("u1", "a1", "u2"));
  EXPECT_EQ(AssembleSnapshotJson(state), Document(4, {Entry("u1"), Entry("a1"), Entry("u2")}));
  EXPECT_EQ(state.bytes, SnapshotBytes(state));
  // A save with nothing changed: the header alone.
  ApplyOk(state, Frame(Document(5, {}), 5, 4, 3));
  EXPECT_EQ(state.entries.size(), 3u);
  EXPECT_EQ(state.header_json, R"({"version":1,"turn":5})");
  // A whole one replaces everything, whatever its base.
  ApplyOk(state, Frame(Document(6, {Entry("x")}), 9, 1, 0));
  EXPECT_EQ(state.version, 9);
  EXPECT_THAT(state.ids, ::testing::ElementsAre("x"));
  EXPECT_EQ(state.bytes, SnapshotBytes(state));
}

TEST(SnapshotDeltaTest, AVersionAtOrBelowTheStoredOneIsAReSendAndSkipped) {
  SnapshotState state = FourMessages();
  for (int64_t version : {1, 2}) {
    absl::StatusOr<std::optional<SnapshotDelta>> decoded =
        DecodeSnapshotUpdate(Frame(Document(9, {Entry("zz")}), version, 0, 0), state, Bounds());
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_FALSE(decoded->has_value()) << version;
  }
  // Even one that would be refused now: it was stored when it came first.
  absl::StatusOr<std::optional<SnapshotDelta>> decoded =
      DecodeSnapshotUpdate(Frame(Document(2, {}), 2, 1, 4), state, Bounds());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_FALSE(decoded->has_value());
}

TEST(SnapshotDeltaTest, AWorkerThatDoesNotNumberItsSnapshotsStoresWholeOnesAsTheNextVersion) {
  SnapshotState state = FourMessages();
  ApplyOk(state, Frame(Document(3, {Entry("u1")})));
  EXPECT_EQ(state.version, 3);
  EXPECT_THAT(state.ids, ::testing::ElementsAre("u1"));
  ApplyOk(state, Frame("{}"));
  EXPECT_EQ(state.version, 4);
  EXPECT_TRUE(state.entries.empty());
  EXPECT_EQ(AssembleSnapshotJson(state), R"({"messages":[]})");
}

TEST(SnapshotDeltaTest, EveryRefusalSaysWhy) {
  SnapshotState state = FourMessages();
  const std::string doc = Document(3, {Entry("u3")});
  EXPECT_THAT(Refusal(state, Frame("{", 3)), ::testing::StartsWith("snapshot_json: invalid JSON"));
  EXPECT_EQ(Refusal(state, Frame("[]", 3)), "snapshot_json is not a JSON object");
  EXPECT_EQ(Refusal(state, Frame(R"({"messages":{}})", 3)),
            "snapshot_json: \"messages\" is not an array");
  EXPECT_EQ(Refusal(state, Frame(R"({"messages":[1]})", 3)),
            "snapshot_json: an entry of \"messages\" is not an object");
  EXPECT_EQ(Refusal(state, Frame(doc, 3, 2, 4, 11, 0)),
            "snapshot in_seq 11 is outside .in (0 to 10)");
  EXPECT_EQ(Refusal(state, Frame(doc, 3, 2, 4, -1, 0)),
            "snapshot in_seq -1 is outside .in (0 to 10)");
  EXPECT_EQ(Refusal(state, Frame(doc, 3, 2, 4, 0, 101)),
            "snapshot out_seq 101 is outside the stored .out (0 to 100)");
  EXPECT_EQ(Refusal(state, Frame(doc, -1)), "snapshot version -1 is below 0");
  EXPECT_EQ(Refusal(state, Frame(doc, 3, 2, -2)), "snapshot messages_from -2 is below 0");
  EXPECT_EQ(Refusal(state, Frame(doc, 0, 2, 4)),
            "a snapshot with messages_from 4 needs a version (only a whole snapshot may have "
            "none)");
  EXPECT_EQ(Refusal(state, Frame(doc, 3, 2, 5)),
            "snapshot messages_from 5 is past the stored snapshot's 4 messages");
  EXPECT_EQ(Refusal(state, Frame(doc, 4, 3, 4)),
            "snapshot base_version 3 is not the stored snapshot's version 2 (a snapshot before it "
            "was not stored)");
  // The limit counts the stored snapshot once applied, not the frame alone.
  const size_t after = state.bytes + Entry("u3").size() + 1;
  EXPECT_EQ(Refusal(state, Frame(doc, 3, 2, 4), Bounds(10, 100, after - 1)),
            absl::StrCat("a snapshot of ", after, " bytes or more exceeds the limit of ", after - 1,
                         " bytes"));
  EXPECT_EQ(Refusal(state, Frame(doc, 3, 2, 4), Bounds(10, 100, after)), "");
  // A delta on a chat with no snapshot stored.
  EXPECT_EQ(Refusal(SnapshotState(), Frame(doc, 1, 0, 1)),
            "snapshot messages_from 1 is past the stored snapshot's 0 messages");
  // Nothing refused changed the state.
  EXPECT_EQ(state.version, 2);
  EXPECT_EQ(state.entries.size(), 4u);
}

TEST(SnapshotDeltaTest, ASnapshotStoredWholeSplitsIntoTheSameDocument) {
  const std::string legacy =
      R"({"version":1,"chatId":"c","lastOutEventId":7,"lastInEventId":2,)"
      R"("messages":[{"id":"u1","final":true,"message":{"id":"u1","role":"user","parts":[]}},)"
      R"({"id":"a1","final":false,"message":{"id":"a1","role":"assistant","parts":[]}}]})";
  absl::StatusOr<SnapshotDelta> split = SplitSnapshotJson(legacy);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->version, 1);
  EXPECT_EQ(split->from, 0u);
  SnapshotState state;
  ApplySnapshotDelta(state, *std::move(split));
  EXPECT_EQ(state.version, 1);
  EXPECT_THAT(state.ids, ::testing::ElementsAre("u1", "a1"));
  EXPECT_EQ(AssembleSnapshotJson(state), legacy);  // "messages" was last: the same text
  EXPECT_EQ(state.bytes, SnapshotBytes(state));

  // "messages" elsewhere in the document moves to its end; nothing else changes.
  absl::StatusOr<SnapshotDelta> moved = SplitSnapshotJson(R"({"messages":[{"id":"u1"}],"turn":3})");
  ASSERT_TRUE(moved.ok()) << moved.status();
  SnapshotState other;
  ApplySnapshotDelta(other, *std::move(moved));
  EXPECT_EQ(AssembleSnapshotJson(other), R"({"turn":3,"messages":[{"id":"u1"}]})");

  // No "messages" at all: an empty list.
  absl::StatusOr<SnapshotDelta> bare = SplitSnapshotJson("{}");
  ASSERT_TRUE(bare.ok()) << bare.status();
  SnapshotState empty;
  ApplySnapshotDelta(empty, *std::move(bare));
  EXPECT_EQ(AssembleSnapshotJson(empty), R"({"messages":[]})");

  EXPECT_EQ(SplitSnapshotJson("[1]").status().message(), "snapshot_json is not a JSON object");
}

TEST(SnapshotDeltaTest, TheIdsAreWhatTheSessionRulesAsk) {
  SnapshotState state = FourMessages();
  Json ids = SnapshotIdsJson(state);
  EXPECT_EQ(ids, Json::parse(R"({"messages":[{"id":"u1"},{"id":"a1"},{"id":"u2"},{"id":"a2"}]})"));
  EXPECT_TRUE(SnapshotHolds(ids, Json{{"id", "u2"}}));
  EXPECT_FALSE(SnapshotHolds(ids, Json{{"id", "u9"}}));
  // A stored snapshot with no messages is not "none".
  SnapshotState bare;
  ApplyOk(bare, Frame("{}", 1));
  EXPECT_EQ(SnapshotIdsJson(bare), Json::parse(R"({"messages":[]})"));
}

// Pieces of one snapshot agree on its version, base and first entry, as on its run and cursors.
TEST(SnapshotDeltaTest, PiecesThatDisagreeOnTheVersionAreRefused) {
  baton::v1::Snapshot first = Frame(R"({"messages":[)", 5, 4, 2);
  first.set_more(true);
  for (int field = 0; field < 3; ++field) {
    SCOPED_TRACE(field);
    std::optional<baton::v1::Snapshot> partial;
    ASSERT_TRUE(AddSnapshotPiece(partial, first, kNoLimit).ok());
    baton::v1::Snapshot second = Frame("]}", 5, 4, 2);
    if (field == 0) second.set_version(6);
    if (field == 1) second.set_base_version(3);
    if (field == 2) second.set_messages_from(0);
    absl::StatusOr<std::optional<baton::v1::Snapshot>> added =
        AddSnapshotPiece(partial, second, kNoLimit);
    EXPECT_EQ(added.status().message(),
              "a piece of run run_1's snapshot does not continue the snapshot of run run_1 "
              "(another lease token, cursors or version)");
    EXPECT_FALSE(partial.has_value());
  }
  std::optional<baton::v1::Snapshot> partial;
  ASSERT_TRUE(AddSnapshotPiece(partial, first, kNoLimit).ok());
  absl::StatusOr<std::optional<baton::v1::Snapshot>> whole =
      AddSnapshotPiece(partial, Frame("]}", 5, 4, 2), kNoLimit);
  ASSERT_TRUE(whole.ok() && whole->has_value()) << whole.status();
  EXPECT_EQ((*whole)->snapshot_json(), R"({"messages":[]})");
  EXPECT_EQ((*whole)->version(), 5);
  EXPECT_EQ((*whole)->messages_from(), 2);
}

}  // namespace
}  // namespace baton
