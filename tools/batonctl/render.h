// File: tools/batonctl/render.h
//
// What batonctl prints: the `.out` records of `read` (readable or JSON lines), and the
// sessions, runs and append results of the other commands. Pure functions of their input plus,
// for `read`, one Renderer that keeps state across records; nothing here does I/O.
//
// Readable output of `read` (docs/batonctl.md shows an example):
//   text deltas      inline as they stream; reasoning deltas dimmed, after "thinking: "
//   tool calls       ⚙ get_weather {"city":"Oslo"}
//   tool results     ← {"temp":3}           (tool errors in red)
//   approvals        ⚠ approval requested: ... (yellow)
//   error chunks     ✗ error: ...           (red)
//   message, steps   ▶ message m-1, · step 1, · step 1 done, ■ finish (stop)   (dim)
//   control records  ── turn complete (seq 12) ──                              (dim)
// Text taken from records has its terminal control characters (ESC and the other C0 and C1
// controls but newline and tab) replaced by U+FFFD, so a model cannot drive the terminal.
#ifndef BATON_TOOLS_BATONCTL_RENDER_H_
#define BATON_TOOLS_BATONCTL_RENDER_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"
#include "baton/v1/sessions.pb.h"
#include "grpcpp/support/status_code_enum.h"

namespace baton::ctl {

struct RenderOptions {
  bool json = false;   // one JSON object per record, per line
  bool color = false;  // ANSI colours in readable output
  int turns = 0;       // done() after this many turn-complete records; 0 = never
};

// Renderer
//
// Turns the `.out` records of one Read call, in order, into the text to print. Readable mode
// keeps a text line open while deltas stream and closes it (a newline) before the next marker
// line. Not thread-safe; one per Read call.
class Renderer {
 public:
  explicit Renderer(RenderOptions options);

  // The text for one record, possibly empty (a tool-input-delta prints nothing).
  std::string Render(const v1::OutRecord& record);
  // The text to print once the stream has ended: a newline when a text line is still open.
  std::string Finish();

  // turn-complete records rendered so far.
  int turns() const { return turns_; }
  // True once the --turns limit is reached: the caller stops reading.
  bool done() const { return options_.turns > 0 && turns_ >= options_.turns; }

 private:
  enum class Style { kPlain, kDim, kRed, kYellow };

  std::string JsonLine(const v1::OutRecord& record) const;
  std::string Chunk(int64_t seq, const std::string& raw);
  std::string Control(const v1::OutRecord& record);
  // A whole line, after closing an open text line.
  std::string Line(Style style, absl::string_view text);
  // A streamed fragment of the inline stream `stream` ("text:t0"); a stream other than the open
  // one starts on a new line, after `prefix`.
  std::string Inline(const std::string& stream, Style style, absl::string_view prefix,
                     absl::string_view text);
  std::string CloseLine();
  std::string Paint(Style style, absl::string_view text) const;

  const RenderOptions options_;
  int turns_ = 0;
  bool line_open_ = false;   // the last text printed did not end with a newline
  std::string open_stream_;  // the inline stream printed last, "" after a marker line
  int step_ = -1;            // steps of the current message so far; -1 until a "start" is read
  std::map<std::string, std::string, std::less<>> tool_names_;  // toolCallId -> toolName
};

// Replaces terminal control characters (C0 but newline and tab, DEL, C1) with U+FFFD.
std::string SanitizeForTerminal(std::string_view text);

// The other commands' output, one record per line. Readable lines are `key=value` pairs;
// JSON uses the proto field names, numbers as numbers and states as lower-case names.
std::string FormatSession(const v1::Session& session, bool json);
std::string FormatCreated(const v1::CreateSessionResponse& response, bool json);
std::string FormatAppended(const v1::AppendResponse& response, bool json);
std::string FormatRun(const v1::Run& run, bool json);
// A table with a header line, or one JSON object per run.
std::string FormatRuns(const v1::ListRunsResponse& response, bool json);

std::string_view StatusCodeName(grpc::StatusCode code);  // "NOT_FOUND", ...

// The one-line error of a failed call: "batonctl: <what>: <message> (<CODE>)".
std::string FormatError(std::string_view what, grpc::StatusCode code, std::string_view message);

}  // namespace baton::ctl

#endif  // BATON_TOOLS_BATONCTL_RENDER_H_
