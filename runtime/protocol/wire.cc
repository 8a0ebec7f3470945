#include "runtime/protocol/wire.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace baton {

namespace {

// Reads a chunk's text without building it (nlohmann's SAX parser): the JSON is well formed, its
// top level an object, and the last of its own "type" keys a non-empty string.
class ChunkShape final : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool string(string_t& value) override {
    if (depth_ == 1 && at_type_) {
      typed_ = !value.empty();
      at_type_ = false;
    }
    return true;
  }
  bool binary(binary_t&) override { return Value(); }
  bool start_object(std::size_t) override { return Open(true); }
  bool start_array(std::size_t) override { return Open(false); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }
  bool key(string_t& name) override {
    at_type_ = depth_ == 1 && name == "type";
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    // As ParseJson words it: a syntax error (ids 101 to 199) by its byte, anything else (a
    // number too large, 406) by nlohmann's own message.
    error_ = e.id >= 101 && e.id <= 199
                 ? absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", position))
                 : absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
    return false;
  }

  // After the parse: its error (ok when the text is JSON).
  const absl::Status& JsonError() const { return error_; }
  bool Shaped() const { return object_ && typed_; }

 private:
  // A value other than a string: when it is the chunk's "type", the chunk has none.
  bool Value() {
    if (depth_ == 1 && at_type_) {
      typed_ = false;
      at_type_ = false;
    }
    return true;
  }
  bool Open(bool object) {
    if (depth_ == 0) object_ = object;
    Value();
    ++depth_;
    return true;
  }
  bool Close() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  bool object_ = false;
  bool at_type_ = false;
  bool typed_ = false;
  absl::Status error_;
};

// What a `.out` chunk's text must be: JSON no deeper than kMaxChunkDepth (checked on the text
// first, as ParseJson does, in its words), and an object with a string "type" (`shaped`).
absl::Status CheckChunkJson(std::string_view text, bool& shaped) {
  shaped = false;
  if (absl::Status depth = CheckJsonTextDepth(text, kMaxChunkDepth, "JSON"); !depth.ok()) {
    return depth;
  }
  ChunkShape shape;
  Json::sax_parse(text, &shape);
  shaped = shape.Shaped();
  return shape.JsonError();
}

}  // namespace

