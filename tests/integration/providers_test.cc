// The providers over real HTTP on loopback: the test vectors of reference/llm-wire.md §5 in both
// wire formats, served byte for byte by fake-llm, streamed by HttpClient on an Asio loop,
// decoded, and run through the step loop. Each test asserts the UI chunks, the final UI message
// and what the worker sent.
#include "runtime/model/providers.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "asio/co_spawn.hpp"
#include "asio/io_context.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/exec/waiter.h"
#include "runtime/model/http_client.h"
#include "runtime/step/step_loop.h"
#include "tools/fake-llm/fake_llm.h"

namespace baton {
namespace {

using fakellm::FakeLlm;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kLimit = std::chrono::seconds(20);

Tool Weather() {
  return Tool{"get_weather", "Current weather",
              Json{{"type", "object"},
                   {"properties", {{"city", {{"type", "string"}}}}},
                   {"required", {"city"}}},
              [](const Json& input, const ToolContext&) -> absl::StatusOr<Json> {
                if (input.value("city", "") != "Oslo") return absl::NotFoundError("City not found");
                return Json{{"tempC", 4}};
              }};
}

Tool NoArgs(const char* name, Json output) {
  return Tool{name, "A tool without arguments", Json{{"type", "object"}},
              [output](const Json&, const ToolContext&) -> absl::StatusOr<Json> { return output; }};
}

// The vectors' notation: one event per line, "A {json}" or "O {json}" or "O [DONE]".
Json Events(std::string_view lines) {
  Json events = Json::array();
  for (absl::string_view line : absl::StrSplit(absl::string_view(lines.data(), lines.size()), '\n',
                                               absl::SkipWhitespace())) {
    line.remove_prefix(line.find_first_not_of(' '));
    std::string data(line.substr(2));
    events.push_back(data == "[DONE]" ? Json("[DONE]") : Json::parse(data));
  }
  return events;
}

Json Reply(std::string_view lines) { return Json{{"events", Events(lines)}}; }

constexpr std::string_view kV1 = R"(
A {"type":"message_start","message":{"id":"msg_p1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
A {"type":"ping"}
A {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}}
A {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there."}}
A {"type":"content_block_stop","index":0}
A {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}
A {"type":"message_stop"}
)";

constexpr std::string_view kV3Step1 = R"(
A {"type":"message_start","message":{"id":"msg_t1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":40,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
A {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}
A {"type":"content_block_stop","index":0}
A {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}
A {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}
A {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Os"}}
A {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"lo\"}"}}
A {"type":"content_block_stop","index":1}
A {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}
A {"type":"message_stop"}
)";

constexpr std::string_view kOpenAiText = R"(
O {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}
O {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}
O {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}],"usage":null}
O {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}
O {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}
O [DONE]
)";

// A self-signed certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1, EC P-256) and its key,
// made with OpenSSL and written as PEM files into a fresh directory, removed on destruction.
class TestCertificate {
 public:
  TestCertificate() {
    std::string pattern = (std::filesystem::temp_directory_path() / "baton-tls-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) return;
    dir_ = pattern;
    cert_file_ = dir_ + "/cert.pem";
    key_file_ = dir_ + "/key.pem";
    ok_ = Make();
  }
  ~TestCertificate() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  TestCertificate(const TestCertificate&) = delete;
  TestCertificate& operator=(const TestCertificate&) = delete;

  bool ok() const { return ok_; }
  const std::string& cert_file() const { return cert_file_; }
  const std::string& key_file() const { return key_file_; }

 private:
  bool Make() const {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    bool ok =
        key != nullptr && cert != nullptr && Fill(cert, key) &&
        Write(key_file_,
              [&](FILE* f) {
                return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
              }) &&
        Write(cert_file_, [&](FILE* f) { return PEM_write_X509(f, cert) == 1; });
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
  }

  static bool Fill(X509* cert, EVP_PKEY* key) {
    if (X509_set_version(cert, 2) != 1) return false;  // v3
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    if (X509_set_pubkey(cert, key) != 1) return false;
    X509_NAME* name = X509_get_subject_name(cert);
    const auto* cn = reinterpret_cast<const unsigned char*>("127.0.0.1");
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, cn, -1, -1, 0) != 1) return false;
    if (X509_set_issuer_name(cert, name) != 1) return false;
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    const std::pair<int, const char*> extensions[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_subject_key_identifier, "hash"},
        {NID_subject_alt_name, "IP:127.0.0.1"},
    };
    for (const auto& [nid, value] : extensions) {
      X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
      if (extension == nullptr) return false;
      int added = X509_add_ext(cert, extension, -1);
      X509_EXTENSION_free(extension);
      if (added != 1) return false;
    }
    return X509_sign(cert, key, EVP_sha256()) > 0;
  }

  template <typename F>
  static bool Write(const std::string& path, F write) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return false;
    bool ok = write(f);
    return std::fclose(f) == 0 && ok;
  }

  std::string dir_;
  std::string cert_file_;
  std::string key_file_;
  bool ok_ = false;
};

