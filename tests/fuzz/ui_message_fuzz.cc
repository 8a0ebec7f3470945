// Fuzzes what baton does with UI messages from outside (a client's message, a hydrated chain, a
// snapshot's transcript): the shape check, cleanup, UI -> model conversion, the accumulator, a
// continued message in the UI reducer, and the provider request bodies. The input is one UI
// message as JSON, or an array of them. Nothing may crash, and:
//   - a refused message says why;
//   - CleanupAbortedParts is idempotent;
//   - conversion gives an array of model messages with known roles;
//   - a user message added twice is a duplicate the second time;
//   - the reducer keeps a message with a parts array whatever it started from.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/model/provider_requests.h"
#include "runtime/transcript/accumulator.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_reducer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<baton::Json> parsed = baton::ParseJson(input);
  if (!parsed.ok()) return 0;
  std::vector<baton::Json> messages;
  if (parsed->is_array()) {
    messages.assign(parsed->begin(), parsed->end());
  } else {
    messages.push_back(*parsed);
  }
  baton::Accumulator acc;
  for (const baton::Json& m : messages) {
    absl::Status checked = baton::CheckUiMessage(m, "message");
    if (!checked.ok() && checked.message().empty()) __builtin_trap();
    baton::Json cleaned = baton::CleanupAbortedParts(m);
    if (baton::CleanupAbortedParts(cleaned) != cleaned) __builtin_trap();
    baton::Json model = baton::UiToModelMessages(m);
    if (!model.is_array()) __builtin_trap();
    for (const baton::Json& mm : model) {
      std::string role = baton::MessageRole(mm);
      if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
        __builtin_trap();
      }
    }
    (void)baton::StripOpenAiItemId(m);
    (void)baton::MessageText(m);
    if (const baton::Json* parts = baton::FindField(m, "parts"); parts && parts->is_array()) {
      for (const baton::Json& p : *parts) (void)baton::ToolPartName(p);
    }
    if (checked.ok() && baton::MessageRole(m) == "user") {
      acc.Add(cleaned);
      if (acc.Add(cleaned) != baton::Accumulator::AddResult::kDuplicate) __builtin_trap();
    } else {
      acc.Add(cleaned);
    }
    // A continued assistant message (an approval's continuation) seeds the step loop's reducer.
    baton::UiReducer reducer(m);
    (void)reducer.Apply({{"type", "start-step"}});
    (void)reducer.Apply({{"type", "text-start"}, {"id", "t"}});
    (void)reducer.Apply({{"type", "text-delta"}, {"id", "t"}, {"delta", "x"}});
    (void)reducer.Apply({{"type", "text-end"}, {"id", "t"}});
    if (const baton::Json* parts = baton::FindField(m, "parts"); parts && parts->is_array()) {
      for (const baton::Json& p : *parts) {
        if (!baton::IsToolPart(p)) continue;
        (void)reducer.Apply({{"type", "tool-output-available"},
                             {"toolCallId", baton::StringField(p, "toolCallId")},
                             {"output", 1}});
      }
    }
    (void)reducer.Apply({{"type", "finish-step"}});
    if (!reducer.message()["parts"].is_array()) __builtin_trap();
    (void)baton::UiToModelMessages(reducer.message());
  }
  acc.PopToLastUser();
  acc.Replace(messages);
  baton::ModelCall call;
  call.messages = acc.ModelMessages();
  if (!call.messages.is_array()) __builtin_trap();
  (void)baton::BuildAnthropicRequest(call, {.model = "m"});
  (void)baton::BuildOpenAiRequest(call, {.model = "m"});
  return 0;
}
