#include "runtime/testkit/test_kit.h"

#include "hooks/messages.h"
#include "hooks/status.h"

namespace baton {

TestKit::TestKit(Agent agent) : TestKit(std::move(agent), Options()) {}

TestKit::TestKit(Agent agent, Options options, bool keep_model)
    : options_(std::move(options)),
      agent_(std::move(agent)),
      model_(std::make_shared<ScriptedModel>(clock_)),
      pool_(options_.pool_threads),
      sessions_(io_.get_executor(), clock_, pool_) {
  if (!keep_model || agent_.model == nullptr) agent_.model = model_;
  sessions_.check_snapshots = true;
  sessions_.on_hook = [this](const std::string&, std::string_view hook, const Json& args) {
    hooks_.push_back(HookCall{std::string(hook), args});
  };
}

TestKit::~TestKit() {
  sessions_.Cancel(options_.chat_id);
  RunUntilIdle();
}

void TestKit::RunUntilIdle() { RunUntilQuiet(io_, pool_); }

void TestKit::Boot(const std::string& trigger, Json payload, const std::vector<Json>& early,
                   int attempt) {
  absl::Status s = sessions_.Create(options_.chat_id, agent_, trigger, std::move(payload), attempt);
  BATON_CHECK(s.ok());
  for (const Json& body : early) BATON_CHECK(sessions_.Append(options_.chat_id, body).ok());
  RunUntilIdle();
}

absl::StatusOr<int64_t> TestKit::Send(const Json& body) {
  absl::StatusOr<int64_t> seq = sessions_.Append(options_.chat_id, body);
  RunUntilIdle();
  return seq;
}

int64_t TestKit::SendMessage(const Json& ui_message, const Json& metadata) {
  Json payload = {
      {"chatId", options_.chat_id}, {"trigger", "submit-message"}, {"message", ui_message}};
  if (!metadata.is_null()) payload["metadata"] = metadata;
  absl::StatusOr<int64_t> seq = Send({{"kind", "message"}, {"payload", payload}});
  BATON_CHECK(seq.ok());
  return *seq;
}

int64_t TestKit::SendText(const std::string& id, const std::string& text) {
  return SendMessage(UserMessage(id, text));
}

int64_t TestKit::SendRegenerate() {
  absl::StatusOr<int64_t> seq =
      Send({{"kind", "message"},
            {"payload", {{"chatId", options_.chat_id}, {"trigger", "regenerate-message"}}}});
  BATON_CHECK(seq.ok());
  return *seq;
}

int64_t TestKit::SendStop(const std::string& reason) {
  Json body = {{"kind", "stop"}};
  if (!reason.empty()) body["message"] = reason;
  absl::StatusOr<int64_t> seq = Send(body);
  BATON_CHECK(seq.ok());
  return *seq;
}

int64_t TestKit::SendHandover(const Json& partial, const std::string& message_id, bool is_final) {
  absl::StatusOr<int64_t> seq = Send({{"kind", "handover"},
                                      {"partialAssistantMessage", partial},
                                      {"messageId", message_id},
                                      {"isFinal", is_final}});
  BATON_CHECK(seq.ok());
  return *seq;
}

int64_t TestKit::SendHandoverSkip() {
  absl::StatusOr<int64_t> seq = Send({{"kind", "handover-skip"}});
  BATON_CHECK(seq.ok());
  return *seq;
}

int64_t TestKit::SendClose() {
  absl::StatusOr<int64_t> seq = Send(
      {{"kind", "message"}, {"payload", {{"chatId", options_.chat_id}, {"trigger", "close"}}}});
  BATON_CHECK(seq.ok());
  return *seq;
}

void TestKit::Cancel() {
  sessions_.Cancel(options_.chat_id);
  RunUntilIdle();
}

void TestKit::Reassign() {
  sessions_.Reassign(options_.chat_id);
  RunUntilIdle();
}

void TestKit::Advance(absl::Duration d) {
  // Step through each deadline in order, so that what a timer starts sees the right time.
  absl::Time target = clock_.Now() + d;
  for (;;) {
    absl::Time next = clock_.NextDeadline();
    if (next > target) break;
    clock_.Advance(std::max(next - clock_.Now(), absl::ZeroDuration()));
    RunUntilIdle();
  }
  clock_.Advance(target - clock_.Now());
  RunUntilIdle();
}

const LocalSessions::Session& TestKit::session() const {
  const LocalSessions::Session* s = sessions_.Find(options_.chat_id);
  BATON_CHECK(s != nullptr);
  return *s;
}

std::vector<std::string> TestKit::HookNames() const {
  std::vector<std::string> names;
  for (const HookCall& h : hooks_) names.push_back(h.name);
  return names;
}

const HookCall* TestKit::LastHook(const std::string& name) const {
  for (auto it = hooks_.rbegin(); it != hooks_.rend(); ++it) {
    if (it->name == name) return &*it;
  }
  return nullptr;
}

std::vector<OutRecord> TestKit::out() const { return session().out; }

std::vector<std::string> TestKit::OutTypes() const {
  std::vector<std::string> types;
  for (const OutRecord& r : session().out) types.push_back(r.Type());
  return types;
}

Json TestKit::snapshot() const { return session().snapshot; }
LocalSessions::State TestKit::state() const { return session().state; }
const RunOutcome& TestKit::last_outcome() const { return session().last_outcome; }
int TestKit::runs() const { return session().runs; }

}  // namespace baton
