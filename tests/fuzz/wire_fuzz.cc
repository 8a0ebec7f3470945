// Fuzzes the protocol's frames as the two processes decode them (runtime/protocol/wire.h): the
// input is parsed as a GatewayFrame (what a worker gets: assignments, deliveries) and as a
// WorkerFrame (what the orchestrator gets: output, snapshots, run ends). Nothing may crash, and:
//   - an assignment is decoded whole or refused with a RunRejected reason ("bad-...: why");
//   - a `.out` record the orchestrator accepts (CheckOutRecord) is one a worker's continuation
//     can read (OutRecordFromProto), and reads back the same after a round trip; its chunk text,
//     checked without a tree, is taken exactly when the parsed tree would be;
//   - ToValidUtf8 gives text a strict JSON dump accepts, and is idempotent;
//   - frames: an assignment split into AssignRun + AssignMore frames, a snapshot into pieces and
//     output into batches (with a bound from the input, 64 KiB up) are gathered back exactly,
//     and every frame is within the bound unless it holds one item alone.
// Seeds: tests/fuzz/corpus/wire/*.bin, encoded from tests/fuzz/wire_seeds/*.txtpb with
//   protoc --encode=baton.v1.GatewayFrame (or WorkerFrame) -I proto proto/baton/v1/worker.proto
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "google/protobuf/stubs/logging.h"
#include "hooks/records.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/wire.h"

namespace {

void CheckValidUtf8(std::string_view text) {
  std::string valid = baton::ToValidUtf8(text);
  if (baton::ToValidUtf8(valid) != valid) __builtin_trap();
  try {
    (void)baton::Json(valid).dump();  // the strict handler throws on invalid UTF-8
  } catch (const baton::Json::exception&) {
    __builtin_trap();
  }
}

// The orchestrator reads a chunk's text without building it (a SAX pass): it must take exactly
// the texts the tree would, a JSON object no deeper than kMaxChunkDepth with a string "type".
void CheckChunkShape(const baton::v1::OutRecord& record, const absl::Status& accepted) {
  if (!record.has_chunk_json() || record.seq() < 1 ||
      record.ByteSizeLong() > baton::kMaxOutRecordBytes) {
    return;
  }
  absl::StatusOr<baton::Json> tree = baton::ParseJson(record.chunk_json(), baton::kMaxChunkDepth);
  bool takes = tree.ok() && !baton::StringField(*tree, "type").empty();
  if (takes != accepted.ok()) __builtin_trap();
}

void CheckOut(const baton::v1::OutRecord& record) {
  absl::Status accepted = baton::CheckOutRecord(record);
  CheckChunkShape(record, accepted);
  if (!accepted.ok()) {
    if (accepted.message().empty()) __builtin_trap();
    return;
  }
  absl::StatusOr<baton::OutRecord> read = baton::OutRecordFromProto(record);
  if (!read.ok()) __builtin_trap();
  absl::StatusOr<baton::OutRecord> again =
      baton::OutRecordFromProto(baton::OutRecordToProto(*read));
  if (!again.ok() || again->seq != read->seq || again->is_control != read->is_control ||
      again->chunk() != read->chunk() || again->control != read->control ||
      again->headers != read->headers) {
    __builtin_trap();
  }
}

// A bound from the input's size: the least, or a little more.
size_t BoundOf(size_t size) { return baton::kMinFrameBytes + (size % 4096); }

void CheckAssignmentFrames(const baton::v1::AssignRun& assign, size_t bound) {
  baton::v1::AssignRun original = assign;
  original.set_more(false);
  std::vector<baton::v1::GatewayFrame> frames = baton::FrameAssignment(original, bound);
  if (frames.empty() || !frames[0].has_assign_run()) __builtin_trap();
  baton::v1::AssignRun whole = frames[0].assign_run();
  for (size_t i = 1; i < frames.size(); ++i) {
    if (!whole.more() || !frames[i].has_assign_more()) __builtin_trap();
    if (!baton::MergeAssignMore(whole, frames[i].assign_more()).ok()) __builtin_trap();
  }
  if (whole.more() || whole.SerializeAsString() != original.SerializeAsString()) __builtin_trap();
}

void CheckSnapshotFrames(const baton::v1::Snapshot& snapshot, size_t bound) {
  baton::v1::Snapshot original = snapshot;
  original.set_more(false);
  std::optional<baton::v1::Snapshot> partial;
  std::vector<baton::v1::Snapshot> pieces = baton::FrameSnapshot(original, bound);
  for (size_t i = 0; i < pieces.size(); ++i) {
    absl::StatusOr<std::optional<baton::v1::Snapshot>> added =
        baton::AddSnapshotPiece(partial, pieces[i], std::numeric_limits<size_t>::max());
    if (!added.ok() || added->has_value() != (i + 1 == pieces.size())) __builtin_trap();
    if (added->has_value() && (*added)->SerializeAsString() != original.SerializeAsString()) {
      __builtin_trap();
    }
  }
}

void CheckOutputFrames(const baton::v1::RunOutput& output, size_t bound) {
  std::deque<baton::v1::OutRecord> records(output.records().begin(), output.records().end());
  size_t n = 0;
  for (const baton::v1::RunOutput& frame :
       baton::FrameRunOutput(output.run_id(), output.lease_token(), records,
                             std::numeric_limits<int64_t>::min(), bound)) {
    if (frame.records_size() == 0) __builtin_trap();
    if (frame.records_size() > 1 && frame.ByteSizeLong() > bound) __builtin_trap();
    for (const baton::v1::OutRecord& r : frame.records()) {
      if (r.SerializeAsString() != records[n++].SerializeAsString()) __builtin_trap();
    }
  }
  if (n != records.size()) __builtin_trap();
}

}  // namespace

