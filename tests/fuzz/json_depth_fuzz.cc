// Fuzzes every JSON path of the orchestrator and the worker with nesting depth and size as
// explicit dimensions (issue 12; docs/bad-input.md, "Nesting"). The input is not the JSON: its
// first bytes choose a depth (often around a limit, sometimes 100,000), a size (up to about
// 1 MiB), the document and the place in it where the nesting sits, and how the levels are
// built (arrays, objects, siblings that are strings full of brackets, quotes and escapes); the
// rest is material for strings. The document written from that nests to a depth known by
// construction, and goes through each path:
//   parse        ParseJson at each limit, the text scan, JsonDepth of what was built;
//   validate     DecodeInRecord, CheckBootPayload, CheckOutRecord, DecodeSnapshot,
//                DecodeAssignment, a provider's stream decoder, a tool call's arguments;
//   store-check  what the orchestrator takes (a `.in` record, a CreateSession payload with its
//                chatId, a `.out` record) is what a worker decodes;
//   deliver      an accepted record's message or handover through the accumulator, UI to model
//                conversion, both providers' requests and a snapshot as a run makes it;
//   dump         DumpJson of everything taken, and the round trip.
// It traps when: a document is taken or refused other than exactly by its depth and its limit;
// a refusal does not say "nests deeper than"; the scan and the parsed value disagree; what the
// orchestrator takes a worker refuses; or what baton builds around taken data (requests,
// snapshots) does not parse at the hard limit. The last input shape is the material itself as
// JSON text, for what structure the fuzzer finds on its own.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "hooks/messages.h"
#include "hooks/records.h"
#include "runtime/model/provider_requests.h"
#include "runtime/model/provider_streams.h"
#include "runtime/protocol/wire.h"
#include "runtime/transcript/accumulator.h"
#include "runtime/transcript/convert.h"
#include "runtime/transcript/ui_reducer.h"

namespace {

using baton::Json;
using baton::kMaxDataDepth;
using baton::kMaxJsonDepth;
using baton::kMaxToolInputDepth;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

// Beyond the limits, how deep this target itself lets nlohmann build a value. Not only copies
// and dumps recurse: parsing into an ordered_json object that grows after a deep member copies
// that member (a std::vector of pairs with a const key reallocates by copying), so a parse
// without a limit overflows the stack too. This is as deep as is safe under the sanitizers.
constexpr int kUnboundedDepth = 512;

// A refusal for depth says so; any other refusal says something.
void CheckRefusal(const absl::Status& status, bool for_depth) {
  Check(!status.ok() && !status.message().empty());
  if (for_depth) Check(absl::StrContains(status.message(), "nests deeper than"));
}

// The depth dimension: mostly around the limits, where off-by-ones live.
int PickDepth(FuzzedDataProvider& in) {
  int around = in.ConsumeIntegralInRange(-3, 3);
  switch (in.ConsumeIntegralInRange(0, 6)) {
    case 0:
      return in.ConsumeIntegralInRange(0, 8);
    case 1:
      return kMaxDataDepth + around;
    case 2:
      return kMaxJsonDepth + around;
    case 3:
      return kMaxToolInputDepth + around;
    case 4:
      return in.ConsumeIntegralInRange(0, 2000);
    case 5:
      return in.ConsumeIntegralInRange(kMaxJsonDepth + 1, 20000);
    default:
      return 100000;
  }
}

// The size dimension: the bytes of padding added beside the nesting.
size_t PickSize(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
      return 0;
    case 1:
      return in.ConsumeIntegralInRange<size_t>(0, 4096);
    case 2:
      return in.ConsumeIntegralInRange<size_t>(0, 1 << 16);
    default:  // around the 1 MiB record limit
      return baton::kMaxInRecordBytes - in.ConsumeIntegralInRange<size_t>(0, 4096);
  }
}

// A JSON string literal of `text`, whatever its bytes (ill-formed UTF-8 replaced).
std::string Literal(std::string_view text) { return baton::DumpJson(Json(std::string(text))); }

// A value nesting exactly `levels` levels around `leaf`, written iteratively: level i is an
// object when bit i % 32 of `pattern` is set, else an array; every seventh level also holds
// `sibling` (a string literal) beside the deeper value.
std::string Nest(int levels, uint32_t pattern, const std::string& leaf,
                 const std::string& sibling) {
  std::string open, close;
  for (int i = 0; i < levels; ++i) {
    bool object = (pattern >> (i % 32)) & 1;
    bool with_sibling = i % 7 == 3;
    if (object) {
      open += with_sibling ? absl::StrCat(R"({"s":)", sibling, R"(,"k":)") : R"({"k":)";
      close += '}';
    } else {
      open += with_sibling ? absl::StrCat("[", sibling, ",") : "[";
      close += ']';
    }
  }
  std::reverse(close.begin(), close.end());
  return open + leaf + close;
}

