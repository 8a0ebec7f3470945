// Security through the whole stack (DESIGN §8, docs/security.md): bearer tokens with scopes on
// both services, chat tokens that reach one chat, TLS and mTLS with certificates made here, no
// secret in any log, error or metric, and the limits. Real processes over loopback.
#include <openssl/sha.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "tests/integration/stack.h"

namespace baton::testing {
namespace {

namespace v1 = ::baton::v1;
using ::testing::HasSubstr;
using ::testing::Not;

// Distinct, greppable secrets.
constexpr char kWorkerToken[] = "wt-7f3a9c1e-worker-secret";
constexpr char kAppToken[] = "at-51d2b8e0-app-secret";
constexpr char kReaderToken[] = "rt-c4e6a2f9-reader-secret";
constexpr char kChatKey[] = "ck-0b9d7e5a3c1f-chat-token-signing-key";
constexpr char kApiKey[] = "sk-ant-93be0c71d4-provider-key";
constexpr char kWrongToken[] = "xx-2d8f4b6a-wrong-secret";
constexpr char kCreatorToken[] = "ct-8e1f3a5c-creator-secret";
constexpr char kCreateWriteToken[] = "cw-6b2d9f0e-create-write-secret";

Json Reply(const std::string& text) { return Json{{"reply", {{"text", text}}}}; }

Json Script(std::vector<Json> responses) { return Json{{"responses", Json(responses)}}; }

std::string Sha256Hex(const std::string& token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

std::string Scratch(const std::string& name) {
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(::testing::TempDir(), "security-", getpid(), "-", test->name(), "-", name);
}

// The auth file: a worker token, an app token with every Sessions scope, a read-only token, a
// token that may only create chats, and one that may create and write but not read.
std::string WriteAuthFile() {
  Json config = {
      {"tokens",
       {{{"name", "fleet"}, {"sha256", Sha256Hex(kWorkerToken)}, {"scopes", {"worker"}}},
        {{"name", "app"},
         {"sha256", Sha256Hex(kAppToken)},
         {"scopes", {"sessions:create", "sessions:write", "sessions:read"}}},
        {{"name", "dashboard"}, {"sha256", Sha256Hex(kReaderToken)}, {"scopes", {"sessions:read"}}},
        {{"name", "signup"}, {"sha256", Sha256Hex(kCreatorToken)}, {"scopes", {"sessions:create"}}},
        {{"name", "writer"},
         {"sha256", Sha256Hex(kCreateWriteToken)},
         {"scopes", {"sessions:create", "sessions:write"}}}}},
      {"chat_token_key", kChatKey}};
  std::string path = Scratch("auth.json");
  std::ofstream(path) << config.dump();
  return path;
}

StackOptions AuthStack(std::vector<Json> responses) {
  return StackOptions{.script = Script(std::move(responses)),
                      .orchestrator_flags = {absl::StrCat("--auth=", WriteAuthFile())},
                      .env = {absl::StrCat("BATON_TOKEN=", kWorkerToken)},
                      .client = {.token = kAppToken}};
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

grpc::ClientContext* Deadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kLimit);
  return &context;
}

grpc::Status CreateWith(v1::Sessions::Stub& stub, const std::string& chat_id,
                        v1::CreateSessionResponse* response = nullptr) {
  v1::CreateSessionRequest request;
  request.set_chat_id(chat_id);
  request.set_agent("chat");
  request.set_trigger(v1::TRIGGER_PRELOAD);
  v1::CreateSessionResponse ignored;
  grpc::ClientContext context;
  return stub.CreateSession(Deadline(context), request, response ? response : &ignored);
}

grpc::Status AppendWith(v1::Sessions::Stub& stub, const std::string& chat_id, const Json& body) {
  v1::AppendRequest request;
  request.set_chat_id(chat_id);
  request.set_body_json(body.dump());
  v1::AppendResponse response;
  grpc::ClientContext context;
  return stub.Append(Deadline(context), request, &response);
}

grpc::Status GetWith(v1::Sessions::Stub& stub, const std::string& chat_id) {
  v1::GetRequest request;
  request.set_chat_id(chat_id);
  v1::Session session;
  grpc::ClientContext context;
  return stub.Get(Deadline(context), request, &session);
}

// The status a Connect stream to the gateway ends with, after a Hello.
grpc::Status ConnectWith(v1::WorkerGateway::Stub& stub) {
  grpc::ClientContext context;
  auto stream = stub.Connect(Deadline(context));
  v1::WorkerFrame hello;
  hello.mutable_hello()->set_worker_id("intruder");
  hello.mutable_hello()->set_protocol_version(v1::PROTOCOL_VERSION_1);
  stream->Write(hello);
  stream->WritesDone();
  v1::GatewayFrame frame;
  while (stream->Read(&frame)) {
  }
  return stream->Finish();
}

Json Message(const std::string& id, const std::string& text) {
  return Json{{"kind", "message"}, {"payload", {{"message", UserMessage(id, text)}}}};
}

TEST(SecurityTest, EveryCallNeedsATokenWithTheScopeAndRefusalsTouchNothing) {
  auto stack = Stack::Start(AuthStack({Reply("Authenticated answer.")}));
  ASSERT_NE(stack, nullptr);
  // The worker got in with its token: the chat answers.
  stack->Create("s1", "chat", "submit-message", Json{{"message", UserMessage("u1", "hi")}});
  EXPECT_THAT(Text(stack->ReadTurns("s1", 0)), HasSubstr("Authenticated answer."));
  v1::Session before = stack->Get("s1");

  auto anonymous = v1::Sessions::NewStub(stack->Channel({}));
  auto stranger = v1::Sessions::NewStub(stack->Channel({.token = kWrongToken}));
  auto reader = v1::Sessions::NewStub(stack->Channel({.token = kReaderToken}));
  auto worker = v1::Sessions::NewStub(stack->Channel({.token = kWorkerToken}));

  grpc::Status s = CreateWith(*anonymous, "s2");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("no bearer token"));
  s = CreateWith(*stranger, "s2");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("unknown bearer token"));
  EXPECT_THAT(s.error_message(), Not(HasSubstr(kWrongToken)));
  s = CreateWith(*reader, "s2");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("dashboard lacks the scope sessions:create"));
  s = CreateWith(*worker, "s2");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // None of them made the chat.
  EXPECT_EQ(GetWith(stack->sessions(), "s2").error_code(), grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(AppendWith(*anonymous, "s1", Message("u2", "x")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(AppendWith(*reader, "s1", Message("u2", "x")).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(GetWith(*anonymous, "s1").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(GetWith(*reader, "s1").ok());  // reading is the reader's scope
  v1::Session after = stack->Get("s1");
  EXPECT_EQ(after.in_seq(), before.in_seq());
  EXPECT_EQ(after.out_seq(), before.out_seq());

  // The gateway wants the worker scope: an app token cannot pose as a worker.
  auto app_gateway = v1::WorkerGateway::NewStub(stack->Channel({.token = kAppToken}));
  auto anonymous_gateway = v1::WorkerGateway::NewStub(stack->Channel({}));
  EXPECT_EQ(ConnectWith(*app_gateway).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ConnectWith(*anonymous_gateway).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(SecurityTest, AChatTokenReachesItsOneChat) {
  auto stack = Stack::Start(AuthStack({Reply("For the browser.")}));
  ASSERT_NE(stack, nullptr);
  v1::CreateSessionResponse created;
  ASSERT_TRUE(CreateWith(stack->sessions(), "b1", &created).ok());
  ASSERT_THAT(created.chat_token(), ::testing::StartsWith("bct1."));
  EXPECT_GT(created.chat_token_expires_unix_ms(), 0);
  ASSERT_TRUE(CreateWith(stack->sessions(), "b2").ok());

  auto browser = v1::Sessions::NewStub(stack->Channel({.token = created.chat_token()}));
  // Its own chat: append a message, read the answer, get the session.
  ASSERT_TRUE(AppendWith(*browser, "b1", Message("u1", "hello")).ok());
  {
    v1::ReadRequest request;
    request.set_chat_id("b1");
    request.set_follow(true);
    grpc::ClientContext context;
    auto reader = browser->Read(Deadline(context), request);
    v1::ReadResponse response;
    std::string text;
    while (reader->Read(&response)) {
      const v1::OutRecord& r = response.record();
      if (r.has_control() && r.control().subtype() == "turn-complete") break;
      Json chunk = Json::parse(r.chunk_json(), nullptr, false);
      if (chunk.value("type", "") == "text-delta") text += chunk.value("delta", "");
    }
    context.TryCancel();
    EXPECT_EQ(text, "For the browser.");
  }
  EXPECT_TRUE(GetWith(*browser, "b1").ok());

  // Another chat, a new chat, every run, the warm server's signal: refused.
  grpc::Status s = AppendWith(*browser, "b2", Message("u9", "not mine"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("another chat"));
  EXPECT_EQ(GetWith(*browser, "b2").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  {
    v1::ReadRequest request;
    request.set_chat_id("b2");
    grpc::ClientContext context;
    auto reader = browser->Read(Deadline(context), request);
    v1::ReadResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    v1::CancelRunRequest request;
    request.set_chat_id("b2");
    v1::Run run;
    grpc::ClientContext context;
    EXPECT_EQ(browser->CancelRun(Deadline(context), request, &run).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    v1::CloseRequest request;
    request.set_chat_id("b2");
    v1::Session session;
    grpc::ClientContext context;
    EXPECT_EQ(browser->Close(Deadline(context), request, &session).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(stack->Get("b2").state(), v1::SESSION_STATE_LIVE);
  EXPECT_EQ(CreateWith(*browser, "b3").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  {
    v1::ListRunsRequest request;
    request.set_chat_id("b1");
    v1::ListRunsResponse runs;
    grpc::ClientContext context;
    EXPECT_EQ(browser->ListRuns(Deadline(context), request, &runs).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  s = AppendWith(*browser, "b1", Json{{"kind", "handover-skip"}});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("messages and stops only"));
  s = AppendWith(*browser, "b1",
                 Json{{"kind", "handover"},
                      {"messageId", "M"},
                      {"isFinal", true},
                      {"partialAssistantMessage", Json::array()}});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stack->Get("b2").in_seq(), 0);

  // A token whose signature was tampered with names nobody. A middle character: the last one
  // of a 32-byte MAC in base64 carries two padding bits.
  std::string tampered = created.chat_token();
  char& flipped = tampered[tampered.rfind('.') + 10];
  flipped = flipped == 'A' ? 'B' : 'A';
  auto forger = v1::Sessions::NewStub(stack->Channel({.token = tampered}));
  EXPECT_EQ(GetWith(*forger, "b1").error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Close is the browser's to call.
  v1::CloseRequest close;
  close.set_chat_id("b1");
  v1::Session closed;
  grpc::ClientContext context;
  EXPECT_TRUE(browser->Close(Deadline(context), close, &closed).ok());
}

// CreateSession of a chat that exists hands out a fresh chat token, which reads and writes the
// chat. Only a caller that may already do both gets one: a token that may only create chats
// makes new ones (and gets their chat tokens), but reaches no chat that exists, its own
// included; renewing is for the app, which holds sessions:read and sessions:write.
TEST(SecurityTest, RenewingAChatTokenNeedsTheScopesItGrants) {
  auto stack = Stack::Start(AuthStack({Reply("unused")}));
  ASSERT_NE(stack, nullptr);
  auto signup = v1::Sessions::NewStub(stack->Channel({.token = kCreatorToken}));
  auto writer = v1::Sessions::NewStub(stack->Channel({.token = kCreateWriteToken}));

  // A new chat: created, with its chat token.
  v1::CreateSessionResponse created;
  ASSERT_TRUE(CreateWith(*signup, "r1", &created).ok());
  EXPECT_TRUE(created.created());
  EXPECT_FALSE(created.chat_token().empty());

  // An existing chat (the app's, or its own): refused, no token, nothing about the chat.
  ASSERT_TRUE(CreateWith(stack->sessions(), "r2").ok());
  for (const char* chat : {"r1", "r2"}) {
    v1::CreateSessionResponse response;
    grpc::Status s = CreateWith(*signup, chat, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << chat;
    EXPECT_THAT(s.error_message(),
                HasSubstr("signup may create chats but not renew the chat token of one that "
                          "exists: CreateSession of an existing chat needs sessions:read and "
                          "sessions:write as well"));
    EXPECT_TRUE(response.chat_token().empty());
    EXPECT_FALSE(response.has_session());
  }
  // Writing is not reading: a chat token would let it read.
  grpc::Status s = CreateWith(*writer, "r2");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("writer may create chats but not renew"));

  // The app renews: the same chat, a fresh token that works.
  v1::CreateSessionResponse renewed;
  ASSERT_TRUE(CreateWith(stack->sessions(), "r1", &renewed).ok());
  EXPECT_FALSE(renewed.created());
  ASSERT_FALSE(renewed.chat_token().empty());
  EXPECT_GE(renewed.chat_token_expires_unix_ms(), created.chat_token_expires_unix_ms());
  auto browser = v1::Sessions::NewStub(stack->Channel({.token = renewed.chat_token()}));
  EXPECT_TRUE(GetWith(*browser, "r1").ok());
  EXPECT_EQ(stack->Runs("r1").size(), 1u);  // renewing booted nothing
}

// One credential per call: two authorization headers are refused, whichever comes first, on
// both services, rather than one of them being picked by header order.
TEST(SecurityTest, TwoAuthorizationHeadersAreUnauthenticated) {
  auto stack = Stack::Start(AuthStack({Reply("unused")}));
  ASSERT_NE(stack, nullptr);
  stack->Create("t1", "chat", "preload");
  auto anonymous = v1::Sessions::NewStub(stack->Channel({}));
  const std::string app = absl::StrCat("Bearer ", kAppToken);
  const std::string reader = absl::StrCat("Bearer ", kReaderToken);
  for (const auto& [first, second] : std::vector<std::pair<std::string, std::string>>{
           {app, app}, {app, reader}, {reader, app}, {app, "junk"}}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", first);
    context.AddMetadata("authorization", second);
    v1::AppendRequest request;
    request.set_chat_id("t1");
    request.set_body_json(R"({"kind":"stop"})");
    v1::AppendResponse response;
    grpc::Status status = anonymous->Append(Deadline(context), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(status.error_message(),
              "more than one authorization header; send exactly one \"Bearer <token>\"");
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", app);
    context.AddMetadata("authorization", app);
    v1::ReadRequest request;
    request.set_chat_id("t1");
    auto reader_stream = anonymous->Read(Deadline(context), request);
    v1::ReadResponse response;
    EXPECT_FALSE(reader_stream->Read(&response));
    EXPECT_EQ(reader_stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    auto gateway = v1::WorkerGateway::NewStub(stack->Channel({.token = kWorkerToken}));
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kWorkerToken));
    v1::GetServerInfoRequest request;
    v1::ServerInfo info;
    grpc::Status status = gateway->GetServerInfo(Deadline(context), request, &info);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(status.error_message(), HasSubstr("more than one authorization header"));
  }
  EXPECT_EQ(stack->Get("t1").in_seq(), 0);  // none of the appends got in
  // One header, as always, is fine.
  grpc::ClientContext context;
  context.AddMetadata("authorization", app);
  v1::GetRequest request;
  request.set_chat_id("t1");
  v1::Session session;
  EXPECT_TRUE(anonymous->Get(Deadline(context), request, &session).ok());
}

// Certificates for a test: a CA, a server certificate for 127.0.0.1 and a client certificate it
// signed, and a self-signed client certificate it did not. Made with the openssl command.
struct Certificates {
  std::string dir;
  std::string Path(const std::string& name) const { return dir + "/" + name; }
};

bool Run(const std::string& command) {
  int rc = std::system((command + " >/dev/null 2>&1").c_str());
  EXPECT_EQ(rc, 0) << command;
  return rc == 0;
}

Certificates MakeCertificates() {
  Certificates c{Scratch("certs")};
  Run("rm -rf " + c.dir + " && mkdir -p " + c.dir);
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::ofstream(c.Path("server.ext"))
      << "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
  std::ofstream(c.Path("client.ext")) << "extendedKeyUsage=clientAuth\n";
  Run(absl::StrCat("openssl req -x509 ", key, " -days 2 -subj /CN=baton-test-ca -keyout ",
                   c.Path("ca.key"), " -out ", c.Path("ca.pem")));
  for (const char* who : {"server", "client"}) {
    Run(absl::StrCat("openssl req ", key, " -subj /CN=", who, " -keyout ", c.Path(who), ".key",
                     " -out ", c.Path(who), ".csr"));
    Run(absl::StrCat("openssl x509 -req -days 2 -in ", c.Path(who), ".csr -CA ", c.Path("ca.pem"),
                     " -CAkey ", c.Path("ca.key"), " -CAcreateserial -extfile ", c.Path(who),
                     ".ext -out ", c.Path(who), ".pem"));
  }
  Run(absl::StrCat("openssl req -x509 ", key, " -days 2 -subj /CN=rogue -keyout ",
                   c.Path("rogue.key"), " -out ", c.Path("rogue.pem")));
  return c;
}

TEST(SecurityTest, TlsCarriesWorkersAndClientsAndPlaintextIsRefused) {
  Certificates certs = MakeCertificates();
  auto stack =
      Stack::Start({.script = Script({Reply("Over TLS.")}),
                    .orchestrator_flags = {absl::StrCat("--tls_cert=", certs.Path("server.pem")),
                                           absl::StrCat("--tls_key=", certs.Path("server.key"))},
                    .worker_flags = {absl::StrCat("--tls_ca=", certs.Path("ca.pem"))},
                    .client = {.tls = true, .root_pem = ReadFile(certs.Path("ca.pem"))}});
  ASSERT_NE(stack, nullptr);
  stack->Create("t1", "chat", "submit-message", Json{{"message", UserMessage("u1", "hi")}});
  EXPECT_THAT(Text(stack->ReadTurns("t1", 0)), HasSubstr("Over TLS."));

  auto plaintext = v1::Sessions::NewStub(stack->Channel({}));
  EXPECT_EQ(GetWith(*plaintext, "t1").error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client that does not trust the orchestrator's CA (the system roots) refuses it.
  auto untrusting = v1::Sessions::NewStub(stack->Channel({.tls = true}));
  EXPECT_EQ(GetWith(*untrusting, "t1").error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(SecurityTest, MutualTlsAdmitsOnlyClientsWithACertificateFromItsCa) {
  Certificates certs = MakeCertificates();
  std::string ca = ReadFile(certs.Path("ca.pem"));
  auto stack =
      Stack::Start({.script = Script({Reply("Over mTLS.")}),
                    .orchestrator_flags = {absl::StrCat("--tls_cert=", certs.Path("server.pem")),
                                           absl::StrCat("--tls_key=", certs.Path("server.key")),
                                           absl::StrCat("--tls_client_ca=", certs.Path("ca.pem"))},
                    .worker_flags = {absl::StrCat("--tls_ca=", certs.Path("ca.pem")),
                                     absl::StrCat("--tls_cert=", certs.Path("client.pem")),
                                     absl::StrCat("--tls_key=", certs.Path("client.key"))},
                    .client = {.tls = true,
                               .root_pem = ca,
                               .cert_pem = ReadFile(certs.Path("client.pem")),
                               .key_pem = ReadFile(certs.Path("client.key"))}});
  ASSERT_NE(stack, nullptr);
  stack->Create("m1", "chat", "submit-message", Json{{"message", UserMessage("u1", "hi")}});
  EXPECT_THAT(Text(stack->ReadTurns("m1", 0)), HasSubstr("Over mTLS."));

  auto no_certificate = v1::Sessions::NewStub(stack->Channel({.tls = true, .root_pem = ca}));
  EXPECT_EQ(GetWith(*no_certificate, "m1").error_code(), grpc::StatusCode::UNAVAILABLE);
  auto rogue =
      v1::Sessions::NewStub(stack->Channel({.tls = true,
                                            .root_pem = ca,
                                            .cert_pem = ReadFile(certs.Path("rogue.pem")),
                                            .key_pem = ReadFile(certs.Path("rogue.key"))}));
  EXPECT_EQ(GetWith(*rogue, "m1").error_code(), grpc::StatusCode::UNAVAILABLE);
}

// Tokens, the chat-token key and the provider's API key appear in no log line (at debug level),
// no error a client gets, and no metric, after a chat and a series of refused calls.
TEST(SecurityTest, SecretsNeverReachLogsErrorsOrMetrics) {
  StackOptions options = AuthStack({Reply("Secret-free answer.")});
  options.orchestrator_flags.push_back("--admin=127.0.0.1:0");
  options.worker_flags = {"--api_key_env=BATON_TEST_API_KEY", "--admin=127.0.0.1:0"};
  options.env.push_back(absl::StrCat("BATON_TEST_API_KEY=", kApiKey));
  options.env.push_back("BATON_LOG_LEVEL=debug");
  auto stack = Stack::Start(options);
  ASSERT_NE(stack, nullptr);
  v1::CreateSessionResponse created;
  ASSERT_TRUE(CreateWith(stack->sessions(), "x1", &created).ok());
  ASSERT_FALSE(created.chat_token().empty());
  stack->Append("x1", Message("u1", "hi"));
  EXPECT_THAT(Text(stack->ReadTurns("x1", 0)), HasSubstr("Secret-free answer."));
  // The key reached the provider: it was used, so a leak would have had the chance.
  ASSERT_FALSE(stack->llm().requests().empty());
  EXPECT_EQ(stack->llm().requests().back().Header("x-api-key"), kApiKey);

  std::vector<std::string> errors;
  auto collect = [&](const grpc::Status& s) { errors.push_back(s.error_message()); };
  auto stranger = v1::Sessions::NewStub(stack->Channel({.token = kWrongToken}));
  auto reader = v1::Sessions::NewStub(stack->Channel({.token = kReaderToken}));
  auto browser = v1::Sessions::NewStub(stack->Channel({.token = created.chat_token()}));
  std::string forged = created.chat_token() + "x";
  auto forger = v1::Sessions::NewStub(stack->Channel({.token = forged}));
  collect(CreateWith(*stranger, "x2"));
  collect(AppendWith(*reader, "x1", Message("u2", "x")));
  collect(AppendWith(*browser, "other", Message("u2", "x")));
  collect(GetWith(*forger, "x1"));
  auto gateway = v1::WorkerGateway::NewStub(stack->Channel({.token = kAppToken}));
  collect(ConnectWith(*gateway));
  for (const std::string& e : errors) EXPECT_FALSE(e.empty());

  long status = 0;
  std::vector<std::pair<std::string, std::string>> places = {
      {"orchestrator log", ReadFile(stack->Path("orchestrator.log"))},
      {"worker log", ReadFile(stack->Path("worker-0.log"))},
      {"orchestrator metrics", HttpGet("http://" + stack->admin_address() + "/metrics", &status)},
      {"worker metrics",
       HttpGet("http://" + stack->worker_endpoint(0, "admin") + "/metrics", &status)},
  };
  for (const std::string& e : errors) places.push_back({"error", e});
  for (const auto& [where, text] : places) {
    EXPECT_FALSE(text.empty()) << where;
    for (const std::string& secret :
         {std::string(kWorkerToken), std::string(kAppToken), std::string(kReaderToken),
          std::string(kChatKey), std::string(kApiKey), std::string(kWrongToken),
          created.chat_token(), forged}) {
      EXPECT_THAT(text, Not(HasSubstr(secret))) << where << " holds a secret";
    }
  }
}

TEST(SecurityTest, LimitsRefuseWithResourceExhaustedAndKeepWhatIsStored) {
  auto stack = Stack::Start({.script = Script({Reply("one"), Reply("two")}),
                             .capacity = 5,
                             .orchestrator_flags = {"--max_in_records=2", "--max_reads_per_chat=1",
                                                    "--max_runs_per_worker=1"}});
  ASSERT_NE(stack, nullptr);
  // Read streams per chat: a second follower is refused while the first is open.
  stack->Create("l1", "chat", "preload");
  stack->SendText("l1", "u1", "first");
  {
    v1::ReadRequest request;
    request.set_chat_id("l1");
    request.set_follow(true);
    grpc::ClientContext first_context;
    auto first = stack->sessions().Read(Deadline(first_context), request);
    v1::ReadResponse response;
    ASSERT_TRUE(first->Read(&response));  // the first stream is open on the server
    grpc::ClientContext second_context;
    auto second = stack->sessions().Read(Deadline(second_context), request);
    while (second->Read(&response)) {
    }
    grpc::Status s = second->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(s.error_message(), HasSubstr("Read streams open"));
    first_context.TryCancel();
  }

  // Records per chat: the third append is refused, and the chat can still be closed.
  stack->SendText("l1", "u2", "second");
  grpc::Status s = AppendWith(stack->sessions(), "l1", Message("u3", "third"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("holds 2 .in records"));
  EXPECT_EQ(stack->Get("l1").in_seq(), 2);
  v1::CloseRequest close_l1;
  close_l1.set_chat_id("l1");
  close_l1.set_reason(std::string(2000, 'r'));
  v1::Session ignored;
  grpc::ClientContext too_long;
  EXPECT_EQ(stack->sessions().Close(Deadline(too_long), close_l1, &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // Runs per worker: the worker announced 5, the orchestrator assigns it 1 at a time.
  stack->Create("l2", "chat", "preload");
  ASSERT_TRUE(stack->WaitForRunState("l1", v1::RUN_STATE_RUNNING));
  EXPECT_EQ(stack->Runs("l2").back().state(), v1::RUN_STATE_QUEUED);
  EXPECT_EQ(stack->Runs("l2").back().reason(), "no-capacity");
  EXPECT_EQ(stack->Get("l2").queued_reason(), "no-capacity");
  v1::CloseRequest close;
  close.set_chat_id("l1");
  v1::Session closed;
  grpc::ClientContext context;
  ASSERT_TRUE(stack->sessions().Close(Deadline(context), close, &closed).ok());
  // A Close over the limit is stored once, however often it is asked for.
  grpc::ClientContext again;
  ASSERT_TRUE(stack->sessions().Close(Deadline(again), close, &closed).ok());
  EXPECT_EQ(closed.in_seq(), 3);
  EXPECT_TRUE(stack->WaitForRunState("l2", v1::RUN_STATE_RUNNING));
  EXPECT_EQ(stack->Get("l1").state(), v1::SESSION_STATE_CLOSED);
}

}  // namespace
}  // namespace baton::testing
