// Fuzzes baton-gateway's HTTP/1.1 request parser (tools/gateway/http_request.h) with what a
// browser or an attacker could send. The input is parsed twice, whole and cut into reads of a
// fuzzer-chosen size: both must give the same requests, and both refuse it or both take it;
// nothing may crash; no request may pass the head or body limit; every query parameter decodes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tools/gateway/http_request.h"

namespace {

constexpr size_t kMaxHead = 1024;
constexpr size_t kMaxBody = 4096;

struct Result {
  std::vector<baton::gateway::HttpRequest> requests;
  int error_status = 0;
};

Result Parse(std::string_view input, size_t step) {
  baton::gateway::HttpRequestParser parser(kMaxHead, kMaxBody);
  Result result;
  std::string pending;
  for (size_t at = 0; at < input.size() && result.error_status == 0; at += step) {
    pending.append(input.substr(at, step));
    while (!pending.empty() && result.error_status == 0) {
      size_t used = parser.Feed(pending);
      pending.erase(0, used);
      if (parser.error_status() != 0) {
        result.error_status = parser.error_status();
        break;
      }
      if (!parser.complete()) break;
      bool keep_alive = false;
      result.requests.push_back(parser.Take("fuzz", &keep_alive));
      if (!keep_alive) return result;
    }
  }
  return result;
}

bool Same(const baton::gateway::HttpRequest& a, const baton::gateway::HttpRequest& b) {
  return a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query &&
         a.headers == b.headers && a.body == b.body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t step = 1 + data[0] % 64;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  Result whole = Parse(input, input.size() + 1);
  Result pieces = Parse(input, step);
  // Both refuse the same input, though not always for the same first reason: cut into reads, a
  // URL can pass the head limit before the parser reaches a byte it rejects (431, not 400).
  if ((whole.error_status != 0) != (pieces.error_status != 0)) __builtin_trap();
  if (whole.requests.size() != pieces.requests.size()) __builtin_trap();
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    const baton::gateway::HttpRequest& r = whole.requests[i];
    if (!Same(r, pieces.requests[i])) __builtin_trap();
    if (r.body.size() > kMaxBody || r.target.size() > kMaxHead) __builtin_trap();
    for (std::string_view name : {"after", "follow", ""}) (void)r.Param(name);
    (void)r.Header("authorization");
    (void)r.HeaderCount("authorization");
  }
  return 0;
}
