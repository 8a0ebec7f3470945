// fake-llm over real loopback sockets: a plain POSIX client in the test sends exact bytes and
// reads exact bytes back (status line, headers, chunk boundaries, where the connection ends),
// plus one libcurl client and the fake-llm binary itself.
#include "tools/fake-llm/fake_llm.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/model/sse_parser.h"

namespace baton::fakellm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr auto kLimit = std::chrono::seconds(20);
constexpr int kReadTimeoutMs = 20000;

struct Response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;                                          // decoded
  std::vector<std::string> chunks;  // a chunked body's chunks, as framed by the server
  bool complete = false;            // ended by its framing, not cut by the connection's end

  std::string Header(std::string_view name) const {
    for (const auto& [key, value] : headers) {
      if (key == name) return value;
    }
    return "";
  }
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A blocking HTTP/1.1 client on a plain socket. Every read waits at most kReadTimeoutMs, so a
// server that misbehaves fails the test instead of hanging it.
class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~Client() { Close(); }

  bool connected() const { return connected_; }

  void Send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << "send failed";
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Reads what one read() brings into the buffer; false at the end of the connection.
  bool ReadMore() {
    if (eof_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, kReadTimeoutMs) != 1) {
      ADD_FAILURE() << "no bytes from the server in " << kReadTimeoutMs << " ms";
      eof_ = true;
      return false;
    }
    char data[16384];
    ssize_t n = ::recv(fd_, data, sizeof data, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(data, static_cast<size_t>(n));
    return true;
  }

  // Reads until `bytes` more bytes are buffered; false when the connection ends first.
  bool Need(size_t bytes) {
    while (buffer_.size() < bytes) {
      if (!ReadMore()) return false;
    }
    return true;
  }

  // The next line (without its CRLF); nullopt when the connection ends first.
  std::optional<std::string> Line() {
    size_t end;
    while ((end = buffer_.find("\r\n")) == std::string::npos) {
      if (!ReadMore()) return std::nullopt;
    }
    std::string line = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    return line;
  }

  // Reads one response (a 100 Continue counts as one).
  Response Read() {
    Response r;
    std::optional<std::string> status = Line();
    if (!status.has_value()) return r;
    EXPECT_EQ(status->substr(0, 9), "HTTP/1.1 ") << *status;
    r.status = std::atoi(status->substr(9, 3).c_str());
    for (;;) {
      std::optional<std::string> line = Line();
      if (!line.has_value()) return r;
      if (line->empty()) break;
      size_t colon = line->find(':');
      r.headers.emplace_back(Lower(line->substr(0, colon)), line->substr(colon + 2));
    }
    if (r.status < 200) {
      r.complete = true;
      return r;
    }
    if (r.Header("transfer-encoding") == "chunked") {
      for (;;) {
        std::optional<std::string> size_line = Line();
        if (!size_line.has_value()) return r;
        size_t size = std::stoul(*size_line, nullptr, 16);
        if (!Need(size + 2)) return r;
        if (size == 0) {
          EXPECT_EQ(buffer_.substr(0, 2), "\r\n");
          buffer_.erase(0, 2);
          r.complete = true;
          return r;
        }
        r.chunks.push_back(buffer_.substr(0, size));
        r.body += r.chunks.back();
        EXPECT_EQ(buffer_.substr(size, 2), "\r\n");
        buffer_.erase(0, size + 2);
      }
    }
    size_t length = std::stoul(r.Header("content-length"));
    if (!Need(length)) return r;
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    r.complete = true;
    return r;
  }

  // True when bytes are buffered or arrive within `wait` (for checks that nothing comes).
  bool Readable(std::chrono::milliseconds wait) {
    if (!buffer_.empty()) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(wait.count())) == 1;
  }

  // True when the server ends the connection (after everything buffered was read).
  bool AtEnd() {
    while (ReadMore()) {
    }
    return buffer_.empty();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

std::string Post(std::string_view path, std::string_view body, std::string_view extra = "") {
  return std::string("POST ") + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         std::string(extra) +
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string(body);
}

std::string Get(std::string_view path) {
  return std::string("GET ") + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}

std::vector<std::string> EventNames(std::string_view body) {
  SseParser parser;
  std::vector<std::string> names;
  absl::Status status = parser.Feed(body, [&](SseEvent e) { names.push_back(e.event); });
  EXPECT_TRUE(status.ok()) << status;
  return names;
}

std::unique_ptr<FakeLlm> Serve(std::string_view script) {
  absl::StatusOr<std::unique_ptr<FakeLlm>> server = FakeLlm::Start(Json::parse(script));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

TEST(FakeLlmTest, AnswersWithStatusHeadersAndBodyThenSaysWhenTheScriptRunsOut) {
  auto server = Serve(R"({"responses": [{"status": 429, "headers": {"retry-after": "1"},
      "body": {"type": "error", "error": {"type": "rate_limit_error", "message": "Slow"}}}]})");
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->base_url(), "http://127.0.0.1:" + std::to_string(server->port()));
  Client client(server->port());
  ASSERT_TRUE(client.connected());
  client.Send(Post("/v1/messages", "{}"));
  Response r = client.Read();
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.Header("retry-after"), "1");
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("connection"), "keep-alive");
  EXPECT_EQ(r.body, R"({"type":"error","error":{"type":"rate_limit_error","message":"Slow"}})");

  // The same connection: nothing left in the script.
  client.Send(Post("/v1/messages", "{}"));
  Response none = client.Read();
  EXPECT_EQ(none.status, 500);
  EXPECT_EQ(none.body, R"({"error":{"message":"fake-llm: no scripted response for request 2"}})");
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].response, 0);
  EXPECT_EQ(requests[1].response, -1);
}

