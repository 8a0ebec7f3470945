#include "tools/batonctl/args.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <random>
#include <span>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "hooks/messages.h"
#include "runtime/protocol/wire.h"

namespace baton::ctl {
namespace {

constexpr char kUsage[] =
    R"(usage: batonctl [--addr ADDR] [--timeout SECONDS] [--token-env VAR] [--tls ...] COMMAND [ARGS]

Client of the baton orchestrator's Sessions API.

global options:
  --addr ADDR         orchestrator address: host:port or unix:/path/to/socket
                      (default: $BATON_ADDR, else 127.0.0.1:7400)
  --timeout SECONDS   deadline of each call except read (default 10)
  --token-env VAR     send the bearer token in $VAR (default BATON_TOKEN; unset: none)
  --tls               dial over TLS (implied by the --tls-* files)
  --tls-ca FILE       PEM CA of the orchestrator's certificate (default: system roots)
  --tls-cert FILE     PEM client certificate, for mTLS (with --tls-key)
  --tls-key FILE      PEM private key of --tls-cert

commands:
  create CHAT --agent NAME [--trigger T] [--text TEXT] [--message-id ID]
         [--payload JSON|@FILE] [--traceparent TP] [--json]
      Create the chat session and boot its first run. T is preload, submit-message,
      handover-prepare, regenerate-message or close; default submit-message with --text,
      else preload. --text makes the user message (payload.message, or
      payload.headStartMessages for handover-prepare).
  append CHAT (--text TEXT [--message-id ID] | --stop [REASON]
         | --handover FILE --message-id ID [--final] | --handover-skip | --body JSON|@FILE)
         [--record-id ID] [--json]
      Append one record to the chat's .in log; prints its seq and the run it went to.
      --handover FILE holds the partialAssistantMessage array ("-" reads stdin).
      --record-id makes a retry of the same append return the first seq.
  read CHAT [--after SEQ] [--follow] [--turns N] [--json] [--color auto|always|never]
      Print the .out records after SEQ (default 0). --follow waits for new records until
      the chat is closed; --turns N (implies --follow) stops after N turn-complete records.
  get CHAT [--json]                 print the session
  runs [CHAT] [--json]              list the runs (of every chat without CHAT)
  cancel CHAT [--run RUN] [--json]  cancel the live run (only if it is RUN)
  close CHAT [--reason R] [--json]  close the chat
  head-start CHAT --agent chat|weather|files --text TEXT [--message-id ID]
         [--provider anthropic|openai] [--base-url URL] [--model M] [--api-key-env VAR]
         [--json] [--color auto|always|never]
      Play the warm server of a head start: create the session (handover-prepare), stream
      step 1 from the provider here, hand over (or skip), then follow .out to the turn's end.
  help                              print this text

JSON|@FILE takes JSON text, or @FILE to read it from a file (@- reads stdin).

exit codes:
  0  ok
  1  any other error
  2  usage error: bad options, unreadable file, invalid JSON given locally
  3  not found (no such chat or run)
  4  refused: the chat is closed (FAILED_PRECONDITION), or exists with another agent
  5  rejected by the server: invalid argument, or a record over the size limit
  6  orchestrator unreachable, or the call timed out
)";

// ---- the option tables ----------------------------------------------------------------------

enum class Arity {
  kSwitch,    // --follow
  kValue,     // --text TEXT: takes the next argument, whatever it looks like
  kOptional,  // --stop [REASON]: takes the next argument unless it starts with '-'
};

struct FlagSpec {
  absl::string_view name;
  Arity arity;
};

// What the command line said, before any command-specific meaning is given to it.
struct Parsed {
  absl::string_view command;
  std::vector<std::string> args;
  // Each option given, with its value (nullopt for a switch, or --stop without a reason).
  std::map<std::string, std::optional<std::string>> flags;

