// File: tools/orchestrator/sessions_service.cc
//
// The Sessions edge and what it calls: the service (who may call, the sizes of what a call
// carries, then the core under mu_), the core's CreateSession, Append, CancelRun and Close, what
// a client sees of a chat (SessionProto), and the Read streams (Read, the Follower, the pump
// threads that fill it).
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/protocol/session_rules.h"
#include "runtime/protocol/wire.h"
#include "tools/orchestrator/orchestrator.h"
#include "tools/orchestrator/orchestrator_state.h"
#include "tools/orchestrator/states.h"

namespace baton::orchestrator {

namespace {

v1::Run RunProto(const RunRow& row) {
  v1::Run run;
  run.set_run_id(row.run_id);
  run.set_chat_id(row.chat_id);
  run.set_agent(row.agent);
  run.set_attempt(row.attempt);
  run.set_state(RunStateFromName(row.state));
  run.set_worker_id(row.worker_id);
  run.set_trigger(row.trigger);
  run.set_reason(row.reason);
  run.set_error(row.error);
  run.set_created_at_unix_ms(row.created_ms);
  run.set_started_at_unix_ms(row.started_ms);
  run.set_ended_at_unix_ms(row.ended_ms);
  run.set_cancel_requested(row.cancel_requested);
  return run;
}

// ---- limits (docs/bad-input.md; the bounds: orchestrator_state.h) -----------------------------

absl::Status CheckChatId(const std::string& chat_id) {
  if (chat_id.empty()) return Invalid("chat_id must be 1 to 256 bytes");
  if (chat_id.size() > kMaxChatIdBytes) {
    return Invalid(absl::StrCat("chat_id must be 1 to 256 bytes, not ", chat_id.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckCreateRequest(const v1::CreateSessionRequest& request) {
  if (absl::Status s = CheckChatId(request.chat_id()); !s.ok()) return s;
  if (request.agent().empty()) return Invalid("agent is required");
  if (absl::Status s = CheckAgentName(request.agent()); !s.ok()) return s;
  if (request.traceparent().size() > 55 ||
      (!request.traceparent().empty() && !ValidTraceparent(request.traceparent()))) {
    return Invalid("traceparent is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
  }
  if (request.payload_json().size() > kMaxInRecordBytes) {
    return absl::Status(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("payload_json of ", request.payload_json().size(),
                                     " bytes exceeds the limit of ", kMaxInRecordBytes));
  }
  return absl::OkStatus();
}

// CreateSession's trigger: a known one.
absl::StatusOr<BootTrigger> RequestedTrigger(const v1::CreateSessionRequest& request) {
  if (request.trigger() == v1::TRIGGER_UNSPECIFIED) return Invalid("trigger is required");
  std::optional<BootTrigger> trigger = BootTriggerOf(request.trigger());
  if (!trigger.has_value()) {
    return Invalid(
        absl::StrCat("trigger ", static_cast<int>(request.trigger()), " is not a known trigger"));
  }
  return *trigger;
}

// CreateSession's boot payload: a JSON object (empty when none is sent) that a run can read.
absl::StatusOr<Json> RequestedPayload(const v1::CreateSessionRequest& request) {
  Json payload = Json::object();
  if (!request.payload_json().empty()) {
    absl::StatusOr<Json> parsed = ParseJson(request.payload_json(), kMaxDataDepth);
    if (!parsed.ok()) return Invalid(absl::StrCat("payload_json: ", parsed.status().message()));
    if (!parsed->is_object()) return Invalid("payload_json must be a JSON object");
    payload = *std::move(parsed);
  }
  // A message the run could not read would leave the chat waiting with no answer and no error.
  if (absl::Status checked = CheckBootPayload(payload); !checked.ok()) return checked;
  return payload;
}

// `.out` records a Read takes from the store at a time.
constexpr size_t kReadPage = 512;
// A batched Read's response holds records up to this many bytes (or one larger record): a few
// TCP segments, far under gRPC's 4 MiB message limit.
constexpr size_t kBatchBytes = 64 * 1024;

absl::Status TokenExpired() {
  return absl::Status(absl::StatusCode::kUnauthenticated, "chat token expired");
}

absl::Status ShuttingDown() {
  return absl::Status(absl::StatusCode::kUnavailable,
                      "the orchestrator is shutting down; read again from the last seq you got");
}

// A Read refused before it started: it ends with its status.
class RefusedRead final : public grpc::ServerWriteReactor<v1::ReadResponse> {
 public:
  explicit RefusedRead(const absl::Status& status) { Finish(ToGrpc(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

// ---- the Sessions service ---------------------------------------------------------------------

grpc::Status Orchestrator::SessionsApi::CreateSession(grpc::ServerContext* context,
                                                      const v1::CreateSessionRequest* request,
                                                      v1::CreateSessionResponse* response) {
  Caller caller;
  if (absl::Status s = o_.Authorize(*context, Scope::kCreate, "", &caller); !s.ok()) {
    return ToGrpc(s);
  }
  if (absl::Status s = CheckCreateRequest(*request); !s.ok()) return ToGrpc(s);
  absl::MutexLock lock(&o_.mu_);
  return ToGrpc(o_.CreateSession(*request, caller, response));
}

grpc::Status Orchestrator::SessionsApi::Append(grpc::ServerContext* context,
                                               const v1::AppendRequest* request,
                                               v1::AppendResponse* response) {
  Caller caller;
  absl::Status s = o_.Authorize(*context, Scope::kWrite, request->chat_id(), &caller);
  if (!s.ok()) return ToGrpc(s);
  if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
  s = CheckAtMost("client_record_id", request->client_record_id(), kMaxClientRecordIdBytes);
  if (!s.ok()) return ToGrpc(s);
  if (!caller.chat_id.empty()) {
    // A browser appends messages and stops; the handover is the warm server's.
    absl::StatusOr<InRecord> record = DecodeInRecord(0, request->body_json());
    if (record.ok() && record->kind != InKind::kMessage && record->kind != InKind::kStop) {
      return ToGrpc(absl::Status(absl::StatusCode::kPermissionDenied,
                                 "a chat token appends messages and stops only"));
    }
  }
  absl::MutexLock lock(&o_.mu_);
  return ToGrpc(o_.Append(*request, response));
}

grpc::ServerWriteReactor<v1::ReadResponse>* Orchestrator::SessionsApi::Read(
    grpc::CallbackServerContext* context, const v1::ReadRequest* request) {
  Caller caller;
  absl::Status s = o_.Authorize(*context, Scope::kRead, request->chat_id(), &caller);
  if (!s.ok()) return new RefusedRead(s);
  if (s = CheckChatId(request->chat_id()); !s.ok()) return new RefusedRead(s);
  return o_.Read(*request, caller.expires);
}

grpc::Status Orchestrator::SessionsApi::Get(grpc::ServerContext* context,
                                            const v1::GetRequest* request, v1::Session* response) {
  absl::Status s = o_.Authorize(*context, Scope::kRead, request->chat_id());
  if (!s.ok()) return ToGrpc(s);
  if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
  absl::MutexLock lock(&o_.mu_);
  auto it = o_.sessions_.find(request->chat_id());
  if (it == o_.sessions_.end()) {
    return ToGrpc(
        absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request->chat_id())));
  }
  *response = o_.SessionProto(*it->second);
  return grpc::Status::OK;
}

grpc::Status Orchestrator::SessionsApi::ListRuns(grpc::ServerContext* context,
                                                 const v1::ListRunsRequest* request,
                                                 v1::ListRunsResponse* response) {
  // Runs name workers and carry errors: for operators, not for chat tokens.
  if (absl::Status s = o_.Authorize(*context, Scope::kRead, ""); !s.ok()) return ToGrpc(s);
  if (absl::Status s = CheckAtMost("chat_id", request->chat_id(), kMaxChatIdBytes); !s.ok()) {
    return ToGrpc(s);
  }
  absl::MutexLock lock(&o_.mu_);
  if (!request->chat_id().empty() && o_.sessions_.count(request->chat_id()) == 0) {
    return ToGrpc(
        absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request->chat_id())));
  }
  absl::StatusOr<std::vector<RunRow>> rows = o_.store_.ListRuns(request->chat_id());
  if (!rows.ok()) return ToGrpc(rows.status());
  for (const RunRow& row : *rows) *response->add_runs() = RunProto(row);
  return grpc::Status::OK;
}

grpc::Status Orchestrator::SessionsApi::CancelRun(grpc::ServerContext* context,
                                                  const v1::CancelRunRequest* request,
                                                  v1::Run* response) {
  absl::Status s = o_.Authorize(*context, Scope::kWrite, request->chat_id());
  if (!s.ok()) return ToGrpc(s);
  if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
  if (s = CheckAtMost("run_id", request->run_id(), kMaxRunIdBytes); !s.ok()) return ToGrpc(s);
  absl::MutexLock lock(&o_.mu_);
  return ToGrpc(o_.CancelRun(*request, response));
}

grpc::Status Orchestrator::SessionsApi::Close(grpc::ServerContext* context,
                                              const v1::CloseRequest* request,
                                              v1::Session* response) {
  absl::Status s = o_.Authorize(*context, Scope::kWrite, request->chat_id());
  if (!s.ok()) return ToGrpc(s);
  if (s = CheckChatId(request->chat_id()); !s.ok()) return ToGrpc(s);
  if (s = CheckAtMost("reason", request->reason(), kMaxCloseReasonBytes); !s.ok()) {
    return ToGrpc(s);
  }
  absl::MutexLock lock(&o_.mu_);
  return ToGrpc(o_.Close(*request, response));
}

grpc::Status Orchestrator::SessionsApi::GetAgent(grpc::ServerContext* context,
                                                 const v1::GetAgentRequest* request,
                                                 v1::AgentInfo* response) {
  // What a warm side needs before it creates a chat: a caller that may create chats, never a
  // chat token (it is about no one chat).
  if (absl::Status s = o_.Authorize(*context, Scope::kCreate, ""); !s.ok()) return ToGrpc(s);
  if (absl::Status s = CheckAgentName(request->name()); !s.ok()) return ToGrpc(s);
  absl::MutexLock lock(&o_.mu_);
  const v1::AgentInfo* announced = o_.Announced(request->name(), /*connected_only=*/true);
  if (announced == nullptr) {
    return ToGrpc(
        absl::Status(absl::StatusCode::kNotFound,
                     absl::StrCat("no connected worker hosts agent ", Quoted(request->name()))));
  }
  *response = *announced;
  return grpc::Status::OK;
}

// ---- Sessions ---------------------------------------------------------------------------------

absl::Status Orchestrator::CreateSession(const v1::CreateSessionRequest& request,
                                         const Caller& caller,
                                         v1::CreateSessionResponse* response) {
  absl::StatusOr<BootTrigger> trigger = RequestedTrigger(request);
  if (!trigger.ok()) return trigger.status();
  absl::StatusOr<Json> payload = RequestedPayload(request);
  if (!payload.ok()) return payload.status();
  auto existing = sessions_.find(request.chat_id());
  if (existing != sessions_.end()) {
    return RenewExisting(*existing->second, request, caller, response);
  }
  if (*trigger == BootTrigger::kHandoverPrepare) {
    if (absl::Status allowed = CheckHeadStart(request.agent()); !allowed.ok()) return allowed;
  }
  (*payload)["chatId"] = request.chat_id();
  auto session = std::make_unique<Session>();
  SessionRow& row = session->row;
  row.chat_id = request.chat_id();
  row.agent = request.agent();
  session->state = SessionState::kLive;
  row.base_payload_json = DumpJson(BasePayload(*payload));
  if (Json boot = BootMessage(std::string(Word(*trigger)), *payload); boot.is_object()) {
    row.boot_message_json = DumpJson(boot);
    session->awaiting.push_back(0);  // the boot message's turn is the first on `.out`
  }
  row.traceparent = request.traceparent();
  row.created_ms = UnixMs(clock_.Now());
  if (*trigger == BootTrigger::kHandoverPrepare) {
    absl::Duration window = HandoverWindowOf(row.agent);
    row.head_start_json = DumpJson(payload->value("headStartMessages", Json::array()));
    row.handover_deadline_ms = row.created_ms + absl::ToInt64Milliseconds(window);
  }
  Session& s = *session;
  sessions_[row.chat_id] = std::move(session);
  absl::Status booted = Boot(s, *trigger, DumpJson(*payload), 1);
  if (!booted.ok()) {
    sessions_.erase(request.chat_id());
    return booted;
  }
  if (s.row.handover_deadline_ms > 0) {
    handover_deadlines_.emplace(s.row.handover_deadline_ms, s.row.chat_id);
  }
  *response->mutable_session() = SessionProto(s);
  response->set_created(true);
  response->set_handover_deadline_unix_ms(s.row.handover_deadline_ms);
  IssueChatToken(request.chat_id(), response);
  return absl::OkStatus();
}

absl::Status Orchestrator::RenewExisting(const Session& existing,
                                         const v1::CreateSessionRequest& request,
                                         const Caller& caller,
                                         v1::CreateSessionResponse* response) {
  // The answer carries a fresh chat token, which reads and writes the chat: only a caller
  // that may already do both gets it, so sessions:create alone reaches no chat it did not
  // make (docs/security.md).
  if (!caller.anyone &&
      (caller.scopes.count(Scope::kRead) == 0 || caller.scopes.count(Scope::kWrite) == 0)) {
    return absl::Status(
        absl::StatusCode::kPermissionDenied,
        absl::StrCat(caller.name,
                     " may create chats but not renew the chat token of one that exists: "
                     "CreateSession of an existing chat needs sessions:read and "
                     "sessions:write as well"));
  }
  if (existing.row.agent != request.agent()) {
    return absl::Status(absl::StatusCode::kAlreadyExists,
                        absl::StrCat("chat ", request.chat_id(), " exists with agent ",
                                     Quoted(existing.row.agent)));
  }
  *response->mutable_session() = SessionProto(existing);
  response->set_created(false);
  response->set_handover_deadline_unix_ms(existing.row.handover_deadline_ms);
  IssueChatToken(request.chat_id(), response);
  return absl::OkStatus();
}

absl::Status Orchestrator::CheckHeadStart(const std::string& agent) const {
  // An agent whose first model call must go through its own hooks takes no head start: the
  // warm side's step 1 would run without them.
  const v1::AgentInfo* announced = Announced(agent, /*connected_only=*/false);
  if (announced != nullptr && announced->head_start_disabled()) {
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        absl::StrCat("agent ", Quoted(agent),
                                     " does not allow a head start (its workers announce it with "
                                     "allow_head_start off): create the chat with submit-message"));
  }
  return absl::OkStatus();
}

absl::Duration Orchestrator::HandoverWindowOf(const std::string& agent) const {
  // The window for the warm side's signal: the agent's own handover_timeout, as its workers
  // announced it, so the warm side and the run agree on it.
  const v1::AgentInfo* announced = Announced(agent, /*connected_only=*/false);
  return announced != nullptr && announced->handover_timeout_ms() > 0
             ? absl::Milliseconds(announced->handover_timeout_ms())
             : options_.handover_timeout;
}

void Orchestrator::IssueChatToken(const std::string& chat_id,
                                  v1::CreateSessionResponse* response) const {
  if (options_.auth == nullptr) return;
  absl::Time now = clock_.Now();
  std::string token = options_.auth->IssueChatToken(chat_id, now);
  if (token.empty()) return;
  response->set_chat_token(std::move(token));
  response->set_chat_token_expires_unix_ms(UnixMs(now + options_.auth->chat_token_ttl()));
}

absl::Status Orchestrator::Append(const v1::AppendRequest& request, v1::AppendResponse* response,
                                  bool closing) {
  if (request.body_json().size() > kMaxInRecordBytes) {
    return absl::Status(absl::StatusCode::kResourceExhausted,
                        absl::StrCat(".in record of ", request.body_json().size(),
                                     " bytes exceeds the limit of ", kMaxInRecordBytes));
  }
  absl::StatusOr<InRecord> record = DecodeInRecord(0, request.body_json());
  if (!record.ok()) return record.status();
  auto it = sessions_.find(request.chat_id());
  if (it == sessions_.end()) {
    return absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
  }
  Session& session = *it->second;
  if (absl::Status open = CheckAppendable(session, request, closing); !open.ok()) return open;
  if (absl::Status allowed = CheckSignal(request.chat_id(), session.handover(), record->kind);
      !allowed.ok()) {
    // A retry of the very record that closed the window is answered as any retry is.
    if (AnswerRetriedSignal(session, request, response)) return absl::OkStatus();
    return allowed;
  }
  absl::StatusOr<Store::Appended> appended = StoreIn(session, request, record->kind);
  if (!appended.ok()) return appended.status();
  response->set_seq(appended->row.seq);
  response->set_duplicate(appended->duplicate);
  if (appended->duplicate) {
    AnswerRetry(session, appended->row.seq, response);
    return absl::OkStatus();
  }
  response->set_out_seq(session.out_seq);
  response->set_turns_before(static_cast<int32_t>(session.awaiting.size()));
  if (NeedsAnswer(*record)) session.awaiting.push_back(appended->row.seq);
  if (absl::Status handed = HandOn(session, record->kind, appended->row); !handed.ok()) {
    return handed;
  }
  response->set_run_id(session.live_run);
  return absl::OkStatus();
}

absl::Status Orchestrator::CheckAppendable(const Session& session, const v1::AppendRequest& request,
                                           bool closing) const {
  // Closed, or closing: once Close stored its record, nothing after it would be answered (the
  // run ends at the close), so nothing more is taken.
  if (session.state == SessionState::kClosed || (session.close_appended && !closing)) {
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        absl::StrCat("chat ", request.chat_id(), " is closed"));
  }
  if (session.in_seq >= options_.max_in_records && !closing) {
    return absl::Status(absl::StatusCode::kResourceExhausted,
                        absl::StrCat("chat ", request.chat_id(), " holds ", session.in_seq,
                                     " .in records, the most a chat may (close it and start "
                                     "another)"));
  }
  return absl::OkStatus();
}

bool Orchestrator::AnswerRetriedSignal(const Session& session, const v1::AppendRequest& request,
                                       v1::AppendResponse* response) {
  if (request.client_record_id().empty()) return false;
  absl::StatusOr<std::vector<InRow>> rows = store_.ReadIn(session.row.chat_id, 0, kAllRows);
  if (!rows.ok()) return false;
  for (const InRow& earlier : *rows) {
    if (earlier.client_record_id == request.client_record_id() &&
        earlier.body_json == request.body_json()) {
      response->set_seq(earlier.seq);
      response->set_duplicate(true);
      response->set_run_id(session.live_run);
      return true;
    }
  }
  return false;
}

absl::StatusOr<Store::Appended> Orchestrator::StoreIn(const Session& session,
                                                      const v1::AppendRequest& request,
                                                      InKind kind) {
  InRow row;
  row.kind = std::string(InKindName(kind));
  row.body_json = request.body_json();
  row.client_record_id = request.client_record_id();
  row.appended_ms = UnixMs(clock_.Now());
  absl::StatusOr<Store::Appended> appended = store_.AppendIn(session.row.chat_id, std::move(row));
  if (!appended.ok()) return appended.status();
  if (appended->duplicate && appended->row.body_json != request.body_json()) {
    // A retry sends the same record again; another record under a used id would be lost.
    return absl::Status(
        absl::StatusCode::kAlreadyExists,
        absl::StrCat("client_record_id ", Quoted(request.client_record_id()),
                     " is already .in seq ", appended->row.seq, " of chat ", request.chat_id(),
                     ", with another body; a retry must send the same body"));
  }
  return appended;
}

void Orchestrator::AnswerRetry(Session& session, int64_t seq, v1::AppendResponse* response) {
  // The first append may have failed after storing the record: make sure it is answered.
  if (session.live_run.empty()) BootIfUnanswered(session);
  response->set_run_id(session.live_run);
  // A retry waits for the same answer as the first append: after the answers ahead of it.
  // (After a restart `awaiting` is empty until the chat's next message: a retry then counts
  // as answered.)
  auto waiting = std::find(session.awaiting.begin(), session.awaiting.end(), seq);
  if (waiting == session.awaiting.end()) {
    response->set_answered(true);
  } else {
    response->set_out_seq(session.turn_out_seq);
    response->set_turns_before(static_cast<int32_t>(waiting - session.awaiting.begin()));
  }
}

absl::Status Orchestrator::HandOn(Session& session, InKind kind, const InRow& row) {
  const int64_t seq = row.seq;
  session.in_seq = seq;
  if (kind == InKind::kHandover || kind == InKind::kHandoverSkip) {
    // A head start takes one signal: the run no longer waits for another.
    session.row.handover_deadline_ms = 0;
    session.handover_closed_by = seq;
    SaveSession(session);
  }
  if (!session.live_run.empty()) {
    DeliverPending(*runs_[session.live_run], &row);  // from memory, not read back
  } else if (kind == InKind::kMessage) {
    // Any message boots the next run, a close too: the run fires its hooks and closes the chat
    // (as LocalSessions does). Stops and handover signals only reach a live run.
    bool resume = session.state == SessionState::kSuspended &&
                  UnixMs(clock_.Now()) < session.row.resume_deadline_ms;
    absl::Status booted = BootContinuation(session, resume, 1);
    if (!booted.ok()) return booted;
  }
  return absl::OkStatus();
}

absl::Status Orchestrator::CancelRun(const v1::CancelRunRequest& request, v1::Run* response) {
  auto it = sessions_.find(request.chat_id());
  if (it == sessions_.end()) {
    return absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
  }
  Session& session = *it->second;
  if (session.live_run.empty() ||
      (!request.run_id().empty() && request.run_id() != session.live_run)) {
    return absl::Status(absl::StatusCode::kFailedPrecondition,
                        absl::StrCat("chat ", request.chat_id(), " has no live run",
                                     request.run_id().empty() ? "" : " by that id"));
  }
  Run& run = *runs_[session.live_run];
  if (run.conn != nullptr && run.state == RunState::kRunning) {
    // Stored before it is acknowledged: a restart before the worker ends the run must not
    // forget it (the run would carry on, or be retried when its lease ran out).
    if (!run.cancel_requested) {
      RunRow row = run.row;
      row.state = Word(run.state);
      row.trigger = Word(run.trigger);
      row.cancel_requested = true;
      if (absl::Status saved = store_.PutRun(row); !saved.ok()) {
        return absl::Status(absl::StatusCode::kUnavailable,
                            absl::StrCat("the cancel could not be stored: ", saved.message()));
      }
      run.row.cancel_requested = true;
      run.cancel_requested = true;
    }
    SendCancel(run);
  } else {
    // Not running anywhere (queued, not accepted yet, or its worker is gone): it ends here.
    run.cancel_requested = true;
    run.row.cancel_requested = true;
    if (run.conn != nullptr) Revoke(*run.conn, run.row.run_id, run.row.lease_token, "cancelled");
    v1::RunFinished how;
    how.set_reason("cancelled");
    EndRun(run, RunState::kCancelled, how);
  }
  *response = RunProto(run.row);  // saved: its words are the state's
  return absl::OkStatus();
}

absl::Status Orchestrator::Close(const v1::CloseRequest& request, v1::Session* response) {
  auto it = sessions_.find(request.chat_id());
  if (it == sessions_.end()) {
    return absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
  }
  // One close record per chat: a second Close before the run has handled the first adds
  // nothing (the per-chat record limit does not stop a close, so repeats must not pile up).
  if (it->second->state != SessionState::kClosed && !it->second->close_appended) {
    Json body = {{"kind", "message"},
                 {"payload", {{"chatId", request.chat_id()}, {"trigger", "close"}}}};
    if (!request.reason().empty()) body["payload"]["reason"] = request.reason();
    v1::AppendRequest append;
    append.set_chat_id(request.chat_id());
    append.set_body_json(DumpJson(body));
    v1::AppendResponse ignored;
    absl::Status status = Append(append, &ignored, /*closing=*/true);
    if (!status.ok()) return status;
    it->second->close_appended = true;
  }
  *response = SessionProto(*it->second);
  return absl::OkStatus();
}

v1::Session Orchestrator::SessionProto(const Session& session) const {
  v1::Session out;
  out.set_chat_id(session.row.chat_id);
  out.set_agent(session.row.agent);
  out.set_state(ToProto(session.state));
  out.set_run_id(session.row.run_id);
  out.set_in_seq(session.in_seq);
  out.set_out_seq(session.out_seq);
  out.set_created_at_unix_ms(session.row.created_ms);
  out.set_runs(session.row.runs);
  out.set_turn_out_seq(session.turn_out_seq);
  // Answering from the moment a message waits for its answer (a run booting, a head start's
  // step 1 streaming on its warm side), not only once its first chunk is stored: a client that
  // resumes then follows the answer instead of missing it.
  out.set_answering(session.answering || !session.awaiting.empty());
  // A client sees a run that waits, and why, without ListRuns (which chat tokens cannot call).
  if (auto live = runs_.find(session.live_run); live != runs_.end()) {
    const Run& run = *live->second;
    out.set_run_state(ToProto(run.state));
    if (run.state == RunState::kQueued) {
      out.set_queued_reason(run.row.reason);
      out.set_queued_error(run.row.error);
    }
  }
  return out;
}

grpc::ServerWriteReactor<v1::ReadResponse>* Orchestrator::Read(const v1::ReadRequest& request,
                                                               absl::Time token_expires) {
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(request.chat_id());
    if (it == sessions_.end()) {
      refused =
          absl::Status(absl::StatusCode::kNotFound, absl::StrCat("no chat ", request.chat_id()));
    } else if (shutdown_) {
      refused = ShuttingDown();
    } else if (open_reads_ >= options_.max_reads) {
      refused = absl::Status(absl::StatusCode::kResourceExhausted,
                             absl::StrCat(open_reads_, " Read streams are open, the most allowed"));
    } else if (it->second->readers >= options_.max_reads_per_chat) {
      refused = absl::Status(absl::StatusCode::kResourceExhausted,
                             absl::StrCat("chat ", request.chat_id(), " has ", it->second->readers,
                                          " Read streams open, the most allowed"));
    } else {
      Session& session = *it->second;  // sessions are never removed
      ++open_reads_;
      ++session.readers;
      readers_.Add(1);
      auto* follower = new Follower(*this, session, request, token_expires);
      follower->expiry = token_expires == absl::InfiniteFuture()
                             ? read_expiries_.end()
                             : read_expiries_.emplace(token_expires, follower);
      // A pump thread sends what is stored; gRPC keeps the first write until the stream is
      // bound to the follower.
      pump_queue_.push_back(follower);
      return follower;
    }
  }
  return new RefusedRead(refused);
}

void Orchestrator::Follower::Fill() {
  std::optional<absl::Status> end;
  {
    absl::MutexLock lock(&o_.mu_);
    if (cancelled) {
      end = absl::Status(absl::StatusCode::kCancelled, "the client went away");
    } else if (o_.shutdown_) {
      end = ShuttingDown();
    } else if (Expired()) {
      end = TokenExpired();
    }
  }
  if (end.has_value()) return End(*end);
  absl::StatusOr<std::vector<OutRow>> rows = o_.store_.ReadOut(chat_id_, cursor_, kReadPage);
  if (!rows.ok()) return End(rows.status());
  if (!rows->empty()) {
    page_ = *std::move(rows);
    next_ = 0;
    return WriteNext();
  }
  if (!follow_) return End(absl::OkStatus());
  {
    absl::MutexLock lock(&o_.mu_);
    if (session_.out_seq > cursor_ || session_.state != SessionState::kClosed) {
      return ParkOrQueue();
    }
  }
  End(absl::OkStatus());  // the chat is closed and every record was sent
}

void Orchestrator::Follower::WriteNext() {
  if (next_ < page_.size()) {
    response_.Clear();
    end_ = next_;
    size_t bytes = 0;
    do {
      const OutRow& row = page_[end_];
      v1::OutRecord* record = batch_ ? response_.add_records() : response_.mutable_record();
      if (!record->ParseFromString(row.record)) {
        if (end_ > next_) {  // the records before it go first; the next write ends the stream
          response_.mutable_records()->RemoveLast();
          break;
        }
        return End(absl::Status(absl::StatusCode::kDataLoss,
                                absl::StrCat(".out record ", row.seq, " does not parse")));
      }
      bytes += row.record.size();
      ++end_;
    } while (batch_ && end_ < page_.size() && bytes + page_[end_].record.size() <= kBatchBytes);
    return StartWrite(&response_);  // OnWriteDone carries on, on a gRPC thread
  }
  page_.clear();
  response_ = v1::ReadResponse();  // a parked follower keeps no batch's memory
  absl::MutexLock lock(&o_.mu_);
  if (cursor_ == session_.out_seq && session_.last_out_at != absl::InfinitePast()) {
    o_.output_lag_seconds_.Observe(absl::ToDoubleSeconds(o_.clock_.Now() - session_.last_out_at));
  }
  ParkOrQueue();
}

void Orchestrator::Follower::ParkOrQueue() {
  bool more = session_.out_seq > cursor_;
  bool ending =
      !follow_ || cancelled || o_.shutdown_ || Expired() || session_.state == SessionState::kClosed;
  if (!more && !ending) {
    state = State::kWaiting;
    session_.waiters.push_back(this);
    o_.readers_waiting_.Add(1);
    return;
  }
  state = State::kQueued;
  o_.pump_queue_.push_back(this);
}

void Orchestrator::Follower::OnWriteDone(bool ok) {
  if (!ok) return End(absl::Status(absl::StatusCode::kCancelled, "the client went away"));
  cursor_ = page_[end_ - 1].seq;
  next_ = end_;
  if (Expired()) return End(TokenExpired());
  WriteNext();
}

void Orchestrator::Follower::OnCancel() {
  absl::MutexLock lock(&o_.mu_);
  cancelled = true;
  ReleaseSlot();  // free at once, not when the stream is done
  if (state == State::kWaiting) o_.Wake(*this);
}

void Orchestrator::Follower::OnDone() {
  {
    absl::MutexLock lock(&o_.mu_);
    ReleaseSlot();
    if (expiry != o_.read_expiries_.end()) o_.read_expiries_.erase(expiry);
  }
  delete this;
}

void Orchestrator::Follower::ReleaseSlot() {
  if (!holds_slot) return;
  holds_slot = false;
  --o_.open_reads_;
  --session_.readers;
  o_.readers_.Add(-1);
}

void Orchestrator::Follower::End(const absl::Status& status) {
  {
    absl::MutexLock lock(&o_.mu_);
    state = State::kDone;
  }
  Finish(ToGrpc(status));  // OnDone follows, on a gRPC thread
}

void Orchestrator::Wake(Follower& follower) {
  std::vector<Follower*>& waiters = follower.session().waiters;
  waiters.erase(std::remove(waiters.begin(), waiters.end(), &follower), waiters.end());
  follower.state = Follower::State::kQueued;
  pump_queue_.push_back(&follower);
  readers_waiting_.Add(-1);
  read_wakeups_.Add(1);
}

void Orchestrator::WakeReaders(Session& session) {
  std::vector<Follower*> waiters;
  waiters.swap(session.waiters);
  for (Follower* follower : waiters) {
    follower->state = Follower::State::kQueued;
    pump_queue_.push_back(follower);
  }
  readers_waiting_.Add(-static_cast<int64_t>(waiters.size()));
  read_wakeups_.Add(static_cast<int64_t>(waiters.size()));
}

void Orchestrator::PumpLoop() {
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !pump_queue_.empty() || pumps_stop_;
  };
  while (true) {
    Follower* follower = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&ready));
      if (pump_queue_.empty()) return;
      follower = pump_queue_.front();
      pump_queue_.pop_front();
      follower->state = Follower::State::kBusy;
    }
    follower->Fill();
  }
}

}  // namespace baton::orchestrator
