// Auth: service tokens by SHA-256 with scopes, chat tokens signed for one chat, and the errors
// each refusal gets (never echoing a token).
#include "tools/orchestrator/auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton::orchestrator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Sha256Hex(const std::string& token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

Auth MakeAuth(Json extra = Json::object()) {
  Json config = {
      {"tokens",
       {{{"name", "fleet"}, {"sha256", Sha256Hex("worker-secret")}, {"scopes", {"worker"}}},
        {{"name", "app"},
         {"sha256", Sha256Hex("app-secret")},
         {"scopes", {"sessions:create", "sessions:write", "sessions:read"}}},
        {{"name", "dashboard"},
         {"sha256", Sha256Hex("read-secret")},
         {"scopes", {"sessions:read"}}}}},
      {"chat_token_key", "0123456789abcdef0123456789abcdef"},
      {"chat_token_ttl_s", 600}};
  config.update(extra);
  absl::StatusOr<Auth> auth = Auth::FromJson(config);
  EXPECT_TRUE(auth.ok()) << auth.status();
  return auth.ok() ? *std::move(auth) : Auth();
}

TEST(Auth, OffLetsEveryCallThrough) {
  Auth off;
  absl::StatusOr<Caller> caller = off.Identify("", kNow);
  ASSERT_TRUE(caller.ok());
  EXPECT_TRUE(Auth::Check(*caller, Scope::kWorker, "").ok());
  EXPECT_EQ(off.IssueChatToken("c1", kNow), "");
}

TEST(Auth, ServiceTokensAreKnownByTheirHashAndCarryTheirScopes) {
  Auth auth = MakeAuth();
  absl::StatusOr<Caller> app = auth.Identify("Bearer app-secret", kNow);
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_EQ(app->name, "app");
  EXPECT_TRUE(Auth::Check(*app, Scope::kCreate, "").ok());
  EXPECT_TRUE(Auth::Check(*app, Scope::kWrite, "any-chat").ok());
  absl::Status denied = Auth::Check(*app, Scope::kWorker, "");
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), HasSubstr("app lacks the scope worker"));

  absl::StatusOr<Caller> reader = auth.Identify("Bearer read-secret", kNow);
  ASSERT_TRUE(reader.ok());
  EXPECT_TRUE(Auth::Check(*reader, Scope::kRead, "c1").ok());
  EXPECT_EQ(Auth::Check(*reader, Scope::kWrite, "c1").code(), absl::StatusCode::kPermissionDenied);
}

TEST(Auth, MissingUnknownAndMalformedTokensAreUnauthenticatedWithoutEchoingThem) {
  Auth auth = MakeAuth();
  for (const char* header : {"", "app-secret", "Basic app-secret", "Bearer nope-secret-42",
                             "Bearer ", "Bearer app-secret "}) {
    absl::StatusOr<Caller> caller = auth.Identify(header, kNow);
    ASSERT_FALSE(caller.ok()) << header;
    EXPECT_EQ(caller.status().code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_THAT(caller.status().message(), Not(HasSubstr("secret"))) << header;
  }
}

TEST(Auth, AChatTokenReachesItsChatOnlyUntilItExpires) {
  Auth auth = MakeAuth();
  std::string token = auth.IssueChatToken("chat/with.odd chars", kNow);
  ASSERT_THAT(token, testing::StartsWith("bct1."));
  absl::StatusOr<Caller> caller = auth.Identify(absl::StrCat("Bearer ", token), kNow);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->chat_id, "chat/with.odd chars");
  EXPECT_TRUE(Auth::Check(*caller, Scope::kWrite, "chat/with.odd chars").ok());
  EXPECT_TRUE(Auth::Check(*caller, Scope::kRead, "chat/with.odd chars").ok());
  absl::Status other = Auth::Check(*caller, Scope::kRead, "another");
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.message(), HasSubstr("another chat"));
  // Calls about no one chat (CreateSession, ListRuns, the gateway) are beyond any chat token.
  EXPECT_EQ(Auth::Check(*caller, Scope::kCreate, "").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Auth::Check(*caller, Scope::kWorker, "").code(), absl::StatusCode::kPermissionDenied);

  absl::StatusOr<Caller> late =
      auth.Identify(absl::StrCat("Bearer ", token), kNow + absl::Seconds(600));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(late.status().message(), HasSubstr("expired"));
}

