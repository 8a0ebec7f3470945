#include "tools/fake-llm/http_request.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace baton::fakellm {
namespace {

// A chunk-size line (size, extensions) may not be longer than this.
constexpr size_t kMaxChunkLineBytes = 4096;

// Abseil's string_view is not std::string_view in the Debian build, so the few string helpers
// this parser needs are its own.
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

std::vector<std::string_view> Split(std::string_view s, char by) {
  std::vector<std::string_view> pieces;
  for (;;) {
    size_t at = s.find(by);
    pieces.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return pieces;
    s.remove_prefix(at + 1);
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return Lower(c) >= 'a' && Lower(c) <= 'z'; }
int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (Lower(c) >= 'a' && Lower(c) <= 'f') return Lower(c) - 'a' + 10;
  return -1;
}

// RFC 9110 token characters (method, header names).
bool IsTokenChar(char c) {
  if (IsDigit(c) || IsAlpha(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Control characters other than horizontal tab (bytes >= 0x80 are allowed: obs-text).
bool HasControl(std::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return true;
  }
  return false;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

absl::Status BadRequest(const char* what) {
  return absl::InvalidArgumentError(absl::StrCat("bad HTTP request: ", what));
}

absl::Status BodyTooLarge() {
  return absl::ResourceExhaustedError(
      absl::StrCat("request body larger than ", HttpRequestParser::kMaxBodyBytes, " bytes"));
}

absl::Status HeadTooLarge() {
  return absl::ResourceExhaustedError(absl::StrCat("request header fields larger than ",
                                                   HttpRequestParser::kMaxHeaderBytes, " bytes"));
}

}  // namespace

std::string_view HttpRequest::Path() const {
  std::string_view target(this->target);
  target = target.substr(0, target.find('?'));
  // The absolute form (a proxy request): drop the scheme and the authority.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (StartsWithIgnoreCase(target, scheme)) {
      target.remove_prefix(scheme.size());
      size_t slash = target.find('/');
      return slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  return target;
}

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return std::string();
}

bool HttpRequest::KeepAlive() const {
  bool close = false;
  bool keep_alive = false;
  for (const auto& [key, value] : headers) {
    if (key != "connection") continue;
    for (std::string_view option : Split(value, ',')) {
      option = TrimOws(option);
      if (EqualsIgnoreCase(option, "close")) close = true;
      if (EqualsIgnoreCase(option, "keep-alive")) keep_alive = true;
    }
  }
  if (close) return false;
  return version == "HTTP/1.1" || keep_alive;
}

int HttpRequestParser::HttpStatusFor(const absl::Status& error) {
  if (absl::IsResourceExhausted(error)) {
    return error.message().find("header fields") != absl::string_view::npos ? 431 : 413;
  }
  return 400;
}

bool HttpRequestParser::TakeExpectContinue() {
  bool expect = expect_continue_;
  expect_continue_ = false;
  return expect;
}

absl::Status HttpRequestParser::Fail(absl::Status error) {
  state_ = State::kFailed;
  error_ = error;
  buffer_.clear();
  pos_ = scan_ = line_start_ = 0;
  expect_continue_ = false;
  return error;
}

size_t HttpRequestParser::FindLineEnd(size_t from) const { return buffer_.find('\n', from); }

absl::Status HttpRequestParser::ParseHead(size_t end) {
  std::string_view head(buffer_.data() + pos_, end - pos_);
  std::vector<std::string_view> lines = Split(head, '\n');
  // `head` ends with the '\n' of its last line, so the split ends with an empty piece.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return BadRequest("no request line");
  for (std::string_view& line : lines) {
    line = StripCr(line);
    if (line.find('\r') != std::string_view::npos) return BadRequest("bare CR in the head");
  }

  std::vector<std::string_view> parts = Split(lines[0], ' ');
  if (parts.size() != 3) return BadRequest("the request line is not `METHOD TARGET VERSION`");
  if (!IsToken(parts[0])) return BadRequest("invalid method");
  if (parts[1].empty() || HasControl(parts[1])) return BadRequest("invalid request target");
  if (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") {
    return BadRequest("unsupported HTTP version");
  }
  current_.method = std::string(parts[0]);
  current_.target = std::string(parts[1]);
  current_.version = std::string(parts[2]);

  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') {
      return BadRequest("obsolete line folding in a header field");
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return BadRequest("a header line without a colon");
    std::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return BadRequest("invalid header field name");
    std::string_view value = TrimOws(line.substr(colon + 1));
    if (HasControl(value)) return BadRequest("control character in a header field value");
    current_.headers.emplace_back(Lower(name), std::string(value));
  }

  // Body framing (RFC 9112 §6.3). Both framings at once is a request smuggling signal: refused.
  bool has_length = false;
  bool chunked = false;
  bool has_transfer_encoding = false;
  uint64_t length = 0;
  bool expect_continue = false;
  for (const auto& [name, value] : current_.headers) {
    if (name == "content-length") {
      for (std::string_view item : Split(value, ',')) {
        item = TrimOws(item);
        if (item.empty()) return BadRequest("empty Content-Length");
        uint64_t parsed = 0;
        for (char c : item) {
          if (c < '0' || c > '9') return BadRequest("invalid Content-Length");
          if (parsed > kMaxBodyBytes) break;  // too large anyway; do not overflow
          parsed = parsed * 10 + static_cast<uint64_t>(c - '0');
        }
        if (has_length && parsed != length) return BadRequest("conflicting Content-Length");
        has_length = true;
        length = parsed;
      }
    } else if (name == "transfer-encoding") {
      for (std::string_view coding : Split(value, ',')) {
        coding = TrimOws(coding);
        if (coding.empty()) continue;
        // Only "chunked", once, is understood; anything else cannot be framed.
        if (!EqualsIgnoreCase(coding, "chunked") || chunked) {
          return BadRequest("unsupported Transfer-Encoding");
        }
        chunked = true;
      }
      has_transfer_encoding = true;
    } else if (name == "expect") {
      expect_continue = EqualsIgnoreCase(value, "100-continue");
    }
  }
  if (has_transfer_encoding && !chunked) return BadRequest("unsupported Transfer-Encoding");
  if (chunked && has_length) return BadRequest("both Content-Length and Transfer-Encoding");
  if (has_length && length > kMaxBodyBytes) return BodyTooLarge();

  if (chunked) {
    state_ = State::kChunkSize;
  } else if (length > 0) {
    state_ = State::kBody;
    remaining_ = static_cast<size_t>(length);
    current_.body.reserve(std::min<size_t>(remaining_, 1 << 20));  // a claim, not yet bytes
  } else {
    state_ = State::kHead;  // no body: complete
    return absl::OkStatus();
  }
  expect_continue_ = expect_continue;
  return absl::OkStatus();
}

void HttpRequestParser::Complete(std::vector<HttpRequest>& out) {
  out.push_back(std::move(current_));
  current_ = HttpRequest();
  state_ = State::kHead;
  line_start_ = scan_ = pos_;
  expect_continue_ = false;
}

absl::Status HttpRequestParser::Feed(std::string_view bytes, std::vector<HttpRequest>& out) {
  if (state_ == State::kFailed) return error_;
  buffer_.append(bytes);
  bool progress = true;
  while (progress) {
    progress = false;
    switch (state_) {
      case State::kHead: {
        size_t nl = FindLineEnd(scan_);
        if (nl == std::string::npos) {
          scan_ = buffer_.size();
          if (buffer_.size() - pos_ > kMaxHeaderBytes) return Fail(HeadTooLarge());
          break;
        }
        if (nl + 1 - pos_ > kMaxHeaderBytes) return Fail(HeadTooLarge());
        std::string_view line =
            StripCr(std::string_view(buffer_).substr(line_start_, nl - line_start_));
        progress = true;
        if (!line.empty()) {
          line_start_ = scan_ = nl + 1;
          break;
        }
        if (line_start_ == pos_) {
          // Empty lines before a request line are ignored (RFC 9112 §2.2).
          pos_ = line_start_ = scan_ = nl + 1;
          break;
        }
        if (absl::Status s = ParseHead(line_start_); !s.ok()) return Fail(s);
        pos_ = line_start_ = scan_ = nl + 1;
        if (state_ == State::kHead) Complete(out);
        break;
      }
      case State::kBody:
      case State::kChunkData: {
        size_t take = std::min(remaining_, buffer_.size() - pos_);
        if (take == 0) break;
        current_.body.append(buffer_, pos_, take);
        pos_ += take;
        remaining_ -= take;
        progress = true;
        if (remaining_ == 0) {
          if (state_ == State::kBody) {
            Complete(out);
          } else {
            state_ = State::kChunkDataEnd;
          }
        }
        break;
      }
      case State::kChunkDataEnd: {
        if (pos_ == buffer_.size()) break;
        if (buffer_[pos_] == '\n') {
          pos_ += 1;
        } else if (buffer_[pos_] == '\r') {
          if (pos_ + 1 == buffer_.size()) break;
          if (buffer_[pos_ + 1] != '\n') return Fail(BadRequest("chunk data not ended by CRLF"));
          pos_ += 2;
        } else {
          return Fail(BadRequest("chunk data longer than its size"));
        }
        state_ = State::kChunkSize;
        scan_ = pos_;
        progress = true;
        break;
      }
      case State::kChunkSize: {
        size_t nl = FindLineEnd(std::max(scan_, pos_));
        if (nl == std::string::npos) {
          scan_ = buffer_.size();
          if (buffer_.size() - pos_ > kMaxChunkLineBytes) {
            return Fail(BadRequest("chunk size line too long"));
          }
          break;
        }
        if (nl - pos_ > kMaxChunkLineBytes) return Fail(BadRequest("chunk size line too long"));
        std::string_view line = StripCr(std::string_view(buffer_).substr(pos_, nl - pos_));
        size_t digits = 0;
        uint64_t size = 0;
        while (digits < line.size() && HexValue(line[digits]) >= 0) {
          // Past the limit the size stops growing (it is refused below); no overflow.
          if (size <= kMaxBodyBytes)
            size = size * 16 + static_cast<uint64_t>(HexValue(line[digits]));
          ++digits;
        }
        if (digits == 0) return Fail(BadRequest("invalid chunk size"));
        std::string_view rest = TrimOws(line.substr(digits));
        if (!rest.empty() && rest.front() != ';') return Fail(BadRequest("invalid chunk size"));
        if (HasControl(rest) || rest.find('\r') != std::string_view::npos) {
          return Fail(BadRequest("invalid chunk extension"));
        }
        if (size > kMaxBodyBytes - current_.body.size()) return Fail(BodyTooLarge());
        pos_ = nl + 1;
        progress = true;
        if (size == 0) {
          state_ = State::kTrailers;
          line_start_ = scan_ = pos_;
        } else {
          state_ = State::kChunkData;
          remaining_ = static_cast<size_t>(size);
        }
        break;
      }
      case State::kTrailers: {
        // Trailer fields are read and dropped; they count against the header limit.
        size_t nl = FindLineEnd(scan_);
        if (nl == std::string::npos) {
          scan_ = buffer_.size();
          if (buffer_.size() - pos_ > kMaxHeaderBytes) return Fail(HeadTooLarge());
          break;
        }
        if (nl + 1 - pos_ > kMaxHeaderBytes) return Fail(HeadTooLarge());
        std::string_view line =
            StripCr(std::string_view(buffer_).substr(line_start_, nl - line_start_));
        progress = true;
        if (!line.empty()) {
          if (line.find(':') == std::string_view::npos || HasControl(line)) {
            return Fail(BadRequest("invalid trailer field"));
          }
          line_start_ = scan_ = nl + 1;
          break;
        }
        pos_ = nl + 1;
        Complete(out);
        break;
      }
      case State::kFailed:
        return error_;
    }
  }
  // Drop what was consumed; offsets into the buffer move with it.
  if (pos_ > 0) {
    buffer_.erase(0, pos_);
    scan_ = scan_ > pos_ ? scan_ - pos_ : 0;
    line_start_ = line_start_ > pos_ ? line_start_ - pos_ : 0;
    pos_ = 0;
  }
  return absl::OkStatus();
}

}  // namespace baton::fakellm
