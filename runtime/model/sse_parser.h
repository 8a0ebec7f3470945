// File: runtime/model/sse_parser.h
//
// SseParser: an incremental parser of `text/event-stream` bodies (the WHATWG event stream
// format), fed whatever bytes each network read brought. It works on bytes and splits only at
// line ends, so an event, a line, or a UTF-8 character cut across reads is reassembled whole
// before anything decodes it (reference/llm-wire.md pitfall 11).
#ifndef BATON_RUNTIME_MODEL_SSE_PARSER_H_
#define BATON_RUNTIME_MODEL_SSE_PARSER_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace baton {

struct SseEvent {
  std::string event;  // the `event:` field, "" when absent
  std::string data;   // the `data:` lines joined with "\n"
  std::string id;     // the `id:` field, "" when absent
};

// Thread-safety: none; one parser per stream.
class SseParser {
 public:
  // An event's data may not grow past this; a stream that tries is refused.
  static constexpr size_t kMaxEventBytes = 16 << 20;

  // Parses `bytes`, calling `on_event` for every event completed by them (an event ends at a
  // blank line; one with no data lines is not dispatched). Returns ResourceExhausted when an
  // event outgrows kMaxEventBytes; the parser is then unusable.
  absl::Status Feed(std::string_view bytes, const std::function<void(SseEvent)>& on_event);

  // The stream ended. Returns true when it ended inside an event (bytes with no closing blank
  // line), which is discarded, never parsed.
  bool Finish();

 private:
  void Line(std::string_view line, const std::function<void(SseEvent)>& on_event);

  std::string line_;      // the line being read
  bool skip_lf_ = false;  // the last byte was '\r': a following '\n' ends nothing more
  SseEvent current_;
  bool has_data_ = false;
  bool in_event_ = false;  // a field line has been read since the last dispatch
  bool failed_ = false;
};

}  // namespace baton

#endif  // BATON_RUNTIME_MODEL_SSE_PARSER_H_