TEST(FakeLlmTest, StreamsAReplyAsChunkedSseOnAKeepAliveConnection) {
  auto server = Serve(R"({"responses": [{"reply": {"text": "Hi there."}},
                                        {"reply": {"text": "Hello"}}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}"));
  Response r = client.Read();
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/event-stream");
  EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
  EXPECT_EQ(r.chunks.size(), 8u);  // one write per event
  EXPECT_THAT(
      EventNames(r.body),
      ElementsAre("message_start", "content_block_start", "ping", "content_block_delta",
                  "content_block_delta", "content_block_stop", "message_delta", "message_stop"));

  client.Send(Post("/v1/chat/completions", "{}"));
  Response openai = client.Read();
  EXPECT_TRUE(openai.complete);
  EXPECT_THAT(openai.body, HasSubstr("chat.completion.chunk"));
  EXPECT_EQ(openai.chunks.back(), "data: [DONE]\n\n");
}

TEST(FakeLlmTest, RecordsEveryRequest) {
  auto server =
      Serve(R"({"responses": [{"status": 200, "body": "{}"}, {"status": 200, "body": ""}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages?beta=true", R"({"model":"m","messages":[{"text":"Grüße"}]})",
                   "X-Api-Key: sk-1\r\nAnthropic-Version: 2023-06-01\r\n"));
  EXPECT_EQ(client.Read().status, 200);
  client.Send(Post("/v1/chat/completions", "not json"));
  EXPECT_EQ(client.Read().status, 200);
  ASSERT_TRUE(server->WaitForRequests(2, kLimit));
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 2u);
  const RecordedRequest& r = requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/messages");
  EXPECT_EQ(r.Header("x-api-key"), "sk-1");
  EXPECT_EQ(r.Header("Anthropic-Version"), "2023-06-01");
  EXPECT_EQ(r.Header("authorization"), "");
  EXPECT_EQ(r.headers[0].first, "host");
  EXPECT_EQ(r.body, R"({"model":"m","messages":[{"text":"Grüße"}]})");
  EXPECT_EQ(r.json["messages"][0]["text"], "Grüße");
  EXPECT_EQ(r.response, 0);
  EXPECT_FALSE(r.client_closed);
  EXPECT_EQ(requests[1].body, "not json");
  EXPECT_TRUE(requests[1].json.is_null());
  EXPECT_EQ(requests[1].response, 1);
}

TEST(FakeLlmTest, ChunkedRequestBodiesAreDecoded) {
  auto server = Serve(R"({"responses": [{"match": {"contains": "Oslo"}, "status": 201}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(
      "POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "9\r\n{\"city\":\"\r\n6\r\nOslo\"}\r\n0\r\n\r\n");
  Response r = client.Read();
  EXPECT_EQ(r.status, 201);
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].json, Json::parse(R"({"city":"Oslo"})"));
}

