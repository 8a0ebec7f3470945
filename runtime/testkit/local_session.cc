#include "runtime/testkit/local_session.h"

#include <algorithm>
#include <cstddef>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "runtime/base/log.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/run/chat_run.h"

namespace baton {
LocalSessions::LocalSessions(asio::any_io_executor executor, Clock& clock, HookPool& pool)
    : executor_(std::move(executor)), clock_(clock), pool_(pool) {}

LocalSessions::~LocalSessions() {
  for (auto& [id, session] : sessions_) {
    if (session->run) session->run->Cancel();
    if (session->expiry) clock_.Disarm(*session->expiry);
    if (session->handover_timer) clock_.Disarm(*session->handover_timer);
  }
}

const LocalSessions::Session* LocalSessions::Find(const std::string& chat_id) const {
  auto it = sessions_.find(chat_id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

RunHost LocalSessions::MakeHost(Session& session) {
  RunHost host;
  host.executor = executor_;
  host.clock = &clock_;
  host.pool = &pool_;
  Session* s = &session;
  host.write = [this, s](OutRecord record) {
    const int64_t seq = static_cast<int64_t>(s->out.size()) + 1;
    record.seq = seq;
    s->out.push_back(std::move(record));
    if (on_out) on_out(s->chat_id, s->out.back());
    return seq;
  };
  host.save_snapshot = [this, s](const SnapshotUpdate& update) {
    // The entries the run left unchanged since its last save are kept; the rest are replaced.
    Json messages = Json::array();
    if (s->snapshot.is_object()) {
      auto it = s->snapshot.find("messages");
      if (it != s->snapshot.end() && it->is_array()) messages = std::move(*it);
    }
    size_t keep = std::min(update.unchanged, messages.size());
    messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(keep), messages.end());
    for (size_t i = keep; i < update.count; ++i) {
      messages.push_back(update.EntryTree(i));
      // What a worker sends is the entry's text, written without the tree.
      if (check_snapshots && update.EntryJson(i) != DumpJson(messages.back())) {
        LogJson("error", "a snapshot entry's text differs from its tree",
                {{"chat_id", s->chat_id}, {"index", i}});
        std::abort();
      }
    }
    Json snapshot = update.header;
    snapshot["messages"] = std::move(messages);
    if (check_snapshots && snapshot != update.Whole()) {
      LogJson("error", "a snapshot saved in part differs from the whole",
              {{"chat_id", s->chat_id}, {"unchanged", update.unchanged}});
      std::abort();
    }
    s->snapshot = std::move(snapshot);
  };
  // Without an observer a run builds no lifecycle arguments (some list the whole transcript).
  if (on_hook) {
    host.observe = [this, s](std::string_view hook, const Json& args) {
      if (on_hook) on_hook(s->chat_id, hook, args);
    };
  }
  host.new_message_id = [this] { return absl::StrCat("msg_", next_message_++); };
  host.finished = [this, s](const RunOutcome& outcome) {
    --live_runs_;
    s->run.reset();
    s->last_outcome = outcome;
    // How the run ended sets the chat's state: the session rules, as the orchestrator applies
    // them.
    const AfterRun ended = AfterRunEnds(outcome.kind == RunOutcome::Kind::kSuspended,
                                        outcome.kind == RunOutcome::Kind::kFailed, outcome.reason,
                                        /*unanswered=*/false, /*resumable=*/true);
    switch (ended.chat) {
      case ChatAfterRun::kSuspended:
        s->state = State::kSuspended;
        ArmExpiry(*s);
        break;
      case ChatAfterRun::kFailed:
        s->state = State::kFailed;
        break;
      case ChatAfterRun::kClosed:
        s->state = State::kClosed;
        break;
      case ChatAfterRun::kExited:
        s->state = State::kExited;
        break;
    }
    if (on_run_end) on_run_end(s->chat_id, outcome);
    if (s->reassign) {
      s->reassign = false;
      BootRequest retry;
      retry.continuation = true;
      retry.attempt = s->attempt + 1;
      Boot(*s, std::move(retry));
      return;
    }
    if (s->state != State::kSuspended && s->state != State::kExited) return;
    // Records that arrived while the run was ending, or that it left unanswered, start the next
    // run at once (one live run per chat).
    const size_t floor = static_cast<size_t>(std::max<int64_t>(0, SnapshotInSeq(s->snapshot)));
    absl::Span<const InRecord> after_floor = absl::MakeConstSpan(s->in);
    after_floor.remove_prefix(std::min(floor, after_floor.size()));  // `.in` seq = index + 1
    const bool unanswered =
        LeftUnanswered(after_floor, outcome.reason == "upgrade", s->boot_message, s->snapshot);
    const AfterRun next = AfterRunEnds(s->state == State::kSuspended, false, "", unanswered,
                                       /*resumable=*/true);
    if (next.next == NextRun::kResume) {
      BootRequest boot;  // a message came while the run was suspending: resume it at once
      boot.resume = true;
      Boot(*s, std::move(boot));
    } else if (next.next == NextRun::kContinuation) {
      BootRequest boot;
      boot.continuation = true;
      Boot(*s, std::move(boot));
    }
  };
  return host;
}

void LocalSessions::ArmExpiry(Session& session) {
  session.expiry = std::make_unique<asio::steady_timer>(executor_);
  clock_.Arm(*session.expiry, session.last_outcome.resume_deadline);
  Session* s = &session;
  int64_t generation = ++session.expiry_generation;
  session.expiry->async_wait([this, s, generation](const asio::error_code&) {
    if (s->expiry_generation != generation) return;  // superseded: resumed or re-armed
    if (s->state != State::kSuspended || clock_.Now() < s->last_outcome.resume_deadline) {
      if (s->state == State::kSuspended) ArmExpiry(*s);
      return;
    }
    // The suspended wait timed out: the run has ended; the next message boots a continuation.
    s->state = State::kExited;
    s->last_outcome = RunOutcome{RunOutcome::Kind::kExited, "timeout"};
    if (on_run_end) on_run_end(s->chat_id, s->last_outcome);
  });
}

void LocalSessions::ArmHandoverDeadline(Session& session, absl::Time deadline) {
  session.handover_timer = std::make_unique<asio::steady_timer>(executor_);
  clock_.Arm(*session.handover_timer, deadline);
  Session* s = &session;
  session.handover_timer->async_wait([this, s, deadline](const asio::error_code&) {
    if (!s->handover.open) return;
    if (clock_.Now() < deadline) {  // the fake clock fires armed timers early: wait again
      ArmHandoverDeadline(*s, deadline);
      return;
    }
    // No signal in time: the warm side is gone. The run answers the message itself.
    absl::StatusOr<int64_t> seq = Append(s->chat_id, HandoverTimeoutSkip());
    static_cast<void>(seq);
  });
}

void LocalSessions::Boot(Session& session, BootRequest boot) {
  if (session.expiry) {
    clock_.Disarm(*session.expiry);
    ++session.expiry_generation;  // its pending wait is cancelled and ignored
    session.expiry.reset();
  }
  boot.chat_id = session.chat_id;
  boot.run_id = absl::StrCat("run_", next_run_++);
  if (boot.continuation || boot.resume) {
    boot.previous_run_id = session.run_id;
    boot.snapshot = session.snapshot;
    // The first run's boot message never went through `.in`: until a snapshot holds it (it
    // was answered), a continuation or retry boots as the first run did, so it is not lost.
    NextBoot next = NextBootOf(session.first_trigger, session.base_payload, session.boot_message,
                               session.head_start_messages, session.snapshot);
    boot.trigger = std::move(next.trigger);
    boot.payload = std::move(next.payload);
    int64_t floor = SnapshotInSeq(session.snapshot);
    for (const InRecord& r : session.in) {
      if (r.seq > floor) boot.pending.push_back(r);
    }
    int64_t last_turn_complete = SnapshotOutSeq(session.snapshot);
    for (const OutRecord& r : session.out) {
      if (r.seq > last_turn_complete) boot.out_tail.push_back(r);
    }
  }
  // Queued and assigned at once: the timings' `boot` is the run's own start-up only.
  if (boot.queued_at == absl::InfinitePast()) boot.queued_at = clock_.Now();
  boot.assigned_at = clock_.Now();
  session.run_id = boot.run_id;
  session.attempt = boot.attempt;
  session.state = State::kLive;
  ++session.runs;
  ++live_runs_;
  session.run = std::make_shared<ChatRun>(*session.agent, MakeHost(session), std::move(boot));
  session.run->Start();
}

absl::Status LocalSessions::Create(const std::string& chat_id, const Agent& agent,
                                   const std::string& trigger, Json payload, int attempt) {
  if (sessions_.count(chat_id) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("chat ", chat_id, " already has a session"));
  }
  auto session = std::make_unique<Session>();
  session->chat_id = chat_id;
  session->agent = &agent;
  if (!payload.is_object()) payload = Json::object();
  payload["chatId"] = chat_id;
  session->base_payload = BasePayload(payload);
  session->boot_message = BootMessage(trigger, payload);
  session->first_trigger = trigger;
  Session& s = *session;
  sessions_[chat_id] = std::move(session);
  if (trigger == "handover-prepare") {
    s.head_start_messages = payload.value("headStartMessages", Json::array());
    s.handover.head_start = true;
    s.handover.open = true;
    ArmHandoverDeadline(s, clock_.Now() + agent.options.handover_timeout);
  }
  BootRequest boot;
  boot.trigger = trigger;
  boot.payload = std::move(payload);
  boot.attempt = attempt;
  boot.queued_at = clock_.Now();  // the boot message is stored with the chat
  Boot(s, std::move(boot));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LocalSessions::Append(const std::string& chat_id, const Json& body) {
  auto it = sessions_.find(chat_id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no chat ", chat_id));
  Session& s = *it->second;
  if (s.state == State::kClosed) {
    return absl::FailedPreconditionError(absl::StrCat("chat ", chat_id, " is closed"));
  }
  absl::StatusOr<InRecord> record = InRecordFromJson(static_cast<int64_t>(s.in.size()) + 1, body);
  if (!record.ok()) return record.status();
  record->appended_at = clock_.Now();
  if (absl::Status signal = CheckSignal(chat_id, s.handover, record->kind); !signal.ok()) {
    return signal;
  }
  int64_t seq = record->seq;
  if (record->kind == InKind::kHandover || record->kind == InKind::kHandoverSkip) {
    s.handover.open = false;
    s.handover.closed_by = seq;
    if (s.handover_timer) clock_.Disarm(*s.handover_timer);
  }
  s.in.push_back(*record);
  if (s.run) {
    s.run->Deliver(*std::move(record));
    return seq;
  }
  if (record->kind != InKind::kMessage) return seq;  // stops and signals only reach a live run
  BootRequest boot;
  if (s.state == State::kSuspended && clock_.Now() < s.last_outcome.resume_deadline) {
    boot.resume = true;
  } else {
    boot.continuation = true;
  }
  Boot(s, std::move(boot));
  return seq;
}

void LocalSessions::Reassign(const std::string& chat_id) {
  auto it = sessions_.find(chat_id);
  if (it == sessions_.end() || !it->second->run) return;
  it->second->reassign = true;
  it->second->run->Cancel(/*lost=*/true);
}

void LocalSessions::Cancel(const std::string& chat_id) {
  auto it = sessions_.find(chat_id);
  if (it != sessions_.end() && it->second->run) it->second->run->Cancel();
}

}  // namespace baton
