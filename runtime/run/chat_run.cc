#include "runtime/run/chat_run.h"

#include <deque>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "asio/co_spawn.hpp"
#include "asio/detached.hpp"
#include "hooks/messages.h"
#include "hooks/status.h"
#include "runtime/base/log.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/step/step_loop.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_chunk.h"
#include "runtime/transcript/ui_reducer.h"

namespace baton {
namespace {

// Whether a snapshot entry is what ChatRun::MakeSnapshot writes for the message it holds: an
// object of "id" (the message's), "final" and "message", in that order. Its "final" is checked
// against the restored run's unfinished messages by the caller.
bool IsStoredEntry(const Json& e) {
  if (!e.is_object() || e.size() != 3) return false;
  auto it = e.begin();
  if (it.key() != "id" || !it->is_string()) return false;
  const Json& id = *it;
  if ((++it).key() != "final" || !it->is_boolean()) return false;
  if ((++it).key() != "message") return false;
  return id.get_ref<const std::string&>() == MessageId(*it);
}

Json Ids(const std::vector<Json>& messages) {
  Json ids = Json::array();
  for (const Json& m : messages) ids.push_back(MessageId(m));
  return ids;
}

Json Roles(const Json& model_messages) {
  Json roles = Json::array();
  for (const Json& m : model_messages) roles.push_back(MessageRole(m));
  return roles;
}

bool HasContent(const Json& response) {
  const Json* parts = FindField(response, "parts");
  if (parts == nullptr || !parts->is_array()) return false;
  for (const Json& p : *parts) {
    if (StringField(p, "type") != "step-start") return true;
  }
  return false;
}

// What user code hands back is held to the data limit before baton copies or stores it
// (docs/bad-input.md, "Nesting"): a value nested deeper would crash the worker that dumps it.
absl::Status TooDeep(const Json& value) { return CheckJsonDepth(value, kMaxDataDepth, "JSON"); }
absl::Status TooDeep(const std::vector<Json>& values) {
  for (const Json& value : values) {
    if (absl::Status s = TooDeep(value); !s.ok()) return s;
  }
  return absl::OkStatus();
}
absl::Status TooDeep(bool) { return absl::OkStatus(); }
absl::Status TooDeep(const std::string&) { return absl::OkStatus(); }
template <typename T>
absl::Status TooDeep(const std::optional<T>& value) {
  return value.has_value() ? TooDeep(*value) : absl::OkStatus();
}

// A hook's result that nests too deeply is the hook's error.
template <typename R>
void CheckResultDepth(R& result) {
  if constexpr (!std::is_same_v<R, absl::Status>) {
    if (!result.ok()) return;
    if (absl::Status s = TooDeep(*result); !s.ok()) {
      result = absl::InvalidArgumentError(
          absl::StrCat("the hook returned JSON nested deeper than ", kMaxDataDepth, " levels"));
    }
  }
}

template <typename R>
void FailWith(R& result, absl::Status error) {
  if (result.ok()) result = std::move(error);
}

// A duration in milliseconds for the timings: whole numbers as integers, else to the
// microsecond.
Json Millis(absl::Duration d) {
  int64_t micros = std::max<int64_t>(0, absl::ToInt64Microseconds(d));
  if (micros % 1000 == 0) return Json(micros / 1000);
  return Json(static_cast<double>(micros) / 1000.0);
}

// The time from `from` to `to`, when both are known (never negative: the two may come from
// different machines' clocks).
std::optional<absl::Duration> Between(absl::Time from, absl::Time to) {
  if (from == absl::InfinitePast() || to == absl::InfinitePast()) return std::nullopt;
  return std::max(absl::ZeroDuration(), to - from);
}

}  // namespace

Json TurnTimings::ToJson() const {
  Json out = Json::object();
  auto put = [&out](const char* key, const std::optional<absl::Duration>& d) {
    if (d.has_value()) out[key] = Millis(*d);
  };
  put("queued", queued);
  put("boot", boot);
  put("hooks", hooks);
  put("handover", handover);
  put("modelFirstByte", model_first_byte);
  put("tools", tools);
  put("turn", turn);
  return out;
}

struct ChatRun::TurnRequest {
  std::string trigger = "submit-message";
  Json action;    // for trigger "action": the payload's action
  Json message;   // the incoming UI message, or null
  Json metadata;  // client data sent with this turn, or null
  int64_t seq = 0;
  bool handover = false;  // turn 0 of a head start: splice handover_
  // For the timings: when the message was stored, when the run had it, whether the run had it
  // at boot, and how long a head start waited for its signal.
  absl::Time stored = absl::InfinitePast();
  absl::Time received = absl::InfinitePast();
  bool at_boot = false;
  std::optional<absl::Duration> handover_wait;
};

struct ChatRun::TurnState {
  int turn = 0;
  std::vector<Json> incoming;  // the request's messages, as validated (moved from once merged)
  // A head start's turn 0: its step 1's message id, whether step 1 was the whole answer, and
  // whether the transcript took it as the turn's response (WriteHandoverStepOne).
  std::string handover_id;
  bool handover_final = false;
  bool spliced = false;
  std::vector<Json> new_ui;
  std::optional<Json> response;
  std::optional<Json> raw_response;
  bool stopped = false;
  std::string finish_reason;
  Usage usage;
  bool noop = false;
  bool upgrade_before_run = false;
  bool appended_incoming = false;
  // For the timings (TurnRequest's, and the run's hook time when the turn began).
  absl::Time stored = absl::InfinitePast();
  absl::Time received = absl::InfinitePast();
  bool first_of_run = false;
  bool at_boot = false;
  std::optional<absl::Duration> handover_wait;
  absl::Duration hooks_before;
  std::optional<absl::Duration> hooks;  // set when the model call (or final response) is reached
};

ChatRun::ChatRun(const Agent& agent, RunHost host, BootRequest boot)
    : agent_(agent),
      host_(std::move(host)),
      boot_(std::move(boot)),
      inbox_(host_.executor, *host_.clock) {}

ChatRun::~ChatRun() = default;

void ChatRun::Start() {
  started_at_ = host_.clock->Now();
  // The inbox learns what earlier runs answered, and gets the records they left, before any
  // live record can be delivered: nothing is taken twice or out of order.
  if (!boot_.snapshot.is_null()) {
    inbox_.StartAfter(IntField(boot_.snapshot, "lastInEventId"),
                      IntField(boot_.snapshot, "inConsumedId"));
  }
  for (InRecord& r : boot_.pending) {
    r.received_at = started_at_;
    inbox_.Deliver(std::move(r));
  }
  boot_.pending.clear();
  asio::co_spawn(
      host_.executor, [self = shared_from_this()] { return self->Main(); }, asio::detached);
}

void ChatRun::Deliver(InRecord record) {
  record.received_at = host_.clock->Now();
  inbox_.Deliver(std::move(record));
}

void ChatRun::Cancel(bool lost) {
  lost_ = lost_ || lost;
  cancel_.request_stop();
}

void ChatRun::Observe(std::string_view hook, const std::function<Json()>& args) {
  if (host_.observe) host_.observe(hook, args());
}

// A hook's closure owns what it touches (its event, its ChatControl) and refers only to the
// Agent, which outlives every run: a hook that overruns its budget may still be running after
// the run went on, or ended.
template <typename R, typename E>
asio::awaitable<R> ChatRun::CallHook(const std::function<R(const E&, ChatControl&)>& hook,
                                     E event) {
  auto control = std::make_shared<ChatControl>();
  absl::AnyInvocable<R()> fn = [&hook, control, event = std::move(event)] {
    R result = hook(event, *control);
    control->Finish();
    return result;
  };
  bool in_time = false;
  const absl::Time began = host_.clock->Now();
  R result = co_await RunUserCode<R>(std::move(fn), &in_time);
  hook_time_ += host_.clock->Now() - began;
  if (in_time) {
    CheckResultDepth(result);
    if (absl::Status applied = ApplyControl(*control); !applied.ok()) FailWith(result, applied);
  } else {
    control->Take();  // seals it: what the late hook asks for is dropped
  }
  co_return result;
}

template <typename R, typename E>
asio::awaitable<R> ChatRun::CallHook(const std::function<R(const E&)>& hook, E event) {
  absl::AnyInvocable<R()> fn = [&hook, event = std::move(event)] { return hook(event); };
  const absl::Time began = host_.clock->Now();
  R result = co_await RunUserCode<R>(std::move(fn));
  hook_time_ += host_.clock->Now() - began;
  CheckResultDepth(result);
  co_return result;
}

template <typename R>
asio::awaitable<R> ChatRun::RunUserCode(absl::AnyInvocable<R()> fn, bool* in_time) {
  absl::Time deadline = host_.clock->Now() + agent_.options.hook_timeout;
  co_return co_await host_.pool->Run<R>(host_.executor, *host_.clock, std::move(fn), deadline,
                                        cancel_.get_token(), in_time);
}

absl::Status ChatRun::ApplyControl(ChatControl& control) {
  ChatControl::Requests requests = control.Take();
  absl::Status status;
  for (Json& chunk : requests.chunks) WriteUserChunk(std::move(chunk));
  if (requests.messages.has_value()) {
    if (TooDeep(*requests.messages).ok()) {
      acc_.Replace(std::move(*requests.messages));
    } else {
      status = absl::InvalidArgumentError(absl::StrCat(
          "SetMessages was given a message nested deeper than ", kMaxDataDepth, " levels"));
    }
  }
  end_run_ = end_run_ || requests.end_run;
  upgrade_ = upgrade_ || requests.upgrade;
  if (requests.close_reason.has_value()) close_reason_ = std::move(requests.close_reason);
  return status;
}

int64_t ChatRun::WriteUserChunk(Json chunk) {
  if (!TooDeep(chunk).ok()) {
    // As a chunk too large for a `.out` record: readers get an error instead, the turn goes on.
    std::string what =
        absl::StrCat("a \"", StringField(chunk, "type"), "\" chunk nests deeper than ",
                     kMaxDataDepth, " levels and was dropped");
    LogJson("warn", "dropped a chunk nested too deeply",
            {{"run_id", info_.run_id}, {"error", what}});
    chunk = Json{{"type", "error"}, {"errorText", std::move(what)}};
  }
  return WriteChunk(std::move(chunk));
}

int64_t ChatRun::WriteChunk(const Json& chunk) {
  std::string why;
  std::string text = DumpChunk(chunk, &why);
  if (!why.empty()) {
    // Unreachable while every way in holds data to kMaxDataDepth; the orchestrator would refuse
    // the record and fail the run, and dumping it could overflow the stack.
    LogJson("error", "dropped a chunk nested too deeply",
            {{"run_id", info_.run_id}, {"error", why}});
  }
  return Write(OutRecord::ChunkText(std::move(text)));
}

int64_t ChatRun::Write(OutRecord record) {
  if (lost_) return 0;  // a lost run writes nothing more
  return host_.write(std::move(record));
}

void ChatRun::SaveSnapshot(const SnapshotUpdate& snapshot) {
  if (lost_) return;
  // The entries the previous save held passed this check then. A message sits three levels
  // down ({"messages": [{"message": m}]}).
  bool too_deep = JsonDepth(snapshot.header) > kMaxJsonDepth;
  for (size_t i = snapshot.unchanged; i < snapshot.count && !too_deep; ++i) {
    too_deep = JsonDepth(acc_.ui()[i]) + 3 > kMaxJsonDepth;
  }
  if (too_deep) {
    // As above, unreachable by the data's own limit; no orchestrator would take it. The last
    // snapshot stored stays the one a continuation starts from, and the next save rewrites
    // what this one would have.
    LogJson("error", "a snapshot nests too deeply to be saved; the last one stays",
            {{"run_id", info_.run_id}, {"limit", kMaxJsonDepth}});
    return;
  }
  host_.save_snapshot(snapshot);
  acc_.MarkSaved();
}

Json SnapshotUpdate::EntryTree(size_t index) const {
  Entry e = entry(index);
  Json tree(Json::value_t::object);
  tree["id"] = std::move(e.id);
  tree["final"] = e.final;
  tree["message"] = *e.message;
  return tree;
}

std::string SnapshotUpdate::EntryJson(size_t index) const {
  Entry e = entry(index);
  std::string text = "{\"id\":";
  AppendJsonString(text, e.id);
  text += e.final ? ",\"final\":true,\"message\":" : ",\"final\":false,\"message\":";
  text += DumpJson(*e.message);
  text += '}';
  return text;
}

Json SnapshotUpdate::Whole() const {
  Json whole = header;
  Json messages = Json::array();
  for (size_t i = 0; i < count; ++i) messages.push_back(EntryTree(i));
  whole["messages"] = std::move(messages);
  return whole;
}

asio::awaitable<void> ChatRun::Main() {
  RunOutcome outcome;
  try {
    outcome = co_await Body();
  } catch (const std::exception& e) {
    // A bug, or input that slipped past a check: the run fails visibly instead of vanishing.
    outcome = RunOutcome{RunOutcome::Kind::kFailed, "failed", e.what()};
  }
  if (cancel_.stop_requested() && outcome.kind != RunOutcome::Kind::kFailed) {
    outcome = RunOutcome{RunOutcome::Kind::kCancelled, "cancelled"};
  }
  Observe("onRunEnd", [&] { return Json{{"reason", outcome.reason}}; });
  if (agent_.hooks.on_run_end) {
    // The run has ended; its hook gets its own budget, not the cancelled run's.
    const auto& hook = agent_.hooks.on_run_end;
    absl::AnyInvocable<absl::Status()> fn =
        [&hook, event = RunEndEvent{info_, outcome.reason, outcome.error}] { return hook(event); };
    absl::Time deadline = host_.clock->Now() + agent_.options.hook_timeout;
    absl::Status ignored = co_await host_.pool->Run<absl::Status>(host_.executor, *host_.clock,
                                                                  std::move(fn), deadline);
    static_cast<void>(ignored);
  }
  host_.finished(outcome);
}

void ChatRun::RestoreSnapshot() {
  Json& snap = boot_.snapshot;
  Json* entries = nullptr;
  if (snap.is_object()) {
    auto found = snap.find("messages");
    if (found != snap.end() && found->is_array()) entries = &*found;
  }
  // The messages are moved out of the boot request (nothing reads them there again). When every
  // entry is what MakeSnapshot writes for the message it holds, the transcript restored is the
  // stored snapshot and the run's first save need not rewrite it: a run booted for each message
  // of a chat that suspends between turns then saves what its turn changed, not the whole chat.
  std::vector<Json> messages;
  bool as_stored = entries != nullptr;
  std::vector<std::pair<std::string, bool>> finals;  // of entries as_stored: id, "final"
  if (entries != nullptr) {
    for (Json& e : *entries) {
      if (!BoolField(e, "final", true)) unfinished_.insert(StringField(e, "id"));
      as_stored = as_stored && IsStoredEntry(e);
      if (as_stored) finals.emplace_back(StringField(e, "id"), BoolField(e, "final", true));
      if (e.is_object() && e.contains("message")) messages.push_back(std::move(e["message"]));
    }
  }
  acc_.Replace(std::move(messages));
  for (const auto& [id, final] : finals) {
    as_stored = as_stored && final == (unfinished_.count(id) == 0);
  }
  if (as_stored) acc_.MarkSaved();
  last_turn_complete_ = IntField(snap, "lastOutEventId");
  chat_started_ = BoolField(snap, "chatStarted");
  if (boot_.resume) {
    turn_ = static_cast<int>(IntField(snap, "turn"));
    info_.preloaded = BoolField(snap, "preloaded");
    if (const Json* usage = FindField(snap, "totalUsage")) {
      const Json* in = FindField(*usage, "inputTokens");
      const Json* out = FindField(*usage, "outputTokens");
      if (in != nullptr && in->is_number_integer()) total_usage_.input_tokens = in->get<int64_t>();
      if (out != nullptr && out->is_number_integer())
        total_usage_.output_tokens = out->get<int64_t>();
    }
  }
}

SnapshotUpdate ChatRun::MakeSnapshot(std::optional<Json> suspended) const {
  SnapshotUpdate update;
  update.unchanged = acc_.dirty_from();
  update.count = acc_.ui().size();
  update.entry = [this](size_t index) {
    const Json& m = acc_.ui()[index];
    std::string id = MessageId(m);
    bool final = unfinished_.count(id) == 0;
    return SnapshotUpdate::Entry{std::move(id), final, &m};
  };
  Json snap = {{"version", 1},
               {"chatId", info_.chat_id},
               {"runId", info_.run_id},
               {"savedAt", absl::FormatTime(host_.clock->Now(), absl::UTCTimeZone())},
               {"lastOutEventId", last_turn_complete_},
               {"lastInEventId", inbox_.resume_floor()},
               {"inConsumedId", inbox_.applied_through()},
               {"chatStarted", chat_started_},
               {"preloaded", info_.preloaded},
               {"turn", turn_},
               {"totalUsage", total_usage_.ToJson()}};
  if (suspended.has_value()) snap["suspended"] = std::move(*suspended);
  update.header = std::move(snap);
  return update;
}

int64_t ChatRun::WriteTurnComplete(bool closed, const std::string& close_reason) {
  std::vector<std::pair<std::string, std::string>> headers = {
      {"session-in-event-id", absl::StrCat(inbox_.resume_floor())},
      {"session-in-consumed-id", absl::StrCat(inbox_.applied_through())}};
  if (closed) {
    headers.emplace_back("session-closed", "true");
    headers.emplace_back("session-closed-reason", close_reason);
  }
  int64_t seq = Write(OutRecord::Control(kTurnComplete, std::move(headers)));
  if (last_turn_complete_ > 0) {
    Write(OutRecord::Control(kTrim, {{"through", absl::StrCat(last_turn_complete_)}}));
  }
  last_turn_complete_ = seq;
  return seq;
}

asio::awaitable<RunOutcome> ChatRun::Body() {
  const bool head_start = LoadBoot();
  if (boot_.resume) co_return co_await Resume();
  if (head_start) SeedHeadStartHistory();
  if (boot_.continuation || boot_.attempt > 1) co_await Recover();
  // Boot-phase hooks sit outside the turn's error handling: a failure fails the run, visibly.
  std::optional<RunOutcome> boot_failed = co_await CallOnBoot();
  if (boot_failed.has_value()) co_return *std::move(boot_failed);
  if (cancel_.stop_requested()) co_return RunOutcome{RunOutcome::Kind::kCancelled, "cancelled"};
  if (agent_.loop) co_return co_await RunLoop();
  co_return co_await StartByTrigger();
}

bool ChatRun::LoadBoot() {
  const Json& payload = boot_.payload;
  info_.chat_id = boot_.chat_id;
  info_.run_id = boot_.run_id;
  info_.client_data = payload.value("metadata", Json());
  info_.continuation = boot_.continuation;
  info_.previous_run_id = boot_.previous_run_id;
  info_.preloaded = boot_.trigger == "preload";
  info_.attempt = boot_.attempt;
  info_.traceparent = boot_.traceparent;
  if (!boot_.snapshot.is_null()) RestoreSnapshot();
  // A retry may follow an attempt that started the chat and died before saving; onChatStart is
  // not fired again (as the reference does on its out-of-memory retry).
  if (boot_.attempt > 1) chat_started_ = true;
  // Only a fresh head start waits for a handover; for every other run a leftover signal is
  // never replayed. (The route stays open through a head start's boot hooks: a signal
  // appended early is kept.)
  const bool head_start = boot_.trigger == "handover-prepare" && !boot_.resume;
  if (!head_start) inbox_.set_handover_open(false);
  return head_start;
}

asio::awaitable<RunOutcome> ChatRun::Resume() {
  const Json suspended = boot_.snapshot.value("suspended", Json::object());
  const std::string phase = StringField(suspended, "phase");
  if (BoolField(suspended, "hooks", true)) {
    Observe("onChatResume", [&] { return Json{{"phase", phase}}; });
    if (agent_.hooks.on_chat_resume) {
      SuspendEvent event{info_, phase, phase == "turn" ? turn_ - 1 : -1, acc_.ui()};
      absl::Status s = co_await CallHook(agent_.hooks.on_chat_resume, event);
      if (!s.ok() && !cancel_.stop_requested()) {
        co_return RunOutcome{RunOutcome::Kind::kFailed, "failed", std::string(s.message())};
      }
    }
  }
  if (agent_.loop) co_return co_await RunLoop();
  std::optional<TurnRequest> none;
  co_return co_await TurnLoop(std::move(none), phase.empty() ? std::string_view("turn") : phase);
}

void ChatRun::SeedHeadStartHistory() {
  // Without a hydrate hook the head-start history seeds the transcript now; with one, it is
  // turn 0's incoming messages and the hook decides the chain.
  const Json* history = FindField(boot_.payload, "headStartMessages");
  if (!agent_.hooks.hydrate_messages && acc_.ui().empty() && history != nullptr &&
      history->is_array()) {
    acc_.Replace(std::vector<Json>(history->begin(), history->end()));
  }
}

asio::awaitable<std::optional<RunOutcome>> ChatRun::CallOnBoot() {
  Observe("onBoot", [&] {
    Json a = {{"preloaded", info_.preloaded}, {"continuation", info_.continuation}};
    if (!info_.previous_run_id.empty()) a["previousRunId"] = info_.previous_run_id;
    return a;
  });
  if (agent_.hooks.on_boot) {
    BootEvent event{info_};
    absl::Status s = co_await CallHook(agent_.hooks.on_boot, event);
    if (!s.ok() && !cancel_.stop_requested()) {
      co_return RunOutcome{RunOutcome::Kind::kFailed, "failed",
                           absl::StrCat("onBoot: ", s.message())};
    }
  }
  co_return std::nullopt;
}

asio::awaitable<RunOutcome> ChatRun::StartByTrigger() {
  const std::string& trigger = boot_.trigger;
  if (trigger == "preload") co_return co_await Preload();
  if (trigger == "handover-prepare") co_return co_await AwaitHandover();
  if (trigger == "submit-message" || trigger == "regenerate-message") {
    co_return co_await AnswerBootMessage();
  }
  if (trigger == "close") co_return RunOutcome{RunOutcome::Kind::kExited, "close"};
  std::optional<TurnRequest> none;
  co_return co_await TurnLoop(std::move(none), "continuation");
}

asio::awaitable<RunOutcome> ChatRun::Preload() {
  Observe("onPreload", [] { return Json::object(); });
  if (agent_.hooks.on_preload) {
    PreloadEvent event{info_};
    absl::Status s = co_await CallHook(agent_.hooks.on_preload, event);
    if (!s.ok() && !cancel_.stop_requested()) {
      co_return RunOutcome{RunOutcome::Kind::kFailed, "failed",
                           absl::StrCat("onPreload: ", s.message())};
    }
  }
  std::optional<TurnRequest> none;
  co_return co_await TurnLoop(std::move(none), "preload");
}

asio::awaitable<RunOutcome> ChatRun::AwaitHandover() {
  if (boot_answered_) {
    // A retry whose recovery found the head start answered on the `.out` tail: its signal
    // was taken; it is not run again.
    inbox_.set_handover_open(false);
    std::optional<TurnRequest> none;
    co_return co_await TurnLoop(std::move(none), "continuation");
  }
  // The chat's host owns the deadline: when it passes, it appends a handover-skip itself
  // (session_rules.h, HandoverWindow), so the run waits for exactly one signal.
  const absl::Time wait_began = host_.clock->Now();
  std::optional<InRecord> signal =
      co_await inbox_.NextHandover(absl::InfiniteFuture(), cancel_.get_token());
  inbox_.set_handover_open(false);
  if (cancel_.stop_requested() || !signal.has_value()) {
    co_return RunOutcome{RunOutcome::Kind::kCancelled, "cancelled"};
  }
  const absl::Duration waited = std::max(absl::ZeroDuration(), signal->received_at - wait_began);
  if (signal->kind == InKind::kHandoverSkip) {
    // The warm side gave up (or its deadline passed): the run answers the user's message on
    // its own, so it is answered exactly once.
    std::optional<TurnRequest> request = SkippedHandoverTurn(*signal, waited);
    if (!request.has_value()) co_return co_await TurnLoop(std::move(request), "handover");
    co_return co_await TurnLoop(std::move(request), "turn");
  }
  TurnRequest first = BootTurnRequest();
  first.seq = signal->seq;
  first.handover = true;
  first.handover_wait = waited;
  handover_ = std::move(signal);
  std::optional<TurnRequest> request(std::move(first));
  co_return co_await TurnLoop(std::move(request), "turn");
}

std::optional<ChatRun::TurnRequest> ChatRun::SkippedHandoverTurn(const InRecord& signal,
                                                                 absl::Duration waited) {
  Json message = BootMessage(boot_.trigger, boot_.payload);
  if (!message.is_object()) return std::nullopt;
  TurnRequest first = BootTurnRequest();
  first.trigger = "submit-message";
  first.message = std::move(message);
  first.metadata = boot_.payload.value("metadata", Json());
  first.seq = signal.seq;
  first.handover_wait = waited;
  return first;
}

asio::awaitable<RunOutcome> ChatRun::AnswerBootMessage() {
  const std::string& trigger = boot_.trigger;
  const Json* message = FindField(boot_.payload, "message");
  const bool has_message = message != nullptr && message->is_object();
  // A boot submit-message without a message waits for one (the reference ran an empty turn).
  // Recovery may have found the boot message answered on the `.out` tail: it is not run again.
  // The boot message may also be on `.in` (a retried run gets both): answered once, from `.in`.
  if ((trigger == "submit-message" && !has_message) || boot_answered_ ||
      (has_message && inbox_.HasQueuedMessage(StringField(*message, "id")))) {
    std::optional<TurnRequest> none;
    co_return co_await TurnLoop(std::move(none), "continuation");
  }
  TurnRequest first = BootTurnRequest();
  first.trigger = trigger;
  if (has_message) first.message = *message;
  first.metadata = boot_.payload.value("metadata", Json());
  std::optional<TurnRequest> request(std::move(first));
  co_return co_await TurnLoop(std::move(request), "turn");
}

ChatRun::TurnRequest ChatRun::BootTurnRequest() const {
  TurnRequest first;
  first.stored = boot_.queued_at;
  first.received = started_at_;
  first.at_boot = true;
  return first;
}

// What recovery learns from the `.out` tail and the inbox, and carries from piece to piece.
struct ChatRun::Recovery {
  std::vector<std::pair<Json, int64_t>> settled;  // each closed answer with the seq that closed it
  Json raw;                // the partial (the answer left open) as reduced; null when none
  Json partial;            // the partial with its aborted parts cleaned up
  std::string partial_id;  // "" when there is no partial
  int64_t open_from = 0;   // the partial's `start` seq (0: chunks before any `start`)
  // The users no turn has answered, oldest first, with their `.in` seq (0: the boot message).
  std::deque<std::pair<int64_t, Json>> unanswered;
};

asio::awaitable<void> ChatRun::Recover() {
  Recovery r = SplitTail();
  if (agent_.hooks.hydrate_messages) {
    // The agent's own store is the transcript: nothing is folded, and the user is answered again.
    if (!r.partial_id.empty()) WriteRetract(r.partial_id, r.open_from);
    co_return;
  }
  r.unanswered = UnansweredUsers();
  FoldSettled(r);
  if (r.partial_id.empty()) co_return;
  if (!HasContent(r.partial)) {
    WriteRetract(r.partial_id, r.open_from);  // nothing to keep; readers saw its `start`
    co_return;
  }
  co_await SettlePartial(r);
}

ChatRun::Recovery ChatRun::SplitTail() {
  // Split the tail into answers: each `start` opens one, `finish` or `abort` closes it. A
  // closed answer is settled (replayed over the snapshot's copy); an open one is the partial.
  // An answer an earlier recovery retracted (a `retract` names its `start`) is neither: it was
  // withdrawn, and its user answered again.
  std::set<int64_t> retracted;
  for (const OutRecord& r : boot_.out_tail) {
    int64_t from = 0;
    if (r.is_control && r.control == kRetract && absl::SimpleAtoi(r.Header("from-seq"), &from)) {
      retracted.insert(from);
    }
  }
  Recovery out;
  std::optional<UiReducer> open;
  int64_t open_from = 0;
  for (const OutRecord& r : boot_.out_tail) {
    if (r.is_control) {
      if (r.control == kTurnComplete) last_turn_complete_ = r.seq;
      continue;
    }
    const Json chunk = r.chunk();
    const std::string type = StringField(chunk, "type");
    if (type == "start" || !open.has_value()) {
      open.emplace();
      open_from = type == "start" ? r.seq : 0;
    }
    if (!open->Apply(chunk).ok()) continue;  // a chunk that breaks the grammar is skipped
    if (type == "finish" || type == "abort") {
      if (retracted.count(open_from) == 0) out.settled.emplace_back(open->message(), r.seq);
      open.reset();
    }
  }
  if (open.has_value() && retracted.count(open_from) > 0) open.reset();
  // The partial: the answer the dead run was streaming when it died. Its model call cannot be
  // resumed mid-stream, so before this run writes anything it is either retracted (and its
  // user answered again) or kept and closed (docs/protocol.md, "Answers a dead run left open").
  out.open_from = open_from;
  if (open.has_value()) {
    out.raw = open->message();
    out.partial = CleanupAbortedParts(out.raw);
    out.partial_id = MessageId(out.partial);
  }
  return out;
}

std::deque<std::pair<int64_t, Json>> ChatRun::UnansweredUsers() const {
  // The boot message when the transcript does not hold it (the first run's message never went
  // through `.in`, so a retry is handed it again; seq 0 here), then the user messages queued on
  // `.in`.
  std::deque<std::pair<int64_t, Json>> unanswered;
  const Json* boot_message = FindField(boot_.payload, "message");
  if (boot_.trigger == "submit-message" && boot_message != nullptr && boot_message->is_object() &&
      MessageRole(*boot_message) == "user" && !acc_.Contains(MessageId(*boot_message)) &&
      !inbox_.HasQueuedMessage(MessageId(*boot_message))) {
    unanswered.emplace_back(0, *boot_message);
  }
  if (boot_.trigger == "handover-prepare") {
    // A retried head start: its question was seeded into the transcript, unanswered while it is
    // the transcript's last message. The first answer on the tail is its answer.
    Json question = BootMessage(boot_.trigger, boot_.payload);
    if (question.is_object() && !acc_.ui().empty() &&
        MessageId(acc_.ui().back()) == MessageId(question)) {
      unanswered.emplace_back(0, std::move(question));
    }
  }
  for (const InRecord& r : inbox_.queued()) {
    if (MessageRole(r.message()) == "user" && !acc_.Contains(MessageId(r.message()))) {
      unanswered.emplace_back(r.seq, r.message());
    }
  }
  return unanswered;
}

void ChatRun::MarkAnswered(int64_t seq) {
  // A user the transcript now holds is answered: it is not run again.
  if (seq == 0) {
    boot_answered_ = true;
  } else {
    inbox_.Drop(seq);
  }
}

void ChatRun::FoldSettled(Recovery& r) {
  // A closed answer on the tail answered the oldest unanswered user (the run died before its
  // snapshot): the user joins the transcript before the answer and is not run again.
  int64_t paired_through = 0;  // the seq that closed the last answer paired with a user
  for (auto& [m, closed_at] : r.settled) {
    if (MessageId(m).empty() || !HasContent(m)) continue;
    if (!acc_.Contains(MessageId(m)) && !r.unanswered.empty()) {
      acc_.Add(CleanupAbortedParts(r.unanswered.front().second));
      MarkAnswered(r.unanswered.front().first);
      r.unanswered.pop_front();
      paired_through = closed_at;
    }
    acc_.PutResponse(std::move(m));
  }
  if (paired_through > last_turn_complete_) {
    // The dead run ended that answer (finished, or cancelled with `abort`) but did not live to
    // write its turn's turn-complete: the turn is over, and readers are told so.
    WriteTurnComplete(false, "");
    SaveSnapshot(MakeSnapshot(std::nullopt));
  }
}

asio::awaitable<void> ChatRun::SettlePartial(Recovery& r) {
  RecoveryBootEvent event = MakeRecoveryBootEvent(r);
  Observe("onRecoveryBoot", [&] {
    Json calls = Json::array();
    for (const Json& c : event.pending_tool_calls) calls.push_back(c["toolCallId"]);
    return Json{{"settledMessages", Ids(event.settled_messages)},
                {"inFlightUsers", Ids(event.in_flight_users)},
                {"partialAssistant", MessageId(r.partial)},
                {"pendingToolCalls", calls}};
  });
  std::optional<std::vector<Json>> chain;
  if (agent_.hooks.on_recovery_boot) {
    absl::StatusOr<std::optional<std::vector<Json>>> chosen =
        co_await CallHook(agent_.hooks.on_recovery_boot, event);
    if (chosen.ok()) chain = *std::move(chosen);  // a failure leaves the default
  }
  if (!chain.has_value()) {
    if (event.in_flight_users.size() < 2) {
      WriteRetract(r.partial_id, r.open_from);  // drop the partial; answer the user again
      co_return;
    }
    chain = acc_.ui();
    chain->push_back(event.in_flight_users.front());
    chain->push_back(r.partial);
  }
  ApplyRecoveryChain(r, event, *std::move(chain));
}

RecoveryBootEvent ChatRun::MakeRecoveryBootEvent(Recovery& r) const {
  RecoveryBootEvent event{info_, acc_.ui(), {}, r.partial, Json::array()};
  for (const auto& [seq, message] : r.unanswered) event.in_flight_users.push_back(message);
  for (const Json& part : r.raw["parts"]) {
    if (IsToolPart(part) && StringField(part, "state") == "input-available") {
      event.pending_tool_calls.push_back({{"toolCallId", StringField(part, "toolCallId")},
                                          {"toolName", ToolPartName(part)},
                                          {"input", part.value("input", Json::object())}});
    }
  }
  return event;
}

void ChatRun::ApplyRecoveryChain(const Recovery& r, const RecoveryBootEvent& event,
                                 std::vector<Json> chain) {
  acc_.Replace(std::move(chain));
  // Users the chain now holds are answered: they are not run again.
  bool any_answered = false;
  for (size_t i = 0; i < r.unanswered.size(); ++i) {
    if (!acc_.Contains(MessageId(event.in_flight_users[i]))) continue;
    MarkAnswered(r.unanswered[i].first);
    any_answered = true;
  }
  if (!acc_.Contains(r.partial_id)) {
    WriteRetract(r.partial_id, r.open_from);  // the hook's chain left it out
    return;
  }
  // Kept: closed as a stopped turn is, with `abort` (the AI SDK's end of a stream cut short: the
  // message stays as far as it got), and the turn it answered completes.
  WriteChunk({{"type", "abort"}});
  if (any_answered) {
    WriteTurnComplete(false, "");
    SaveSnapshot(MakeSnapshot(std::nullopt));
  }
}

void ChatRun::WriteStepOne(const Json& partial, const std::string& id) {
  Json message = PartialToUiMessage(partial, id);
  int64_t from = WriteChunk({{"type", "start"}, {"messageId", id}});
  WriteChunk({{"type", "start-step"}});
  // Part ids "s0-<n>": the step loop numbers step 2 on from the steps the message holds.
  for (Json& chunk : UiMessageChunks(message, "s0-")) WriteChunk(std::move(chunk));
  WriteChunk({{"type", "finish-step"}});
  Write(
      OutRecord::Control(kHandoverSpliced, {{"message-id", id}, {"from-seq", absl::StrCat(from)}}));
  step_one_open_ = id;
}

void ChatRun::EndStepOne(const std::string& reason, const TurnState* state) {
  if (step_one_open_.empty()) return;
  step_one_open_.clear();
  if (reason.empty()) {
    WriteChunk({{"type", "abort"}});
    return;
  }
  Json finish = {{"type", "finish"}, {"finishReason", reason}};
  Json metadata = FinishMetadata(state, nullptr);
  if (!metadata.is_null()) finish["messageMetadata"] = std::move(metadata);
  WriteChunk(std::move(finish));
}

TurnTimings ChatRun::Timings(const TurnState* state, const StepTimings* step) const {
  TurnTimings t;
  if (state != nullptr) {
    t.queued = Between(state->stored, state->received);
    if (state->first_of_run && state->at_boot) t.boot = Between(boot_.assigned_at, started_at_);
    t.hooks = state->hooks;
    t.handover = state->handover_wait;
    t.turn = Between(state->stored, host_.clock->Now());
  }
  if (step != nullptr) {
    t.model_first_byte = step->model_first_byte;
    t.tools = step->tools;
  }
  return t;
}

Json ChatRun::FinishMetadata(const TurnState* state, const StepTimings* step) {
  TurnTimings t = Timings(state, step);
  if (host_.timings) host_.timings(t);
  return Json{{"baton", {{"timings", t.ToJson()}}}};
}

void ChatRun::WriteRetract(const std::string& message_id, int64_t from_seq) {
  Write(OutRecord::Control(kRetract, {{"message-id", message_id},
                                      {"from-seq", absl::StrCat(from_seq)},
                                      {"reason", boot_.attempt > 1 ? "run-lost" : "recovered"}}));
}

asio::awaitable<ChatRun::Wake> ChatRun::WaitForMessage(const std::string& phase,
                                                       absl::Duration idle,
                                                       absl::Duration suspended_for, bool hooks) {
  std::optional<InRecord> record =
      co_await inbox_.NextMessage(host_.clock->Now() + idle, cancel_.get_token());
  if (record.has_value()) co_return Wake{std::move(record), {}};
  if (cancel_.stop_requested()) {
    co_return Wake{std::nullopt, RunOutcome{RunOutcome::Kind::kCancelled, "cancelled"}};
  }
  if (phase == "preload" && agent_.options.exit_after_preload_idle) {
    co_return Wake{std::nullopt, RunOutcome{RunOutcome::Kind::kExited, "timeout"}};
  }
  if (hooks) {
    int turn = phase == "turn" ? turn_ - 1 : -1;
    Observe("onChatSuspend", [&] {
      Json a = {{"phase", phase}};
      if (turn >= 0) a["turn"] = turn;
      a["uiMessages"] = Ids(acc_.ui());
      return a;
    });
    if (agent_.hooks.on_chat_suspend) {
      SuspendEvent event{info_, phase, turn, acc_.ui()};
      // A failing suspend hook is reported by the run-end hook; it does not keep the run alive.
      (void)co_await CallHook(agent_.hooks.on_chat_suspend, event);
    }
  }
  // A message that arrived while the suspend hook ran is answered, not left behind.
  if (std::optional<InRecord> late = inbox_.TakeMessage()) co_return Wake{std::move(late), {}};
  absl::Time deadline = host_.clock->Now() + suspended_for;
  SaveSnapshot(MakeSnapshot(Json{{"phase", phase},
                                 {"hooks", hooks},
                                 {"deadline", absl::FormatTime(deadline, absl::UTCTimeZone())}}));
  RunOutcome outcome{RunOutcome::Kind::kSuspended, "suspended"};
  outcome.resume_deadline = deadline;
  co_return Wake{std::nullopt, outcome};
}

asio::awaitable<RunOutcome> ChatRun::RunLoop() {
  ChatSession session(*this);
  co_await agent_.loop(session);
  if (cancel_.stop_requested()) co_return RunOutcome{RunOutcome::Kind::kCancelled, "cancelled"};
  co_return loop_outcome_.value_or(RunOutcome{RunOutcome::Kind::kExited, "end-run"});
}

asio::awaitable<ChatRun::Wake> ChatRun::WaitInPhase(const std::string& phase, bool hooks) {
  const AgentOptions& o = agent_.options;
  bool preload = phase == "preload";
  absl::Duration idle = preload ? o.preload_idle_timeout.value_or(o.idle_timeout) : o.idle_timeout;
  absl::Duration suspended_for =
      preload ? o.preload_timeout.value_or(o.turn_timeout) : o.turn_timeout;
  co_return co_await WaitForMessage(phase, idle, suspended_for, hooks);
}

asio::awaitable<RunOutcome> ChatRun::TurnLoop(std::optional<TurnRequest> first,
                                              std::string_view first_phase) {
  std::optional<TurnRequest> next = std::move(first);
  bool after_error = false;
  bool any_turn = false;
  for (;;) {
    if (!next.has_value()) {
      if (end_run_) co_return RunOutcome{RunOutcome::Kind::kExited, "end-run"};
      if (upgrade_) co_return RunOutcome{RunOutcome::Kind::kExited, "upgrade"};
      // Checked before waiting, so no message is taken and left unanswered.
      if (turn_ >= agent_.options.max_turns) {
        co_return RunOutcome{RunOutcome::Kind::kExited, "max-turns"};
      }
      std::optional<InRecord> record = inbox_.TakeMessage();
      if (!record.has_value()) {
        std::string phase(any_turn ? std::string_view("turn") : first_phase);
        Wake wake = co_await WaitInPhase(phase, !after_error);
        if (!wake.record.has_value()) co_return wake.outcome;
        record = std::move(wake.record);
      }
      if (record->trigger() == "close") co_return RunOutcome{RunOutcome::Kind::kExited, "close"};
      TurnRequest request;
      std::string trigger = record->trigger();
      request.trigger = trigger.empty() ? "submit-message" : trigger;
      request.message = record->message();
      request.action = record->payload().value("action", Json());
      request.metadata = record->payload().value("metadata", Json());
      request.seq = record->seq;
      request.stored = record->appended_at;
      request.received = record->received_at;
      request.at_boot = record->received_at <= started_at_;
      next = std::move(request);
    }
    TurnRequest request = std::move(*next);
    next.reset();
    bool ok = co_await RunTurn(std::move(request));
    if (cancel_.stop_requested()) co_return RunOutcome{RunOutcome::Kind::kCancelled, "cancelled"};
    after_error = !ok;
    any_turn = true;
    if (close_reason_.has_value()) {
      std::vector<std::pair<std::string, std::string>> headers;
      if (!close_reason_->empty()) headers.emplace_back("session-closed-reason", *close_reason_);
      Write(OutRecord::Control(kSessionClosed, std::move(headers)));
      co_return RunOutcome{RunOutcome::Kind::kExited, "close"};
    }
  }
}

}  // namespace baton

