// File: tools/orchestrator/sqlite_store.cc
//
// SqliteStore: the Store in one SQLite file in WAL mode. One connection behind one mutex: SQLite
// runs one writer at a time anyway, and a single connection lets every statement be prepared
// once and reused. Writes that read before they write (AppendIn, AppendOut, PutSnapshot) run in
// BEGIN IMMEDIATE transactions; AppendOut stores a whole batch in one transaction, so its cost is
// one commit per batch, not per row, and PutSnapshot a snapshot's changed entries in one.
//
// The file format is the schema in kMigrations, versioned with PRAGMA user_version.
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "hooks/status.h"
#include "tools/orchestrator/store.h"

namespace baton::orchestrator {
namespace {

// How long a statement waits for another connection's lock (batonctl reading the file, a
// backup) before it fails with kUnavailable.
constexpr int kBusyTimeoutMs = 5000;

// Schema changes, in order: kMigrations[v] takes a file from schema version v to v + 1 (PRAGMA
// user_version; a new file is at 0). A change appends a step; a step that has shipped is never
// edited. There are no foreign keys: the Store contract keeps a chat's logs apart from its
// session row, and either may be written first.
constexpr absl::string_view kMigrations[] = {
    R"sql(
CREATE TABLE IF NOT EXISTS sessions (
  chat_id TEXT NOT NULL PRIMARY KEY,
  agent TEXT NOT NULL,
  state TEXT NOT NULL,
  base_payload_json TEXT NOT NULL,
  boot_message_json TEXT NOT NULL,
  traceparent TEXT NOT NULL,
  run_id TEXT NOT NULL,
  runs INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  resume_deadline_ms INTEGER NOT NULL,
  snapshot_json TEXT NOT NULL,
  snapshot_in_seq INTEGER NOT NULL,
  snapshot_out_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS in_records (
  chat_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  body_json TEXT NOT NULL,
  client_record_id TEXT NOT NULL,
  appended_ms INTEGER NOT NULL,
  PRIMARY KEY (chat_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS in_records_by_client_id
  ON in_records (chat_id, client_record_id) WHERE client_record_id != '';
-- WITHOUT ROWID: rows are small and only ever found by (chat_id, seq), so keeping them in the
-- key's b-tree saves a second b-tree write per appended row.
CREATE TABLE IF NOT EXISTS out_records (
  chat_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  record BLOB NOT NULL,
  PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
-- ord is the rowid: insertion order, which ListRuns returns (PutRun updates in place).
CREATE TABLE IF NOT EXISTS runs (
  ord INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL UNIQUE,
  chat_id TEXT NOT NULL,
  agent TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  "trigger" TEXT NOT NULL,
  state TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  previous_run_id TEXT NOT NULL,
  lease_token INTEGER NOT NULL,
  worker_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  error TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  ended_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_chat ON runs (chat_id, ord);
CREATE TABLE IF NOT EXISTS counters (
  name TEXT NOT NULL PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
)sql",
    // 1 -> 2: a run keeps the cancel a client asked for, so a restart does not forget it.
    R"sql(
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
)sql",
    // 2 -> 3: head starts keep their first turn for a retry and their handover window; a chat that
    // gave up keeps the `.in` seq of the messages it answered with an error.
    R"sql(
ALTER TABLE sessions ADD COLUMN head_start_json TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN handover_deadline_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN failed_in_seq INTEGER NOT NULL DEFAULT 0;
)sql",
    // 3 -> 4: snapshots kept by entry (issue 15): a save writes the header and the entries the
    // turn changed, not the whole chat. The sessions' snapshot_json column stays: a snapshot
    // stored whole there is converted when the orchestrator loads it. Only CREATE TABLE IF NOT
    // EXISTS: the step is safe on a file that has the tables already (the migration tests fake
    // an older file from a current one).
    R"sql(
CREATE TABLE IF NOT EXISTS snapshots (
  chat_id TEXT NOT NULL PRIMARY KEY,
  version INTEGER NOT NULL,
  header_json TEXT NOT NULL,
  message_count INTEGER NOT NULL,
  bytes INTEGER NOT NULL
);
-- A rowid table on purpose: entries are kilobytes to megabytes, too large for a WITHOUT ROWID
-- table's b-tree.
CREATE TABLE IF NOT EXISTS snapshot_messages (
  chat_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  entry_json TEXT NOT NULL,
  PRIMARY KEY (chat_id, idx)
);
)sql",
};
constexpr int64_t kSchemaVersion = std::size(kMigrations);

constexpr absl::string_view kLeaseTokenCounter = "lease_token";
constexpr absl::string_view kRunNumberCounter = "run_number";
// How many values of a counter one commit reserves (SqliteStore::NextCounterLocked).
constexpr int64_t kCounterBlock = 64;

// A counter's values reserved and not yet handed out: next..last.
struct Counter {
  int64_t next = 1, last = 0;
};

// ---- Errors

// The most specific canonical code for a SQLite result code (primary or extended).
absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;  // another connection holds the lock: retry
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_TOOBIG:
      return absl::StatusCode::kInvalidArgument;
    case SQLITE_CORRUPT:
      return absl::StatusCode::kDataLoss;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_NOTADB:
      return absl::StatusCode::kFailedPrecondition;  // the file, not the call, is wrong
    default:
      return absl::StatusCode::kInternal;
  }
}

// A Status for result `rc` of `what` on `db`: SQLite's message for the connection when it is
// about `rc` (a failed bind leaves an older one), and for a file SQLite could not open or
// read, the operating system's reason.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const bool db_reports_rc = db != nullptr && sqlite3_extended_errcode(db) == rc;
  std::string message =
      absl::StrCat("sqlite ", what, ": ", db_reports_rc ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                   " (code ", rc, ")");
  const int os_error = db == nullptr ? 0 : sqlite3_system_errno(db);
  if (os_error != 0 && ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR)) {
    absl::StrAppend(&message, ": ", std::generic_category().message(os_error));
  }
  return absl::Status(CodeFor(rc), message);
}

