#include "tools/batonctl/render.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "hooks/json.h"
#include "hooks/records.h"
#include "runtime/protocol/wire.h"

namespace baton::ctl {
namespace {

// Debian's Abseil keeps its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0).
absl::string_view Av(std::string_view text) { return absl::string_view(text.data(), text.size()); }
std::string_view Sv(absl::string_view text) { return std::string_view(text.data(), text.size()); }

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr absl::string_view kReset = "\x1b[0m";

bool IsTextSafe(std::string_view text) {
  for (unsigned char c : text) {
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F || c == 0xC2) return false;
  }
  return true;
}

// Chunk fields, tolerant of missing keys and wrong types (the chunk is the agent's output).
std::string Str(const Json& chunk, std::string_view key) { return StringField(chunk, key); }

std::string Compact(const Json* value) { return value == nullptr ? "" : DumpJson(*value); }

// A data: URL can be megabytes; say what it is instead.
std::string ShortUrl(const std::string& url) {
  if (url.rfind("data:", 0) == 0 && url.size() > 64) {
    return absl::StrCat(url.substr(0, url.find(',') == std::string::npos ? 16 : url.find(',')),
                        ",… (", url.size(), " bytes)");
  }
  return url;
}

std::string Millis(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

// One table cell or key=value value: a single line, "-" when empty.
std::string Cell(std::string_view text) {
  if (text.empty()) return "-";
  return SanitizeForTerminal(
      absl::StrReplaceAll(Av(text), {{"\r\n", " "}, {"\n", " "}, {"\t", " "}}));
}

Json SessionJson(const v1::Session& s) {
  Json j = Json::object();
  j["chat_id"] = s.chat_id();
  j["agent"] = s.agent();
  j["state"] = SessionStateName(s.state());
  j["run_id"] = s.run_id();
  j["in_seq"] = s.in_seq();
  j["out_seq"] = s.out_seq();
  j["created_at_unix_ms"] = s.created_at_unix_ms();
  j["runs"] = s.runs();
  j["run_state"] =
      s.run_state() == v1::RUN_STATE_UNSPECIFIED ? "" : std::string(RunStateName(s.run_state()));
  j["queued_reason"] = s.queued_reason();
  j["queued_error"] = s.queued_error();
  return j;
}

Json RunJson(const v1::Run& r) {
  Json j = Json::object();
  j["run_id"] = r.run_id();
  j["chat_id"] = r.chat_id();
  j["agent"] = r.agent();
  j["attempt"] = r.attempt();
  j["state"] = RunStateName(r.state());
  j["worker_id"] = r.worker_id();
  j["trigger"] = r.trigger();
  j["reason"] = r.reason();
  j["error"] = r.error();
  j["created_at_unix_ms"] = r.created_at_unix_ms();
  j["started_at_unix_ms"] = r.started_at_unix_ms();
  j["ended_at_unix_ms"] = r.ended_at_unix_ms();
  j["cancel_requested"] = r.cancel_requested();
  return j;
}

// What a run's last column says: its error, its reason, or both.
std::string RunOutcome(const v1::Run& r) {
  if (!r.reason().empty() && !r.error().empty()) return absl::StrCat(r.reason(), ": ", r.error());
  return r.error().empty() ? r.reason() : r.error();
}

std::string SessionLine(const v1::Session& s) {
  std::string line =
      absl::StrCat("chat=", Cell(s.chat_id()), " agent=", Cell(s.agent()),
                   " state=", Av(SessionStateName(s.state())), " run=", Cell(s.run_id()),
                   " runs=", s.runs(), " in_seq=", s.in_seq(), " out_seq=", s.out_seq(),
                   " created=", Millis(s.created_at_unix_ms()));
  // The live run, and why it waits when no worker can take it (last: the words hold spaces).
  if (s.run_state() != v1::RUN_STATE_UNSPECIFIED) {
    absl::StrAppend(&line, " run_state=", Av(RunStateName(s.run_state())));
  }
  if (!s.queued_reason().empty()) {
    absl::StrAppend(&line, " queued=", Cell(s.queued_reason()), ": ", Cell(s.queued_error()));
  }
  return line;
}

}  // namespace

std::string SanitizeForTerminal(std::string_view text) {
  if (IsTextSafe(text)) return std::string(text);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F) {
      out += kReplacement;
    } else if (c == 0xC2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      out += kReplacement;  // a C1 control (U+0080..U+009F), e.g. the one-byte CSI
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// ---- Renderer -------------------------------------------------------------------------------

Renderer::Renderer(RenderOptions options) : options_(options) {}

std::string Renderer::Render(const v1::OutRecord& record) {
  std::string out;
  if (options_.json) {
    out = JsonLine(record);
  } else if (record.has_control()) {
    out = Control(record);
  } else if (record.has_chunk_json()) {
    out = Chunk(record.seq(), record.chunk_json());
  }
  if (record.has_control() && record.control().subtype() == kTurnComplete) ++turns_;
  return out;
}

std::string Renderer::Finish() { return options_.json ? "" : CloseLine(); }

std::string Renderer::JsonLine(const v1::OutRecord& record) const {
  std::string line = absl::StrCat(R"({"seq":)", record.seq());
  if (record.has_control()) {
    Json headers = Json::object();
    for (const v1::Header& h : record.control().headers()) headers[h.name()] = h.value();
    absl::StrAppend(&line, R"(,"control":)", DumpJson(Json(record.control().subtype())),
                    R"(,"headers":)", DumpJson(headers));
  } else if (record.has_chunk_json()) {
    // The chunk exactly as stored. Re-serialized only when splicing it would not give one line
    // of valid JSON (raw newlines between tokens), and kept as a string when it is not JSON.
    const std::string& raw = record.chunk_json();
    absl::StatusOr<Json> chunk = ParseJson(raw);
    if (!chunk.ok()) {
      absl::StrAppend(&line, R"(,"invalid_chunk":)", DumpJson(Json(raw)));
    } else if (raw.find_first_of("\r\n") != std::string::npos) {
      absl::StrAppend(&line, R"(,"chunk":)", DumpJson(*chunk));
    } else {
      absl::StrAppend(&line, R"(,"chunk":)", raw);
    }
  }
  absl::StrAppend(&line, "}\n");
  return line;
}

std::string Renderer::Chunk(int64_t seq, const std::string& raw) {
  absl::StatusOr<Json> parsed = ParseJson(raw);
  if (!parsed.ok() || !parsed->is_object()) {
    return Line(Style::kRed, absl::StrCat("✗ seq ", seq, ": unreadable chunk: ", raw));
  }
  const Json& c = *parsed;
  const std::string type = Str(c, "type");
  const std::string id = Str(c, "id");
  const std::string call = Str(c, "toolCallId");

  if (type == "text-delta") return Inline("text:" + id, Style::kPlain, "", Str(c, "delta"));
  if (type == "reasoning-delta") {
    return Inline("reasoning:" + id, Style::kDim, "thinking: ", Str(c, "delta"));
  }
  if (type == "text-end" || type == "reasoning-end") {
    std::string out = CloseLine();
    open_stream_.clear();
    return out;
  }
  if (type == "text-start" || type == "reasoning-start" || type == "tool-input-delta") return "";
  if (type == "tool-input-start") {
    tool_names_[call] = Str(c, "toolName");
    return "";
  }
  if (type == "start") {
    step_ = 0;
    std::string message_id = Str(c, "messageId");
    return Line(Style::kDim, message_id.empty() ? "▶ message" : "▶ message " + message_id);
  }
  // Steps are numbered from the message's start; a read that began mid-message cannot know.
  if (type == "start-step") {
    return Line(Style::kDim, step_ < 0 ? "· step" : absl::StrCat("· step ", ++step_));
  }
  if (type == "finish-step") {
    return Line(Style::kDim, step_ < 0 ? "· step done" : absl::StrCat("· step ", step_, " done"));
  }
  if (type == "finish") {
    std::string reason = Str(c, "finishReason");
    return Line(Style::kDim, reason.empty() ? "■ finish" : absl::StrCat("■ finish (", reason, ")"));
  }
  if (type == "abort") {
    std::string reason = Str(c, "reason");
    return Line(Style::kYellow, reason.empty() ? "■ aborted" : "■ aborted: " + reason);
  }
  if (type == "error") return Line(Style::kRed, "✗ error: " + Str(c, "errorText"));
  if (type == "tool-input-available") {
    std::string name = Str(c, "toolName");
    tool_names_[call] = name;
    return Line(Style::kPlain, absl::StrCat("⚙ ", name, " ", Compact(FindField(c, "input"))));
  }
  if (type == "tool-input-error") {
    return Line(Style::kRed,
                absl::StrCat("✗ ", Str(c, "toolName"), " ", Compact(FindField(c, "input")), ": ",
                             Str(c, "errorText")));
  }
  if (type == "tool-output-available") {
    absl::string_view preliminary = BoolField(c, "preliminary") ? "(preliminary) " : "";
    return Line(Style::kPlain, absl::StrCat("← ", preliminary, Compact(FindField(c, "output"))));
  }
  if (type == "tool-output-error") return Line(Style::kRed, "← error: " + Str(c, "errorText"));
  if (type == "tool-output-denied") return Line(Style::kYellow, "← denied");
  if (type == "tool-approval-request") {
    auto name = tool_names_.find(call);
    std::string tool = name == tool_names_.end() ? "call " + call : name->second;
    return Line(Style::kYellow, absl::StrCat("⚠ approval requested: ", tool, " (approval ",
                                             Str(c, "approvalId"), ")"));
  }
  if (type == "message-metadata") {
    return Line(Style::kDim, "· metadata " + Compact(FindField(c, "messageMetadata")));
  }
  if (type == "source-url") {
    std::string title = Str(c, "title");
    return Line(Style::kDim,
                absl::StrCat("· source ", Str(c, "url"), title.empty() ? "" : " (" + title + ")"));
  }
  if (type == "source-document") {
    return Line(Style::kDim,
                absl::StrCat("· source ", Str(c, "title"), " (", Str(c, "mediaType"), ")"));
  }
  if (type == "file") {
    return Line(Style::kDim,
                absl::StrCat("· file ", Str(c, "mediaType"), " ", ShortUrl(Str(c, "url"))));
  }
  if (type.rfind("data-", 0) == 0) {
    return Line(Style::kDim, absl::StrCat("· ", type, " ", Compact(FindField(c, "data"))));
  }
  return Line(Style::kDim, absl::StrCat("· ", type.empty() ? "chunk" : type, " ", raw));
}

std::string Renderer::Control(const v1::OutRecord& record) {
  const v1::ControlRecord& control = record.control();
  auto header = [&](std::string_view name) -> std::string {
    for (const v1::Header& h : control.headers()) {
      if (h.name() == name) return h.value();
    }
    return "";
  };
  std::string what;
  if (control.subtype() == kTurnComplete) {
    what = "turn complete";
    if (header("session-closed") == "true") {
      std::string reason = header("session-closed-reason");
      absl::StrAppend(&what, ", chat closed", reason.empty() ? "" : ": " + reason);
    }
  } else if (control.subtype() == kSessionClosed) {
    what = "chat closed";
  } else if (control.subtype() == kUpgradeRequired) {
    what = "upgrade required";
  } else if (control.subtype() == kTrim) {
    what = absl::StrCat("trim through ", header("through"));
  } else if (control.subtype() == kRetract) {
    // The answer above it from that seq is withdrawn: its run died, and the turn is answered
    // again below.
    std::string reason = header("reason");
    what = absl::StrCat("retracted ", header("message-id"), " from seq ", header("from-seq"),
                        reason.empty() ? "" : ": " + reason);
  } else {
    what = control.subtype();
  }
  open_stream_.clear();
  return Line(Style::kDim, absl::StrCat("── ", what, " (seq ", record.seq(), ") ──"));
}

std::string Renderer::Line(Style style, absl::string_view text) {
  std::string out = CloseLine();
  open_stream_.clear();
  absl::StrAppend(&out, Paint(style, SanitizeForTerminal(Sv(text))), "\n");
  return out;
}

std::string Renderer::Inline(const std::string& stream, Style style, absl::string_view prefix,
                             absl::string_view text) {
  std::string out;
  if (stream != open_stream_) {
    out = CloseLine();
    open_stream_ = stream;
    if (!prefix.empty()) {
      absl::StrAppend(&out, Paint(style, prefix));
      line_open_ = true;
    }
  }
  if (!text.empty()) {
    absl::StrAppend(&out, Paint(style, SanitizeForTerminal(Sv(text))));
    line_open_ = text.back() != '\n';
  }
  return out;
}

std::string Renderer::CloseLine() {
  if (!line_open_) return "";
  line_open_ = false;
  return "\n";
}

std::string Renderer::Paint(Style style, absl::string_view text) const {
  if (!options_.color || style == Style::kPlain || text.empty()) return std::string(text);
  absl::string_view code = style == Style::kDim   ? "\x1b[2m"
                           : style == Style::kRed ? "\x1b[31m"
                                                  : "\x1b[33m";
  return absl::StrCat(code, text, kReset);
}

// ---- the other commands ---------------------------------------------------------------------

std::string FormatSession(const v1::Session& session, bool json) {
  if (json) return DumpJson(SessionJson(session)) + "\n";
  return SessionLine(session) + "\n";
}

std::string FormatCreated(const v1::CreateSessionResponse& response, bool json) {
  if (json) {
    Json j = Json::object();
    j["created"] = response.created();
    j["session"] = SessionJson(response.session());
    return DumpJson(j) + "\n";
  }
  return absl::StrCat(response.created() ? "created " : "exists ", SessionLine(response.session()),
                      "\n");
}

std::string FormatAppended(const v1::AppendResponse& response, bool json) {
  if (json) {
    Json j = Json::object();
    j["seq"] = response.seq();
    j["duplicate"] = response.duplicate();
    j["run_id"] = response.run_id();
    return DumpJson(j) + "\n";
  }
  return absl::StrCat("seq=", response.seq(), response.duplicate() ? " duplicate" : "",
                      " run=", Cell(response.run_id()), "\n");
}

std::string FormatRun(const v1::Run& run, bool json) {
  if (json) return DumpJson(RunJson(run)) + "\n";
  std::string line = absl::StrCat(
      "run=", Cell(run.run_id()), " chat=", Cell(run.chat_id()), " agent=", Cell(run.agent()),
      " attempt=", run.attempt(), " state=", Av(RunStateName(run.state())),
      " trigger=", Cell(run.trigger()), " worker=", Cell(run.worker_id()));
  if (!run.reason().empty()) absl::StrAppend(&line, " reason=", Cell(run.reason()));
  if (run.cancel_requested()) absl::StrAppend(&line, " cancel_requested");
  if (!run.error().empty()) absl::StrAppend(&line, " error=", Cell(run.error()));
  return line + "\n";
}

std::string FormatRuns(const v1::ListRunsResponse& response, bool json) {
  if (json) {
    std::string out;
    for (const v1::Run& run : response.runs()) out += FormatRun(run, true);
    return out;
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"RUN", "CHAT", "AGENT", "ATTEMPT", "STATE", "TRIGGER", "WORKER", "REASON/ERROR"});
  for (const v1::Run& r : response.runs()) {
    rows.push_back({Cell(r.run_id()), Cell(r.chat_id()), Cell(r.agent()), absl::StrCat(r.attempt()),
                    std::string(RunStateName(r.state())), Cell(r.trigger()), Cell(r.worker_id()),
                    Cell(RunOutcome(r))});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string_view StatusCodeName(grpc::StatusCode code) {
  static constexpr std::string_view kNames[] = {
      "OK",
      "CANCELLED",
      "UNKNOWN",
      "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED",
      "NOT_FOUND",
      "ALREADY_EXISTS",
      "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED",
      "FAILED_PRECONDITION",
      "ABORTED",
      "OUT_OF_RANGE",
      "UNIMPLEMENTED",
      "INTERNAL",
      "UNAVAILABLE",
      "DATA_LOSS",
      "UNAUTHENTICATED",
  };
  int index = static_cast<int>(code);
  if (index < 0 || index >= static_cast<int>(std::size(kNames))) return "UNKNOWN";
  return kNames[index];
}

std::string FormatError(std::string_view what, grpc::StatusCode code, std::string_view message) {
  std::string line = absl::StrCat("batonctl: ", Av(what), ": ");
  if (message.empty()) {
    absl::StrAppend(&line, Av(StatusCodeName(code)));
  } else {
    absl::StrAppend(&line, Cell(message), " (", Av(StatusCodeName(code)), ")");
  }
  return line + "\n";
}

}  // namespace baton::ctl
