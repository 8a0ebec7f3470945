#include "hooks/records.h"

#include "absl/strings/str_cat.h"

namespace baton {
namespace {

const Json& NullJson() {
  static const Json* null = new Json();
  return *null;
}

}  // namespace

std::string_view InKindName(InKind kind) {
  switch (kind) {
    case InKind::kMessage:
      return "message";
    case InKind::kStop:
      return "stop";
    case InKind::kHandover:
      return "handover";
    case InKind::kHandoverSkip:
      return "handover-skip";
  }
  return "unknown";
}

const Json& InRecord::payload() const {
  const Json* p = FindField(body, "payload");
  return p != nullptr ? *p : NullJson();
}

std::string InRecord::trigger() const { return StringField(payload(), "trigger"); }

const Json& InRecord::message() const {
  const Json* m = FindField(payload(), "message");
  return m != nullptr ? *m : NullJson();
}

absl::StatusOr<InRecord> DecodeInRecord(int64_t seq, std::string_view body) {
  if (body.size() > kMaxInRecordBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        ".in record of ", body.size(), " bytes exceeds the limit of ", kMaxInRecordBytes));
  }
  // Checked on the text, before anything is built: a record no worker could hold is refused.
  if (absl::Status depth = CheckJsonTextDepth(body, kMaxDataDepth, ".in record"); !depth.ok()) {
    return depth;
  }
  absl::StatusOr<Json> json = ParseJson(body, kMaxDataDepth);
  if (!json.ok()) return json.status();
  return InRecordFromJson(seq, *std::move(json));
}

absl::StatusOr<InRecord> InRecordFromJson(int64_t seq, Json body) {
  if (!body.is_object()) return absl::InvalidArgumentError(".in record is not a JSON object");
  if (absl::Status depth = CheckJsonDepth(body, kMaxDataDepth, ".in record"); !depth.ok()) {
    return depth;
  }
  const Json* kind = FindField(body, "kind");
  if (kind == nullptr || !kind->is_string()) {
    return absl::InvalidArgumentError(".in record has no string \"kind\"");
  }
  InRecord record;
  record.seq = seq;
  const std::string& k = kind->get_ref<const std::string&>();
  if (k == "message") {
    record.kind = InKind::kMessage;
    const Json* payload = FindField(body, "payload");
    if (payload == nullptr || !payload->is_object()) {
      return absl::InvalidArgumentError("message record has no object \"payload\"");
    }
    const Json* message = FindField(*payload, "message");
    if (message != nullptr && !message->is_null()) {
      if (absl::Status s = CheckUiMessage(*message, "payload.message"); !s.ok()) return s;
    }
  } else if (k == "stop") {
    record.kind = InKind::kStop;
  } else if (k == "handover") {
    record.kind = InKind::kHandover;
    const Json* partial = FindField(body, "partialAssistantMessage");
    if (partial == nullptr || !partial->is_array()) {
      return absl::InvalidArgumentError(
          "handover record needs a \"partialAssistantMessage\" array");
    }
    for (const Json& m : *partial) {
      if (!m.is_object() || StringField(m, "role").empty()) {
        return absl::InvalidArgumentError("handover partial holds a message without a role");
      }
    }
    const Json* is_final = FindField(body, "isFinal");
    if (is_final != nullptr && !is_final->is_boolean()) {
      return absl::InvalidArgumentError("handover \"isFinal\" must be a boolean");
    }
  } else if (k == "handover-skip") {
    record.kind = InKind::kHandoverSkip;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown .in record kind ", Quoted(k)));
  }
  record.body = std::move(body);
  return record;
}

absl::Status CheckUiMessage(const Json& message, std::string_view where_view) {
  const std::string where(where_view);  // absl::StrCat takes absl::string_view, not std's
  if (!message.is_object() || StringField(message, "id").empty() ||
      StringField(message, "role").empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " needs a string id and role"));
  }
  std::string role = StringField(message, "role");
  if (role != "system" && role != "user" && role != "assistant") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " has role ", Quoted(role),
                     "; a UI message is \"system\", \"user\" or \"assistant\""));
  }
  const Json* parts = FindField(message, "parts");
  if (parts == nullptr || !parts->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " needs a \"parts\" array"));
  }
  for (size_t i = 0; i < parts->size(); ++i) {
    if (StringField((*parts)[i], "type").empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".parts[", i, "] is not an object with a string \"type\""));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBootPayload(const Json& payload) {
  if (absl::Status depth = CheckJsonDepth(payload, kMaxDataDepth, "payload"); !depth.ok()) {
    return depth;
  }
  const Json* message = FindField(payload, "message");
  if (message != nullptr && !message->is_null()) {
    if (absl::Status s = CheckUiMessage(*message, "payload.message"); !s.ok()) return s;
  }
  if (const Json* history = FindField(payload, "headStartMessages")) {
    if (!history->is_array()) {
      return absl::InvalidArgumentError(
          "payload.headStartMessages must be an array of UI messages");
    }
    for (size_t i = 0; i < history->size(); ++i) {
      absl::Status s =
          CheckUiMessage((*history)[i], absl::StrCat("payload.headStartMessages[", i, "]"));
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

OutRecord OutRecord::Chunk(const Json& chunk) { return ChunkText(DumpJson(chunk)); }

OutRecord OutRecord::ChunkText(std::string json) {
  OutRecord r;
  r.chunk_json = std::move(json);
  return r;
}

Json OutRecord::chunk() const {
  if (is_control) return Json();
  absl::StatusOr<Json> parsed = ParseJson(chunk_json);
  return parsed.ok() ? *std::move(parsed) : Json();
}

OutRecord OutRecord::Control(std::string_view subtype,
                             std::vector<std::pair<std::string, std::string>> headers) {
  OutRecord r;
  r.is_control = true;
  r.control = std::string(subtype);
  r.headers = std::move(headers);
  return r;
}

std::string OutRecord::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

std::string OutRecord::Type() const {
  if (is_control) return absl::StrCat("trigger:", control);
  return StringField(chunk(), "type");
}

Json OutRecord::ToJson() const {
  Json j = Json::object();
  j["seq"] = seq;
  if (is_control) {
    j["control"] = control;
    Json h = Json::object();
    for (const auto& [k, v] : headers) h[k] = v;
    j["headers"] = std::move(h);
  } else {
    j["chunk"] = chunk();
  }
  return j;
}

}  // namespace baton