Json AnthropicText(const std::string& text) {
  return Json{{"reply", {{"text", text}}}, {"format", "anthropic"}};
}

class ProvidersTest : public ::testing::Test {
 protected:
  ProvidersTest() : pool_(2) {
    agent_.id = "a";
    agent_.options.max_steps = 5;
    agent_.tools = {Weather(), NoArgs("get_time", "14:05"), NoArgs("list_files", Json::array())};
  }
  ~ProvidersTest() override {
    agent_.model.reset();
    http_.reset();  // before the loop it runs on
  }

  void Serve(Json responses, fakellm::TlsOptions tls = {}) {
    auto server =
        FakeLlm::Start(Json{{"responses", std::move(responses)}}, "127.0.0.1", 0, std::move(tls));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  template <typename Options>
  Options Configure(Options options) {
    options.base_url = server_->base_url();
    options.api_key = "sk-test-SECRET-4242";
    options.retry.initial_delay = absl::Milliseconds(5);
    options.first_byte_timeout = absl::Seconds(10);
    options.idle_timeout = absl::Seconds(10);
    options.on_retry = [this](const RetryNotice& n) { retries_.push_back(n); };
    return options;
  }

  void UseAnthropic(AnthropicOptions options = {}) {
    options.request.model = "m";
    agent_.model = std::make_shared<AnthropicModel>(*http_, Configure(std::move(options)));
  }
  // OpenAI-compatible servers live under /v1 of their base URL.
  void UseOpenAi(OpenAiOptions options = {}) {
    options.request.model = "m";
    options = Configure(std::move(options));
    options.base_url += "/v1";
    agent_.model = std::make_shared<OpenAiModel>(*http_, std::move(options));
  }

  // Runs one turn; chunks_ holds what it wrote. `stop_after` requests the turn's stop once that
  // many chunks are out.
  StepLoopResult Run(std::string text = "Weather in Oslo?") {
    StepLoop::Env env{io_.get_executor(), &HttpClient::clock(), &pool_, "chat",
                      [this](const std::string& text) {
                        chunks_.push_back(Json::parse(text));
                        if (stop_after_ > 0 && chunks_.size() >= stop_after_) stop_.request_stop();
                      }};
    auto loop = std::make_shared<StepLoop>(agent_, std::move(env));
    Json prompt =
        Json::array({{{"role", "user"}, {"content", {{{"type", "text"}, {"text", text}}}}}});
    StepLoopInput input{"msg_A", Json(), std::move(prompt), stop_.get_token()};
    std::optional<StepLoopResult> result;
    asio::co_spawn(
        io_, [loop, input = std::move(input)]() mutable { return loop->Run(std::move(input)); },
        [&result](std::exception_ptr e, StepLoopResult r) {
          if (e) std::rethrow_exception(e);
          result = std::move(r);
        });
    // Waits on the loop's events (sockets, timers, pool results), bounded so a hang fails.
    auto deadline = std::chrono::steady_clock::now() + kLimit;
    while (!result.has_value() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(result.has_value()) << "the turn did not end";
    return result.value_or(StepLoopResult());
  }

  // Calls the model once, directly, and returns its events.
  std::vector<ModelEvent> Call() {
    std::vector<ModelEvent> events;
    bool done = false;
    ModelCall call;
    call.messages =
        Json::array({{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "hi"}}}}}});
    std::function<void(ModelEvent)> sink = [&](ModelEvent e) { events.push_back(std::move(e)); };
    asio::co_spawn(io_, agent_.model->Stream(std::move(call), std::move(sink), stop_.get_token()),
                   [&](std::exception_ptr e) {
                     if (e) std::rethrow_exception(e);
                     done = true;
                   });
    auto deadline = std::chrono::steady_clock::now() + kLimit;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(done);
    return events;
  }

  std::vector<std::string> Types() const {
    std::vector<std::string> types;
    for (const Json& c : chunks_) types.push_back(c["type"]);
    return types;
  }
  // The chunks of a one-step answer streamed as two text deltas (V1, V2).
  void ExpectTwoDeltaText() const {
    EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta",
                                     "text-delta", "text-end", "finish-step", "finish"));
  }
  // V1's chunks, final message and usage.
  void ExpectV1(const StepLoopResult& r) const {
    ExpectTwoDeltaText();
    EXPECT_EQ(chunks_[3]["delta"], "Hi ");
    EXPECT_EQ(chunks_.back()["finishReason"], "stop");
    EXPECT_EQ(r.response, Json::parse(R"({"id":"msg_A","role":"assistant","parts":[
      {"type":"step-start"},{"type":"text","text":"Hi there.","state":"done"}]})"));
    EXPECT_EQ(r.usage.input_tokens, 9);
    EXPECT_EQ(r.usage.output_tokens, 5);
  }
  std::vector<std::string> Types(const StepLoopResult& r) const {
    std::vector<std::string> types;
    for (const Json& p : r.response["parts"]) types.push_back(p["type"]);
    return types;
  }

  std::unique_ptr<FakeLlm> server_;
  asio::io_context io_;
  std::unique_ptr<HttpClient> http_ = std::make_unique<HttpClient>(io_.get_executor());
  HookPool pool_;
  Agent agent_;
  std::stop_source stop_;
  size_t stop_after_ = 0;
  std::vector<Json> chunks_;
  std::vector<RetryNotice> retries_;
};

