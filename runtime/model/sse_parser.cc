#include "runtime/model/sse_parser.h"

namespace baton {

absl::Status SseParser::Feed(std::string_view bytes,
                             const std::function<void(SseEvent)>& on_event) {
  if (failed_) return absl::FailedPreconditionError("the event stream already failed");
  size_t start = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (c != '\n' && c != '\r') continue;
    if (c == '\n' && skip_lf_ && i == start && line_.empty()) {
      skip_lf_ = false;  // the '\n' of a "\r\n" split across reads
      start = i + 1;
      continue;
    }
    line_.append(bytes.substr(start, i - start));
    Line(line_, on_event);
    line_.clear();
    skip_lf_ = c == '\r';
    if (c == '\r' && i + 1 < bytes.size() && bytes[i + 1] == '\n') {
      ++i;
      skip_lf_ = false;
    }
    start = i + 1;
  }
  if (start < bytes.size()) {
    skip_lf_ = false;
    line_.append(bytes.substr(start));
  }
  if (line_.size() + current_.data.size() > kMaxEventBytes) {
    failed_ = true;
    return absl::ResourceExhaustedError("an event of the stream exceeds 16 MiB");
  }
  return absl::OkStatus();
}

void SseParser::Line(std::string_view line, const std::function<void(SseEvent)>& on_event) {
  if (line.empty()) {
    if (has_data_) on_event(std::move(current_));
    current_ = SseEvent();
    has_data_ = false;
    in_event_ = false;
    return;
  }
  in_event_ = true;
  if (line.front() == ':') return;  // a comment (keep-alive)
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    current_.event = std::string(value);
  } else if (field == "id") {
    current_.id = std::string(value);
  }
  // "retry" and unknown fields are ignored, as the standard says.
}

bool SseParser::Finish() {
  bool cut = !line_.empty() || in_event_;
  line_.clear();
  current_ = SseEvent();
  has_data_ = false;
  in_event_ = false;
  return cut;
}

}  // namespace baton
