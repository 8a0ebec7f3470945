// File: tools/batonctl/args.h
//
// batonctl's command line: parsing argv into a Command that holds the ready-to-send Sessions
// request, the `.in` record bodies batonctl builds, the usage text, and the exit codes scripts
// rely on (docs/batonctl.md). Nothing here talks to a server, so all of it is unit-tested.
//
//   absl::StatusOr<Command> command = ParseCommand(args, SystemEnvironment());
//   if (!command.ok()) { /* print "batonctl: " + message, exit kExitUsage */ }
//
// CLI11 reads the command line: args.cc declares the commands and their options with their
// help, binds the options that only set a field, and a builder per command applies the rules
// between options. Options take `--name VALUE` or `--name=VALUE`; `--` ends the options. The
// global options (--addr, --timeout) go before the command, and are accepted after it too.
#ifndef BATON_TOOLS_BATONCTL_ARGS_H_
#define BATON_TOOLS_BATONCTL_ARGS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "baton/v1/sessions.pb.h"
#include "grpcpp/support/status_code_enum.h"
#include "hooks/json.h"
#include "runtime/client/grpc_client.h"

namespace baton::ctl {

// Exit codes. Part of batonctl's contract with scripts; docs/batonctl.md lists them too.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // anything not listed below
inline constexpr int kExitUsage = 2;        // bad options, unreadable file, invalid local JSON
inline constexpr int kExitNotFound = 3;     // NOT_FOUND: no such chat or run
inline constexpr int kExitRefused = 4;      // FAILED_PRECONDITION (chat closed), ALREADY_EXISTS
inline constexpr int kExitRejected = 5;     // INVALID_ARGUMENT, RESOURCE_EXHAUSTED
inline constexpr int kExitUnavailable = 6;  // UNAVAILABLE, DEADLINE_EXCEEDED
inline constexpr int kExitDenied = 7;       // UNAUTHENTICATED, PERMISSION_DENIED

// ExitCodeFor()
//
// The exit code for a call that ended with `code` (kExitOk for OK).
int ExitCodeFor(grpc::StatusCode code);

inline constexpr std::string_view kDefaultAddr = "127.0.0.1:7400";

enum class Verb { kHelp, kCreate, kAppend, kRead, kGet, kRuns, kCancel, kClose, kHeadStart };
enum class ColorMode { kAuto, kAlways, kNever };

// Command
//
// One parsed invocation. Only the request of `verb` is filled in.
struct Command {
  Verb verb = Verb::kHelp;
  std::string addr = std::string(kDefaultAddr);  // a gRPC target: "host:port", "unix:/path"
  absl::Duration timeout = absl::Seconds(10);    // deadline of each unary call
  bool json = false;                             // machine-readable output
  ColorMode color = ColorMode::kAuto;            // read only
  int turns = 0;                 // read: stop after this many turn-complete records; 0 = no limit
  ClientSecurityFlags security;  // the bearer token's variable and TLS files
  std::string help;              // kHelp: the text to print (all of it, or one command's)

  v1::CreateSessionRequest create;
  v1::AppendRequest append;
  v1::ReadRequest read;
  v1::GetRequest get;
  v1::ListRunsRequest runs;
  v1::CancelRunRequest cancel;
  v1::CloseRequest close;

  // head-start: what the warm side needs (runtime/client/head_start.h), besides the chat and agent.
  struct HeadStart {
    std::string chat_id;
    std::string agent;  // one of the example agents of tasks/: chat, weather, files
    std::string text;   // the user's first message
    std::string message_id;
    std::string provider = "anthropic";
    std::string base_url;
    std::string model;
    std::string api_key_env;
  } head_start;
};

// Environment
//
// What parsing needs from outside argv; tests pass fakes.
struct Environment {
  std::string baton_addr;  // $BATON_ADDR, "" when unset
  // Reads a whole file; "-" means stdin. The error message names the file and the reason.
  std::function<absl::StatusOr<std::string>(const std::string& path)> read_file;
  // A fresh id for a user message built from --text ("u-" and random hex).
  std::function<std::string()> new_message_id;
};

// The process's environment, files and randomness.
Environment SystemEnvironment();

// ParseCommand()
//
// Parses the arguments after argv[0]. Returns InvalidArgument with a one-line message saying
// what is wrong (an unknown option, a missing argument, two modes at once, a file that cannot
// be read, JSON that does not parse); main turns it into exit code kExitUsage.
absl::StatusOr<Command> ParseCommand(const std::vector<std::string>& args, const Environment& env);

// The usage text printed by `batonctl help` and `batonctl --help`.
std::string_view UsageText();

// ResolveColor()
//
// Whether readable output is coloured: kAlways and kNever say so; kAuto colours a terminal
// unless NO_COLOR is set to a non-empty value (`no_color` is getenv("NO_COLOR"), may be null).
bool ResolveColor(ColorMode mode, bool stdout_is_tty, const char* no_color);

// Record bodies (hooks/records.h), built exactly as Trigger.dev's chat agent reads them.

// {"kind":"message","payload":{"chatId":CHAT,"trigger":"submit-message","message":MESSAGE}}
std::string MessageBody(std::string_view chat_id, const Json& message);
// {"kind":"stop","message":REASON}, or {"kind":"stop"} without a reason.
std::string StopBody(const std::optional<std::string>& reason);
// {"kind":"handover","partialAssistantMessage":PARTIAL,"messageId":ID,"isFinal":B}.
// `partial_json` must be a JSON array; it is spliced in byte for byte (surrounding whitespace
// dropped) so numbers and key order stay as the warm server wrote them.
absl::StatusOr<std::string> HandoverBody(std::string_view partial_json, std::string_view message_id,
                                         bool is_final);
// {"kind":"handover-skip"}
std::string HandoverSkipBody();

}  // namespace baton::ctl

#endif  // BATON_TOOLS_BATONCTL_ARGS_H_