TEST(FakeLlmTest, PipelinedRequestsAreAnsweredInOrder) {
  auto server = Serve(R"({"responses": [
      {"match": {"contains": "first"}, "reply": {"text": "one two three"}, "delay_ms": 5},
      {"match": {"contains": "second"}, "status": 202, "body": "2"}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "first") + Post("/v1/messages", "second"));
  Response first = client.Read();
  Response second = client.Read();
  EXPECT_EQ(first.status, 200);
  EXPECT_TRUE(first.complete);
  EXPECT_EQ(second.status, 202);
  EXPECT_EQ(second.body, "2");
}

TEST(FakeLlmTest, TruncateAfterClosesWithoutTheTerminator) {
  auto server = Serve(R"({"responses": [{"reply": {"text": "a b c d"}, "truncate_after": 2}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/chat/completions", "{}"));
  Response r = client.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("connection"), "close");
  EXPECT_FALSE(r.complete);  // the connection ended where the body should go on
  ASSERT_EQ(r.chunks.size(), 2u);
  EXPECT_THAT(r.chunks[1], HasSubstr(R"("content":"a ")"));
  EXPECT_TRUE(client.AtEnd());
  // The server cut it, not the client.
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_FALSE(requests[0].client_closed);
}

TEST(FakeLlmTest, SplitAtAndChunkBytesDeliverTheBytesAsGiven) {
  auto server = Serve(R"({"responses": [
      {"events": [{"raw": "event: a\ndata: 1\n\n"}, {"raw": "event: b\ndata: 2\n\n"}],
       "split_at": [3, 20]},
      {"events": [{"raw": "data: 0123456789\n\n"}], "chunk_bytes": 4}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}"));
  Response split = client.Read();
  EXPECT_TRUE(split.complete);
  // Each write went out as its own chunk, so the chunk boundaries are the write boundaries.
  EXPECT_THAT(split.chunks, ElementsAre("eve", "nt: a\ndata: 1\n\nev", "ent: b\ndata: 2\n\n"));
  client.Send(Post("/v1/messages", "{}"));
  Response bytes = client.Read();
  EXPECT_THAT(bytes.chunks, ElementsAre("data", ": 01", "2345", "6789", "\n\n"));
}

TEST(FakeLlmTest, HangKeepsTheRequestOpenUntilTheClientLeaves) {
  auto server = Serve(R"({"responses": [{"hang": true}, {"status": 204}]})");
  ASSERT_NE(server, nullptr);
  Client hung(server->port());
  hung.Send(Post("/v1/messages", "{}"));
  ASSERT_TRUE(server->WaitForRequests(1, kLimit));
  EXPECT_FALSE(server->requests()[0].client_closed);

  // Another connection is served meanwhile.
  Client other(server->port());
  other.Send(Post("/v1/messages", "{}"));
  EXPECT_EQ(other.Read().status, 204);

  hung.Close();
  EXPECT_TRUE(server->WaitForClientClose(0, kLimit));
  EXPECT_TRUE(server->requests()[0].client_closed);
  EXPECT_FALSE(server->requests()[1].client_closed);
}

TEST(FakeLlmTest, AHeldStreamGoesOnWhenTheScriptClockPassesItsHold) {
  auto server = Serve(R"({"responses": [{"events": [{"type": "a"}, {"hold_ms": 100},
      {"type": "b"}, {"hold_ms": 50}, {"type": "c"}]}, {"events": [{"type": "d"}]}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}"));
  // Reads CRLF-ended lines (a chunk's data is one: SSE lines end in LF) up to and including
  // one that holds `text`; false when the connection ends first.
  auto until = [&client](const std::string& text) {
    while (std::optional<std::string> line = client.Line()) {
      if (line->find(text) != std::string::npos) return true;
    }
    return false;
  };
  // The head and the first event come at once; the rest waits for the clock.
  ASSERT_TRUE(until("event: a"));
  EXPECT_FALSE(client.Readable(std::chrono::milliseconds(100)));

  // 99 ms of the script clock is not enough; 100 releases "b", not "c". The clock moves by a
  // control request (on another connection) or by the call.
  Client control(server->port());
  control.Send(Post("/__fake/clock", R"({"advance_ms": 99})"));
  Response moved = control.Read();
  EXPECT_EQ(moved.status, 200);
  EXPECT_EQ(Json::parse(moved.body)["clock_ms"], 99);
  EXPECT_FALSE(client.Readable(std::chrono::milliseconds(100)));
  server->AdvanceScriptClock(std::chrono::milliseconds(1));
  ASSERT_TRUE(until("event: b"));
  EXPECT_FALSE(client.Readable(std::chrono::milliseconds(100)));

  // A request that arrives now counts its holds from its own arrival: it has none to wait for.
  Client later(server->port());
  later.Send(Post("/v1/messages", "{}"));
  Response d = later.Read();
  EXPECT_TRUE(d.complete);
  EXPECT_THAT(EventNames(d.body), ElementsAre("d"));

  server->AdvanceScriptClock(std::chrono::milliseconds(50));
  ASSERT_TRUE(until("event: c"));
  EXPECT_EQ(client.Line(), "0");  // the terminating chunk: the response is complete
  EXPECT_EQ(client.Line(), "");
  EXPECT_FALSE(server->requests()[0].client_closed);

  control.Send(Post("/__fake/clock", R"({"advance_ms": -1})"));
  EXPECT_EQ(control.Read().status, 400);
}

