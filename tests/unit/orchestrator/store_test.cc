// The orchestrator's Store: the same contract tests on MemoryStore and on SQLite files (with and
// without durable commits), then what only a file can do: survive a reopen, stay in WAL mode,
// keep binary records exact, and fail cleanly on a bad path or file.
#include "tools/orchestrator/store.h"

#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace baton::orchestrator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// A fresh directory under the test temp dir, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = ::testing::TempDir() + "store_test_XXXXXX";
    path_ = mkdtemp(pattern.data()) == nullptr ? "" : pattern;
  }
  ~ScratchDir() {
    if (!path_.empty()) {
      std::filesystem::remove_all(path_);
    }
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// ---- Rows and their comparison (the row structs have no operator==).

auto Fields(const SessionRow& s) {
  return std::tie(s.chat_id, s.agent, s.state, s.base_payload_json, s.boot_message_json,
                  s.traceparent, s.run_id, s.runs, s.created_ms, s.resume_deadline_ms,
                  s.snapshot_json, s.snapshot_in_seq, s.snapshot_out_seq, s.head_start_json,
                  s.handover_deadline_ms, s.failed_in_seq);
}
auto Fields(const InRow& r) {
  return std::tie(r.seq, r.kind, r.body_json, r.client_record_id, r.appended_ms);
}
auto Fields(const RunRow& r) {
  return std::tie(r.run_id, r.chat_id, r.agent, r.attempt, r.trigger, r.state, r.payload_json,
                  r.previous_run_id, r.lease_token, r.worker_id, r.reason, r.error, r.created_ms,
                  r.started_ms, r.ended_ms, r.cancel_requested);
}

SessionRow Session(const std::string& chat_id, const std::string& state) {
  return SessionRow{.chat_id = chat_id,
                    .agent = "support",
                    .state = state,
                    .base_payload_json = R"({"chatId":")" + chat_id + R"("})",
                    .boot_message_json = R"({"id":"u1"})",
                    .traceparent = "00-abc-def-01",
                    .run_id = "run-" + chat_id,
                    .runs = 2,
                    .created_ms = 1000,
                    .resume_deadline_ms = 5000,
                    .snapshot_json = R"({"messages":[]})",
                    .snapshot_in_seq = 3,
                    .snapshot_out_seq = 40};
}

InRow In(const std::string& body, const std::string& client_record_id = "") {
  return InRow{.kind = "message",
               .body_json = body,
               .client_record_id = client_record_id,
               .appended_ms = 1234};
}

RunRow RunOf(const std::string& run_id, const std::string& chat_id, const std::string& state) {
  return RunRow{.run_id = run_id,
                .chat_id = chat_id,
                .agent = "support",
                .attempt = 2,
                .trigger = "submit-message",
                .state = state,
                .payload_json = R"({"trigger":"submit-message"})",
                .previous_run_id = "run-0",
                .lease_token = 17,
                .worker_id = "worker-1",
                .reason = "done",
                .error = "",
                .created_ms = 10,
                .started_ms = 20,
                .ended_ms = 30};
}

// Rows first..last whose record names its seq and `tag`, so a test can tell which batch
// stored a row.
std::vector<OutRow> Outs(int64_t first, int64_t last, const std::string& tag = "") {
  std::vector<OutRow> rows;
  for (int64_t seq = first; seq <= last; ++seq) {
    rows.push_back(OutRow{.seq = seq, .record = absl::StrCat(tag, "record-", seq)});
  }
  return rows;
}

template <typename Row>
std::vector<int64_t> Seqs(const std::vector<Row>& rows) {
  std::vector<int64_t> seqs;
  for (const Row& row : rows) {
    seqs.push_back(row.seq);
  }
  return seqs;
}

// A snapshot write of `version` whose entries from `from` on are `ids` (each entry's text names
// its id and `tag`, so a test can tell which write stored it).
SnapshotWrite SnapshotOf(int64_t version, int64_t from, const std::vector<std::string>& ids,
                         const std::string& tag = "") {
  SnapshotWrite write;
  write.version = version;
  write.header_json = absl::StrCat(R"({"turn":)", version, "}");
  write.in_seq = version;
  write.out_seq = 10 * version;
  write.from = from;
  for (const std::string& id : ids) {
    write.entries.push_back(
        SnapshotEntryRow{.message_id = id,
                         .entry_json = absl::StrCat(R"({"id":")", id, R"(","tag":")", tag, "\"}")});
  }
  write.bytes = 100 * version;
  return write;
}

// The ids of a stored snapshot's entries.
std::vector<std::string> EntryIds(const StoredSnapshot& snapshot) {
  std::vector<std::string> ids;
  for (const SnapshotEntryRow& entry : snapshot.entries) ids.push_back(entry.message_id);
  return ids;
}

std::vector<std::string> RunIds(const std::vector<RunRow>& runs) {
  std::vector<std::string> ids;
  for (const RunRow& run : runs) {
    ids.push_back(run.run_id);
  }
  return ids;
}

// ---- The contract, on every Store

struct StoreKind {
  std::string name;
  std::string describe_prefix;
  std::function<absl::StatusOr<std::unique_ptr<Store>>(const ScratchDir&)> open;
};