// Where the nesting sits: a document's text before it, the levels that text opens, the text
// after it (with "@" where the padding goes), and how deep the document is without the nesting.
struct Shape {
  const char* before;
  int open;
  const char* after;
  int floor;
};
enum Where {
  kInPart,      // a `.in` message part's data
  kInMetadata,  // a `.in` message's payload metadata
  kInHandover,  // a handover partial's tool call input
  kInStop,      // a stop record's message
  kPayload,     // a CreateSession payload's metadata
  kOutChunk,    // a `.out` chunk's data
  kSnapshot,    // a snapshot message part's data
  kAnthropic,   // an Anthropic event's delta
  kOpenAi,      // an OpenAI chunk's delta
  kToolArgs,    // a tool call's arguments
  kRaw,         // the material itself as JSON text
  kWhereCount,
};
constexpr Shape kShapes[] = {
    {R"({"kind":"message","payload":{"chatId":"c","trigger":"submit-message","message":{"id":"u1","role":"user","parts":[{"type":"text","text":"hi"},{"type":"data-x","data":)",
     5, R"(}]},"pad":@}})", 5},
    {R"({"kind":"message","payload":{"chatId":"c","trigger":"submit-message","message":{"id":"u1","role":"user","parts":[{"type":"text","text":"hi"}]},"metadata":)",
     2, R"(,"pad":@}})", 5},
    {R"({"kind":"handover","messageId":"M","isFinal":false,"partialAssistantMessage":[{"role":"assistant","content":[{"type":"text","text":"Let me see."},{"type":"tool-call","toolCallId":"c1","toolName":"t","input":)",
     5, R"(}]}],"pad":@})", 5},
    {R"({"kind":"stop","message":)", 1, R"(,"pad":@})", 1},
    {R"({"message":{"id":"u1","role":"user","parts":[{"type":"text","text":"hi"}]},"metadata":)", 1,
     R"(,"pad":@})", 4},
    {R"({"type":"data-x","data":)", 1, R"(,"pad":@})", 1},
    {R"({"messages":[{"id":"u1","final":true,"message":{"id":"u1","role":"user","parts":[{"type":"data-x","data":)",
     6, R"(}]}}],"pad":@})", 6},
    {R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","x":)", 2,
     R"(},"pad":@})", 2},
    {R"({"id":"r","choices":[{"index":0,"delta":{"content":"a","x":)", 4, R"(}}],"pad":@})", 4},
    {R"({"a":)", 1, R"(,"pad":@})", 1},
};

// What a run builds around taken data parses at the hard limit: both providers' requests for
// the transcript, and the snapshot the run would save.
void CheckWrapped(const baton::Accumulator& acc) {
  baton::ModelCall call;
  call.messages = acc.ModelLane();
  for (const Json& request : {baton::BuildAnthropicRequest(call, {.model = "m"}),
                              baton::BuildOpenAiRequest(call, {.model = "m"})}) {
    Check(baton::ParseJson(baton::DumpJson(request)).ok());
  }
  Json messages = Json::array();
  for (const Json& m : acc.ui()) {
    messages.push_back({{"id", baton::MessageId(m)}, {"final", true}, {"message", m}});
  }
  Json snapshot = {{"version", 1}, {"messages", std::move(messages)}};
  Check(baton::DecodeSnapshot(baton::DumpJson(snapshot)).ok());
}

// The paths of a `.in` record: what the orchestrator takes (Append) is what a worker decodes
// (Deliver, an assignment's pending records), and what the run does with it stays parseable.
void DriveInRecord(const std::string& text, int depth) {
  absl::StatusOr<baton::InRecord> taken = baton::DecodeInRecord(1, text);
  bool too_deep = depth > kMaxDataDepth;
  if (too_deep || text.size() > baton::kMaxInRecordBytes) {
    CheckRefusal(taken.status(), too_deep && text.size() <= baton::kMaxInRecordBytes);
    return;
  }
  Check(taken.ok());
  Check(baton::JsonDepth(taken->body) == depth);
  baton::v1::InRecord proto;
  proto.set_seq(1);
  proto.set_body_json(text);
  Check(baton::InRecordFromProto(proto).ok());
  baton::v1::AssignRun assign;
  *assign.add_pending() = proto;
  Check(baton::DecodeAssignment(assign).ok());
  Check(baton::ParseJson(baton::DumpJson(taken->body), kMaxDataDepth).value() == taken->body);
  baton::Accumulator acc;
  acc.Add(baton::UserMessage("u0", "seed"));
  if (taken->kind == baton::InKind::kMessage && taken->message().is_object()) {
    acc.Add(baton::CleanupAbortedParts(taken->message()));
  } else if (taken->kind == baton::InKind::kHandover) {
    acc.Splice(taken->body["partialAssistantMessage"], "M");
  }
  CheckWrapped(acc);
}

