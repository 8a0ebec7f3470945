// batonctl's parsing, record bodies and output (tools/batonctl/args.h, render.h), without a
// server.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hooks/records.h"
#include "tools/batonctl/args.h"
#include "tools/batonctl/render.h"

namespace baton::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ---- parsing --------------------------------------------------------------------------------

// An environment with in-memory files and predictable message ids.
struct FakeEnv {
  std::map<std::string, std::string> files;
  std::string baton_addr;
  int ids = 0;

  Environment Get() {
    Environment env;
    env.baton_addr = baton_addr;
    env.read_file = [this](const std::string& path) -> absl::StatusOr<std::string> {
      auto it = files.find(path);
      if (it == files.end()) return absl::NotFoundError("cannot read " + path + ": no such file");
      return it->second;
    };
    env.new_message_id = [this] { return "u-" + std::to_string(++ids); };
    return env;
  }
};

absl::StatusOr<Command> Parse(std::vector<std::string> args, FakeEnv* env = nullptr) {
  FakeEnv fallback;
  return ParseCommand(args, (env != nullptr ? env : &fallback)->Get());
}

Command MustParse(std::vector<std::string> args, FakeEnv* env = nullptr) {
  absl::StatusOr<Command> command = Parse(args, env);
  EXPECT_TRUE(command.ok()) << command.status();
  return command.ok() ? *std::move(command) : Command();
}

// Expects a usage error whose message contains `needle`.
void ExpectUsage(std::vector<std::string> args, std::string_view needle, FakeEnv* env = nullptr) {
  absl::StatusOr<Command> command = Parse(args, env);
  ASSERT_FALSE(command.ok()) << "parsed: " << ::testing::PrintToString(args);
  EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(command.status().message()), HasSubstr(std::string(needle)));
}

TEST(ParseCommand, CreateDefaultsToPreloadWithAnEmptyPayload) {
  Command c = MustParse({"create", "c-1", "--agent", "support"});
  EXPECT_EQ(c.verb, Verb::kCreate);
  EXPECT_EQ(c.create.chat_id(), "c-1");
  EXPECT_EQ(c.create.agent(), "support");
  EXPECT_EQ(c.create.trigger(), v1::TRIGGER_PRELOAD);
  EXPECT_EQ(c.create.payload_json(), "{}");
  EXPECT_EQ(c.create.traceparent(), "");
  EXPECT_EQ(c.addr, "127.0.0.1:7400");
  EXPECT_EQ(c.timeout, absl::Seconds(10));
  EXPECT_FALSE(c.json);
}

TEST(ParseCommand, CreateWithTextSubmitsAUserMessage) {
  Command c = MustParse({"create", "c-1", "--agent", "support", "--text", "Hi there"});
  EXPECT_EQ(c.create.trigger(), v1::TRIGGER_SUBMIT_MESSAGE);
  EXPECT_EQ(
      c.create.payload_json(),
      R"({"message":{"id":"u-1","role":"user","parts":[{"type":"text","text":"Hi there"}]}})");

  Command named =
      MustParse({"create", "c-1", "--agent=support", "--text=Hi", "--message-id", "m-7", "--json"});
  EXPECT_EQ(named.create.payload_json(),
            R"({"message":{"id":"m-7","role":"user","parts":[{"type":"text","text":"Hi"}]}})");
  EXPECT_TRUE(named.json);
}