void PrintTo(const StoreKind& kind, std::ostream* os) { *os << kind.name; }

class StoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    absl::StatusOr<std::unique_ptr<Store>> store = GetParam().open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
  }

  int64_t AppendOutOk(const std::string& chat_id, const std::vector<OutRow>& rows) {
    absl::StatusOr<int64_t> end = store_->AppendOut(chat_id, rows);
    EXPECT_TRUE(end.ok()) << end.status();
    return end.value_or(-1);
  }

  std::vector<OutRow> ReadOutOk(const std::string& chat_id, int64_t after_seq, size_t limit) {
    absl::StatusOr<std::vector<OutRow>> rows = store_->ReadOut(chat_id, after_seq, limit);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.value_or(std::vector<OutRow>());
  }

  std::vector<InRow> ReadInOk(const std::string& chat_id, int64_t after_seq,
                              size_t limit = kAllRows) {
    absl::StatusOr<std::vector<InRow>> rows = store_->ReadIn(chat_id, after_seq, limit);
    EXPECT_TRUE(rows.ok()) << rows.status();
    return rows.value_or(std::vector<InRow>());
  }

  // The chat's stored snapshot; fails the test when there is none.
  StoredSnapshot LoadSnapshotOk(const std::string& chat_id) {
    absl::StatusOr<std::optional<StoredSnapshot>> loaded = store_->LoadSnapshot(chat_id);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (!loaded.ok() || !loaded->has_value()) {
      ADD_FAILURE() << "no snapshot stored for chat " << chat_id;
      return StoredSnapshot();
    }
    return **loaded;
  }

  std::vector<std::string> RunIdsOf(const std::string& chat_id) {
    absl::StatusOr<std::vector<RunRow>> runs = store_->ListRuns(chat_id);
    EXPECT_TRUE(runs.ok()) << runs.status();
    return RunIds(runs.value_or(std::vector<RunRow>()));
  }

  ScratchDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, DescribesItsBackend) {
  EXPECT_THAT(store_->Describe(), StartsWith(GetParam().describe_prefix));
}

TEST_P(StoreTest, LoadSessionsIsEmptyAtFirst) {
  absl::StatusOr<std::vector<SessionRow>> sessions = store_->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  EXPECT_THAT(*sessions, IsEmpty());
}

TEST_P(StoreTest, PutSessionInsertsThenReplaces) {
  ASSERT_TRUE(store_->PutSession(Session("b", "live")).ok());
  ASSERT_TRUE(store_->PutSession(Session("a", "live")).ok());
  SessionRow replaced = Session("a", "suspended");
  replaced.snapshot_json = R"({"messages":[1]})";
  replaced.snapshot_out_seq = 99;
  replaced.runs = 3;
  ASSERT_TRUE(store_->PutSession(replaced).ok());

  absl::StatusOr<std::vector<SessionRow>> sessions = store_->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 2u);
  std::sort(sessions->begin(), sessions->end(),
            [](const SessionRow& x, const SessionRow& y) { return x.chat_id < y.chat_id; });
  EXPECT_EQ(Fields((*sessions)[0]), Fields(replaced));
  EXPECT_EQ(Fields((*sessions)[1]), Fields(Session("b", "live")));
}

TEST_P(StoreTest, PutSessionLeavesTheLogsAlone) {
  ASSERT_TRUE(store_->AppendIn("a", In("{}")).ok());
  AppendOutOk("a", Outs(1, 2));
  ASSERT_TRUE(store_->PutSession(Session("a", "live")).ok());
  ASSERT_TRUE(store_->PutSession(Session("a", "closed")).ok());
  EXPECT_EQ(store_->LastInSeq("a").value_or(-1), 1);
  EXPECT_EQ(store_->LastOutSeq("a").value_or(-1), 2);
}

