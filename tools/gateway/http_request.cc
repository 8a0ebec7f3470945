#include "tools/gateway/http_request.h"

#include <http_parser.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace baton::gateway {

std::string PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    int hi = 0;
    int lo = 0;
    auto hex = [](char h) {
      return h >= '0' && h <= '9'   ? h - '0'
             : h >= 'a' && h <= 'f' ? h - 'a' + 10
             : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                    : -1;
    };
    if (c == '%' && i + 2 < text.size() && (hi = hex(text[i + 1])) >= 0 &&
        (lo = hex(text[i + 2])) >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return {};
}

int HttpRequest::HeaderCount(std::string_view name) const {
  return static_cast<int>(std::count_if(headers.begin(), headers.end(),
                                        [&](const auto& h) { return h.first == name; }));
}

std::string HttpRequest::Param(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string key = PercentDecode(pair.substr(0, eq), true);
    if (key != name) continue;
    return eq == std::string_view::npos ? std::string() : PercentDecode(pair.substr(eq + 1), true);
  }
  return {};
}

// ---- parsing ----------------------------------------------------------------------------------

// One request at a time: the parser pauses at each request's end, and the bytes after it wait
// in `pending_` until the response is done.
struct HttpRequestParser::Impl {
  http_parser parser;
  http_parser_settings settings;
  size_t max_header_bytes = 0;
  size_t max_body_bytes = 0;
  HttpRequest request;
  std::string field;  // the header name being read
  bool in_value = false;
  size_t head_bytes = 0;
  bool complete = false;
  int error_status = 0;  // 413, 431 ...: what to answer instead of parsing on
  std::string error;

  Impl(size_t max_head, size_t max_body) : max_header_bytes(max_head), max_body_bytes(max_body) {
    http_parser_settings_init(&settings);
    settings.on_message_begin = [](http_parser* p) {
      Impl& self = *static_cast<Impl*>(p->data);
      self.request = HttpRequest();
      self.field.clear();
      self.in_value = false;
      self.head_bytes = 0;
      return 0;
    };
    settings.on_url = [](http_parser* p, const char* at, size_t n) {
      Impl& self = *static_cast<Impl*>(p->data);
      return self.Head(n) ? (self.request.target.append(at, n), 0) : -1;
    };
    settings.on_header_field = [](http_parser* p, const char* at, size_t n) {
      Impl& self = *static_cast<Impl*>(p->data);
      if (!self.Head(n)) return -1;
      if (self.in_value) {
        self.field.clear();
        self.in_value = false;
      }
      self.field.append(at, n);
      return 0;
    };
    settings.on_header_value = [](http_parser* p, const char* at, size_t n) {
      Impl& self = *static_cast<Impl*>(p->data);
      if (!self.Head(n)) return -1;
      if (!self.in_value) {
        self.request.headers.emplace_back(absl::AsciiStrToLower(self.field), std::string());
        self.in_value = true;
      }
      self.request.headers.back().second.append(at, n);
      return 0;
    };
    settings.on_headers_complete = [](http_parser* p) {
      Impl& self = *static_cast<Impl*>(p->data);
      // A declared body over the limit is refused before it is read.
      if ((p->flags & F_CONTENTLENGTH) != 0 && p->content_length > self.max_body_bytes) {
        self.error_status = 413;
        self.error = absl::StrCat("the request body of ", p->content_length,
                                  " bytes exceeds the limit of ", self.max_body_bytes);
        return -1;
      }
      return 0;
    };
    settings.on_body = [](http_parser* p, const char* at, size_t n) {
      Impl& self = *static_cast<Impl*>(p->data);
      if (self.request.body.size() + n > self.max_body_bytes) {
        self.error_status = 413;
        self.error =
            absl::StrCat("the request body exceeds the limit of ", self.max_body_bytes, " bytes");
        return -1;
      }
      self.request.body.append(at, n);
      return 0;
    };
    settings.on_message_complete = [](http_parser* p) {
      Impl& self = *static_cast<Impl*>(p->data);
      self.complete = true;
      http_parser_pause(p, 1);
      return 0;
    };
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = this;
  }

  bool Head(size_t n) {
    head_bytes += n;
    if (head_bytes <= max_header_bytes) return true;
    error_status = 431;
    error = absl::StrCat("the request head exceeds ", max_header_bytes, " bytes");
    return false;
  }

  // Parses what it can of `data`; returns how much it took (the rest waits: a request is done,
  // or an error is set).
  size_t Feed(std::string_view data) {
    size_t used = http_parser_execute(&parser, &settings, data.data(), data.size());
    http_errno code = HTTP_PARSER_ERRNO(&parser);
    if (code == HPE_PAUSED) {
      http_parser_pause(&parser, 0);
      return used;
    }
    if (code != HPE_OK && error_status == 0) {
      error_status = 400;
      error = absl::StrCat("the request does not parse as HTTP/1.1: ", http_errno_name(code));
    }
    return used;
  }

  void Finish(std::string peer) {
    request.method = http_method_str(static_cast<http_method>(parser.method));
    size_t q = request.target.find('?');
    request.path = request.target.substr(0, q);
    if (q != std::string::npos) request.query = request.target.substr(q + 1);
    request.peer = std::move(peer);
  }
};

HttpRequestParser::HttpRequestParser(size_t max_header_bytes, size_t max_body_bytes)
    : impl_(std::make_unique<Impl>(max_header_bytes, max_body_bytes)) {}
HttpRequestParser::~HttpRequestParser() = default;

size_t HttpRequestParser::Feed(std::string_view data) { return impl_->Feed(data); }
bool HttpRequestParser::complete() const { return impl_->complete; }
int HttpRequestParser::error_status() const { return impl_->error_status; }
const std::string& HttpRequestParser::error() const { return impl_->error; }
size_t HttpRequestParser::head_bytes() const { return impl_->head_bytes; }

HttpRequest HttpRequestParser::Take(std::string peer, bool* keep_alive) {
  impl_->complete = false;
  *keep_alive = http_should_keep_alive(&impl_->parser) != 0;
  impl_->Finish(std::move(peer));
  HttpRequest request = std::move(impl_->request);
  impl_->request = HttpRequest();
  return request;
}

}  // namespace baton::gateway