// A CreateSession payload, as the orchestrator checks it, then as a worker decodes the
// assignment it becomes (the payload with its chatId).
void DrivePayload(const std::string& text, int depth) {
  absl::StatusOr<Json> parsed = baton::ParseJson(text, kMaxDataDepth);
  bool too_deep = depth > kMaxDataDepth;
  if (too_deep) return CheckRefusal(parsed.status(), true);
  Check(parsed.ok() && parsed->is_object());
  Check(baton::CheckBootPayload(*parsed).ok());
  (*parsed)["chatId"] = "c";
  baton::v1::AssignRun assign;
  assign.set_payload_json(baton::DumpJson(*parsed));
  absl::StatusOr<baton::Assignment> decoded = baton::DecodeAssignment(assign);
  Check(decoded.ok());
  baton::Accumulator acc;
  acc.Add(decoded->payload["message"]);
  CheckWrapped(acc);
}

// A `.out` record from a worker: the orchestrator's check, a continuation's decode (as the
// `.out` tail of an assignment), a reader's reducer, and the message it builds as a snapshot
// would hold it.
void DriveOutChunk(const std::string& text, int depth) {
  baton::v1::OutRecord record;
  record.set_seq(1);
  record.set_chunk_json(text);
  absl::Status checked = baton::CheckOutRecord(record);
  bool fits = record.ByteSizeLong() <= baton::kMaxOutRecordBytes;
  if (depth > baton::kMaxChunkDepth || !fits) {
    CheckRefusal(checked, fits);
    return;
  }
  Check(checked.ok());
  absl::StatusOr<baton::OutRecord> read = baton::OutRecordFromProto(record);
  Check(read.ok() && baton::JsonDepth(read->chunk()) == depth);
  baton::v1::AssignRun assign;
  *assign.add_out_tail() = record;
  Check(baton::DecodeAssignment(assign).ok());
  baton::UiReducer reducer;
  Check(reducer.Apply(read->chunk()).ok());
  Json snapshot = {{"messages", Json::array({{{"id", "m"}, {"message", reducer.message()}}})}};
  Check(baton::DecodeSnapshot(baton::DumpJson(snapshot)).ok());
}

void DriveSnapshot(const std::string& text, int depth) {
  absl::StatusOr<Json> snapshot = baton::DecodeSnapshot(text);
  if (depth > kMaxJsonDepth) return CheckRefusal(snapshot.status(), true);
  Check(snapshot.ok() && baton::JsonDepth(*snapshot) == depth);
  baton::v1::AssignRun assign;
  assign.set_snapshot_json(text);
  Check(baton::DecodeAssignment(assign).ok());
}

// A provider's event after a good start: it fails the call exactly when it nests too deeply.
template <typename Decoder>
void DriveEvent(const std::string& start, const std::string& text, int depth) {
  Decoder decoder;
  std::vector<baton::ModelEvent> events;
  baton::SseEvent first;
  first.data = start;
  (void)decoder.OnEvent(first, events);
  baton::SseEvent deep;
  deep.data = text;
  absl::Status s = decoder.OnEvent(deep, events);
  if (depth > kMaxDataDepth) {
    CheckRefusal(s, true);
    Check(!events.empty() && events.back().type == baton::ModelEvent::Type::kError);
  } else {
    Check(!absl::StrContains(s.message(), "nests deeper than"));
  }
  decoder.Finish(events);
}

// A tool call's arguments, whole and as they stream (cut at `cut`): taken exactly when they nest
// no deeper than kMaxToolInputDepth; the streamed partial value is never deeper.
void DriveToolArgs(const std::string& text, int depth, size_t cut) {
  absl::StatusOr<Json> args = baton::ParseJson(text, kMaxToolInputDepth);
  if (depth > kMaxToolInputDepth) {
    CheckRefusal(args.status(), true);
  } else {
    Check(args.ok() && baton::JsonDepth(*args) == depth);
  }
  baton::UiReducer reducer;
  Check(reducer.Apply({{"type", "tool-input-start"}, {"toolCallId", "c"}, {"toolName", "t"}}).ok());
  Json delta = {
      {"type", "tool-input-delta"}, {"toolCallId", "c"}, {"inputTextDelta", text.substr(0, cut)}};
  Check(reducer.Apply(delta).ok());
  const Json& part = reducer.message()["parts"][0];
  if (const Json* input = baton::FindField(part, "input")) {
    Check(baton::JsonDepth(*input) <= kMaxToolInputDepth);
  }
}