// ---- Statements

struct FinalizeStatement {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
struct CloseConnection {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using ConnectionPtr = std::unique_ptr<sqlite3, CloseConnection>;

// A statement prepared once and kept for the connection's life; finalized on destruction.
class Statement {
 public:
  Statement() = default;

  // `label` names the statement in error messages ("append .out row").
  static absl::StatusOr<Statement> Prepare(sqlite3* db, absl::string_view label,
                                           absl::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return SqliteError(db, rc, absl::StrCat("prepare '", label, "'"));
    }
    Statement statement;
    statement.stmt_.reset(stmt);
    statement.label_ = std::string(label);
    return statement;
  }

  sqlite3_stmt* get() const { return stmt_.get(); }
  const std::string& label() const { return label_; }

 private:
  std::unique_ptr<sqlite3_stmt, FinalizeStatement> stmt_;
  std::string label_;
};

// One execution of a Statement: binds parameters left to right, steps, reads the current row.
// Resets the statement when it goes out of scope, so a cached statement is ready for the next
// Query however this one ended (done, failed, or abandoned mid-rows).
//
// Bound strings are not copied (SQLITE_STATIC): they must outlive the Query.
class Query {
 public:
  // `chat_id` ("" for none) only adds context to error messages.
  Query(sqlite3* db, const Statement& statement, absl::string_view chat_id = "")
      : db_(db), stmt_(statement.get()), label_(statement.label()), chat_id_(chat_id) {}
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);  // drops the pointers to bound strings
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Bind(int64_t value) { return Bound(sqlite3_bind_int64(stmt_, next_param_++, value)); }
  Query& Bind(int32_t value) { return Bind(int64_t{value}); }
  Query& Bind(bool value) { return Bind(int64_t{value ? 1 : 0}); }
  Query& Bind(absl::string_view text) {
    return Bound(sqlite3_bind_text64(stmt_, next_param_++, NonNull(text), text.size(),
                                     SQLITE_STATIC, SQLITE_UTF8));
  }
  Query& BindBlob(absl::string_view bytes) {
    return Bound(
        sqlite3_bind_blob64(stmt_, next_param_++, NonNull(bytes), bytes.size(), SQLITE_STATIC));
  }

  // Steps once: true with a row to read, false when the statement is done. A failed Bind
  // before it is reported here.
  absl::StatusOr<bool> Step() {
    if (bind_rc_ != SQLITE_OK) {
      return Error(bind_rc_);
    }
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
      return rc == SQLITE_ROW;
    }
    return Error(rc);
  }

  // Steps to the end, ignoring rows: for statements run for their effect.
  absl::Status Run() {
    for (;;) {
      BATON_ASSIGN_OR_RETURN(bool has_row, Step());
      if (!has_row) {
        return absl::OkStatus();
      }
    }
  }

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    return text == nullptr ? std::string() : std::string(text, sqlite3_column_bytes(stmt_, column));
  }
  std::string Blob(int column) const {
    // A zero-length blob reads as a null pointer.
    const auto* bytes = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    return bytes == nullptr ? std::string()
                            : std::string(bytes, sqlite3_column_bytes(stmt_, column));
  }
  void Read(int column, std::string& out) const { out = Text(column); }
  void Read(int column, int64_t& out) const { out = Int(column); }
  void Read(int column, int32_t& out) const { out = static_cast<int32_t>(Int(column)); }
  void Read(int column, bool& out) const { out = Int(column) != 0; }

 private:
  // SQLite binds SQL NULL for a null pointer; an empty string or record is not NULL.
  static const char* NonNull(absl::string_view bytes) {
    return bytes.data() == nullptr ? "" : bytes.data();
  }

  Query& Bound(int rc) {
    if (bind_rc_ == SQLITE_OK) {
      bind_rc_ = rc;
    }
    return *this;
  }

  absl::Status Error(int rc) const {
    return SqliteError(
        db_, rc, chat_id_.empty() ? label_ : absl::StrCat(label_, " for chat '", chat_id_, "'"));
  }

  sqlite3* const db_;
  sqlite3_stmt* const stmt_;
  const std::string& label_;
  const absl::string_view chat_id_;
  int next_param_ = 1;
  int bind_rc_ = SQLITE_OK;  // the first failed bind, reported by Step()
};

