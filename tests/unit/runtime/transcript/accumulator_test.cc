// The two-lane transcript (reference/chat-wire-and-hooks.md §5.3-§5.6, scenarios §9.10, §9.14,
// §9.26-§9.28).
#include "runtime/transcript/accumulator.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "runtime/transcript/convert.h"

namespace baton {
namespace {

Json P(const char* text) { return Json::parse(text); }

std::vector<std::string> UiIds(const Accumulator& acc) {
  std::vector<std::string> ids;
  for (const Json& m : acc.ui()) ids.push_back(MessageId(m));
  return ids;
}

std::vector<std::string> ModelRoles(const Accumulator& acc) {
  std::vector<std::string> roles;
  for (const Json& m : acc.ModelMessages()) roles.push_back(MessageRole(m));
  return roles;
}

using ::testing::ElementsAre;

// An assistant message waiting for the user's approval of delete_file call c1.
Json AwaitingApproval() {
  return P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},
      {"type":"text","text":"I will delete it.","state":"done"},
      {"type":"tool-delete_file","toolCallId":"c1","state":"approval-requested",
       "input":{"path":"todo.txt"},"approval":{"id":"ap1"}}]})");
}

// What a client sends back (slim HITL wire) for AwaitingApproval(), under `id`.
Json ApprovalResponse(const std::string& id, bool approved) {
  Json m = P(R"({"role":"assistant","parts":[
      {"type":"tool-delete_file","toolCallId":"c1","state":"approval-responded",
       "approval":{"id":"ap1"}}]})");
  m["id"] = id;
  m["parts"][0]["approval"]["approved"] = approved;
  return m;
}

TEST(Accumulator, StartsEmpty) {
  Accumulator acc;
  EXPECT_TRUE(acc.ui().empty());
  EXPECT_EQ(acc.ModelMessages(), Json::array());
  EXPECT_FALSE(acc.Contains("u1"));
  EXPECT_EQ(acc.Find("u1"), -1);
}

TEST(Accumulator, AddAppendsANewMessageToBothLanes) {
  Accumulator acc;
  EXPECT_EQ(acc.Add(UserMessage("u1", "hi")), Accumulator::AddResult::kAppended);
  EXPECT_EQ(acc.Add(UserMessage("u2", "again")), Accumulator::AddResult::kAppended);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "u2"));
  EXPECT_EQ(acc.Find("u2"), 1);
  EXPECT_TRUE(acc.Contains("u1"));
  EXPECT_EQ(acc.ModelMessages(), P(R"([
      {"role":"user","content":[{"type":"text","text":"hi"}]},
      {"role":"user","content":[{"type":"text","text":"again"}]}])"));
}

TEST(Accumulator, AddOfAKnownUserIdIsADuplicateAndChangesNothing) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "hi"));
  Json model_before = acc.ModelMessages();
  EXPECT_EQ(acc.Add(UserMessage("u1", "edited")), Accumulator::AddResult::kDuplicate);
  ASSERT_EQ(acc.ui().size(), 1u);
  EXPECT_EQ(MessageText(acc.ui()[0]), "hi");
  EXPECT_EQ(acc.ModelMessages(), model_before);
}

TEST(Accumulator, AddOfAnUnknownAssistantAppendsIt) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "hi"));
  EXPECT_EQ(acc.Add(AwaitingApproval()), Accumulator::AddResult::kAppended);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "A"));
  EXPECT_THAT(ModelRoles(acc), ElementsAre("user", "assistant"));
}

