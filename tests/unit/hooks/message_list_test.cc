// MessageList: a model call's messages, sharing the chat's history with the transcript.
#include "hooks/message_list.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace baton {
namespace {

std::shared_ptr<const MessageList::Messages> History(int n) {
  auto messages = std::make_shared<MessageList::Messages>();
  for (int i = 0; i < n; ++i) messages->push_back(Json{{"role", "user"}, {"content", i}});
  return messages;
}

TEST(MessageList, ReadsLikeTheJsonArrayItWasMadeFrom) {
  Json array = Json::array({Json{{"role", "user"}}, Json{{"role", "assistant"}}});
  MessageList list = array;
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1]["role"], "assistant");
  EXPECT_EQ(list.back()["role"], "assistant");
  EXPECT_EQ(list.ToJson(), array);
  Json back = list;  // to_json
  EXPECT_EQ(back, array);
  std::vector<Json> seen(list.begin(), list.end());
  EXPECT_EQ(seen.size(), 2u);
}

TEST(MessageList, AnythingButAnArrayIsEmpty) {
  EXPECT_TRUE(MessageList(Json::object()).empty());
  EXPECT_TRUE(MessageList(Json()).empty());
  EXPECT_TRUE(MessageList().empty());
}

TEST(MessageList, CopiesShareTheHistoryAndKeepTheirOwnAdditions) {
  auto history = History(3);
  MessageList a(history, 3);
  MessageList b = a;
  b.push_back(Json{{"role", "assistant"}});
  EXPECT_EQ(a.size(), 3u);
  EXPECT_EQ(b.size(), 4u);
  EXPECT_EQ(a.shared(), b.shared());
  EXPECT_EQ(&a[0], &b[0]) << "the history is shared, not copied";
  EXPECT_EQ(b.shared_count(), 3u);
}

TEST(MessageList, APrefixOfTheSharedListIsAllItShows) {
  MessageList list(History(5), 2);
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list.back()["content"], 1);
  MessageList capped(History(2), 10);
  EXPECT_EQ(capped.size(), 2u);
}

TEST(MessageList, ChangingTheLastMessageLeavesTheSharedOneAsItWas) {
  auto history = History(2);
  MessageList list(history, 2);
  list.MutableBack()["content"] = "changed";
  EXPECT_EQ(list.size(), 2u);
  EXPECT_EQ(list.back()["content"], "changed");
  EXPECT_EQ((*history)[1]["content"], 1);
  EXPECT_EQ(list.shared_count(), 1u);
}

}  // namespace
}  // namespace baton