// Runs `sql` (one statement or several, without parameters) for its effect.
absl::Status Exec(sqlite3* db, absl::string_view sql, absl::string_view what) {
  const int rc = sqlite3_exec(db, std::string(sql).c_str(), nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db, rc, what);
}

// The first column of the first row of `sql` (a pragma), as text.
absl::StatusOr<std::string> QueryText(sqlite3* db, absl::string_view sql) {
  BATON_ASSIGN_OR_RETURN(Statement statement, Statement::Prepare(db, sql, sql));
  Query query(db, statement);
  BATON_ASSIGN_OR_RETURN(bool has_row, query.Step());
  if (!has_row) {
    return absl::InternalError(absl::StrCat("sqlite '", sql, "' returned no row"));
  }
  return query.Text(0);
}

// ---- Transactions

struct TransactionStatements {
  Statement begin;
  Statement commit;
  Statement rollback;
};

absl::StatusOr<TransactionStatements> PrepareTransactionStatements(sqlite3* db) {
  TransactionStatements statements;
  BATON_ASSIGN_OR_RETURN(statements.begin, Statement::Prepare(db, "begin", "BEGIN IMMEDIATE"));
  BATON_ASSIGN_OR_RETURN(statements.commit, Statement::Prepare(db, "commit", "COMMIT"));
  BATON_ASSIGN_OR_RETURN(statements.rollback, Statement::Prepare(db, "rollback", "ROLLBACK"));
  return statements;
}

// A write transaction, rolled back on destruction unless committed. It begins IMMEDIATE, taking
// the write lock before its first read, so what it reads (the last seq, an earlier
// client_record_id) cannot change before it writes, even with another process on the file.
class Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(sqlite3* db, const TransactionStatements& statements) {
    BATON_RETURN_IF_ERROR(Query(db, statements.begin).Run());
    return Transaction(db, statements);
  }

  Transaction(Transaction&& other) noexcept
      : db_(other.db_), statements_(other.statements_), open_(std::exchange(other.open_, false)) {}
  Transaction& operator=(Transaction&&) = delete;

  ~Transaction() {
    // After some failures (SQLITE_FULL, SQLITE_IOERR) SQLite has rolled back already, and a
    // ROLLBACK would only fail.
    if (open_ && sqlite3_get_autocommit(db_) == 0) {
      Query(db_, statements_->rollback).Run().IgnoreError();
    }
  }

  absl::Status Commit() {
    BATON_RETURN_IF_ERROR(Query(db_, statements_->commit).Run());
    open_ = false;
    return absl::OkStatus();
  }

 private:
  Transaction(sqlite3* db, const TransactionStatements& statements)
      : db_(db), statements_(&statements), open_(true) {}

  sqlite3* db_;
  const TransactionStatements* statements_;
  bool open_;
};

// ---- Rows as columns

// One column of a table that mirrors a Row struct: its name and the member it holds.
template <typename Row>
struct Column {
  absl::string_view name;
  std::variant<std::string Row::*, int64_t Row::*, int32_t Row::*, bool Row::*> member;
};

// The key comes first: UpsertSql() relies on it.
constexpr Column<SessionRow> kSessionColumns[] = {
    {"chat_id", &SessionRow::chat_id},
    {"agent", &SessionRow::agent},
    {"state", &SessionRow::state},
    {"base_payload_json", &SessionRow::base_payload_json},
    {"boot_message_json", &SessionRow::boot_message_json},
    {"traceparent", &SessionRow::traceparent},
    {"run_id", &SessionRow::run_id},
    {"runs", &SessionRow::runs},
    {"created_ms", &SessionRow::created_ms},
    {"resume_deadline_ms", &SessionRow::resume_deadline_ms},
    {"snapshot_json", &SessionRow::snapshot_json},
    {"snapshot_in_seq", &SessionRow::snapshot_in_seq},
    {"snapshot_out_seq", &SessionRow::snapshot_out_seq},
    {"head_start_json", &SessionRow::head_start_json},
    {"handover_deadline_ms", &SessionRow::handover_deadline_ms},
    {"failed_in_seq", &SessionRow::failed_in_seq},
};

