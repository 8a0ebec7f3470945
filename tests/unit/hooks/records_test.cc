// `.in` record decoding and `.out` record helpers.
#include "hooks/records.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// Decodes `text` and expects InvalidArgument with a message containing `needle`.
void ExpectRejected(std::string_view text, std::string_view needle) {
  absl::StatusOr<InRecord> r = DecodeInRecord(1, text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(std::string(needle))) << text;
}

TEST(DecodeInRecord, DecodesAUserMessage) {
  absl::StatusOr<InRecord> r = DecodeInRecord(7, R"({"kind":"message","payload":{
      "chatId":"c","trigger":"submit-message",
      "message":{"id":"u1","role":"user","parts":[{"type":"text","text":"hi"}]}}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->seq, 7);
  EXPECT_EQ(r->kind, InKind::kMessage);
  EXPECT_EQ(r->trigger(), "submit-message");
  EXPECT_EQ(r->payload()["chatId"], "c");
  EXPECT_EQ(r->message()["id"], "u1");
  EXPECT_EQ(r->message()["parts"][0]["text"], "hi");
  EXPECT_EQ(r->body["kind"], "message");
}

TEST(DecodeInRecord, AcceptsAMessageRecordWithoutAMessage) {
  absl::StatusOr<InRecord> r =
      DecodeInRecord(2, R"({"kind":"message","payload":{"trigger":"regenerate-message"}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->trigger(), "regenerate-message");
  EXPECT_TRUE(r->message().is_null());

  absl::StatusOr<InRecord> null_message =
      DecodeInRecord(3, R"({"kind":"message","payload":{"trigger":"close","message":null}})");
  ASSERT_TRUE(null_message.ok()) << null_message.status();
  EXPECT_EQ(null_message->trigger(), "close");
  EXPECT_TRUE(null_message->message().is_null());
}

TEST(DecodeInRecord, TriggerIsEmptyWhenAbsent) {
  absl::StatusOr<InRecord> r = DecodeInRecord(1, R"({"kind":"message","payload":{}})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->trigger(), "");
}

TEST(DecodeInRecord, DecodesStop) {
  absl::StatusOr<InRecord> r = DecodeInRecord(4, R"({"kind":"stop","message":"user cancelled"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, InKind::kStop);
  EXPECT_EQ(r->body["message"], "user cancelled");
  EXPECT_TRUE(r->payload().is_null());
  EXPECT_TRUE(r->message().is_null());
  EXPECT_EQ(r->trigger(), "");
}

TEST(DecodeInRecord, DecodesHandover) {
  absl::StatusOr<InRecord> r = DecodeInRecord(5, R"({"kind":"handover",
      "partialAssistantMessage":[{"role":"assistant","content":[{"type":"text","text":"Hi"}]}],
      "messageId":"M","isFinal":true})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, InKind::kHandover);
  EXPECT_EQ(r->body["messageId"], "M");
  EXPECT_EQ(r->body["isFinal"], true);
  EXPECT_EQ(r->body["partialAssistantMessage"].size(), 1u);
}

TEST(DecodeInRecord, DecodesHandoverWithoutIsFinalOrMessageId) {
  absl::StatusOr<InRecord> r =
      DecodeInRecord(5, R"({"kind":"handover","partialAssistantMessage":[]})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, InKind::kHandover);
}

TEST(DecodeInRecord, DecodesHandoverSkip) {
  absl::StatusOr<InRecord> r = DecodeInRecord(6, R"({"kind":"handover-skip"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, InKind::kHandoverSkip);
}

TEST(DecodeInRecord, JsonOverloadDecodesTheSameWay) {
  absl::StatusOr<InRecord> r = InRecordFromJson(9, Json{{"kind", "stop"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->seq, 9);
  EXPECT_EQ(r->kind, InKind::kStop);

  absl::StatusOr<InRecord> bad = InRecordFromJson(9, Json::array());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DecodeInRecord, RejectsTextThatIsNotJson) {
  absl::StatusOr<InRecord> r = DecodeInRecord(1, R"({"kind":"stop")");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(r.status().message().empty());

  absl::StatusOr<InRecord> empty = DecodeInRecord(1, "");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DecodeInRecord, RejectsJsonThatIsNotAnObject) {
  ExpectRejected(R"([{"kind":"stop"}])", "not a JSON object");
  ExpectRejected(R"("stop")", "not a JSON object");
  ExpectRejected("42", "not a JSON object");
  ExpectRejected("null", "not a JSON object");
}

TEST(DecodeInRecord, RejectsAMissingOrNonStringKind) {
  ExpectRejected(R"({"message":"x"})", "\"kind\"");
  ExpectRejected(R"({"kind":3})", "\"kind\"");
  ExpectRejected(R"({"kind":null})", "\"kind\"");
}

TEST(DecodeInRecord, RejectsAnUnknownKindNamingIt) {
  ExpectRejected(R"({"kind":"steer"})", "unknown .in record kind \"steer\"");
}

TEST(DecodeInRecord, RejectsAMessageRecordWithoutAnObjectPayload) {
  ExpectRejected(R"({"kind":"message"})", "\"payload\"");
  ExpectRejected(R"({"kind":"message","payload":"hi"})", "\"payload\"");
}

TEST(DecodeInRecord, RejectsAPayloadMessageWithoutIdOrRole) {
  ExpectRejected(R"({"kind":"message","payload":{"message":{"role":"user","parts":[]}}})",
                 "id and role");
  ExpectRejected(R"({"kind":"message","payload":{"message":{"id":"","role":"user","parts":[]}}})",
                 "id and role");
  ExpectRejected(R"({"kind":"message","payload":{"message":{"id":"u1","parts":[]}}})",
                 "id and role");
  ExpectRejected(R"({"kind":"message","payload":{"message":{"id":7,"role":"user","parts":[]}}})",
                 "id and role");
  ExpectRejected(R"({"kind":"message","payload":{"message":"hello"}})", "id and role");
}

TEST(DecodeInRecord, RejectsAPayloadMessageWithoutPartsArray) {
  ExpectRejected(R"({"kind":"message","payload":{"message":{"id":"u1","role":"user"}}})",
                 "\"parts\" array");
  ExpectRejected(R"({"kind":"message","payload":{"message":{"id":"u1","role":"user","parts":{}}}})",
                 "\"parts\" array");
}

TEST(DecodeInRecord, RejectsAPayloadMessageWithAnUnknownRoleOrUntypedParts) {
  ExpectRejected(R"({"kind":"message","payload":{"message":{"id":"u1","role":"tool","parts":[]}}})",
                 "payload.message has role \"tool\"");
  ExpectRejected(
      R"({"kind":"message","payload":{"message":{"id":"u1","role":"user","parts":[{"type":"text"},"x"]}}})",
      "payload.message.parts[1] is not an object with a string \"type\"");
  ExpectRejected(
      R"({"kind":"message","payload":{"message":{"id":"u1","role":"user","parts":[{"type":7}]}}})",
      "payload.message.parts[0]");
}

TEST(CheckBootPayload, ChecksTheMessageAndTheHeadStartMessages) {
  EXPECT_TRUE(CheckBootPayload(Json::object()).ok());
  EXPECT_TRUE(CheckBootPayload(Json{{"message", nullptr}, {"metadata", 1}}).ok());
  EXPECT_TRUE(CheckBootPayload(Json::parse(R"({"headStartMessages":[
      {"id":"u1","role":"user","parts":[{"type":"text","text":"hi"}]}]})"))
                  .ok());
  absl::Status message = CheckBootPayload(Json{{"message", "hi"}});
  EXPECT_EQ(message.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(message.message()), HasSubstr("payload.message needs a string id"));
  absl::Status history = CheckBootPayload(Json::parse(R"({"headStartMessages":[
      {"id":"u1","role":"user","parts":[]}, {"id":"u2","role":"user"}]})"));
  EXPECT_THAT(std::string(history.message()),
              HasSubstr("payload.headStartMessages[1] needs a \"parts\" array"));
  EXPECT_FALSE(CheckBootPayload(Json{{"headStartMessages", "hi"}}).ok());
}

TEST(DecodeInRecord, RejectsHandoverWithoutPartialArray) {
  ExpectRejected(R"({"kind":"handover","messageId":"M","isFinal":false})",
                 "\"partialAssistantMessage\" array");
  ExpectRejected(R"({"kind":"handover","partialAssistantMessage":{"role":"assistant"}})",
                 "\"partialAssistantMessage\" array");
}

TEST(DecodeInRecord, RejectsHandoverPartialMessageWithoutRole) {
  ExpectRejected(R"({"kind":"handover","partialAssistantMessage":[{"content":[]}]})",
                 "without a role");
  ExpectRejected(R"({"kind":"handover","partialAssistantMessage":["assistant"]})",
                 "without a role");
}

TEST(DecodeInRecord, RejectsNonBooleanIsFinal) {
  ExpectRejected(R"({"kind":"handover","partialAssistantMessage":[],"isFinal":"true"})",
                 "\"isFinal\" must be a boolean");
  ExpectRejected(R"({"kind":"handover","partialAssistantMessage":[],"isFinal":1})",
                 "\"isFinal\" must be a boolean");
}

// A stop record padded with a message so that the whole body is exactly `size` bytes.
std::string StopRecordOfSize(size_t size) {
  const std::string head = R"({"kind":"stop","message":")";
  const std::string tail = R"("})";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

TEST(DecodeInRecord, AcceptsABodyExactlyAtTheSizeLimit) {
  std::string body = StopRecordOfSize(kMaxInRecordBytes);
  ASSERT_EQ(body.size(), kMaxInRecordBytes);
  absl::StatusOr<InRecord> r = DecodeInRecord(1, body);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, InKind::kStop);
}

