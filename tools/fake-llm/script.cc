#include "tools/fake-llm/script.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "hooks/status.h"

namespace baton::fakellm {
namespace {

constexpr absl::string_view kDefaultModel = "fake-llm";

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// Refuses keys of `object` outside `known` ("comment" is allowed anywhere, for the reader).
absl::Status CheckKeys(const Json& object, std::initializer_list<absl::string_view> known,
                       absl::string_view where) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (it.key() == "comment") continue;
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      return Invalid(absl::StrCat(where, ".", it.key()), "unknown field");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> String(const Json& value, absl::string_view where) {
  if (!value.is_string()) return Invalid(where, "must be a string");
  return value.get<std::string>();
}

absl::StatusOr<int64_t> NonNegative(const Json& value, absl::string_view where) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0) {
    return Invalid(where, "must be a non-negative integer");
  }
  return value.get<int64_t>();
}

absl::StatusOr<bool> Bool(const Json& value, absl::string_view where) {
  if (!value.is_boolean()) return Invalid(where, "must be true or false");
  return value.get<bool>();
}

bool IsHold(const Json& item) { return item.is_object() && item.contains("hold_ms"); }

absl::Status CheckEvents(const Json& events, std::optional<WireFormat> format,
                         absl::string_view where) {
  if (!events.is_array()) return Invalid(where, "must be an array");
  for (size_t i = 0; i < events.size(); ++i) {
    const Json& item = events[i];
    std::string at = absl::StrCat(where, "[", i, "]");
    if (item.is_string()) continue;
    if (!item.is_object()) return Invalid(at, "must be an object or a string");
    if (item.contains("hold_ms")) {
      if (item.size() != 1) {
        return Invalid(at, "a hold is {\"hold_ms\": <ms of the script clock>} and nothing else");
      }
      BATON_RETURN_IF_ERROR(NonNegative(item["hold_ms"], absl::StrCat(at, ".hold_ms")).status());
      continue;
    }
    if (item.contains("raw")) {
      if (item.size() != 1 || !item["raw"].is_string()) {
        return Invalid(at, "a raw event is {\"raw\": \"<bytes>\"} and nothing else");
      }
      continue;
    }
    if (item.contains("event") || (item.size() == 1 && item.contains("data"))) {
      BATON_RETURN_IF_ERROR(CheckKeys(item, {"event", "data"}, at));
      if (item.contains("event") && !item["event"].is_string()) {
        return Invalid(absl::StrCat(at, ".event"), "must be a string");
      }
      if (!item.contains("data")) return Invalid(absl::StrCat(at, ".data"), "is missing");
      continue;
    }
    if (format == WireFormat::kAnthropic && (!item.contains("type") || !item["type"].is_string())) {
      return Invalid(absl::StrCat(at, ".type"), "an Anthropic event needs a string \"type\"");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReply(const Json& reply, absl::string_view where) {
  if (!reply.is_object()) return Invalid(where, "must be an object");
  BATON_RETURN_IF_ERROR(CheckKeys(reply,
                                  {"id", "model", "reasoning", "signature", "text", "text_chunks",
                                   "tool_calls", "finish", "usage"},
                                  where));
  for (const char* key : {"id", "model", "reasoning", "signature", "text", "finish"}) {
    if (reply.contains(key)) {
      BATON_RETURN_IF_ERROR(String(reply[key], absl::StrCat(where, ".", key)).status());
    }
  }
  if (reply.contains("text_chunks")) {
    std::string at = absl::StrCat(where, ".text_chunks");
    if (reply.contains("text")) return Invalid(at, "give either text or text_chunks");
    if (!reply["text_chunks"].is_array()) return Invalid(at, "must be an array of strings");
    for (const Json& chunk : reply["text_chunks"]) {
      if (!chunk.is_string()) return Invalid(at, "must be an array of strings");
    }
  }
  if (reply.contains("tool_calls")) {
    const Json& calls = reply["tool_calls"];
    if (!calls.is_array()) return Invalid(absl::StrCat(where, ".tool_calls"), "must be an array");
    for (size_t i = 0; i < calls.size(); ++i) {
      std::string at = absl::StrCat(where, ".tool_calls[", i, "]");
      if (!calls[i].is_object()) return Invalid(at, "must be an object");
      BATON_RETURN_IF_ERROR(CheckKeys(calls[i], {"id", "name", "input"}, at));
      if (!calls[i].contains("name")) return Invalid(absl::StrCat(at, ".name"), "is missing");
      BATON_RETURN_IF_ERROR(String(calls[i]["name"], absl::StrCat(at, ".name")).status());
      if (calls[i].contains("id")) {
        BATON_RETURN_IF_ERROR(String(calls[i]["id"], absl::StrCat(at, ".id")).status());
      }
    }
  }
  if (reply.contains("usage")) {
    std::string at = absl::StrCat(where, ".usage");
    if (!reply["usage"].is_object()) return Invalid(at, "must be an object");
    BATON_RETURN_IF_ERROR(CheckKeys(reply["usage"], {"input_tokens", "output_tokens"}, at));
    for (auto it = reply["usage"].begin(); it != reply["usage"].end(); ++it) {
      if (it.key() == "comment") continue;
      BATON_RETURN_IF_ERROR(NonNegative(it.value(), absl::StrCat(at, ".", it.key())).status());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ScriptedResponse> ParseResponse(const Json& entry, size_t index) {
  std::string where = absl::StrCat("responses[", index, "]");
  if (!entry.is_object()) return Invalid(where, "must be an object");
  BATON_RETURN_IF_ERROR(
      CheckKeys(entry,
                {"match", "repeat", "status", "headers", "body", "format", "events", "reply",
                 "ttfb_ms", "delay_ms", "truncate_after", "chunk_bytes", "split_at", "hang"},
                where));
  auto field = [&](absl::string_view key) { return absl::StrCat(where, ".", key); };
  ScriptedResponse r;
  if (entry.contains("match")) {
    const Json& match = entry["match"];
    if (!match.is_object()) return Invalid(field("match"), "must be an object");
    BATON_RETURN_IF_ERROR(CheckKeys(match, {"contains", "path", "order"}, field("match")));
    if (match.contains("contains")) {
      BATON_ASSIGN_OR_RETURN(r.match_contains, String(match["contains"], field("match.contains")));
    }
    if (match.contains("path")) {
      BATON_ASSIGN_OR_RETURN(r.match_path, String(match["path"], field("match.path")));
    }
    if (match.contains("order")) {
      const Json& order = match["order"];
      if (!order.is_number_integer() || order.get<int64_t>() < 1) {
        return Invalid(field("match.order"), "must be an integer >= 1 (requests count from 1)");
      }
      r.match_order = order.get<int64_t>();
    }
  }
  if (entry.contains("repeat")) {
    BATON_ASSIGN_OR_RETURN(r.repeat, Bool(entry["repeat"], field("repeat")));
  }
  if (entry.contains("status")) {
    const Json& status = entry["status"];
    if (!status.is_number_integer() || status.get<int64_t>() < 200 || status.get<int64_t>() > 599) {
      return Invalid(field("status"), "must be an integer from 200 to 599");
    }
    r.status = status.get<int>();
  }
  if (entry.contains("headers")) {
    const Json& headers = entry["headers"];
    if (!headers.is_object()) return Invalid(field("headers"), "must be an object of strings");
    for (auto it = headers.begin(); it != headers.end(); ++it) {
      std::string name = absl::AsciiStrToLower(it.key());
      std::string at = field(absl::StrCat("headers.", it.key()));
      if (name.empty() || name.find_first_of(" \t\r\n:") != std::string::npos) {
        return Invalid(at, "invalid header name");
      }
      if (name == "content-length" || name == "transfer-encoding" || name == "connection") {
        return Invalid(at, "framing headers are set by the server");
      }
      BATON_ASSIGN_OR_RETURN(std::string value, String(it.value(), at));
      if (value.find_first_of("\r\n") != std::string::npos) {
        return Invalid(at, "a header value may not hold a line break");
      }
      r.headers.emplace_back(std::move(name), std::move(value));
    }
  }
  if (entry.contains("body") && !entry["body"].is_null()) {
    const Json& body = entry["body"];
    r.body = body.is_string() ? body.get<std::string>() : DumpJson(body);
  }
  if (entry.contains("format")) {
    BATON_ASSIGN_OR_RETURN(std::string format, String(entry["format"], field("format")));
    if (format == "anthropic") {
      r.format = WireFormat::kAnthropic;
    } else if (format == "openai") {
      r.format = WireFormat::kOpenAi;
    } else {
      return Invalid(field("format"),
                     absl::StrCat("unknown format \"", format, "\" (anthropic or openai)"));
    }
  }
  if (entry.contains("events") && entry.contains("reply")) {
    return Invalid(field("reply"), "give either events or reply, not both");
  }
  if (entry.contains("events")) {
    BATON_RETURN_IF_ERROR(CheckEvents(entry["events"], r.format, field("events")));
    r.events = entry["events"];
  }
  if (entry.contains("reply")) {
    BATON_RETURN_IF_ERROR(CheckReply(entry["reply"], field("reply")));
    r.reply = entry["reply"];
  }
  if (r.body.has_value() && r.streams()) {
    return Invalid(field("body"), "a body is not streamed: give body, or events/reply");
  }
  if (entry.contains("ttfb_ms")) {
    BATON_ASSIGN_OR_RETURN(r.ttfb_ms, NonNegative(entry["ttfb_ms"], field("ttfb_ms")));
  }
  if (entry.contains("delay_ms")) {
    BATON_ASSIGN_OR_RETURN(r.delay_ms, NonNegative(entry["delay_ms"], field("delay_ms")));
  }
  if (entry.contains("truncate_after")) {
    if (!r.streams()) return Invalid(field("truncate_after"), "needs events or reply");
    BATON_ASSIGN_OR_RETURN(r.truncate_after,
                           NonNegative(entry["truncate_after"], field("truncate_after")));
  }
  if (entry.contains("chunk_bytes")) {
    BATON_ASSIGN_OR_RETURN(r.chunk_bytes, NonNegative(entry["chunk_bytes"], field("chunk_bytes")));
  }
  if (entry.contains("split_at")) {
    const Json& split = entry["split_at"];
    if (!split.is_array()) return Invalid(field("split_at"), "must be an array of byte offsets");
    for (const Json& offset : split) {
      BATON_ASSIGN_OR_RETURN(int64_t at, NonNegative(offset, field("split_at")));
      r.split_at.push_back(at);
    }
    if (r.chunk_bytes > 0) return Invalid(field("split_at"), "give chunk_bytes or split_at");
  }
  if ((r.chunk_bytes > 0 || !r.split_at.empty()) && r.events.is_array()) {
    for (const Json& item : r.events) {
      if (IsHold(item)) {
        return Invalid(field("events"),
                       "hold_ms items cannot be combined with chunk_bytes or split_at");
      }
    }
  }
  if (entry.contains("hang")) {
    BATON_ASSIGN_OR_RETURN(r.hang, Bool(entry["hang"], field("hang")));
  }
  return r;
}

// An SSE event with the given name (none when empty) and data, one `data:` line per line.
std::string SseEvent(absl::string_view name, absl::string_view data) {
  std::string out;
  if (!name.empty()) absl::StrAppend(&out, "event: ", name, "\n");
  for (absl::string_view line : absl::StrSplit(data, '\n')) {
    absl::StrAppend(&out, "data: ", line, "\n");
  }
  out.push_back('\n');
  return out;
}

// Cuts `text` in two at about its middle, never inside a UTF-8 character.
std::vector<std::string> Halves(const std::string& text) {
  size_t mid = text.size() / 2;
  while (mid < text.size() && (static_cast<unsigned char>(text[mid]) & 0xC0) == 0x80) ++mid;
  if (mid == 0 || mid >= text.size()) return {text};
  return {text.substr(0, mid), text.substr(mid)};
}

std::vector<std::string> TextChunks(const Json& reply) {
  if (reply.contains("text_chunks")) return reply["text_chunks"].get<std::vector<std::string>>();
  return SplitWords(StringField(reply, "text"));
}

int64_t UsageField(const Json& reply, const char* key) {
  const Json* usage = FindField(reply, "usage");
  return usage == nullptr ? 0 : IntField(*usage, key);
}

Json AnthropicReply(const Json& reply, int64_t order) {
  Json events = Json::array();
  std::string id = reply.value("id", absl::StrCat("msg_fake_", order));
  int64_t input_tokens = UsageField(reply, "input_tokens");
  int64_t output_tokens = UsageField(reply, "output_tokens");
  const Json* calls = FindField(reply, "tool_calls");
  bool tool_use = calls != nullptr && !calls->empty();
  std::string finish = reply.value("finish", tool_use ? "tool_use" : "end_turn");

  Json message = {
      {"id", id},
      {"type", "message"},
      {"role", "assistant"},
      {"model", reply.value("model", std::string(kDefaultModel))},
      {"content", Json::array()},
      {"stop_reason", nullptr},
      {"stop_sequence", nullptr},
      {"usage",
       {{"input_tokens", input_tokens}, {"output_tokens", std::min<int64_t>(1, output_tokens)}}}};
  events.push_back({{"type", "message_start"}, {"message", std::move(message)}});

  int index = 0;
  auto start = [&](Json block) {
    events.push_back(
        {{"type", "content_block_start"}, {"index", index}, {"content_block", std::move(block)}});
    if (index == 0) events.push_back({{"type", "ping"}});  // as the API sends it
  };
  auto delta = [&](Json delta) {
    events.push_back(
        {{"type", "content_block_delta"}, {"index", index}, {"delta", std::move(delta)}});
  };
  auto stop = [&]() {
    events.push_back({{"type", "content_block_stop"}, {"index", index}});
    ++index;
  };

  if (reply.contains("reasoning") || reply.contains("signature")) {
    start({{"type", "thinking"}, {"thinking", ""}});
    std::string reasoning = StringField(reply, "reasoning");
    if (!reasoning.empty()) delta({{"type", "thinking_delta"}, {"thinking", reasoning}});
    if (reply.contains("signature")) {
      delta({{"type", "signature_delta"}, {"signature", StringField(reply, "signature")}});
    }
    stop();
  }
  if (reply.contains("text") || reply.contains("text_chunks")) {
    start({{"type", "text"}, {"text", ""}});
    for (std::string& chunk : TextChunks(reply)) {
      delta({{"type", "text_delta"}, {"text", std::move(chunk)}});
    }
    stop();
  }
  if (calls != nullptr) {
    for (size_t i = 0; i < calls->size(); ++i) {
      const Json& call = (*calls)[i];
      start({{"type", "tool_use"},
             {"id", call.value("id", absl::StrCat("toolu_fake_", i))},
             {"name", StringField(call, "name")},
             {"input", Json::object()}});
      for (std::string& piece : Halves(DumpJson(call.value("input", Json::object())))) {
        delta({{"type", "input_json_delta"}, {"partial_json", std::move(piece)}});
      }
      stop();
    }
  }
  events.push_back({{"type", "message_delta"},
                    {"delta", {{"stop_reason", finish}, {"stop_sequence", nullptr}}},
                    {"usage", {{"output_tokens", output_tokens}}}});
  events.push_back({{"type", "message_stop"}});
  return events;
}

Json OpenAiReply(const Json& reply, int64_t order) {
  Json events = Json::array();
  const Json* calls = FindField(reply, "tool_calls");
  bool tool_use = calls != nullptr && !calls->empty();
  std::string finish = reply.value("finish", tool_use ? "tool_calls" : "stop");
  bool usage = reply.contains("usage");
  Json base = {{"id", reply.value("id", absl::StrCat("chatcmpl-fake-", order))},
               {"object", "chat.completion.chunk"},
               {"created", 1},
               {"model", reply.value("model", std::string(kDefaultModel))}};
  auto chunk = [&](Json delta, Json finish_reason) {
    Json c = base;
    c["choices"] = Json::array(
        {{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", std::move(finish_reason)}}});
    // With include_usage every chunk before the usage chunk says "usage": null.
    if (usage) c["usage"] = nullptr;
    events.push_back(std::move(c));
  };

  chunk({{"role", "assistant"}, {"content", ""}}, nullptr);
  if (reply.contains("reasoning")) chunk({{"reasoning_content", reply["reasoning"]}}, nullptr);
  for (std::string& piece : TextChunks(reply)) chunk({{"content", std::move(piece)}}, nullptr);
  if (calls != nullptr) {
    for (size_t i = 0; i < calls->size(); ++i) {
      const Json& call = (*calls)[i];
      Json first = {{"index", i},
                    {"id", call.value("id", absl::StrCat("call_fake_", i))},
                    {"type", "function"},
                    {"function", {{"name", StringField(call, "name")}, {"arguments", ""}}}};
      chunk({{"tool_calls", Json::array({std::move(first)})}}, nullptr);
      for (std::string& piece : Halves(DumpJson(call.value("input", Json::object())))) {
        Json more = {{"index", i}, {"function", {{"arguments", std::move(piece)}}}};
        chunk({{"tool_calls", Json::array({std::move(more)})}}, nullptr);
      }
    }
  }
  chunk(Json::object(), finish);
  if (usage) {
    int64_t input_tokens = UsageField(reply, "input_tokens");
    int64_t output_tokens = UsageField(reply, "output_tokens");
    Json last = base;
    last["choices"] = Json::array();
    last["usage"] = {{"prompt_tokens", input_tokens},
                     {"completion_tokens", output_tokens},
                     {"total_tokens", input_tokens + output_tokens}};
    events.push_back(std::move(last));
  }
  events.push_back("[DONE]");
  return events;
}

// The reason phrase of a status line (clients ignore it; it helps a human reading a capture).
const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 529:
      return "Overloaded";
    default:
      return "Status";
  }
}

void SetDefaultHeader(std::vector<std::pair<std::string, std::string>>& headers, std::string name,
                      std::string value) {
  for (const auto& header : headers) {
    if (header.first == name) return;
  }
  headers.emplace_back(std::move(name), std::move(value));
}

}  // namespace

WireFormat FormatForPath(std::string_view path) {
  path = path.substr(0, path.find('?'));
  constexpr std::string_view kMessages = "/messages";
  bool messages =
      path.size() >= kMessages.size() && path.substr(path.size() - kMessages.size()) == kMessages;
  return messages ? WireFormat::kAnthropic : WireFormat::kOpenAi;
}

std::string ResponsePlan::Body() const {
  std::string body;
  for (const std::string& write : writes) body += write;
  return body;
}

absl::StatusOr<Script> Script::Parse(const Json& script) {
  if (!script.is_object()) return Invalid("script", "must be an object {\"responses\": [...]}");
  BATON_RETURN_IF_ERROR(CheckKeys(script, {"responses"}, "script"));
  Script out;
  if (!script.contains("responses")) return out;
  const Json& responses = script["responses"];
  if (!responses.is_array()) return Invalid("responses", "must be an array");
  for (size_t i = 0; i < responses.size(); ++i) {
    BATON_ASSIGN_OR_RETURN(ScriptedResponse response, ParseResponse(responses[i], i));
    out.responses_.push_back(std::move(response));
  }
  out.used_.assign(out.responses_.size(), false);
  return out;
}

absl::StatusOr<Script> Script::ParseText(std::string_view text) {
  absl::StatusOr<Json> json = ParseJson(text);
  if (!json.ok()) return Invalid("script", json.status().message());
  return Parse(*json);
}

int Script::Pick(std::string_view path, std::string_view body) {
  int64_t order = ++requests_;
  path = path.substr(0, path.find('?'));
  for (size_t i = 0; i < responses_.size(); ++i) {
    const ScriptedResponse& r = responses_[i];
    if (used_[i] && !r.repeat) continue;
    if (r.match_contains.has_value() && body.find(*r.match_contains) == std::string_view::npos) {
      continue;
    }
    if (r.match_path.has_value() && path != *r.match_path) continue;
    if (r.match_order.has_value() && order != *r.match_order) continue;
    used_[i] = true;
    return static_cast<int>(i);
  }
  return -1;
}

ResponsePlan Script::Render(size_t index, std::string_view path, int64_t order) const {
  const ScriptedResponse& r = responses_[index];
  ResponsePlan plan;
  plan.status = r.status;
  plan.headers = r.headers;
  plan.ttfb = std::chrono::milliseconds(r.ttfb_ms);
  plan.hang = r.hang;
  plan.stream = r.streams();

  std::vector<std::string> pieces;   // one per event, or the body
  std::vector<int64_t> piece_holds;  // per event: the script clock it waits for (ms)
  if (plan.stream) {
    WireFormat format = r.format.value_or(FormatForPath(path));
    Json events = r.reply.is_null() ? r.events : ReplyEvents(r.reply, format, order);
    // Holds are not events: truncate_after counts the others, and each event carries the
    // script-clock time (the holds before it, summed) it waits for.
    plan.truncated = r.truncate_after.has_value();
    int64_t held = 0;
    size_t sent = 0;
    for (const Json& item : events) {
      if (IsHold(item)) {
        held += item["hold_ms"].get<int64_t>();
        continue;
      }
      if (r.truncate_after.has_value() && sent >= static_cast<size_t>(*r.truncate_after)) break;
      ++sent;
      pieces.push_back(RenderEvent(item, format));
      piece_holds.push_back(held);
    }
    if (!plan.truncated) plan.hold_end_ms = held;
    SetDefaultHeader(plan.headers, "content-type", "text/event-stream");
    SetDefaultHeader(plan.headers, "cache-control", "no-cache");
  } else if (r.body.has_value()) {
    pieces.push_back(*r.body);
    SetDefaultHeader(plan.headers, "content-type", "application/json");
  }

  if (r.chunk_bytes > 0 || !r.split_at.empty()) {
    std::string all;
    for (const std::string& piece : pieces) all += piece;
    std::set<size_t> cuts;
    if (r.chunk_bytes > 0) {
      for (size_t at = static_cast<size_t>(r.chunk_bytes); at < all.size();
           at += static_cast<size_t>(r.chunk_bytes)) {
        cuts.insert(at);
      }
    }
    for (int64_t at : r.split_at) {
      if (at > 0 && static_cast<size_t>(at) < all.size()) cuts.insert(static_cast<size_t>(at));
    }
    cuts.insert(all.size());
    size_t from = 0;
    for (size_t cut : cuts) {
      if (cut > from) plan.writes.push_back(all.substr(from, cut - from));
      from = cut;
    }
    plan.gap = r.delay_ms > 0 ? std::chrono::microseconds(std::chrono::milliseconds(r.delay_ms))
                              : kSplitGap;
  } else {
    bool holds = plan.hold_end_ms > 0;
    for (int64_t h : piece_holds) holds = holds || h > 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (pieces[i].empty()) continue;
      plan.writes.push_back(std::move(pieces[i]));
      if (holds) plan.holds_ms.push_back(i < piece_holds.size() ? piece_holds[i] : 0);
    }
    plan.gap = std::chrono::milliseconds(r.delay_ms);
  }
  return plan;
}

ResponsePlan Script::NoResponse(int64_t order) {
  ResponsePlan plan;
  plan.status = 500;
  plan.headers = {{"content-type", "application/json"}};
  Json body = {
      {"error", {{"message", absl::StrCat("fake-llm: no scripted response for request ", order)}}}};
  plan.writes.push_back(DumpJson(body));
  return plan;
}

std::string RenderEvent(const Json& item, WireFormat format) {
  if (item.is_string()) return SseEvent("", item.get<std::string>());
  if (!item.is_object()) return SseEvent("", DumpJson(item));
  if (const Json* raw = FindField(item, "raw"); raw != nullptr && raw->is_string()) {
    return raw->get<std::string>();
  }
  if (item.contains("event") || (item.size() == 1 && item.contains("data"))) {
    const Json& data = item.contains("data") ? item["data"] : Json("");
    return SseEvent(StringField(item, "event"),
                    data.is_string() ? data.get<std::string>() : DumpJson(data));
  }
  if (format == WireFormat::kAnthropic) return SseEvent(StringField(item, "type"), DumpJson(item));
  return SseEvent("", DumpJson(item));
}

Json ReplyEvents(const Json& reply, WireFormat format, int64_t order) {
  return format == WireFormat::kAnthropic ? AnthropicReply(reply, order)
                                          : OpenAiReply(reply, order);
}

std::vector<std::string> SplitWords(std::string_view text) {
  std::vector<std::string> words;
  size_t from = 0;
  bool word = false;  // text[from, i] holds a non-space character
  for (size_t i = 0; i < text.size(); ++i) {
    bool space = absl::ascii_isspace(static_cast<unsigned char>(text[i]));
    word = word || !space;
    bool next_is_word =
        i + 1 < text.size() && !absl::ascii_isspace(static_cast<unsigned char>(text[i + 1]));
    if (space && word && next_is_word) {
      word = false;
      words.emplace_back(text.substr(from, i + 1 - from));
      from = i + 1;
    }
  }
  if (from < text.size()) words.emplace_back(text.substr(from));
  return words;
}

std::string RenderHead(const ResponsePlan& plan, bool keep_alive) {
  std::string head = absl::StrCat("HTTP/1.1 ", plan.status, " ", Reason(plan.status), "\r\n");
  for (const auto& [name, value] : plan.headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  if (plan.stream) {
    absl::StrAppend(&head, "transfer-encoding: chunked\r\n");
  } else {
    size_t length = 0;
    for (const std::string& write : plan.writes) length += write.size();
    absl::StrAppend(&head, "content-length: ", length, "\r\n");
  }
  absl::StrAppend(&head, "connection: ", keep_alive ? "keep-alive" : "close", "\r\n\r\n");
  return head;
}

std::string ChunkFrame(std::string_view data) {
  return absl::StrCat(absl::Hex(data.size()), "\r\n", absl::string_view(data.data(), data.size()),
                      "\r\n");
}

}  // namespace baton::fakellm