TEST(Accumulator, AssistantMergeAdvancesOnlyToolParts) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "delete todo"));
  acc.Add(AwaitingApproval());
  Json incoming = ApprovalResponse("A", true);
  // Text, reasoning and input from the client are not authoritative.
  incoming["parts"][0]["input"] = P(R"({"path":"/etc/passwd"})");
  incoming["parts"].push_back(P(R"({"type":"text","text":"injected","state":"done"})"));
  EXPECT_EQ(acc.Add(incoming), Accumulator::AddResult::kMerged);
  ASSERT_EQ(acc.ui().size(), 2u);
  const Json& a = acc.ui()[1];
  EXPECT_EQ(a["id"], "A");
  ASSERT_EQ(a["parts"].size(), 3u);
  EXPECT_EQ(a["parts"][1]["text"], "I will delete it.");
  EXPECT_EQ(a["parts"][2]["state"], "approval-responded");
  EXPECT_EQ(a["parts"][2]["approval"], P(R"({"id":"ap1","approved":true})"));
  EXPECT_EQ(a["parts"][2]["input"], P(R"({"path":"todo.txt"})"));
  EXPECT_EQ(MessageText(a), "I will delete it.");
}

TEST(Accumulator, MergeReconvertsThatMessagesModelMessagesInPlace) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "delete todo"));
  acc.Add(AwaitingApproval());
  acc.Add(ApprovalResponse("A", true));
  EXPECT_EQ(acc.ModelMessages(), P(R"([
      {"role":"user","content":[{"type":"text","text":"delete todo"}]},
      {"role":"assistant","content":[
        {"type":"text","text":"I will delete it."},
        {"type":"tool-call","toolCallId":"c1","toolName":"delete_file","input":{"path":"todo.txt"}},
        {"type":"tool-approval-request","approvalId":"ap1","toolCallId":"c1"}]},
      {"role":"tool","content":[
        {"type":"tool-approval-response","approvalId":"ap1","approved":true}]}])"))
      << acc.ModelMessages().dump();
}

TEST(Accumulator, MergeOfAnEarlierMessageKeepsLaterMessagesAfterIt) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "delete todo"));
  acc.Add(AwaitingApproval());
  acc.Add(UserMessage("u2", "and?"));
  EXPECT_EQ(acc.Add(ApprovalResponse("A", false)), Accumulator::AddResult::kMerged);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "A", "u2"));
  EXPECT_THAT(ModelRoles(acc), ElementsAre("user", "assistant", "tool", "user"));
  Json model = acc.ModelMessages();
  EXPECT_EQ(model[2]["content"][0]["approved"], false);
}

TEST(Accumulator, MergeSetsTheOutputOfAnOpenCall) {
  Accumulator acc;
  acc.Add(AwaitingApproval());
  Json incoming = P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-delete_file","toolCallId":"c1","state":"output-available",
       "output":{"deleted":"todo.txt"}}]})");
  EXPECT_EQ(acc.Add(incoming), Accumulator::AddResult::kMerged);
  const Json& part = acc.ui()[0]["parts"][2];
  EXPECT_EQ(part["state"], "output-available");
  EXPECT_EQ(part["output"]["deleted"], "todo.txt");
  EXPECT_THAT(ModelRoles(acc), ElementsAre("assistant", "tool"));
  EXPECT_EQ(acc.ModelMessages()[1]["content"][0]["type"], "tool-result");
}

TEST(Accumulator, MergeIgnoresStatesAClientCannotAdvanceTo) {
  Accumulator acc;
  acc.Add(AwaitingApproval());
  Json incoming = P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-delete_file","toolCallId":"c1","state":"input-available",
       "input":{"path":"other"}}]})");
  EXPECT_EQ(acc.Add(incoming), Accumulator::AddResult::kMerged);
  EXPECT_EQ(acc.ui()[0], AwaitingApproval());
}

