// File: tools/orchestrator/memory_store.cc
//
// MemoryStore: the Store in process memory, for unit tests. Nothing survives the object. Every
// method takes one mutex, so calls from any thread are serialised as the Store contract asks.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "hooks/status.h"
#include "tools/orchestrator/store.h"

namespace baton::orchestrator {
namespace {

// One chat's logs. Both start at seq 1 and have no holes, so the row with seq s is at index
// s - 1 and the last seq is the size.
struct ChatLogs {
  std::vector<InRow> in;
  std::map<std::string, int64_t> in_seq_by_client_id;  // non-empty client_record_id -> seq
  std::vector<OutRow> out;
};

// One chat's snapshot, as PutSnapshot keeps it.
struct StoredSnapshotRow {
  int64_t version = 0;
  std::string header_json;
  int64_t bytes = 0;
  std::vector<SnapshotEntryRow> entries;
};

// The index of the first row with seq > after_seq in a log of `size` rows.
size_t FirstAfter(int64_t after_seq, size_t size) {
  return static_cast<size_t>(std::clamp<int64_t>(after_seq, 0, static_cast<int64_t>(size)));
}

class MemoryStore final : public Store {
 public:
  std::string Describe() const override { return "memory"; }

  absl::Status PutSession(const SessionRow& session) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    sessions_[session.chat_id] = session;
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<SessionRow>> LoadSessions() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<SessionRow> sessions;
    sessions.reserve(sessions_.size());
    for (const auto& [chat_id, session] : sessions_) {
      sessions.push_back(session);
    }
    return sessions;
  }

  absl::StatusOr<Appended> AppendIn(const std::string& chat_id, InRow row) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    ChatLogs& logs = logs_[chat_id];
    if (!row.client_record_id.empty()) {
      auto [it, inserted] =
          logs.in_seq_by_client_id.try_emplace(row.client_record_id, logs.in.size() + 1);
      if (!inserted) {
        return Appended{.row = logs.in[it->second - 1], .duplicate = true};
      }
    }
    row.seq = static_cast<int64_t>(logs.in.size()) + 1;
    logs.in.push_back(row);
    return Appended{.row = std::move(row), .duplicate = false};
  }