TEST(ParseCommand, CreateHandoverPrepareWithTextSendsHeadStartMessages) {
  Command c = MustParse({"create", "c-1", "--agent", "a", "--trigger", "handover-prepare", "--text",
                         "Weather?", "--message-id", "u-9", "--traceparent",
                         "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
  EXPECT_EQ(c.create.trigger(), v1::TRIGGER_HANDOVER_PREPARE);
  EXPECT_EQ(c.create.payload_json(), R"({"headStartMessages":[{"id":"u-9","role":"user","parts":[)"
                                     R"({"type":"text","text":"Weather?"}]}]})");
  EXPECT_EQ(c.create.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

TEST(ParseCommand, CreateTakesEveryTriggerName) {
  const std::pair<std::string, v1::Trigger> cases[] = {
      {"preload", v1::TRIGGER_PRELOAD},
      {"submit-message", v1::TRIGGER_SUBMIT_MESSAGE},
      {"handover-prepare", v1::TRIGGER_HANDOVER_PREPARE},
      {"regenerate-message", v1::TRIGGER_REGENERATE_MESSAGE},
      {"close", v1::TRIGGER_CLOSE},
  };
  for (const auto& [name, trigger] : cases) {
    Command c = MustParse({"create", "c", "--agent", "a", "--trigger", name});
    EXPECT_EQ(c.create.trigger(), trigger) << name;
  }
  ExpectUsage({"create", "c", "--agent", "a", "--trigger", "submit"},
              "--trigger: submit not in {preload,submit-message,handover-prepare,");
}

TEST(ParseCommand, CreatePayloadIsSentAsWrittenUnlessTextIsMergedIn) {
  FakeEnv env;
  env.files["boot.json"] = "  {\"metadata\": {\"price\": 1.50}, \"z\": 1, \"a\": 2}\n";
  Command raw = MustParse({"create", "c", "--agent", "a", "--payload", "@boot.json"}, &env);
  EXPECT_EQ(raw.create.payload_json(), R"({"metadata": {"price": 1.50}, "z": 1, "a": 2})");

  Command inline_payload =
      MustParse({"create", "c", "--agent", "a", "--payload", R"({"metadata":{"k":"v"}})"});
  EXPECT_EQ(inline_payload.create.payload_json(), R"({"metadata":{"k":"v"}})");

  Command merged = MustParse(
      {"create", "c", "--agent", "a", "--payload", R"({"z":1,"a":2})", "--text", "yo"}, &env);
  EXPECT_EQ(merged.create.payload_json(),
            R"({"z":1,"a":2,"message":{"id":"u-1","role":"user","parts":[)"
            R"({"type":"text","text":"yo"}]}})");
}

TEST(ParseCommand, CreateRegenerateNamesTheMessage) {
  Command c = MustParse(
      {"create", "c", "--agent", "a", "--trigger", "regenerate-message", "--message-id", "u-3"});
  EXPECT_EQ(c.create.payload_json(), R"({"messageId":"u-3"})");
}

TEST(ParseCommand, CreateRejectsWhatCannotBeSent) {
  ExpectUsage({"create", "c"}, "--agent is required");
  ExpectUsage({"create", "c", "--agent="}, "create needs --agent NAME");
  ExpectUsage({"create", "--agent", "a"}, "CHAT is required");
  ExpectUsage({"create", "c", "--agent", "a", "--text", "hi", "--trigger", "preload"},
              "--text goes with --trigger submit-message or handover-prepare");
  ExpectUsage({"create", "c", "--agent", "a", "--message-id", "m"},
              "--message-id goes with --text");
  ExpectUsage(
      {"create", "c", "--agent", "a", "--text", "hi", "--payload", R"({"message":{"id":"x"}})"},
      "--text and --payload both set payload.message");
  ExpectUsage({"create", "c", "--agent", "a", "--trigger", "regenerate-message", "--message-id",
               "u-1", "--payload", R"({"messageId":"u-2"})"},
              "--message-id and --payload both set payload.messageId");
  ExpectUsage({"create", "c", "--agent", "a", "--payload", "[1]"},
              "--payload must be a JSON object, got an array");
  ExpectUsage({"create", "c", "--agent", "a", "--payload", R"({"a":)"},
              "--payload: invalid JSON at byte");
  ExpectUsage({"create", "c", "--agent", "a", "--payload", "@missing.json"},
              "--payload @missing.json: cannot read missing.json");
  FakeEnv env;
  env.files["bad.json"] = "{oops}";
  ExpectUsage({"create", "c", "--agent", "a", "--payload", "@bad.json"},
              "--payload @bad.json: invalid JSON at byte", &env);
}

TEST(ParseCommand, AddressComesFromTheFlagThenTheEnvironmentThenTheDefault) {
  FakeEnv env;
  env.baton_addr = "unix:/run/baton.sock";
  EXPECT_EQ(MustParse({"get", "c"}, &env).addr, "unix:/run/baton.sock");
  EXPECT_EQ(MustParse({"--addr", "10.0.0.2:7400", "get", "c"}, &env).addr, "10.0.0.2:7400");
  EXPECT_EQ(MustParse({"get", "c", "--addr=h:1"}, &env).addr, "h:1");  // after the command too
  EXPECT_EQ(MustParse({"get", "c"}).addr, "127.0.0.1:7400");
}

TEST(ParseCommand, TimeoutTakesPositiveSeconds) {
  EXPECT_EQ(MustParse({"--timeout", "2.5", "get", "c"}).timeout, absl::Milliseconds(2500));
  ExpectUsage({"--timeout", "0", "get", "c"}, "--timeout takes a number of seconds above 0");
  ExpectUsage({"--timeout", "soon", "get", "c"}, R"(got "soon")");
  ExpectUsage({"--timeout", "inf", "get", "c"}, "--timeout");
}

TEST(ParseCommand, AppendTextBuildsASubmitMessageRecord) {
  Command c = MustParse({"append", "c-1", "--text", "What now?", "--record-id", "r-1"});
  EXPECT_EQ(c.verb, Verb::kAppend);
  EXPECT_EQ(c.append.chat_id(), "c-1");
  EXPECT_EQ(c.append.client_record_id(), "r-1");
  EXPECT_EQ(
      c.append.body_json(),
      R"({"kind":"message","payload":{"chatId":"c-1","trigger":"submit-message",)"
      R"("message":{"id":"u-1","role":"user","parts":[{"type":"text","text":"What now?"}]}}})");
  Command named = MustParse({"append", "c-1", "--text", "x", "--message-id", "m-2"});
  EXPECT_THAT(named.append.body_json(), HasSubstr(R"("id":"m-2")"));
  EXPECT_EQ(named.append.client_record_id(), "");
}

TEST(ParseCommand, AppendStopTakesAnOptionalReason) {
  EXPECT_EQ(MustParse({"append", "c", "--stop"}).append.body_json(), R"({"kind":"stop"})");
  EXPECT_EQ(MustParse({"append", "c", "--stop", "user cancelled"}).append.body_json(),
            R"({"kind":"stop","message":"user cancelled"})");
  EXPECT_EQ(MustParse({"append", "c", "--stop=later"}).append.body_json(),
            R"({"kind":"stop","message":"later"})");
  // An option after --stop is not its reason.
  Command c = MustParse({"append", "c", "--stop", "--record-id", "s1"});
  EXPECT_EQ(c.append.body_json(), R"({"kind":"stop"})");
  EXPECT_EQ(c.append.client_record_id(), "s1");
}

TEST(ParseCommand, AppendHandoverSplicesThePartialMessageFromTheFile) {
  FakeEnv env;
  env.files["partial.json"] =
      "[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],\"n\":1.0}]\n";
  Command c = MustParse(
      {"append", "c", "--handover", "partial.json", "--message-id", "a-1", "--final"}, &env);
  EXPECT_EQ(c.append.body_json(),
            R"({"kind":"handover","partialAssistantMessage":[{"role":"assistant","content":)"
            R"([{"type":"text","text":"Hi"}],"n":1.0}],"messageId":"a-1","isFinal":true})");
  env.files["-"] = "[]";
  Command from_stdin = MustParse({"append", "c", "--handover", "-", "--message-id", "a-1"}, &env);
  EXPECT_EQ(
      from_stdin.append.body_json(),
      R"({"kind":"handover","partialAssistantMessage":[],"messageId":"a-1","isFinal":false})");
  // Every body batonctl builds is one the worker accepts.
  EXPECT_TRUE(DecodeInRecord(1, c.append.body_json()).ok());
  EXPECT_TRUE(DecodeInRecord(1, from_stdin.append.body_json()).ok());
}

TEST(ParseCommand, AppendHandoverSkipAndRawBody) {
  EXPECT_EQ(MustParse({"append", "c", "--handover-skip"}).append.body_json(),
            R"({"kind":"handover-skip"})");
  FakeEnv env;
  env.files["body.json"] = "{\"kind\":\"steer\", \"x\": 1e2}\n";
  EXPECT_EQ(MustParse({"append", "c", "--body", "@body.json"}, &env).append.body_json(),
            R"({"kind":"steer", "x": 1e2})");
  EXPECT_EQ(MustParse({"append", "c", "--body", R"({"kind":"stop"})"}).append.body_json(),
            R"({"kind":"stop"})");
}

TEST(ParseCommand, AppendNeedsExactlyOneMode) {
  ExpectUsage({"append", "c"},
              "append needs one of --text, --stop, --handover, --handover-skip, --body");
  ExpectUsage({"append", "c", "--text", "a", "--stop"},
              "append takes only one of --text, --stop, --handover, --handover-skip, --body; "
              "got --text and --stop");
  ExpectUsage({"append", "c", "--handover-skip", "--body", "{}"}, "got --handover-skip and --body");
}

TEST(ParseCommand, AppendRejectsOptionsOfAnotherMode) {
  FakeEnv env;
  env.files["p.json"] = "[]";
  ExpectUsage({"append", "c", "--handover", "p.json"}, "--handover needs --message-id ID", &env);
  ExpectUsage({"append", "c", "--text", "x", "--final"}, "--final goes with --handover");
  ExpectUsage({"append", "c", "--stop", "--message-id", "m"},
              "--message-id goes with --text or --handover");
  env.files["obj.json"] = R"({"role":"assistant"})";
  ExpectUsage(
      {"append", "c", "--handover", "obj.json", "--message-id", "m"},
      "--handover obj.json: the partialAssistantMessage must be a JSON array, got an object", &env);
  env.files["cut.json"] = "[{";
  ExpectUsage({"append", "c", "--handover", "cut.json", "--message-id", "m"},
              "--handover cut.json: invalid JSON at byte", &env);
  ExpectUsage({"append", "c", "--handover", "nope.json", "--message-id", "m"},
              "--handover: cannot read nope.json", &env);
  ExpectUsage({"append", "c", "--body", "{"}, "--body: invalid JSON");
}

TEST(ParseCommand, ReadDefaultsAndOptions) {
  Command c = MustParse({"read", "c-1"});
  EXPECT_EQ(c.verb, Verb::kRead);
  EXPECT_EQ(c.read.chat_id(), "c-1");
  EXPECT_EQ(c.read.after_seq(), 0);
  EXPECT_FALSE(c.read.follow());
  EXPECT_EQ(c.turns, 0);
  EXPECT_EQ(c.color, ColorMode::kAuto);
  EXPECT_FALSE(c.json);

  Command all =
      MustParse({"read", "c-1", "--after", "12", "--follow", "--json", "--color", "never"});
  EXPECT_EQ(all.read.after_seq(), 12);
  EXPECT_TRUE(all.read.follow());
  EXPECT_TRUE(all.json);
  EXPECT_EQ(all.color, ColorMode::kNever);
  EXPECT_EQ(MustParse({"read", "c", "--color=always"}).color, ColorMode::kAlways);
}

TEST(ParseCommand, ReadTurnsImpliesFollow) {
  Command c = MustParse({"read", "c", "--turns", "2"});
  EXPECT_EQ(c.turns, 2);
  EXPECT_TRUE(c.read.follow());
}

TEST(ParseCommand, ReadRejectsBadNumbersAndColours) {
  ExpectUsage({"read", "c", "--after", "-1"},
              R"(--after takes a seq (a whole number, 0 or more), got "-1")");
  ExpectUsage({"read", "c", "--after", "3x"}, "--after takes a seq");
  ExpectUsage({"read", "c", "--turns", "0"}, R"(--turns takes a count of 1 or more, got "0")");
  ExpectUsage({"read", "c", "--color", "yes"}, "--color: yes not in {auto,always,never}");
}

TEST(ParseCommand, GetRunsCancelClose) {
  Command get = MustParse({"get", "c-1", "--json"});
  EXPECT_EQ(get.verb, Verb::kGet);
  EXPECT_EQ(get.get.chat_id(), "c-1");
  EXPECT_TRUE(get.json);

  Command every = MustParse({"runs"});
  EXPECT_EQ(every.verb, Verb::kRuns);
  EXPECT_EQ(every.runs.chat_id(), "");
  EXPECT_EQ(MustParse({"runs", "c-1"}).runs.chat_id(), "c-1");

  Command cancel = MustParse({"cancel", "c-1"});
  EXPECT_EQ(cancel.verb, Verb::kCancel);
  EXPECT_EQ(cancel.cancel.chat_id(), "c-1");
  EXPECT_EQ(cancel.cancel.run_id(), "");
  EXPECT_EQ(MustParse({"cancel", "c-1", "--run", "r-2"}).cancel.run_id(), "r-2");

  Command close = MustParse({"close", "c-1", "--reason", "done"});
  EXPECT_EQ(close.verb, Verb::kClose);
  EXPECT_EQ(close.close.chat_id(), "c-1");
  EXPECT_EQ(close.close.reason(), "done");
}

TEST(ParseCommand, HelpInEveryForm) {
  EXPECT_EQ(MustParse({"help"}).verb, Verb::kHelp);
  EXPECT_EQ(MustParse({"--help"}).verb, Verb::kHelp);
  EXPECT_EQ(MustParse({"-h"}).verb, Verb::kHelp);
  EXPECT_EQ(MustParse({"append", "c", "--help"}).verb, Verb::kHelp);
  EXPECT_THAT(std::string(UsageText()), HasSubstr("exit codes:"));
  EXPECT_THAT(std::string(UsageText()), HasSubstr("6  orchestrator unreachable"));
  // The whole text lists the commands and the global options; a command's, its own options.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"help"}, {"--help"}, {"-h"}, {"--addr", "h:1", "--help"}}) {
    std::string help = MustParse(args).help;
    EXPECT_EQ(help, UsageText());
    EXPECT_THAT(help, HasSubstr("--timeout SECONDS"));
    EXPECT_THAT(help, HasSubstr("head-start"));
  }
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"append", "c", "--help"}, {"append", "-h"}, {"help", "append"}}) {
    std::string help = MustParse(args).help;
    EXPECT_THAT(help, HasSubstr("batonctl append [OPTIONS] CHAT"));
    EXPECT_THAT(help, HasSubstr("--handover FILE"));
    EXPECT_THAT(help, Not(HasSubstr("--after")));
  }
  EXPECT_THAT(MustParse({"read", "--help"}).help, HasSubstr("--color WHEN"));
}

