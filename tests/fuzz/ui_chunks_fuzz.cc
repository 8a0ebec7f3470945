// Fuzzes the UI chunk reducer with a stream of chunks (one JSON object per line): it must
// reject what breaks the stream grammar and keep a well-formed message, never crash. Each line,
// taken as a string, is also written the way the runtime writes its chunks' text
// (runtime/transcript/ui_chunk.h): byte for byte what DumpJson writes for the same tree.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "hooks/json.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_chunk.h"
#include "runtime/transcript/ui_reducer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  baton::UiReducer reducer;
  while (!input.empty()) {
    size_t end = input.find('\n');
    std::string_view line = input.substr(0, end);
    input = end == std::string_view::npos ? std::string_view() : input.substr(end + 1);
    std::string text;
    baton::AppendJsonString(text, line);
    if (text != baton::DumpJson(baton::Json(std::string(line)))) __builtin_trap();
    baton::Json tree = {{"type", "text-delta"}, {"id", line}, {"delta", line}};
    if (baton::ChunkText("text-delta", {{"id", line}, {"delta", line}}) != baton::DumpJson(tree)) {
      __builtin_trap();
    }
    absl::StatusOr<baton::Json> chunk = baton::ParseJson(line);
    if (!chunk.ok()) continue;
    (void)reducer.Apply(*chunk);
  }
  if (!reducer.message()["parts"].is_array()) __builtin_trap();
  (void)baton::UiToModelMessages(reducer.message());
  return 0;
}