baton::v1::OutRecord OutRecordToProto(OutRecord record) {
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
    out.set_chunk_json(std::move(record.chunk_json));
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
    bool shaped = false;
    if (absl::Status json = CheckChunkJson(record.chunk_json(), shaped); !json.ok()) return json;
    if (!shaped) {
      return absl::InvalidArgumentError(
          absl::StrCat(".out record ", record.seq(),
                       " holds a chunk that is not a JSON object with a string \"type\""));
    }
    out = OutRecord::ChunkText(record.chunk_json());
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
      bool shaped = false;
      if (absl::Status json = CheckChunkJson(record.chunk_json(), shaped); !json.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(".out record ", record.seq(), ": chunk_json: ", json.message()));
      }
      if (!shaped) {
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

// ---- frames -----------------------------------------------------------------------------------

namespace {

// A frame's own envelope (the GatewayFrame or WorkerFrame around it, its `more` flag) fits this.
constexpr size_t kFrameSlack = 32;
// A frame that would take less of a snapshot than this starts a new frame instead.
constexpr size_t kMinPiece = 1024;

size_t VarintBytes(size_t n) {
  size_t bytes = 1;
  while (n >= 0x80) {
    n >>= 7;
    ++bytes;
  }
  return bytes;
}

// A length-delimited field of `n` bytes: its tag (fields here are numbered below 16), its
// length and its bytes.
size_t FieldBytes(size_t n) { return 1 + VarintBytes(n) + n; }

}  // namespace

size_t GrpcMessageLimit(size_t frame_bytes) {
  // One record alone (a .in or .out record, or a payload, each at most 1 MiB) and its frame's
  // header.
  return frame_bytes + kMaxInRecordBytes + (64 << 10);
}

size_t SendFrameBytes(int64_t announced, size_t own) {
  size_t peer = announced <= 0 ? kDefaultFrameBytes : static_cast<size_t>(announced);
  return std::max(kMinFrameBytes, std::min(peer, own));
}

size_t Utf8Cut(std::string_view text, size_t n) {
  if (n >= text.size()) return text.size();
  size_t cut = n;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return cut > 0 ? cut : n;
}

std::vector<baton::v1::GatewayFrame> FrameAssignment(baton::v1::AssignRun assign,
                                                     size_t frame_bytes) {
  const size_t budget = frame_bytes - std::min(frame_bytes, kFrameSlack);
  std::string snapshot;
  snapshot.swap(*assign.mutable_snapshot_json());
  google::protobuf::RepeatedPtrField<baton::v1::InRecord> pending;
  pending.Swap(assign.mutable_pending());
  google::protobuf::RepeatedPtrField<baton::v1::OutRecord> tail;
  tail.Swap(assign.mutable_out_tail());
  assign.set_more(false);
  const std::string run_id = assign.run_id();
  const int64_t lease_token = assign.lease_token();

  std::vector<baton::v1::GatewayFrame> frames(1);
  *frames[0].mutable_assign_run() = std::move(assign);
  size_t used = frames[0].assign_run().ByteSizeLong();
  bool fresh = false;  // the last frame holds its header only
  auto next = [&] {
    baton::v1::AssignMore& more = *frames.emplace_back().mutable_assign_more();
    more.set_run_id(run_id);
    more.set_lease_token(lease_token);
    used = more.ByteSizeLong();
    fresh = true;
  };
  auto snapshot_field = [&]() -> std::string& {
    baton::v1::GatewayFrame& last = frames.back();
    return last.has_assign_run() ? *last.mutable_assign_run()->mutable_snapshot_json()
                                 : *last.mutable_assign_more()->mutable_snapshot_json();
  };

  std::string_view rest = snapshot;
  while (!rest.empty()) {
    size_t room = budget - std::min(budget, used + FieldBytes(0) + VarintBytes(rest.size()));
    if (room < std::min(rest.size(), kMinPiece) && !fresh) {
      next();
      continue;
    }
    size_t n = Utf8Cut(rest, std::max(room, kMinPiece));
    snapshot_field().append(rest.substr(0, n));
    used += FieldBytes(n);
    fresh = false;
    rest.remove_prefix(n);
    if (!rest.empty()) next();
  }
  for (baton::v1::InRecord& record : pending) {
    size_t n = FieldBytes(record.ByteSizeLong());
    if (!fresh && used + n > budget) next();
    baton::v1::GatewayFrame& last = frames.back();
    *(last.has_assign_run() ? last.mutable_assign_run()->add_pending()
                            : last.mutable_assign_more()->add_pending()) = std::move(record);
    used += n;
    fresh = false;
  }
  for (baton::v1::OutRecord& record : tail) {
    size_t n = FieldBytes(record.ByteSizeLong());
    if (!fresh && used + n > budget) next();
    baton::v1::GatewayFrame& last = frames.back();
    *(last.has_assign_run() ? last.mutable_assign_run()->add_out_tail()
                            : last.mutable_assign_more()->add_out_tail()) = std::move(record);
    used += n;
    fresh = false;
  }
  for (size_t i = 0; i < frames.size(); ++i) {
    bool more = i + 1 < frames.size();
    if (i == 0) {
      frames[i].mutable_assign_run()->set_more(more);
    } else {
      frames[i].mutable_assign_more()->set_more(more);
    }
  }
  return frames;
}

absl::Status MergeAssignMore(baton::v1::AssignRun& assign, baton::v1::AssignMore more) {
  if (more.run_id() != assign.run_id() || more.lease_token() != assign.lease_token()) {
    return absl::InvalidArgumentError(
        absl::StrCat("an AssignMore of run ", more.run_id(), " lease ", more.lease_token(),
                     " arrived while run ", assign.run_id(), " lease ", assign.lease_token(),
                     " was being assigned"));
  }
  assign.mutable_snapshot_json()->append(more.snapshot_json());
  for (baton::v1::InRecord& r : *more.mutable_pending()) *assign.add_pending() = std::move(r);
  for (baton::v1::OutRecord& r : *more.mutable_out_tail()) *assign.add_out_tail() = std::move(r);
  assign.set_more(more.more());
  return absl::OkStatus();
}

std::vector<baton::v1::Snapshot> FrameSnapshot(const baton::v1::Snapshot& snapshot,
                                               size_t frame_bytes) {
  baton::v1::Snapshot header = snapshot;
  header.clear_snapshot_json();
  header.set_more(true);
  const size_t overhead =
      kFrameSlack + header.ByteSizeLong() + FieldBytes(0) + VarintBytes(frame_bytes);
  const size_t piece = std::max(kMinPiece, frame_bytes - std::min(frame_bytes, overhead));
  std::string_view rest = snapshot.snapshot_json();
  std::vector<baton::v1::Snapshot> pieces;
  do {
    size_t n = Utf8Cut(rest, piece);
    pieces.push_back(header);
    pieces.back().set_snapshot_json(std::string(rest.substr(0, n)));
    rest.remove_prefix(n);
  } while (!rest.empty());
  pieces.back().set_more(false);
  return pieces;
}

absl::StatusOr<std::optional<baton::v1::Snapshot>> AddSnapshotPiece(
    std::optional<baton::v1::Snapshot>& partial, baton::v1::Snapshot piece, size_t max_bytes) {
  if (partial.has_value()) {
    if (piece.run_id() != partial->run_id() || piece.lease_token() != partial->lease_token() ||
        piece.in_seq() != partial->in_seq() || piece.out_seq() != partial->out_seq() ||
        piece.version() != partial->version() || piece.base_version() != partial->base_version() ||
        piece.messages_from() != partial->messages_from()) {
      std::string run_id = partial->run_id();
      partial.reset();
      return absl::InvalidArgumentError(
          absl::StrCat("a piece of run ", piece.run_id(), "'s snapshot does not continue the ",
                       "snapshot of run ", run_id, " (another lease token, cursors or version)"));
    }
    size_t size = partial->snapshot_json().size() + piece.snapshot_json().size();
    if (size > max_bytes) {
      partial.reset();
      return absl::InvalidArgumentError(absl::StrCat(
          "a snapshot of ", size, " bytes or more exceeds the limit of ", max_bytes, " bytes"));
    }
    partial->mutable_snapshot_json()->append(piece.snapshot_json());
    partial->set_more(piece.more());
  } else {
    if (piece.snapshot_json().size() > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("a snapshot of ", piece.snapshot_json().size(),
                                                     " bytes or more exceeds the limit of ",
                                                     max_bytes, " bytes"));
    }
    partial = std::move(piece);
  }
  if (partial->more()) return std::optional<baton::v1::Snapshot>();
  std::optional<baton::v1::Snapshot> whole = std::move(partial);
  partial.reset();
  return whole;
}

