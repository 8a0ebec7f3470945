#include "runtime/model/providers.h"

#include <cmath>
#include <cstdlib>
#include <optional>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "runtime/exec/waiter.h"
#include "runtime/model/provider_streams.h"
#include "runtime/model/sse_parser.h"

namespace baton {

struct HttpModel::Decoder {
  virtual ~Decoder() = default;
  virtual void OnEvent(const SseEvent& event, std::vector<ModelEvent>& out) = 0;
  virtual void Finish(std::vector<ModelEvent>& out) = 0;
  virtual bool done() const = 0;
};

namespace {

template <typename S>
struct DecoderOf final : HttpModel::Decoder {
  // A decode error has already become an error event in `out`; the status only says why.
  void OnEvent(const SseEvent& event, std::vector<ModelEvent>& out) override {
    (void)stream.OnEvent(event, out);
  }
  void Finish(std::vector<ModelEvent>& out) override { stream.Finish(out); }
  bool done() const override { return stream.done(); }
  S stream;
};

constexpr size_t kMaxErrorBody = 64 << 10;

ModelEvent Failure(std::string message, bool retryable) {
  ModelEvent e = ModelEvent::Of(ModelEvent::Type::kError);
  e.error = std::move(message);
  e.retryable = retryable;
  return e;
}

bool RetryableStatus(int status) {
  return status == 408 || status == 409 || status == 429 || status >= 500;
}

// "HTTP 529 overloaded_error: Overloaded" from an error response. Both providers put
// {"error": {"type", "message"}} in the body (OpenAI may give a `code` instead of a type).
std::string DescribeHttpError(int status, std::string_view body) {
  std::string what = absl::StrCat("HTTP ", status);
  absl::StatusOr<Json> parsed = ParseJson(body, kMaxDataDepth);
  const Json* error = parsed.ok() ? FindField(*parsed, "error") : nullptr;
  if (error != nullptr && error->is_object()) {
    std::string type = StringField(*error, "type");
    if (type.empty()) {
      if (const Json* code = FindField(*error, "code"); code != nullptr && !code->is_null()) {
        type = code->is_string() ? code->get<std::string>() : code->dump();
      }
    }
    std::string message = StringField(*error, "message");
    if (!type.empty()) absl::StrAppend(&what, " ", type);
    if (!message.empty()) absl::StrAppend(&what, ": ", message);
  } else if (!body.empty()) {
    absl::StrAppend(&what, ": ", std::string(body.substr(0, 200)));
  }
  return what;
}

std::string KeyFrom(const std::string& configured, const char* variable) {
  if (!configured.empty()) return configured;
  const char* env = std::getenv(variable);
  return env != nullptr ? env : "";
}

// One attempt of a model call: the response's head, the body of an error response, and the
// events decoded from a good one, passed on as they come (HttpModel::Stream makes one per try).
class ModelAttempt {
 public:
  ModelAttempt(std::unique_ptr<HttpModel::Decoder> decoder,
               const std::function<void(ModelEvent)>& on_event, std::stop_token stop)
      : decoder_(std::move(decoder)), on_event_(on_event), stop_(std::move(stop)) {}

