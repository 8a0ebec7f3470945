#include "tests/integration/http_gateway.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"

namespace baton::testing {

// ---- HttpClient -------------------------------------------------------------------------------

HttpClient::HttpClient(int port, int receive_buffer) {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer > 0) {
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd_);
    fd_ = -1;
  }
}

void HttpClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void HttpClient::Shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

void HttpClient::Send(const std::string& method, const std::string& path, const std::string& body,
                      const HttpHeaderList& headers) {
  std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: localhost\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&request, name, ": ", value, "\r\n");
  if (!body.empty() || method == "POST") {
    absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);
  SendRaw(request);
}

void HttpClient::SendRaw(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

HttpResponse HttpClient::Read(const std::function<bool(const std::string&)>& enough) {
  HttpResponse response;
  if (ReadHead(response)) ReadBody(response, enough);
  return response;
}

bool HttpClient::ReadHead(HttpResponse& response) {
  size_t end;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!Fill()) return false;
  }
  response.head = buffer_.substr(0, end + 2);
  buffer_.erase(0, end + 4);
  std::vector<std::string> lines = absl::StrSplit(response.head, "\r\n", absl::SkipEmpty());
  if (lines.empty()) return false;
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &response.status)) {
    return false;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    response.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  if (response.status == 204 || response.status == 304) response.complete = true;
  return true;
}

void HttpClient::ReadBody(HttpResponse& response,
                          const std::function<bool(const std::string&)>& enough) {
  if (response.complete) return;
  if (response.headers["transfer-encoding"] == "chunked") {
    while (true) {
      size_t line_end;
      while ((line_end = buffer_.find("\r\n")) == std::string::npos) {
        if (!Fill()) return;
      }
      size_t size = 0;
      if (!absl::SimpleHexAtoi(buffer_.substr(0, line_end), &size)) return;
      while (buffer_.size() < line_end + 2 + size + 2) {
        if (!Fill()) return;
      }
      response.body += buffer_.substr(line_end + 2, size);
      buffer_.erase(0, line_end + 2 + size + 2);
      if (size == 0) {
        response.complete = true;
        return;
      }
      if (enough && enough(response.body)) return;
    }
  }
  size_t length = 0;
  if (!absl::SimpleAtoi(response.headers["content-length"], &length)) return;
  while (buffer_.size() < length) {
    if (!Fill()) return;
  }
  response.body = buffer_.substr(0, length);
  buffer_.erase(0, length);
  response.complete = true;
}

bool HttpClient::ClosedByServer() {
  while (Fill()) {
  }
  return eof_;
}

bool HttpClient::Fill() {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  int ready =
      poll(&p, 1,
           static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(kLimit).count()));
  if (ready <= 0) return false;
  char chunk[16384];
  ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  buffer_.append(chunk, static_cast<size_t>(n));
  return true;
}

// ---- SSE --------------------------------------------------------------------------------------

Sse ParseSse(const std::string& body) {
  Sse sse;
  for (absl::string_view event : absl::StrSplit(body, "\n\n", absl::SkipEmpty())) {
    if (absl::StartsWith(event, ":")) {
      ++sse.comments;
      continue;
    }
    if (!absl::StartsWith(event, "data: ")) continue;
    absl::string_view data = event.substr(6);
    if (data == "[DONE]") {
      sse.done = true;
      continue;
    }
    absl::StatusOr<Json> chunk = ParseJson(std::string(data));
    EXPECT_TRUE(chunk.ok()) << data;
    if (chunk.ok()) sse.chunks.push_back(*chunk);
  }
  return sse;
}

std::vector<std::string> ChunkTypes(const Sse& sse) {
  std::vector<std::string> types;
  for (const Json& c : sse.chunks) types.push_back(StringField(c, "type"));
  return types;
}

std::string SseText(const Sse& sse) {
  std::string text;
  for (const Json& c : sse.chunks) {
    if (StringField(c, "type") == "text-delta") text += StringField(c, "delta");
  }
  return text;
}

bool SseValidatorAvailable() {
#ifdef BATON_SSE_VALIDATOR
  return true;
#else
  return false;
#endif
}

