// Fuzzes fake-llm's HTTP/1.1 request parser with what a client could send. The input is parsed
// twice, whole and cut into reads of a fuzzer-chosen size: both must give the same requests and
// the same error, nothing may crash, and no request may pass the limits.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tools/fake-llm/http_request.h"

namespace {

struct Result {
  std::vector<baton::fakellm::HttpRequest> requests;
  absl::Status status;
};

Result Parse(std::string_view input, size_t step) {
  baton::fakellm::HttpRequestParser parser;
  Result result;
  for (size_t at = 0; at < input.size() && result.status.ok(); at += step) {
    result.status = parser.Feed(input.substr(at, step), result.requests);
    (void)parser.TakeExpectContinue();
  }
  return result;
}

bool Same(const baton::fakellm::HttpRequest& a, const baton::fakellm::HttpRequest& b) {
  return a.method == b.method && a.target == b.target && a.version == b.version &&
         a.headers == b.headers && a.body == b.body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t step = 1 + data[0] % 64;  // the read size
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  Result whole = Parse(input, input.size() + 1);
  Result cut = Parse(input, step);
  if (whole.status.ok() != cut.status.ok() ||
      baton::fakellm::HttpRequestParser::HttpStatusFor(whole.status) !=
          baton::fakellm::HttpRequestParser::HttpStatusFor(cut.status) ||
      whole.requests.size() != cut.requests.size()) {
    __builtin_trap();
  }
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    const baton::fakellm::HttpRequest& r = whole.requests[i];
    if (!Same(r, cut.requests[i])) __builtin_trap();
    if (r.body.size() > baton::fakellm::HttpRequestParser::kMaxBodyBytes) __builtin_trap();
    if (r.method.empty() || r.target.empty()) __builtin_trap();
    (void)r.Path();
    (void)r.KeepAlive();
  }
  return 0;
}