TEST(FakeLlmTest, AClientLeavingAHeldStreamIsRecorded) {
  auto server = Serve(R"({"responses": [{"events": [{"type": "a"}, {"hold_ms": 1000},
      {"type": "b"}]}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}"));
  ASSERT_TRUE(client.Line().has_value());
  client.Close();
  EXPECT_TRUE(server->WaitForClientClose(0, kLimit));
}

TEST(FakeLlmTest, StoppingTheServerDropsOpenConnections) {
  auto server = Serve(R"({"responses": [{"hang": true},
      {"reply": {"text": "one two three"}, "delay_ms": 60000}]})");
  ASSERT_NE(server, nullptr);
  Client hung(server->port());
  hung.Send(Post("/v1/messages", "{}"));
  Client slow(server->port());
  slow.Send(Post("/v1/messages", "{}"));
  ASSERT_TRUE(server->WaitForRequests(2, kLimit));
  server.reset();
  EXPECT_EQ(hung.Read().status, 0);  // nothing came, and the connection ended
  EXPECT_TRUE(hung.AtEnd());
  EXPECT_FALSE(slow.Read().complete);  // its second event was a minute away
  EXPECT_TRUE(slow.AtEnd());
}

TEST(FakeLlmTest, AClientLeavingMidStreamIsRecorded) {
  auto server = Serve(R"({"responses": [
      {"reply": {"text": "one two three four five six seven eight nine ten"}, "delay_ms": 50}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}"));
  ASSERT_TRUE(client.Line().has_value());  // the status line: the response has started
  client.Close();
  EXPECT_TRUE(server->WaitForClientClose(0, kLimit));
}

TEST(FakeLlmTest, ACompleteResponseIsNotAClientClose) {
  auto server = Serve(R"({"responses": [{"reply": {"text": "done"}}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}"));
  EXPECT_TRUE(client.Read().complete);
  client.Close();
  EXPECT_FALSE(server->WaitForClientClose(0, std::chrono::milliseconds(200)));
}

TEST(FakeLlmTest, TtfbDelaysTheStatusLine) {
  auto server = Serve(R"({"responses": [{"status": 200, "body": "{}", "ttfb_ms": 150}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  auto start = std::chrono::steady_clock::now();
  client.Send(Post("/v1/messages", "{}"));
  EXPECT_EQ(client.Read().status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
}

TEST(FakeLlmTest, ExpectContinueGetsAnInterimResponse) {
  auto server = Serve(R"({"responses": [{"status": 201}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(
      "POST /v1/messages HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
      "Content-Length: 2\r\n\r\n");
  EXPECT_EQ(client.Read().status, 100);
  client.Send("{}");
  Response r = client.Read();
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.Header("content-length"), "0");
}

TEST(FakeLlmTest, BadRequestsGetAnErrorAndTheConnectionEnds) {
  auto server = Serve(R"({"responses": []})");
  ASSERT_NE(server, nullptr);
  {
    Client client(server->port());
    client.Send("NOT HTTP\r\n\r\n");
    Response r = client.Read();
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.Header("connection"), "close");
    EXPECT_THAT(r.body, HasSubstr("bad HTTP request"));
    EXPECT_TRUE(client.AtEnd());
  }
  {
    Client client(server->port());
    client.Send("POST /v1/messages HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n");
    Response r = client.Read();
    EXPECT_EQ(r.status, 413);
    EXPECT_TRUE(client.AtEnd());
  }
  EXPECT_TRUE(server->requests().empty());
}

