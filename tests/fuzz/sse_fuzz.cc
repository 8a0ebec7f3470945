// Fuzzes what a model provider sends: an SSE body, cut into reads at fuzzer-chosen points, into
// the SSE parser and both stream decoders. Nothing may crash; every call must end with exactly
// one finish or error event once the body is over.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "runtime/model/provider_streams.h"
#include "runtime/model/sse_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t step = 1 + data[0] % 64;  // the read size
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  baton::SseParser parser;
  baton::AnthropicStream anthropic;
  baton::OpenAiStream openai;
  std::vector<baton::ModelEvent> a, o;
  for (size_t at = 0; at < body.size(); at += step) {
    absl::Status s = parser.Feed(body.substr(at, step), [&](baton::SseEvent e) {
      (void)anthropic.OnEvent(e, a);
      (void)openai.OnEvent(e, o);
    });
    if (!s.ok()) break;
  }
  parser.Finish();
  anthropic.Finish(a);
  openai.Finish(o);
  for (const std::vector<baton::ModelEvent>* events : {&a, &o}) {
    int ends = 0;
    for (const baton::ModelEvent& e : *events) {
      ends +=
          e.type == baton::ModelEvent::Type::kFinish || e.type == baton::ModelEvent::Type::kError;
    }
    if (ends != 1 || (events->back().type != baton::ModelEvent::Type::kFinish &&
                      events->back().type != baton::ModelEvent::Type::kError)) {
      __builtin_trap();
    }
  }
  return 0;
}