// in_records without its chat_id.
constexpr Column<InRow> kInColumns[] = {
    {"seq", &InRow::seq},
    {"kind", &InRow::kind},
    {"body_json", &InRow::body_json},
    {"client_record_id", &InRow::client_record_id},
    {"appended_ms", &InRow::appended_ms},
};

constexpr Column<RunRow> kRunColumns[] = {
    {"run_id", &RunRow::run_id},
    {"chat_id", &RunRow::chat_id},
    {"agent", &RunRow::agent},
    {"attempt", &RunRow::attempt},
    {"trigger", &RunRow::trigger},
    {"state", &RunRow::state},
    {"payload_json", &RunRow::payload_json},
    {"previous_run_id", &RunRow::previous_run_id},
    {"lease_token", &RunRow::lease_token},
    {"worker_id", &RunRow::worker_id},
    {"reason", &RunRow::reason},
    {"error", &RunRow::error},
    {"created_ms", &RunRow::created_ms},
    {"started_ms", &RunRow::started_ms},
    {"ended_ms", &RunRow::ended_ms},
    {"cancel_requested", &RunRow::cancel_requested},
};

template <typename Row, size_t N>
void BindColumns(Query& query, const Row& row, const Column<Row> (&columns)[N]) {
  for (const Column<Row>& column : columns) {
    std::visit([&](auto member) { query.Bind(row.*member); }, column.member);
  }
}

// A Row from the current row of `query`, whose result columns are `columns` in order.
template <typename Row, size_t N>
Row ReadColumns(const Query& query, const Column<Row> (&columns)[N]) {
  Row row;
  for (size_t i = 0; i < N; ++i) {
    std::visit([&](auto member) { query.Read(static_cast<int>(i), row.*member); },
               columns[i].member);
  }
  return row;
}

// Steps `query` to its end, turning each result row into a Row with `read`.
template <typename Row, typename ReadRow>
absl::StatusOr<std::vector<Row>> ReadAll(Query& query, ReadRow read) {
  std::vector<Row> rows;
  for (;;) {
    BATON_ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (!has_row) {
      return rows;
    }
    rows.push_back(read(query));
  }
}

template <typename Row, size_t N>
absl::StatusOr<std::vector<Row>> ReadAllColumns(Query& query, const Column<Row> (&columns)[N]) {
  return ReadAll<Row>(query, [&](const Query& q) { return ReadColumns(q, columns); });
}

// "a", "b", ... quoted, because a run has a column named after the keyword TRIGGER.
template <typename Row, size_t N>
std::string ColumnList(const Column<Row> (&columns)[N]) {
  return absl::StrJoin(columns, ", ", [](std::string* out, const Column<Row>& column) {
    absl::StrAppend(out, "\"", column.name, "\"");
  });
}

std::string Placeholders(size_t count) {
  return absl::StrJoin(std::vector<absl::string_view>(count, "?"), ", ");
}

// SQLite's LIMIT is signed; anything above the largest int64 is no limit anyway.
int64_t SqlLimit(size_t limit) {
  return static_cast<int64_t>(std::min<uint64_t>(limit, std::numeric_limits<int64_t>::max()));
}

// Inserts a whole row; on a key conflict updates it in place. INSERT OR REPLACE would delete
// and re-insert, moving a replaced run to the end of ListRuns' order.
template <typename Row, size_t N>
std::string UpsertSql(absl::string_view table, const Column<Row> (&columns)[N]) {
  const std::string updates = absl::StrJoin(
      std::span(columns).subspan(1), ", ", [](std::string* out, const Column<Row>& column) {
        absl::StrAppend(out, "\"", column.name, "\" = excluded.\"", column.name, "\"");
      });
  return absl::StrCat("INSERT INTO ", table, " (", ColumnList(columns), ") VALUES (",
                      Placeholders(N), ") ON CONFLICT (\"", columns[0].name, "\") DO UPDATE SET ",
                      updates);
}

// ---- The store's statements

enum StatementId : size_t {
  kPutSession,
  kLoadSessions,
  kFindInByClientId,
  kLastInSeq,
  kInsertIn,
  kReadIn,
  kLastOutSeq,
  kInsertOut,
  kReadOut,
  kPutRun,
  kListRuns,
  kListChatRuns,
  kNextCounter,
  kSnapshotVersion,
  kPutSnapshotHeader,
  kTrimSnapshotMessages,
  kPutSnapshotMessage,
  kSetSessionSnapshot,
  kLoadSnapshotHeader,
  kLoadSnapshotMessages,
  kStatementCount,
};
using StoreStatements = std::array<Statement, kStatementCount>;

struct StatementSql {
  absl::string_view label;
  std::string sql;
};

