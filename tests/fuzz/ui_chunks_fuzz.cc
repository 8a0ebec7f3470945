// Fuzzes the UI chunk reducer with a stream of chunks (one JSON object per line): it must
// reject what breaks the stream grammar and keep a well-formed message, never crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hooks/json.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_reducer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  baton::UiReducer reducer;
  while (!input.empty()) {
    size_t end = input.find('\n');
    std::string_view line = input.substr(0, end);
    input = end == std::string_view::npos ? std::string_view() : input.substr(end + 1);
    absl::StatusOr<baton::Json> chunk = baton::ParseJson(line);
    if (!chunk.ok()) continue;
    (void)reducer.Apply(*chunk);
  }
  if (!reducer.message()["parts"].is_array()) __builtin_trap();
  (void)baton::UiToModelMessages(reducer.message());
  return 0;
}
