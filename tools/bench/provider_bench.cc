// Benchmarks of the provider path (issue 3). Figures and method: docs/BENCHMARKS.md.
//
//   BM_SseDecode/anthropic|openai   SSE parser + stream decoder over a realistic body (text
//                                   deltas of one to three words), fed in 16 KiB reads: MB/s
//   BM_StreamedChunk                one model call over loopback HTTP from fake-llm (1,000 text
//                                   deltas), through HttpClient, the decoder and the step loop
//                                   to emitted UI chunks; CPU time of the worker's loop thread
//                                   per chunk (fake-llm runs on its own thread, not counted)
//   BM_RequestBody/provider/turns/kept
//                                   one model call's request body at step 2 of turn `turns` of
//                                   BM_ChatTurns' chat: the request tree dumped (kept 0) or put
//                                   together from the pieces kept with the lane (kept 1): MB/s
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "asio/co_spawn.hpp"
#include "asio/io_context.hpp"
#include "benchmark/benchmark.h"
#include "runtime/model/http_client.h"
#include "runtime/model/provider_requests.h"
#include "runtime/model/provider_streams.h"
#include "runtime/model/providers.h"
#include "runtime/model/sse_parser.h"
#include "runtime/step/step_loop.h"
#include "tools/fake-llm/fake_llm.h"

