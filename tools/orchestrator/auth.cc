#include "tools/orchestrator/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace baton::orchestrator {

namespace {

constexpr std::string_view kChatTokenPrefix = "bct1";
constexpr size_t kMinChatKeyBytes = 32;

// Debian's Abseil has its own string_view.
absl::string_view Abs(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Unauthenticated(std::string_view why) { return absl::UnauthenticatedError(Abs(why)); }

std::array<uint8_t, 32> Sha256(std::string_view data) {
  std::array<uint8_t, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data());
  return digest;
}

absl::StatusOr<Scope> ParseScope(std::string_view name) {
  for (Scope s : {Scope::kWorker, Scope::kCreate, Scope::kWrite, Scope::kRead}) {
    if (ScopeName(s) == name) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown scope \"", Abs(name),
                   "\" (worker, sessions:create, sessions:write, sessions:read)"));
}

std::string Base64Url(std::string_view data) {
  std::string out;
  absl::WebSafeBase64Escape(Abs(data), &out);
  return out;
}

}  // namespace

std::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kWorker:
      return "worker";
    case Scope::kCreate:
      return "sessions:create";
    case Scope::kWrite:
      return "sessions:write";
    case Scope::kRead:
      return "sessions:read";
  }
  return "";
}

absl::StatusOr<Auth> Auth::FromJson(const Json& config) {
  if (!config.is_object()) return absl::InvalidArgumentError("the auth file must be an object");
  Auth auth;
  auth.enabled_ = true;
  const Json& tokens = config.contains("tokens") ? config["tokens"] : Json::array();
  if (!tokens.is_array()) return absl::InvalidArgumentError("\"tokens\" must be an array");
  std::set<std::string> names;
  for (const Json& t : tokens) {
    if (!t.is_object() || !t.value("name", Json()).is_string() ||
        !t.value("sha256", Json()).is_string() || !t.value("scopes", Json()).is_array()) {
      return absl::InvalidArgumentError(
          "each token needs \"name\", \"sha256\" (64 hex digits) and \"scopes\" (an array)");
    }
    Entry entry;
    entry.name = t["name"].get<std::string>();
    if (entry.name.empty() || !names.insert(entry.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("token names must be unique and not empty: \"", entry.name, "\""));
    }
    std::string hex = absl::AsciiStrToLower(t["sha256"].get<std::string>());
    if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("token \"", entry.name, "\": sha256 must be 64 hex digits"));
    }
    std::string bytes = absl::HexStringToBytes(hex);
    std::copy(bytes.begin(), bytes.end(), entry.sha256.begin());
    for (const Json& s : t["scopes"]) {
      if (!s.is_string()) return absl::InvalidArgumentError("scopes are strings");
      absl::StatusOr<Scope> scope = ParseScope(s.get<std::string>());
      if (!scope.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("token \"", entry.name, "\": ", scope.status().message()));
      }
      entry.scopes.insert(*scope);
    }
    auth.tokens_.push_back(std::move(entry));
  }
  if (config.contains("chat_token_key")) {
    if (!config["chat_token_key"].is_string() ||
        config["chat_token_key"].get<std::string>().size() < kMinChatKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("chat_token_key must be a string of at least ", kMinChatKeyBytes, " bytes"));
    }
    auth.chat_key_ = config["chat_token_key"].get<std::string>();
  }
  if (config.contains("chat_token_ttl_s")) {
    if (!config["chat_token_ttl_s"].is_number_integer() ||
        config["chat_token_ttl_s"].get<int64_t>() <= 0) {
      return absl::InvalidArgumentError("chat_token_ttl_s must be a positive integer");
    }
    auth.chat_token_ttl_ = absl::Seconds(config["chat_token_ttl_s"].get<int64_t>());
  }
  return auth;
}