  bool Has(const std::string& name) const { return flags.find(name) != flags.end(); }
  std::optional<std::string> Value(const std::string& name) const {
    auto it = flags.find(name);
    return it == flags.end() ? std::nullopt : it->second;
  }
};

using Builder = absl::Status (*)(const Parsed&, const Environment&, Command&);

struct CommandSpec {
  absl::string_view name;
  Verb verb;
  absl::string_view args_help;  // "CHAT", "[CHAT]"
  int min_args;
  int max_args;
  std::span<const FlagSpec> flags;
  Builder build;
};

constexpr FlagSpec kGlobalFlags[] = {
    {"--addr", Arity::kValue},    {"--timeout", Arity::kValue}, {"--token-env", Arity::kValue},
    {"--tls", Arity::kSwitch},    {"--tls-ca", Arity::kValue},  {"--tls-cert", Arity::kValue},
    {"--tls-key", Arity::kValue}, {"--help", Arity::kSwitch},   {"-h", Arity::kSwitch},
};

constexpr FlagSpec kCreateFlags[] = {
    {"--agent", Arity::kValue},      {"--trigger", Arity::kValue}, {"--text", Arity::kValue},
    {"--message-id", Arity::kValue}, {"--payload", Arity::kValue}, {"--traceparent", Arity::kValue},
    {"--json", Arity::kSwitch},
};
constexpr FlagSpec kAppendFlags[] = {
    {"--text", Arity::kValue},    {"--message-id", Arity::kValue},
    {"--stop", Arity::kOptional}, {"--handover", Arity::kValue},
    {"--final", Arity::kSwitch},  {"--handover-skip", Arity::kSwitch},
    {"--body", Arity::kValue},    {"--record-id", Arity::kValue},
    {"--json", Arity::kSwitch},
};
constexpr FlagSpec kReadFlags[] = {
    {"--after", Arity::kValue}, {"--follow", Arity::kSwitch}, {"--turns", Arity::kValue},
    {"--json", Arity::kSwitch}, {"--color", Arity::kValue},
};
constexpr FlagSpec kJsonFlags[] = {{"--json", Arity::kSwitch}};
constexpr FlagSpec kCancelFlags[] = {{"--run", Arity::kValue}, {"--json", Arity::kSwitch}};
constexpr FlagSpec kCloseFlags[] = {{"--reason", Arity::kValue}, {"--json", Arity::kSwitch}};

constexpr FlagSpec kHeadStartFlags[] = {
    {"--agent", Arity::kValue},       {"--text", Arity::kValue},
    {"--message-id", Arity::kValue},  {"--provider", Arity::kValue},
    {"--base-url", Arity::kValue},    {"--model", Arity::kValue},
    {"--api-key-env", Arity::kValue}, {"--json", Arity::kSwitch},
    {"--color", Arity::kValue},
};

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

// ---- shared helpers of the builders ---------------------------------------------------------

// A JSON option: inline text, or @FILE. Keeps the text as given (trimmed) next to its parse.
struct JsonArg {
  std::string text;
  Json value;
};

absl::StatusOr<JsonArg> LoadJson(absl::string_view flag, const std::string& arg,
                                 const Environment& env) {
  JsonArg out;
  std::string where(flag);
  if (!arg.empty() && arg[0] == '@') {
    absl::StatusOr<std::string> text = env.read_file(arg.substr(1));
    if (!text.ok()) return Usage(absl::StrCat(flag, " ", arg, ": ", text.status().message()));
    out.text = *std::move(text);
    where = absl::StrCat(flag, " ", arg);
  } else {
    out.text = arg;
  }
  out.text = std::string(absl::StripAsciiWhitespace(out.text));
  absl::StatusOr<Json> value = ParseJson(out.text);
  if (!value.ok()) return Usage(absl::StrCat(where, ": ", value.status().message()));
  out.value = *std::move(value);
  return out;
}

absl::string_view JsonTypeName(const Json& value) {
  if (value.is_object()) return "an object";
  if (value.is_array()) return "an array";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_null()) return "null";
  return "a number";
}

