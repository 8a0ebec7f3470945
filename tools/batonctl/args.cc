#include "tools/batonctl/args.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <random>
#include <span>
#include <sstream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "hooks/messages.h"
#include "runtime/protocol/wire.h"

namespace baton::ctl {
namespace {

constexpr char kFooter[] =
    R"(JSON|@FILE takes JSON text, or @FILE to read it from a file (@- reads stdin).
`batonctl COMMAND --help` (or `batonctl help COMMAND`) describes one command.

exit codes:
  0  ok
  1  any other error
  2  usage error: bad options, unreadable file, invalid JSON given locally
  3  not found (no such chat or run)
  4  refused: the chat is closed (FAILED_PRECONDITION), or exists with another agent
  5  rejected by the server: invalid argument, or a record over the size limit
  6  orchestrator unreachable, or the call timed out
  7  denied: no token, or a token that may not make the call
)";
constexpr char kCommandFooter[] =
    "The global options (batonctl --help) are accepted after the command too.";
constexpr char kJsonFooter[] =
    "\nJSON|@FILE takes JSON text, or @FILE to read it from a file (@- reads stdin).";

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

// ---- the command line, declared for CLI11 ---------------------------------------------------
//
// An option that only sets a field is bound to it here. Options whose meaning depends on
// others (create's payload, append's modes) or that need a check of their own are read by the
// builders below, through Given.

using Setter = std::function<void(const std::string&)>;
Setter Into(std::string& field) {
  return [&field](const std::string& value) { field = value; };
}
template <typename Request>
Setter ChatOf(Request& request) {
  return [&request](const std::string& chat) { request.set_chat_id(chat); };
}

CLI::Option* AddValue(CLI::App* app, const std::string& name, const std::string& value_name,
                      const std::string& help, const Setter& set = nullptr) {
  CLI::Option* option = app->add_option(name)->type_name(value_name)->description(help);
  return set ? option->each(set) : option;
}

// A switch is given at most once, and without a value ("--follow=yes" is an error).
CLI::Option* AddSwitch(CLI::App* app, const std::string& name, const std::string& help,
                       bool* into = nullptr) {
  auto no_value = [](std::string& value) { return value == "true" ? "" : "takes no value"; };
  return (into != nullptr ? app->add_flag(name, *into) : app->add_flag(name))
      ->description(help)
      ->multi_option_policy(CLI::MultiOptionPolicy::Throw)
      ->check(CLI::Validator(no_value, ""));
}

// A command; with `chat`, its CHAT argument (required), and always --json.
CLI::App* AddCommand(CLI::App& app, Command& c, const std::string& name, const std::string& help,
                     const Setter& chat, const std::string& footer = "") {
  CLI::App* command = app.add_subcommand(name, help)->group("Commands");
  command->footer(kCommandFooter + footer);
  if (chat) command->add_option("CHAT")->description("the chat's id")->required()->each(chat);
  AddSwitch(command, "--json", "print JSON (one object a line) instead of text", &c.json);
  return command;
}

std::vector<std::string> TriggerNames() {
  std::vector<std::string> names;
  for (int t = v1::Trigger_MIN + 1; t <= v1::Trigger_MAX; ++t) {
    names.emplace_back(TriggerName(static_cast<v1::Trigger>(t)));
  }
  return names;
}

// batonctl's whole command line, bound to `c`. Unrecognised arguments are left over
// (allow_extras) so that ParseCommand can say what they are; the global options fall through
// from any command.
std::unique_ptr<CLI::App> MakeApp(Command& c) {
  auto app =
      std::make_unique<CLI::App>("Client of the baton orchestrator's Sessions API.", "batonctl");
  app->get_formatter()->label("SUBCOMMAND", "COMMAND");
  app->footer(kFooter);
  app->allow_extras()->fallthrough()->require_subcommand(0, 1);
  AddValue(app.get(), "--addr", "ADDR",
           "orchestrator address: host:port or unix:/path/to/socket (default: $BATON_ADDR, else "
           "127.0.0.1:7400)");
  AddValue(app.get(), "--timeout", "SECONDS", "deadline of each call except read (default 10)");
  AddValue(app.get(), "--token-env", "VAR",
           "send the bearer token in $VAR (default BATON_TOKEN; unset: none)",
           Into(c.security.token_env));
  AddSwitch(app.get(), "--tls", "dial over TLS (implied by the --tls-* files)", &c.security.tls);
  AddValue(app.get(), "--tls-ca", "FILE",
           "PEM CA of the orchestrator's certificate (default: system roots)",
           Into(c.security.tls_ca));
  AddValue(app.get(), "--tls-cert", "FILE", "PEM client certificate, for mTLS (with --tls-key)",
           Into(c.security.tls_cert));
  AddValue(app.get(), "--tls-key", "FILE", "PEM private key of --tls-cert",
           Into(c.security.tls_key));

  CLI::App* create =
      AddCommand(*app, c, "create", "Create the chat session and boot its first run.",
                 ChatOf(c.create), kJsonFooter);
  AddValue(create, "--agent", "NAME", "the agent that runs the chat")->required();
  AddValue(create, "--trigger", "T", "default: submit-message with --text, else preload")
      ->check(CLI::IsMember(TriggerNames()));
  AddValue(create, "--text", "TEXT",
           "a user message: payload.message (payload.headStartMessages for handover-prepare)");
  AddValue(create, "--message-id", "ID",
           "the --text message's id (default: generated), or the message to regenerate");
  AddValue(create, "--payload", "JSON|@FILE", "the boot payload, a JSON object, sent as written");
  AddValue(create, "--traceparent", "TP", "W3C trace context of the run",
           [&c](const std::string& tp) { c.create.set_traceparent(tp); });

  CLI::App* append =
      AddCommand(*app, c, "append",
                 "Append one record (--text, --stop, --handover, --handover-skip or --body).",
                 ChatOf(c.append), kJsonFooter);
  AddValue(append, "--text", "TEXT", "mode: a user message (submit-message)");
  AddValue(append, "--message-id", "ID",
           "the --text message's id (default: generated), or the --handover message's");
  AddValue(append, "--stop", "[REASON]", "mode: stop the turn, with an optional reason")
      ->expected(0, 1);
  AddValue(append, "--handover", "FILE",
           "mode: hand over with the partialAssistantMessage array in FILE (\"-\" reads stdin); "
           "needs --message-id");
  AddSwitch(append, "--final", "with --handover: the partial message is the whole answer");
  AddSwitch(append, "--handover-skip", "mode: the warm side's step 1 failed; the worker runs it");
  AddValue(append, "--body", "JSON|@FILE", "mode: any record body, sent as written");
  AddValue(append, "--record-id", "ID", "makes a retry of the same append return the first seq",
           [&c](const std::string& id) { c.append.set_client_record_id(id); });

  const std::string color_help =
      "colour the text output (default auto: on a terminal, unless NO_COLOR)";
  CLI::App* read = AddCommand(*app, c, "read", "Print the chat's .out records.", ChatOf(c.read));
  AddValue(read, "--after", "SEQ", "start after this seq (default 0)");
  AddSwitch(read, "--follow", "wait for new records until the chat is closed");
  AddValue(read, "--turns", "N", "stop after N turn-complete records (implies --follow)");
  AddValue(read, "--color", "WHEN", color_help)->check(CLI::IsMember({"auto", "always", "never"}));

  AddCommand(*app, c, "get", "Print the session.", ChatOf(c.get));
  AddCommand(*app, c, "runs", "List the runs (of every chat without CHAT).", nullptr)
      ->add_option("CHAT")
      ->description("the chat whose runs to list")
      ->each(ChatOf(c.runs));
  AddValue(AddCommand(*app, c, "cancel", "Cancel the chat's live run.", ChatOf(c.cancel)), "--run",
           "RUN", "only if the live run is RUN",
           [&c](const std::string& run) { c.cancel.set_run_id(run); });
  AddValue(AddCommand(*app, c, "close", "Close the chat.", ChatOf(c.close)), "--reason", "R",
           "why, for the chat's record",
           [&c](const std::string& reason) { c.close.set_reason(reason); });

  Command::HeadStart& h = c.head_start;
  CLI::App* head_start = AddCommand(
      *app, c, "head-start", "Play the warm server of a head start, then follow the turn.",
      Into(h.chat_id),
      "\nIt creates the session (handover-prepare), streams step 1 from the provider here, hands\n"
      "over (or skips), then follows .out to the turn's end.");
  AddValue(head_start, "--agent", "NAME", "one of the example agents: chat, weather, files",
           Into(h.agent))
      ->required();
  AddValue(head_start, "--text", "TEXT", "the user's first message", Into(h.text))->required();
  AddValue(head_start, "--message-id", "ID", "the user message's id (default: generated)",
           Into(h.message_id));
  AddValue(head_start, "--provider", "P", "the model provider (default anthropic)",
           Into(h.provider))
      ->check(CLI::IsMember({"anthropic", "openai"}));
  AddValue(head_start, "--base-url", "URL", "the provider's base URL", Into(h.base_url));
  AddValue(head_start, "--model", "M", "the model", Into(h.model));
  AddValue(head_start, "--api-key-env", "VAR", "the variable that holds the API key",
           Into(h.api_key_env));
  AddValue(head_start, "--color", "WHEN", color_help)
      ->check(CLI::IsMember({"auto", "always", "never"}));

  app->add_subcommand("help", "Print this text, or the help of COMMAND.")
      ->group("Commands")
      ->add_option("COMMAND")
      ->description("the command to describe");
  return app;
}

// What CLI11 collected: the command's options, and the global ones given before or after it.
struct Given {
  const CLI::App& app;
  const CLI::App& cmd;