namespace baton {
namespace {

constexpr const char* kWords[] = {"The ",   "weather in ", "Oslo is ",    "cold ",   "and ",
                                  "clear ", "today, ",     "about four ", "degrees."};

std::string AnthropicBody(int deltas) {
  std::string body =
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_b\","
      "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],"
      "\"stop_reason\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n"
      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
      "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
  for (int i = 0; i < deltas; ++i) {
    absl::StrAppend(&body,
                    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                    "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"",
                    kWords[i % 9], "\"}}\n\n");
  }
  absl::StrAppend(&body,
                  "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}"
                  "\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
                  "{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":",
                  deltas, "}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
  return body;
}

std::string OpenAiBody(int deltas) {
  std::string body;
  for (int i = 0; i < deltas; ++i) {
    absl::StrAppend(&body,
                    "data: {\"id\":\"chatcmpl-b\",\"object\":\"chat.completion.chunk\","
                    "\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
                    "{\"content\":\"",
                    kWords[i % 9], "\"},\"finish_reason\":null}],\"usage\":null}\n\n");
  }
  absl::StrAppend(&body,
                  "data: {\"id\":\"chatcmpl-b\",\"choices\":[{\"index\":0,\"delta\":{},"
                  "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
  return body;
}

template <typename Stream>
void Decode(benchmark::State& state, const std::string& body) {
  size_t events = 0;
  for (auto _ : state) {
    SseParser parser;
    Stream stream;
    std::vector<ModelEvent> out;
    out.reserve(1100);
    for (size_t at = 0; at < body.size(); at += 16384) {
      (void)parser.Feed(std::string_view(body).substr(at, 16384),
                        [&](SseEvent e) { (void)stream.OnEvent(e, out); });
    }
    stream.Finish(out);
    events = out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(body.size()));
  state.counters["model_events"] = double(events);
}

void BM_SseDecode_Anthropic(benchmark::State& state) {
  Decode<AnthropicStream>(state, AnthropicBody(1000));
}
BENCHMARK(BM_SseDecode_Anthropic)->Unit(benchmark::kMicrosecond);

void BM_SseDecode_OpenAi(benchmark::State& state) { Decode<OpenAiStream>(state, OpenAiBody(1000)); }
BENCHMARK(BM_SseDecode_OpenAi)->Unit(benchmark::kMicrosecond);

void BM_StreamedChunk(benchmark::State& state) {
  constexpr int kDeltas = 1000;
  Json events = Json::array();
  events.push_back({{"raw", AnthropicBody(kDeltas)}});
  auto server = fakellm::FakeLlm::Start(
      Json{{"responses", Json::array({Json{{"events", events}, {"repeat", true}}})}});
  if (!server.ok()) {
    state.SkipWithError(std::string(server.status().message()).c_str());
    return;
  }
  asio::io_context io;
  std::optional<HttpClient> http(std::in_place, io.get_executor());
  HookPool pool(1);
  AnthropicOptions options;
  options.base_url = (*server)->base_url();
  options.api_key = "bench";
  options.request.model = "m";
  Agent agent;
  agent.id = "bench";
  agent.model = std::make_shared<AnthropicModel>(*http, options);
  size_t chunks = 0;
  for (auto _ : state) {
    chunks = 0;
    StepLoop::Env env{io.get_executor(), &HttpClient::clock(), &pool, "chat",
                      [&chunks](const std::string&) { ++chunks; }};
    auto loop = std::make_shared<StepLoop>(agent, std::move(env));
    Json prompt = Json::array({{{"role", "user"}, {"content", "hi"}}});
    StepLoopInput input{"msg_b", Json(), std::move(prompt), {}};
    bool done = false;
    asio::co_spawn(
        io, [loop, input = std::move(input)]() mutable { return loop->Run(std::move(input)); },
        [&done](std::exception_ptr, StepLoopResult) { done = true; });
    while (!done) {
      io.restart();
      io.run_one();
    }
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(chunks));
  state.counters["ui_chunks"] = double(chunks);
  state.counters["ns_per_chunk"] =
      benchmark::Counter(double(state.iterations()) * double(chunks),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  agent.model.reset();
  http.reset();
}
BENCHMARK(BM_StreamedChunk)->Unit(benchmark::kMillisecond);

// The provider lane of BM_ChatTurns' chat after `turns` tool turns: per turn the question, step
// 1 (text and a lookup call), the tool's result and step 2's twenty words.
std::vector<Json> ChatHistory(int turns) {
  std::vector<Json> out;
  std::string words;
  for (int w = 0; w < 20; ++w) absl::StrAppend(&words, "w", w / 10, w % 10, " ");
  for (int t = 1; t <= turns; ++t) {
    std::string call_id = absl::StrCat("call-", t), key = absl::StrCat("k", t);
    out.push_back({{"role", "user"},
                   {"content", {{{"type", "text"}, {"text", "What is the value for my key?"}}}}});
    out.push_back({{"role", "assistant"},
                   {"content",
                    {{{"type", "text"}, {"text", "Let me check."}},
                     {{"type", "tool-call"},
                      {"toolCallId", call_id},
                      {"toolName", "lookup"},
                      {"input", {{"key", key}}}}}}});
    Json value = {{"key", key}, {"value", "v-" + key}, {"found", true}};
    Json result = {{"type", "tool-result"},
                   {"toolCallId", call_id},
                   {"toolName", "lookup"},
                   {"output", {{"type", "json"}, {"value", value}}}};
    out.push_back({{"role", "tool"}, {"content", Json::array({result})}});
    if (t < turns)
      out.push_back({{"role", "assistant"}, {"content", {{{"type", "text"}, {"text", words}}}}});
  }
  return out;
}

void BM_RequestBody(benchmark::State& state) {
  const bool openai = state.range(0) == 1;
  const bool kept = state.range(2) == 1;
  std::vector<Json> history = ChatHistory(static_cast<int>(state.range(1)));
  // The turn's step 1 and tool result are the step loop's own; the rest is the lane's, whose
  // pieces an earlier call made.
  auto shared = std::make_shared<MessageList::Messages>(history.begin(), history.end() - 2);
  ModelCall call;
  call.system = "You look up values.";
  call.tools = Json::parse(R"([{"name":"lookup","description":"Looks up a key.","inputSchema":
    {"type":"object","properties":{"key":{"type":"string"}},"required":["key"],
     "additionalProperties":false}}])");
  call.messages = MessageList(shared, shared->size(), std::make_shared<MessageMemo>());
  call.messages.push_back(history[history.size() - 2]);
  call.messages.push_back(history.back());
  auto body = [&] {
    if (kept) {
      return openai ? OpenAiRequestBody(call, {.model = "m"})
                    : AnthropicRequestBody(call, {.model = "m"});
    }
    return openai ? DumpJson(BuildOpenAiRequest(call, {.model = "m"}))
                  : DumpJson(BuildAnthropicRequest(call, {.model = "m"}));
  };
  size_t bytes = body().size();  // the earlier call
  for (auto _ : state) benchmark::DoNotOptimize(body());
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  state.counters["body_bytes"] = double(bytes);
}
BENCHMARK(BM_RequestBody)
    ->ArgNames({"openai", "turns", "kept"})
    ->ArgsProduct({{0, 1}, {10, 200}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace baton