// Exactly one of `names` was given (append's modes); the error names what was.
absl::Status ExactlyOne(const Parsed& p, std::span<const absl::string_view> names,
                        absl::string_view* chosen) {
  std::vector<absl::string_view> given;
  for (absl::string_view name : names) {
    if (p.Has(std::string(name))) given.push_back(name);
  }
  if (given.size() == 1) {
    *chosen = given[0];
    return absl::OkStatus();
  }
  std::string all = absl::StrJoin(names, ", ");
  if (given.empty()) return Usage(absl::StrCat(p.command, " needs one of ", all));
  return Usage(
      absl::StrCat(p.command, " takes only one of ", all, "; got ", absl::StrJoin(given, " and ")));
}

// --color auto|always|never, for the commands that print `.out` records.
absl::Status ParseColor(const Parsed& p, Command& c) {
  std::optional<std::string> color = p.Value("--color");
  if (!color.has_value() || *color == "auto") {
    c.color = ColorMode::kAuto;
  } else if (*color == "always") {
    c.color = ColorMode::kAlways;
  } else if (*color == "never") {
    c.color = ColorMode::kNever;
  } else {
    return Usage(absl::StrCat("--color takes auto, always or never, got \"", *color, "\""));
  }
  return absl::OkStatus();
}

// ---- the builders ---------------------------------------------------------------------------

absl::StatusOr<v1::Trigger> ParseTrigger(absl::string_view name) {
  v1::Trigger trigger = TriggerFromName(std::string_view(name.data(), name.size()));
  if (trigger != v1::TRIGGER_UNSPECIFIED) return trigger;
  std::vector<std::string> names;
  for (int t = v1::Trigger_MIN + 1; t <= v1::Trigger_MAX; ++t) {
    names.emplace_back(TriggerName(static_cast<v1::Trigger>(t)));
  }
  return Usage(absl::StrCat("--trigger \"", name, "\" is not one of ", absl::StrJoin(names, ", ")));
}

// create's boot payload: --payload as written, unless --text or --message-id add a field.
absl::StatusOr<std::string> CreatePayload(const Parsed& p, const Environment& env,
                                          v1::Trigger trigger) {
  Json payload = Json::object();
  std::string payload_text = "{}";
  if (std::optional<std::string> arg = p.Value("--payload")) {
    absl::StatusOr<JsonArg> loaded = LoadJson("--payload", *arg, env);
    if (!loaded.ok()) return loaded.status();
    if (!loaded->value.is_object()) {
      return Usage(
          absl::StrCat("--payload must be a JSON object, got ", JsonTypeName(loaded->value)));
    }
    payload = std::move(loaded->value);
    payload_text = std::move(loaded->text);
  }

  std::optional<std::string> text = p.Value("--text");
  std::optional<std::string> message_id = p.Value("--message-id");
  std::string key;
  Json value;
  if (text.has_value()) {
    Json message = UserMessage(message_id.has_value() ? *message_id : env.new_message_id(), *text);
    if (trigger == v1::TRIGGER_SUBMIT_MESSAGE) {
      key = "message";
      value = std::move(message);
    } else if (trigger == v1::TRIGGER_HANDOVER_PREPARE) {
      key = "headStartMessages";
      value = Json::array({std::move(message)});
    } else {
      return Usage("--text goes with --trigger submit-message or handover-prepare");
    }
  } else if (message_id.has_value()) {
    if (trigger != v1::TRIGGER_REGENERATE_MESSAGE) {
      return Usage("--message-id goes with --text, or names the message to regenerate");
    }
    key = "messageId";
    value = *message_id;
  } else {
    return payload_text;
  }
  if (FindField(payload, key) != nullptr) {
    return Usage(absl::StrCat(text.has_value() ? "--text" : "--message-id",
                              " and --payload both set payload.", key));
  }
  payload[key] = std::move(value);
  return DumpJson(payload);
}