TEST(ParseCommand, HeadStartNeedsAnExampleAgentAndText) {
  Command c = MustParse({"head-start", "c-1", "--agent", "weather", "--text", "Oslo?", "--provider",
                         "openai", "--model", "m", "--color", "never"});
  EXPECT_EQ(c.verb, Verb::kHeadStart);
  EXPECT_EQ(c.head_start.chat_id, "c-1");
  EXPECT_EQ(c.head_start.agent, "weather");
  EXPECT_EQ(c.head_start.text, "Oslo?");
  EXPECT_EQ(c.head_start.provider, "openai");
  EXPECT_EQ(c.head_start.model, "m");
  EXPECT_EQ(c.color, ColorMode::kNever);
  EXPECT_EQ(MustParse({"head-start", "c", "--agent", "chat", "--text", "x"}).head_start.provider,
            "anthropic");
  ExpectUsage({"head-start", "c", "--text", "x"}, "--agent is required");
  ExpectUsage({"head-start", "c", "--agent", "chat"}, "--text is required");
  ExpectUsage({"head-start", "c", "--agent", "support", "--text", "x"},
              R"(knows the tool schemas of the agents chat, weather and files, not "support")");
  ExpectUsage({"head-start", "c", "--agent", "chat", "--text", "x", "--provider", "gemini"},
              "--provider: gemini not in {anthropic,openai}");
}

