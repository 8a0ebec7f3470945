// File: runtime/model/providers.h
//
// The LanguageModels that call real providers over HTTP: AnthropicModel (Messages API) and
// OpenAiModel (Chat Completions, and the compatible servers: llama.cpp, vLLM, Ollama). Both
// stream through HttpClient on the worker's loop, decode with runtime/model/provider_streams.h, and
// share one policy for failures:
//
//   - Retries (exponential backoff with jitter; `retry-after-ms` / `retry-after` honoured when
//     between 0 and 60 s) on network failures, timeouts, HTTP 408, 409, 429 and 5xx (529
//     overloaded included), and on a retryable in-stream error, but only while no event of the
//     call has been passed on: once output is on its way to `.out`, a failure ends the step
//     visibly (the step loop closes open parts and writes an error chunk).
//   - Connect, first-byte and idle timeouts.
//   - A stop tears the transfer down at once; nothing is emitted after it.
//
// A model streams on its HttpClient's loop: use it from runs on that loop (the worker's).
//
// API keys come from the options or the environment (ANTHROPIC_API_KEY, OPENAI_API_KEY). They go
// into one request header and nowhere else: not into errors, logs or the retry notices.
#ifndef BATON_RUNTIME_MODEL_PROVIDERS_H_
#define BATON_RUNTIME_MODEL_PROVIDERS_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "hooks/model.h"
#include "runtime/model/http_client.h"
#include "runtime/model/provider_requests.h"

namespace baton {

struct RetryPolicy {
  int max_retries = 2;  // attempts = max_retries + 1
  absl::Duration initial_delay = absl::Seconds(2);
  double multiplier = 2;
  absl::Duration max_delay = absl::Seconds(60);
  // Each backoff delay is scaled by a random factor in [1 - jitter, 1].
  double jitter = 0.25;
};

// What a retry looked like; for logs, metrics and tests.
struct RetryNotice {
  int attempt = 0;       // the attempt that failed, 1-based
  absl::Duration delay;  // wait before the next one
  std::string reason;    // "HTTP 529 overloaded_error: Overloaded", "connect timeout: ..."
  bool from_retry_after = false;
};

struct HttpModelOptions {
  std::string base_url;                    // empty: the provider's public endpoint
  std::string api_key;                     // empty: from the environment variable
  std::vector<std::string> extra_headers;  // "name: value"
  // A PEM file of the CAs trusted for the server's certificate instead of the system's (a
  // private CA, a test certificate); empty: the system's CA store.
  std::string ca_file;
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration first_byte_timeout = absl::Seconds(60);
  absl::Duration idle_timeout = absl::Seconds(60);
  RetryPolicy retry;
  std::function<void(const RetryNotice&)> on_retry;
};

struct AnthropicOptions : HttpModelOptions {
  AnthropicRequestOptions request;     // model, max_tokens, thinking budget
  std::string version = "2023-06-01";  // anthropic-version
  bool bearer_auth = false;            // Authorization: Bearer instead of x-api-key
  std::string beta;                    // anthropic-beta, when set
};

struct OpenAiOptions : HttpModelOptions {
  OpenAiRequestOptions request;  // model, max_completion_tokens, include_usage
};

// The request every attempt sends, and how to read what comes back. Internal to providers.cc;
// declared here so both models share one Stream().
class HttpModel : public LanguageModel {
 public:
  asio::awaitable<void> Stream(ModelCall call, std::function<void(ModelEvent)> on_event,
                               std::stop_token stop) override;
  struct Decoder;

 protected:
  explicit HttpModel(HttpClient& http) : http_(http) {}
  // The options shared by both providers: the derived model's own, seen through its base.
  virtual const HttpModelOptions& options() const = 0;
  virtual HttpRequest BuildRequest(const ModelCall& call) const = 0;
  virtual std::unique_ptr<Decoder> NewDecoder() const = 0;

  // The request's URL, timeouts and extra headers; the model adds auth and the body.
  HttpRequest BaseRequest(std::string_view default_base, std::string_view path) const;
  HttpClient& http_;
};

class AnthropicModel final : public HttpModel {
 public:
  AnthropicModel(HttpClient& http, AnthropicOptions options);
  std::string provider() const override { return "anthropic"; }
  std::string model_id() const override { return anthropic_.request.model; }

 private:
  HttpRequest BuildRequest(const ModelCall& call) const override;
  std::unique_ptr<Decoder> NewDecoder() const override;
  const HttpModelOptions& options() const override { return anthropic_; }
  AnthropicOptions anthropic_;
  std::string key_;
};

class OpenAiModel final : public HttpModel {
 public:
  OpenAiModel(HttpClient& http, OpenAiOptions options);
  std::string provider() const override { return "openai"; }
  std::string model_id() const override { return openai_.request.model; }

 private:
  HttpRequest BuildRequest(const ModelCall& call) const override;
  std::unique_ptr<Decoder> NewDecoder() const override;
  const HttpModelOptions& options() const override { return openai_; }
  OpenAiOptions openai_;
  std::string key_;
};

// Parses `retry-after-ms` (milliseconds) or `retry-after` (seconds, or an HTTP date, which is
// ignored); nullopt when absent, malformed, negative or above 60 s.
std::optional<absl::Duration> RetryAfter(const HttpHead& head);

// ProviderConfig / MakeModel()
//
// A model from the few settings a process takes on its command line: `provider` ("anthropic",
// "openai", or "" for whichever of ANTHROPIC_API_KEY / OPENAI_API_KEY is set, else anthropic),
// `base_url` ("" for the public endpoint), `model` ("" for claude-sonnet-4-5 / gpt-4.1-mini)
// and `api_key_env` (the environment variable holding the key; "" for the provider's own).
struct ProviderConfig {
  std::string provider;
  std::string base_url;
  std::string model;
  std::string api_key_env;
};
std::shared_ptr<LanguageModel> MakeModel(HttpClient& http, const ProviderConfig& config);

}  // namespace baton

#endif  // BATON_RUNTIME_MODEL_PROVIDERS_H_
