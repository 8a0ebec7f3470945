// Fuzzes snapshots stored as deltas (runtime/protocol/snapshot_delta.h), as the orchestrator
// takes a worker's Snapshot frame: decoded against a stored snapshot of four messages (version
// 2), then applied. Nothing may crash, and:
//   - a refused frame says why (the stored snapshot is never changed: it is taken by const);
//   - a frame skipped as a re-send has a version at or below the stored one;
//   - an applied one leaves a stored snapshot whose assembled document DecodeSnapshot takes and
//     that equals the same change made on the parsed documents (the base's entries before
//     `messages_from`, the frame's after, the frame's other fields), with its size counted right;
//   - the frame's text split as a snapshot stored whole assembles back to the same document,
//     "messages" last.
// Input: a first line "version base_version messages_from in_seq out_seq" (missing or
// unreadable numbers are 0), then the frame's snapshot_json. Seeds:
// tests/fuzz/corpus/snapshot_delta/.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "hooks/json.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/snapshot_delta.h"
#include "runtime/protocol/wire.h"

namespace {

baton::SnapshotBounds Bounds() {
  baton::SnapshotBounds bounds;
  bounds.in_seq = 10;
  bounds.out_seq = 100;
  bounds.max_bytes = 1 << 20;
  return bounds;
}

// The stored snapshot every input is decoded against: u1, a1 (version 1, whole), then u2, a2
// (version 2, a delta on it).
const baton::SnapshotState& Base() {
  static const baton::SnapshotState* base = [] {
    auto* state = new baton::SnapshotState();
    absl::StatusOr<baton::SnapshotDelta> whole = baton::SplitSnapshotJson(
        R"({"version":1,"chatId":"c","turn":1,"messages":[)"
        R"({"id":"u1","final":true,"message":{"id":"u1","role":"user","parts":[{"type":"text","text":"hi"}]}},)"
        R"({"id":"a1","final":true,"message":{"id":"a1","role":"assistant","parts":[{"type":"text","text":"hello"}]}}]})");
    if (!whole.ok()) __builtin_trap();
    baton::ApplySnapshotDelta(*state, *std::move(whole));
    baton::v1::Snapshot frame;
    frame.set_snapshot_json(
        R"({"version":1,"chatId":"c","turn":2,"messages":[)"
        R"({"id":"u2","final":true,"message":{"id":"u2","role":"user","parts":[]}},)"
        R"({"id":"a2","final":false,"message":{"id":"a2","role":"assistant","parts":[]}}]})");
    frame.set_version(2);
    frame.set_base_version(1);
    frame.set_messages_from(2);
    absl::StatusOr<std::optional<baton::SnapshotDelta>> delta =
        baton::DecodeSnapshotUpdate(frame, *state, Bounds());
    if (!delta.ok() || !delta->has_value()) __builtin_trap();
    baton::ApplySnapshotDelta(*state, std::move(**delta));
    return state;
  }();
  return *base;
}

// The document `header` (an object) with "messages" set to `messages`, last.
baton::Json WithMessages(baton::Json header, baton::Json messages) {
  header.erase("messages");
  header["messages"] = std::move(messages);
  return header;
}

void CheckState(const baton::SnapshotState& state) {
  if (state.ids.size() != state.entries.size()) __builtin_trap();
  if (state.bytes != baton::SnapshotBytes(state)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t newline = input.find('\n');
  std::string_view numbers = input.substr(0, newline);
  std::string_view json =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  int64_t fields[5] = {0, 0, 0, 0, 0};
  size_t n = 0;
  // absl::string_view is not std::string_view in this build (Debian's Abseil).
  absl::string_view first_line(numbers.data(), numbers.size());
  for (absl::string_view word : absl::StrSplit(first_line, ' ', absl::SkipEmpty())) {
    if (n == 5) break;
    if (!absl::SimpleAtoi(word, &fields[n])) fields[n] = 0;
    ++n;
  }
  baton::v1::Snapshot frame;
  frame.set_snapshot_json(std::string(json));
  frame.set_version(fields[0]);
  frame.set_base_version(fields[1]);
  frame.set_messages_from(fields[2]);
  frame.set_in_seq(fields[3]);
  frame.set_out_seq(fields[4]);

  const baton::SnapshotState& base = Base();
  absl::StatusOr<std::optional<baton::SnapshotDelta>> decoded =
      baton::DecodeSnapshotUpdate(frame, base, Bounds());
  if (!decoded.ok()) {
    if (decoded.status().message().empty()) __builtin_trap();
  } else if (!decoded->has_value()) {
    if (frame.version() == 0 || frame.version() > base.version) __builtin_trap();
  } else {
    const baton::SnapshotDelta& delta = **decoded;
    if (delta.version <= base.version) __builtin_trap();
    if (delta.from > base.entries.size()) __builtin_trap();
    baton::SnapshotState state = base;
    baton::ApplySnapshotDelta(state, **decoded);
    CheckState(state);
    if (state.bytes > Bounds().max_bytes) __builtin_trap();
    absl::StatusOr<baton::Json> assembled =
        baton::DecodeSnapshot(baton::AssembleSnapshotJson(state));
    if (!assembled.ok() || !assembled->is_object()) __builtin_trap();
    // The same change on the parsed documents.
    absl::StatusOr<baton::Json> before = baton::DecodeSnapshot(baton::AssembleSnapshotJson(base));
    absl::StatusOr<baton::Json> sent = baton::DecodeSnapshot(frame.snapshot_json());
    if (!before.ok() || !sent.ok()) __builtin_trap();
    baton::Json messages = baton::Json::array();
    const baton::Json& kept = (*before)["messages"];
    for (size_t i = 0; i < static_cast<size_t>(frame.messages_from()); ++i) {
      messages.push_back(kept[i]);
    }
    if (const baton::Json* added = baton::FindField(*sent, "messages")) {
      for (const baton::Json& entry : *added) messages.push_back(entry);
    }
    if (*assembled != WithMessages(*sent, std::move(messages))) __builtin_trap();
    for (size_t i = 0; i < state.ids.size(); ++i) {
      if (state.ids[i] != baton::StringField((*assembled)["messages"][i], "id")) __builtin_trap();
    }
    baton::Json ids = baton::SnapshotIdsJson(state);
    if (!state.ids.empty() && !baton::SnapshotHolds(ids, baton::Json{{"id", state.ids.back()}})) {
      __builtin_trap();
    }
  }

  // The text as a snapshot stored whole, before snapshots were kept by entry.
  absl::StatusOr<baton::SnapshotDelta> split = baton::SplitSnapshotJson(json);
  if (!split.ok()) {
    if (split.status().message().empty()) __builtin_trap();
    return 0;
  }
  baton::SnapshotState converted;
  baton::ApplySnapshotDelta(converted, *std::move(split));
  CheckState(converted);
  absl::StatusOr<baton::Json> whole = baton::DecodeSnapshot(baton::AssembleSnapshotJson(converted));
  absl::StatusOr<baton::Json> original = baton::DecodeSnapshot(json);
  if (!whole.ok() || !original.ok()) __builtin_trap();
  const baton::Json* messages = baton::FindField(*original, "messages");
  baton::Json expected =
      WithMessages(*original, messages != nullptr ? *messages : baton::Json::array());
  if (*whole != expected) __builtin_trap();
  return 0;
}
