// File: tools/gateway/http_request.h
//
// An HTTP/1.1 request and its parser: Debian's http-parser (libhttp-parser) under limits on the
// head and the body. No I/O here, so the fuzz target (tests/fuzz/gateway_http_fuzz.cc) drives
// it with any bytes.
#ifndef BATON_TOOLS_GATEWAY_HTTP_REQUEST_H_
#define BATON_TOOLS_GATEWAY_HTTP_REQUEST_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace baton::gateway {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;   // "GET", "POST", ...
  std::string target;   // as sent: path and query
  std::string path;     // percent-decoding is the handler's (a chat id may hold an escaped '/')
  std::string query;    // after '?', undecoded
  HttpHeaders headers;  // names lower-cased, in order
  std::string body;
  std::string peer;  // "ip:port" of the client

  // The first value of header `name` (lower case), or "".
  std::string_view Header(std::string_view name) const;
  int HeaderCount(std::string_view name) const;
  // A query parameter, percent-decoded ("" when absent).
  std::string Param(std::string_view name) const;
};

// `text` with %XX escapes decoded (and '+' as a space when `plus_is_space`); a malformed
// escape stays as it is.
std::string PercentDecode(std::string_view text, bool plus_is_space);

// Parses requests one at a time: it stops at each request's end, and the bytes after it (a
// pipelined request) are the caller's to feed again once the response is done.
class HttpRequestParser {
 public:
  HttpRequestParser(size_t max_header_bytes, size_t max_body_bytes);
  ~HttpRequestParser();

  // Parses what it can of `data`; returns how much it took. The rest waits: a request is
  // complete(), or an error is set.
  size_t Feed(std::string_view data);
  bool complete() const;
  // Non-zero when the request cannot be taken: the HTTP status to answer (400, 413, 431), and
  // why.
  int error_status() const;
  const std::string& error() const;
  size_t head_bytes() const;  // of the request being read
  // The complete request; the parser is ready for the next. `keep_alive`: whether the
  // connection may carry another request after it.
  HttpRequest Take(std::string peer, bool* keep_alive);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::gateway

#endif  // BATON_TOOLS_GATEWAY_HTTP_REQUEST_H_