  absl::StatusOr<std::vector<InRow>> ReadIn(const std::string& chat_id, int64_t after_seq,
                                            size_t limit) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const ChatLogs* logs = FindLocked(chat_id);
    if (logs == nullptr) {
      return std::vector<InRow>();
    }
    const size_t first = FirstAfter(after_seq, logs->in.size());
    const size_t count = std::min(limit, logs->in.size() - first);
    return std::vector<InRow>(logs->in.begin() + first, logs->in.begin() + first + count);
  }

  absl::StatusOr<int64_t> LastInSeq(const std::string& chat_id) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const ChatLogs* logs = FindLocked(chat_id);
    return logs == nullptr ? 0 : static_cast<int64_t>(logs->in.size());
  }

  absl::StatusOr<int64_t> AppendOut(const std::string& chat_id,
                                    const std::vector<OutRow>& rows) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<OutRow>& out = logs_[chat_id].out;
    const size_t before = out.size();
    for (const OutRow& row : rows) {
      const int64_t end = static_cast<int64_t>(out.size());
      if (row.seq <= end) {
        continue;  // a re-send of a stored row
      }
      if (row.seq != end + 1) {
        out.resize(before);  // a gap writes nothing, not even the rows before it
        return absl::FailedPreconditionError(absl::StrCat("AppendOut for chat '", chat_id,
                                                          "': row seq ", row.seq,
                                                          " leaves a gap after seq ", end));
      }
      out.push_back(row);
    }
    return static_cast<int64_t>(out.size());
  }

  absl::StatusOr<std::vector<OutRow>> ReadOut(const std::string& chat_id, int64_t after_seq,
                                              size_t limit) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const ChatLogs* logs = FindLocked(chat_id);
    if (logs == nullptr) {
      return std::vector<OutRow>();
    }
    const size_t first = FirstAfter(after_seq, logs->out.size());
    const size_t count = std::min(limit, logs->out.size() - first);
    return std::vector<OutRow>(logs->out.begin() + first, logs->out.begin() + first + count);
  }

  absl::StatusOr<int64_t> LastOutSeq(const std::string& chat_id) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const ChatLogs* logs = FindLocked(chat_id);
    return logs == nullptr ? 0 : static_cast<int64_t>(logs->out.size());
  }

  absl::Status PutSnapshot(const std::string& chat_id, int64_t base_version,
                           const SnapshotWrite& write) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto found = snapshots_.find(chat_id);
    const int64_t stored_version = found == snapshots_.end() ? 0 : found->second.version;
    const int64_t stored_count =
        found == snapshots_.end() ? 0 : static_cast<int64_t>(found->second.entries.size());
    if (stored_version != base_version) {
      return absl::FailedPreconditionError(absl::StrCat("PutSnapshot for chat '", chat_id,
                                                        "': the stored snapshot is version ",
                                                        stored_version, ", not ", base_version));
    }
    if (write.from < 0 || write.from > stored_count) {
      return absl::FailedPreconditionError(
          absl::StrCat("PutSnapshot for chat '", chat_id, "': entries from ", write.from,
                       " would leave a gap after the stored ", stored_count));
    }
    StoredSnapshotRow& row = snapshots_[chat_id];
    row.version = write.version;
    row.header_json = write.header_json;
    row.bytes = write.bytes;
    row.entries.resize(static_cast<size_t>(write.from));
    row.entries.insert(row.entries.end(), write.entries.begin(), write.entries.end());
    auto session = sessions_.find(chat_id);
    if (session != sessions_.end()) {
      session->second.snapshot_in_seq = write.in_seq;
      session->second.snapshot_out_seq = write.out_seq;
      session->second.snapshot_json.clear();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<StoredSnapshot>> LoadSnapshot(const std::string& chat_id) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto found = snapshots_.find(chat_id);
    if (found == snapshots_.end()) return std::optional<StoredSnapshot>();
    StoredSnapshot snapshot;
    snapshot.version = found->second.version;
    snapshot.header_json = found->second.header_json;
    snapshot.entries = found->second.entries;
    return std::optional<StoredSnapshot>(std::move(snapshot));
  }

  absl::Status PutRun(const RunRow& run) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = run_index_.try_emplace(run.run_id, runs_.size());
    if (inserted) {
      runs_.push_back(run);
    } else {
      runs_[it->second] = run;  // a replaced run keeps its place in the order
    }
    return absl::OkStatus();
  }

  absl::Status PutRunAndSession(const RunRow& run, const SessionRow& session) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    BATON_RETURN_IF_ERROR(PutRun(run));
    return PutSession(session);
  }

  absl::StatusOr<std::vector<RunRow>> ListRuns(const std::string& chat_id) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    std::vector<RunRow> runs;
    for (const RunRow& run : runs_) {
      if (chat_id.empty() || run.chat_id == chat_id) {
        runs.push_back(run);
      }
    }
    return runs;
  }

  absl::StatusOr<int64_t> NextLeaseToken() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return ++last_lease_token_;
  }

  absl::StatusOr<int64_t> NextRunNumber() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return ++last_run_number_;
  }

 private:
  // The chat's logs, or null when nothing was ever appended for it.
  const ChatLogs* FindLocked(const std::string& chat_id) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    auto it = logs_.find(chat_id);
    return it == logs_.end() ? nullptr : &it->second;
  }

  mutable absl::Mutex mu_;
  std::map<std::string, SessionRow> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ChatLogs> logs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredSnapshotRow> snapshots_ ABSL_GUARDED_BY(mu_);
  std::vector<RunRow> runs_ ABSL_GUARDED_BY(mu_);                 // insertion order
  std::map<std::string, size_t> run_index_ ABSL_GUARDED_BY(mu_);  // run_id -> index in runs_
  int64_t last_lease_token_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_run_number_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

std::unique_ptr<Store> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

}  // namespace baton::orchestrator
