// The HTTP/1.1 request parser of fake-llm: framing by Content-Length and chunked, requests cut
// at every byte and pipelined, the limits, and bad input.
#include "tools/fake-llm/http_request.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton::fakellm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

struct Parsed {
  std::vector<HttpRequest> requests;
  absl::Status status;
};

// Feeds `bytes` in pieces cut at `cuts` (sorted offsets).
Parsed FeedCut(std::string_view bytes, const std::vector<size_t>& cuts) {
  HttpRequestParser parser;
  Parsed parsed;
  size_t from = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(bytes.size());
  for (size_t end : ends) {
    parsed.status = parser.Feed(bytes.substr(from, end - from), parsed.requests);
    if (!parsed.status.ok()) break;
    from = end;
  }
  return parsed;
}

Parsed FeedAll(std::string_view bytes) { return FeedCut(bytes, {}); }

std::string Describe(const HttpRequest& r) {
  std::string out = r.method + " " + r.target + " " + r.version + "\n";
  for (const auto& [name, value] : r.headers) out += name + "=" + value + "\n";
  return out + "body[" + r.body + "]";
}

std::vector<std::string> Describe(const std::vector<HttpRequest>& requests) {
  std::vector<std::string> out;
  for (const HttpRequest& r : requests) out.push_back(Describe(r));
  return out;
}

constexpr std::string_view kPost =
    "POST /v1/messages?beta=true HTTP/1.1\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "Content-Type:application/json\r\n"
    "X-Api-Key:   sk-1  \r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "{\"model\":\"m\"}";

constexpr std::string_view kChunked =
    "POST /v1/chat/completions HTTP/1.1\r\n"
    "Transfer-Encoding: chunked\r\n"
    "\r\n"
    "5;name=value\r\n"
    "{\"a\":\r\n"
    "A\r\n"
    "\"0123456\"}\r\n"
    "0\r\n"
    "X-Trailer: yes\r\n"
    "\r\n";

constexpr std::string_view kGet = "GET /__fake/requests HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(HttpRequestParserTest, ParsesARequestWithAContentLengthBody) {
  Parsed parsed = FeedAll(kPost);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.requests.size(), 1u);
  const HttpRequest& r = parsed.requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/v1/messages?beta=true");
  EXPECT_EQ(r.Path(), "/v1/messages");
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_THAT(r.headers,
              ElementsAre(Pair("host", "127.0.0.1:8080"), Pair("content-type", "application/json"),
                          Pair("x-api-key", "sk-1"), Pair("content-length", "13")));
  EXPECT_EQ(r.Header("X-API-KEY"), "sk-1");
  EXPECT_EQ(r.Header("authorization"), "");
  EXPECT_EQ(r.body, "{\"model\":\"m\"}");
  EXPECT_TRUE(r.KeepAlive());
}

TEST(HttpRequestParserTest, DecodesAChunkedBodyWithExtensionsAndTrailers) {
  Parsed parsed = FeedAll(kChunked);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.requests.size(), 1u);
  EXPECT_EQ(parsed.requests[0].body, "{\"a\":\"0123456\"}");
  EXPECT_EQ(parsed.requests[0].Header("transfer-encoding"), "chunked");
  EXPECT_EQ(parsed.requests[0].Header("x-trailer"), "");  // trailers are dropped
}

TEST(HttpRequestParserTest, PipelinedRequestsInOneReadComeOutInOrder) {
  std::string bytes = std::string(kPost) + std::string(kChunked) + std::string(kGet);
  Parsed parsed = FeedAll(bytes);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.requests.size(), 3u);
  EXPECT_EQ(parsed.requests[0].Path(), "/v1/messages");
  EXPECT_EQ(parsed.requests[1].Path(), "/v1/chat/completions");
  EXPECT_EQ(parsed.requests[2].method, "GET");
  EXPECT_EQ(parsed.requests[2].body, "");
}

TEST(HttpRequestParserTest, EveryCutGivesTheSameRequests) {
  // Bare LF line ends and empty lines between requests are accepted too.
  std::string bytes = std::string(kPost) + std::string(kChunked) + "\r\n" + std::string(kGet) +
                      "PUT /x HTTP/1.0\nContent-Length: 2\n\nok";
  Parsed whole = FeedAll(bytes);
  ASSERT_TRUE(whole.status.ok()) << whole.status;
  ASSERT_EQ(whole.requests.size(), 4u);
  EXPECT_EQ(whole.requests[3].body, "ok");
  std::vector<std::string> expected = Describe(whole.requests);
  for (size_t cut = 1; cut < bytes.size(); ++cut) {
    Parsed parsed = FeedCut(bytes, {cut});
    ASSERT_TRUE(parsed.status.ok()) << "cut at " << cut << ": " << parsed.status;
    ASSERT_EQ(Describe(parsed.requests), expected) << "cut at " << cut;
  }
  // And one byte per read.
  std::vector<size_t> every;
  for (size_t i = 1; i < bytes.size(); ++i) every.push_back(i);
  EXPECT_EQ(Describe(FeedCut(bytes, every).requests), expected);
}

TEST(HttpRequestParserTest, IdleOnlyBetweenRequests) {
  HttpRequestParser parser;
  std::vector<HttpRequest> out;
  EXPECT_TRUE(parser.idle());
  ASSERT_TRUE(parser.Feed(kPost.substr(0, 20), out).ok());
  EXPECT_FALSE(parser.idle());
  ASSERT_TRUE(parser.Feed(kPost.substr(20), out).ok());
  EXPECT_TRUE(parser.idle());
  EXPECT_EQ(out.size(), 1u);
}