TEST_F(ProvidersTest, V1AnthropicPlainText) {
  Serve(Json::array({Reply(kV1)}));
  UseAnthropic();
  StepLoopResult r = Run();
  ExpectV1(r);

  // What went over the wire: the Messages endpoint, the version, the key in its header only.
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].path, "/v1/messages");
  EXPECT_EQ(requests[0].Header("x-api-key"), "sk-test-SECRET-4242");
  EXPECT_EQ(requests[0].Header("anthropic-version"), "2023-06-01");
  EXPECT_EQ(requests[0].Header("authorization"), "");
  EXPECT_EQ(requests[0].json["model"], "m");
  EXPECT_EQ(requests[0].json["stream"], true);
  EXPECT_EQ(requests[0].json["messages"][0]["content"][0]["text"], "Weather in Oslo?");
  EXPECT_EQ(requests[0].json["tools"][0]["name"], "get_weather");
}

// HTTPS with a certificate no public CA signed: trusted through ca_file, refused without it.
TEST_F(ProvidersTest, TlsWithATestCertificate) {
  TestCertificate cert;
  ASSERT_TRUE(cert.ok()) << "cannot make the test certificate";
  Serve(Json::array({Reply(kV1)}), fakellm::TlsOptions{cert.cert_file(), cert.key_file()});
  ASSERT_THAT(server_->base_url(), ::testing::StartsWith("https://127.0.0.1:"));

  AnthropicOptions trusting;
  trusting.ca_file = cert.cert_file();
  UseAnthropic(std::move(trusting));
  StepLoopResult r = Run();
  ExpectV1(r);
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].path, "/v1/messages");
  EXPECT_EQ(requests[0].Header("x-api-key"), "sk-test-SECRET-4242");
  EXPECT_TRUE(retries_.empty());

  // With the system's CAs the certificate is not trusted: an error, at once, and no retry (a
  // retry would meet the same certificate). The request never reaches the server.
  UseAnthropic();
  std::vector<ModelEvent> events = Call();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, ModelEvent::Type::kError);
  EXPECT_FALSE(events[0].retryable);
  EXPECT_THAT(events[0].error, HasSubstr("https://127.0.0.1:"));
  EXPECT_THAT(events[0].error, HasSubstr("certificate"));
  EXPECT_THAT(events[0].error, Not(HasSubstr("SECRET")));
  EXPECT_TRUE(retries_.empty());
  EXPECT_EQ(server_->requests().size(), 1u);
}

TEST_F(ProvidersTest, AnthropicBearerAuthAndVersionAreConfigurable) {
  Serve(Json::array({Reply(kV1)}));
  AnthropicOptions options;
  options.bearer_auth = true;
  options.version = "2026-10-01";
  options.beta = "interleaved-thinking-2025-05-14";
  UseAnthropic(options);
  Run();
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].Header("authorization"), "Bearer sk-test-SECRET-4242");
  EXPECT_EQ(requests[0].Header("x-api-key"), "");
  EXPECT_EQ(requests[0].Header("anthropic-version"), "2026-10-01");
  EXPECT_EQ(requests[0].Header("anthropic-beta"), "interleaved-thinking-2025-05-14");
}

TEST_F(ProvidersTest, V2OpenAiPlainTextWithUsage) {
  Serve(Json::array({Reply(kOpenAiText)}));
  UseOpenAi();
  StepLoopResult r = Run();
  ExpectTwoDeltaText();
  EXPECT_EQ(r.response["parts"][1]["text"], "Hello");
  EXPECT_EQ(r.usage.input_tokens, 5);
  EXPECT_EQ(r.usage.output_tokens, 2);
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].path, "/v1/chat/completions");
  EXPECT_EQ(requests[0].Header("authorization"), "Bearer sk-test-SECRET-4242");
  EXPECT_EQ(requests[0].json["stream_options"]["include_usage"], true);
  EXPECT_EQ(requests[0].json["messages"][0]["role"], "user");
}