TEST_P(StoreTest, AppendInNumbersEachChatFromOne) {
  for (int64_t expected = 1; expected <= 3; ++expected) {
    InRow row = In(absl::StrCat("{\"n\":", expected, "}"));
    row.seq = 42;  // ignored
    absl::StatusOr<Store::Appended> appended = store_->AppendIn("a", row);
    ASSERT_TRUE(appended.ok()) << appended.status();
    EXPECT_EQ(appended->row.seq, expected);
    EXPECT_FALSE(appended->duplicate);
    EXPECT_EQ(appended->row.body_json, row.body_json);
  }
  absl::StatusOr<Store::Appended> other = store_->AppendIn("b", In("{}"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->row.seq, 1);

  EXPECT_EQ(store_->LastInSeq("a").value_or(-1), 3);
  EXPECT_EQ(store_->LastInSeq("b").value_or(-1), 1);
  EXPECT_EQ(store_->LastInSeq("unknown").value_or(-1), 0);
}

TEST_P(StoreTest, AppendInReturnsTheEarlierRowForARepeatedClientRecordId) {
  ASSERT_TRUE(store_->AppendIn("a", In(R"({"first":true})", "client-1")).ok());
  ASSERT_TRUE(store_->AppendIn("a", In("{}", "client-2")).ok());

  InRow again = In(R"({"first":false})", "client-1");
  again.kind = "stop";
  absl::StatusOr<Store::Appended> appended = store_->AppendIn("a", again);
  ASSERT_TRUE(appended.ok()) << appended.status();
  EXPECT_TRUE(appended->duplicate);
  EXPECT_EQ(Fields(appended->row), Fields(InRow{.seq = 1,
                                                .kind = "message",
                                                .body_json = R"({"first":true})",
                                                .client_record_id = "client-1",
                                                .appended_ms = 1234}));
  EXPECT_EQ(store_->LastInSeq("a").value_or(-1), 2);
  EXPECT_THAT(Seqs(ReadInOk("a", 0)), ElementsAre(1, 2));
}

TEST_P(StoreTest, ClientRecordIdsAreUniquePerChatOnly) {
  ASSERT_TRUE(store_->AppendIn("a", In("{}", "client-1")).ok());
  absl::StatusOr<Store::Appended> other = store_->AppendIn("b", In("{}", "client-1"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_FALSE(other->duplicate);
  EXPECT_EQ(other->row.seq, 1);
  EXPECT_EQ(store_->LastInSeq("b").value_or(-1), 1);
}

TEST_P(StoreTest, AnEmptyClientRecordIdIsNeverADuplicate) {
  for (int64_t expected = 1; expected <= 2; ++expected) {
    absl::StatusOr<Store::Appended> appended = store_->AppendIn("a", In("{}"));
    ASSERT_TRUE(appended.ok()) << appended.status();
    EXPECT_FALSE(appended->duplicate);
    EXPECT_EQ(appended->row.seq, expected);
  }
}

TEST_P(StoreTest, ReadInReturnsTheRowsAfterASeq) {
  for (const char* client_id : {"c1", "", "c3"}) {
    ASSERT_TRUE(
        store_->AppendIn("a", In(absl::StrCat("{\"id\":\"", client_id, "\"}"), client_id)).ok());
  }
  std::vector<InRow> all = ReadInOk("a", 0);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(Fields(all[2]), Fields(InRow{.seq = 3,
                                         .kind = "message",
                                         .body_json = R"({"id":"c3"})",
                                         .client_record_id = "c3",
                                         .appended_ms = 1234}));
  EXPECT_EQ(all[1].client_record_id, "");
  EXPECT_THAT(Seqs(ReadInOk("a", -5)), ElementsAre(1, 2, 3));
  EXPECT_THAT(Seqs(ReadInOk("a", 2)), ElementsAre(3));
  EXPECT_THAT(ReadInOk("a", 3), IsEmpty());
  EXPECT_THAT(ReadInOk("unknown", 0), IsEmpty());
}

TEST_P(StoreTest, ReadInPagesWithALimit) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store_->AppendIn("a", In("{}", "")).ok());
  EXPECT_THAT(Seqs(ReadInOk("a", 0, 2)), ElementsAre(1, 2));
  EXPECT_THAT(Seqs(ReadInOk("a", 2, 2)), ElementsAre(3, 4));
  EXPECT_THAT(Seqs(ReadInOk("a", 4, 2)), ElementsAre(5));
  EXPECT_THAT(ReadInOk("a", 0, 0), IsEmpty());
}

TEST_P(StoreTest, AppendOutStoresContiguousBatches) {
  EXPECT_EQ(AppendOutOk("a", Outs(1, 3)), 3);
  EXPECT_EQ(AppendOutOk("a", Outs(4, 4)), 4);
  std::vector<OutRow> rows = ReadOutOk("a", 0, 100);
  ASSERT_THAT(Seqs(rows), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(rows[0].record, "record-1");
  EXPECT_EQ(rows[3].record, "record-4");
  EXPECT_EQ(store_->LastOutSeq("a").value_or(-1), 4);
}

TEST_P(StoreTest, AppendOutSkipsResentRows) {
  ASSERT_EQ(AppendOutOk("a", Outs(1, 3, "first-")), 3);
  EXPECT_EQ(AppendOutOk("a", Outs(2, 5, "second-")), 5);
  EXPECT_EQ(AppendOutOk("a", Outs(1, 5, "third-")), 5);

  std::vector<OutRow> rows = ReadOutOk("a", 0, 100);
  ASSERT_THAT(Seqs(rows), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(rows[2].record, "first-record-3");  // the stored row, not the re-send
  EXPECT_EQ(rows[3].record, "second-record-4");
  EXPECT_EQ(rows[4].record, "second-record-5");
}

TEST_P(StoreTest, AppendOutRefusesAGapAndWritesNothing) {
  ASSERT_EQ(AppendOutOk("a", Outs(1, 3)), 3);
  std::vector<OutRow> gapped = Outs(4, 4);
  gapped.push_back(OutRow{.seq = 6, .record = "record-6"});

  absl::StatusOr<int64_t> end = store_->AppendOut("a", gapped);
  EXPECT_EQ(end.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(end.status().message()), HasSubstr("6"));
  EXPECT_EQ(store_->LastOutSeq("a").value_or(-1), 3);  // not even row 4
  EXPECT_THAT(ReadOutOk("a", 3, 100), IsEmpty());
}

TEST_P(StoreTest, AppendOutToANewChatMustStartAtOne) {
  EXPECT_EQ(store_->AppendOut("a", Outs(2, 3)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->LastOutSeq("a").value_or(-1), 0);
  EXPECT_THAT(ReadOutOk("a", 0, 100), IsEmpty());
}

TEST_P(StoreTest, AppendOutOfNothingReturnsTheStoredEnd) {
  EXPECT_EQ(AppendOutOk("a", {}), 0);
  ASSERT_EQ(AppendOutOk("a", Outs(1, 2)), 2);
  EXPECT_EQ(AppendOutOk("a", {}), 2);
}

TEST_P(StoreTest, ReadOutHonoursAfterSeqAndLimit) {
  ASSERT_EQ(AppendOutOk("a", Outs(1, 10)), 10);
  EXPECT_THAT(Seqs(ReadOutOk("a", 0, 3)), ElementsAre(1, 2, 3));
  EXPECT_THAT(Seqs(ReadOutOk("a", 3, 3)), ElementsAre(4, 5, 6));
  EXPECT_THAT(Seqs(ReadOutOk("a", 8, 5)), ElementsAre(9, 10));
  EXPECT_THAT(Seqs(ReadOutOk("a", -1, 1)), ElementsAre(1));
  EXPECT_EQ(ReadOutOk("a", 0, SIZE_MAX).size(), 10u);
  EXPECT_THAT(ReadOutOk("a", 10, 5), IsEmpty());
  EXPECT_THAT(ReadOutOk("a", 0, 0), IsEmpty());
  EXPECT_THAT(ReadOutOk("unknown", 0, 5), IsEmpty());
  EXPECT_EQ(store_->LastOutSeq("unknown").value_or(-1), 0);
}

TEST_P(StoreTest, OutLogsAreKeptPerChat) {
  ASSERT_EQ(AppendOutOk("a", Outs(1, 3, "a-")), 3);
  EXPECT_EQ(AppendOutOk("b", Outs(1, 1, "b-")), 1);
  std::vector<OutRow> b = ReadOutOk("b", 0, 100);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].record, "b-record-1");
  EXPECT_EQ(store_->LastOutSeq("a").value_or(-1), 3);
}

TEST_P(StoreTest, AppendOutTakesLargeBatchesAndReadOutPagesThroughThem) {
  constexpr int64_t kRows = 5000;
  for (int64_t first = 1; first <= kRows; first += 500) {
    ASSERT_EQ(AppendOutOk("a", Outs(first, first + 499)), first + 499);
  }
  int64_t after = 0;
  for (std::vector<OutRow> page; !(page = ReadOutOk("a", after, 700)).empty();) {
    ASSERT_EQ(page.front().seq, after + 1);
    ASSERT_EQ(page.back().record, absl::StrCat("record-", page.back().seq));
    after = page.back().seq;
  }
  EXPECT_EQ(after, kRows);
}

TEST_P(StoreTest, LoadSnapshotIsEmptyAtFirst) {
  absl::StatusOr<std::optional<StoredSnapshot>> loaded = store_->LoadSnapshot("a");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
}

// A whole snapshot, then deltas: entries from `from` on are replaced and those after them
// dropped; the entries before are kept as they were written.
TEST_P(StoreTest, PutSnapshotStoresWholeThenChangesOnlyTheEntriesFromItsIndex) {
  ASSERT_TRUE(store_->PutSnapshot("a", 0, SnapshotOf(1, 0, {"u1", "a1"}, "first")).ok());
  StoredSnapshot stored = LoadSnapshotOk("a");
  EXPECT_EQ(stored.version, 1);
  EXPECT_EQ(stored.header_json, R"({"turn":1})");
  EXPECT_THAT(EntryIds(stored), ElementsAre("u1", "a1"));

  ASSERT_TRUE(store_->PutSnapshot("a", 1, SnapshotOf(2, 2, {"u2", "a2"}, "second")).ok());
  stored = LoadSnapshotOk("a");
  EXPECT_EQ(stored.version, 2);
  EXPECT_EQ(stored.header_json, R"({"turn":2})");
  ASSERT_THAT(EntryIds(stored), ElementsAre("u1", "a1", "u2", "a2"));
  EXPECT_EQ(stored.entries[0].entry_json, R"({"id":"u1","tag":"first"})");
  EXPECT_EQ(stored.entries[3].entry_json, R"({"id":"a2","tag":"second"})");

  // A regenerate: the last entry rewritten in place.
  ASSERT_TRUE(store_->PutSnapshot("a", 2, SnapshotOf(3, 3, {"a2b"}, "third")).ok());
  EXPECT_THAT(EntryIds(LoadSnapshotOk("a")), ElementsAre("u1", "a1", "u2", "a2b"));
  // Entries dropped from the end, none in their place.
  ASSERT_TRUE(store_->PutSnapshot("a", 3, SnapshotOf(4, 1, {})).ok());
  stored = LoadSnapshotOk("a");
  EXPECT_THAT(EntryIds(stored), ElementsAre("u1"));
  EXPECT_EQ(stored.entries[0].entry_json, R"({"id":"u1","tag":"first"})");
  // A whole one replaces every entry.
  ASSERT_TRUE(store_->PutSnapshot("a", 4, SnapshotOf(7, 0, {"x"}, "whole")).ok());
  stored = LoadSnapshotOk("a");
  EXPECT_EQ(stored.version, 7);
  ASSERT_THAT(EntryIds(stored), ElementsAre("x"));
  EXPECT_EQ(stored.entries[0].entry_json, R"({"id":"x","tag":"whole"})");
}

TEST_P(StoreTest, PutSnapshotOnAnotherVersionOrPastTheEntriesWritesNothing) {
  ASSERT_TRUE(store_->PutSession(Session("a", "live")).ok());
  ASSERT_TRUE(store_->PutSnapshot("a", 0, SnapshotOf(1, 0, {"u1", "a1"})).ok());

  absl::Status stale = store_->PutSnapshot("a", 0, SnapshotOf(2, 0, {"x"}));
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(stale.message(), "PutSnapshot for chat 'a': the stored snapshot is version 1, not 0");
  absl::Status ahead = store_->PutSnapshot("a", 2, SnapshotOf(3, 2, {"x"}));
  EXPECT_EQ(ahead.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(ahead.message()), HasSubstr("version 1, not 2"));
  absl::Status gap = store_->PutSnapshot("a", 1, SnapshotOf(2, 3, {"x"}));
  EXPECT_EQ(gap.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(gap.message(),
            "PutSnapshot for chat 'a': entries from 3 would leave a gap after the stored 2");
  EXPECT_EQ(store_->PutSnapshot("b", 1, SnapshotOf(2, 0, {"x"})).code(),
            absl::StatusCode::kFailedPrecondition)
      << "no snapshot stored is version 0";

  StoredSnapshot stored = LoadSnapshotOk("a");
  EXPECT_EQ(stored.version, 1);
  EXPECT_THAT(EntryIds(stored), ElementsAre("u1", "a1"));
  absl::StatusOr<std::vector<SessionRow>> sessions = store_->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ((*sessions)[0].snapshot_in_seq, 1);
  EXPECT_EQ((*sessions)[0].snapshot_out_seq, 10);
  absl::StatusOr<std::optional<StoredSnapshot>> none = store_->LoadSnapshot("b");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
}

// The session row follows: the snapshot's cursors, and a snapshot stored whole there before
// (snapshot_json) emptied, in the same write. Its other fields stay.
TEST_P(StoreTest, PutSnapshotSetsTheSessionsCursorsAndEmptiesItsWholeSnapshot) {
  SessionRow session = Session("a", "suspended");
  ASSERT_FALSE(session.snapshot_json.empty());
  ASSERT_TRUE(store_->PutSession(session).ok());
  ASSERT_TRUE(store_->PutSnapshot("a", 0, SnapshotOf(5, 0, {"u1"})).ok());
  absl::StatusOr<std::vector<SessionRow>> sessions = store_->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 1u);
  session.snapshot_json = "";
  session.snapshot_in_seq = 5;
  session.snapshot_out_seq = 50;
  EXPECT_EQ(Fields((*sessions)[0]), Fields(session));
  // PutSession leaves the snapshot alone.
  ASSERT_TRUE(store_->PutSession(session).ok());
  EXPECT_EQ(LoadSnapshotOk("a").version, 5);
}

TEST_P(StoreTest, SnapshotsAreKeptPerChat) {
  ASSERT_TRUE(store_->PutSnapshot("a", 0, SnapshotOf(1, 0, {"a-1", "a-2"})).ok());
  ASSERT_TRUE(store_->PutSnapshot("b", 0, SnapshotOf(3, 0, {"b-1"})).ok());
  ASSERT_TRUE(store_->PutSnapshot("b", 3, SnapshotOf(4, 0, {})).ok());
  EXPECT_THAT(EntryIds(LoadSnapshotOk("a")), ElementsAre("a-1", "a-2"));
  StoredSnapshot b = LoadSnapshotOk("b");
  EXPECT_EQ(b.version, 4);
  EXPECT_THAT(EntryIds(b), IsEmpty());
  EXPECT_EQ(LoadSnapshotOk("a").version, 1);
}

TEST_P(StoreTest, PutRunInsertsAndReplacesInPlace) {
  ASSERT_TRUE(store_->PutRun(RunOf("r1", "a", "running")).ok());
  ASSERT_TRUE(store_->PutRun(RunOf("r2", "b", "running")).ok());
  ASSERT_TRUE(store_->PutRun(RunOf("r3", "a", "queued")).ok());
  RunRow ended = RunOf("r1", "a", "failed");
  ended.error = "worker lost";
  ended.ended_ms = 99;
  ended.cancel_requested = true;
  ASSERT_TRUE(store_->PutRun(ended).ok());

  absl::StatusOr<std::vector<RunRow>> all = store_->ListRuns("");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_THAT(RunIds(*all), ElementsAre("r1", "r2", "r3"));  // r1 keeps its place
  EXPECT_EQ(Fields((*all)[0]), Fields(ended));
  EXPECT_EQ(Fields((*all)[2]), Fields(RunOf("r3", "a", "queued")));
  EXPECT_THAT(RunIdsOf("a"), ElementsAre("r1", "r3"));
  EXPECT_THAT(RunIdsOf("b"), ElementsAre("r2"));
  EXPECT_THAT(RunIdsOf("unknown"), IsEmpty());
}

TEST_P(StoreTest, ListRunsIsInInsertionOrderNotIdOrder) {
  for (const char* id : {"run-9", "run-10", "run-1"}) {
    ASSERT_TRUE(store_->PutRun(RunOf(id, "a", "queued")).ok());
  }
  EXPECT_THAT(RunIdsOf(""), ElementsAre("run-9", "run-10", "run-1"));
  EXPECT_THAT(RunIdsOf("a"), ElementsAre("run-9", "run-10", "run-1"));
}

TEST_P(StoreTest, CountersStrictlyIncrease) {
  int64_t last_token = 0;
  int64_t last_run = 0;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<int64_t> token = store_->NextLeaseToken();
    absl::StatusOr<int64_t> run = store_->NextRunNumber();
    ASSERT_TRUE(token.ok()) << token.status();
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_GT(*token, last_token);
    EXPECT_GT(*run, last_run);
    last_token = *token;
    last_run = *run;
  }
}

TEST_P(StoreTest, ARunAndItsSessionArePutTogether) {
  SessionRow session = Session("a", "live");
  session.run_id = "run-1";
  ASSERT_TRUE(store_->PutRunAndSession(RunOf("run-1", "a", "queued"), session).ok());
  absl::StatusOr<std::vector<SessionRow>> sessions = store_->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(Fields((*sessions)[0]), Fields(session));
  EXPECT_THAT(RunIdsOf("a"), ElementsAre("run-1"));
}

TEST_P(StoreTest, ConcurrentAppendsGetDistinctSeqsAndTokens) {
  constexpr int kThreads = 4;
  constexpr int kEach = 10;
  std::vector<std::vector<int64_t>> tokens(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        EXPECT_TRUE(store_->AppendIn("a", In("{}")).ok());
        tokens[t].push_back(store_->NextLeaseToken().value_or(-1));
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  std::vector<int64_t> seqs = Seqs(ReadInOk("a", 0));
  ASSERT_EQ(seqs.size(), size_t{kThreads * kEach});
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ(seqs[i], static_cast<int64_t>(i) + 1);
  }
  std::vector<int64_t> all_tokens;
  for (const std::vector<int64_t>& some : tokens) {
    EXPECT_TRUE(std::is_sorted(some.begin(), some.end()));  // increasing within a thread
    all_tokens.insert(all_tokens.end(), some.begin(), some.end());
  }
  std::sort(all_tokens.begin(), all_tokens.end());
  EXPECT_EQ(std::adjacent_find(all_tokens.begin(), all_tokens.end()), all_tokens.end());
  EXPECT_GT(all_tokens.front(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    AllStores, StoreTest,
    ::testing::Values(StoreKind{"Memory", "memory",
                                [](const ScratchDir&) -> absl::StatusOr<std::unique_ptr<Store>> {
                                  return NewMemoryStore();
                                }},
                      StoreKind{"Sqlite", "sqlite:",
                                [](const ScratchDir& dir) {
                                  return OpenSqliteStore(dir.File("store.db"));
                                }},
                      StoreKind{"SqliteDurable", "sqlite:",
                                [](const ScratchDir& dir) {
                                  return OpenSqliteStore(dir.File("store.db"), /*durable=*/true);
                                }}),
    [](const ::testing::TestParamInfo<StoreKind>& info) { return info.param.name; });

// ---- What only the SQLite file does

// Runs `sql` on its own connection to the file at `path` and returns the first column of the
// first row ("" when there is none).
std::string RawQuery(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_stmt* stmt = nullptr;
  std::string result;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
  if (rc == SQLITE_OK) {
    rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
  }
  if (rc == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    result = text == nullptr ? "" : reinterpret_cast<const char*>(text);
  }
  EXPECT_TRUE(rc == SQLITE_ROW || rc == SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed"; }

  std::unique_ptr<Store> Open() {
    absl::StatusOr<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  ScratchDir dir_;
  const std::string path_ = dir_.File("store.db");
};

TEST_F(SqliteStoreTest, EverythingSurvivesAReopen) {
  int64_t token = 0;
  int64_t run_number = 0;
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutSession(Session("a", "suspended")).ok());
    ASSERT_TRUE(store->AppendIn("a", In("{}", "client-1")).ok());
    ASSERT_TRUE(store->AppendIn("a", In("{}")).ok());
    ASSERT_EQ(store->AppendOut("a", Outs(1, 3)).value_or(-1), 3);
    RunRow cancelled = RunOf("r1", "a", "running");
    cancelled.cancel_requested = true;
    ASSERT_TRUE(store->PutRun(cancelled).ok());
    ASSERT_TRUE(store->PutRun(RunOf("r0", "a", "exited")).ok());
    token = store->NextLeaseToken().value_or(-1);
    run_number = store->NextRunNumber().value_or(-1);
  }

  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::vector<SessionRow>> sessions = store->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(Fields((*sessions)[0]), Fields(Session("a", "suspended")));

  absl::StatusOr<Store::Appended> repeated = store->AppendIn("a", In("{}", "client-1"));
  ASSERT_TRUE(repeated.ok()) << repeated.status();
  EXPECT_TRUE(repeated->duplicate);
  EXPECT_EQ(repeated->row.seq, 1);
  EXPECT_EQ(store->AppendIn("a", In("{}")).value_or(Store::Appended()).row.seq, 3);

  EXPECT_EQ(store->LastOutSeq("a").value_or(-1), 3);
  EXPECT_EQ(store->AppendOut("a", Outs(3, 4)).value_or(-1), 4);
  absl::StatusOr<std::vector<OutRow>> out = store->ReadOut("a", 0, 10);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(Seqs(*out), ElementsAre(1, 2, 3, 4));

  absl::StatusOr<std::vector<RunRow>> runs = store->ListRuns("a");
  ASSERT_TRUE(runs.ok()) << runs.status();
  EXPECT_THAT(RunIds(*runs), ElementsAre("r1", "r0"));
  RunRow cancelled = RunOf("r1", "a", "running");
  cancelled.cancel_requested = true;
  EXPECT_EQ(Fields((*runs)[0]), Fields(cancelled));  // a cancel asked for outlives a restart

  EXPECT_GT(store->NextLeaseToken().value_or(-1), token);
  EXPECT_GT(store->NextRunNumber().value_or(-1), run_number);
}

// Counters are reserved in blocks: values taken across a block's end and across reopens (each
// skipping what the last one reserved) never repeat and always grow.
TEST_F(SqliteStoreTest, CountersNeverRepeatAcrossBlocksAndReopens) {
  std::vector<int64_t> tokens, runs;
  for (int open = 0; open < 3; ++open) {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 100; ++i) {
      tokens.push_back(store->NextLeaseToken().value_or(-1));
      runs.push_back(store->NextRunNumber().value_or(-1));
    }
  }
  for (const std::vector<int64_t>* values : {&tokens, &runs}) {
    EXPECT_GT(values->front(), 0);
    for (size_t i = 1; i < values->size(); ++i) {
      ASSERT_GT((*values)[i], (*values)[i - 1]) << "value " << i;
    }
  }
}

TEST_F(SqliteStoreTest, SnapshotsSurviveAReopen) {
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutSession(Session("a", "live")).ok());
    ASSERT_TRUE(store->PutSnapshot("a", 0, SnapshotOf(1, 0, {"u1", "a1"}, "first")).ok());
    ASSERT_TRUE(store->PutSnapshot("a", 1, SnapshotOf(2, 1, {"a1b", "u2"}, "second")).ok());
  }
  EXPECT_EQ(RawQuery(path_, "SELECT message_count FROM snapshots WHERE chat_id = 'a'"), "3");
  EXPECT_EQ(RawQuery(path_, "SELECT bytes FROM snapshots WHERE chat_id = 'a'"), "200");
  EXPECT_EQ(RawQuery(path_, "SELECT count(*) FROM snapshot_messages"), "3");
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::optional<StoredSnapshot>> loaded = store->LoadSnapshot("a");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_TRUE(loaded->has_value());
  const StoredSnapshot& stored = **loaded;
  EXPECT_EQ(stored.version, 2);
  EXPECT_EQ(stored.header_json, R"({"turn":2})");
  ASSERT_THAT(EntryIds(stored), ElementsAre("u1", "a1b", "u2"));
  EXPECT_EQ(stored.entries[0].entry_json, R"({"id":"u1","tag":"first"})");
  EXPECT_EQ(stored.entries[2].entry_json, R"({"id":"u2","tag":"second"})");
  EXPECT_TRUE(store->PutSnapshot("a", 2, SnapshotOf(3, 3, {"a2"})).ok());
}

