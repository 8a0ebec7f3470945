// Fuzzes the decoder of OpenAI Chat Completions chunks, one event per input line
// (tests/fuzz/decoder_fuzz.h).
#include "tests/fuzz/decoder_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return baton::FuzzDecoder<baton::OpenAiStream>(data, size);
}
