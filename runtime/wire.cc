#include "runtime/wire.h"

#include "absl/strings/str_cat.h"

namespace baton {

baton::v1::OutRecord OutRecordToProto(const OutRecord& record) {
  baton::v1::OutRecord out;
  out.set_seq(record.seq);
  if (record.is_control) {
    baton::v1::ControlRecord* control = out.mutable_control();
    // Header values can come from user code (a close reason): a string field must be UTF-8.
    control->set_subtype(ToValidUtf8(record.control));
    for (const auto& [name, value] : record.headers) {
      baton::v1::Header* header = control->add_headers();
      header->set_name(ToValidUtf8(name));
      header->set_value(ToValidUtf8(value));
    }
  } else {
    out.set_chunk_json(DumpJson(record.chunk));
  }
  return out;
}

absl::StatusOr<OutRecord> OutRecordFromProto(const baton::v1::OutRecord& record) {
  OutRecord out;
  if (record.has_control()) {
    std::vector<std::pair<std::string, std::string>> headers;
    for (const baton::v1::Header& h : record.control().headers()) {
      headers.emplace_back(h.name(), h.value());
    }
    out = OutRecord::Control(record.control().subtype(), std::move(headers));
  } else {
    absl::StatusOr<Json> chunk = ParseJson(record.chunk_json(), kMaxChunkDepth);
    if (!chunk.ok()) return chunk.status();
    if (!chunk->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(".out record ", record.seq(), " holds a chunk that is not a JSON object"));
    }
    out = OutRecord::Chunk(*std::move(chunk));
  }
  out.seq = record.seq();
  return out;
}

absl::Status CheckOutRecord(const baton::v1::OutRecord& record) {
  if (record.seq() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(".out record has seq ", record.seq(), "; seqs start at 1"));
  }
  size_t size = record.ByteSizeLong();
  if (size > kMaxOutRecordBytes) {
    return absl::InvalidArgumentError(absl::StrCat(".out record ", record.seq(), " of ", size,
                                                   " bytes exceeds the limit of ",
                                                   kMaxOutRecordBytes));
  }
  switch (record.content_case()) {
    case baton::v1::OutRecord::kChunkJson: {
      absl::StatusOr<Json> chunk = ParseJson(record.chunk_json(), kMaxChunkDepth);
      if (!chunk.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(".out record ", record.seq(), ": chunk_json: ", chunk.status().message()));
      }
      if (StringField(*chunk, "type").empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(".out record ", record.seq(),
                         ": chunk_json is not a JSON object with a string \"type\""));
      }
      return absl::OkStatus();
    }
    case baton::v1::OutRecord::kControl:
      if (record.control().subtype().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(".out record ", record.seq(), ": control record without a subtype"));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          ".out record ", record.seq(), " holds neither a chunk nor a control record"));
  }
}

absl::StatusOr<Json> DecodeSnapshot(std::string_view snapshot_json) {
  absl::StatusOr<Json> snapshot = ParseJson(snapshot_json);
  if (!snapshot.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot_json: ", snapshot.status().message()));
  }
  if (!snapshot->is_object()) {
    return absl::InvalidArgumentError("snapshot_json is not a JSON object");
  }
  if (const Json* messages = FindField(*snapshot, "messages")) {
    if (!messages->is_array()) {
      return absl::InvalidArgumentError("snapshot_json: \"messages\" is not an array");
    }
    for (const Json& entry : *messages) {
      if (!entry.is_object()) {
        return absl::InvalidArgumentError(
            "snapshot_json: an entry of \"messages\" is not an object");
      }
    }
  }
  return snapshot;
}

absl::StatusOr<Assignment> DecodeAssignment(const baton::v1::AssignRun& assign) {
  auto refuse = [](std::string_view reason, const absl::Status& why) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(reason), ": ", why.message()));
  };
  Assignment out;
  if (!assign.payload_json().empty()) {
    // The client's payload (with its chatId and boot message): held to the client's limit, as
    // CreateSession held it, so that what the run builds around it stays parseable.
    absl::StatusOr<Json> payload = ParseJson(assign.payload_json(), kMaxDataDepth);
    if (!payload.ok()) {
      return refuse("bad-payload", absl::InvalidArgumentError(
                                       absl::StrCat("payload_json: ", payload.status().message())));
    }
    if (!payload->is_object()) {
      return refuse("bad-payload", absl::InvalidArgumentError("payload_json is not a JSON object"));
    }
    if (absl::Status checked = CheckBootPayload(*payload); !checked.ok()) {
      return refuse("bad-payload", checked);
    }
    out.payload = *std::move(payload);
  }
  if (!assign.snapshot_json().empty()) {
    absl::StatusOr<Json> snapshot = DecodeSnapshot(assign.snapshot_json());
    if (!snapshot.ok()) return refuse("bad-snapshot", snapshot.status());
    out.snapshot = *std::move(snapshot);
  }
  for (const baton::v1::InRecord& r : assign.pending()) {
    absl::StatusOr<InRecord> record = InRecordFromProto(r);
    if (!record.ok()) {
      return refuse("bad-pending-record",
                    absl::InvalidArgumentError(
                        absl::StrCat(".in record ", r.seq(), ": ", record.status().message())));
    }
    out.pending.push_back(*std::move(record));
  }
  for (const baton::v1::OutRecord& r : assign.out_tail()) {
    absl::StatusOr<OutRecord> record = OutRecordFromProto(r);
    if (!record.ok()) return refuse("bad-out-record", record.status());
    out.out_tail.push_back(*std::move(record));
  }
  return out;
}

