// Fuzzes the protocol's frames as the two processes decode them (runtime/wire.h): the input is
// parsed as a GatewayFrame (what a worker gets: assignments, deliveries) and as a WorkerFrame
// (what the orchestrator gets: output, snapshots, run ends). Nothing may crash, and:
//   - an assignment is decoded whole or refused with a RunRejected reason ("bad-...: why");
//   - a `.out` record the orchestrator accepts (CheckOutRecord) is one a worker's continuation
//     can read (OutRecordFromProto), and reads back the same after a round trip;
//   - ToValidUtf8 gives text a strict JSON dump accepts, and is idempotent.
// Seeds: tests/fuzz/corpus/wire/*.bin, encoded from tests/fuzz/wire_seeds/*.txtpb with
//   protoc --encode=baton.v1.GatewayFrame (or WorkerFrame) -I proto proto/baton/v1/worker.proto
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "google/protobuf/stubs/logging.h"
#include "hooks/records.h"
#include "runtime/session_rules.h"
#include "runtime/wire.h"

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

void CheckOut(const baton::v1::OutRecord& record) {
  absl::Status accepted = baton::CheckOutRecord(record);
  if (!accepted.ok()) {
    if (accepted.message().empty()) __builtin_trap();
    return;
  }
  absl::StatusOr<baton::OutRecord> read = baton::OutRecordFromProto(record);
  if (!read.ok()) __builtin_trap();
  absl::StatusOr<baton::OutRecord> again =
      baton::OutRecordFromProto(baton::OutRecordToProto(*read));
  if (!again.ok() || again->seq != read->seq || again->is_control != read->is_control ||
      again->chunk != read->chunk || again->control != read->control ||
      again->headers != read->headers) {
    __builtin_trap();
  }
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
  }

  baton::v1::WorkerFrame from_worker;
  if (from_worker.ParseFromArray(data, static_cast<int>(size))) {
    if (from_worker.has_run_output()) {
      for (const baton::v1::OutRecord& r : from_worker.run_output().records()) CheckOut(r);
    }
    if (from_worker.has_snapshot()) {
      absl::StatusOr<baton::Json> snapshot =
          baton::DecodeSnapshot(from_worker.snapshot().snapshot_json());
      if (snapshot.ok() && !snapshot->is_object()) __builtin_trap();
    }
    if (from_worker.has_run_finished()) CheckValidUtf8(from_worker.run_finished().error());
  }
  return 0;
}
