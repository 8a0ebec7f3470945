#include "runtime/session_rules.h"

namespace baton {

Json BasePayload(Json payload) {
  if (!payload.is_object()) return Json::object();
  for (const char* one_shot : {"message", "trigger", "headStartMessages", "messageId"}) {
    payload.erase(one_shot);
  }
  return payload;
}

Json BootMessage(const std::string& trigger, const Json& payload) {
  if (!payload.is_object()) return Json();
  if (trigger == "submit-message") return payload.value("message", Json());
  if (trigger != "handover-prepare") return Json();
  const Json* messages = FindField(payload, "headStartMessages");
  if (messages == nullptr || !messages->is_array()) return Json();
  for (auto it = messages->rbegin(); it != messages->rend(); ++it) {
    if (it->is_object() && StringField(*it, "role") == "user") return *it;
  }
  return Json();
}

bool SnapshotHolds(const Json& snapshot, const Json& message) {
  const Json* entries = FindField(snapshot, "messages");
  if (entries == nullptr || !entries->is_array()) return false;
  std::string id = StringField(message, "id");
  for (const Json& e : *entries) {
    if (StringField(e, "id") == id) return true;
  }
  return false;
}

int64_t SnapshotInSeq(const Json& snapshot) { return IntField(snapshot, "lastInEventId"); }
int64_t SnapshotOutSeq(const Json& snapshot) { return IntField(snapshot, "lastOutEventId"); }

bool NeedsAnswer(const InRecord& record) {
  return record.kind == InKind::kMessage && record.trigger() != "close";
}

}  // namespace baton