baton::v1::InKind InKindToProto(InKind kind) {
  switch (kind) {
    case InKind::kMessage:
      return baton::v1::IN_KIND_MESSAGE;
    case InKind::kStop:
      return baton::v1::IN_KIND_STOP;
    case InKind::kHandover:
      return baton::v1::IN_KIND_HANDOVER;
    case InKind::kHandoverSkip:
      return baton::v1::IN_KIND_HANDOVER_SKIP;
  }
  return baton::v1::IN_KIND_UNSPECIFIED;
}

absl::StatusOr<InRecord> InRecordFromProto(const baton::v1::InRecord& record) {
  return DecodeInRecord(record.seq(), record.body_json());
}

namespace {
constexpr std::pair<baton::v1::Trigger, std::string_view> kTriggers[] = {
    {baton::v1::TRIGGER_PRELOAD, "preload"},
    {baton::v1::TRIGGER_SUBMIT_MESSAGE, "submit-message"},
    {baton::v1::TRIGGER_HANDOVER_PREPARE, "handover-prepare"},
    {baton::v1::TRIGGER_REGENERATE_MESSAGE, "regenerate-message"},
    {baton::v1::TRIGGER_CLOSE, "close"},
};
}  // namespace

std::string_view TriggerName(baton::v1::Trigger trigger) {
  for (const auto& [t, name] : kTriggers) {
    if (t == trigger) return name;
  }
  return "";
}

baton::v1::Trigger TriggerFromName(std::string_view name) {
  for (const auto& [t, n] : kTriggers) {
    if (n == name) return t;
  }
  return baton::v1::TRIGGER_UNSPECIFIED;
}

namespace {
constexpr std::pair<baton::v1::SessionState, std::string_view> kSessionStates[] = {
    {baton::v1::SESSION_STATE_LIVE, "live"},     {baton::v1::SESSION_STATE_SUSPENDED, "suspended"},
    {baton::v1::SESSION_STATE_EXITED, "exited"}, {baton::v1::SESSION_STATE_FAILED, "failed"},
    {baton::v1::SESSION_STATE_CLOSED, "closed"},
};
}  // namespace

std::string_view SessionStateName(baton::v1::SessionState state) {
  for (const auto& [s, name] : kSessionStates) {
    if (s == state) return name;
  }
  return "unspecified";
}

baton::v1::SessionState SessionStateFromName(std::string_view name) {
  for (const auto& [s, n] : kSessionStates) {
    if (n == name) return s;
  }
  return baton::v1::SESSION_STATE_UNSPECIFIED;
}

namespace {
constexpr std::pair<baton::v1::RunState, std::string_view> kRunStates[] = {
    {baton::v1::RUN_STATE_QUEUED, "queued"},       {baton::v1::RUN_STATE_ASSIGNED, "assigned"},
    {baton::v1::RUN_STATE_RUNNING, "running"},     {baton::v1::RUN_STATE_SUSPENDED, "suspended"},
    {baton::v1::RUN_STATE_EXITED, "exited"},       {baton::v1::RUN_STATE_FAILED, "failed"},
    {baton::v1::RUN_STATE_CANCELLED, "cancelled"}, {baton::v1::RUN_STATE_LOST, "lost"},
};
}  // namespace

std::string_view RunStateName(baton::v1::RunState state) {
  for (const auto& [s, name] : kRunStates) {
    if (s == state) return name;
  }
  return "unspecified";
}

baton::v1::RunState RunStateFromName(std::string_view name) {
  for (const auto& [s, n] : kRunStates) {
    if (n == name) return s;
  }
  return baton::v1::RUN_STATE_UNSPECIFIED;
}

absl::Status CheckAgentName(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("an agent name must not be empty");
  if (name.size() > kMaxAgentNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "an agent name must be at most ", kMaxAgentNameBytes, " bytes, not ", name.size()));
  }
  for (char c : name) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '@';
    if (!allowed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "agent name ", Quoted(name), " may hold only ASCII letters, digits and - _ . : / @"));
    }
  }
  return absl::OkStatus();
}

bool ValidTraceparent(std::string_view value) {
  if (value.size() != 55 || value[2] != '-' || value[35] != '-' || value[52] != '-') return false;
  auto hex = [&](size_t from, size_t n) {
    bool nonzero = false;
    for (size_t i = from; i < from + n; ++i) {
      char c = value[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
      nonzero = nonzero || c != '0';
    }
    return nonzero ? 1 : 0;
  };
  return hex(0, 2) >= 0 && value.substr(0, 2) != "ff" && hex(3, 32) == 1 && hex(36, 16) == 1 &&
         hex(53, 2) >= 0;
}

}  // namespace baton
