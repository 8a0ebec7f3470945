// Fuzzes what a caller controls in the orchestrator's auth: the `authorization` metadata (service
// tokens and chat tokens, `bct1.<chat>.<expiry>.<mac>`), and the auth file's JSON. Nothing may
// crash; a refusal must say why; a chat token issued for any chat id must name that chat again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tools/orchestrator/auth.h"

namespace {

const baton::orchestrator::Auth& TestAuth() {
  static const baton::orchestrator::Auth* auth = [] {
    baton::Json config = {
        {"tokens",
         {{{"name", "app"},
           {"sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
           {"scopes", {"sessions:read"}}}}},
        {"chat_token_key", "fuzzing-key-fuzzing-key-fuzzing-key"}};
    return new baton::orchestrator::Auth(*baton::orchestrator::Auth::FromJson(config));
  }();
  return *auth;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  switch (data[0] % 3) {
    case 0: {  // the metadata as sent
      for (const std::string& header : {std::string(input), "Bearer " + std::string(input)}) {
        absl::StatusOr<baton::orchestrator::Caller> caller = TestAuth().Identify(header, now);
        if (!caller.ok() && caller.status().message().empty()) __builtin_trap();
        if (caller.ok()) {
          // Whoever it names, a chat token never reaches past its own chat.
          bool chat_token = !caller->chat_id.empty();
          absl::Status other = baton::orchestrator::Auth::Check(
              *caller, baton::orchestrator::Scope::kRead, caller->chat_id + "-other");
          if (chat_token && other.ok()) __builtin_trap();
        }
      }
      break;
    }
    case 1: {  // any chat id round-trips through a chat token
      std::string token = TestAuth().IssueChatToken(input, now);
      if (input.empty()) {
        if (!token.empty()) __builtin_trap();  // no token names no chat
        break;
      }
      absl::StatusOr<baton::orchestrator::Caller> caller =
          TestAuth().Identify("Bearer " + token, now);
      if (!caller.ok() || caller->chat_id != input) __builtin_trap();
      break;
    }
    default: {  // the auth file
      absl::StatusOr<baton::Json> config = baton::ParseJson(input);
      if (!config.ok()) break;
      absl::StatusOr<baton::orchestrator::Auth> auth = baton::orchestrator::Auth::FromJson(*config);
      if (!auth.ok() && auth.status().message().empty()) __builtin_trap();
      break;
    }
  }
  return 0;
}
