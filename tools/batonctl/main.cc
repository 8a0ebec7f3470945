// File: tools/batonctl/main.cc
//
// batonctl: the command line client of the orchestrator's Sessions API (docs/batonctl.md).
// Parsing and printing live in the baton_ctl library (args.h, render.h); this file makes the
// gRPC calls and maps their status to the exit code.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/clock.h"
#include "asio/co_spawn.hpp"
#include "asio/io_context.hpp"
#include "baton/v1/sessions.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "hooks/messages.h"
#include "runtime/client/head_start.h"
#include "runtime/model/http_client.h"
#include "runtime/model/providers.h"
#include "tasks/agents.h"
#include "tools/batonctl/args.h"
#include "tools/batonctl/render.h"

namespace baton::ctl {
namespace {

// Largest response accepted: a .out record can carry a big tool output.
constexpr int kMaxReceiveBytes = 64 << 20;

void Print(std::string_view text) {
  if (text.empty()) return;
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int Fail(std::string_view what, const grpc::Status& status) {
  std::fputs(FormatError(what, status.error_code(), status.error_message()).c_str(), stderr);
  return ExitCodeFor(status.error_code());
}

class Client {
 public:
  explicit Client(const Command& command) : command_(command) {}

  int Run() {
    absl::StatusOr<ClientSecurity> security = LoadClientSecurity(command_.security);
    if (!security.ok()) {
      std::fprintf(stderr, "batonctl: %s\n", std::string(security.status().message()).c_str());
      return kExitUsage;
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
    stub_ = v1::Sessions::NewStub(OpenChannel(command_.addr, *security, args));
    switch (command_.verb) {
      case Verb::kCreate:
        return Create();
      case Verb::kAppend:
        return Append();
      case Verb::kRead:
        return Read();
      case Verb::kGet:
        return Get();
      case Verb::kRuns:
        return Runs();
      case Verb::kCancel:
        return Cancel();
      case Verb::kClose:
        return Close();
      case Verb::kHeadStart:
        return HeadStart();
      case Verb::kHelp:
        break;
    }
    Print(command_.help);
    return kExitOk;
  }

 private:
  // A context for one unary call, with the --timeout deadline.
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(absl::ToChronoTime(absl::Now() + command_.timeout));
    return context;
  }

  int Create() {
    v1::CreateSessionResponse response;
    grpc::Status status = stub_->CreateSession(Context().get(), command_.create, &response);
    if (!status.ok()) return Fail("create " + command_.create.chat_id(), status);
    Print(FormatCreated(response, command_.json));
    return kExitOk;
  }

  int Append() {
    v1::AppendResponse response;
    grpc::Status status = stub_->Append(Context().get(), command_.append, &response);
    if (!status.ok()) return Fail("append " + command_.append.chat_id(), status);
    Print(FormatAppended(response, command_.json));
    return kExitOk;
  }

  // A stream with no deadline: with --follow it lasts as long as the chat. Without a server
  // the call still fails at once (UNAVAILABLE), since it does not wait for the channel.
  Renderer MakeRenderer(int turns) const {
    bool tty = ::isatty(STDOUT_FILENO) == 1;
    return Renderer({.json = command_.json,
                     .color = ResolveColor(command_.color, tty, std::getenv("NO_COLOR")),
                     .turns = turns});
  }

  int Read() { return Follow(command_.read, command_.turns); }

  int Follow(v1::ReadRequest request, int turns) {
    Renderer renderer = MakeRenderer(turns);
    grpc::ClientContext context;
    request.set_batch(true);
    std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader = stub_->Read(&context, request);
    v1::ReadResponse response;
    while (!renderer.done() && reader->Read(&response)) {
      // An orchestrator from before `batch` answers with `record`.
      if (response.has_record()) *response.add_records() = std::move(*response.mutable_record());
      for (const v1::OutRecord& record : response.records()) {
        if (!renderer.done()) Print(renderer.Render(record));
      }
    }
    bool reached = renderer.done();
    if (reached) context.TryCancel();
    grpc::Status status = reader->Finish();
    Print(renderer.Finish());
    std::string what = "read " + request.chat_id();
    if (reached) return kExitOk;
    if (!status.ok()) return Fail(what, status);
    if (turns > 0) {
      std::fprintf(stderr, "batonctl: %s: the stream ended after %d of %d turns\n", what.c_str(),
                   renderer.turns(), turns);
      return kExitFailure;
    }
    return kExitOk;
  }

  // The warm side of a head start (runtime/client/head_start.h): step 1 streams here from the
  // provider, then the worker's part from `.out` until the turn completes.
  int HeadStart() {
    const Command::HeadStart& h = command_.head_start;
    asio::io_context io;
    RealClock clock;
    HookPool pool(1);
    HttpClient http(io.get_executor());
    std::shared_ptr<LanguageModel> model =
        MakeModel(http, {h.provider, h.base_url, h.model, h.api_key_env});
    Agent agent = h.agent == "weather" ? tasks::WeatherAgent(model)
                  : h.agent == "files" ? tasks::FilesAgent(model)
                                       : tasks::ChatAgent(model);
    Renderer warm = MakeRenderer(0);
    HeadStartEnv env{
        io.get_executor(), &clock, &pool, stub_.get(), &agent, [&warm](const Json& chunk) {
          v1::OutRecord record;
          record.set_chunk_json(DumpJson(chunk));
          Print(warm.Render(record));
        }};
    HeadStartRequest request;
    request.chat_id = h.chat_id;
    request.agent = h.agent;
    request.message_id = h.message_id;
    request.messages = Json::array({UserMessage(SystemEnvironment().new_message_id(), h.text)});
    absl::StatusOr<HeadStartResult> result = absl::UnknownError("head start did not finish");
    asio::co_spawn(io, RunHeadStart(env, request),
                   [&result](std::exception_ptr e, absl::StatusOr<HeadStartResult> r) {
                     if (!e) result = std::move(r);
                   });
    io.run();
    Print(warm.Finish());
    if (!result.ok()) {
      grpc::Status status(static_cast<grpc::StatusCode>(result.status().code()),
                          std::string(result.status().message()));
      return Fail("head-start " + h.chat_id, status);
    }
    if (result->signal == HeadStartResult::Signal::kSkip) {
      std::fprintf(stderr, "batonctl: head-start %s: step 1 failed; handover-skip appended\n",
                   h.chat_id.c_str());
      return kExitFailure;
    }
    v1::ReadRequest read;
    read.set_chat_id(h.chat_id);
    read.set_follow(true);
    return Follow(read, 1);
  }

  int Get() {
    v1::Session response;
    grpc::Status status = stub_->Get(Context().get(), command_.get, &response);
    if (!status.ok()) return Fail("get " + command_.get.chat_id(), status);
    Print(FormatSession(response, command_.json));
    return kExitOk;
  }

  int Runs() {
    v1::ListRunsResponse response;
    grpc::Status status = stub_->ListRuns(Context().get(), command_.runs, &response);
    if (!status.ok()) {
      const std::string& chat = command_.runs.chat_id();
      return Fail(chat.empty() ? "runs" : "runs " + chat, status);
    }
    Print(FormatRuns(response, command_.json));
    return kExitOk;
  }

  int Cancel() {
    v1::Run response;
    grpc::Status status = stub_->CancelRun(Context().get(), command_.cancel, &response);
    if (!status.ok()) return Fail("cancel " + command_.cancel.chat_id(), status);
    Print(FormatRun(response, command_.json));
    return kExitOk;
  }

  int Close() {
    v1::Session response;
    grpc::Status status = stub_->Close(Context().get(), command_.close, &response);
    if (!status.ok()) return Fail("close " + command_.close.chat_id(), status);
    Print(FormatSession(response, command_.json));
    return kExitOk;
  }

  const Command& command_;
  std::unique_ptr<v1::Sessions::Stub> stub_;
};

}  // namespace
}  // namespace baton::ctl

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<baton::ctl::Command> command =
      baton::ctl::ParseCommand(args, baton::ctl::SystemEnvironment());
  if (!command.ok()) {
    std::fprintf(stderr, "batonctl: %s (see batonctl help)\n",
                 std::string(command.status().message()).c_str());
    return baton::ctl::kExitUsage;
  }
  return baton::ctl::Client(*command).Run();
}