// Scenario §9.28: a part in a terminal state is never regressed.
TEST(Accumulator, MergeNeverRegressesATerminalState) {
  Accumulator acc;
  Json done = P(R"({"id":"A","role":"assistant","parts":[
      {"type":"step-start"},
      {"type":"tool-delete_file","toolCallId":"c1","state":"output-available",
       "input":{"path":"todo.txt"},"output":{"deleted":"todo.txt"},
       "approval":{"id":"ap1","approved":true}}]})");
  acc.Add(done);
  Json model_before = acc.ModelMessages();
  EXPECT_EQ(acc.Add(ApprovalResponse("A", false)), Accumulator::AddResult::kMerged);
  EXPECT_EQ(acc.ui()[0], done);
  Json error = P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-delete_file","toolCallId":"c1","state":"output-error","errorText":"late"}]})");
  acc.Add(error);
  Json denied = P(R"({"id":"A","role":"assistant","parts":[
      {"type":"tool-delete_file","toolCallId":"c1","state":"output-denied"}]})");
  acc.Add(denied);
  EXPECT_EQ(acc.ui()[0], done);
  EXPECT_EQ(acc.ModelMessages(), model_before);
}

TEST(Accumulator, MergeWithTheSameStateIsANoOp) {
  Accumulator acc;
  acc.Add(AwaitingApproval());
  acc.Add(ApprovalResponse("A", true));
  Json after_first = acc.ui()[0];
  EXPECT_EQ(acc.Add(ApprovalResponse("A", false)), Accumulator::AddResult::kMerged);
  EXPECT_EQ(acc.ui()[0], after_first);
  EXPECT_EQ(acc.ui()[0]["parts"][2]["approval"]["approved"], true);
}

// Scenario §9.27: an incoming assistant with a new id but a known toolCallId is merged onto the
// message that owns the call.
TEST(Accumulator, UnknownAssistantIdIsRewrittenThroughItsToolCallId) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "delete todo"));
  acc.Add(AwaitingApproval());
  EXPECT_EQ(acc.Add(ApprovalResponse("A-regenerated", true)), Accumulator::AddResult::kMerged);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "A"));
  EXPECT_FALSE(acc.Contains("A-regenerated"));
  EXPECT_EQ(acc.ui()[1]["parts"][2]["state"], "approval-responded");
}

TEST(Accumulator, UnknownAssistantWithUnknownToolCallsIsAppended) {
  Accumulator acc;
  acc.Add(AwaitingApproval());
  Json other = ApprovalResponse("B", true);
  other["parts"][0]["toolCallId"] = "c7";
  EXPECT_EQ(acc.Add(other), Accumulator::AddResult::kAppended);
  EXPECT_THAT(UiIds(acc), ElementsAre("A", "B"));
  EXPECT_EQ(acc.ui()[0]["parts"][2]["state"], "approval-requested");
}

TEST(Accumulator, PopToLastUserDropsTrailingNonUserMessagesFromBothLanes) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "one"));
  acc.PutResponse(P(R"({"id":"r1","role":"assistant","parts":[{"type":"text","text":"1"}]})"));
  acc.Add(UserMessage("u2", "two"));
  acc.PutResponse(P(R"({"id":"r2","role":"assistant","parts":[{"type":"text","text":"2"}]})"));
  acc.PutResponse(P(R"({"id":"r3","role":"assistant","parts":[{"type":"text","text":"3"}]})"));
  acc.PopToLastUser();
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "r1", "u2"));
  EXPECT_THAT(ModelRoles(acc), ElementsAre("user", "assistant", "user"));
  EXPECT_EQ(acc.ModelMessages().back()["content"][0]["text"], "two");
}

TEST(Accumulator, PopToLastUserKeepsATranscriptEndingInAUser) {
  Accumulator acc;
  acc.PopToLastUser();
  EXPECT_TRUE(acc.ui().empty());
  acc.Add(UserMessage("u1", "one"));
  acc.PopToLastUser();
  EXPECT_THAT(UiIds(acc), ElementsAre("u1"));
  EXPECT_THAT(ModelRoles(acc), ElementsAre("user"));
}

