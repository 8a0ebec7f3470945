// File: tools/orchestrator/auth.h
//
// Who may call what on the orchestrator (docs/security.md). Callers present a bearer token in
// the `authorization` metadata of every call:
//
// - a **service token**, listed by name with its SHA-256 and its scopes in the auth file
//   (`--auth`): `worker` for WorkerGateway, `sessions:create`, `sessions:write` and
//   `sessions:read` for Sessions;
// - a **chat token** (`bct1.<chat>.<expiry>.<mac>`), issued by CreateSession and signed with the
//   file's `chat_token_key`: it reaches one chat only, to append messages and stops, read, get,
//   cancel and close. It is what a browser holds.
//
// Without an auth file every call is allowed. Errors never echo a token.
#ifndef BATON_TOOLS_ORCHESTRATOR_AUTH_H_
#define BATON_TOOLS_ORCHESTRATOR_AUTH_H_

#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hooks/json.h"

namespace baton::orchestrator {

enum class Scope { kWorker, kCreate, kWrite, kRead };

std::string_view ScopeName(Scope scope);

// Who a call came from.
struct Caller {
  std::string name;  // the service token's name, or "chat token"
  std::set<Scope> scopes;
  std::string chat_id;  // a chat token's one chat; empty for a service token
  bool anyone = false;  // auth is off: everything is allowed
  // When a chat token stops being valid; a following Read it opened ends then.
  absl::Time expires = absl::InfiniteFuture();
};

class Auth {
 public:
  // Auth off: every call is allowed.
  Auth() = default;
  // {"tokens": [{"name", "sha256", "scopes": [...]}], "chat_token_key", "chat_token_ttl_s"}.
  static absl::StatusOr<Auth> FromJson(const Json& config);
  static absl::StatusOr<Auth> FromFile(const std::string& path);

  bool enabled() const { return enabled_; }

  // The caller an `authorization` metadata value names ("Bearer <token>"); UNAUTHENTICATED
  // when it names nobody (missing, unknown, malformed, tampered or expired).
  absl::StatusOr<Caller> Identify(std::string_view authorization, absl::Time now) const;

  // PERMISSION_DENIED unless `caller` may use `scope` on `chat_id` (empty: not about one chat,
  // which no chat token reaches).
  static absl::Status Check(const Caller& caller, Scope scope, std::string_view chat_id);

  // A chat token for `chat_id`, valid for the configured TTL from `now`; empty when the auth
  // file has no chat_token_key, or `chat_id` is empty.
  std::string IssueChatToken(std::string_view chat_id, absl::Time now) const;
  absl::Duration chat_token_ttl() const { return chat_token_ttl_; }

 private:
  struct Entry {
    std::string name;
    std::array<uint8_t, 32> sha256;
    std::set<Scope> scopes;
  };
  std::string Mac(std::string_view signed_part) const;
  absl::StatusOr<Caller> IdentifyChatToken(std::string_view token, absl::Time now) const;

  bool enabled_ = false;
  std::vector<Entry> tokens_;
  std::string chat_key_;
  absl::Duration chat_token_ttl_ = absl::Hours(24);
};

}  // namespace baton::orchestrator

#endif  // BATON_TOOLS_ORCHESTRATOR_AUTH_H_