std::array<StatementSql, kStatementCount> StoreStatementSql() {
  const std::string in_columns = ColumnList(kInColumns);
  const std::string run_columns = ColumnList(kRunColumns);
  std::array<StatementSql, kStatementCount> s;
  s[kPutSession] = {"store session", UpsertSql("sessions", kSessionColumns)};
  s[kLoadSessions] = {"load sessions", absl::StrCat("SELECT ", ColumnList(kSessionColumns),
                                                    " FROM sessions ORDER BY chat_id")};
  // The literal `client_record_id != ''` lets the planner use the partial index, whose WHERE
  // it must match; a bound value alone does not prove it.
  s[kFindInByClientId] = {"find .in row by client_record_id",
                          absl::StrCat("SELECT ", in_columns,
                                       " FROM in_records WHERE chat_id = ? AND client_record_id = ?"
                                       " AND client_record_id != ''")};
  s[kLastInSeq] = {"read last .in seq",
                   "SELECT seq FROM in_records WHERE chat_id = ? ORDER BY seq DESC LIMIT 1"};
  s[kInsertIn] = {"append .in row",
                  absl::StrCat("INSERT INTO in_records (chat_id, ", in_columns, ") VALUES (",
                               Placeholders(std::size(kInColumns) + 1), ")")};
  s[kReadIn] = {"read .in", absl::StrCat("SELECT ", in_columns,
                                         " FROM in_records WHERE chat_id = ? AND seq > ?"
                                         " ORDER BY seq LIMIT ?")};
  s[kLastOutSeq] = {"read last .out seq",
                    "SELECT seq FROM out_records WHERE chat_id = ? ORDER BY seq DESC LIMIT 1"};
  s[kInsertOut] = {"append .out row",
                   "INSERT INTO out_records (chat_id, seq, record) VALUES (?, ?, ?)"};
  s[kReadOut] = {"read .out",
                 "SELECT seq, record FROM out_records WHERE chat_id = ? AND seq > ?"
                 " ORDER BY seq LIMIT ?"};
  s[kPutRun] = {"store run", UpsertSql("runs", kRunColumns)};
  s[kListRuns] = {"list runs", absl::StrCat("SELECT ", run_columns, " FROM runs ORDER BY ord")};
  s[kListChatRuns] = {"list chat runs", absl::StrCat("SELECT ", run_columns,
                                                     " FROM runs WHERE chat_id = ? ORDER BY ord")};
  s[kNextCounter] = {"advance counter",
                     "INSERT INTO counters (name, value) VALUES (?, ?)"
                     " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"
                     " RETURNING value"};
  s[kSnapshotVersion] = {"read snapshot version",
                         "SELECT version, message_count FROM snapshots WHERE chat_id = ?"};
  s[kPutSnapshotHeader] = {
      "store snapshot header",
      "INSERT INTO snapshots (chat_id, version, header_json, message_count, bytes)"
      " VALUES (?, ?, ?, ?, ?) ON CONFLICT (chat_id) DO UPDATE SET version = excluded.version,"
      " header_json = excluded.header_json, message_count = excluded.message_count,"
      " bytes = excluded.bytes"};
  s[kTrimSnapshotMessages] = {"trim snapshot messages",
                              "DELETE FROM snapshot_messages WHERE chat_id = ? AND idx >= ?"};
  // An update in place, not a delete and an insert: a rewritten entry leaves no dead row.
  s[kPutSnapshotMessage] = {
      "store snapshot message",
      "INSERT INTO snapshot_messages (chat_id, idx, message_id, entry_json) VALUES (?, ?, ?, ?)"
      " ON CONFLICT (chat_id, idx) DO UPDATE SET message_id = excluded.message_id,"
      " entry_json = excluded.entry_json"};
  s[kSetSessionSnapshot] = {"store session snapshot cursors",
                            "UPDATE sessions SET snapshot_in_seq = ?, snapshot_out_seq = ?,"
                            " snapshot_json = '' WHERE chat_id = ?"};
  s[kLoadSnapshotHeader] = {
      "load snapshot header",
      "SELECT version, header_json, message_count FROM snapshots WHERE chat_id = ?"};
  s[kLoadSnapshotMessages] = {"load snapshot messages",
                              "SELECT idx, message_id, entry_json FROM snapshot_messages"
                              " WHERE chat_id = ? ORDER BY idx"};
  return s;
}

absl::StatusOr<StoreStatements> PrepareStoreStatements(sqlite3* db) {
  StoreStatements statements;
  const std::array<StatementSql, kStatementCount> sql = StoreStatementSql();
  for (size_t i = 0; i < kStatementCount; ++i) {
    BATON_ASSIGN_OR_RETURN(statements[i], Statement::Prepare(db, sql[i].label, sql[i].sql));
  }
  return statements;
}