TEST(DecodeInRecord, RejectsAnOversizedBody) {
  std::string body = StopRecordOfSize(kMaxInRecordBytes + 1);
  ExpectRejected(body, "exceeds the limit of " + std::to_string(kMaxInRecordBytes));
  ExpectRejected(body, std::to_string(kMaxInRecordBytes + 1) + " bytes");
}

// A `.in` body from `shape`, with "@" replaced by `depth` - (the levels open at "@") nested
// arrays, so that the whole body nests exactly `depth` levels. Also the byte (from 1) of the
// bracket that opens level limit + 1.
struct DeepBody {
  std::string text;
  size_t byte_over_limit = 0;
};
DeepBody DeepIn(const std::string& shape, int depth, int limit) {
  size_t at = shape.find('@');
  int open = 0;  // the shapes hold no brackets inside strings
  for (size_t i = 0; i < at; ++i) open += shape[i] == '{' || shape[i] == '[';
  for (size_t i = 0; i < at; ++i) open -= shape[i] == '}' || shape[i] == ']';
  int n = depth - open;
  DeepBody body;
  body.text =
      shape.substr(0, at) + std::string(n, '[') + "1" + std::string(n, ']') + shape.substr(at + 1);
  body.byte_over_limit = at + static_cast<size_t>(limit - open) + 1;
  return body;
}

