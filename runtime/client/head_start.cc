#include "runtime/client/head_start.h"

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/client_context.h"
#include "hooks/messages.h"
#include "runtime/protocol/wire.h"
#include "runtime/step/step_loop.h"
#include "runtime/transcript/convert.h"

namespace baton {

namespace v1 = ::baton::v1;

namespace {

absl::Status FromGrpc(const grpc::Status& status, const char* call) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(call, ": ", status.error_message()));
}

// Step 1's agent: the same model, system prompt and tool schemas, no executes and one step, so
// the loop stops at the first tool call and leaves it for the worker.
Agent StepOneAgent(const Agent& agent) {
  Agent one;
  one.id = agent.id;
  one.model = agent.model;
  one.system = agent.system;
  one.options = agent.options;
  one.options.max_steps = 1;
  // A tool that needs approval asks for it here too (tool-approval-request), as on the worker.
  for (const Tool& tool : agent.tools) {
    one.tools.push_back(
        Tool{tool.name, tool.description, tool.input_schema, nullptr, tool.needs_approval});
  }
  return one;
}

absl::StatusOr<int64_t> Append(v1::Sessions::Stub& sessions, const std::string& chat_id,
                               const Json& body, const std::string& record_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::AppendRequest request;
  request.set_chat_id(chat_id);
  request.set_body_json(DumpJson(body));
  request.set_client_record_id(record_id);  // a retried signal is not appended twice
  v1::AppendResponse response;
  absl::Status status = FromGrpc(sessions.Append(&context, request, &response), "Append");
  if (!status.ok()) return status;
  return response.seq();
}

}  // namespace

Json HandoverPartial(Json response, bool approve) {
  int n = 0;
  if (Json* parts = approve && response.contains("parts") ? &response["parts"] : nullptr) {
    for (Json& part : *parts) {
      std::string type = StringField(part, "type");
      bool tool = type.rfind("tool-", 0) == 0 || type == "dynamic-tool";
      if (!tool || StringField(part, "state") != "input-available") continue;
      part["state"] = "approval-responded";
      part["approval"] = {{"id", absl::StrCat("handover-approval-", ++n)}, {"approved", true}};
    }
  }
  return UiToModelMessages(response);
}

absl::StatusOr<Agent> AgentFromInfo(const v1::AgentInfo& info,
                                    std::shared_ptr<LanguageModel> model) {
  if (absl::Status s = CheckAgentInfo(info); !s.ok()) return s;
  Agent agent;
  agent.id = info.name();
  agent.version = info.version();
  agent.model = std::move(model);
  agent.system = info.system();
  if (info.handover_timeout_ms() > 0) {
    agent.options.handover_timeout = absl::Milliseconds(info.handover_timeout_ms());
  }
  agent.options.allow_head_start = !info.head_start_disabled();
  if (info.tools_json().empty()) return agent;
  absl::StatusOr<Json> tools = ParseJson(info.tools_json());
  if (!tools.ok()) return tools.status();
  for (const Json& t : *tools) {
    Tool tool;
    tool.name = StringField(t, "name");
    tool.description = StringField(t, "description");
    if (const Json* schema = FindField(t, "inputSchema");
        schema != nullptr && schema->is_object()) {
      tool.input_schema = *schema;
    }
    tool.needs_approval = BoolField(t, "needsApproval");
    if (!BoolField(t, "clientSide")) {
      // The run executes it (the warm side never does): what tells it from a client-side tool.
      tool.execute = [](const Json&, const ToolContext&) -> absl::StatusOr<Json> {
        return absl::FailedPreconditionError("the run executes this tool, not the warm side");
      };
    }
    agent.tools.push_back(std::move(tool));
  }
  return agent;
}