TEST(HttpRequestParserTest, ExpectContinueIsReportedOnceWhileTheBodyIsMissing) {
  constexpr std::string_view kHead =
      "POST /v1/messages HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  HttpRequestParser parser;
  std::vector<HttpRequest> out;
  ASSERT_TRUE(parser.Feed(kHead, out).ok());
  EXPECT_TRUE(parser.TakeExpectContinue());
  EXPECT_FALSE(parser.TakeExpectContinue());
  ASSERT_TRUE(parser.Feed("{}", out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].body, "{}");

  // Head and body in one read: nothing to continue.
  HttpRequestParser whole;
  out.clear();
  ASSERT_TRUE(whole.Feed(std::string(kHead) + "{}", out).ok());
  EXPECT_FALSE(whole.TakeExpectContinue());
  EXPECT_EQ(out.size(), 1u);
}

TEST(HttpRequestParserTest, KeepAliveFollowsVersionAndConnectionHeader) {
  auto parse = [](std::string_view bytes) {
    Parsed parsed = FeedAll(bytes);
    EXPECT_EQ(parsed.requests.size(), 1u);
    return parsed.requests.empty() ? HttpRequest() : parsed.requests[0];
  };
  EXPECT_TRUE(parse("GET / HTTP/1.1\r\n\r\n").KeepAlive());
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").KeepAlive());
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").KeepAlive());
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").KeepAlive());
  EXPECT_EQ(parse("GET http://h:1/v1/models?x HTTP/1.1\r\n\r\n").Path(), "/v1/models");
}

TEST(HttpRequestParserTest, HeaderBlockOverTheLimitIs431) {
  std::string head =
      "GET / HTTP/1.1\r\nX-Big: " + std::string(HttpRequestParser::kMaxHeaderBytes, 'a') +
      "\r\n\r\n";
  // Whole, and with the end of the head never arriving.
  for (std::string_view bytes : {std::string_view(head), std::string_view(head).substr(0, 70000)}) {
    Parsed parsed = FeedAll(bytes);
    EXPECT_TRUE(absl::IsResourceExhausted(parsed.status)) << parsed.status;
    EXPECT_EQ(HttpRequestParser::HttpStatusFor(parsed.status), 431);
    EXPECT_TRUE(parsed.requests.empty());
  }
  // Just under the limit is fine.
  std::string fits = "GET / HTTP/1.1\r\nX: ";
  fits += std::string(HttpRequestParser::kMaxHeaderBytes - fits.size() - 4, 'a') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), HttpRequestParser::kMaxHeaderBytes);
  Parsed parsed = FeedAll(fits);
  EXPECT_TRUE(parsed.status.ok()) << parsed.status;
  EXPECT_EQ(parsed.requests.size(), 1u);
}

TEST(HttpRequestParserTest, BodyOverTheLimitIs413) {
  // Said by Content-Length: refused at the head, before any body byte.
  Parsed declared = FeedAll("POST / HTTP/1.1\r\nContent-Length: 33554433\r\n\r\n");
  EXPECT_TRUE(absl::IsResourceExhausted(declared.status)) << declared.status;
  EXPECT_EQ(HttpRequestParser::HttpStatusFor(declared.status), 413);
  Parsed huge = FeedAll("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
  EXPECT_EQ(HttpRequestParser::HttpStatusFor(huge.status), 413);

  // Chunked: refused when the chunk sizes add up past it.
  HttpRequestParser parser;
  std::vector<HttpRequest> out;
  ASSERT_TRUE(parser.Feed("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", out).ok());
  std::string chunk = "1000000\r\n" + std::string(16 << 20, 'x') + "\r\n";  // 16 MiB
  ASSERT_TRUE(parser.Feed(chunk, out).ok());
  ASSERT_TRUE(parser.Feed(chunk, out).ok());  // 32 MiB: exactly the limit
  absl::Status over = parser.Feed("1\r\n", out);
  EXPECT_EQ(HttpRequestParser::HttpStatusFor(over), 413) << over;
  EXPECT_TRUE(out.empty());
  Parsed giant =
      FeedAll("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n");
  EXPECT_EQ(HttpRequestParser::HttpStatusFor(giant.status), 413) << giant.status;
}

TEST(HttpRequestParserTest, GarbageIs400AndTheParserStaysFailed) {
  const std::vector<std::string> bad = {
      "hello\r\n\r\n",
      "GET /\r\n\r\n",
      "GET / HTTP/2.0\r\n\r\n",
      "GET  / HTTP/1.1\r\n\r\n",
      "G(T / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
      "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
      "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
      "GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2 x\r\nab\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a trailer\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(5000, '1'),
  };
  for (const std::string& bytes : bad) {
    HttpRequestParser parser;
    std::vector<HttpRequest> out;
    absl::Status status = parser.Feed(bytes, out);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << bytes << ": " << status;
    EXPECT_EQ(HttpRequestParser::HttpStatusFor(status), 400) << bytes;
    EXPECT_THAT(status.message(), HasSubstr("bad HTTP request"));
    EXPECT_TRUE(out.empty()) << bytes;
    // Nothing more is parsed after an error.
    EXPECT_EQ(parser.Feed(kGet, out), status);
    EXPECT_TRUE(out.empty());
  }
}

TEST(HttpRequestParserTest, RequestsBeforeTheBadBytesStillComeOut) {
  Parsed parsed = FeedAll(std::string(kGet) + "BAD\r\n\r\n");
  EXPECT_FALSE(parsed.status.ok());
  ASSERT_EQ(parsed.requests.size(), 1u);
  EXPECT_EQ(parsed.requests[0].target, "/__fake/requests");
}

}  // namespace
}  // namespace baton::fakellm