std::vector<baton::v1::RunOutput> FrameRunOutput(const std::string& run_id, int64_t lease_token,
                                                 const std::deque<baton::v1::OutRecord>& records,
                                                 int64_t after_seq, size_t frame_bytes) {
  const size_t budget = frame_bytes - std::min(frame_bytes, kFrameSlack);
  std::vector<baton::v1::RunOutput> frames;
  size_t used = 0;
  for (const baton::v1::OutRecord& record : records) {
    if (record.seq() <= after_seq) continue;
    size_t n = FieldBytes(record.ByteSizeLong());
    if (frames.empty() || (frames.back().records_size() > 0 && used + n > budget)) {
      baton::v1::RunOutput& output = frames.emplace_back();
      output.set_run_id(run_id);
      output.set_lease_token(lease_token);
      used = output.ByteSizeLong();
    }
    *frames.back().add_records() = record;
    used += n;
  }
  return frames;
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
  absl::StatusOr<InRecord> decoded = DecodeInRecord(record.seq(), record.body_json());
  if (decoded.ok() && record.appended_at_unix_ms() > 0) {
    decoded->appended_at = absl::FromUnixMillis(record.appended_at_unix_ms());
  }
  return decoded;
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

absl::Status CheckAgentInfo(const baton::v1::AgentInfo& agent) {
  auto over = [](std::string_view what, const std::string& value, size_t limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), " must be at most ", limit, " bytes, not ", value.size()));
  };
  if (agent.version().size() > kMaxAgentVersionBytes) {
    return over("version", agent.version(), kMaxAgentVersionBytes);
  }
  if (agent.system().size() > kMaxAgentSystemBytes) {
    return over("system", agent.system(), kMaxAgentSystemBytes);
  }
  if (agent.tools_json().size() > kMaxAgentToolsBytes) {
    return over("tools_json", agent.tools_json(), kMaxAgentToolsBytes);
  }
  if (agent.model_provider().size() > kMaxAgentModelBytes) {
    return over("model_provider", agent.model_provider(), kMaxAgentModelBytes);
  }
  if (agent.model_id().size() > kMaxAgentModelBytes) {
    return over("model_id", agent.model_id(), kMaxAgentModelBytes);
  }
  if (agent.tools_json().empty()) return absl::OkStatus();
  absl::StatusOr<Json> tools = ParseJson(agent.tools_json());
  if (!tools.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tools_json is not JSON: ", tools.status().message()));
  }
  if (!tools->is_array()) return absl::InvalidArgumentError("tools_json is not a JSON array");
  for (size_t i = 0; i < tools->size(); ++i) {
    const Json& tool = (*tools)[i];
    if (!tool.is_object() || StringField(tool, "name").empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tools_json[", i, "] is not an object with a non-empty string \"name\""));
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