TEST(ParseCommand, AnEmptyValueAfterEqualsIsAValue) {
  Command c = MustParse({"append", "c", "--record-id=", "--text", "hi"});
  EXPECT_EQ(c.append.client_record_id(), "");
  EXPECT_THAT(c.append.body_json(), HasSubstr(R"("text":"hi")"));
  ExpectUsage({"--addr=", "get", "c"}, "--addr must not be empty");
}

TEST(ParseCommand, ReportsMalformedCommandLines) {
  ExpectUsage({}, "no command given");
  ExpectUsage({"show", "c"}, R"(unknown command "show")");
  ExpectUsage({"--verbose", "get", "c"}, "unknown option --verbose");
  ExpectUsage({"get", "c", "--follow"}, "unknown option --follow for get (it takes --json)");
  ExpectUsage({"append", "c", "--text"}, "--text: 1 required TEXT missing");
  ExpectUsage({"append", "c", "--text", "a", "--text", "b"},
              "--text: At Most 1 required but received 2");
  ExpectUsage({"get", "c", "--json", "--json"}, "--json: At Most 1 required but received 2");
  ExpectUsage({"get", "c", "d"}, "get takes CHAT, got 2 arguments: c d");
  ExpectUsage({"get"}, "CHAT is required");
  ExpectUsage({"get", ""}, "get: CHAT is empty");
  ExpectUsage({"read", "c", "--follow=yes"}, "--follow: takes no value");
  ExpectUsage({"runs", "a", "b"}, "runs takes [CHAT], got 2 arguments: a b");
  ExpectUsage({"help", "show"}, R"(unknown command "show")");
}