// Protobuf logs every string field that is not UTF-8; the fuzzer makes thousands a second.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckValidUtf8(input);

  baton::v1::GatewayFrame to_worker;
  if (to_worker.ParseFromArray(data, static_cast<int>(size))) {
    if (to_worker.has_assign_run()) {
      absl::StatusOr<baton::Assignment> decoded = baton::DecodeAssignment(to_worker.assign_run());
      if (!decoded.ok()) {
        if (!absl::StartsWith(decoded.status().message(), "bad-")) __builtin_trap();
      } else {
        if (!decoded->payload.is_object()) __builtin_trap();
        if (decoded->pending.size() != static_cast<size_t>(to_worker.assign_run().pending_size())) {
          __builtin_trap();
        }
        (void)baton::SnapshotInSeq(decoded->snapshot);
        (void)baton::SnapshotOutSeq(decoded->snapshot);
        (void)baton::BasePayload(decoded->payload);
        for (const baton::InRecord& r : decoded->pending) (void)baton::NeedsAnswer(r);
        if (const baton::Json* m = baton::FindField(decoded->payload, "message")) {
          (void)baton::SnapshotHolds(decoded->snapshot, *m);
        }
      }
    }
    if (to_worker.has_deliver()) (void)baton::InRecordFromProto(to_worker.deliver().record());
    if (to_worker.has_assign_run()) CheckAssignmentFrames(to_worker.assign_run(), BoundOf(size));
  }

  baton::v1::WorkerFrame from_worker;
  if (from_worker.ParseFromArray(data, static_cast<int>(size))) {
    if (from_worker.has_run_output()) {
      for (const baton::v1::OutRecord& r : from_worker.run_output().records()) CheckOut(r);
      CheckOutputFrames(from_worker.run_output(), BoundOf(size));
    }
    if (from_worker.has_snapshot()) CheckSnapshotFrames(from_worker.snapshot(), BoundOf(size));
    if (from_worker.has_snapshot()) {
      absl::StatusOr<baton::Json> snapshot =
          baton::DecodeSnapshot(from_worker.snapshot().snapshot_json());
      if (snapshot.ok() && !snapshot->is_object()) __builtin_trap();
    }
    if (from_worker.has_run_finished()) CheckValidUtf8(from_worker.run_finished().error());
  }
  return 0;
}