TEST_F(ProvidersTest, V3AnthropicToolCallThenSecondStep) {
  Serve(Json::array({Reply(kV3Step1), AnthropicText("It is 4 °C in Oslo.")}));
  UseAnthropic();
  StepLoopResult r = Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                                   "tool-input-start", "tool-input-delta", "tool-input-delta",
                                   "tool-input-available", "tool-output-available", "finish-step",
                                   "start-step", "text-start", "text-delta", "text-delta",
                                   "text-delta", "text-delta", "text-delta", "text-delta",
                                   "text-end", "finish-step", "finish"));
  EXPECT_EQ(chunks_[8]["input"], Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(chunks_[9]["output"], Json::parse(R"({"tempC":4})"));
  EXPECT_THAT(Types(r),
              ElementsAre("step-start", "text", "tool-get_weather", "step-start", "text"));
  EXPECT_EQ(r.response["parts"][4]["text"], "It is 4 °C in Oslo.");

  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 2u);
  const Json& messages = requests[1].json["messages"];
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[1], Json::parse(R"({"role":"assistant","content":[
      {"type":"text","text":"Checking."},
      {"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Oslo"}}]})"));
  EXPECT_EQ(messages[2], Json::parse(R"({"role":"user","content":[
      {"type":"tool_result","tool_use_id":"toolu_01","content":"{\"tempC\":4}"}]})"));
}

TEST_F(ProvidersTest, V4OpenAiParallelCallsWithInterleavedArguments) {
  Serve(Json::array({Reply(R"(
O {"id":"c4","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}
O {"id":"c4","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]}
O {"id":"c4","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}
O {"id":"c4","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":\"CET\"}"}}]},"finish_reason":null}]}
O {"id":"c4","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Oslo\"}"}}]},"finish_reason":null}]}
O {"id":"c4","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}
O [DONE]
)"),
                     Reply(kOpenAiText)}));
  OpenAiOptions options;
  options.request.include_usage = false;
  UseOpenAi(options);
  StepLoopResult r = Run();
  std::vector<std::string> types = Types();
  ASSERT_GE(types.size(), 11u);
  EXPECT_THAT(std::vector<std::string>(types.begin(), types.begin() + 9),
              ElementsAre("start", "start-step", "tool-input-start", "tool-input-start",
                          "tool-input-delta", "tool-input-delta", "tool-input-delta",
                          "tool-input-available", "tool-input-available"));
  EXPECT_EQ(chunks_[7]["toolCallId"], "call_a");  // call order, though call_b parsed first
  EXPECT_EQ(chunks_[8]["toolCallId"], "call_b");
  EXPECT_EQ(r.finish_reason, "stop");

  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_FALSE(requests[0].json.contains("stream_options"));
  const Json& messages = requests[1].json["messages"];
  ASSERT_EQ(messages.size(), 4u);
  EXPECT_EQ(messages[1]["tool_calls"][0]["id"], "call_a");
  EXPECT_EQ(messages[1]["tool_calls"][0]["function"]["arguments"], R"({"city":"Oslo"})");
  EXPECT_EQ(messages[1]["tool_calls"][1]["id"], "call_b");
  EXPECT_EQ(messages[2],
            Json::parse(R"({"role":"tool","tool_call_id":"call_a","content":"{\"tempC\":4}"})"));
  EXPECT_EQ(messages[3],
            Json::parse(R"({"role":"tool","tool_call_id":"call_b","content":"14:05"})"));
}