TEST(ParseCommand, DoubleDashEndsOptions) {
  EXPECT_EQ(MustParse({"get", "--", "-odd-chat"}).get.chat_id(), "-odd-chat");
  // An option's value may look like an option.
  EXPECT_THAT(MustParse({"append", "c", "--text", "--json"}).append.body_json(),
              HasSubstr(R"("text":"--json")"));
}

TEST(SystemEnvironment, ReadsFilesAndNamesTheOnesItCannot) {
  std::string path = ::testing::TempDir() + "batonctl_payload.json";
  {
    std::ofstream out(path);
    out << R"({"metadata":{"plan":"pro"}})";
  }
  absl::StatusOr<Command> c =
      ParseCommand({"create", "c", "--agent", "a", "--payload", "@" + path}, SystemEnvironment());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->create.payload_json(), R"({"metadata":{"plan":"pro"}})");
  std::remove(path.c_str());

  absl::StatusOr<Command> missing =
      ParseCommand({"create", "c", "--agent", "a", "--payload", "@" + path}, SystemEnvironment());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("cannot read " + path + ": No such file or directory"));

  absl::StatusOr<Command> text = ParseCommand({"append", "c", "--text", "hi"}, SystemEnvironment());
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(text->append.body_json(), testing::MatchesRegex(R"(.*"id":"u-[0-9a-f]{16}".*)"));
}

TEST(ExitCodeFor, MapsStatusCodesToTheDocumentedExits) {
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::OK), 0);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::NOT_FOUND), 3);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::FAILED_PRECONDITION), 4);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::ALREADY_EXISTS), 4);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INVALID_ARGUMENT), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::RESOURCE_EXHAUSTED), 5);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAVAILABLE), 6);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::DEADLINE_EXCEEDED), 6);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNAUTHENTICATED), 7);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::PERMISSION_DENIED), 7);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::INTERNAL), 1);
  EXPECT_EQ(ExitCodeFor(grpc::StatusCode::UNIMPLEMENTED), 1);
  EXPECT_EQ(kExitUsage, 2);
}

TEST(ResolveColor, OnlyOnATerminalWithoutNoColorUnlessForced) {
  EXPECT_TRUE(ResolveColor(ColorMode::kAuto, true, nullptr));
  EXPECT_TRUE(ResolveColor(ColorMode::kAuto, true, ""));
  EXPECT_FALSE(ResolveColor(ColorMode::kAuto, false, nullptr));
  EXPECT_FALSE(ResolveColor(ColorMode::kAuto, true, "1"));
  EXPECT_TRUE(ResolveColor(ColorMode::kAlways, false, "1"));
  EXPECT_FALSE(ResolveColor(ColorMode::kNever, true, nullptr));
}

// ---- rendering of read ----------------------------------------------------------------------

v1::OutRecord Chunk(int64_t seq, std::string json) {
  v1::OutRecord r;
  r.set_seq(seq);
  r.set_chunk_json(std::move(json));
  return r;
}

v1::OutRecord Control(int64_t seq, std::string subtype,
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
  v1::OutRecord r;
  r.set_seq(seq);
  r.mutable_control()->set_subtype(std::move(subtype));
  for (auto& [name, value] : headers) {
    v1::Header* h = r.mutable_control()->add_headers();
    h->set_name(name);
    h->set_value(value);
  }
  return r;
}

// One turn with a tool call: the shape the step loop streams.
std::vector<v1::OutRecord> ToolTurn() {
  return {
      Chunk(1, R"({"type":"start","messageId":"a-1"})"),
      Chunk(2, R"({"type":"start-step"})"),
      Chunk(3, R"({"type":"text-start","id":"t0"})"),
      Chunk(4, R"({"type":"text-delta","id":"t0","delta":"Let me "})"),
      Chunk(5, R"({"type":"text-delta","id":"t0","delta":"check."})"),
      Chunk(6, R"({"type":"text-end","id":"t0"})"),
      Chunk(7, R"({"type":"tool-input-start","toolCallId":"c1","toolName":"get_weather"})"),
      Chunk(8, R"({"type":"tool-input-delta","toolCallId":"c1","inputTextDelta":"{\"city\""})"),
      Chunk(9, R"({"type":"tool-input-available","toolCallId":"c1","toolName":"get_weather",)"
               R"("input":{"city":"Oslo"}})"),
      Chunk(10, R"({"type":"tool-output-available","toolCallId":"c1","output":{"temp":3}})"),
      Chunk(11, R"({"type":"finish-step"})"),
      Chunk(12, R"({"type":"start-step"})"),
      Chunk(13, R"({"type":"text-start","id":"t1"})"),
      Chunk(14, R"({"type":"text-delta","id":"t1","delta":"It is 3°C"})"),
      Chunk(15, R"({"type":"text-delta","id":"t1","delta":" in Oslo."})"),
      Chunk(16, R"({"type":"text-end","id":"t1"})"),
      Chunk(17, R"({"type":"finish-step"})"),
      Chunk(18, R"({"type":"finish","finishReason":"stop"})"),
      Control(19, "turn-complete", {{"session-in-event-id", "1"}, {"session-in-consumed-id", "1"}}),
  };
}

std::string RenderAll(Renderer& renderer, const std::vector<v1::OutRecord>& records) {
  std::string out;
  for (const v1::OutRecord& r : records) out += renderer.Render(r);
  return out + renderer.Finish();
}