// Rows a crash or a hand could leave inconsistent are refused at load, not half read.
TEST_F(SqliteStoreTest, ASnapshotMissingAnEntryIsDataLoss) {
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutSnapshot("a", 0, SnapshotOf(1, 0, {"u1", "a1", "u2"})).ok());
  }
  RawQuery(path_, "DELETE FROM snapshot_messages WHERE idx = 1");
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::optional<StoredSnapshot>> loaded = store->LoadSnapshot("a");
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("message 2 where 1 was expected"));
}

// A file of schema version 3 (snapshots stored whole in the session row) opens at version 4,
// with its sessions and their snapshots as they were and no snapshot kept by entry yet: the
// orchestrator converts them as it loads (tests/unit/orchestrator/load_test.cc).
TEST_F(SqliteStoreTest, AVersionThreeFileIsMigratedAndKeepsItsWholeSnapshots) {
  SessionRow legacy = Session("c1", "exited");
  legacy.snapshot_json = R"({"turn":1,"messages":[{"id":"u1"}]})";
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutSession(legacy).ok());
  }
  RawQuery(path_, "DROP TABLE snapshot_messages");
  RawQuery(path_, "DROP TABLE snapshots");
  RawQuery(path_, "PRAGMA user_version = 3");
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(RawQuery(path_, "PRAGMA user_version"), "4");
  absl::StatusOr<std::vector<SessionRow>> sessions = store->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(Fields((*sessions)[0]), Fields(legacy));
  absl::StatusOr<std::optional<StoredSnapshot>> loaded = store->LoadSnapshot("c1");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->has_value());
  ASSERT_TRUE(store->PutSnapshot("c1", 0, SnapshotOf(1, 0, {"u1"})).ok());
}