// A head start's step 1 (chat-wire-and-hooks.md §5.5), as in scenario §9.9.
Json HeadStartPartial() {
  return P(R"([
    {"role":"assistant","content":[
      {"type":"reasoning","text":"Need data.","providerOptions":{"anthropic":{"signature":"sig"}}},
      {"type":"text","text":"Let me check."},
      {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}},
      {"type":"tool-approval-request","approvalId":"handover-approval-1","toolCallId":"c1"}]},
    {"role":"tool","content":[
      {"type":"tool-approval-response","approvalId":"handover-approval-1","approved":true}]}])");
}

TEST(Accumulator, SpliceAppendsTheConvertedUiMessageAndThePartialVerbatim) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "Oslo?"));
  EXPECT_TRUE(acc.Splice(HeadStartPartial(), "M"));
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "M"));
  EXPECT_EQ(acc.ui()[1], PartialToUiMessage(HeadStartPartial(), "M"));
  Json model = acc.ModelMessages();
  ASSERT_EQ(model.size(), 3u);
  EXPECT_EQ(model[0]["role"], "user");
  EXPECT_EQ(model[1], HeadStartPartial()[0]);
  EXPECT_EQ(model[2], HeadStartPartial()[1]);
}

TEST(Accumulator, SpliceHappensOnceOnly) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "Oslo?"));
  ASSERT_TRUE(acc.Splice(HeadStartPartial(), "M"));
  std::vector<Json> ui_before = acc.ui();
  Json model_before = acc.ModelMessages();
  EXPECT_FALSE(acc.Splice(HeadStartPartial(), "M"));
  EXPECT_EQ(acc.ui(), ui_before);
  EXPECT_EQ(acc.ModelMessages(), model_before);
}

// Scenario §9.14: a hydrated chain that already holds the id is not spliced again.
TEST(Accumulator, SpliceIsSkippedWhenTheIdIsAlreadyInTheLane) {
  Accumulator acc;
  acc.Replace({UserMessage("u1", "Oslo?"),
               P(R"({"id":"M","role":"assistant","parts":[{"type":"text","text":"old"}]})")});
  Json model_before = acc.ModelMessages();
  EXPECT_FALSE(acc.Splice(HeadStartPartial(), "M"));
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "M"));
  EXPECT_EQ(MessageText(acc.ui()[1]), "old");
  EXPECT_EQ(acc.ModelMessages(), model_before);
}

TEST(Accumulator, SplicedToolCallIdsAreKnownForIdRewrite) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "Oslo?"));
  acc.Splice(HeadStartPartial(), "M");
  Json incoming = P(R"({"id":"X","role":"assistant","parts":[
      {"type":"tool-get_weather","toolCallId":"c1","state":"output-available",
       "output":{"tempC":4}}]})");
  EXPECT_EQ(acc.Add(incoming), Accumulator::AddResult::kMerged);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "M"));
  EXPECT_EQ(acc.ui()[1]["parts"][2]["state"], "output-available");
}

// Scenario §9.10: after step 2 the approval rows are gone, replaced by the converted response.
TEST(Accumulator, PutResponseReplacesInPlaceAndReconvertsThatMessage) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "Oslo?"));
  acc.Splice(HeadStartPartial(), "M");
  acc.Add(UserMessage("u2", "Thanks"));  // a later message must keep its place
  Json response = P(R"({"id":"M","role":"assistant","parts":[
      {"type":"reasoning","text":"Need data.","state":"done",
       "providerMetadata":{"anthropic":{"signature":"sig"}}},
      {"type":"text","text":"Let me check."},
      {"type":"tool-get_weather","toolCallId":"c1","state":"output-available",
       "input":{"city":"Oslo"},"output":{"tempC":4}},
      {"type":"step-start"},
      {"type":"text","text":"It is 4 C.","state":"done"}]})");
  acc.PutResponse(response);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "M", "u2"));
  EXPECT_EQ(acc.ui()[1], response);
  EXPECT_EQ(acc.ModelMessages(), P(R"([
      {"role":"user","content":[{"type":"text","text":"Oslo?"}]},
      {"role":"assistant","content":[
        {"type":"reasoning","text":"Need data.",
         "providerOptions":{"anthropic":{"signature":"sig"}}},
        {"type":"text","text":"Let me check."},
        {"type":"tool-call","toolCallId":"c1","toolName":"get_weather","input":{"city":"Oslo"}}]},
      {"role":"tool","content":[
        {"type":"tool-result","toolCallId":"c1","toolName":"get_weather",
         "output":{"type":"json","value":{"tempC":4}}}]},
      {"role":"assistant","content":[{"type":"text","text":"It is 4 C."}]},
      {"role":"user","content":[{"type":"text","text":"Thanks"}]}])"))
      << acc.ModelMessages().dump();
}