TEST(Renderer, PrintsATurnReadably) {
  Renderer renderer({});
  EXPECT_EQ(RenderAll(renderer, ToolTurn()),
            "▶ message a-1\n"
            "· step 1\n"
            "Let me check.\n"
            "⚙ get_weather {\"city\":\"Oslo\"}\n"
            "← {\"temp\":3}\n"
            "· step 1 done\n"
            "· step 2\n"
            "It is 3°C in Oslo.\n"
            "· step 2 done\n"
            "■ finish (stop)\n"
            "── turn complete (seq 19) ──\n");
  EXPECT_EQ(renderer.turns(), 1);
}

TEST(Renderer, StreamsTextDeltasInlineAndClosesTheLineBeforeAMarker) {
  Renderer renderer({});
  EXPECT_EQ(renderer.Render(Chunk(1, R"({"type":"text-delta","id":"t0","delta":"Hel"})")), "Hel");
  EXPECT_EQ(renderer.Render(Chunk(2, R"({"type":"text-delta","id":"t0","delta":"lo"})")), "lo");
  // No text-end (a stream cut off): the marker starts on a line of its own.
  EXPECT_EQ(renderer.Render(Chunk(3, R"({"type":"error","errorText":"boom"})")),
            "\n✗ error: boom\n");
  EXPECT_EQ(renderer.Render(Chunk(4, R"({"type":"text-delta","id":"t1","delta":"more"})")), "more");
  EXPECT_EQ(renderer.Finish(), "\n");
  EXPECT_EQ(renderer.Finish(), "");
  // A delta that ends its own line leaves nothing to close.
  Renderer ended({});
  EXPECT_EQ(ended.Render(Chunk(1, R"({"type":"text-delta","id":"t0","delta":"a\n"})")), "a\n");
  EXPECT_EQ(ended.Render(Control(2, "turn-complete")), "── turn complete (seq 2) ──\n");
}

TEST(Renderer, StepsAreUnnumberedWhenTheReadBeganMidMessage) {
  Renderer renderer({});
  EXPECT_EQ(RenderAll(renderer, {Chunk(11, R"({"type":"start-step"})"),
                                 Chunk(12, R"({"type":"finish-step"})"),
                                 Chunk(13, R"({"type":"start","messageId":"a-2"})"),
                                 Chunk(14, R"({"type":"start-step"})")}),
            "· step\n· step done\n▶ message a-2\n· step 1\n");
}

TEST(Renderer, ReasoningIsPrefixedAndSeparatedFromText) {
  Renderer renderer({});
  std::string out = RenderAll(
      renderer, {Chunk(1, R"({"type":"reasoning-start","id":"r0"})"),
                 Chunk(2, R"({"type":"reasoning-delta","id":"r0","delta":"User wants "})"),
                 Chunk(3, R"({"type":"reasoning-delta","id":"r0","delta":"weather."})"),
                 Chunk(4, R"({"type":"text-delta","id":"t0","delta":"Sure."})")});
  EXPECT_EQ(out, "thinking: User wants weather.\nSure.\n");
}

TEST(Renderer, ColoursOnlyWhenAskedTo) {
  std::vector<v1::OutRecord> records = ToolTurn();
  records.push_back(Chunk(20, R"({"type":"reasoning-delta","id":"r","delta":"hmm"})"));
  records.push_back(Chunk(21, R"({"type":"tool-output-error","toolCallId":"c2","errorText":"x"})"));
  records.push_back(
      Chunk(22, R"({"type":"tool-approval-request","approvalId":"ap","toolCallId":"c1"})"));

  Renderer plain({.color = false});
  EXPECT_THAT(RenderAll(plain, records), Not(HasSubstr("\x1b")));

  Renderer colour({.color = true});
  std::string out = RenderAll(colour, records);
  EXPECT_THAT(out, HasSubstr("\x1b[2m▶ message a-1\x1b[0m\n"));
  EXPECT_THAT(out, HasSubstr("\x1b[2m── turn complete (seq 19) ──\x1b[0m\n"));
  EXPECT_THAT(out, HasSubstr("\x1b[2mthinking: \x1b[0m\x1b[2mhmm\x1b[0m"));
  EXPECT_THAT(out, HasSubstr("\x1b[31m← error: x\x1b[0m\n"));
  EXPECT_THAT(out, HasSubstr("\x1b[33m⚠ approval requested: get_weather (approval ap)\x1b[0m\n"));
  // Answer text and tool lines stay plain.
  EXPECT_THAT(out, HasSubstr("\nLet me check.\n"));
  EXPECT_THAT(out, HasSubstr("\n⚙ get_weather {\"city\":\"Oslo\"}\n"));
}