namespace baton {

TurnCompleteEvent ChatRun::MakeTurnCompleteEvent(const TurnState& st) const {
  TurnCompleteEvent e;
  e.chat = info_;
  e.turn = st.turn;
  e.messages = acc_.ModelMessages();
  e.ui_messages = acc_.ui();
  e.new_ui_messages = st.new_ui;
  e.response_message = st.response;
  e.raw_response_message = st.raw_response;
  e.stopped = st.stopped;
  if (!st.stopped && !st.finish_reason.empty()) e.finish_reason = st.finish_reason;
  e.usage = st.usage;
  e.total_usage = total_usage_;
  return e;
}

asio::awaitable<absl::Status> ChatRun::AnswerMessages(const TurnRequest& request, TurnState& st) {
  if (request.trigger == "action") co_return co_await AnswerAction(request, st);
  if (request.trigger != "submit-message" && request.trigger != "regenerate-message") {
    co_return absl::InvalidArgumentError(
        absl::StrCat("trigger \"", request.trigger, "\" is not supported"));
  }
  if (request.handover && handover_.has_value()) WriteHandoverStepOne(st);
  st.incoming = IncomingMessages(request);
  if (!st.incoming.empty()) {
    absl::Status validated = co_await ValidateIncoming(request, st);
    if (!validated.ok()) co_return validated;
  }
  if (agent_.hooks.hydrate_messages) {
    absl::Status hydrated = co_await HydrateIncoming(request, st);
    if (!hydrated.ok()) co_return hydrated;
  } else {
    MergeIncoming(request, st);
  }
  if (request.trigger == "regenerate-message") acc_.PopToLastUser();
  // A submit-message that carries no message has nothing to answer (the reference ran the model
  // on the old transcript): only the boundary is written.
  if (request.trigger == "submit-message" && st.incoming.empty() && !request.handover) {
    st.noop = true;
  }
  if (request.handover && handover_.has_value()) {
    // The spliced message is this turn's response: new to the transcript, though step 2 may
    // still replace it in place.
    // (Already in a hydrated chain: not spliced twice, and not new.)
    st.spliced = acc_.Splice(handover_->body.value("partialAssistantMessage", Json::array()),
                             st.handover_id);
    handover_.reset();
  }
  if (st.noop) co_return absl::OkStatus();
  co_return co_await Respond(request, st);
}

void ChatRun::WriteHandoverStepOne(TurnState& st) {
  // A head start's answer begins with the warm side's step 1, on `.out` before anything else
  // of the turn, so a reader (one that reloads, or reads from seq 0 later) gets the whole
  // message: step 1 is what step 2+ continues, and its tool calls what the results answer.
  const Json& body = handover_->body;
  st.handover_id = StringField(body, "messageId");
  if (st.handover_id.empty()) st.handover_id = host_.new_message_id();
  st.handover_final = BoolField(body, "isFinal");
  WriteStepOne(body.value("partialAssistantMessage", Json::array()), st.handover_id);
}

std::vector<Json> ChatRun::IncomingMessages(const TurnRequest& request) const {
  std::vector<Json> incoming;
  if (request.message.is_object()) incoming.push_back(CleanupAbortedParts(request.message));
  if (request.handover && agent_.hooks.hydrate_messages) {
    const Json* history = FindField(boot_.payload, "headStartMessages");
    if (history != nullptr && history->is_array()) {
      for (const Json& m : *history) incoming.push_back(CleanupAbortedParts(m));
    }
  } else if (request.handover) {
    // The head start's user message is this turn's incoming message, as on any turn: it is
    // validated, and it is among the turn's new messages (the transcript holds it since boot,
    // unanswered, so the merge below keeps its place).
    Json question = BootMessage(boot_.trigger, boot_.payload);
    if (question.is_object()) incoming.push_back(CleanupAbortedParts(question));
  }
  return incoming;
}

asio::awaitable<absl::Status> ChatRun::ValidateIncoming(const TurnRequest& request, TurnState& st) {
  Observe("onValidateMessages", [&] {
    return Json{{"turn", st.turn}, {"trigger", request.trigger}, {"messages", Ids(st.incoming)}};
  });
  if (agent_.hooks.on_validate_messages) {
    ValidateMessagesEvent event{info_.chat_id, st.incoming, st.turn, request.trigger};
    absl::StatusOr<std::vector<Json>> validated =
        co_await CallHook(agent_.hooks.on_validate_messages, event);
    if (!validated.ok()) co_return validated.status();
    st.incoming = *std::move(validated);
  }
  co_return absl::OkStatus();
}

asio::awaitable<absl::Status> ChatRun::HydrateIncoming(const TurnRequest& request, TurnState& st) {
  const std::vector<Json>& incoming = st.incoming;
  Observe("hydrateMessages", [&] {
    return Json{{"turn", st.turn},
                {"trigger", request.trigger},
                {"incomingMessages", Ids(incoming)},
                {"previousMessages", Ids(acc_.ui())}};
  });
  HydrateMessagesEvent event{info_, st.turn, request.trigger, incoming, acc_.ui()};
  absl::StatusOr<std::vector<Json>> chain = co_await CallHook(agent_.hooks.hydrate_messages, event);
  if (!chain.ok()) co_return chain.status();
  std::set<std::string> known_before;
  for (const Json& m : incoming) {
    if (acc_.Contains(MessageId(m))) known_before.insert(MessageId(m));
  }
  acc_.Replace(*std::move(chain));
  for (size_t i = 0; i < incoming.size(); ++i) {
    std::string id = MessageId(incoming[i]);
    acc_.Add(incoming[i]);
    if (i + 1 == incoming.size() && known_before.count(id) == 0) st.new_ui.push_back(incoming[i]);
  }
  st.appended_incoming = true;
  co_return absl::OkStatus();
}

void ChatRun::MergeIncoming(const TurnRequest& request, TurnState& st) {
  for (Json& m : st.incoming) {
    std::string id = MessageId(m);
    Accumulator::AddResult added = acc_.Add(m);
    if (added == Accumulator::AddResult::kAppended) {
      st.new_ui.push_back(std::move(m));
      st.appended_incoming = true;
    } else if (added == Accumulator::AddResult::kDuplicate &&
               request.trigger != "regenerate-message") {
      // A user message already answered is a no-op; one still unanswered at the end of the
      // transcript (a head start's) gets its answer, as this turn's, in the form validated.
      if (acc_.ui().empty() || MessageId(acc_.ui().back()) != id) {
        st.noop = true;
      } else {
        acc_.PutResponse(m);
        st.new_ui.push_back(std::move(m));
      }
    }
  }
}

asio::awaitable<absl::Status> ChatRun::AnswerAction(const TurnRequest& request, TurnState& st) {
  if (agent_.hooks.hydrate_messages) {
    Observe("hydrateMessages", [&] {
      return Json{{"turn", st.turn},
                  {"trigger", "action"},
                  {"incomingMessages", Json::array()},
                  {"previousMessages", Ids(acc_.ui())}};
    });
    HydrateMessagesEvent event{info_, st.turn, "action", {}, acc_.ui()};
    absl::StatusOr<std::vector<Json>> chain =
        co_await CallHook(agent_.hooks.hydrate_messages, event);
    if (!chain.ok()) co_return chain.status();
    acc_.Replace(*std::move(chain));
  }
  Observe("onAction", [&] { return Json{{"turn", st.turn}, {"action", request.action}}; });
  std::optional<std::string> ask;
  if (agent_.hooks.on_action) {
    ActionEvent event{info_, request.action, st.turn, acc_.ui(), acc_.ModelMessages()};
    absl::StatusOr<std::optional<std::string>> asked =
        co_await CallHook(agent_.hooks.on_action, event);
    if (!asked.ok()) co_return asked.status();
    ask = *std::move(asked);
  }
  if (!ask.has_value()) {
    st.noop = true;  // an action is not a turn: a turn-complete only, the number not used
    co_return absl::OkStatus();
  }
  // chat.turn(text): the asked message joins the transcript (not as one of the turn's new
  // messages), and the answer gets a fresh id.
  acc_.Add(UserMessage(host_.new_message_id(), *ask));
  TurnRequest turn = request;
  turn.trigger = "action-turn";
  co_return co_await Respond(turn, st);
}

asio::awaitable<absl::Status> ChatRun::Respond(const TurnRequest& request, TurnState& st) {
  absl::Status started = co_await CallTurnStartHooks(st);
  if (!started.ok()) co_return started;
  if (upgrade_) {
    st.upgrade_before_run = true;
    co_return absl::OkStatus();
  }
  if (st.handover_final) co_return AnswerWithStepOne(st);
  absl::StatusOr<MessageList> prepared = co_await PreparePrompt(st);
  if (!prepared.ok()) co_return prepared.status();
  MessageList prompt = *std::move(prepared);
  Observe("run", [&] {
    return Json{
        {"turn", st.turn}, {"trigger", request.trigger}, {"messages", Roles(prompt.ToJson())}};
  });
  st.hooks = hook_time_ - st.hooks_before;
  const bool lane = !agent_.hooks.prepare_messages;
  Streamed streamed = co_await RunStepLoop(std::move(prompt), &st, lane);
  if (cancel_.stop_requested()) co_return absl::CancelledError("run cancelled");
  KeepStreamed(streamed, st);
  co_return absl::OkStatus();
}

asio::awaitable<absl::Status> ChatRun::CallTurnStartHooks(const TurnState& st) {
  if (!chat_started_) {
    chat_started_ = true;
    Observe("onChatStart", [&] {
      return Json{{"preloaded", info_.preloaded}, {"messages", Roles(acc_.ModelMessages())}};
    });
    if (agent_.hooks.on_chat_start) {
      ChatStartEvent event{info_, acc_.ModelMessages()};
      absl::Status s = co_await CallHook(agent_.hooks.on_chat_start, event);
      if (!s.ok()) co_return s;
    }
  }
  Observe("onTurnStart", [&] {
    return Json{{"turn", st.turn},
                {"uiMessages", Ids(acc_.ui())},
                {"continuation", info_.continuation},
                {"preloaded", info_.preloaded}};
  });
  if (agent_.hooks.on_turn_start) {
    TurnStartEvent event{
        info_, st.turn, acc_.ModelMessages(), acc_.ui(), previous_turn_usage_, total_usage_};
    absl::Status s = co_await CallHook(agent_.hooks.on_turn_start, event);
    if (!s.ok()) co_return s;
  }
  co_return absl::OkStatus();
}

absl::Status ChatRun::AnswerWithStepOne(TurnState& st) {
  int index = acc_.Find(st.handover_id);
  if (index < 0) {
    return absl::FailedPreconditionError(
        "the head start's message left the transcript before its turn completed");
  }
  const Json& partial = acc_.ui()[index];
  if (st.spliced) st.new_ui.push_back(partial);
  st.response = partial;
  st.finish_reason = "stop";
  // Step 1 was the whole answer: it ends here, as any answer does.
  st.hooks = hook_time_ - st.hooks_before;
  EndStepOne("stop", &st);
  return absl::OkStatus();
}

asio::awaitable<absl::StatusOr<MessageList>> ChatRun::PreparePrompt(const TurnState& st) {
  if (!agent_.hooks.prepare_messages) co_return acc_.ModelLane();
  Observe("prepareMessages", [&] { return Json{{"turn", st.turn}}; });
  PrepareMessagesEvent event{info_, st.turn, acc_.ModelMessages()};
  absl::StatusOr<Json> prepared = co_await CallHook(agent_.hooks.prepare_messages, event);
  if (!prepared.ok()) co_return prepared.status();
  if (!prepared->is_array()) {
    co_return absl::InvalidArgumentError(absl::StrCat(
        "prepareMessages returned a JSON ", prepared->type_name(), ", not an array of messages"));
  }
  // The approval rows a head start handed over must stay the prompt's tail.
  co_return MessageList(*std::move(prepared));
}

void ChatRun::KeepStreamed(Streamed& streamed, TurnState& st) {
  if (!streamed.result.error.empty()) {
    // Readers may see only "An error occurred." (mask_errors): the operator sees why.
    LogJson("warn", "a model call failed; the turn ends with an error",
            {{"chat_id", info_.chat_id},
             {"run_id", info_.run_id},
             {"turn", st.turn},
             {"error", streamed.result.error}});
  }
  st.stopped = streamed.result.stopped;
  st.finish_reason = streamed.result.finish_reason;
  st.usage = streamed.result.usage;
  if (streamed.response.has_value()) {
    // The response is always among the turn's new messages, also when it replaced a message
    // in place (a head start's step 2, an approval's continuation).
    st.new_ui.push_back(*streamed.response);
    st.response = std::move(streamed.response);
    st.raw_response = std::move(streamed.result.response);
  }
}

asio::awaitable<ChatRun::Streamed> ChatRun::RunStepLoop(MessageList prompt, const TurnState* state,
                                                        bool lane) {
  Json continued;
  if (!acc_.ui().empty() && MessageRole(acc_.ui().back()) == "assistant") {
    continued = acc_.ui().back();
  }
  std::string message_id = continued.is_null() ? host_.new_message_id() : MessageId(continued);
  // A head start's step 1 opened the message on `.out`: the step loop goes on with it.
  const bool started = !step_one_open_.empty() && step_one_open_ == message_id;
  // Whatever the loop does, it ends the answer (`finish` or `abort`), or the run was cancelled.
  step_one_open_.clear();
  // A lost run writes nothing more: it ends where its worker died.
  StepLoop::Env env{host_.executor, host_.clock, host_.pool, info_.chat_id,
                    [this](std::string text) { Write(OutRecord::ChunkText(std::move(text))); }};
  env.traceparent = info_.traceparent;
  env.writable = host_.writable;
  if (agent_.hooks.should_inject_pending) {
    env.between_steps = [this](int next_step) { return InjectPending(next_step); };
  }
  StepLoop loop(agent_, std::move(env));
  // Coroutine arguments are named first: GCC 12 destroys lambda and braced-aggregate temporaries
  // of a co_await expression twice (see docs/decisions.md).
  StepLoopInput input{message_id, continued, std::move(prompt), turn_stop_->get_token()};
  input.started = started;
  if (lane) {
    input.provider_prompt = acc_.ProviderLane();
    input.provider_covers = input.prompt.size();
  }
  input.finish_metadata = [this, state](const StepTimings& step) {
    return FinishMetadata(state, &step);
  };
  Streamed out;
  out.result = co_await loop.Run(std::move(input));
  if (cancel_.stop_requested() || !HasContent(out.result.response)) co_return out;
  Json response =
      out.result.stopped ? CleanupAbortedParts(out.result.response) : out.result.response;
  if (out.result.stopped) unfinished_.insert(message_id);
  if (!out.result.stopped) unfinished_.erase(message_id);
  acc_.PutResponse(response);
  acc_.Touch(message_id);  // its entry's "final" changed with it
  out.response = std::move(response);
  co_return out;
}

asio::awaitable<StepLoop::Env::Injection> ChatRun::InjectPending(int next_step) {
  StepLoop::Env::Injection injection;
  std::vector<InRecord> batch = inbox_.TakeUserMessages();
  if (batch.empty()) co_return injection;
  PendingMessagesEvent event{info_, turn_, next_step, {}};  // turn_ is the turn in flight
  for (const InRecord& r : batch) event.messages.push_back(CleanupAbortedParts(r.message()));
  Observe("shouldInjectPending", [&] {
    return Json{{"turn", event.turn}, {"step", next_step}, {"messages", Ids(event.messages)}};
  });
  absl::StatusOr<bool> inject = co_await CallHook(agent_.hooks.should_inject_pending, event);
  if (!inject.ok() || !*inject || turn_stop_->stop_requested()) {
    // Declined (or the hook failed): the messages stay queued and become the next turn.
    inbox_.Requeue(std::move(batch));
    co_return injection;
  }
  Json marker_messages = Json::array();
  Json ids = Json::array();
  for (const Json& m : event.messages) {
    if (acc_.Contains(MessageId(m))) continue;  // already in the transcript: not twice
    acc_.Add(m);
    for (Json& model : UiToModelMessages(m)) injection.messages.push_back(std::move(model));
    ids.push_back(MessageId(m));
    marker_messages.push_back({{"id", MessageId(m)}, {"text", MessageText(m)}});
  }
  if (ids.empty()) co_return injection;
  injection.chunks.push_back({{"type", "data-pending-message-injected"},
                              {"id", host_.new_message_id()},
                              {"data", {{"messageIds", ids}, {"messages", marker_messages}}}});
  Observe("onPendingInjected", [&] { return Json{{"step", next_step}, {"messages", ids}}; });
  if (agent_.hooks.on_pending_injected) {
    // A failing confirmation hook is not a reason to lose the turn; the injection stands.
    absl::Status ignored = co_await CallHook(agent_.hooks.on_pending_injected, event);
    static_cast<void>(ignored);
  }
  co_return injection;
}

asio::awaitable<void> ChatRun::TurnError(const absl::Status& error, const TurnRequest& request,
                                         TurnState& st) {
  std::string text(error.message());
  if (text.empty()) text = "An unexpected error occurred";
  WriteChunk({{"type", "error"}, {"errorText", text}});
  EndStepOne("error", &st);  // a head start's answer, started with its step 1, ends too
  WriteTurnComplete(false, "");
  // The message this turn answered stays in the transcript, so the snapshot does not strand it.
  if (request.message.is_object() && MessageRole(request.message) == "user" &&
      !acc_.Contains(MessageId(request.message))) {
    acc_.Add(CleanupAbortedParts(request.message));
    st.new_ui.push_back(request.message);
  }
  st.finish_reason = "error";
  Observe("onTurnComplete", [&] {
    return Json{{"turn", st.turn},
                {"error", text},
                {"finishReason", "error"},
                {"stopped", false},
                {"uiMessages", Ids(acc_.ui())}};
  });
  if (agent_.hooks.on_turn_complete) {
    TurnCompleteEvent event = MakeTurnCompleteEvent(st);
    event.error = text;
    event.finish_reason = "error";
    event.chat.client_data = Json();
    // A throw here is swallowed: the turn already failed and said so.
    (void)co_await CallHook(agent_.hooks.on_turn_complete, event);
  }
  SaveSnapshot(MakeSnapshot(std::nullopt));
}

asio::awaitable<bool> ChatRun::RunTurn(TurnRequest request) {
  TurnState st = BeginTurn(request);
  turn_stop_.emplace();
  std::stop_callback link(cancel_.get_token(), [this] { turn_stop_->request_stop(); });
  inbox_.set_stop_handler([this](const InRecord&) { turn_stop_->request_stop(); });
  absl::Cleanup detach = [this] { inbox_.set_stop_handler(nullptr); };

  absl::Status status = co_await AnswerMessages(request, st);
  std::move(detach).Invoke();
  if (cancel_.stop_requested()) {
    EndStepOne("", &st);  // cancelled before its step 2: the answer ends as a stopped one does
    co_return false;
  }
  if (!status.ok()) {
    co_await TurnError(status, request, st);
    ++turn_;
    co_return false;
  }
  if (st.noop) {
    // Nothing to answer: the boundary only, and the turn number is not used up.
    EndStepOne("stop", &st);
    WriteTurnComplete(false, "");
    co_return true;
  }
  if (st.upgrade_before_run) {
    LeaveForUpgrade(request, st);
    co_return true;
  }
  co_return co_await CompleteTurn(request, st);
}

ChatRun::TurnState ChatRun::BeginTurn(const TurnRequest& request) {
  TurnState st;
  st.turn = turn_;
  st.stored = request.stored;
  st.received = request.received;
  st.at_boot = request.at_boot;
  st.first_of_run = turns_run_++ == 0;
  st.handover_wait = request.handover_wait;
  st.hooks_before = hook_time_;
  if (!request.metadata.is_null()) info_.client_data = request.metadata;
  return st;
}

void ChatRun::LeaveForUpgrade(const TurnRequest& request, TurnState& st) {
  // Leave the message unanswered for the continuation that the next record boots. A head
  // start's step 1, already on `.out`, ends there as a stopped answer does.
  EndStepOne("", &st);
  if (st.appended_incoming) {
    acc_.PopBack();
  }
  Write(OutRecord::Control(kUpgradeRequired));
  SnapshotUpdate snap = MakeSnapshot(std::nullopt);
  snap.header["lastInEventId"] = std::max<int64_t>(0, request.seq - 1);
  SaveSnapshot(snap);
}

asio::awaitable<bool> ChatRun::CompleteTurn(const TurnRequest& request, TurnState& st) {
  Observe("onBeforeTurnComplete", [&] {
    Json a = {{"turn", st.turn}, {"stopped", st.stopped}, {"newUIMessages", Ids(st.new_ui)}};
    if (st.response) a["responseMessage"] = MessageId(*st.response);
    if (!st.stopped && !st.finish_reason.empty()) a["finishReason"] = st.finish_reason;
    return a;
  });
  if (agent_.hooks.on_before_turn_complete) {
    TurnCompleteEvent event = MakeTurnCompleteEvent(st);
    absl::Status s = co_await CallHook(agent_.hooks.on_before_turn_complete, event);
    if (cancel_.stop_requested()) co_return false;
    if (!s.ok()) {
      co_await TurnError(s, request, st);
      ++turn_;
      co_return false;
    }
  }
  previous_turn_usage_ = st.usage;
  total_usage_ += st.usage;
  int64_t tc = WriteTurnComplete(close_reason_.has_value(), close_reason_.value_or(""));
  co_await CallOnTurnComplete(st, tc);
  SaveSnapshot(MakeSnapshot(std::nullopt));
  ++turn_;
  co_return true;
}

asio::awaitable<void> ChatRun::CallOnTurnComplete(const TurnState& st, int64_t tc) {
  Observe("onTurnComplete", [&] {
    Json a = {{"turn", st.turn},
              {"stopped", st.stopped},
              {"newUIMessages", Ids(st.new_ui)},
              {"uiMessages", Ids(acc_.ui())},
              {"lastEventId", tc}};
    if (st.response) a["responseMessage"] = MessageId(*st.response);
    if (!st.stopped && !st.finish_reason.empty()) a["finishReason"] = st.finish_reason;
    return a;
  });
  if (agent_.hooks.on_turn_complete) {
    TurnCompleteEvent event = MakeTurnCompleteEvent(st);
    event.last_event_id = tc;
    absl::Status s = co_await CallHook(agent_.hooks.on_turn_complete, event);
    if (!s.ok() && !cancel_.stop_requested()) {
      // Reported once: an error record and its boundary; the hook is not called again.
      WriteChunk({{"type", "error"}, {"errorText", absl::StrCat("onTurnComplete: ", s.message())}});
      WriteTurnComplete(false, "");
    }
  }
}

}  // namespace baton

namespace baton {
// ChatSession::Offload runs user code through the same path as hooks.
template asio::awaitable<absl::StatusOr<Json>> ChatRun::RunUserCode<absl::StatusOr<Json>>(
    absl::AnyInvocable<absl::StatusOr<Json>()> fn, bool* in_time);
}  // namespace baton