absl::Status BuildCreate(const Parsed& p, const Environment& env, Command& c) {
  v1::CreateSessionRequest& req = c.create;
  req.set_chat_id(p.args[0]);
  std::optional<std::string> agent = p.Value("--agent");
  if (!agent.has_value() || agent->empty()) return Usage("create needs --agent NAME");
  req.set_agent(*agent);
  std::string default_trigger = p.Has("--text") ? "submit-message" : "preload";
  absl::StatusOr<v1::Trigger> trigger =
      ParseTrigger(p.Value("--trigger").value_or(default_trigger));
  if (!trigger.ok()) return trigger.status();
  req.set_trigger(*trigger);
  absl::StatusOr<std::string> payload = CreatePayload(p, env, *trigger);
  if (!payload.ok()) return payload.status();
  req.set_payload_json(*std::move(payload));
  if (std::optional<std::string> tp = p.Value("--traceparent")) req.set_traceparent(*tp);
  c.json = p.Has("--json");
  return absl::OkStatus();
}

absl::Status BuildAppend(const Parsed& p, const Environment& env, Command& c) {
  static constexpr absl::string_view kModes[] = {"--text", "--stop", "--handover",
                                                 "--handover-skip", "--body"};
  absl::string_view mode;
  if (absl::Status s = ExactlyOne(p, kModes, &mode); !s.ok()) return s;
  if (p.Has("--message-id") && mode != "--text" && mode != "--handover") {
    return Usage("--message-id goes with --text or --handover");
  }
  if (p.Has("--final") && mode != "--handover") return Usage("--final goes with --handover");

  const std::string& chat = p.args[0];
  v1::AppendRequest& req = c.append;
  req.set_chat_id(chat);
  if (std::optional<std::string> id = p.Value("--record-id")) req.set_client_record_id(*id);
  c.json = p.Has("--json");

  if (mode == "--text") {
    std::optional<std::string> named = p.Value("--message-id");
    std::string id = named.has_value() ? *named : env.new_message_id();
    req.set_body_json(MessageBody(chat, UserMessage(id, *p.Value("--text"))));
  } else if (mode == "--stop") {
    req.set_body_json(StopBody(p.Value("--stop")));
  } else if (mode == "--handover-skip") {
    req.set_body_json(HandoverSkipBody());
  } else if (mode == "--body") {
    absl::StatusOr<JsonArg> body = LoadJson("--body", *p.Value("--body"), env);
    if (!body.ok()) return body.status();
    req.set_body_json(std::move(body->text));
  } else {  // --handover
    std::optional<std::string> id = p.Value("--message-id");
    if (!id.has_value()) return Usage("--handover needs --message-id ID");
    std::string file = *p.Value("--handover");
    absl::StatusOr<std::string> partial = env.read_file(file);
    if (!partial.ok()) return Usage(absl::StrCat("--handover: ", partial.status().message()));
    absl::StatusOr<std::string> body = HandoverBody(*partial, *id, p.Has("--final"));
    if (!body.ok()) return Usage(absl::StrCat("--handover ", file, ": ", body.status().message()));
    req.set_body_json(*std::move(body));
  }
  return absl::OkStatus();
}

absl::Status BuildRead(const Parsed& p, const Environment&, Command& c) {
  c.read.set_chat_id(p.args[0]);
  if (std::optional<std::string> after = p.Value("--after")) {
    int64_t seq = 0;
    if (!absl::SimpleAtoi(*after, &seq) || seq < 0) {
      return Usage(
          absl::StrCat("--after takes a seq (a whole number, 0 or more), got \"", *after, "\""));
    }
    c.read.set_after_seq(seq);
  }
  c.read.set_follow(p.Has("--follow"));
  if (std::optional<std::string> turns = p.Value("--turns")) {
    if (!absl::SimpleAtoi(*turns, &c.turns) || c.turns < 1) {
      return Usage(absl::StrCat("--turns takes a count of 1 or more, got \"", *turns, "\""));
    }
    c.read.set_follow(true);  // waiting for turns means waiting for records
  }
  c.json = p.Has("--json");
  return ParseColor(p, c);
}