TEST_F(ProvidersTest, V5AnthropicSignatureIsReplayedByteForByte) {
  Serve(Json::array({Reply(R"(
A {"type":"message_start","message":{"id":"msg_r1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}
A {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need live data."}}
A {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2lnLWV4YW1wbGU="}}
A {"type":"content_block_stop","index":0}
A {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}
A {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"Oslo\"}"}}
A {"type":"content_block_stop","index":1}
A {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":44}}
A {"type":"message_stop"}
)"),
                     AnthropicText("4 °C.")}));
  UseAnthropic();
  StepLoopResult r = Run();
  EXPECT_EQ(chunks_[4], Json::parse(R"({"type":"reasoning-delta","id":"s0-0","delta":"",
      "providerMetadata":{"anthropic":{"signature":"c2lnLWV4YW1wbGU="}}})"));
  EXPECT_EQ(r.response["parts"][1], Json::parse(R"({"type":"reasoning","text":"Need live data.",
      "state":"done","providerMetadata":{"anthropic":{"signature":"c2lnLWV4YW1wbGU="}}})"));
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].json["messages"][1]["content"], Json::parse(R"([
      {"type":"thinking","thinking":"Need live data.","signature":"c2lnLWV4YW1wbGU="},
      {"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"city":"Oslo"}}])"));
}

TEST_F(ProvidersTest, V6ErrorAfterPartialOutputIsNotRetried) {
  Json reply = Reply(R"(
A {"type":"message_start","message":{"id":"msg_e1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
A {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Partial"}}
A {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}
)");
  reply["truncate_after"] = 4;
  Serve(Json::array({reply, Reply(kV1)}));
  UseAnthropic();
  StepLoopResult r = Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                                   "error", "finish-step", "finish"));
  EXPECT_EQ(chunks_[5]["errorText"], "An error occurred.");
  EXPECT_EQ(chunks_.back()["finishReason"], "error");
  EXPECT_EQ(r.finish_reason, "error");
  EXPECT_EQ(server_->requests().size(), 1u);
  EXPECT_TRUE(retries_.empty());
}

TEST_F(ProvidersTest, V7ErrorsBeforeAnyOutputAreRetriedThenReported) {
  Serve(Json::array({
      Json{
          {"status", 529},
          {"body",
           Json::parse(
               R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"})")}},
      Json{
          {"status", 429},
          {"headers", {{"retry-after", "1"}}},
          {"body",
           Json::parse(
               R"({"type":"error","error":{"type":"rate_limit_error","message":"Too many requests"}})")}},
      Reply(R"(A {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"),
  }));
  UseAnthropic();
  Run();
  EXPECT_THAT(Types(), ElementsAre("start", "error", "finish"));
  EXPECT_EQ(server_->requests().size(), 3u);
  ASSERT_EQ(retries_.size(), 2u);
  EXPECT_EQ(retries_[0].attempt, 1);
  EXPECT_FALSE(retries_[0].from_retry_after);
  EXPECT_LE(retries_[0].delay, absl::Milliseconds(5));  // the policy's first backoff, jittered
  EXPECT_GE(retries_[0].delay, absl::Microseconds(3750));
  EXPECT_THAT(retries_[0].reason, HasSubstr("HTTP 529 overloaded_error: Overloaded"));
  EXPECT_TRUE(retries_[1].from_retry_after);
  EXPECT_EQ(retries_[1].delay, absl::Seconds(1));
  EXPECT_THAT(retries_[1].reason, HasSubstr("HTTP 429 rate_limit_error"));
  // Every attempt sent the same request.
  auto requests = server_->requests();
  EXPECT_EQ(requests[0].body, requests[2].body);
}

TEST_F(ProvidersTest, V7ARetryThatSucceedsIsInvisible) {
  Serve(Json::array(
      {Json{{"status", 500}, {"body", R"({"error":{"message":"boom"}})"}}, Reply(kOpenAiText)}));
  UseOpenAi();
  Run();
  ExpectTwoDeltaText();
  EXPECT_EQ(retries_.size(), 1u);
}

TEST_F(ProvidersTest, ClientErrorsAreNotRetriedAndSayWhatTheProviderSaid) {
  Serve(Json::array(
      {Json{
           {"status", 400},
           {"body",
            Json::parse(
                R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"}})")}},
       Reply(kV1)}));
  UseAnthropic();
  std::vector<ModelEvent> events = Call();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, ModelEvent::Type::kError);
  EXPECT_EQ(events[0].error, "anthropic: HTTP 400 invalid_request_error: max_tokens: too large");
  EXPECT_FALSE(events[0].retryable);
  EXPECT_EQ(server_->requests().size(), 1u);
}

TEST_F(ProvidersTest, V8TruncatedStreamClosesPartsAndFails) {
  Json anthropic = Reply(R"(
A {"type":"message_start","message":{"id":"msg_h","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
A {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hal"}}
)");
  // A partial last event (no closing blank line) must be dropped, not parsed.
  anthropic["events"].push_back({{"raw", R"(event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}})"}});
  Serve(Json::array({anthropic}));
  UseAnthropic();
  Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                                   "error", "finish-step", "finish"));
  EXPECT_EQ(chunks_[3]["delta"], "Hal");
}

TEST_F(ProvidersTest, V8OpenAiTruncatedWithoutFinishReason) {
  Json openai = Reply(R"(
O {"id":"c8","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hal"},"finish_reason":null}]}
)");
  Serve(Json::array({openai}));
  UseOpenAi();
  Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "text-start", "text-delta", "text-end",
                                   "error", "finish-step", "finish"));
}

TEST_F(ProvidersTest, V9aCharactersCutAcrossReadsArriveWhole) {
  // The whole body as one raw piece, written in reads cut inside the emoji (F0 9F | 91 8B), inside
  // the ü (C3 | BC), and between the two newlines that end the event.
  std::string body;
  for (const Json& e : Events(kV1)) {
    Json event = e;
    if (event["type"] == "content_block_delta") {
      if (event["delta"]["text"] == "there.") continue;
      event["delta"]["text"] = "Grüße 👋";
    }
    absl::StrAppend(&body, "event: ", event["type"].get<std::string>(), "\ndata: ", event.dump(),
                    "\n\n");
  }
  size_t emoji = body.find("\xF0\x9F\x91\x8B");
  size_t umlaut = body.find("\xC3\xBC");
  size_t end = body.find("\n\n", emoji);
  Serve(Json::array({Json{{"events", Json::array({{{"raw", body}}})},
                          {"split_at", Json::array({umlaut + 1, emoji + 2, end + 1})}}}));
  UseAnthropic();
  Run();
  std::vector<std::string> deltas;
  for (const Json& c : chunks_) {
    if (c["type"] == "text-delta") deltas.push_back(c["delta"]);
  }
  EXPECT_THAT(deltas, ElementsAre("Grüße 👋"));
}