TEST(Renderer, PrintsEveryOtherChunkKind) {
  Renderer renderer({});
  std::string out = RenderAll(
      renderer,
      {Chunk(1, R"({"type":"start"})"),
       Chunk(2, R"({"type":"tool-input-error","toolCallId":"c","toolName":"calc",)"
                R"("input":{"x":"y"},"errorText":"bad input"})"),
       Chunk(3, R"({"type":"tool-output-available","toolCallId":"c","output":[1],)"
                R"("preliminary":true})"),
       Chunk(4, R"({"type":"tool-output-denied","toolCallId":"c"})"),
       Chunk(5, R"({"type":"tool-approval-request","approvalId":"ap","toolCallId":"zz"})"),
       Chunk(6, R"({"type":"data-weather","data":{"t":1}})"),
       Chunk(7, R"({"type":"source-url","sourceId":"s","url":"https://x.test","title":"X"})"),
       Chunk(8, R"({"type":"message-metadata","messageMetadata":{"k":1}})"),
       Chunk(9, R"({"type":"abort","reason":"user stop"})"),
       Chunk(10, R"({"type":"custom-thing","v":1})"), Chunk(11, R"(not json)"),
       Control(12, "turn-complete", {{"session-closed", "true"}, {"session-closed-reason", "bye"}}),
       Control(13, "trim", {{"through", "11"}}), Control(14, "upgrade-required"),
       Control(15, "session-closed"),
       Control(16, "retract", {{"message-id", "m1"}, {"from-seq", "1"}, {"reason", "run-lost"}})});
  EXPECT_EQ(out,
            "▶ message\n"
            "✗ calc {\"x\":\"y\"}: bad input\n"
            "← (preliminary) [1]\n"
            "← denied\n"
            "⚠ approval requested: call zz (approval ap)\n"
            "· data-weather {\"t\":1}\n"
            "· source https://x.test (X)\n"
            "· metadata {\"k\":1}\n"
            "■ aborted: user stop\n"
            "· custom-thing {\"type\":\"custom-thing\",\"v\":1}\n"
            "✗ seq 11: unreadable chunk: not json\n"
            "── turn complete, chat closed: bye (seq 12) ──\n"
            "── trim through 11 (seq 13) ──\n"
            "── upgrade required (seq 14) ──\n"
            "── chat closed (seq 15) ──\n"
            "── retracted m1 from seq 1: run-lost (seq 16) ──\n");
}

TEST(Renderer, ReplacesTerminalControlsInRecordText) {
  Renderer renderer({});
  std::string out =
      renderer.Render(Chunk(1, R"({"type":"text-delta","id":"t","delta":"a\u001b[2Jb\tc\n"})"));
  EXPECT_EQ(out, "a\xEF\xBF\xBD[2Jb\tc\n");
  EXPECT_EQ(SanitizeForTerminal("x\xC2\x9B"
                                "1m\r"),
            "x\xEF\xBF\xBD"
            "1m\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeForTerminal("°C ü"), "°C ü");  // other two-byte characters stay
}

TEST(Renderer, JsonLinesCarryTheChunkExactlyAsStored) {
  Renderer renderer({.json = true});
  EXPECT_EQ(renderer.Render(Chunk(4, R"({"type":"text-delta","id":"t0","delta":"Hi"})")),
            R"({"seq":4,"chunk":{"type":"text-delta","id":"t0","delta":"Hi"}})"
            "\n");
  // Number formatting and spacing survive.
  EXPECT_EQ(renderer.Render(Chunk(5, R"({"type":"data-x", "data": {"p": 1.50}})")),
            R"({"seq":5,"chunk":{"type":"data-x", "data": {"p": 1.50}}})"
            "\n");
  EXPECT_EQ(
      renderer.Render(Control(6, "turn-complete",
                              {{"session-in-event-id", "3"}, {"session-in-consumed-id", "2"}})),
      R"({"seq":6,"control":"turn-complete","headers":{"session-in-event-id":"3",)"
      R"("session-in-consumed-id":"2"}})"
      "\n");
  EXPECT_EQ(renderer.Render(Control(7, "session-closed")),
            R"({"seq":7,"control":"session-closed","headers":{}})"
            "\n");
  // A chunk stored across lines is compacted so the record stays on one line.
  EXPECT_EQ(renderer.Render(Chunk(8, "{\"type\":\n\"finish\"}")),
            R"({"seq":8,"chunk":{"type":"finish"}})"
            "\n");
  EXPECT_EQ(renderer.Render(Chunk(9, "{broken")), R"({"seq":9,"invalid_chunk":"{broken"})"
                                                  "\n");
  EXPECT_EQ(renderer.Finish(), "");
}

TEST(Renderer, JsonLinesOfARealTurnAreEachValidJson) {
  Renderer renderer({.json = true});
  for (const v1::OutRecord& r : ToolTurn()) {
    std::string line = renderer.Render(r);
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1);
    absl::StatusOr<Json> parsed = ParseJson(line);
    ASSERT_TRUE(parsed.ok()) << line;
    EXPECT_EQ((*parsed)["seq"], r.seq());
  }
}

TEST(Renderer, TurnsCountsTurnCompleteRecordsOnly) {
  Renderer renderer({.turns = 2});
  std::vector<v1::OutRecord> turn = ToolTurn();
  for (size_t i = 0; i + 1 < turn.size(); ++i) {
    renderer.Render(turn[i]);
    EXPECT_FALSE(renderer.done());
  }
  renderer.Render(Control(19, "trim", {{"through", "18"}}));
  renderer.Render(Control(20, "session-closed"));
  EXPECT_EQ(renderer.turns(), 0);
  renderer.Render(Control(21, "turn-complete"));
  EXPECT_EQ(renderer.turns(), 1);
  EXPECT_FALSE(renderer.done());
  renderer.Render(Chunk(22, R"({"type":"start"})"));
  EXPECT_FALSE(renderer.done());
  EXPECT_EQ(renderer.Render(Control(23, "turn-complete")), "── turn complete (seq 23) ──\n");
  EXPECT_TRUE(renderer.done());

  Renderer json({.json = true, .turns = 1});
  json.Render(Control(1, "turn-complete"));
  EXPECT_TRUE(json.done());

  Renderer unlimited({});
  for (int i = 1; i <= 5; ++i) unlimited.Render(Control(i, "turn-complete"));
  EXPECT_EQ(unlimited.turns(), 5);
  EXPECT_FALSE(unlimited.done());
}

// ---- the other commands' output -------------------------------------------------------------

v1::Session MakeSession() {
  v1::Session s;
  s.set_chat_id("c-1");
  s.set_agent("support");
  s.set_state(v1::SESSION_STATE_LIVE);
  s.set_run_id("r-7");
  s.set_in_seq(3);
  s.set_out_seq(12);
  s.set_created_at_unix_ms(1735787045123);  // 2025-01-02T03:04:05.123Z
  s.set_runs(2);
  return s;
}

v1::Run MakeRun(std::string id, v1::RunState state) {
  v1::Run r;
  r.set_run_id(std::move(id));
  r.set_chat_id("c-1");
  r.set_agent("support");
  r.set_attempt(1);
  r.set_state(state);
  r.set_worker_id("w-1");
  r.set_trigger("submit-message");
  return r;
}

TEST(Format, SessionReadableAndJson) {
  EXPECT_EQ(FormatSession(MakeSession(), false),
            "chat=c-1 agent=support state=live run=r-7 runs=2 in_seq=3 out_seq=12 "
            "created=2025-01-02T03:04:05.123Z\n");
  EXPECT_EQ(FormatSession(MakeSession(), true),
            R"({"chat_id":"c-1","agent":"support","state":"live","run_id":"r-7","in_seq":3,)"
            R"("out_seq":12,"created_at_unix_ms":1735787045123,"runs":2,"run_state":"",)"
            R"("queued_reason":"","queued_error":""})"
            "\n");
  // A live run, and one that waits with a reason.
  v1::Session queued = MakeSession();
  queued.set_run_state(v1::RUN_STATE_QUEUED);
  queued.set_queued_reason("no-capacity");
  queued.set_queued_error("every connected worker hosting agent \"support\" is full");
  EXPECT_EQ(FormatSession(queued, false),
            "chat=c-1 agent=support state=live run=r-7 runs=2 in_seq=3 out_seq=12 "
            "created=2025-01-02T03:04:05.123Z run_state=queued queued=no-capacity: every "
            "connected worker hosting agent \"support\" is full\n");
  EXPECT_THAT(FormatSession(queued, true),
              testing::HasSubstr(R"("run_state":"queued","queued_reason":"no-capacity",)"));
  v1::CreateSessionResponse created;
  *created.mutable_session() = MakeSession();
  created.set_created(true);
  EXPECT_THAT(FormatCreated(created, false), testing::StartsWith("created chat=c-1 agent="));
  EXPECT_THAT(FormatCreated(created, true), testing::StartsWith(R"({"created":true,"session":{)"));
  created.set_created(false);
  EXPECT_THAT(FormatCreated(created, false), testing::StartsWith("exists chat=c-1"));
}

TEST(Format, AppendResult) {
  v1::AppendResponse r;
  r.set_seq(4);
  r.set_run_id("r-7");
  EXPECT_EQ(FormatAppended(r, false), "seq=4 run=r-7\n");
  r.set_duplicate(true);
  r.set_run_id("");
  EXPECT_EQ(FormatAppended(r, false), "seq=4 duplicate run=-\n");
  EXPECT_EQ(FormatAppended(r, true), R"({"seq":4,"duplicate":true,"run_id":""})"
                                     "\n");
}

TEST(Format, RunsTableAlignsColumns) {
  v1::ListRunsResponse response;
  *response.add_runs() = MakeRun("r-1", v1::RUN_STATE_EXITED);
  response.mutable_runs(0)->set_reason("idle");
  v1::Run failed = MakeRun("r-22", v1::RUN_STATE_FAILED);
  failed.set_attempt(2);
  failed.set_worker_id("");
  failed.set_error("model said\nno");
  *response.add_runs() = failed;
  EXPECT_EQ(FormatRuns(response, false),
            "RUN   CHAT  AGENT    ATTEMPT  STATE   TRIGGER         WORKER  REASON/ERROR\n"
            "r-1   c-1   support  1        exited  submit-message  w-1     idle\n"
            "r-22  c-1   support  2        failed  submit-message  -       model said no\n");
  std::string json = FormatRuns(response, true);
  EXPECT_EQ(std::count(json.begin(), json.end(), '\n'), 2);
  EXPECT_THAT(json, HasSubstr(R"({"run_id":"r-1","chat_id":"c-1","agent":"support","attempt":1,)"
                              R"("state":"exited","worker_id":"w-1","trigger":"submit-message",)"
                              R"("reason":"idle","error":"")"));
}

TEST(Format, SingleRunAndErrors) {
  EXPECT_EQ(FormatRun(MakeRun("r-1", v1::RUN_STATE_CANCELLED), false),
            "run=r-1 chat=c-1 agent=support attempt=1 state=cancelled trigger=submit-message "
            "worker=w-1\n");
  EXPECT_EQ(FormatError("append c-1", grpc::StatusCode::FAILED_PRECONDITION, "chat is closed"),
            "batonctl: append c-1: chat is closed (FAILED_PRECONDITION)\n");
  EXPECT_EQ(FormatError("get c", grpc::StatusCode::UNAVAILABLE, "line one\nline two"),
            "batonctl: get c: line one line two (UNAVAILABLE)\n");
  EXPECT_EQ(FormatError("get c", grpc::StatusCode::NOT_FOUND, ""), "batonctl: get c: NOT_FOUND\n");
}

}  // namespace
}  // namespace baton::ctl