TEST(Accumulator, PutResponseWithANewIdAppends) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "hi"));
  acc.PutResponse(P(R"({"id":"R1","role":"assistant","parts":[
      {"type":"step-start"},{"type":"text","text":"hello","state":"done"}]})"));
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "R1"));
  EXPECT_EQ(acc.ModelMessages()[1],
            P(R"({"role":"assistant","content":[{"type":"text","text":"hello"}]})"));
}

TEST(Accumulator, PutResponseConvertsWithoutTheOpenAiItemIdButKeepsItInTheUiLane) {
  Accumulator acc;
  Json response = P(R"({"id":"R1","role":"assistant","parts":[
      {"type":"reasoning","text":"r","state":"done",
       "providerMetadata":{"openai":{"itemId":"rs_1"},"anthropic":{"signature":"s"}}}]})");
  acc.PutResponse(response);
  EXPECT_EQ(acc.ui()[0], response);
  EXPECT_EQ(acc.ModelMessages()[0]["content"][0]["providerOptions"],
            P(R"({"anthropic":{"signature":"s"}})"));
}

TEST(Accumulator, PutResponseRemembersToolCallIds) {
  Accumulator acc;
  acc.PutResponse(AwaitingApproval());
  EXPECT_EQ(acc.Add(ApprovalResponse("other-id", true)), Accumulator::AddResult::kMerged);
  EXPECT_THAT(UiIds(acc), ElementsAre("A"));
}

TEST(Accumulator, ReplaceSetsTheUiLaneAndRederivesTheModelLane) {
  Accumulator acc;
  acc.Add(UserMessage("old", "gone"));
  acc.Replace({UserMessage("u1", "hi"),
               P(R"({"id":"R1","role":"assistant","parts":[{"type":"text","text":"yo"}]})")});
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "R1"));
  EXPECT_FALSE(acc.Contains("old"));
  EXPECT_EQ(acc.ModelMessages(), P(R"([
      {"role":"user","content":[{"type":"text","text":"hi"}]},
      {"role":"assistant","content":[{"type":"text","text":"yo"}]}])"));
}

TEST(Accumulator, ReplaceRebuildsTheToolCallIdMap) {
  Accumulator acc;
  acc.Add(AwaitingApproval());
  acc.Replace({UserMessage("u1", "hi")});
  // c1 belonged to a message that is gone: a new id with it is a new message.
  EXPECT_EQ(acc.Add(ApprovalResponse("B", true)), Accumulator::AddResult::kAppended);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "B"));

  acc.Replace({UserMessage("u1", "hi"), AwaitingApproval()});
  EXPECT_EQ(acc.Add(ApprovalResponse("C", true)), Accumulator::AddResult::kMerged);
  EXPECT_THAT(UiIds(acc), ElementsAre("u1", "A"));
}

