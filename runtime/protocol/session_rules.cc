#include "runtime/protocol/session_rules.h"

#include "absl/strings/str_cat.h"

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

AfterRun AfterRunEnds(bool suspended, bool failed, std::string_view reason, bool unanswered,
                      bool resumable) {
  AfterRun after;
  if (suspended) {
    after.chat = ChatAfterRun::kSuspended;
  } else if (failed) {
    after.chat = ChatAfterRun::kFailed;
  } else {
    after.chat = reason == "close" ? ChatAfterRun::kClosed : ChatAfterRun::kExited;
  }
  if (!unanswered) return after;
  if (after.chat == ChatAfterRun::kSuspended) {
    after.next = resumable ? NextRun::kResume : NextRun::kContinuation;
  } else if (after.chat == ChatAfterRun::kExited) {
    after.next = NextRun::kContinuation;
  }
  return after;
}

bool LeftUnanswered(absl::Span<const InRecord> after_floor, bool upgrade, const Json& boot_message,
                    const Json& snapshot) {
  for (const InRecord& record : after_floor) {
    if (NeedsAnswer(record)) return true;
  }
  return upgrade && boot_message.is_object() && !SnapshotHolds(snapshot, boot_message);
}

NextBoot NextBootOf(const std::string& first_trigger, const Json& base_payload,
                    const Json& boot_message, const Json& head_start_messages,
                    const Json& snapshot) {
  NextBoot next;
  next.payload = base_payload.is_object() ? base_payload : Json::object();
  if (!boot_message.is_object() || SnapshotHolds(snapshot, boot_message)) return next;
  if (first_trigger == "handover-prepare" && head_start_messages.is_array()) {
    next.trigger = "handover-prepare";
    next.payload["headStartMessages"] = head_start_messages;
  } else {
    next.trigger = "submit-message";
    next.payload["message"] = boot_message;
  }
  return next;
}

absl::Status CheckSignal(std::string_view chat_id, const HandoverWindow& window, InKind kind) {
  if (kind != InKind::kHandover && kind != InKind::kHandoverSkip) return absl::OkStatus();
  if (!window.head_start) {
    return absl::FailedPreconditionError(
        absl::StrCat("chat ", std::string(chat_id),
                     " is not a head start: handover and handover-skip are for chats created "
                     "with trigger handover-prepare"));
  }
  if (window.open) return absl::OkStatus();
  std::string by =
      window.closed_by > 0 ? absl::StrCat(" by .in seq ", window.closed_by) : std::string();
  return absl::FailedPreconditionError(absl::StrCat(
      "chat ", std::string(chat_id), "'s head start is closed", by,
      " (a head start takes one handover or handover-skip, before its handover deadline); the "
      "run answers the message itself: read .out"));
}

Json HandoverTimeoutSkip() { return Json{{"kind", "handover-skip"}, {"reason", "timeout"}}; }

}  // namespace baton