// ---- The store

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, ConnectionPtr db, TransactionStatements transaction,
              StoreStatements statements)
      : path_(std::move(path)),
        db_(std::move(db)),
        transaction_(std::move(transaction)),
        statements_(std::move(statements)) {}

  std::string Describe() const override { return absl::StrCat("sqlite:", path_); }

  absl::Status PutSession(const SessionRow& session) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    Query query = Use(kPutSession, session.chat_id);
    BindColumns(query, session, kSessionColumns);
    return query.Run();
  }

  absl::StatusOr<std::vector<SessionRow>> LoadSessions() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    Query query = Use(kLoadSessions);
    return ReadAllColumns(query, kSessionColumns);
  }

  absl::StatusOr<Appended> AppendIn(const std::string& chat_id, InRow row) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    BATON_ASSIGN_OR_RETURN(Transaction transaction, BeginLocked());
    if (!row.client_record_id.empty()) {
      BATON_ASSIGN_OR_RETURN(std::optional<InRow> earlier,
                             FindInByClientIdLocked(chat_id, row.client_record_id));
      if (earlier.has_value()) {
        return Appended{.row = *std::move(earlier), .duplicate = true};
      }
    }
    BATON_ASSIGN_OR_RETURN(int64_t last, LastSeqLocked(kLastInSeq, chat_id));
    row.seq = last + 1;
    {
      Query insert = Use(kInsertIn, chat_id);
      insert.Bind(chat_id);
      BindColumns(insert, row, kInColumns);
      BATON_RETURN_IF_ERROR(insert.Run());
    }
    BATON_RETURN_IF_ERROR(transaction.Commit());
    return Appended{.row = std::move(row), .duplicate = false};
  }

  absl::StatusOr<std::vector<InRow>> ReadIn(const std::string& chat_id, int64_t after_seq,
                                            size_t limit) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    Query query = Use(kReadIn, chat_id);
    query.Bind(chat_id).Bind(after_seq).Bind(SqlLimit(limit));
    return ReadAllColumns(query, kInColumns);
  }

  absl::StatusOr<int64_t> LastInSeq(const std::string& chat_id) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return LastSeqLocked(kLastInSeq, chat_id);
  }

  absl::StatusOr<int64_t> AppendOut(const std::string& chat_id,
                                    const std::vector<OutRow>& rows) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    BATON_ASSIGN_OR_RETURN(Transaction transaction, BeginLocked());
    BATON_ASSIGN_OR_RETURN(int64_t end, LastSeqLocked(kLastOutSeq, chat_id));
    for (const OutRow& row : rows) {
      if (row.seq <= end) {
        continue;  // a re-send of a stored row
      }
      if (row.seq != end + 1) {
        // The transaction rolls back the rows before the gap: a gap writes nothing.
        return absl::FailedPreconditionError(absl::StrCat("AppendOut for chat '", chat_id,
                                                          "': row seq ", row.seq,
                                                          " leaves a gap after seq ", end));
      }
      Query insert = Use(kInsertOut, chat_id);
      insert.Bind(chat_id).Bind(row.seq).BindBlob(row.record);
      BATON_RETURN_IF_ERROR(insert.Run());
      end = row.seq;
    }
    BATON_RETURN_IF_ERROR(transaction.Commit());
    return end;
  }

  absl::StatusOr<std::vector<OutRow>> ReadOut(const std::string& chat_id, int64_t after_seq,
                                              size_t limit) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    Query query = Use(kReadOut, chat_id);
    query.Bind(chat_id).Bind(after_seq).Bind(SqlLimit(limit));
    return ReadAll<OutRow>(
        query, [](const Query& q) { return OutRow{.seq = q.Int(0), .record = q.Blob(1)}; });
  }

  absl::StatusOr<int64_t> LastOutSeq(const std::string& chat_id) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return LastSeqLocked(kLastOutSeq, chat_id);
  }

  absl::Status PutSnapshot(const std::string& chat_id, int64_t base_version,
                           const SnapshotWrite& write) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    BATON_ASSIGN_OR_RETURN(Transaction transaction, BeginLocked());
    int64_t stored_version = 0;
    int64_t stored_count = 0;
    {
      Query read = Use(kSnapshotVersion, chat_id);
      read.Bind(chat_id);
      BATON_ASSIGN_OR_RETURN(bool has_row, read.Step());
      if (has_row) {
        stored_version = read.Int(0);
        stored_count = read.Int(1);
      }
    }
    // The transaction rolls back on each return below: a refusal writes nothing.
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
    const int64_t count = write.from + static_cast<int64_t>(write.entries.size());
    {
      Query header = Use(kPutSnapshotHeader, chat_id);
      header.Bind(chat_id)
          .Bind(write.version)
          .Bind(write.header_json)
          .Bind(count)
          .Bind(write.bytes);
      BATON_RETURN_IF_ERROR(header.Run());
    }
    {
      Query trim = Use(kTrimSnapshotMessages, chat_id);
      trim.Bind(chat_id).Bind(count);
      BATON_RETURN_IF_ERROR(trim.Run());
    }
    for (size_t i = 0; i < write.entries.size(); ++i) {
      const SnapshotEntryRow& entry = write.entries[i];
      Query put = Use(kPutSnapshotMessage, chat_id);
      put.Bind(chat_id)
          .Bind(write.from + static_cast<int64_t>(i))
          .Bind(entry.message_id)
          .Bind(entry.entry_json);
      BATON_RETURN_IF_ERROR(put.Run());
    }
    {
      Query session = Use(kSetSessionSnapshot, chat_id);
      session.Bind(write.in_seq).Bind(write.out_seq).Bind(chat_id);
      BATON_RETURN_IF_ERROR(session.Run());
    }
    return transaction.Commit();
  }

  absl::StatusOr<std::optional<StoredSnapshot>> LoadSnapshot(const std::string& chat_id) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    StoredSnapshot snapshot;
    int64_t count = 0;
    {
      Query header = Use(kLoadSnapshotHeader, chat_id);
      header.Bind(chat_id);
      BATON_ASSIGN_OR_RETURN(bool has_row, header.Step());
      if (!has_row) {
        return std::optional<StoredSnapshot>();
      }
      snapshot.version = header.Int(0);
      snapshot.header_json = header.Text(1);
      count = header.Int(2);
    }
    Query messages = Use(kLoadSnapshotMessages, chat_id);
    messages.Bind(chat_id);
    for (;;) {
      BATON_ASSIGN_OR_RETURN(bool has_row, messages.Step());
      if (!has_row) {
        break;
      }
      const int64_t expected = static_cast<int64_t>(snapshot.entries.size());
      if (messages.Int(0) != expected) {
        return absl::DataLossError(absl::StrCat("sqlite load snapshot for chat '", chat_id,
                                                "': message ", messages.Int(0), " where ", expected,
                                                " was expected"));
      }
      snapshot.entries.push_back(
          SnapshotEntryRow{.message_id = messages.Text(1), .entry_json = messages.Text(2)});
    }
    if (static_cast<int64_t>(snapshot.entries.size()) != count) {
      return absl::DataLossError(absl::StrCat("sqlite load snapshot for chat '", chat_id, "': ",
                                              snapshot.entries.size(), " messages of ", count));
    }
    return std::optional<StoredSnapshot>(std::move(snapshot));
  }

  absl::Status PutRun(const RunRow& run) override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    Query query = Use(kPutRun, run.chat_id);
    BindColumns(query, run, kRunColumns);
    return query.Run();
  }

  absl::Status PutRunAndSession(const RunRow& run, const SessionRow& session) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    BATON_ASSIGN_OR_RETURN(Transaction transaction, BeginLocked());
    Query put_run = Use(kPutRun, run.chat_id);
    BindColumns(put_run, run, kRunColumns);
    BATON_RETURN_IF_ERROR(put_run.Run());
    Query put_session = Use(kPutSession, session.chat_id);
    BindColumns(put_session, session, kSessionColumns);
    BATON_RETURN_IF_ERROR(put_session.Run());
    return transaction.Commit();
  }

  absl::StatusOr<std::vector<RunRow>> ListRuns(const std::string& chat_id) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    if (chat_id.empty()) {
      Query query = Use(kListRuns);
      return ReadAllColumns(query, kRunColumns);
    }
    Query query = Use(kListChatRuns, chat_id);
    query.Bind(chat_id);
    return ReadAllColumns(query, kRunColumns);
  }

  absl::StatusOr<int64_t> NextLeaseToken() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return NextCounterLocked(lease_tokens_, kLeaseTokenCounter);
  }

  absl::StatusOr<int64_t> NextRunNumber() override ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return NextCounterLocked(run_numbers_, kRunNumberCounter);
  }

 private:
  Query Use(StatementId id, absl::string_view chat_id = "") ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return Query(db_.get(), statements_[id], chat_id);
  }

  absl::StatusOr<Transaction> BeginLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return Transaction::Begin(db_.get(), transaction_);
  }

  // The last seq of a log (kLastInSeq or kLastOutSeq), 0 when the chat has none.
  absl::StatusOr<int64_t> LastSeqLocked(StatementId id, const std::string& chat_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Query query = Use(id, chat_id);
    query.Bind(chat_id);
    BATON_ASSIGN_OR_RETURN(bool has_row, query.Step());
    return has_row ? query.Int(0) : 0;
  }

  absl::StatusOr<std::optional<InRow>> FindInByClientIdLocked(const std::string& chat_id,
                                                              const std::string& client_record_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Query query = Use(kFindInByClientId, chat_id);
    query.Bind(chat_id).Bind(client_record_id);
    BATON_ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (!has_row) {
      return std::nullopt;
    }
    return ReadColumns(query, kInColumns);
  }

  // Values are reserved kCounterBlock at a time, by one statement in autocommit mode (atomic
  // and durable on its own), and handed out from memory: one commit per block, not per value.
  // What a process reserved and did not hand out is skipped after a restart, so the values have
  // gaps but never repeat, and another process on the file reserves blocks of its own.
  // The block is taken only once its commit succeeded: a failed one reserves nothing.
  absl::StatusOr<int64_t> NextCounterLocked(Counter& counter, absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (counter.next > counter.last) {
      Query query = Use(kNextCounter);
      query.Bind(name).Bind(kCounterBlock);
      BATON_ASSIGN_OR_RETURN(bool has_row, query.Step());
      if (!has_row) {
        return absl::InternalError(absl::StrCat("sqlite advance counter '", name, "': no value"));
      }
      const int64_t last = query.Int(0);
      BATON_RETURN_IF_ERROR(query.Run());  // the implicit transaction commits at the end
      counter = Counter{last - kCounterBlock + 1, last};
    }
    return counter.next++;
  }

  const std::string path_;  // as given to OpenSqliteStore()

  absl::Mutex mu_;
  // SQLite's own locking is off (SQLITE_OPEN_NOMUTEX): mu_ serialises every use of the
  // connection, its statements and its error message. Members are destroyed in reverse, so the
  // statements are finalized before the connection closes.
  ConnectionPtr db_ ABSL_GUARDED_BY(mu_);
  TransactionStatements transaction_ ABSL_GUARDED_BY(mu_);
  StoreStatements statements_ ABSL_GUARDED_BY(mu_);
  Counter lease_tokens_ ABSL_GUARDED_BY(mu_);
  Counter run_numbers_ ABSL_GUARDED_BY(mu_);
};