TEST_F(ProvidersTest, V9aEveryByteInItsOwnRead) {
  Json reply = Reply(kV1);
  reply["events"][3]["delta"]["text"] = "Grüße 👋";
  reply["chunk_bytes"] = 1;
  Serve(Json::array({reply}));
  UseAnthropic();
  StepLoopResult r = Run();
  EXPECT_EQ(r.response["parts"][1]["text"], "Grüße 👋there.");
}

TEST_F(ProvidersTest, V9bSurrogatePairSplitAcrossDeltas) {
  Json reply = Json{{"events", Json::array()}};
  reply["events"].push_back({{"raw",
                              "data: "
                              "{\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                              "\"\\ud83d\"},\"finish_reason\":null}]}\n\n"}});
  reply["events"].push_back({{"raw",
                              "data: "
                              "{\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                              "\"\\udc4b!\"},\"finish_reason\":null}]}\n\n"}});
  reply["events"].push_back(
      Json::parse(R"({"id":"c9","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"));
  reply["events"].push_back("[DONE]");
  Serve(Json::array({reply}));
  UseOpenAi();
  StepLoopResult r = Run();
  EXPECT_EQ(r.response["parts"][1]["text"], "👋!");
}

TEST_F(ProvidersTest, InvalidUtf8IsAClearErrorNotACrash) {
  Json reply = Reply(kV1);
  reply["events"][3] = {{"raw",
                         "event: content_block_delta\ndata: "
                         "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_"
                         "delta\",\"text\":\"bad \xC3\x28 byte\"}}\n\n"}};
  Serve(Json::array({reply}));
  UseAnthropic();
  Run();
  std::vector<std::string> types = Types();
  ASSERT_GE(types.size(), 2u);
  EXPECT_EQ(types[types.size() - 1], "finish");
  EXPECT_EQ(chunks_.back()["finishReason"], "error");
  EXPECT_THAT(types, ::testing::Contains("error"));
}

TEST_F(ProvidersTest, V10EmptyArgumentsAreAnEmptyObjectBothWays) {
  Serve(Json::array({Reply(R"(
A {"type":"message_start","message":{"id":"msg_10","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_07","name":"list_files","input":{}}}
A {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}
A {"type":"content_block_stop","index":0}
A {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":5}}
A {"type":"message_stop"}
)"),
                     AnthropicText("No files.")}));
  UseAnthropic();
  Run();
  EXPECT_EQ(chunks_[2],
            Json::parse(
                R"({"type":"tool-input-start","toolCallId":"toolu_07","toolName":"list_files"})"));
  EXPECT_EQ(
      chunks_[3],
      Json::parse(
          R"({"type":"tool-input-available","toolCallId":"toolu_07","toolName":"list_files","input":{}})"));
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].json["messages"][1]["content"][0]["input"], Json::object());
}

TEST_F(ProvidersTest, V10OpenAiEmptyArgumentsReplayAsEmptyObjectText) {
  Serve(Json::array({Reply(R"(
O {"id":"c10","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_7","type":"function","function":{"name":"list_files","arguments":""}}]},"finish_reason":null}]}
O {"id":"c10","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}
O [DONE]
)"),
                     Reply(kOpenAiText)}));
  UseOpenAi();
  Run();
  EXPECT_EQ(chunks_[3]["input"], Json::object());
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].json["messages"][1]["tool_calls"][0]["function"]["arguments"], "{}");
}

TEST_F(ProvidersTest, V13OpenAiIdAndNameArriveLate) {
  agent_.tools.push_back(NoArgs("search", "found"));
  Serve(Json::array({Reply(R"(
O {"id":"c13","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]},"finish_reason":null}]}
O {"id":"c13","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_z","function":{"name":"search"}}]},"finish_reason":null}]}
O {"id":"c13","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"x\"}"}}]},"finish_reason":null}]}
O {"id":"c13","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}
O [DONE]
)"),
                     Reply(kOpenAiText)}));
  UseOpenAi();
  Run();
  EXPECT_EQ(
      chunks_[2],
      Json::parse(R"({"type":"tool-input-start","toolCallId":"call_z","toolName":"search"})"));
  EXPECT_EQ(chunks_[3]["inputTextDelta"], "{\"q\":");
  EXPECT_EQ(chunks_[4]["inputTextDelta"], "\"x\"}");
  EXPECT_EQ(chunks_[5]["input"], Json::parse(R"({"q":"x"})"));
}

