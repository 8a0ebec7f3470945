// Records between runtime and protocol form, trigger names, traceparent checks, and the
// Prometheus text of the metrics registry.
#include "runtime/protocol/wire.h"

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/base/metrics.h"
#include "runtime/client/head_start.h"
#include "runtime/worker/worker.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

// The orchestrator checks a chunk's text without building it: the same verdict as the tree.
TEST(WireTest, AChunkIsTakenOnlyAsAnObjectWhoseOwnLastTypeIsANonEmptyString) {
  struct Case {
    const char* text;
    bool taken;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"type":"text-delta","id":"t","delta":"x"})", true},
           {R"({"id":"t","type":"finish"})", true},
           {R"({"type":1,"type":"data-x"})", true},  // the last of a key counts, as in the tree
           {R"({"type":"data-x","type":1})", false},
           {R"({"type":"data-x","type":{"a":1}})", false},
           {R"({"type":""})", false},
           {R"({"data":{"type":"data-x"}})", false},  // a nested "type" is not the chunk's
           {R"({"data":[{"type":"data-x"}],"x":{"type":"y"}})", false},
           {R"([{"type":"data-x"}])", false},
           {R"("data-x")", false},
           {R"({"type":"data-x"} {})", false},
           {R"({"type":"data-x")", false},
           {"", false},
           {R"({"type":"data-x","n":1e999})", false},  // a number nlohmann cannot hold
       }) {
    SCOPED_TRACE(c.text);
    baton::v1::OutRecord out;
    out.set_seq(3);
    out.set_chunk_json(c.text);
    absl::Status checked = CheckOutRecord(out);
    EXPECT_EQ(checked.ok(), c.taken) << checked;
    EXPECT_EQ(OutRecordFromProto(out).ok(), c.taken);
    absl::StatusOr<Json> tree = ParseJson(c.text);
    EXPECT_EQ(c.taken, tree.ok() && !StringField(*tree, "type").empty());
    if (!checked.ok() && !tree.ok()) {
      EXPECT_EQ(checked.message(),
                absl::StrCat(".out record 3: chunk_json: ", tree.status().message()));
    } else if (!checked.ok()) {
      EXPECT_EQ(checked.message(),
                R"(.out record 3: chunk_json is not a JSON object with a string "type")");
    }
  }
}

TEST(WireTest, ChunksAndControlRecordsRoundTrip) {
  OutRecord chunk =
      OutRecord::Chunk(Json::parse(R"({"type":"text-delta","id":"t","delta":"1.50"})"));
  chunk.seq = 7;
  baton::v1::OutRecord proto = OutRecordToProto(chunk);
  EXPECT_EQ(proto.seq(), 7);
  EXPECT_EQ(proto.chunk_json(), R"({"type":"text-delta","id":"t","delta":"1.50"})");
  absl::StatusOr<OutRecord> back = OutRecordFromProto(proto);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->chunk(), chunk.chunk());
  EXPECT_EQ(back->seq, 7);

  OutRecord control = OutRecord::Control(kTurnComplete, {{"b", "2"}, {"a", "1"}});
  absl::StatusOr<OutRecord> control_back = OutRecordFromProto(OutRecordToProto(control));
  ASSERT_TRUE(control_back.ok());
  EXPECT_TRUE(control_back->is_control);
  EXPECT_EQ(control_back->control, "turn-complete");
  ASSERT_EQ(control_back->headers.size(), 2u);
  EXPECT_EQ(control_back->headers[0].first, "b");  // order kept
}

TEST(WireTest, BadChunksAndRecordsAreErrors) {
  baton::v1::OutRecord proto;
  proto.set_chunk_json("[1,2]");
  EXPECT_FALSE(OutRecordFromProto(proto).ok());
  proto.set_chunk_json("{broken");
  EXPECT_FALSE(OutRecordFromProto(proto).ok());
  baton::v1::InRecord in;
  in.set_seq(3);
  in.set_body_json(R"({"kind":"stop"})");
  absl::StatusOr<InRecord> record = InRecordFromProto(in);
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->seq, 3);
  EXPECT_EQ(InKindToProto(record->kind), baton::v1::IN_KIND_STOP);
  in.set_body_json(R"({"kind":"nope"})");
  EXPECT_FALSE(InRecordFromProto(in).ok());
}