// The lanes a model call is made from follow every change, and a lane taken before a change
// keeps what it showed: a provider may still be sending it.
TEST(Accumulator, LanesFollowEachChangeAndAnEarlierLaneKeepsWhatItShowed) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "hi"));
  MessageList first = acc.ModelLane();
  acc.PutResponse(AwaitingApproval());
  MessageList second = acc.ModelLane();
  EXPECT_EQ(first.ToJson(), P(R"([{"role":"user","content":[{"type":"text","text":"hi"}]}])"));
  EXPECT_EQ(second.ToJson(), acc.ModelMessages());
  EXPECT_EQ(second.size(), 2u);
  // The approval is the lane's bookkeeping; a provider is sent the rest.
  EXPECT_EQ(acc.ProviderLane().ToJson(), P(R"([
      {"role":"user","content":[{"type":"text","text":"hi"}]},
      {"role":"assistant","content":[{"type":"text","text":"I will delete it."},
        {"type":"tool-call","toolCallId":"c1","toolName":"delete_file",
         "input":{"path":"todo.txt"}}]}])"))
      << acc.ProviderLane().ToJson().dump();
  // Replacing the message in place (its approval answered) changes the lanes from it on.
  acc.Add(ApprovalResponse("A", false));
  EXPECT_EQ(acc.ModelLane().ToJson(), acc.ModelMessages());
  EXPECT_EQ(second.size(), 2u);
  EXPECT_EQ(second[1], P(R"({"role":"assistant","content":[
      {"type":"text","text":"I will delete it."},
      {"type":"tool-call","toolCallId":"c1","toolName":"delete_file","input":{"path":"todo.txt"}},
      {"type":"tool-approval-request","approvalId":"ap1","toolCallId":"c1"}]})"))
      << second[1].dump();
  acc.PopToLastUser();
  EXPECT_EQ(acc.ModelLane().size(), 1u);
  EXPECT_EQ(acc.ProviderLane().size(), 1u);
}

TEST(Accumulator, FindsTheLastMessageWithAnIdAfterPops) {
  Accumulator acc;
  acc.Add(UserMessage("u1", "hi"));
  acc.PutResponse(P(R"({"id":"R1","role":"assistant","parts":[{"type":"text","text":"a"}]})"));
  EXPECT_EQ(acc.Find("R1"), 1);
  acc.PopToLastUser();
  EXPECT_EQ(acc.Find("R1"), -1);
  EXPECT_EQ(acc.Find("u1"), 0);
  acc.PutResponse(P(R"({"id":"R2","role":"assistant","parts":[{"type":"text","text":"b"}]})"));
  EXPECT_EQ(acc.Find("R2"), 1);
}

// A snapshot rewrites only what changed since the last save: the first message changed, added
// or removed since MarkSaved.
TEST(Accumulator, DirtyFromIsTheFirstMessageChangedSinceTheLastSave) {
  Accumulator acc;
  EXPECT_EQ(acc.dirty_from(), 0u);
  acc.Add(UserMessage("u1", "hi"));
  acc.PutResponse(P(R"({"id":"R1","role":"assistant","parts":[{"type":"text","text":"a"}]})"));
  acc.MarkSaved();
  EXPECT_EQ(acc.dirty_from(), 2u);
  acc.Add(UserMessage("u2", "more"));
  EXPECT_EQ(acc.dirty_from(), 2u);
  acc.MarkSaved();
  acc.PutResponse(P(R"({"id":"R1","role":"assistant","parts":[{"type":"text","text":"b"}]})"));
  EXPECT_EQ(acc.dirty_from(), 1u) << "replaced in place";
  acc.MarkSaved();
  acc.Touch("u1");
  EXPECT_EQ(acc.dirty_from(), 0u);
  acc.MarkSaved();
  acc.PopToLastUser();
  EXPECT_EQ(acc.dirty_from(), 3u) << "nothing popped: u2 is last";
  acc.PopBack();
  EXPECT_EQ(acc.dirty_from(), 2u);
  acc.MarkSaved();
  EXPECT_TRUE(
      acc.Splice(P(R"([{"role":"assistant","content":[{"type":"text","text":"w"}]}])"), "H1"));
  EXPECT_EQ(acc.dirty_from(), 2u);
  acc.MarkSaved();
  acc.Replace({UserMessage("u1", "hi")});
  EXPECT_EQ(acc.dirty_from(), 0u);
}

}  // namespace
}  // namespace baton