TEST(FakeLlmTest, ConnectionCloseIsHonoured) {
  auto server = Serve(R"({"responses": [{"status": 200, "body": "{}"}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}", "Connection: close\r\n"));
  Response r = client.Read();
  EXPECT_EQ(r.Header("connection"), "close");
  EXPECT_TRUE(client.AtEnd());
}

TEST(FakeLlmTest, ControlEndpointsListRequestsAndReplaceTheScript) {
  auto server = Serve(R"({"responses": [{"status": 201}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", R"({"q":1})", "X-Api-Key: k\r\n"));
  EXPECT_EQ(client.Read().status, 201);

  client.Send(Get("/__fake/requests"));
  Response list = client.Read();
  EXPECT_EQ(list.status, 200);
  Json records = Json::parse(list.body);
  ASSERT_EQ(records.size(), 1u);  // control requests are not recorded
  EXPECT_EQ(records[0]["method"], "POST");
  EXPECT_EQ(records[0]["path"], "/v1/messages");
  EXPECT_EQ(records[0]["headers"]["x-api-key"], "k");
  EXPECT_EQ(records[0]["body"], R"({"q":1})");
  EXPECT_EQ(records[0]["json"], Json::parse(R"({"q":1})"));
  EXPECT_EQ(records[0]["response"], 0);
  EXPECT_EQ(records[0]["client_closed"], false);

  // A new script: numbering starts again, the records are cleared.
  client.Send(Post("/__fake/script", R"({"responses": [{"match": {"order": 1}, "status": 202}]})"));
  Response set = client.Read();
  EXPECT_EQ(set.status, 200);
  EXPECT_EQ(Json::parse(set.body)["responses"], 1);
  EXPECT_TRUE(server->requests().empty());
  client.Send(Post("/v1/messages", "{}"));
  EXPECT_EQ(client.Read().status, 202);

  client.Send(Post("/__fake/script", R"({"responses": [{"format": "gemini"}]})"));
  Response bad = client.Read();
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("responses[0].format"));
  EXPECT_EQ(server->requests().size(), 1u);  // the old script and records stay

  client.Send(Get("/__fake/nothing"));
  EXPECT_EQ(client.Read().status, 404);
}

TEST(FakeLlmTest, SetScriptReplacesTheScriptAndClearsTheRecords) {
  auto server = Serve(R"({"responses": [{"status": 201}]})");
  ASSERT_NE(server, nullptr);
  Client client(server->port());
  client.Send(Post("/v1/messages", "{}"));
  EXPECT_EQ(client.Read().status, 201);
  ASSERT_EQ(server->requests().size(), 1u);

  absl::Status bad =
      server->SetScript(Json::parse(R"({"responses": [{"events": [], "reply": {}}]})"));
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
  EXPECT_THAT(std::string(bad.message()), HasSubstr("responses[0]"));
  EXPECT_EQ(server->requests().size(), 1u);

  ASSERT_TRUE(server
                  ->SetScript(Json::parse(R"({"responses": [{"match": {"order": 1},
                                                                  "status": 203}]})"))
                  .ok());
  EXPECT_TRUE(server->requests().empty());
  client.Send(Post("/v1/messages", "{}"));
  EXPECT_EQ(client.Read().status, 203);
}

TEST(FakeLlmTest, StartRefusesBadScriptsAndBusyPorts) {
  auto bad = FakeLlm::Start(Json::parse(R"({"responses": [{"format": "x"}]})"));
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();

  auto server = Serve(R"({"responses": []})");
  ASSERT_NE(server, nullptr);
  auto busy = FakeLlm::Start(Json::parse(R"({"responses": []})"), "127.0.0.1", server->port());
  EXPECT_TRUE(absl::IsUnavailable(busy.status())) << busy.status();
}

