#include "tools/orchestrator/states.h"

#include <tuple>

namespace baton::orchestrator {

namespace v1 = ::baton::v1;

namespace {

// One row per value: the type's, the store's word, the wire's.
constexpr std::tuple<RunState, std::string_view, v1::RunState> kRunStates[] = {
    {RunState::kQueued, "queued", v1::RUN_STATE_QUEUED},
    {RunState::kAssigned, "assigned", v1::RUN_STATE_ASSIGNED},
    {RunState::kRunning, "running", v1::RUN_STATE_RUNNING},
    {RunState::kSuspended, "suspended", v1::RUN_STATE_SUSPENDED},
    {RunState::kExited, "exited", v1::RUN_STATE_EXITED},
    {RunState::kFailed, "failed", v1::RUN_STATE_FAILED},
    {RunState::kCancelled, "cancelled", v1::RUN_STATE_CANCELLED},
    {RunState::kLost, "lost", v1::RUN_STATE_LOST},
};

constexpr std::tuple<SessionState, std::string_view, v1::SessionState> kSessionStates[] = {
    {SessionState::kLive, "live", v1::SESSION_STATE_LIVE},
    {SessionState::kSuspended, "suspended", v1::SESSION_STATE_SUSPENDED},
    {SessionState::kExited, "exited", v1::SESSION_STATE_EXITED},
    {SessionState::kFailed, "failed", v1::SESSION_STATE_FAILED},
    {SessionState::kClosed, "closed", v1::SESSION_STATE_CLOSED},
};

constexpr std::tuple<BootTrigger, std::string_view, v1::Trigger> kTriggers[] = {
    {BootTrigger::kPreload, "preload", v1::TRIGGER_PRELOAD},
    {BootTrigger::kSubmitMessage, "submit-message", v1::TRIGGER_SUBMIT_MESSAGE},
    {BootTrigger::kHandoverPrepare, "handover-prepare", v1::TRIGGER_HANDOVER_PREPARE},
    {BootTrigger::kRegenerateMessage, "regenerate-message", v1::TRIGGER_REGENERATE_MESSAGE},
    {BootTrigger::kClose, "close", v1::TRIGGER_CLOSE},
    {BootTrigger::kContinuation, "continuation", v1::TRIGGER_UNSPECIFIED},
    {BootTrigger::kResume, "resume", v1::TRIGGER_UNSPECIFIED},
};

template <typename Table, typename Value>
std::string_view WordIn(const Table& table, Value value) {
  for (const auto& [v, word, proto] : table) {
    if (v == value) return word;
  }
  return "";
}

template <typename Proto, typename Table, typename Value>
Proto ProtoIn(const Table& table, Value value) {
  for (const auto& [v, word, proto] : table) {
    if (v == value) return proto;
  }
  return Proto{};
}

template <typename Value, typename Table>
std::optional<Value> ValueOfWord(const Table& table, std::string_view word) {
  for (const auto& [v, w, proto] : table) {
    if (w == word) return v;
  }
  return std::nullopt;
}

}  // namespace

bool IsLive(RunState state) {
  return state == RunState::kQueued || state == RunState::kAssigned || state == RunState::kRunning;
}

std::string_view Word(RunState state) { return WordIn(kRunStates, state); }
std::string_view Word(SessionState state) { return WordIn(kSessionStates, state); }
std::string_view Word(BootTrigger trigger) { return WordIn(kTriggers, trigger); }

std::optional<RunState> RunStateOf(std::string_view word) {
  return ValueOfWord<RunState>(kRunStates, word);
}
std::optional<SessionState> SessionStateOf(std::string_view word) {
  return ValueOfWord<SessionState>(kSessionStates, word);
}
std::optional<BootTrigger> BootTriggerOf(std::string_view word) {
  return ValueOfWord<BootTrigger>(kTriggers, word);
}

v1::RunState ToProto(RunState state) { return ProtoIn<v1::RunState>(kRunStates, state); }
v1::SessionState ToProto(SessionState state) {
  return ProtoIn<v1::SessionState>(kSessionStates, state);
}
v1::Trigger ToProto(BootTrigger trigger) { return ProtoIn<v1::Trigger>(kTriggers, trigger); }

std::optional<BootTrigger> BootTriggerOf(v1::Trigger trigger) {
  if (trigger == v1::TRIGGER_UNSPECIFIED) return std::nullopt;
  for (const auto& [v, word, proto] : kTriggers) {
    if (proto == trigger) return v;
  }
  return std::nullopt;
}

}  // namespace baton::orchestrator