TEST(WireTest, ControlHeadersFromUserCodeBecomeValidUtf8) {
  OutRecord closed = OutRecord::Control(kSessionClosed, {{"session-closed-reason", "caf\xe9"}});
  baton::v1::OutRecord proto = OutRecordToProto(closed);
  EXPECT_EQ(proto.control().headers(0).value(), "caf\xef\xbf\xbd");
  baton::v1::OutRecord parsed;
  EXPECT_TRUE(parsed.ParseFromString(proto.SerializeAsString()));
}

TEST(WireTest, CheckOutRecordTakesARecordExactlyAtTheLimit) {
  baton::v1::OutRecord record;
  record.set_seq(1);
  const std::string head = R"({"type":"text-delta","id":"t","delta":")";
  size_t delta = kMaxOutRecordBytes - 100;
  for (int i = 0; i < 3; ++i) {  // the chunk's length prefix grows with it: settle the size
    record.set_chunk_json(head + std::string(delta, 'x') + "\"}");
    delta += kMaxOutRecordBytes - record.ByteSizeLong();
  }
  ASSERT_EQ(record.ByteSizeLong(), kMaxOutRecordBytes);
  EXPECT_TRUE(CheckOutRecord(record).ok()) << CheckOutRecord(record);
  record.mutable_chunk_json()->insert(head.size(), "x");
  absl::Status over = CheckOutRecord(record);
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(over.message()), HasSubstr("exceeds the limit of 1048576"));
}

TEST(WireTest, DecodeSnapshotWantsAnObjectWithAMessagesArray) {
  EXPECT_TRUE(DecodeSnapshot(R"({"messages":[{"id":"u1"}],"lastInEventId":2})").ok());
  EXPECT_TRUE(DecodeSnapshot("{}").ok());
  EXPECT_FALSE(DecodeSnapshot("").ok());
  EXPECT_FALSE(DecodeSnapshot("null").ok());
  EXPECT_FALSE(DecodeSnapshot(R"({"messages":[1]})").ok());
}