// ---- Opening

absl::StatusOr<ConnectionPtr> Connect(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  ConnectionPtr connection(db);  // a connection that failed to open must still be closed
  if (rc != SQLITE_OK) {
    return SqliteError(db, rc, "open");
  }
  sqlite3_extended_result_codes(db, 1);
  return connection;
}

absl::Status Configure(sqlite3* db, bool durable) {
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  BATON_ASSIGN_OR_RETURN(std::string mode, QueryText(db, "PRAGMA journal_mode = WAL"));
  if (mode != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat("sqlite cannot use WAL mode for this file (journal_mode is '", mode, "')"));
  }
  // In WAL mode NORMAL syncs at checkpoints only: a commit survives a process crash but may be
  // lost with the last few on power loss. FULL syncs the log at every commit.
  return Exec(db, durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
              "set synchronous");
}

// Brings the schema to kSchemaVersion in one transaction, so two processes opening a new file
// at once cannot both apply a step.
absl::Status Migrate(sqlite3* db, const TransactionStatements& statements) {
  BATON_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db, statements));
  BATON_ASSIGN_OR_RETURN(std::string version_text, QueryText(db, "PRAGMA user_version"));
  int64_t version = 0;
  if (!absl::SimpleAtoi(version_text, &version) || version < 0) {
    return absl::DataLossError(absl::StrCat("schema version '", version_text, "' is not valid"));
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema version ", version, " is newer than this build's (", kSchemaVersion, ")"));
  }
  if (version == kSchemaVersion) {
    return absl::OkStatus();  // the transaction rolls back: it wrote nothing
  }
  for (int64_t step = version; step < kSchemaVersion; ++step) {
    BATON_RETURN_IF_ERROR(
        Exec(db, kMigrations[step], absl::StrCat("migrate schema to version ", step + 1)));
  }
  BATON_RETURN_IF_ERROR(
      Exec(db, absl::StrCat("PRAGMA user_version = ", kSchemaVersion), "set schema version"));
  return transaction.Commit();
}

absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path, bool durable) {
  if (path.empty()) {
    return absl::InvalidArgumentError("empty path");
  }
  BATON_ASSIGN_OR_RETURN(ConnectionPtr db, Connect(path));
  BATON_RETURN_IF_ERROR(Configure(db.get(), durable));
  // The transaction statements first: Migrate() needs them, and the others need the tables.
  BATON_ASSIGN_OR_RETURN(TransactionStatements transaction, PrepareTransactionStatements(db.get()));
  BATON_RETURN_IF_ERROR(Migrate(db.get(), transaction));
  BATON_ASSIGN_OR_RETURN(StoreStatements statements, PrepareStoreStatements(db.get()));
  return std::make_unique<SqliteStore>(path, std::move(db), std::move(transaction),
                                       std::move(statements));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, bool durable) {
  absl::StatusOr<std::unique_ptr<Store>> store = Open(path, durable);
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("OpenSqliteStore(", path, "): ", store.status().message()));
  }
  return store;
}

}  // namespace baton::orchestrator