absl::Status BuildGet(const Parsed& p, const Environment&, Command& c) {
  c.get.set_chat_id(p.args[0]);
  c.json = p.Has("--json");
  return absl::OkStatus();
}

absl::Status BuildRuns(const Parsed& p, const Environment&, Command& c) {
  if (!p.args.empty()) c.runs.set_chat_id(p.args[0]);
  c.json = p.Has("--json");
  return absl::OkStatus();
}

absl::Status BuildCancel(const Parsed& p, const Environment&, Command& c) {
  c.cancel.set_chat_id(p.args[0]);
  if (std::optional<std::string> run = p.Value("--run")) c.cancel.set_run_id(*run);
  c.json = p.Has("--json");
  return absl::OkStatus();
}

absl::Status BuildClose(const Parsed& p, const Environment&, Command& c) {
  c.close.set_chat_id(p.args[0]);
  if (std::optional<std::string> reason = p.Value("--reason")) c.close.set_reason(*reason);
  c.json = p.Has("--json");
  return absl::OkStatus();
}

absl::Status BuildHeadStart(const Parsed& p, const Environment&, Command& c) {
  Command::HeadStart& h = c.head_start;
  h.chat_id = p.args[0];
  std::optional<std::string> agent = p.Value("--agent");
  std::optional<std::string> text = p.Value("--text");
  if (!agent.has_value()) return Usage("head-start needs --agent NAME");
  if (!text.has_value()) return Usage("head-start needs --text TEXT");
  if (*agent != "chat" && *agent != "weather" && *agent != "files") {
    return Usage(absl::StrCat("head-start knows the tool schemas of the agents chat, weather and ",
                              "files, not \"", *agent, "\" (a warm server of your own uses ",
                              "runtime/client/head_start.h with your agent)"));
  }
  h.agent = *agent;
  h.text = *text;
  h.message_id = p.Value("--message-id").value_or("");
  h.provider = p.Value("--provider").value_or("anthropic");
  if (h.provider != "anthropic" && h.provider != "openai") {
    return Usage(absl::StrCat("--provider takes anthropic or openai, got \"", h.provider, "\""));
  }
  h.base_url = p.Value("--base-url").value_or("");
  h.model = p.Value("--model").value_or("");
  h.api_key_env = p.Value("--api-key-env").value_or("");
  c.json = p.Has("--json");
  return ParseColor(p, c);
}

absl::Status BuildHelp(const Parsed&, const Environment&, Command& c) {
  c.verb = Verb::kHelp;
  return absl::OkStatus();
}

constexpr CommandSpec kCommands[] = {
    {"create", Verb::kCreate, "CHAT", 1, 1, kCreateFlags, BuildCreate},
    {"append", Verb::kAppend, "CHAT", 1, 1, kAppendFlags, BuildAppend},
    {"read", Verb::kRead, "CHAT", 1, 1, kReadFlags, BuildRead},
    {"get", Verb::kGet, "CHAT", 1, 1, kJsonFlags, BuildGet},
    {"runs", Verb::kRuns, "[CHAT]", 0, 1, kJsonFlags, BuildRuns},
    {"cancel", Verb::kCancel, "CHAT", 1, 1, kCancelFlags, BuildCancel},
    {"close", Verb::kClose, "CHAT", 1, 1, kCloseFlags, BuildClose},
    {"head-start", Verb::kHeadStart, "CHAT", 1, 1, kHeadStartFlags, BuildHeadStart},
    {"help", Verb::kHelp, "[COMMAND]", 0, 1, {}, BuildHelp},
};

// ---- the generic scanner --------------------------------------------------------------------

const FlagSpec* FindFlag(absl::string_view name, std::span<const FlagSpec> a,
                         std::span<const FlagSpec> b) {
  for (std::span<const FlagSpec> table : {a, b}) {
    for (const FlagSpec& f : table) {
      if (f.name == name) return &f;
    }
  }
  return nullptr;
}