// Unstructured text: the scan agrees with the parser and the parsed value at every limit.
void DriveRaw(const std::string& text) {
  absl::StatusOr<Json> whole = baton::ParseJson(text, kUnboundedDepth);
  for (int limit : {0, 1, 2, kMaxToolInputDepth, kMaxDataDepth, kMaxJsonDepth}) {
    absl::StatusOr<Json> bounded = baton::ParseJson(text, limit);
    bool scan_ok = baton::JsonTextTooDeep(text, limit) == std::string_view::npos;
    if (!scan_ok) CheckRefusal(bounded.status(), true);
    if (bounded.ok()) Check(scan_ok && baton::JsonDepth(*bounded) <= limit);
    if (whole.ok()) {
      Check(bounded.ok() == (baton::JsonDepth(*whole, limit) <= limit));
      if (bounded.ok())
        Check(*bounded == *whole && baton::DumpJson(*bounded) == baton::DumpJson(*whole));
    }
  }
}

}  // namespace

// Protobuf logs every string field that is not UTF-8; padding may hold such bytes.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const int depth = PickDepth(in);
  const size_t pad = PickSize(in);
  const auto where = static_cast<Where>(in.ConsumeIntegralInRange<int>(0, kWhereCount - 1));
  const uint32_t pattern = in.ConsumeIntegral<uint32_t>();
  const size_t cut_permille = in.ConsumeIntegralInRange<size_t>(0, 1000);
  const std::string leaf_text = in.ConsumeRandomLengthString(64);
  const std::string material = in.ConsumeRemainingBytesAsString();
  if (where == kRaw) {
    DriveRaw(material);
    return 0;
  }

  const Shape& shape = kShapes[where];
  const int levels = std::max(0, depth - shape.open);
  const int built = std::max(shape.floor, shape.open + levels);  // the depth, by construction
  const std::string leaf = leaf_text.empty() ? "1" : Literal(leaf_text);
  const std::string sibling = Literal(material.substr(0, 16));
  std::string padding;
  if (pad > 0) {
    std::string filler = material.empty() ? std::string("[{\"]}\\") : material;
    while (padding.size() < pad) padding += filler;
    padding.resize(pad);
  }
  std::string after = shape.after;
  after.replace(after.find('@'), 1, Literal(padding));
  const std::string text = shape.before + Nest(levels, pattern, leaf, sibling) + after;

  // Parse: the scan, each limit, and the value built.
  for (int limit : {kMaxToolInputDepth, kMaxDataDepth, kMaxJsonDepth}) {
    size_t at = baton::JsonTextTooDeep(text, limit);
    Check((at == std::string_view::npos) == (built <= limit));
    if (at != std::string_view::npos) Check(text[at] == '[' || text[at] == '{');
  }
  if (built <= kUnboundedDepth) {
    absl::StatusOr<Json> parsed = baton::ParseJson(text, kUnboundedDepth);
    Check(parsed.ok() && baton::JsonDepth(*parsed, kUnboundedDepth) == built);
    if (built <= kMaxJsonDepth) {
      Check(baton::ParseJson(baton::DumpJson(*parsed)).value() == *parsed);
    }
  }

  switch (where) {
    case kInPart:
    case kInMetadata:
    case kInHandover:
    case kInStop:
      DriveInRecord(text, built);
      break;
    case kPayload:
      DrivePayload(text, built);
      break;
    case kOutChunk:
      DriveOutChunk(text, built);
      break;
    case kSnapshot:
      DriveSnapshot(text, built);
      break;
    case kAnthropic:
      DriveEvent<baton::AnthropicStream>(
          R"({"type":"message_start","message":{"id":"m1","usage":{"input_tokens":1}}})", text,
          built);
      break;
    case kOpenAi:
      DriveEvent<baton::OpenAiStream>(R"({"id":"r","choices":[{"index":0,"delta":{}}]})", text,
                                      built);
      break;
    case kToolArgs:
      DriveToolArgs(text, built, text.size() * cut_permille / 1000);
      break;
    default:
      break;
  }
  return 0;
}