// Every place a client can nest data in a `.in` record is held to kMaxDataDepth, the record
// counted whole, at depths around the limit and far beyond (the crash of issue 12).
TEST(DecodeInRecord, RefusesARecordNestedDeeperThanTheDataLimitWhereverItNests) {
  const std::vector<std::string> shapes = {
      // a message part's data
      R"({"kind":"message","payload":{"chatId":"c","trigger":"submit-message","message":{"id":"u1","role":"user","parts":[{"type":"data-x","data":@}]}}})",
      // the payload's metadata
      R"({"kind":"message","payload":{"chatId":"c","trigger":"submit-message","metadata":@,"message":{"id":"u1","role":"user","parts":[{"type":"text","text":"hi"}]}}})",
      // a handover partial's tool call input
      R"({"kind":"handover","messageId":"M","isFinal":false,"partialAssistantMessage":[{"role":"assistant","content":[{"type":"tool-call","toolCallId":"c1","toolName":"t","input":@}]}]})",
      // anything else
      R"({"kind":"stop","message":@})",
  };
  for (const std::string& shape : shapes) {
    for (int depth : {kMaxDataDepth - 1, kMaxDataDepth, kMaxDataDepth + 1, 100000}) {
      SCOPED_TRACE(absl::StrCat(shape.substr(0, 60), " at depth ", depth));
      DeepBody body = DeepIn(shape, depth, kMaxDataDepth);
      ASSERT_EQ(JsonTextTooDeep(body.text, depth), std::string_view::npos);
      ASSERT_NE(JsonTextTooDeep(body.text, depth - 1), std::string_view::npos);
      absl::StatusOr<InRecord> r = DecodeInRecord(1, body.text);
      if (depth <= kMaxDataDepth) {
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(JsonDepth(r->body), depth);
        EXPECT_EQ(ParseJson(DumpJson(r->body)).value(), r->body);
      } else {
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
        EXPECT_EQ(r.status().message(), absl::StrCat(".in record nests deeper than ", kMaxDataDepth,
                                                     " levels at byte ", body.byte_over_limit));
      }
    }
  }
}

TEST(DecodeInRecord, ARecordAtTheDepthLimitAndTheSizeLimitIsTaken) {
  // Size and depth together: the deepest record that is also the largest.
  const std::string shape = R"({"kind":"stop","message":@,"pad":""})";
  DeepBody body = DeepIn(shape, kMaxDataDepth, kMaxDataDepth);
  body.text.insert(body.text.size() - 2, kMaxInRecordBytes - body.text.size(), 'x');
  ASSERT_EQ(body.text.size(), kMaxInRecordBytes);
  absl::StatusOr<InRecord> r = DecodeInRecord(1, body.text);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(JsonDepth(r->body), kMaxDataDepth);
  // One byte more is refused for its size, one level more for its depth.
  EXPECT_THAT(std::string(DecodeInRecord(1, body.text + " ").status().message()),
              HasSubstr("exceeds the limit"));
  DeepBody deeper = DeepIn(shape, kMaxDataDepth + 1, kMaxDataDepth);
  EXPECT_THAT(std::string(DecodeInRecord(1, deeper.text).status().message()),
              HasSubstr("nests deeper than"));
}