// `depth` nested arrays around 1, as text.
std::string Nest(int depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

// The JSON fields of the protocol at depths around their limits: client data (payloads, `.in`
// records) at kMaxDataDepth, `.out` chunks at kMaxChunkDepth, snapshots at kMaxJsonDepth.
// Nothing crashes, and every refusal says which field and what limit.
TEST(WireTest, EveryJsonFieldOfTheProtocolIsHeldToItsDepthLimit) {
  for (int depth :
       {1, kMaxDataDepth - 1, kMaxDataDepth, kMaxDataDepth + 1, kMaxChunkDepth, kMaxChunkDepth + 1,
        kMaxJsonDepth - 1, kMaxJsonDepth, kMaxJsonDepth + 1, 100000}) {
    SCOPED_TRACE(depth);
    // A chunk holds the nest one level down; a snapshot two (messages, an entry).
    baton::v1::OutRecord out;
    out.set_seq(1);
    out.set_chunk_json(absl::StrCat(R"({"type":"data-x","data":)", Nest(depth - 1), "}"));
    absl::Status checked = CheckOutRecord(out);
    EXPECT_EQ(checked.ok(), depth <= kMaxChunkDepth) << checked;
    EXPECT_EQ(OutRecordFromProto(out).ok(), depth <= kMaxChunkDepth);
    if (!checked.ok()) {
      EXPECT_THAT(std::string(checked.message()),
                  HasSubstr(absl::StrCat(".out record 1: chunk_json: JSON nests deeper than ",
                                         kMaxChunkDepth, " levels at byte")));
    }
    std::string snapshot = absl::StrCat(R"({"messages":[{"id":"m","message":)",
                                        depth >= 3 ? Nest(depth - 3) : "1", "}]}");
    absl::StatusOr<Json> decoded = DecodeSnapshot(snapshot);
    EXPECT_EQ(decoded.ok(), depth <= kMaxJsonDepth);
    if (!decoded.ok()) {
      EXPECT_THAT(std::string(decoded.status().message()),
                  HasSubstr(absl::StrCat("snapshot_json: JSON nests deeper than ", kMaxJsonDepth,
                                         " levels")));
    }

    baton::v1::AssignRun assign;
    assign.set_payload_json(absl::StrCat(R"({"chatId":"c","metadata":)", Nest(depth - 1), "}"));
    absl::StatusOr<Assignment> payload = DecodeAssignment(assign);
    EXPECT_EQ(payload.ok(), depth <= kMaxDataDepth);
    if (!payload.ok()) {
      EXPECT_THAT(std::string(payload.status().message()),
                  HasSubstr(absl::StrCat("bad-payload: payload_json: JSON nests deeper than ",
                                         kMaxDataDepth, " levels at byte")));
    }
    assign.clear_payload_json();
    baton::v1::InRecord& pending = *assign.add_pending();
    pending.set_seq(4);
    pending.set_body_json(absl::StrCat(R"({"kind":"stop","message":)", Nest(depth - 1), "}"));
    absl::StatusOr<Assignment> with_pending = DecodeAssignment(assign);
    EXPECT_EQ(with_pending.ok(), depth <= kMaxDataDepth);
    if (!with_pending.ok()) {
      EXPECT_THAT(std::string(with_pending.status().message()),
                  HasSubstr(absl::StrCat("bad-pending-record: .in record 4: .in record nests "
                                         "deeper than ",
                                         kMaxDataDepth, " levels at byte")));
    }
    EXPECT_EQ(InRecordFromProto(pending).ok(), depth <= kMaxDataDepth);
    assign.clear_pending();
    *assign.add_out_tail() = out;
    EXPECT_EQ(DecodeAssignment(assign).ok(), depth <= kMaxChunkDepth);
  }
}

// What the orchestrator stores, a worker can read: a payload CreateSession takes (with the
// chatId it adds) decodes as an assignment's payload, at every depth it takes.
TEST(WireTest, APayloadTheOrchestratorTakesIsOneAWorkerDecodes) {
  for (int depth = 1; depth <= kMaxDataDepth + 1; ++depth) {
    std::string text = absl::StrCat(R"({"metadata":)", Nest(depth - 1), "}");
    absl::StatusOr<Json> taken = ParseJson(text, kMaxDataDepth);  // as CreateSession parses
    if (!taken.ok() || !CheckBootPayload(*taken).ok()) {
      EXPECT_GT(depth, kMaxDataDepth);
      continue;
    }
    (*taken)["chatId"] = "c";
    baton::v1::AssignRun assign;
    assign.set_payload_json(DumpJson(*taken));
    EXPECT_TRUE(DecodeAssignment(assign).ok()) << depth;
  }
}

TEST(WireTest, TriggerNames) {
  for (const char* name :
       {"preload", "submit-message", "handover-prepare", "regenerate-message", "close"}) {
    EXPECT_EQ(TriggerName(TriggerFromName(name)), name);
  }
  EXPECT_EQ(TriggerFromName("launch"), baton::v1::TRIGGER_UNSPECIFIED);
  EXPECT_EQ(TriggerName(baton::v1::TRIGGER_UNSPECIFIED), "");
}

TEST(WireTest, SessionStateNames) {
  for (const char* name : {"live", "suspended", "exited", "failed", "closed"}) {
    EXPECT_EQ(SessionStateName(SessionStateFromName(name)), name);
  }
  EXPECT_EQ(SessionStateFromName("asleep"), baton::v1::SESSION_STATE_UNSPECIFIED);
  EXPECT_EQ(SessionStateName(baton::v1::SESSION_STATE_UNSPECIFIED), "unspecified");
}

TEST(WireTest, RunStateNames) {
  EXPECT_EQ(RunStateName(baton::v1::RUN_STATE_LOST), "lost");
  for (const char* name :
       {"queued", "assigned", "running", "suspended", "exited", "failed", "cancelled", "lost"}) {
    EXPECT_EQ(RunStateName(RunStateFromName(name)), name);
  }
  EXPECT_EQ(RunStateFromName("sleeping"), baton::v1::RUN_STATE_UNSPECIFIED);
}

TEST(WireTest, AgentNames) {
  for (const char* good : {"chat", "support-agent", "team/agent_v2", "a.b:c@1", "A9"}) {
    EXPECT_TRUE(CheckAgentName(good).ok()) << good;
  }
  EXPECT_TRUE(CheckAgentName(std::string(128, 'a')).ok());
  EXPECT_EQ(CheckAgentName("").message(), "an agent name must not be empty");
  EXPECT_EQ(CheckAgentName(std::string(129, 'a')).message(),
            "an agent name must be at most 128 bytes, not 129");
  for (const char* bad : {"my agent", "tab\t", "caf\xC3\xA9", "quote\"", "semi;colon"}) {
    absl::Status status = CheckAgentName(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(status.message()),
                ::testing::HasSubstr("may hold only ASCII letters, digits and - _ . : / @"));
  }
}

TEST(WireTest, Traceparent) {
  EXPECT_TRUE(ValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(ValidTraceparent(""));
  EXPECT_FALSE(ValidTraceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(ValidTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
  EXPECT_FALSE(ValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
  EXPECT_FALSE(ValidTraceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_FALSE(ValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\n"));
  EXPECT_FALSE(ValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
}

// ---- frames ------------------------------------------------------------------------------------

// Text of `bytes` bytes with characters of 1 to 4 bytes, so that cuts fall inside them.
std::string MixedText(size_t bytes) {
  const char* pieces[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", " "};
  std::string text;
  for (size_t i = 0; text.size() < bytes; ++i) text += pieces[(i * 7) % 5];
  return text;
}

bool ValidUtf8(const std::string& text) { return ToValidUtf8(text) == text; }

baton::v1::AssignRun BigAssignment() {
  baton::v1::AssignRun assign;
  assign.set_run_id("run_7");
  assign.set_attempt(2);
  assign.set_lease_token(42);
  assign.set_agent("chat");
  assign.set_chat_id("c1");
  assign.set_continuation(true);
  assign.set_payload_json(R"({"metadata":{"k":1}})");
  assign.set_snapshot_json(DumpJson(Json{{"messages", Json::array({MixedText(300000)})}}));
  for (int i = 1; i <= 40; ++i) {
    baton::v1::InRecord& r = *assign.add_pending();
    r.set_seq(i);
    r.set_body_json(DumpJson(Json{{"kind", "message"}, {"text", MixedText(5000)}}));
  }
  for (int i = 1; i <= 90; ++i) {
    baton::v1::OutRecord& r = *assign.add_out_tail();
    r.set_seq(i);
    r.set_chunk_json(DumpJson(Json{{"type", "text-delta"}, {"delta", MixedText(3000)}}));
  }
  assign.set_out_seq(90);
  return assign;
}

// Gathers frames as a worker does; fails the test on a frame out of place.
baton::v1::AssignRun Reassemble(std::vector<baton::v1::GatewayFrame> frames) {
  EXPECT_TRUE(frames.at(0).has_assign_run());
  baton::v1::AssignRun assign = frames[0].assign_run();
  for (size_t i = 1; i < frames.size(); ++i) {
    EXPECT_TRUE(assign.more()) << "frame " << i << " follows the last one";
    EXPECT_TRUE(frames[i].has_assign_more());
    EXPECT_TRUE(MergeAssignMore(assign, frames[i].assign_more()).ok());
  }
  EXPECT_FALSE(assign.more());
  return assign;
}

TEST(WireFramesTest, AnAssignmentLargerThanAFrameIsSplitAndReassembledExactly) {
  baton::v1::AssignRun assign = BigAssignment();
  constexpr size_t kBound = 64 << 10;
  std::vector<baton::v1::GatewayFrame> frames = FrameAssignment(assign, kBound);
  ASSERT_GT(frames.size(), 10u);
  for (size_t i = 0; i < frames.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_LE(frames[i].ByteSizeLong(), kBound);
    // Every piece is UTF-8 on its own: the frame parses (protobuf checks string fields).
    baton::v1::GatewayFrame parsed;
    EXPECT_TRUE(parsed.ParseFromString(frames[i].SerializeAsString()));
    const std::string& piece = frames[i].has_assign_run() ? frames[i].assign_run().snapshot_json()
                                                          : frames[i].assign_more().snapshot_json();
    EXPECT_TRUE(ValidUtf8(piece));
  }
  // The snapshot comes first, then the pending records, then the tail, each in order.
  baton::v1::AssignRun whole = Reassemble(frames);
  EXPECT_EQ(whole.SerializeAsString(), assign.SerializeAsString());
}

TEST(WireFramesTest, AnAssignmentThatFitsIsOneFrameAsItIs) {
  baton::v1::AssignRun assign;
  assign.set_run_id("run_1");
  assign.set_lease_token(1);
  assign.set_snapshot_json(R"({"messages":[]})");
  assign.add_pending()->set_seq(1);
  std::vector<baton::v1::GatewayFrame> frames = FrameAssignment(assign, 64 << 10);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_FALSE(frames[0].assign_run().more());
  EXPECT_EQ(frames[0].assign_run().SerializeAsString(), assign.SerializeAsString());
}

TEST(WireFramesTest, ARecordLargerThanAFrameTravelsAloneInItsFrame) {
  baton::v1::AssignRun assign;
  assign.set_run_id("run_1");
  assign.set_lease_token(1);
  assign.set_payload_json(DumpJson(Json{{"big", std::string(200000, 'p')}}));  // over the bound
  for (int i = 1; i <= 3; ++i) {
    baton::v1::OutRecord& r = *assign.add_out_tail();
    r.set_seq(i);
    r.set_chunk_json(
        DumpJson(Json{{"type", "text-delta"}, {"delta", std::string(i == 2 ? 300000 : 10, 'x')}}));
  }
  std::vector<baton::v1::GatewayFrame> frames = FrameAssignment(assign, 64 << 10);
  // The payload alone in the AssignRun, then each record in a frame of its own: none fits
  // beside what is larger than the bound.
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_EQ(frames[0].assign_run().out_tail_size(), 0);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(frames[i].assign_more().out_tail_size(), 1);
    EXPECT_EQ(frames[i].assign_more().out_tail(0).seq(), i);
  }
  for (const baton::v1::GatewayFrame& f : frames)
    EXPECT_LE(f.ByteSizeLong(), GrpcMessageLimit(64 << 10));
  EXPECT_EQ(Reassemble(frames).SerializeAsString(), assign.SerializeAsString());
}

TEST(WireFramesTest, AnAssignMoreOfAnotherRunIsRefused) {
  baton::v1::AssignRun assign;
  assign.set_run_id("run_1");
  assign.set_lease_token(1);
  baton::v1::AssignMore more;
  more.set_run_id("run_1");
  more.set_lease_token(2);
  absl::Status merged = MergeAssignMore(assign, more);
  EXPECT_EQ(merged.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(merged.message(), HasSubstr("run_1 lease 2"));
}

baton::v1::Snapshot BigSnapshot(size_t bytes) {
  baton::v1::Snapshot snapshot;
  snapshot.set_run_id("run_3");
  snapshot.set_lease_token(9);
  snapshot.set_in_seq(4);
  snapshot.set_out_seq(17);
  snapshot.set_snapshot_json(DumpJson(Json{{"messages", Json::array({MixedText(bytes)})}}));
  return snapshot;
}

TEST(WireFramesTest, ASnapshotLargerThanAFrameGoesInPiecesAndIsGatheredWhole) {
  baton::v1::Snapshot snapshot = BigSnapshot(500000);
  std::vector<baton::v1::Snapshot> pieces = FrameSnapshot(snapshot, 64 << 10);
  ASSERT_GT(pieces.size(), 7u);
  std::optional<baton::v1::Snapshot> partial;
  for (size_t i = 0; i < pieces.size(); ++i) {
    SCOPED_TRACE(i);
    baton::v1::WorkerFrame frame;
    *frame.mutable_snapshot() = pieces[i];
    EXPECT_LE(frame.ByteSizeLong(), size_t{64 << 10});
    EXPECT_TRUE(ValidUtf8(pieces[i].snapshot_json()));
    EXPECT_EQ(pieces[i].more(), i + 1 < pieces.size());
    absl::StatusOr<std::optional<baton::v1::Snapshot>> added =
        AddSnapshotPiece(partial, pieces[i], 1 << 20);
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_EQ(added->has_value(), i + 1 == pieces.size());
    if (added->has_value()) {
      EXPECT_EQ((*added)->SerializeAsString(), snapshot.SerializeAsString());
      EXPECT_FALSE(partial.has_value());
    }
  }
  // One that fits is one frame, taken as it is.
  baton::v1::Snapshot small = BigSnapshot(100);
  pieces = FrameSnapshot(small, 64 << 10);
  ASSERT_EQ(pieces.size(), 1u);
  absl::StatusOr<std::optional<baton::v1::Snapshot>> added =
      AddSnapshotPiece(partial, pieces[0], 1 << 20);
  ASSERT_TRUE(added.ok() && added->has_value());
  EXPECT_EQ((*added)->SerializeAsString(), small.SerializeAsString());
}

TEST(WireFramesTest, SnapshotPiecesThatDisagreeOrExceedTheLimitAreRefused) {
  std::vector<baton::v1::Snapshot> pieces = FrameSnapshot(BigSnapshot(200000), 64 << 10);
  ASSERT_GT(pieces.size(), 2u);
  std::optional<baton::v1::Snapshot> partial;
  ASSERT_TRUE(AddSnapshotPiece(partial, pieces[0], 1 << 20).ok());
  baton::v1::Snapshot other = pieces[1];
  other.set_out_seq(18);
  absl::StatusOr<std::optional<baton::v1::Snapshot>> added =
      AddSnapshotPiece(partial, other, 1 << 20);
  EXPECT_EQ(added.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(partial.has_value());

  for (size_t i = 0; i + 1 < pieces.size(); ++i) {
    added = AddSnapshotPiece(partial, pieces[i], 100000);
    if (!added.ok()) break;
  }
  EXPECT_EQ(added.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(added.status().message(), HasSubstr("exceeds the limit of 100000 bytes"));
  EXPECT_FALSE(partial.has_value());
}

TEST(WireFramesTest, OutputIsBatchedWithinTheBound) {
  std::deque<baton::v1::OutRecord> records;
  for (int i = 1; i <= 200; ++i) {
    baton::v1::OutRecord& r = records.emplace_back();
    r.set_seq(i);
    r.set_chunk_json(DumpJson(
        Json{{"type", "text-delta"}, {"delta", std::string(i == 150 ? 200000 : 1000, 'x')}}));
  }
  std::vector<baton::v1::RunOutput> frames = FrameRunOutput("run_1", 5, records, 10, 64 << 10);
  int64_t next = 11;
  for (const baton::v1::RunOutput& output : frames) {
    EXPECT_EQ(output.run_id(), "run_1");
    EXPECT_EQ(output.lease_token(), 5);
    ASSERT_GT(output.records_size(), 0);
    baton::v1::WorkerFrame frame;
    *frame.mutable_run_output() = output;
    if (output.records_size() > 1) {
      EXPECT_LE(frame.ByteSizeLong(), size_t{64 << 10});
    }
    for (const baton::v1::OutRecord& r : output.records()) EXPECT_EQ(r.seq(), next++);
  }
  EXPECT_EQ(next, 201);
  EXPECT_GT(frames.size(), 3u);
  EXPECT_TRUE(FrameRunOutput("run_1", 5, records, 200, 64 << 10).empty());
}

TEST(WireFramesTest, BoundsAndCuts) {
  EXPECT_EQ(SendFrameBytes(0, 64 << 10), size_t{64 << 10});  // 0: the default, at most ours
  EXPECT_EQ(SendFrameBytes(0, 8 << 20), kDefaultFrameBytes);
  EXPECT_EQ(SendFrameBytes(1, 8 << 20), kMinFrameBytes);  // never below the least
  EXPECT_EQ(SendFrameBytes(100000, 8 << 20), 100000u);
  EXPECT_GE(GrpcMessageLimit(kMinFrameBytes), kMinFrameBytes + kMaxInRecordBytes);
  std::string text = "a\xc3\xa9\xf0\x9f\x98\x80";  // a, é, 😀
  EXPECT_EQ(Utf8Cut(text, 2), 1u);
  EXPECT_EQ(Utf8Cut(text, 3), 3u);
  EXPECT_EQ(Utf8Cut(text, 5), 3u);
  EXPECT_EQ(Utf8Cut(text, 7), 7u);
  EXPECT_EQ(Utf8Cut(text, 100), 7u);
}

TEST(MetricsTest, PrometheusText) {
  Metrics metrics;
  metrics.AddCounter("baton_runs_total{end=\"exited\"}", "Runs.").Add(3);
  metrics.AddCounter("baton_runs_total{end=\"failed\"}", "Runs.").Add(1);
  metrics.AddGauge("baton_slots", "Slots.").Set(5);
  Histogram& h = metrics.AddHistogram("baton_latency_seconds", "Latency.", {0.001, 0.01});
  h.Observe(0.0005);
  h.Observe(0.005);
  h.Observe(1);
  std::string text = metrics.Text();
  EXPECT_THAT(text, HasSubstr("# TYPE baton_runs_total counter\n"
                              "baton_runs_total{end=\"exited\"} 3\n"
                              "baton_runs_total{end=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE baton_slots gauge\nbaton_slots 5\n"));
  EXPECT_THAT(text, HasSubstr("baton_latency_seconds_bucket{le=\"0.001\"} 1\n"
                              "baton_latency_seconds_bucket{le=\"0.01\"} 2\n"
                              "baton_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("baton_latency_seconds_count 3\n"));
  EXPECT_THAT(text, HasSubstr("baton_latency_seconds_sum 1.005500\n"));
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

// What a worker announces of an agent (DescribeAgent) is, on the warm side (AgentFromInfo), the
// agent step 1 runs: its system prompt, its tools' schemas and approval, no executes.
TEST(WireTest, AnAgentAsAnnouncedIsTheAgentTheWarmSideRuns) {
  Agent agent;
  agent.system = "You are terse.";
  agent.options.handover_timeout = absl::Seconds(7);
  Tool weather;
  weather.name = "get_weather";
  weather.description = "Weather by city.";
  weather.input_schema = Json{{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}};
  weather.execute = [](const Json&, const ToolContext&) -> absl::StatusOr<Json> { return Json(); };
  Tool remove;
  remove.name = "delete_file";
  remove.needs_approval = true;
  remove.execute = weather.execute;
  Tool pick;
  pick.name = "pick_color";  // client-side: no execute
  agent.tools = {weather, remove, pick};
  v1::AgentInfo info = DescribeAgent("weather", "3", agent);
  EXPECT_TRUE(CheckAgentInfo(info).ok());
  EXPECT_EQ(info.handover_timeout_ms(), 7000);
  EXPECT_FALSE(info.head_start_disabled());

  absl::StatusOr<Agent> warm = AgentFromInfo(info, nullptr);
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_EQ(warm->id, "weather");
  EXPECT_EQ(warm->version, "3");
  EXPECT_EQ(warm->system, "You are terse.");
  EXPECT_EQ(warm->options.handover_timeout, absl::Seconds(7));
  ASSERT_EQ(warm->tools.size(), 3u);
  EXPECT_EQ(warm->tools[0].name, "get_weather");
  EXPECT_EQ(warm->tools[0].description, "Weather by city.");
  EXPECT_EQ(DumpJson(warm->tools[0].input_schema), DumpJson(weather.input_schema));
  // The run executes get_weather (a stand-in that never runs it here); not so a client's tool.
  ASSERT_TRUE(warm->tools[0].execute);
  EXPECT_FALSE(warm->tools[0].execute(Json::object(), ToolContext{}).ok());
  EXPECT_TRUE(warm->tools[1].needs_approval);
  EXPECT_FALSE(warm->tools[2].execute);

  agent.options.allow_head_start = false;
  EXPECT_TRUE(DescribeAgent("weather", "3", agent).head_start_disabled());
  info.set_tools_json("[1]");
  EXPECT_FALSE(AgentFromInfo(info, nullptr).ok());
}

}  // namespace
}  // namespace baton
