// Fuzzes what a client can put on `.in`: record decoding, then what the run does with a
// decoded record's contents (message cleaning, the accumulator's merge, UI -> model conversion,
// the head-start splice, the provider request bodies). Nothing may crash, and a rejected record
// must say why.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/model/provider_requests.h"
#include "runtime/transcript/accumulator.h"
#include "runtime/transcript/convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<baton::InRecord> record = baton::DecodeInRecord(1, body);
  if (!record.ok()) {
    if (record.status().message().empty()) __builtin_trap();
    return 0;
  }
  baton::Accumulator acc;
  acc.Add(baton::UserMessage("u0", "seed"));
  if (record->kind == baton::InKind::kMessage && record->message().is_object()) {
    baton::Json cleaned = baton::CleanupAbortedParts(record->message());
    acc.Add(cleaned);
    acc.Add(cleaned);  // the same message twice must not duplicate it
    (void)acc.ModelMessages();
  } else if (record->kind == baton::InKind::kHandover) {
    const baton::Json& partial = record->body["partialAssistantMessage"];
    acc.Splice(partial, baton::StringField(record->body, "messageId"));
    if (acc.Splice(partial, baton::StringField(record->body, "messageId"))) __builtin_trap();
    (void)acc.ModelMessages();
  }
  for (const baton::Json& m : acc.ui()) (void)baton::UiToModelMessages(m);
  // What a client's record puts in the transcript reaches the provider request.
  baton::ModelCall call;
  call.messages = acc.ModelMessages();
  (void)baton::BuildAnthropicRequest(call, {.model = "m"});
  (void)baton::BuildOpenAiRequest(call, {.model = "m"});
  return 0;
}
