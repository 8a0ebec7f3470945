// File: tests/fuzz/decoder_fuzz.h
//
// The body of the two stream decoder fuzz targets: whole events, one per input line, go to a
// decoder directly, so the fuzzer spends its time on the JSON a provider sends rather than on SSE
// framing (sse_fuzz covers that). Nothing may crash, and the call must end with exactly one
// finish or error event, last.
#ifndef BATON_TESTS_FUZZ_DECODER_FUZZ_H_
#define BATON_TESTS_FUZZ_DECODER_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "runtime/model/provider_streams.h"

namespace baton {

template <typename Decoder>
int FuzzDecoder(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Decoder stream;
  std::vector<ModelEvent> events;
  while (!input.empty()) {
    size_t end = input.find('\n');
    SseEvent event;
    event.data = std::string(input.substr(0, end));
    input = end == std::string_view::npos ? std::string_view() : input.substr(end + 1);
    (void)stream.OnEvent(event, events);
  }
  stream.Finish(events);
  int ends = 0;
  for (const ModelEvent& e : events) {
    ends += e.type == ModelEvent::Type::kFinish || e.type == ModelEvent::Type::kError;
  }
  if (ends != 1 || (events.back().type != ModelEvent::Type::kFinish &&
                    events.back().type != ModelEvent::Type::kError)) {
    __builtin_trap();
  }
  return 0;
}

}  // namespace baton

#endif  // BATON_TESTS_FUZZ_DECODER_FUZZ_H_