  // HttpClient's on_body: an error response's body is kept (up to kMaxErrorBody), a good one's
  // is decoded and passed on. False ends the transfer.
  bool OnBody(std::string_view bytes) {
    if (head.status < 200 || head.status >= 300) {
      error_body.append(
          bytes.substr(0, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
      return true;
    }
    absl::Status fed = sse_.Feed(bytes, [&](SseEvent event) { decoder_->OnEvent(event, events_); });
    if (!fed.ok()) {
      Forward();
      if (!failure) failure = Failure(std::string(fed.message()), false);
      return false;
    }
    return Forward();
  }

  // The transfer is over with `status`: the error that ends the attempt, unless one did already
  // or the stream ended cleanly; a good response's last events are passed on.
  void End(const absl::Status& status, const std::string& provider) {
    if (failure || decoder_->done()) return;
    if (!status.ok()) {
      failure = Failure(absl::StrCat(provider, ": ", status.message()),
                        absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status));
    } else if (head.status < 200 || head.status >= 300) {
      failure = Failure(absl::StrCat(provider, ": ", DescribeHttpError(head.status, error_body)),
                        RetryableStatus(head.status));
    } else {
      sse_.Finish();  // a partial last event is dropped, never parsed
      decoder_->Finish(events_);
      Forward();
    }
  }

  HttpHead head;
  std::string error_body;
  bool forwarded = false;             // an event of this call has been passed on
  std::optional<ModelEvent> failure;  // the error that ends this attempt, held back

 private:
  // Passes decoded events on; false ends the transfer (an error, or a stop).
  bool Forward() {
    for (ModelEvent& e : events_) {
      if (e.type == ModelEvent::Type::kError) {
        failure = std::move(e);
        break;
      }
      forwarded = true;
      on_event_(std::move(e));
      if (stop_.stop_requested()) break;
    }
    events_.clear();
    return !failure && !stop_.stop_requested();
  }

  std::unique_ptr<HttpModel::Decoder> decoder_;
  const std::function<void(ModelEvent)>& on_event_;
  std::stop_token stop_;
  SseParser sse_;
  std::vector<ModelEvent> events_;
};

}  // namespace

std::optional<absl::Duration> RetryAfter(const HttpHead& head) {
  auto within = [](absl::Duration d) -> std::optional<absl::Duration> {
    if (d < absl::ZeroDuration() || d > absl::Seconds(60)) return std::nullopt;
    return d;
  };
  double value = 0;
  if (std::string ms = head.Header("retry-after-ms"); !ms.empty()) {
    if (absl::SimpleAtod(ms, &value) && std::isfinite(value)) {
      return within(absl::Milliseconds(value));
    }
  }
  if (std::string s = head.Header("retry-after"); !s.empty()) {
    if (absl::SimpleAtod(s, &value) && std::isfinite(value)) return within(absl::Seconds(value));
  }
  return std::nullopt;
}

HttpRequest HttpModel::BaseRequest(std::string_view default_base, std::string_view path) const {
  HttpRequest request;
  absl::string_view base = options().base_url.empty()
                               ? absl::string_view(default_base.data(), default_base.size())
                               : absl::string_view(options().base_url);
  while (absl::ConsumeSuffix(&base, "/")) {
  }
  request.url = absl::StrCat(base, std::string(path));
  request.headers = {"content-type: application/json", "accept: text/event-stream"};
  request.headers.insert(request.headers.end(), options().extra_headers.begin(),
                         options().extra_headers.end());
  request.ca_file = options().ca_file;
  request.connect_timeout = options().connect_timeout;
  request.first_byte_timeout = options().first_byte_timeout;
  request.idle_timeout = options().idle_timeout;
  return request;
}

namespace {

// The retry after a failed attempt: the wait the response asked for (Retry-After), or the
// backoff with jitter.
RetryNotice NextRetry(int attempt, const ModelAttempt& failed, const RetryPolicy& policy,
                      absl::Duration backoff) {
  RetryNotice notice;
  notice.attempt = attempt;
  notice.reason = failed.failure->error;
  if (std::optional<absl::Duration> after = RetryAfter(failed.head)) {
    notice.delay = *after;
    notice.from_retry_after = true;
  } else {
    thread_local absl::BitGen random;
    double scale = 1 - absl::Uniform(random, 0.0, std::clamp(policy.jitter, 0.0, 1.0));
    notice.delay = std::min(backoff, policy.max_delay) * scale;
  }
  return notice;
}

}  // namespace

asio::awaitable<void> HttpModel::Stream(ModelCall call, std::function<void(ModelEvent)> on_event,
                                        std::stop_token stop) {
  HttpRequest request = BuildRequest(call);
  if (!call.traceparent.empty()) request.headers.push_back("traceparent: " + call.traceparent);
  if (call.backpressure != nullptr) {
    Backpressure* backpressure = call.backpressure;
    request.wait_for_room = [backpressure] { return backpressure->WaitForRoom(); };
  }
  const RetryPolicy& policy = options().retry;
  absl::Duration backoff = policy.initial_delay;
  for (int attempt = 1;; ++attempt) {
    ModelAttempt tried(NewDecoder(), on_event, stop);
    std::function<void(const HttpHead&)> on_head = [&tried](const HttpHead& h) { tried.head = h; };
    std::function<bool(std::string_view)> on_body = [&tried](std::string_view bytes) {
      return tried.OnBody(bytes);
    };
    absl::Status status = co_await http_.Fetch(request, on_head, on_body, stop);
    if (stop.stop_requested()) co_return;
    tried.End(status, provider());
    if (stop.stop_requested() || !tried.failure) co_return;

    if (tried.forwarded || !tried.failure->retryable || attempt > policy.max_retries) {
      on_event(std::move(*tried.failure));
      co_return;
    }
    RetryNotice notice = NextRetry(attempt, tried, policy, backoff);
    backoff = backoff * policy.multiplier;
    if (options().on_retry) options().on_retry(notice);
    Waiter wait(http_.executor(), http_.clock());
    Waiter::Result r = co_await wait.Wait(http_.clock().Now() + notice.delay, stop);
    if (r == Waiter::Result::kStopped) co_return;
  }
}

AnthropicModel::AnthropicModel(HttpClient& http, AnthropicOptions options)
    : HttpModel(http),
      anthropic_(std::move(options)),
      key_(KeyFrom(anthropic_.api_key, "ANTHROPIC_API_KEY")) {}

HttpRequest AnthropicModel::BuildRequest(const ModelCall& call) const {
  HttpRequest request = BaseRequest("https://api.anthropic.com", "/v1/messages");
  request.headers.push_back(absl::StrCat("anthropic-version: ", anthropic_.version));
  if (!anthropic_.beta.empty())
    request.headers.push_back(absl::StrCat("anthropic-beta: ", anthropic_.beta));
  if (!key_.empty()) {
    request.headers.push_back(anthropic_.bearer_auth ? absl::StrCat("authorization: Bearer ", key_)
                                                     : absl::StrCat("x-api-key: ", key_));
  }
  request.body = AnthropicRequestBody(call, anthropic_.request);
  return request;
}

std::unique_ptr<HttpModel::Decoder> AnthropicModel::NewDecoder() const {
  return std::make_unique<DecoderOf<AnthropicStream>>();
}

OpenAiModel::OpenAiModel(HttpClient& http, OpenAiOptions options)
    : HttpModel(http),
      openai_(std::move(options)),
      key_(KeyFrom(openai_.api_key, "OPENAI_API_KEY")) {}

HttpRequest OpenAiModel::BuildRequest(const ModelCall& call) const {
  HttpRequest request = BaseRequest("https://api.openai.com/v1", "/chat/completions");
  // Compatible local servers need no key; OpenAI itself answers 401 without one.
  if (!key_.empty()) request.headers.push_back(absl::StrCat("authorization: Bearer ", key_));
  request.body = OpenAiRequestBody(call, openai_.request);
  return request;
}

std::unique_ptr<HttpModel::Decoder> OpenAiModel::NewDecoder() const {
  return std::make_unique<DecoderOf<OpenAiStream>>();
}

std::shared_ptr<LanguageModel> MakeModel(HttpClient& http, const ProviderConfig& config) {
  std::string provider = config.provider;
  if (provider.empty()) {
    bool openai_only =
        std::getenv("ANTHROPIC_API_KEY") == nullptr && std::getenv("OPENAI_API_KEY") != nullptr;
    provider = openai_only ? "openai" : "anthropic";
  }
  const char* key = config.api_key_env.empty() ? nullptr : std::getenv(config.api_key_env.c_str());
  if (provider == "openai") {
    OpenAiOptions options;
    options.base_url = config.base_url;
    if (key != nullptr) options.api_key = key;
    options.request.model = config.model.empty() ? "gpt-4.1-mini" : config.model;
    return std::make_shared<OpenAiModel>(http, options);
  }
  AnthropicOptions options;
  options.base_url = config.base_url;
  if (key != nullptr) options.api_key = key;
  options.request.model = config.model.empty() ? "claude-sonnet-4-5" : config.model;
  return std::make_shared<AnthropicModel>(http, options);
}

}  // namespace baton