std::string FlagList(std::span<const FlagSpec> flags) {
  std::vector<absl::string_view> names;
  for (const FlagSpec& f : flags) names.push_back(f.name);
  return absl::StrJoin(names, ", ");
}

// Scans args[i..] into `out`: options of `flags` (and the global ones), and, when
// `stop_at_positional`, stops at the first positional argument (the command name).
absl::Status Scan(const std::vector<std::string>& args, size_t& i, std::span<const FlagSpec> flags,
                  bool stop_at_positional, Parsed& out) {
  bool options_ended = false;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    bool looks_like_flag = arg.size() > 1 && arg[0] == '-' && !options_ended;
    if (!looks_like_flag) {
      if (stop_at_positional) return absl::OkStatus();
      out.args.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_ended = true;
      continue;
    }
    std::string name = arg;
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    const FlagSpec* spec = FindFlag(name, flags, kGlobalFlags);
    if (spec == nullptr) {
      if (stop_at_positional) return Usage(absl::StrCat("unknown option ", name));
      std::string allowed = flags.empty() ? "no options" : FlagList(flags);
      return Usage(
          absl::StrCat("unknown option ", name, " for ", out.command, " (it takes ", allowed, ")"));
    }
    if (spec->arity == Arity::kSwitch && value.has_value()) {
      return Usage(absl::StrCat(name, " takes no value"));
    }
    if (spec->arity == Arity::kValue && !value.has_value()) {
      if (i + 1 >= args.size()) return Usage(absl::StrCat(name, " needs a value"));
      value = args[++i];
    }
    if (spec->arity == Arity::kOptional && !value.has_value() && i + 1 < args.size() &&
        (args[i + 1].empty() || args[i + 1][0] != '-')) {
      value = args[++i];
    }
    if (!out.flags.emplace(name, std::move(value)).second) {
      return Usage(absl::StrCat(name, " given twice"));
    }
  }
  return absl::OkStatus();
}

// --addr, --timeout, the token and TLS: wherever they were given, with $BATON_ADDR as the
// fallback address.
absl::Status ApplyGlobals(const Parsed& p, const Environment& env, Command& c) {
  if (std::optional<std::string> addr = p.Value("--addr")) {
    if (addr->empty()) return Usage("--addr must not be empty");
    c.addr = *addr;
  } else if (!env.baton_addr.empty()) {
    c.addr = env.baton_addr;
  }
  if (std::optional<std::string> timeout = p.Value("--timeout")) {
    double seconds = 0;
    // The upper bound keeps now + timeout inside the clock's range.
    if (!absl::SimpleAtod(*timeout, &seconds) || !std::isfinite(seconds) || seconds <= 0 ||
        seconds > 1e9) {
      return Usage(
          absl::StrCat("--timeout takes a number of seconds above 0, got \"", *timeout, "\""));
    }
    c.timeout = absl::Seconds(seconds);
  }
  if (std::optional<std::string> var = p.Value("--token-env")) c.security.token_env = *var;
  c.security.tls = p.Has("--tls");
  if (std::optional<std::string> file = p.Value("--tls-ca")) c.security.tls_ca = *file;
  if (std::optional<std::string> file = p.Value("--tls-cert")) c.security.tls_cert = *file;
  if (std::optional<std::string> file = p.Value("--tls-key")) c.security.tls_key = *file;
  return absl::OkStatus();
}

}  // namespace

int ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
      return kExitRefused;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return kExitRejected;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitDenied;
    default:
      return kExitFailure;
  }
}

