// Fuzzes what baton does with UI messages from outside (a client's message, a hydrated chain, a
// snapshot's transcript): the shape check, cleanup, UI -> model conversion, the accumulator, a
// continued message in the UI reducer, and the provider request bodies. The input is one UI
// message as JSON, or an array of them. Nothing may crash, and:
//   - a refused message says why;
//   - CleanupAbortedParts is idempotent;
//   - conversion gives an array of model messages with known roles;
//   - a user message added twice is a duplicate the second time;
//   - the reducer keeps a message with a parts array whatever it started from;
//   - the accumulator's lanes, kept up to date as messages come, equal the ones made from its UI
//     messages from scratch, and a lane taken earlier never changes after;
//   - a provider request body put together from kept pieces is the dumped request tree.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/model/provider_requests.h"
#include "runtime/transcript/accumulator.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_reducer.h"

namespace {

struct Held {
  baton::MessageList lane;
  baton::Json as_taken;
};

void CheckLanes(const baton::Accumulator& acc, std::vector<Held>& held) {
  baton::Json scratch = baton::Json::array();
  baton::Json provider = baton::Json::array();
  for (const baton::Json& ui : acc.ui()) {
    for (baton::Json& m : baton::UiToModelMessages(baton::StripOpenAiItemId(ui))) {
      if (std::optional<baton::Json> p = baton::ForProvider(m)) provider.push_back(*std::move(p));
      scratch.push_back(std::move(m));
    }
  }
  baton::MessageList lane = acc.ModelLane();
  if (lane.ToJson() != scratch || acc.ModelMessages() != scratch) __builtin_trap();
  if (acc.ProviderLane().ToJson() != provider) __builtin_trap();
  held.push_back({std::move(lane), std::move(scratch)});
}

}  // namespace

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
  std::vector<Held> held;
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
    CheckLanes(acc, held);
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
  CheckLanes(acc, held);
  acc.Replace(messages);
  CheckLanes(acc, held);
  for (const Held& h : held) {
    if (h.lane.ToJson() != h.as_taken) __builtin_trap();
  }
  baton::ModelCall call;
  call.messages = acc.ModelLane();
  (void)baton::BuildAnthropicRequest(call, {.model = "m"});
  (void)baton::BuildOpenAiRequest(call, {.model = "m"});
  // A body put together from kept pieces is the dumped tree, whatever the history: with the
  // provider lane's memo cold, then warm, then with a message of the call's own after it.
  baton::MessageList lane = acc.ProviderLane();
  for (int round = 0; round < 3; ++round) {
    call.messages = lane;
    if (round == 2 && !lane.empty()) call.messages.push_back(lane[0]);
    if (baton::AnthropicRequestBody(call, {.model = "m"}) !=
            baton::DumpJson(baton::BuildAnthropicRequest(call, {.model = "m"})) ||
        baton::OpenAiRequestBody(call, {.model = "m"}) !=
            baton::DumpJson(baton::BuildOpenAiRequest(call, {.model = "m"}))) {
      __builtin_trap();
    }
  }
  return 0;
}
