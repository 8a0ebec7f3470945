// File: tools/fake-llm/fake_llm.h
//
// FakeLlm: a scripted HTTP/1.1 server that answers like the Anthropic Messages and the OpenAI
// Chat Completions streaming APIs, byte for byte as its script says (tools/fake-llm/script.h,
// docs/fake-llm.md), so the providers can be tested over real sockets with no network and no
// key. It runs on its own thread with its own Asio loop, serves keep-alive and concurrent
// connections, records every request, and lets a test wait for what it needs (a request, a
// client that went away) instead of sleeping.
//
// It speaks HTTPS instead when given a certificate and key (TlsOptions).
//
// Besides the scripted answers it serves three control endpoints: GET /__fake/requests (the
// records as JSON), POST /__fake/script (replace the script) and POST /__fake/clock (move the
// script clock that `hold_ms` items wait on).
#ifndef BATON_TOOLS_FAKE_LLM_FAKE_LLM_H_
#define BATON_TOOLS_FAKE_LLM_FAKE_LLM_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "hooks/json.h"

namespace baton::fakellm {

// One request the server received (control requests are not recorded). Recorded when the
// request has fully arrived, before its response starts.
struct RecordedRequest {
  std::string method;
  std::string path;  // the request target up to its query string
  std::vector<std::pair<std::string, std::string>> headers;  // in arrival order, names lowercased
  std::string body;
  Json json;                   // the body parsed, null when it is not JSON
  int response = -1;           // the index of the scripted response served, -1 for none
  bool client_closed = false;  // the client went away before the response was complete

  // The first value of header `name` (any case), "" when absent.
  std::string Header(std::string_view name) const;
};

// The form GET /__fake/requests lists a record in: {"method", "path", "headers": {name: value}
// (repeated names joined with ", "), "body", "json", "response", "client_closed"}.
Json ToJson(const RecordedRequest& request);

// HTTPS instead of HTTP: the server's certificate (chain) and private key, PEM files. ALPN offers
// http/1.1 only (there is no HTTP/2 here). Both empty: plain HTTP.
struct TlsOptions {
  std::string cert_file;
  std::string key_file;
};

// Thread-safety: every method may be called from any thread.
class FakeLlm {
 public:
  // Validates `script` and starts serving it on host:port (port 0: an ephemeral one) on a new
  // thread, over TLS when `tls` names a certificate and key. InvalidArgument for a bad script or
  // unusable TLS files, Unavailable when it cannot listen.
  static absl::StatusOr<std::unique_ptr<FakeLlm>> Start(Json script, std::string host = "127.0.0.1",
                                                        uint16_t port = 0, TlsOptions tls = {});
  // Reads and parses the script file at `path` and validates it.
  static absl::StatusOr<Json> LoadScript(const std::string& path);

  // Stops serving (open connections are dropped) and joins the thread.
  ~FakeLlm();
  FakeLlm(const FakeLlm&) = delete;
  FakeLlm& operator=(const FakeLlm&) = delete;

  uint16_t port() const;
  std::string base_url() const;  // "http://127.0.0.1:PORT", "https://..." over TLS

  // Replaces the script: request numbering starts again at 1, the records are cleared.
  // Requests already answered from the old script finish as it said. InvalidArgument for a bad
  // script (the old one stays).
  absl::Status SetScript(Json script);

  // Moves the script clock on by `by`: streams held by `hold_ms` items until a reading the clock
  // now passes go on. Only this (and POST /__fake/clock) moves the clock; it starts at 0.
  void AdvanceScriptClock(std::chrono::milliseconds by);

  // Every request recorded since the script was set, in arrival order.
  std::vector<RecordedRequest> requests() const;

  // Block until the condition holds or `limit` passes (false then); how tests wait on the
  // server, with no sleeps.
  //   WaitForRequests: at least `n` requests are recorded.
  //   WaitForClientClose: request `request_index` (0-based) is recorded, and its client went
  //   away before its response was complete.
  bool WaitForRequests(size_t n, std::chrono::milliseconds limit);
  bool WaitForClientClose(size_t request_index, std::chrono::milliseconds limit);

 private:
  class Impl;
  explicit FakeLlm(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::fakellm

#endif  // BATON_TOOLS_FAKE_LLM_FAKE_LLM_H_