TEST(InRecordFromJson, RefusesABodyBuiltTooDeepInMemory) {
  // Built and handed over by moves only: a copy of it would itself overflow the stack.
  auto deep = [](int depth) {
    Json value = 1;
    for (int i = 0; i < depth; ++i) {
      Json outer = Json::array();
      outer.push_back(std::move(value));
      value = std::move(outer);
    }
    return value;
  };
  Json body = Json::object();
  body["kind"] = "stop";
  body["message"] = deep(100000);
  absl::StatusOr<InRecord> r = InRecordFromJson(1, std::move(body));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            absl::StrCat(".in record nests deeper than ", kMaxDataDepth, " levels"));
  Json payload = Json::object();
  payload["metadata"] = deep(kMaxDataDepth);
  absl::Status checked = CheckBootPayload(payload);
  EXPECT_EQ(checked.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(checked.message(),
            absl::StrCat("payload nests deeper than ", kMaxDataDepth, " levels"));
  payload["metadata"] = deep(kMaxDataDepth - 1);
  EXPECT_TRUE(CheckBootPayload(payload).ok());
}

TEST(InKindName, NamesEveryKindAsOnTheWire) {
  EXPECT_EQ(InKindName(InKind::kMessage), "message");
  EXPECT_EQ(InKindName(InKind::kStop), "stop");
  EXPECT_EQ(InKindName(InKind::kHandover), "handover");
  EXPECT_EQ(InKindName(InKind::kHandoverSkip), "handover-skip");
}

TEST(OutRecord, ChunkIsNotControlAndTypeIsTheChunkType) {
  OutRecord r = OutRecord::Chunk({{"type", "text-delta"}, {"id", "s0-0"}, {"delta", "hi"}});
  EXPECT_FALSE(r.is_control);
  EXPECT_EQ(r.Type(), "text-delta");
  EXPECT_EQ(r.chunk()["delta"], "hi");
  EXPECT_TRUE(r.headers.empty());
  EXPECT_EQ(r.Header("anything"), "");
}

TEST(OutRecord, ChunkWithoutTypeHasEmptyType) {
  EXPECT_EQ(OutRecord::Chunk(Json::object()).Type(), "");
}

TEST(OutRecord, ControlTypeIsPrefixedWithTrigger) {
  EXPECT_EQ(OutRecord::Control(kTurnComplete).Type(), "trigger:turn-complete");
  EXPECT_EQ(OutRecord::Control(kTrim).Type(), "trigger:trim");
  EXPECT_EQ(OutRecord::Control(kSessionClosed).Type(), "trigger:session-closed");
  EXPECT_EQ(OutRecord::Control(kUpgradeRequired).Type(), "trigger:upgrade-required");
}

TEST(OutRecord, HeaderReturnsTheValueOrEmpty) {
  OutRecord r = OutRecord::Control(kTurnComplete,
                                   {{"session-in-event-id", "4"}, {"public-access-token", "tok"}});
  EXPECT_TRUE(r.is_control);
  EXPECT_EQ(r.control, "turn-complete");
  EXPECT_EQ(r.Header("session-in-event-id"), "4");
  EXPECT_EQ(r.Header("public-access-token"), "tok");
  EXPECT_EQ(r.Header("session-closed"), "");
  EXPECT_THAT(r.headers,
              ElementsAre(Pair("session-in-event-id", "4"), Pair("public-access-token", "tok")));
}

TEST(OutRecord, ChunkToJsonHoldsSeqAndChunk) {
  OutRecord r = OutRecord::Chunk({{"type", "start"}, {"messageId", "M"}});
  r.seq = 3;
  Json j = r.ToJson();
  EXPECT_EQ(j, Json::parse(R"({"seq":3,"chunk":{"type":"start","messageId":"M"}})"));
  EXPECT_FALSE(j.contains("control"));
  EXPECT_FALSE(j.contains("headers"));
}

TEST(OutRecord, ControlToJsonHoldsSeqControlAndHeadersInOrder) {
  OutRecord r = OutRecord::Control(kTurnComplete, {{"b", "2"}, {"a", "1"}});
  r.seq = 11;
  Json j = r.ToJson();
  EXPECT_EQ(DumpJson(j), R"({"seq":11,"control":"turn-complete","headers":{"b":"2","a":"1"}})");
  EXPECT_FALSE(j.contains("chunk"));
}

TEST(OutRecord, ControlWithoutHeadersHasEmptyHeaderObject) {
  Json j = OutRecord::Control(kSessionClosed).ToJson();
  ASSERT_TRUE(j.contains("headers"));
  EXPECT_TRUE(j["headers"].is_object());
  EXPECT_TRUE(j["headers"].empty());
}

}  // namespace
}  // namespace baton