TEST(FakeLlmTest, StartRefusesTlsFilesItCannotUse) {
  Json script = Json::parse(R"({"responses": []})");
  std::string missing = ::testing::TempDir() + "fake_llm_no_such.pem";
  auto no_key = FakeLlm::Start(script, "127.0.0.1", 0, TlsOptions{missing, ""});
  EXPECT_TRUE(absl::IsInvalidArgument(no_key.status())) << no_key.status();
  auto unreadable = FakeLlm::Start(script, "127.0.0.1", 0, TlsOptions{missing, missing});
  EXPECT_TRUE(absl::IsInvalidArgument(unreadable.status())) << unreadable.status();
  EXPECT_THAT(std::string(unreadable.status().message()), HasSubstr(missing));
}

TEST(FakeLlmTest, LoadScriptReadsAndChecksAFile) {
  std::string path = ::testing::TempDir() + "fake_llm_script.json";
  {
    std::ofstream out(path);
    out << R"({"responses": [{"reply": {"text": "hi"}}]})";
  }
  absl::StatusOr<Json> script = FakeLlm::LoadScript(path);
  ASSERT_TRUE(script.ok()) << script.status();
  EXPECT_EQ((*script)["responses"][0]["reply"]["text"], "hi");

  {
    std::ofstream out(path);
    out << R"({"responses": [{"reply": 1}]})";
  }
  absl::StatusOr<Json> invalid = FakeLlm::LoadScript(path);
  EXPECT_TRUE(absl::IsInvalidArgument(invalid.status()));
  EXPECT_THAT(std::string(invalid.status().message()), HasSubstr("responses[0].reply"));
  EXPECT_THAT(std::string(invalid.status().message()), HasSubstr(path));

  EXPECT_TRUE(absl::IsNotFound(FakeLlm::LoadScript(path + ".missing").status()));
  std::remove(path.c_str());
}

size_t CollectBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

TEST(FakeLlmTest, LibcurlReadsTheStreamAndReusesTheConnection) {
  auto server = Serve(R"({"responses": [{"reply": {"text": "Hi there."}, "chunk_bytes": 50},
                                        {"reply": {"text": "Again."}}]})");
  ASSERT_NE(server, nullptr);
  CURL* curl = curl_easy_init();
  ASSERT_NE(curl, nullptr);
  std::string url = server->base_url() + "/v1/messages";
  std::string big(4000, 'x');  // large enough for some clients to send Expect: 100-continue
  std::string request = R"({"pad":")" + big + R"("})";
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  for (int i = 0; i < 2; ++i) {
    std::string body;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, CollectBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 20L);
    CURLcode code = curl_easy_perform(curl);
    ASSERT_EQ(code, CURLE_OK) << curl_easy_strerror(code);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    EXPECT_EQ(status, 200);
    EXPECT_EQ(EventNames(body).back(), "message_stop");
    long connects = -1;
    curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &connects);
    EXPECT_EQ(connects, i == 0 ? 1 : 0) << "request " << i;  // the second reused the first
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  auto requests = server->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[1].json["pad"], big);
}

#ifdef FAKE_LLM_BINARY
TEST(FakeLlmBinaryTest, PrintsItsAddressServesAndStopsOnSigterm) {
  std::string path = ::testing::TempDir() + "fake_llm_binary_script.json";
  {
    std::ofstream out(path);
    out << R"({"responses": [{"status": 418, "body": "teapot"}]})";
  }
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::execl(FAKE_LLM_BINARY, FAKE_LLM_BINARY, "--script", path.c_str(), "--port", "0",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char c;
  pollfd p{out[0], POLLIN, 0};
  while (::poll(&p, 1, kReadTimeoutMs) == 1 && ::read(out[0], &c, 1) == 1 && c != '\n') {
    line.push_back(c);
  }
  ::close(out[0]);
  ASSERT_EQ(line.rfind("listening http://127.0.0.1:", 0), 0u) << line;
  uint16_t port = static_cast<uint16_t>(std::stoi(line.substr(line.rfind(':') + 1)));
  {
    Client client(port);
    ASSERT_TRUE(client.connected());
    client.Send(Post("/v1/messages", "{}"));
    Response r = client.Read();
    EXPECT_EQ(r.status, 418);
    EXPECT_EQ(r.body, "teapot");
    client.Send(Get("/__fake/requests"));
    EXPECT_EQ(Json::parse(client.Read().body).size(), 1u);
  }
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::remove(path.c_str());
}
#endif

}  // namespace
}  // namespace baton::fakellm