absl::StatusOr<Command> ParseCommand(const std::vector<std::string>& args, const Environment& env) {
  Command command;
  Parsed globals;
  size_t i = 0;
  if (absl::Status s = Scan(args, i, {}, /*stop_at_positional=*/true, globals); !s.ok()) return s;
  if (globals.Has("--help") || globals.Has("-h")) return command;  // Verb::kHelp
  if (i >= args.size()) return Usage("no command given");

  const CommandSpec* spec = nullptr;
  for (const CommandSpec& candidate : kCommands) {
    if (candidate.name == args[i]) spec = &candidate;
  }
  if (spec == nullptr) return Usage(absl::StrCat("unknown command \"", args[i], "\""));
  Parsed parsed;
  parsed.command = spec->name;
  parsed.flags = std::move(globals.flags);
  ++i;
  if (absl::Status s = Scan(args, i, spec->flags, /*stop_at_positional=*/false, parsed); !s.ok()) {
    return s;
  }
  if (parsed.Has("--help") || parsed.Has("-h")) return command;
  int n = static_cast<int>(parsed.args.size());
  if (n < spec->min_args) return Usage(absl::StrCat(spec->name, " needs ", spec->args_help));
  if (n > spec->max_args) {
    return Usage(absl::StrCat(spec->name, " takes ", spec->args_help, ", got ", n,
                              " arguments: ", absl::StrJoin(parsed.args, " ")));
  }
  for (const std::string& arg : parsed.args) {
    if (arg.empty()) return Usage(absl::StrCat(spec->name, ": ", spec->args_help, " is empty"));
  }
  command.verb = spec->verb;
  if (absl::Status s = ApplyGlobals(parsed, env, command); !s.ok()) return s;
  if (absl::Status s = spec->build(parsed, env, command); !s.ok()) return s;
  return command;
}

std::string_view UsageText() { return kUsage; }

bool ResolveColor(ColorMode mode, bool stdout_is_tty, const char* no_color) {
  switch (mode) {
    case ColorMode::kAlways:
      return true;
    case ColorMode::kNever:
      return false;
    case ColorMode::kAuto:
      break;
  }
  return stdout_is_tty && (no_color == nullptr || no_color[0] == '\0');
}

std::string MessageBody(std::string_view chat_id, const Json& message) {
  Json payload = Json::object();
  payload["chatId"] = chat_id;
  payload["trigger"] = "submit-message";
  payload["message"] = message;
  Json body = Json::object();
  body["kind"] = "message";
  body["payload"] = std::move(payload);
  return DumpJson(body);
}

std::string StopBody(const std::optional<std::string>& reason) {
  Json body = Json::object();
  body["kind"] = "stop";
  if (reason.has_value()) body["message"] = *reason;
  return DumpJson(body);
}

absl::StatusOr<std::string> HandoverBody(std::string_view partial_json, std::string_view message_id,
                                         bool is_final) {
  absl::string_view partial =
      absl::StripAsciiWhitespace(absl::string_view(partial_json.data(), partial_json.size()));
  absl::StatusOr<Json> parsed = ParseJson(std::string_view(partial.data(), partial.size()));
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the partialAssistantMessage must be a JSON array, got ", JsonTypeName(*parsed)));
  }
  return absl::StrCat(R"({"kind":"handover","partialAssistantMessage":)", partial,
                      R"(,"messageId":)", DumpJson(Json(message_id)), R"(,"isFinal":)",
                      is_final ? "true" : "false", "}");
}

std::string HandoverSkipBody() { return R"({"kind":"handover-skip"})"; }

Environment SystemEnvironment() {
  Environment env;
  if (const char* addr = std::getenv("BATON_ADDR"); addr != nullptr) env.baton_addr = addr;
  env.read_file = [](const std::string& path) -> absl::StatusOr<std::string> {
    if (path == "-") {
      std::string text(std::istreambuf_iterator<char>(std::cin), {});
      if (std::cin.bad()) return absl::InvalidArgumentError("cannot read stdin");
      return text;
    }
    struct stat info;
    if (::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", path, ": a directory"));
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
    }
    std::ostringstream text;
    text << file.rdbuf();
    if (file.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
    return text.str();
  };
  env.new_message_id = [] {
    std::random_device device;
    std::mt19937_64 bits((static_cast<uint64_t>(device()) << 32) ^ device());
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(bits()));
    return absl::StrCat("u-", hex);
  };
  return env;
}

}  // namespace baton::ctl
