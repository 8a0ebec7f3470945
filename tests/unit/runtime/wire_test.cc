// Records between runtime and protocol form, trigger names, traceparent checks, and the
// Prometheus text of the metrics registry.
#include "runtime/wire.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/metrics.h"

namespace baton {
namespace {

using ::testing::HasSubstr;

TEST(WireTest, ChunksAndControlRecordsRoundTrip) {
  OutRecord chunk =
      OutRecord::Chunk(Json::parse(R"({"type":"text-delta","id":"t","delta":"1.50"})"));
  chunk.seq = 7;
  baton::v1::OutRecord proto = OutRecordToProto(chunk);
  EXPECT_EQ(proto.seq(), 7);
  EXPECT_EQ(proto.chunk_json(), R"({"type":"text-delta","id":"t","delta":"1.50"})");
  absl::StatusOr<OutRecord> back = OutRecordFromProto(proto);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->chunk, chunk.chunk);
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