absl::StatusOr<Auth> Auth::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the auth file ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<Json> config = ParseJson(text.str());
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the auth file ", path, ": ", config.status().message()));
  }
  absl::StatusOr<Auth> auth = FromJson(*config);
  if (!auth.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the auth file ", path, ": ", auth.status().message()));
  }
  return auth;
}

absl::StatusOr<Caller> Auth::Identify(std::string_view authorization, absl::Time now) const {
  if (!enabled_) return Caller{.anyone = true};
  if (authorization.empty()) return Unauthenticated("no bearer token (authorization metadata)");
  constexpr std::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(absl::string_view(authorization.data(), authorization.size()),
                        absl::string_view(kBearer.data(), kBearer.size()))) {
    return Unauthenticated("the authorization metadata is not \"Bearer <token>\"");
  }
  std::string_view token = authorization.substr(kBearer.size());
  if (absl::StartsWith(absl::string_view(token.data(), token.size()), "bct1.")) {
    return IdentifyChatToken(token, now);
  }
  // Every entry is compared, in constant time, so timing says nothing about which one matched.
  std::array<uint8_t, 32> digest = Sha256(token);
  const Entry* found = nullptr;
  for (const Entry& e : tokens_) {
    if (CRYPTO_memcmp(e.sha256.data(), digest.data(), digest.size()) == 0) found = &e;
  }
  if (found == nullptr) return Unauthenticated("unknown bearer token");
  return Caller{.name = found->name, .scopes = found->scopes};
}

std::string Auth::Mac(std::string_view signed_part) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), chat_key_.data(), static_cast<int>(chat_key_.size()),
       reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
       &length);
  return Base64Url(std::string_view(reinterpret_cast<const char*>(mac), length));
}

std::string Auth::IssueChatToken(std::string_view chat_id, absl::Time now) const {
  if (chat_key_.empty() || chat_id.empty()) return "";
  std::string signed_part = absl::StrCat(Abs(kChatTokenPrefix), ".", Base64Url(chat_id), ".",
                                         absl::ToUnixSeconds(now + chat_token_ttl_));
  return absl::StrCat(signed_part, ".", Mac(signed_part));
}

absl::StatusOr<Caller> Auth::IdentifyChatToken(std::string_view token, absl::Time now) const {
  if (chat_key_.empty()) return Unauthenticated("chat tokens are not enabled");
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(token.data(), token.size()), '.');
  int64_t expires = 0;
  std::string chat_id;
  // An empty chat would make the caller look like a service token: never valid.
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[2], &expires) ||
      !absl::WebSafeBase64Unescape(parts[1], &chat_id) || chat_id.empty()) {
    return Unauthenticated("malformed chat token");
  }
  std::string signed_part = absl::StrCat(parts[0], ".", parts[1], ".", parts[2]);
  std::string mac = Mac(signed_part);
  if (mac.size() != parts[3].size() ||
      CRYPTO_memcmp(mac.data(), parts[3].data(), mac.size()) != 0) {
    return Unauthenticated("chat token signature does not match");
  }
  if (absl::FromUnixSeconds(expires) <= now) return Unauthenticated("chat token expired");
  return Caller{.name = "chat token",
                .scopes = {Scope::kRead, Scope::kWrite},
                .chat_id = std::move(chat_id),
                .expires = absl::FromUnixSeconds(expires)};
}

absl::Status Auth::Check(const Caller& caller, Scope scope, std::string_view chat_id) {
  if (caller.anyone) return absl::OkStatus();
  if (!caller.chat_id.empty()) {
    if (chat_id.empty() || chat_id != caller.chat_id) {
      return absl::PermissionDeniedError(
          chat_id.empty()
              ? "a chat token reaches only its chat's Append, Read, Get, CancelRun and Close"
              : "this chat token is for another chat");
    }
  }
  if (caller.scopes.count(scope) == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(caller.name, " lacks the scope ", Abs(ScopeName(scope))));
  }
  return absl::OkStatus();
}

}  // namespace baton::orchestrator