TEST_F(ProvidersTest, V14SplicedMessageStartStopsTheStep) {
  Serve(Json::array({Reply(R"(
A {"type":"message_start","message":{"id":"msg_s1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}
A {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}
A {"type":"message_start","message":{"id":"msg_s2","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}
A {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
A {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"second"}}
A {"type":"content_block_stop","index":0}
A {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":5}}
A {"type":"message_stop"}
)")}));
  UseAnthropic();
  Run();
  EXPECT_THAT(Types(), ElementsAre("start", "start-step", "tool-input-start", "tool-input-delta",
                                   "error", "finish-step", "finish"));
  EXPECT_EQ(server_->requests().size(), 1u);
}

TEST_F(ProvidersTest, StopMidStreamClosesTheConnectionAtOnce) {
  Json reply = AnthropicText("one two three four five six seven eight nine ten");
  reply["delay_ms"] = 200;
  Serve(Json::array({reply}));
  UseAnthropic();
  stop_after_ = 4;  // start, start-step, text-start, the first text-delta
  StepLoopResult r = Run();
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(Types().back(), "abort");
  EXPECT_TRUE(server_->WaitForClientClose(0, kLimit));
  EXPECT_EQ(http_->active(), 0u);
}

TEST_F(ProvidersTest, ServerThatNeverAnswersTimesOutAndIsRetried) {
  Serve(Json::array({Json{{"hang", true}}, Json{{"hang", true}}}));
  AnthropicOptions options = Configure(AnthropicOptions());
  options.request.model = "m";
  options.retry.max_retries = 1;
  options.first_byte_timeout = absl::Milliseconds(200);
  agent_.model = std::make_shared<AnthropicModel>(*http_, options);
  std::vector<ModelEvent> events = Call();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, ModelEvent::Type::kError);
  EXPECT_THAT(events[0].error, HasSubstr("no response from http://127.0.0.1:"));
  EXPECT_EQ(server_->requests().size(), 2u);
  ASSERT_EQ(retries_.size(), 1u);
  EXPECT_TRUE(server_->WaitForClientClose(0, kLimit));
  EXPECT_TRUE(server_->WaitForClientClose(1, kLimit));
}

TEST_F(ProvidersTest, StallAfterOutputIsAnIdleTimeoutAndNotRetried) {
  // The first write holds a whole text delta; the next event never comes in time.
  Json v1 = Events(kV1);
  std::string first;
  for (int i : {0, 1, 3}) {
    absl::StrAppend(&first, "event: ", v1[i]["type"].get<std::string>(), "\ndata: ", v1[i].dump(),
                    "\n\n");
  }
  Json reply = {{"events", Json::array({{{"raw", first}}, v1[4], v1[5], v1[6], v1[7]})},
                {"delay_ms", 60000}};
  Serve(Json::array({reply, Reply(kV1)}));
  AnthropicOptions options = Configure(AnthropicOptions());
  options.request.model = "m";
  options.idle_timeout = absl::Milliseconds(200);
  agent_.model = std::make_shared<AnthropicModel>(*http_, options);
  std::vector<ModelEvent> events = Call();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type, ModelEvent::Type::kError);
  EXPECT_THAT(events.back().error, HasSubstr("sent nothing for 200ms"));
  EXPECT_EQ(events[1].type, ModelEvent::Type::kTextDelta);
  EXPECT_EQ(server_->requests().size(), 1u);
}

TEST_F(ProvidersTest, RefusedConnectionIsRetriedThenReported) {
  Serve(Json::array());
  uint16_t port = server_->port();
  server_.reset();  // nothing listens there now
  AnthropicOptions options;
  options.base_url = "http://127.0.0.1:" + std::to_string(port);
  options.api_key = "sk-test-SECRET-4242";
  options.retry.initial_delay = absl::Milliseconds(1);
  options.on_retry = [this](const RetryNotice& n) { retries_.push_back(n); };
  options.request.model = "m";
  agent_.model = std::make_shared<AnthropicModel>(*http_, options);
  std::vector<ModelEvent> events = Call();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, ModelEvent::Type::kError);
  EXPECT_THAT(events[0].error, HasSubstr("cannot connect"));
  EXPECT_EQ(retries_.size(), 2u);
}

TEST_F(ProvidersTest, KeysNeverAppearInErrors) {
  Serve(Json::array({Json{
      {"status", 401},
      {"body",
       Json::parse(
           R"({"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}})")}}}));
  UseAnthropic();
  std::vector<ModelEvent> events = Call();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].error, HasSubstr("HTTP 401 authentication_error"));
  EXPECT_THAT(events[0].error, Not(HasSubstr("SECRET")));
  for (const RetryNotice& n : retries_) EXPECT_THAT(n.reason, Not(HasSubstr("SECRET")));
}

TEST_F(ProvidersTest, KeyComesFromTheEnvironmentWhenNotConfigured) {
  Serve(Json::array({Reply(kOpenAiText)}));
  setenv("OPENAI_API_KEY", "sk-from-env", 1);
  OpenAiOptions options = Configure(OpenAiOptions());
  options.api_key.clear();
  options.base_url += "/v1";
  options.request.model = "m";
  agent_.model = std::make_shared<OpenAiModel>(*http_, options);
  unsetenv("OPENAI_API_KEY");
  Call();
  auto requests = server_->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].Header("authorization"), "Bearer sk-from-env");
}

TEST_F(ProvidersTest, ConnectionsAreReusedAcrossCalls) {
  Serve(Json::array({Reply(kV1), Reply(kV1), Reply(kV1)}));
  UseAnthropic();
  for (int i = 0; i < 3; ++i) {
    std::vector<ModelEvent> events = Call();
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().type, ModelEvent::Type::kFinish);
  }
  EXPECT_EQ(server_->requests().size(), 3u);
  EXPECT_EQ(http_->active(), 0u);
}

// A Backpressure that holds a model call until the test opens it.
class Gate final : public Backpressure {
 public:
  explicit Gate(asio::any_io_executor executor)
      : waiter_(std::move(executor), HttpClient::clock()) {}
  asio::awaitable<void> WaitForRoom() override {
    ++waits_;
    while (!open_) co_await waiter_.Wait(absl::InfiniteFuture());
  }
  void Open() {
    open_ = true;
    waiter_.Notify();
  }
  int waits() const { return waits_; }

 private:
  bool open_ = false;
  int waits_ = 0;
  Waiter waiter_;
};

// Backpressure: a call whose run has no room for more output hands on nothing and stops reading
// the response (its transfer pauses once it holds HttpClient::kMaxBufferedBytes, and the rest
// waits in the TCP window); once room comes back, the rest arrives whole.
TEST_F(ProvidersTest, ACallWithoutRoomForOutputStopsReadingAndResumesWhole) {
  std::string text;
  for (int i = 0; i < 6000; ++i) absl::StrAppend(&text, "word", i, " ");
  Serve(Json::array({AnthropicText(text)}));
  UseAnthropic();
  Gate gate(io_.get_executor());
  ModelCall call;
  call.messages =
      Json::array({{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "hi"}}}}}});
  call.backpressure = &gate;
  std::vector<ModelEvent> events;
  bool done = false;
  std::function<void(ModelEvent)> sink = [&](ModelEvent e) { events.push_back(std::move(e)); };
  asio::co_spawn(io_, agent_.model->Stream(std::move(call), std::move(sink), stop_.get_token()),
                 [&](std::exception_ptr e) {
                   if (e) std::rethrow_exception(e);
                   done = true;
                 });
  auto deadline = std::chrono::steady_clock::now() + kLimit;
  while (http_->paused() == 0 && std::chrono::steady_clock::now() < deadline) {
    io_.restart();
    io_.run_one_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(http_->paused(), 1u) << "the transfer never paused";
  EXPECT_TRUE(events.empty()) << "events were handed on while there was no room";
  EXPECT_FALSE(done);

  gate.Open();
  while (!done && std::chrono::steady_clock::now() < deadline) {
    io_.restart();
    io_.run_one_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(done);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type, ModelEvent::Type::kFinish);
  std::string got;
  for (const ModelEvent& e : events) {
    if (e.type == ModelEvent::Type::kTextDelta) got += e.delta;
  }
  EXPECT_EQ(got, text);
  EXPECT_GT(gate.waits(), 1);  // asked before each read handed on
  EXPECT_EQ(http_->paused(), 0u);
}

// A client destroyed with a transfer in flight tears it down; the parked coroutine, destroyed
// later with its loop, touches nothing of the client (ASan checks this).
TEST(HttpClientTest, DestroyedWithATransferInFlight) {
  auto server = FakeLlm::Start(Json{{"responses", Json::array({Json{{"hang", true}}})}});
  ASSERT_TRUE(server.ok()) << server.status();
  asio::io_context io;
  auto http = std::make_unique<HttpClient>(io.get_executor());
  HttpRequest request;
  request.url = (*server)->base_url() + "/v1/messages";
  request.body = "{}";
  std::function<void(const HttpHead&)> on_head = [](const HttpHead&) {};
  std::function<bool(std::string_view)> on_body = [](std::string_view) { return true; };
  asio::co_spawn(io, http->Fetch(request, on_head, on_body, {}),
                 [](std::exception_ptr, absl::Status) {});
  while (!(*server)->WaitForRequests(1, std::chrono::milliseconds(0))) {
    io.run_one_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(http->active(), 1u);
  http.reset();
  EXPECT_TRUE((*server)->WaitForClientClose(0, kLimit));
}

}  // namespace
}  // namespace baton