  const CLI::Option* Find(const std::string& name) const {
    const CLI::Option* option = cmd.get_option_no_throw(name);
    return option != nullptr ? option : app.get_option_no_throw(name);
  }
  bool Has(const std::string& name) const {
    const CLI::Option* option = Find(name);
    return option != nullptr && option->count() > 0;
  }
  std::optional<std::string> Value(const std::string& name) const {
    if (!Has(name)) return std::nullopt;
    return Find(name)->results().back();
  }
};

// CLI11 leaves what it did not recognise: say what it is.
absl::Status CheckLeftOver(const CLI::App& app, const CLI::App* cmd) {
  std::vector<std::string> extra = app.remaining();
  extra.erase(std::remove(extra.begin(), extra.end(), "--"), extra.end());
  auto is_option = [](const std::string& arg) { return arg.size() > 1 && arg[0] == '-'; };
  auto option = std::find_if(extra.begin(), extra.end(), is_option);
  if (extra.empty()) return absl::OkStatus();
  if (cmd == nullptr && is_option(extra[0])) return Usage("unknown option " + extra[0]);
  if (cmd == nullptr) return Usage(absl::StrCat("unknown command \"", extra[0], "\""));
  if (option != extra.end()) {
    std::vector<std::string> names;
    for (const CLI::Option* o : cmd->get_options()) {
      if (o->nonpositional() && o != cmd->get_help_ptr()) names.push_back(o->get_name());
    }
    return Usage(absl::StrCat("unknown option ", *option, " for ", cmd->get_name(), " (it takes ",
                              names.empty() ? "no options" : absl::StrJoin(names, ", "), ")"));
  }
  const CLI::Option* positional = cmd->get_options(
      [](const CLI::Option* o) { return o->get_positional(); })[0];  // every command has one
  std::vector<std::string> given = positional->results();
  given.insert(given.end(), extra.begin(), extra.end());
  std::string takes = positional->get_name();
  if (!positional->get_required()) takes = "[" + takes + "]";
  return Usage(absl::StrCat(cmd->get_name(), " takes ", takes, ", got ", given.size(),
                            " arguments: ", absl::StrJoin(given, " ")));
}

// CLI11 reads "--name=" as "--name" taking the next argument; batonctl means an empty value.
// CLI11 also wants the arguments in reverse.
std::vector<std::string> ForCli11(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  bool options_ended = false;
  for (const std::string& arg : args) {
    options_ended = options_ended || arg == "--";
    bool empty_value = !options_ended && arg.size() > 3 && arg.rfind("--", 0) == 0 &&
                       arg.find('=') == arg.size() - 1;
    out.push_back(empty_value ? arg.substr(0, arg.size() - 1) : arg);
    if (empty_value) out.emplace_back();
  }
  std::reverse(out.begin(), out.end());
  return out;
}

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
absl::Status ExactlyOne(const Given& p, std::span<const absl::string_view> names,
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
  if (given.empty()) return Usage(absl::StrCat(p.cmd.get_name(), " needs one of ", all));
  return Usage(absl::StrCat(p.cmd.get_name(), " takes only one of ", all, "; got ",
                            absl::StrJoin(given, " and ")));
}

// --color auto|always|never (CLI11 checked the name).
ColorMode ColorOf(const Given& p) {
  std::string color = p.Value("--color").value_or("auto");
  if (color == "always") return ColorMode::kAlways;
  return color == "never" ? ColorMode::kNever : ColorMode::kAuto;
}

// ---- the builders: what was given, made into the request ------------------------------------

// create's boot payload: --payload as written, unless --text or --message-id add a field.
absl::StatusOr<std::string> CreatePayload(const Given& p, const Environment& env,
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

absl::Status BuildCreate(const Given& p, const Environment& env, Command& c) {
  v1::CreateSessionRequest& req = c.create;
  req.set_agent(*p.Value("--agent"));
  if (req.agent().empty()) return Usage("create needs --agent NAME");
  std::string default_trigger = p.Has("--text") ? "submit-message" : "preload";
  v1::Trigger trigger = TriggerFromName(p.Value("--trigger").value_or(default_trigger));
  req.set_trigger(trigger);
  absl::StatusOr<std::string> payload = CreatePayload(p, env, trigger);
  if (!payload.ok()) return payload.status();
  req.set_payload_json(*std::move(payload));
  return absl::OkStatus();
}

absl::Status BuildAppend(const Given& p, const Environment& env, Command& c) {
  static constexpr absl::string_view kModes[] = {"--text", "--stop", "--handover",
                                                 "--handover-skip", "--body"};
  absl::string_view mode;
  if (absl::Status s = ExactlyOne(p, kModes, &mode); !s.ok()) return s;
  if (p.Has("--message-id") && mode != "--text" && mode != "--handover") {
    return Usage("--message-id goes with --text or --handover");
  }
  if (p.Has("--final") && mode != "--handover") return Usage("--final goes with --handover");

  v1::AppendRequest& req = c.append;
  if (mode == "--text") {
    std::optional<std::string> named = p.Value("--message-id");
    std::string id = named.has_value() ? *named : env.new_message_id();
    req.set_body_json(MessageBody(req.chat_id(), UserMessage(id, *p.Value("--text"))));
  } else if (mode == "--stop") {
    std::optional<std::string> reason = p.Value("--stop");  // "" when no reason was given
    req.set_body_json(StopBody(reason->empty() ? std::nullopt : reason));
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

absl::Status BuildRead(const Given& p, const Environment&, Command& c) {
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
  return absl::OkStatus();
}

absl::Status BuildHeadStart(const Given&, const Environment&, Command& c) {
  const std::string& agent = c.head_start.agent;
  if (agent != "chat" && agent != "weather" && agent != "files") {
    return Usage(absl::StrCat("head-start knows the tool schemas of the agents chat, weather and ",
                              "files, not \"", agent, "\" (a warm server of your own uses ",
                              "runtime/client/head_start.h with your agent)"));
  }
  return absl::OkStatus();
}

using Builder = absl::Status (*)(const Given&, const Environment&, Command&);

struct Verbs {
  std::string_view name;
  Verb verb;
  Builder build;
};

constexpr Verbs kVerbs[] = {
    {"create", Verb::kCreate, BuildCreate}, {"append", Verb::kAppend, BuildAppend},
    {"read", Verb::kRead, BuildRead},       {"get", Verb::kGet, nullptr},
    {"runs", Verb::kRuns, nullptr},         {"cancel", Verb::kCancel, nullptr},
    {"close", Verb::kClose, nullptr},       {"head-start", Verb::kHeadStart, BuildHeadStart},
};

// --addr and --timeout, wherever they were given, with $BATON_ADDR as the fallback address;
// --color, for the commands that print records.
absl::Status ApplyGlobals(const Given& p, const Environment& env, Command& c) {
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
  c.color = ColorOf(p);
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
  std::unique_ptr<CLI::App> app = MakeApp(command);
  try {
    std::vector<std::string> reversed = ForCli11(args);
    app->parse(reversed);
  } catch (const CLI::CallForHelp&) {
    return Command{.help = app->help()};  // of the command given, if any
  } catch (const CLI::ParseError& e) {
    return Usage(e.what());
  }
  std::vector<CLI::App*> commands = app->get_subcommands();
  const CLI::App* cmd = commands.empty() ? nullptr : commands[0];
  if (absl::Status s = CheckLeftOver(*app, cmd); !s.ok()) return s;
  if (cmd == nullptr) return Usage("no command given");
  Given p{*app, *cmd};
  if (cmd->get_name() == "help") {  // help [COMMAND]
    std::optional<std::string> topic = p.Value("COMMAND");
    if (!topic.has_value()) return Command{.help = std::string(UsageText())};
    for (const CLI::App* sub : app->get_subcommands({})) {
      if (sub->get_name() == *topic) return Command{.help = sub->help("batonctl")};
    }
    return Usage(absl::StrCat("unknown command \"", *topic, "\""));
  }
  if (p.Value("CHAT") == "") return Usage(cmd->get_name() + ": CHAT is empty");
  for (const Verbs& v : kVerbs) {
    if (v.name != cmd->get_name()) continue;
    command.verb = v.verb;
    if (absl::Status s = ApplyGlobals(p, env, command); !s.ok()) return s;
    if (v.build != nullptr) {
      if (absl::Status s = v.build(p, env, command); !s.ok()) return s;
    }
  }
  return command;
}

std::string_view UsageText() {
  static const std::string* const text = [] {
    Command unused;
    return new std::string(MakeApp(unused)->help());
  }();
  return *text;
}

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
