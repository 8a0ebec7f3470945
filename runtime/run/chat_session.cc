#include "runtime/run/chat_session.h"

#include <utility>

#include "hooks/messages.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/run/chat_run.h"

namespace baton {

const ChatInfo& ChatSession::info() const { return run_.info_; }
const std::string& ChatSession::boot_trigger() const { return run_.boot_.trigger; }
const Json& ChatSession::boot_payload() const { return run_.boot_.payload; }
bool ChatSession::resumed() const { return run_.boot_.resume; }
int ChatSession::turn() const { return run_.turn_; }
Accumulator& ChatSession::transcript() { return run_.acc_; }

void ChatSession::Write(Json chunk) { run_.WriteUserChunk(std::move(chunk)); }

asio::awaitable<std::optional<IncomingMessage>> ChatSession::NextMessage() {
  const std::string& trigger = run_.boot_.trigger;
  if (skipped_seq_ > 0) {
    // A skipped head start: its user message is the next one to answer.
    int64_t seq = std::exchange(skipped_seq_, 0);
    Json message = BootMessage(trigger, run_.boot_.payload);
    if (message.is_object()) {
      co_return IncomingMessage{"submit-message", std::move(message),
                                run_.boot_.payload.value("metadata", Json()), seq};
    }
  }
  if (!boot_message_taken_) {
    boot_message_taken_ = true;
    const Json* message = FindField(run_.boot_.payload, "message");
    if (!run_.boot_.resume && message != nullptr && message->is_object() &&
        (trigger == "submit-message" || trigger == "regenerate-message") &&
        !run_.inbox_.HasQueuedMessage(StringField(*message, "id"))) {
      co_return IncomingMessage{trigger, *message, run_.boot_.payload.value("metadata", Json()), 0};
    }
  }
  if (run_.turn_ >= run_.agent_.options.max_turns) {
    run_.loop_outcome_ = RunOutcome{RunOutcome::Kind::kExited, "max-turns"};
    co_return std::nullopt;
  }
  std::optional<InRecord> record = run_.inbox_.TakeMessage();
  if (!record.has_value()) {
    std::string phase = run_.chat_started_              ? "turn"
                        : trigger == "preload"          ? "preload"
                        : trigger == "handover-prepare" ? "handover"
                                                        : "continuation";
    ChatRun::Wake wake = co_await run_.WaitInPhase(phase, true);
    if (!wake.record.has_value()) {
      run_.loop_outcome_ = wake.outcome;
      co_return std::nullopt;
    }
    record = std::move(wake.record);
  }
  if (record->trigger() == "close") {
    run_.loop_outcome_ = RunOutcome{RunOutcome::Kind::kExited, "close"};
    co_return std::nullopt;
  }
  std::string t = record->trigger();
  co_return IncomingMessage{t.empty() ? "submit-message" : t, record->message(),
                            record->payload().value("metadata", Json()), record->seq};
}

asio::awaitable<Handover> ChatSession::ConsumeHandover() {
  Handover out;
  if (handover_consumed_ || run_.boot_.resume || run_.boot_.trigger != "handover-prepare") {
    co_return out;
  }
  handover_consumed_ = true;
  // The chat's host owns the deadline and appends a handover-skip when it passes.
  std::optional<InRecord> signal =
      co_await run_.inbox_.NextHandover(absl::InfiniteFuture(), run_.cancel_.get_token());
  run_.inbox_.set_handover_open(false);
  if (!signal.has_value()) co_return out;
  if (signal->kind == InKind::kHandoverSkip) {
    // The run answers the head start's message itself: NextMessage() hands it out next.
    out.skipped = true;
    skipped_seq_ = signal->seq;
    co_return out;
  }
  out.received = true;
  out.is_final = BoolField(signal->body, "isFinal");
  out.message_id = StringField(signal->body, "messageId");
  if (out.message_id.empty()) out.message_id = run_.host_.new_message_id();
  const Json partial = signal->body.value("partialAssistantMessage", Json::array());
  // Step 1 on `.out` first, as a managed agent writes it: readers get the whole answer.
  run_.WriteStepOne(partial, out.message_id);
  run_.acc_.Splice(partial, out.message_id);
  co_return out;
}

asio::awaitable<std::optional<Turn>> ChatSession::NextTurn() {
  if (!handover_consumed_ && !run_.boot_.resume && run_.boot_.trigger == "handover-prepare") {
    Handover handover = co_await ConsumeHandover();
    if (handover.received) co_return Turn{run_.turn_, std::nullopt, handover};
    // Skipped: turn 0 answers the head start's message, as any message.
  }
  std::optional<IncomingMessage> message = co_await NextMessage();
  if (!message.has_value()) co_return std::nullopt;
  if (message->message.is_object()) run_.acc_.Add(CleanupAbortedParts(message->message));
  if (message->trigger == "regenerate-message") run_.acc_.PopToLastUser();
  co_return Turn{run_.turn_, std::move(message), std::nullopt};
}

asio::awaitable<StepLoopResult> ChatSession::StreamResponse() {
  run_.turn_stop_.emplace();
  ChatRun* run = &run_;
  std::stop_callback link(run_.cancel_.get_token(), [run] { run->turn_stop_->request_stop(); });
  run_.inbox_.set_stop_handler([run](const InRecord&) { run->turn_stop_->request_stop(); });
  // Named: see docs/decisions.md (GCC 12 and temporaries in a co_await expression).
  MessageList prompt = run_.acc_.ModelLane();
  ChatRun::Streamed streamed = co_await run_.RunStepLoop(std::move(prompt), nullptr, true);
  run_.inbox_.set_stop_handler(nullptr);
  co_return std::move(streamed.result);
}

int64_t ChatSession::CompleteTurn() {
  // A head start's final step 1 that no StreamResponse went on with ends here.
  run_.EndStepOne("stop", nullptr);
  int64_t seq = run_.WriteTurnComplete(false, "");
  run_.chat_started_ = true;
  ++run_.turn_;
  run_.SaveSnapshot(run_.MakeSnapshot(std::nullopt));
  return seq;
}

asio::awaitable<absl::StatusOr<Json>> ChatSession::Offload(
    absl::AnyInvocable<absl::StatusOr<Json>()> fn) {
  co_return co_await run_.RunUserCode<absl::StatusOr<Json>>(std::move(fn));
}

}  // namespace baton