Json ValidateWithAiSdk(const std::string& dir, const HttpResponse& response,
                       const std::string& extra_args) {
#ifdef BATON_SSE_VALIDATOR
  static std::atomic<int> n{0};
  std::string base = absl::StrCat(dir, "/sse-", ++n);
  std::ofstream(base + ".head") << response.head;
  std::ofstream(base + ".body") << response.body;
  std::vector<std::string> argv = {BATON_NODE, BATON_SSE_VALIDATOR, base + ".body", "--headers",
                                   base + ".head"};
  for (absl::string_view a : absl::StrSplit(extra_args, ' ', absl::SkipEmpty())) {
    argv.emplace_back(a);
  }
  // Its problems go to stderr (kept in a file), the folded message to stdout (read to its end
  // before the process is reaped, so that a long one cannot fill the pipe).
  absl::StatusOr<std::unique_ptr<Process>> node = Process::Spawn(argv, base + ".err", {});
  EXPECT_TRUE(node.ok()) << node.status();
  if (!node.ok()) return Json();
  std::string out = (*node)->ReadAll();
  int code = (*node)->Wait();
  std::ifstream err_file(base + ".err", std::ios::binary);
  std::string err(std::istreambuf_iterator<char>(err_file), {});
  EXPECT_EQ(code, 0) << "the AI SDK refused the answer (" << base << ".body):\n"
                     << err << "\n"
                     << response.body;
  if (code != 0) return Json();
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  EXPECT_FALSE(lines.empty()) << "the validator passed the answer and printed no message";
  if (lines.empty()) return Json();
  absl::StatusOr<Json> message = ParseJson(lines.back());
  EXPECT_TRUE(message.ok()) << "the validator printed no message: " << out;
  return message.ok() ? *message : Json();
#else
  (void)dir;
  (void)response;
  (void)extra_args;
  return Json();
#endif
}

// ---- the gateway as a process -----------------------------------------------------------------

std::unique_ptr<GatewayProcess> GatewayProcess::Start(Stack& stack, const std::string& agent,
                                                      std::vector<std::string> flags) {
  auto g = std::unique_ptr<GatewayProcess>(new GatewayProcess());
  std::vector<std::string> argv = {BATON_GATEWAY_BINARY,
                                   "--listen=127.0.0.1:0",
                                   absl::StrCat("--orchestrator=", stack.address()),
                                   absl::StrCat("--agent=", agent),
                                   "--public_create",
                                   "--web_dir=",
                                   "--head_start=false"};
  for (std::string& flag : flags) {
    flag = absl::StrReplaceAll(flag, {{"{llm}", stack.llm().base_url()}});
  }
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<std::unique_ptr<Process>> process =
      Process::Spawn(argv, stack.Path("gateway.log"), {});
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return nullptr;
  g->process_ = *std::move(process);
  absl::StatusOr<std::string> line = g->process_->WaitForLine("listening ");
  EXPECT_TRUE(line.ok()) << line.status() << "; see " << stack.Path("gateway.log");
  if (!line.ok()) return nullptr;
  std::string address = line->substr(std::string("listening ").size());
  if (!absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &g->port_)) return nullptr;
  return g;
}

HttpResponse GatewayProcess::Request(const std::string& method, const std::string& path,
                                     const std::string& body, const HttpHeaderList& headers) {
  HttpClient client(port_);
  EXPECT_TRUE(client.connected());
  client.Send(method, path, body, headers);
  return client.Read();
}

std::unique_ptr<GatewayStack> GatewayStack::Start(StackOptions options,
                                                  std::vector<std::string> gateway_flags) {
  auto g = std::unique_ptr<GatewayStack>(new GatewayStack());
  g->stack_ = Stack::Start(std::move(options));
  if (g->stack_ == nullptr) return nullptr;
  // A head start needs the agent's announcement: the worker has said hello before any POST.
  if (std::find(gateway_flags.begin(), gateway_flags.end(), "--head_start") !=
      gateway_flags.end()) {
    EXPECT_TRUE(g->stack_->WaitForAgent("chat")) << "the worker never announced its agents";
  }
  g->gateway_ = GatewayProcess::Start(*g->stack_, "chat", std::move(gateway_flags));
  if (g->gateway_ == nullptr) return nullptr;
  return g;
}

std::string GatewayStack::PostBody(const std::string& chat_id, const std::string& message_id,
                                   const std::string& text) {
  return DumpJson(Json{{"id", chat_id},
                       {"messages", Json::array({UserMessage(message_id, text)})},
                       {"trigger", "submit-message"}});
}

HttpHeaderList GatewayStack::WithJson(HttpHeaderList headers) {
  headers.emplace_back("Content-Type", "application/json");
  return headers;
}

}  // namespace baton::testing
