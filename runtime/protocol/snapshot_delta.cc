#include "runtime/protocol/snapshot_delta.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/protocol/wire.h"

namespace baton {

namespace {

absl::Status Refused(std::string what) { return absl::InvalidArgumentError(std::move(what)); }

// SnapshotBytes() of `state` once its header is `header` and its entries from `from` on are
// `entries` (`from` at most its entry count).
size_t BytesAfter(const SnapshotState& state, size_t from, const std::string& header,
                  const std::vector<std::string>& entries) {
  size_t size = state.bytes;
  size -= std::min(size, state.header_json.size());
  for (size_t i = from; i < state.entries.size(); ++i) {
    size -= std::min(size, state.entries[i].size() + 1);
  }
  size += header.size();
  for (const std::string& entry : entries) size += entry.size() + 1;
  return size;
}

// Moves a decoded document's entries ("messages", an array of objects: DecodeSnapshot checked
// it) into `delta` as JSON text with their ids, and the rest of it into its header.
void SplitInto(Json& document, SnapshotDelta& delta) {
  auto messages = document.find("messages");
  if (messages != document.end()) {
    if (messages->is_array()) {
      delta.entries.reserve(messages->size());
      delta.ids.reserve(messages->size());
      for (const Json& entry : *messages) {
        delta.ids.push_back(StringField(entry, "id"));
        delta.entries.push_back(DumpJson(entry));
      }
    }
    document.erase(messages);
  }
  delta.header_json = DumpJson(document);
}

}  // namespace

size_t SnapshotBytes(const SnapshotState& state) {
  size_t size = state.header_json.size();
  for (const std::string& entry : state.entries) size += entry.size() + 1;
  return size;
}

absl::StatusOr<std::optional<SnapshotDelta>> DecodeSnapshotUpdate(const baton::v1::Snapshot& frame,
                                                                  const SnapshotState& stored,
                                                                  const SnapshotBounds& bounds) {
  absl::StatusOr<Json> document = DecodeSnapshot(frame.snapshot_json());
  if (!document.ok()) return document.status();
  if (frame.in_seq() < 0 || frame.in_seq() > bounds.in_seq) {
    return Refused(absl::StrCat("snapshot in_seq ", frame.in_seq(), " is outside .in (0 to ",
                                bounds.in_seq, ")"));
  }
  if (frame.out_seq() < 0 || frame.out_seq() > bounds.out_seq) {
    return Refused(absl::StrCat("snapshot out_seq ", frame.out_seq(),
                                " is outside the stored .out (0 to ", bounds.out_seq, ")"));
  }
  if (frame.version() < 0) {
    return Refused(absl::StrCat("snapshot version ", frame.version(), " is below 0"));
  }
  // A chat saves a snapshot a turn: no chat reaches 2^53, and a number beyond it from a broken
  // worker would leave no room to count on.
  if (frame.version() > kMaxSnapshotVersion) {
    return Refused(absl::StrCat("snapshot version ", frame.version(), " is over the limit of ",
                                kMaxSnapshotVersion));
  }
  // Sent again after a reconnect, and stored before: as a `.out` record at or below the stored
  // end, it is skipped.
  if (frame.version() != 0 && frame.version() <= stored.version) {
    return std::optional<SnapshotDelta>();
  }
  const int64_t from = frame.messages_from();
  if (from < 0) {
    return Refused(absl::StrCat("snapshot messages_from ", from, " is below 0"));
  }
  if (from > 0 && frame.version() == 0) {
    return Refused(absl::StrCat("a snapshot with messages_from ", from,
                                " needs a version (only a whole snapshot may have none)"));
  }
  if (from > static_cast<int64_t>(stored.entries.size())) {
    return Refused(absl::StrCat("snapshot messages_from ", from, " is past the stored snapshot's ",
                                stored.entries.size(), " messages"));
  }
  if (from > 0 && frame.base_version() != stored.version) {
    return Refused(absl::StrCat("snapshot base_version ", frame.base_version(),
                                " is not the stored snapshot's version ", stored.version,
                                " (a snapshot before it was not stored)"));
  }
  SnapshotDelta delta;
  delta.version = frame.version() != 0 ? frame.version() : stored.version + 1;
  delta.from = static_cast<size_t>(from);
  delta.in_seq = frame.in_seq();
  delta.out_seq = frame.out_seq();
  SplitInto(*document, delta);
  delta.bytes = BytesAfter(stored, delta.from, delta.header_json, delta.entries);
  if (delta.bytes > bounds.max_bytes) {
    return Refused(absl::StrCat("a snapshot of ", delta.bytes,
                                " bytes or more exceeds the limit of ", bounds.max_bytes,
                                " bytes"));
  }
  return std::optional<SnapshotDelta>(std::move(delta));
}

void ApplySnapshotDelta(SnapshotState& state, SnapshotDelta delta) {
  const size_t from = std::min(delta.from, state.entries.size());
  state.bytes = BytesAfter(state, from, delta.header_json, delta.entries);
  state.entries.resize(from);
  state.ids.resize(from);
  for (size_t i = 0; i < delta.entries.size(); ++i) {
    state.entries.push_back(std::move(delta.entries[i]));
    state.ids.push_back(i < delta.ids.size() ? std::move(delta.ids[i]) : std::string());
  }
  state.header_json = std::move(delta.header_json);
  state.version = delta.version;
}

absl::StatusOr<SnapshotDelta> SplitSnapshotJson(std::string_view snapshot_json) {
  absl::StatusOr<Json> document = DecodeSnapshot(snapshot_json);
  if (!document.ok()) return document.status();
  SnapshotDelta delta;
  delta.version = 1;
  SplitInto(*document, delta);
  delta.bytes = BytesAfter(SnapshotState(), 0, delta.header_json, delta.entries);
  return delta;
}

std::string AssembleSnapshotJson(const SnapshotState& state) {
  if (state.version == 0 && state.header_json.empty() && state.entries.empty()) return "";
  std::string_view header = state.header_json;
  if (header.size() < 2 || header.front() != '{' || header.back() != '}') header = "{}";
  std::string json;
  json.reserve(state.bytes + 16);
  json.append(header.data(), header.size() - 1);  // without its closing brace
  if (header.size() > 2) json += ',';
  json += "\"messages\":[";
  for (size_t i = 0; i < state.entries.size(); ++i) {
    if (i > 0) json += ',';
    json += state.entries[i];
  }
  json += "]}";
  return json;
}

Json SnapshotIdsJson(const SnapshotState& state) {
  if (state.version == 0 && state.entries.empty()) return Json();
  Json messages = Json::array();
  for (const std::string& id : state.ids) messages.push_back(Json{{"id", id}});
  return Json{{"messages", std::move(messages)}};
}

}  // namespace baton
