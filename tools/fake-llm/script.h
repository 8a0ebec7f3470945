// File: tools/fake-llm/script.h
//
// The script of fake-llm (docs/fake-llm.md): a list of scripted responses, the rule that picks
// one for each request, and the rendering of a response into the bytes the server writes, in
// the Anthropic Messages or the OpenAI Chat Completions streaming format
// (reference/llm-wire.md §3 and §4). Plain data, no I/O.
#ifndef BATON_TOOLS_FAKE_LLM_SCRIPT_H_
#define BATON_TOOLS_FAKE_LLM_SCRIPT_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "hooks/json.h"

namespace baton::fakellm {

enum class WireFormat { kAnthropic, kOpenAi };

// The format a request path implies when a response names none: a path ending in "/messages"
// (the Messages endpoint, "/v1/messages") is Anthropic, anything else OpenAI.
WireFormat FormatForPath(std::string_view path);

// One entry of the script's "responses" (see docs/fake-llm.md for each field).
struct ScriptedResponse {
  // "match": every field that is set must hold.
  std::optional<std::string> match_contains;  // a substring of the request body
  std::optional<std::string> match_path;      // the request path, exactly (query excluded)
  std::optional<int64_t> match_order;         // the request's 1-based number
  bool repeat = false;                        // may serve any number of requests
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
  std::optional<std::string> body;                           // a plain (non-SSE) body
  std::optional<WireFormat> format;
  Json events;  // the "events" array, or null
  Json reply;   // the "reply" object, or null
  int64_t ttfb_ms = 0;
  int64_t delay_ms = 0;
  std::optional<int64_t> truncate_after;
  int64_t chunk_bytes = 0;
  std::vector<int64_t> split_at;
  bool hang = false;

  bool streams() const { return !events.is_null() || !reply.is_null(); }
};

// How the server writes one response.
struct ResponsePlan {
  int status = 200;
  // Every header but the framing ones (Content-Length, Transfer-Encoding, Connection), names
  // lowercased; the script's headers replace the defaults of the same name.
  std::vector<std::pair<std::string, std::string>> headers;
  bool stream = false;                // an SSE body, framed chunked; else by Content-Length
  std::vector<std::string> writes;    // the body, cut into the writes the server makes
  std::chrono::milliseconds ttfb{0};  // wait before the status line
  std::chrono::microseconds gap{0};   // wait before each write but the first
  bool truncated = false;             // after the writes, close with no terminating chunk
  bool hang = false;                  // write nothing; keep the connection until the client closes
  // The `hold_ms` items of `events`: before write i, wait until the script clock reads
  // holds_ms[i] past its reading when the request arrived (empty: no holds); before the
  // terminating chunk, until it reads hold_end_ms past it.
  std::vector<int64_t> holds_ms;
  int64_t hold_end_ms = 0;

  // The whole body: the writes joined.
  std::string Body() const;
};

// Thread-safety: none; fake-llm guards its script with a lock.
class Script {
 public:
  // The wait between writes cut by chunk_bytes or split_at when delay_ms is 0, so that each
  // arrives in its own read.
  static constexpr std::chrono::microseconds kSplitGap{1000};

  Script() = default;

  // Validates `script` ({"responses": [...]}). InvalidArgument names the response index and
  // the field, e.g. `responses[2].format: ...`.
  static absl::StatusOr<Script> Parse(const Json& script);
  // Parses JSON text first (InvalidArgument on bad JSON).
  static absl::StatusOr<Script> ParseText(std::string_view text);

  // Counts a request and picks its response: the first one, in list order, that is unused (or
  // repeats) and whose match holds. Marks it used and returns its index, or -1 when none fits.
  int Pick(std::string_view path, std::string_view body);
  // How many requests Pick() has counted.
  int64_t requests() const { return requests_; }

  size_t size() const { return responses_.size(); }
  const ScriptedResponse& response(size_t index) const { return responses_[index]; }

  // How to write response `index` to a request for `path` (which decides the format when the
  // response names none). `order` is the request's number; default ids are made from it.
  ResponsePlan Render(size_t index, std::string_view path, int64_t order) const;
  // The answer when nothing is scripted for request `order`: a 500 that says so.
  static ResponsePlan NoResponse(int64_t order);

 private:
  std::vector<ScriptedResponse> responses_;
  std::vector<bool> used_;
  int64_t requests_ = 0;
};

// The building blocks of Render(), public for tests.

// The SSE bytes of one `events` item (docs/fake-llm.md, "events").
std::string RenderEvent(const Json& item, WireFormat format);
// The `events` items a high-level `reply` stands for: a complete stream of `format`.
Json ReplyEvents(const Json& reply, WireFormat format, int64_t order);
// `text` cut after each run of spaces: "Hi there." -> {"Hi ", "there."}.
std::vector<std::string> SplitWords(std::string_view text);

// The status line and headers of `plan`, framing included (chunked for a stream, else
// Content-Length), ending with the blank line.
std::string RenderHead(const ResponsePlan& plan, bool keep_alive);
// One chunk of a chunked body. Never call it with empty `data` (that is the terminator).
std::string ChunkFrame(std::string_view data);
// The terminator of a chunked body.
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace baton::fakellm

#endif  // BATON_TOOLS_FAKE_LLM_SCRIPT_H_