TEST_F(SqliteStoreTest, TheFileIsInWalModeWithASchemaVersion) {
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(store->AppendOut("a", Outs(1, 1)).value_or(-1), 1);
  EXPECT_TRUE(std::filesystem::exists(path_ + "-wal"));
  // A second connection sees the rows the store committed, and the file's settings.
  EXPECT_EQ(RawQuery(path_, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(RawQuery(path_, "SELECT count(*) FROM out_records"), "1");
  EXPECT_EQ(RawQuery(path_, "PRAGMA user_version"), "4");
  EXPECT_EQ(store->Describe(), "sqlite:" + path_);
}

TEST_F(SqliteStoreTest, BinaryRecordsRoundTripExactly) {
  std::string every_byte;
  for (int byte = 0; byte < 256; ++byte) {
    every_byte.push_back(static_cast<char>(byte));
  }
  const std::vector<OutRow> rows = {
      {.seq = 1, .record = std::string("\0\x01\0\xff", 4)},
      {.seq = 2, .record = ""},
      {.seq = 3, .record = every_byte + every_byte},
  };
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_EQ(store->AppendOut("a", rows).value_or(-1), 3);
  }
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::vector<OutRow>> read = store->ReadOut("a", 0, 10);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 3u);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ((*read)[i].record, rows[i].record) << "seq " << rows[i].seq;
  }
  EXPECT_EQ(RawQuery(path_, "SELECT typeof(record) FROM out_records WHERE seq = 2"), "blob");
}

