// File: tests/integration/http_gateway.h
//
// baton-gateway in front of a Stack (tests/integration/stack.h), for tests that speak HTTP to it
// as a browser's fetch does: the gateway as a process (GatewayProcess, GatewayStack), a small
// HTTP/1.1 client over one loopback connection (HttpClient), an answer's SSE as its UI chunks
// (ParseSse), and the check of an answer by the real `ai` packages (ValidateWithAiSdk, through
// tests/web/validate-sse.mjs when the build has them).
#ifndef BATON_TESTS_INTEGRATION_HTTP_GATEWAY_H_
#define BATON_TESTS_INTEGRATION_HTTP_GATEWAY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hooks/json.h"
#include "tests/integration/stack.h"

namespace baton::testing {

struct HttpResponse {
  int status = 0;
  std::string head;                            // status line and headers, as received
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // chunked encoding undone
  bool complete = false;                       // the body ended as its framing says
};

using HttpHeaderList = std::vector<std::pair<std::string, std::string>>;

// One HTTP/1.1 connection to 127.0.0.1:`port`. Reads wait on the socket, at most kLimit at a
// time. Not thread-safe, except Shutdown, which another thread may call to end a read.
class HttpClient {
 public:
  // `receive_buffer`: a small kernel buffer for a client that reads slowly (0: the default).
  explicit HttpClient(int port, int receive_buffer = 0);
  ~HttpClient() { Close(); }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  void Close();
  // Shuts the connection down both ways: a read under way in another thread returns, as when
  // the server closes it (the tab is closed).
  void Shutdown();

  void Send(const std::string& method, const std::string& path, const std::string& body = "",
            const HttpHeaderList& headers = {});
  void SendRaw(const std::string& bytes);

  // Reads the head, then the body until it ends or `enough` holds for what was read of it.
  HttpResponse Read(const std::function<bool(const std::string&)>& enough = nullptr);
  bool ReadHead(HttpResponse& response);
  // Reads more of the body into `response.body`: to its end, or until `enough` holds. Called
  // again, it goes on where it stopped.
  void ReadBody(HttpResponse& response,
                const std::function<bool(const std::string&)>& enough = nullptr);
  // True when the server closed the connection (EOF or a reset) within the limit.
  bool ClosedByServer();

 private:
  bool Fill();

  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

// The UI chunks of an SSE body, in order, and whether it ended with `data: [DONE]`.
struct Sse {
  std::vector<Json> chunks;
  bool done = false;
  int comments = 0;
};

Sse ParseSse(const std::string& body);
std::vector<std::string> ChunkTypes(const Sse& sse);
// The text of every text-delta, joined.
std::string SseText(const Sse& sse);

// Whether this build checks answers with the real `ai` packages (BATON_BUILD_WEB: node and
// tests/web's npm packages).
bool SseValidatorAvailable();

// Checks one SSE answer with the real `ai` packages (tests/web/validate-sse.mjs; `extra_args`
// are its options, space-separated), when built with them; a refusal fails the test with what
// the validator said. Returns the UIMessage the newest `ai` folded it into (null when not
// checked or refused). The response and the validator's output are kept in `dir`.
Json ValidateWithAiSdk(const std::string& dir, const HttpResponse& response,
                       const std::string& extra_args = "");

// baton-gateway as a process in front of a Stack's orchestrator.
class GatewayProcess {
 public:
  // Starts it on a loopback port it picks, public (`--public_create`), with no static files and
  // no head start, serving `agent` to requests that name none; `flags` come after those and win.
  // "{llm}" in a flag is fake-llm's base URL (a head start's step 1 runs in the gateway). Its
  // log is the stack's gateway.log. Null, the test failed, when it does not start.
  static std::unique_ptr<GatewayProcess> Start(Stack& stack, const std::string& agent,
                                               std::vector<std::string> flags = {});

  Process& process() { return *process_; }
  int port() const { return port_; }

  // One request on a connection of its own, read to its end.
  HttpResponse Request(const std::string& method, const std::string& path,
                       const std::string& body = "", const HttpHeaderList& headers = {});

 private:
  GatewayProcess() = default;
  std::unique_ptr<Process> process_;
  int port_ = 0;
};

// A stack and a gateway in front of it, serving agent `chat`.
class GatewayStack {
 public:
  static std::unique_ptr<GatewayStack> Start(StackOptions options,
                                             std::vector<std::string> gateway_flags = {});

  Stack& stack() { return *stack_; }
  Process& gateway() { return gateway_->process(); }
  int port() const { return gateway_->port(); }
  std::string dir() const { return stack_->Path(""); }

  HttpResponse Request(const std::string& method, const std::string& path,
                       const std::string& body = "", const HttpHeaderList& headers = {}) {
    return gateway_->Request(method, path, body, headers);
  }

  // POSTs a chat message as DefaultChatTransport does.
  HttpResponse PostMessage(const std::string& chat_id, const std::string& message_id,
                           const std::string& text, const std::string& route = "/api/chat",
                           const HttpHeaderList& headers = {}) {
    return Request("POST", route, PostBody(chat_id, message_id, text), WithJson(headers));
  }

  static std::string PostBody(const std::string& chat_id, const std::string& message_id,
                              const std::string& text);
  static HttpHeaderList WithJson(HttpHeaderList headers);

 private:
  GatewayStack() = default;
  std::unique_ptr<Stack> stack_;
  std::unique_ptr<GatewayProcess> gateway_;
};

}  // namespace baton::testing

#endif  // BATON_TESTS_INTEGRATION_HTTP_GATEWAY_H_
