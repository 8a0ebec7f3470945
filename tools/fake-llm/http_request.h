// File: tools/fake-llm/http_request.h
//
// HttpRequestParser: an incremental parser of HTTP/1.1 requests as a server reads them, fed
// whatever bytes each read brought. It handles keep-alive and pipelining (several requests in
// one read, or one request over many), bodies framed by Content-Length or by chunked
// Transfer-Encoding, and refuses what it cannot trust with a status that names the HTTP answer
// (400, 413, 431). Plain data, no I/O, so a fuzz target can drive it.
#ifndef BATON_TOOLS_FAKE_LLM_HTTP_REQUEST_H_
#define BATON_TOOLS_FAKE_LLM_HTTP_REQUEST_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace baton::fakellm {

struct HttpRequest {
  std::string method;   // as sent, e.g. "POST"
  std::string target;   // the request target as sent, e.g. "/v1/messages?beta=true"
  std::string version;  // "HTTP/1.1" or "HTTP/1.0"
  // In arrival order; names lowercased, values with surrounding whitespace removed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // decoded (chunked framing removed)

  // The target up to its query string.
  std::string_view Path() const;
  // The first value of header `name` (any case), "" when absent.
  std::string Header(std::string_view name) const;
  // Whether the connection stays open after the response (HTTP/1.1 unless "close"; HTTP/1.0 only
  // with "keep-alive").
  bool KeepAlive() const;
};

// Thread-safety: none; one parser per connection.
class HttpRequestParser {
 public:
  // The request line plus the header fields (and, separately, a chunked body's trailer fields).
  static constexpr size_t kMaxHeaderBytes = 64 << 10;
  // A decoded body.
  static constexpr size_t kMaxBodyBytes = 32 << 20;

  // Parses `bytes`, appending every request they complete to `out`. On bad input returns
  // InvalidArgument (answer 400), ResourceExhausted for a body over kMaxBodyBytes (413) or for
  // header fields over kMaxHeaderBytes (431); see HttpStatusFor(). The parser is then failed
  // and every later call returns the same error. Requests completed before the bad bytes are
  // still appended.
  absl::Status Feed(std::string_view bytes, std::vector<HttpRequest>& out);

  // True once after a request head with "Expect: 100-continue" whose body has not fully arrived
  // yet (the server should send "100 Continue"); reading it clears it.
  bool TakeExpectContinue();

  // No part of a request is buffered (a clean place for the connection to end).
  bool idle() const { return state_ == State::kHead && buffer_.size() == pos_; }

  // The HTTP status that answers an error returned by Feed(): 413, 431 or 400.
  static int HttpStatusFor(const absl::Status& error);

 private:
  enum class State { kHead, kBody, kChunkSize, kChunkData, kChunkDataEnd, kTrailers, kFailed };

  absl::Status Fail(absl::Status error);
  // Parses the complete head in buffer_[pos_, end) into current_; sets the body framing.
  absl::Status ParseHead(size_t end);
  // Moves a finished request to `out` and starts the next.
  void Complete(std::vector<HttpRequest>& out);
  // Finds the end of the line starting at `from` in buffer_ (the index of its '\n'), or npos.
  size_t FindLineEnd(size_t from) const;

  State state_ = State::kHead;
  absl::Status error_;
  std::string buffer_;  // bytes not yet consumed start at pos_
  size_t pos_ = 0;
  size_t scan_ = 0;        // kHead/kTrailers: where to look for the next line end
  size_t line_start_ = 0;  // kHead/kTrailers: the line being looked for begins here
  HttpRequest current_;
  size_t remaining_ = 0;  // kBody/kChunkData: body bytes still to come
  bool expect_continue_ = false;
};

}  // namespace baton::fakellm

#endif  // BATON_TOOLS_FAKE_LLM_HTTP_REQUEST_H_