TEST_F(SqliteStoreTest, TextWithZeroBytesRoundTrips) {
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  const std::string body = std::string("{\"a\":\"x") + '\0' + "y\"}";
  ASSERT_TRUE(store->AppendIn("a", In(body)).ok());
  absl::StatusOr<std::vector<InRow>> rows = store->ReadIn("a", 0, kAllRows);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].body_json, body);
}

TEST_F(SqliteStoreTest, OpeningInAMissingDirectoryFailsClearly) {
  const std::string path = dir_.File("missing/sub/store.db");
  absl::StatusOr<std::unique_ptr<Store>> store = OpenSqliteStore(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("unable to open"));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("missing")));
}

TEST_F(SqliteStoreTest, OpeningAFileThatIsNotADatabaseFails) {
  std::ofstream(path_) << std::string(4096, 'x');
  absl::StatusOr<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("not a database"));
}

TEST_F(SqliteStoreTest, OpeningAnEmptyPathFails) {
  absl::StatusOr<std::unique_ptr<Store>> store = OpenSqliteStore("");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteStoreTest, AVersionTwoFileIsMigratedAndKeepsItsSessions) {
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutSession(Session("c1", "live")).ok());
  }
  // The file as version 2 left it: the sessions table without the head-start columns.
  for (const char* column : {"head_start_json", "handover_deadline_ms", "failed_in_seq"}) {
    RawQuery(path_, absl::StrCat("ALTER TABLE sessions DROP COLUMN ", column));
  }
  RawQuery(path_, "PRAGMA user_version = 2");
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::vector<SessionRow>> sessions = store->LoadSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 1u);
  EXPECT_EQ(Fields((*sessions)[0]), Fields(Session("c1", "live")));
  EXPECT_EQ(RawQuery(path_, "PRAGMA user_version"), "4");
}