TEST(Auth, ATamperedOrForeignChatTokenIsRefused) {
  Auth auth = MakeAuth();
  std::string token = auth.IssueChatToken("c1", kNow);
  // Another chat's id spliced into a valid token: the signature no longer matches.
  std::string forged = token;
  std::string other;
  absl::WebSafeBase64Escape("c2", &other);
  forged.replace(5, forged.find('.', 5) - 5, other);
  EXPECT_EQ(auth.Identify(absl::StrCat("Bearer ", forged), kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A later expiry written in: refused too.
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  parts[2] = "9999999999";
  EXPECT_EQ(auth.Identify(absl::StrCat("Bearer ", absl::StrJoin(parts, ".")), kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
  // Signed with another key.
  Auth other_key = MakeAuth({{"chat_token_key", "another key that is long enough, 32+"}});
  EXPECT_EQ(other_key.Identify(absl::StrCat("Bearer ", token), kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
  for (const char* junk : {"bct1.", "bct1.a.b", "bct1.YzE.notanumber.mac", "bct1.!!.1.x"}) {
    EXPECT_EQ(auth.Identify(absl::StrCat("Bearer ", junk), kNow).status().code(),
              absl::StatusCode::kUnauthenticated)
        << junk;
  }
}

TEST(Auth, NoChatTokenNamesNoChat) {
  Auth auth = MakeAuth();
  EXPECT_EQ(auth.IssueChatToken("", kNow), "");
  // Signed with the right key over an empty chat id: still refused, as it would otherwise pass
  // for a token of no one chat, which is what service tokens are.
  std::string signed_part = absl::StrCat("bct1..", absl::ToUnixSeconds(kNow) + 600);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const std::string key = "0123456789abcdef0123456789abcdef";
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
       &length);
  std::string mac_text;
  absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<char*>(mac), length), &mac_text);
  absl::StatusOr<Caller> caller =
      auth.Identify(absl::StrCat("Bearer ", signed_part, ".", mac_text), kNow);
  EXPECT_EQ(caller.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(caller.status().message(), HasSubstr("malformed"));
}

TEST(Auth, ChatTokensNeedAKey) {
  Json config = {{"tokens", Json::array()}};
  absl::StatusOr<Auth> auth = Auth::FromJson(config);
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(auth->IssueChatToken("c1", kNow), "");
  std::string foreign = MakeAuth().IssueChatToken("c1", kNow);
  EXPECT_EQ(auth->Identify(absl::StrCat("Bearer ", foreign), kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(Auth, ABadConfigSaysWhatIsWrong) {
  struct Case {
    Json config;
    const char* says;
  } cases[] = {
      {Json::array(), "must be an object"},
      {{{"tokens", {{{"name", "x"}}}}}, "each token needs"},
      {{{"tokens", {{{"name", "x"}, {"sha256", "abc"}, {"scopes", Json::array()}}}}},
       "64 hex digits"},
      {{{"tokens",
         {{{"name", "x"}, {"sha256", std::string(64, 'a')}, {"scopes", {"sessions:admin"}}}}}},
       "unknown scope \"sessions:admin\""},
      {{{"tokens",
         {{{"name", "x"}, {"sha256", std::string(64, 'a')}, {"scopes", Json::array()}},
          {{"name", "x"}, {"sha256", std::string(64, 'b')}, {"scopes", Json::array()}}}}},
       "unique"},
      {{{"chat_token_key", "short"}}, "at least 32 bytes"},
      {{{"chat_token_ttl_s", -1}}, "positive"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Auth> auth = Auth::FromJson(c.config);
    ASSERT_FALSE(auth.ok()) << c.config.dump();
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(auth.status().message(), HasSubstr(c.says)) << c.config.dump();
  }
  EXPECT_EQ(Auth::FromFile("/nonexistent/auth.json").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace baton::orchestrator