asio::awaitable<StepOneResult> RunStepOne(asio::any_io_executor executor, Clock& clock,
                                          HookPool& pool, const Agent& agent, std::string chat_id,
                                          Json messages, std::string message_id,
                                          std::string traceparent,
                                          std::function<void(const Json& chunk)> on_chunk,
                                          std::stop_token stop) {
  Agent one = StepOneAgent(agent);
  StepLoop::Env loop_env;
  loop_env.executor = std::move(executor);
  loop_env.clock = &clock;
  loop_env.pool = &pool;
  loop_env.chat_id = std::move(chat_id);
  loop_env.traceparent = std::move(traceparent);
  loop_env.emit = [&on_chunk](std::string text) {
    if (on_chunk) on_chunk(Json::parse(text));  // the loop's own text: it parses
  };
  StepLoop loop(one, loop_env);
  StepLoopInput input;
  input.message_id = message_id;
  input.prompt = Json::array();
  for (const Json& message : messages) {
    for (Json& m : UiToModelMessages(message)) input.prompt.push_back(std::move(m));
  }
  input.stop = stop;
  StepLoopResult step = co_await loop.Run(std::move(input));

  // Step 1's calls: the run executes those of its tools (they are handed over approved); a call
  // that waits for the user's approval, or for a client-side tool's output, ends the answer
  // for now, as the same step on the worker would (the user answers it with the next message).
  int run_executes = 0, user_answers = 0;
  if (const Json* parts = FindField(step.response, "parts");
      parts != nullptr && parts->is_array()) {
    for (const Json& part : *parts) {
      std::string type = StringField(part, "type");
      if (type.rfind("tool-", 0) != 0 && type != "dynamic-tool") continue;
      std::string state = StringField(part, "state");
      std::string name = type == "dynamic-tool" ? StringField(part, "toolName") : type.substr(5);
      const Tool* tool = agent.FindTool(name);
      if (state == "approval-requested" ||
          (state == "input-available" && (tool == nullptr || !tool->execute))) {
        ++user_answers;
      } else if (state == "input-available") {
        ++run_executes;
      }
    }
  }

  StepOneResult out;
  if (step.stopped || stop.stop_requested()) {
    out.error = "stopped";
  } else if (step.finish_reason == "error" || step.finish_reason.empty()) {
    out.error = step.error.empty() ? "step 1 failed" : step.error;
  } else if (run_executes > 0 && user_answers > 0) {
    // Half for the run, half for the user: a handover cannot say that; the run answers itself.
    out.error = "step 1 called tools the run executes and tools that wait for the user at once";
  } else {
    out.skipped = false;
    const bool awaits_user = user_answers > 0;
    out.signal = {{"kind", "handover"},
                  {"partialAssistantMessage", HandoverPartial(step.response, !awaits_user)},
                  {"messageId", message_id},
                  {"isFinal", awaits_user || step.finish_reason != "tool-calls"}};
    co_return out;
  }
  out.signal = {{"kind", "handover-skip"}};
  co_return out;
}

asio::awaitable<absl::StatusOr<HeadStartResult>> RunHeadStart(HeadStartEnv env,
                                                              HeadStartRequest request) {
  HeadStartResult result;
  absl::Time start = env.clock->Now();
  result.message_id = request.message_id;
  if (result.message_id.empty()) {
    absl::BitGen gen;
    result.message_id = absl::StrFormat("msg_%016x", absl::Uniform<uint64_t>(gen));
  }

  // 1. The session: a worker boots the agent while step 1 streams here.
  {
    Json payload = {{"headStartMessages", request.messages}};
    if (!request.metadata.is_null()) payload["metadata"] = request.metadata;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CreateSessionRequest create;
    create.set_chat_id(request.chat_id);
    create.set_agent(request.agent);
    create.set_trigger(v1::TRIGGER_HANDOVER_PREPARE);
    create.set_payload_json(DumpJson(payload));
    create.set_traceparent(request.traceparent);
    v1::CreateSessionResponse created;
    absl::Status status =
        FromGrpc(env.sessions->CreateSession(&context, create, &created), "CreateSession");
    if (!status.ok()) co_return status;
    if (!created.created()) {
      // Its run is not waiting for a handover: step 1 would be streamed and then lost.
      co_return absl::FailedPreconditionError(
          absl::StrCat("CreateSession: chat ", request.chat_id, " already exists"));
    }
    result.create_session = env.clock->Now() - start;
  }

  // 2. Step 1, streamed to the caller as it arrives.
  bool first = true;
  auto on_chunk = [&](const Json& chunk) {
    if (first) {
      first = false;
      result.first_chunk = env.clock->Now() - start;
    }
    if (env.on_chunk) env.on_chunk(chunk);
  };
  // Arguments named, not temporaries of the co_await (docs/decisions.md, the GCC 12 rule).
  std::function<void(const Json&)> sink = on_chunk;
  std::stop_token never;
  StepOneResult step =
      co_await RunStepOne(env.executor, *env.clock, *env.pool, *env.agent, request.chat_id,
                          request.messages, result.message_id, request.traceparent, sink, never);
  result.step1 = env.clock->Now() - start;

  // 3. The signal.
  const Json& body = step.signal;
  if (step.skipped) {
    result.signal = HeadStartResult::Signal::kSkip;
    result.step_error = step.error;
  } else {
    result.partial = body["partialAssistantMessage"];
    result.signal = BoolField(body, "isFinal") ? HeadStartResult::Signal::kFinal
                                               : HeadStartResult::Signal::kHandover;
  }
  absl::StatusOr<int64_t> seq =
      Append(*env.sessions, request.chat_id, body, absl::StrCat("handover:", result.message_id));
  if (!seq.ok()) co_return seq.status();
  result.signal_seq = *seq;
  co_return result;
}

}  // namespace baton