// A file of schema version 1 (before runs kept a client's cancel) opens, gains the column, and
// keeps its runs, none of them cancelled.
TEST_F(SqliteStoreTest, AVersionOneFileIsMigratedAndKeepsItsRuns) {
  {
    std::unique_ptr<Store> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->PutRun(RunOf("r1", "a", "running")).ok());
  }
  RawQuery(path_, "ALTER TABLE runs DROP COLUMN cancel_requested");
  for (const char* column : {"head_start_json", "handover_deadline_ms", "failed_in_seq"}) {
    RawQuery(path_, absl::StrCat("ALTER TABLE sessions DROP COLUMN ", column));
  }
  RawQuery(path_, "PRAGMA user_version = 1");
  std::unique_ptr<Store> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(RawQuery(path_, "PRAGMA user_version"), "4");
  absl::StatusOr<std::vector<RunRow>> runs = store->ListRuns("a");
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ(Fields((*runs)[0]), Fields(RunOf("r1", "a", "running")));
  RunRow cancelled = RunOf("r1", "a", "running");
  cancelled.cancel_requested = true;
  ASSERT_TRUE(store->PutRun(cancelled).ok());
  runs = store->ListRuns("a");
  ASSERT_TRUE(runs.ok()) << runs.status();
  EXPECT_TRUE((*runs)[0].cancel_requested);
}

TEST_F(SqliteStoreTest, OpeningANewerSchemaFails) {
  ASSERT_NE(Open(), nullptr);
  RawQuery(path_, "PRAGMA user_version = 99");
  absl::StatusOr<std::unique_ptr<Store>> store = OpenSqliteStore(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("schema version 99"));
}

}  // namespace
}  // namespace baton::orchestrator
