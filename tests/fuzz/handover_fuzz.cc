// Fuzzes a head start's handover: the partialAssistantMessage a warm server appends (the input,
// as JSON), decoded as a `.in` record, spliced into a transcript, continued by the step loop's
// reducer and converted for the provider. The first input byte picks isFinal and whether the
// transcript already holds the message id. Nothing may crash, and:
//   - a refused record says why;
//   - the partial is spliced at most once, under the warm server's message id;
//   - the spliced UI message is an assistant message with typed parts, tool calls waiting for
//     their input to run (input-available).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/model/provider_requests.h"
#include "runtime/transcript/accumulator.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_reducer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool is_final = data[0] & 1;
  const bool known = data[0] & 2;
  absl::StatusOr<baton::Json> partial =
      baton::ParseJson(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  if (!partial.ok()) return 0;
  baton::Json body = {{"kind", "handover"},
                      {"partialAssistantMessage", *partial},
                      {"messageId", "M"},
                      {"isFinal", is_final}};
  absl::StatusOr<baton::InRecord> record = baton::DecodeInRecord(7, baton::DumpJson(body));
  if (!record.ok()) {
    if (record.status().message().empty()) __builtin_trap();
    return 0;
  }
  const baton::Json& handed = record->body["partialAssistantMessage"];

  baton::Accumulator acc;
  acc.Add(baton::UserMessage("u1", "Weather in Oslo?"));
  if (known) {
    acc.PutResponse({{"id", "M"}, {"role", "assistant"}, {"parts", baton::Json::array()}});
  }
  bool spliced = acc.Splice(handed, "M");
  if (spliced == known) __builtin_trap();         // spliced exactly when M was new
  if (acc.Splice(handed, "M")) __builtin_trap();  // never twice
  int index = acc.Find("M");
  if (index < 0) __builtin_trap();
  const baton::Json& message = acc.ui()[index];
  if (baton::MessageRole(message) != "assistant") __builtin_trap();

  baton::Json ui = baton::PartialToUiMessage(handed, "M");
  if (baton::MessageId(ui) != "M" || !ui["parts"].is_array()) __builtin_trap();
  for (const baton::Json& part : ui["parts"]) {
    if (baton::StringField(part, "type").empty()) __builtin_trap();
    if (baton::IsToolPart(part) && baton::StringField(part, "state") != "input-available") {
      __builtin_trap();
    }
  }

  // Step 2 continues the spliced message: each handed-over call gets its output.
  baton::UiReducer reducer(message);
  (void)reducer.Apply({{"type", "start"}, {"messageId", "M"}});
  for (const baton::Json& part : ui["parts"]) {
    if (!baton::IsToolPart(part)) continue;
    (void)reducer.Apply({{"type", "tool-output-available"},
                         {"toolCallId", baton::StringField(part, "toolCallId")},
                         {"output", {{"tempC", 4}}}});
  }
  (void)reducer.Apply({{"type", "start-step"}});
  (void)reducer.Apply({{"type", "finish-step"}});
  (void)reducer.Apply({{"type", "finish"}, {"finishReason", "stop"}});
  if (!reducer.message()["parts"].is_array()) __builtin_trap();
  acc.PutResponse(reducer.message());

  baton::ModelCall call;
  call.messages = acc.ModelMessages();
  (void)baton::BuildAnthropicRequest(call, {.model = "m"});
  (void)baton::BuildOpenAiRequest(call, {.model = "m"});
  return 0;
}
