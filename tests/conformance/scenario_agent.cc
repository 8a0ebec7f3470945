#include "tests/conformance/scenario_agent.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hooks/messages.h"
#include "hooks/status.h"
#include "runtime/transcript/ui_reducer.h"

namespace baton::conformance {

bool Matcher::Match(const Json& expected, const Json& actual, const std::string& path,
                    std::string* why) {
  if (expected.is_string()) {
    const std::string& e = expected.get_ref<const std::string&>();
    if (absl::StartsWith(e, "$")) {
      if (e == "$any") return true;
      auto it = vars_.find(e);
      if (it == vars_.end()) {
        vars_[e] = actual;
        return true;
      }
      if (it->second == actual) return true;
      *why = absl::StrCat(path, ": ", e, " is ", it->second.dump(), " but got ", actual.dump());
      return false;
    }
  }
  if (expected.is_object()) {
    if (!actual.is_object()) {
      *why = absl::StrCat(path, ": expected an object, got ", actual.dump());
      return false;
    }
    for (const auto& [key, value] : expected.items()) {
      if (value.is_null()) {
        if (actual.contains(key)) {
          *why = absl::StrCat(path, ".", key, ": expected absent, got ", actual[key].dump());
          return false;
        }
        continue;
      }
      if (!actual.contains(key)) {
        *why = absl::StrCat(path, ".", key, ": missing in ", actual.dump());
        return false;
      }
      if (!Match(value, actual[key], absl::StrCat(path, ".", key), why)) return false;
    }
    return true;
  }
  if (expected.is_array()) {
    if (!actual.is_array() || actual.size() != expected.size()) {
      *why = absl::StrCat(path, ": expected ", expected.dump(), ", got ", actual.dump());
      return false;
    }
    for (size_t i = 0; i < expected.size(); ++i) {
      if (!Match(expected[i], actual[i], absl::StrCat(path, "[", i, "]"), why)) return false;
    }
    return true;
  }
  if (expected != actual) {
    *why = absl::StrCat(path, ": expected ", expected.dump(), ", got ", actual.dump());
    return false;
  }
  return true;
}

absl::StatusOr<Json> ReaderMessages(const Json& out) {
  Json messages = Json::array();
  std::optional<UiReducer> open;
  auto end = [&](const std::string& how) {
    const Json& m = open->message();
    Json entry = {{"id", m.value("id", "")}, {"parts", m.value("parts", Json::array())}};
    if (m.contains("metadata")) entry["metadata"] = m["metadata"];
    if (!open->finish_reason().empty()) entry["finishReason"] = open->finish_reason();
    if (!how.empty()) entry["end"] = how;
    messages.push_back(std::move(entry));
    open.reset();
  };
  for (size_t i = 0; i < out.size(); ++i) {
    const Json& r = out[i];
    auto refused = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("out[", i, "] ", r.dump(), ": ", why));
    };
    if (!r.contains("chunk")) {
      if (StringField(r, "type") != "trigger:retract") continue;  // not for the message
      const std::string id = StringField(r.value("headers", Json::object()), "message-id");
      if (open.has_value() && StringField(open->message(), "id") == id) {
        open.reset();
      } else if (!messages.empty() && StringField(messages.back(), "id") == id) {
        messages.erase(messages.size() - 1);
      } else {
        return refused("retracts no message");
      }
      continue;
    }
    const Json& chunk = r["chunk"];
    const std::string type = StringField(chunk, "type");
    if (type == "start") {
      if (open.has_value()) {
        return refused(absl::StrCat("a start while message \"", StringField(open->message(), "id"),
                                    "\" is open"));
      }
      open.emplace();
    }
    if (!open.has_value()) {
      if (type == "error" || absl::StartsWith(type, "data-")) continue;
      return refused("outside a message");
    }
    if (absl::Status applied = open->Apply(chunk); !applied.ok()) {
      return refused(std::string(applied.message()));
    }
    if (type == "finish" || type == "abort") end(type);
  }
  if (open.has_value()) end("");
  return messages;
}

std::vector<std::string> ScenarioFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<Json> ReadScenario(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return ParseJson(text.str());
}

Tool NamedTool(const std::string& name, ToolLog* log) {
  Json city = {
      {"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}, {"required", {"city"}}};
  auto record = [log](const std::string& name, const ToolContext& c) {
    std::string call = absl::StrCat(name, ":", c.tool_call_id);
    {
      absl::MutexLock lock(&log->mu);
      log->calls.push_back(call);
    }
    if (log->on_call) log->on_call(call);
  };
  if (name == "weather" || name == "get_weather") {
    return Tool{name, "Current weather for a city", city,
                [record, name](const Json& input, const ToolContext& c) -> absl::StatusOr<Json> {
                  record(name, c);
                  return Json{{"city", input.value("city", "")}, {"tempC", 4}};
                }};
  }
  if (name == "failing") {
    return Tool{name, "Always fails", city,
                [record, name](const Json&, const ToolContext& c) -> absl::StatusOr<Json> {
                  record(name, c);
                  return absl::NotFoundError("City not found");
                }};
  }
  if (name == "del") {
    Tool t{name, "Deletes a file", Json{{"type", "object"}},
           [record, name](const Json&, const ToolContext& c) -> absl::StatusOr<Json> {
             record(name, c);
             return Json{{"deleted", true}};
           }};
    t.needs_approval = true;
    return t;
  }
  if (name == "client") return Tool{name, "Answered by the client", Json{{"type", "object"}}};
  ADD_FAILURE() << "unknown scenario tool " << name;
  return Tool{name};
}

// A hook behaviour from the scenario: {"fail": "text"}, {"close": "reason"}, {"upgrade": true},
// {"end_run": true}, {"return": [...]}, {"write": chunk}.
absl::Status Behave(const Json& spec, ChatControl* control) {
  if (spec.contains("write") && control != nullptr) control->Write(spec["write"]);
  if (spec.contains("close") && control != nullptr) control->Close(StringField(spec, "close"));
  if (spec.value("upgrade", false) && control != nullptr) control->RequestUpgrade();
  if (spec.value("end_run", false) && control != nullptr) control->EndRun();
  if (spec.contains("fail")) return absl::InternalError(StringField(spec, "fail"));
  if (spec.contains("throw")) throw std::runtime_error(StringField(spec, "throw"));
  return absl::OkStatus();
}

Agent BuildAgent(const Json& spec, ToolLog* log) {
  Agent agent;
  agent.id = spec.value("id", "conformance");
  for (const Json& name : spec.value("tools", Json::array())) {
    agent.tools.push_back(NamedTool(name.get<std::string>(), log));
  }
  const Json options = spec.value("options", Json::object());
  auto seconds = [&](const char* key) -> std::optional<absl::Duration> {
    if (!options.contains(key)) return std::nullopt;
    return absl::Milliseconds(options[key].get<double>() * 1000);
  };
  if (auto d = seconds("idle_timeout_s")) agent.options.idle_timeout = *d;
  if (auto d = seconds("turn_timeout_s")) agent.options.turn_timeout = *d;
  if (auto d = seconds("handover_timeout_s")) agent.options.handover_timeout = *d;
  agent.options.preload_idle_timeout = seconds("preload_idle_timeout_s");
  agent.options.preload_timeout = seconds("preload_timeout_s");
  agent.options.exit_after_preload_idle = options.value("exit_after_preload_idle", false);
  agent.options.max_turns = options.value("max_turns", agent.options.max_turns);
  agent.options.max_steps = options.value("max_steps", agent.options.max_steps);
  agent.options.mask_errors = options.value("mask_errors", agent.options.mask_errors);

  const Json hooks = spec.value("hooks", Json::object());
  auto with_control = [&](const char* name) {
    return std::function<absl::Status(ChatControl&)>(
        [s = hooks.value(name, Json::object())](ChatControl& c) { return Behave(s, &c); });
  };
  auto h = [&](const char* name) { return hooks.contains(name); };
  if (h("onBoot")) {
    agent.hooks.on_boot = [f = with_control("onBoot")](const BootEvent&, ChatControl& c) {
      return f(c);
    };
  }
  if (h("onPreload")) {
    agent.hooks.on_preload = [f = with_control("onPreload")](const PreloadEvent&, ChatControl& c) {
      return f(c);
    };
  }
  if (h("onChatStart")) {
    agent.hooks.on_chat_start = [f = with_control("onChatStart")](const ChatStartEvent&,
                                                                  ChatControl& c) { return f(c); };
  }
  if (h("onTurnStart")) {
    agent.hooks.on_turn_start = [f = with_control("onTurnStart")](const TurnStartEvent&,
                                                                  ChatControl& c) { return f(c); };
  }
  if (h("onBeforeTurnComplete")) {
    agent.hooks.on_before_turn_complete = [f = with_control("onBeforeTurnComplete")](
                                              const TurnCompleteEvent&, ChatControl& c) {
      return f(c);
    };
  }
  if (h("onTurnComplete")) {
    agent.hooks.on_turn_complete = [f = with_control("onTurnComplete")](
                                       const TurnCompleteEvent&, ChatControl& c) { return f(c); };
  }
  if (h("onValidateMessages")) {
    agent.hooks.on_validate_messages =
        [s = hooks["onValidateMessages"]](
            const ValidateMessagesEvent& e) -> absl::StatusOr<std::vector<Json>> {
      BATON_RETURN_IF_ERROR(Behave(s, nullptr));
      return e.messages;
    };
  }
  if (h("onAction")) {
    agent.hooks.on_action = [s = hooks["onAction"]](
                                const ActionEvent&,
                                ChatControl& c) -> absl::StatusOr<std::optional<std::string>> {
      BATON_RETURN_IF_ERROR(Behave(s, &c));
      if (s.contains("turn")) return std::optional<std::string>(StringField(s, "turn"));
      return std::optional<std::string>();
    };
  }
  if (h("shouldInjectPending")) {
    agent.hooks.should_inject_pending =
        [s = hooks["shouldInjectPending"]](const PendingMessagesEvent&) -> absl::StatusOr<bool> {
      BATON_RETURN_IF_ERROR(Behave(s, nullptr));
      return s.value("inject", true);
    };
  }
  if (h("onPendingInjected")) {
    agent.hooks.on_pending_injected =
        [s = hooks["onPendingInjected"]](const PendingMessagesEvent&) {
          return Behave(s, nullptr);
        };
  }
  if (h("hydrateMessages")) {
    agent.hooks.hydrate_messages =
        [s = hooks["hydrateMessages"]](
            const HydrateMessagesEvent& e) -> absl::StatusOr<std::vector<Json>> {
      BATON_RETURN_IF_ERROR(Behave(s, nullptr));
      if (s.contains("return")) return std::vector<Json>(s["return"].begin(), s["return"].end());
      return e.previous_messages;
    };
  }
  if (h("prepareMessages")) {
    agent.hooks.prepare_messages =
        [s = hooks["prepareMessages"]](const PrepareMessagesEvent& e) -> absl::StatusOr<Json> {
      BATON_RETURN_IF_ERROR(Behave(s, nullptr));
      return e.messages;
    };
  }
  return agent;
}

Json StackAgentSpec(const Json& scenario, double time_scale) {
  Json spec = scenario.value("agent", Json::object());
  Json options = spec.value("options", Json::object());
  if (const Json* stack = FindField(scenario, "stack")) {
    if (const Json* over = FindField(*stack, "options"); over != nullptr && over->is_object()) {
      for (auto it = over->begin(); it != over->end(); ++it) options[it.key()] = it.value();
    }
  }
  for (auto it = options.begin(); it != options.end(); ++it) {
    if (absl::EndsWith(it.key(), "_s") && it.value().is_number()) {
      *it = it.value().get<double>() * time_scale;
    }
  }
  spec["options"] = options;
  return spec;
}

bool ApplyStep(const Json& step, TestKit& kit, const std::string& where) {
  if (step.contains("refused")) {
    // A record the chat must refuse: a send or a handover, with the error text it must name.
    Json body = step.value("send", Json());
    if (step.contains("handover")) {
      const Json& h = step["handover"];
      body = {{"kind", "handover"},
              {"partialAssistantMessage", h["partialAssistantMessage"]},
              {"messageId", StringField(h, "messageId")},
              {"isFinal", h.value("isFinal", false)}};
    } else if (step.contains("handover_skip")) {
      body = {{"kind", "handover-skip"}};
    }
    absl::StatusOr<int64_t> seq = kit.Send(body);
    EXPECT_FALSE(seq.ok()) << where << ": appended as seq " << (seq.ok() ? *seq : 0);
    if (!seq.ok()) {
      EXPECT_TRUE(absl::StrContains(seq.status().message(), StringField(step, "refused")))
          << where << ": " << seq.status();
    }
    return true;
  }
  if (step.contains("send")) {
    absl::StatusOr<int64_t> seq = kit.Send(step["send"]);
    EXPECT_TRUE(seq.ok()) << where << ": " << seq.status();
  } else if (step.contains("send_text")) {
    kit.SendText(step["send_text"][0], step["send_text"][1]);
  } else if (step.contains("message")) {
    kit.SendMessage(step["message"], step.value("metadata", Json()));
  } else if (step.contains("regenerate")) {
    kit.SendRegenerate();
  } else if (step.contains("stop")) {
    kit.SendStop(step["stop"].is_string() ? step["stop"].get<std::string>() : "");
  } else if (step.contains("close")) {
    kit.SendClose();
  } else if (step.contains("handover")) {
    const Json& h = step["handover"];
    kit.SendHandover(h["partialAssistantMessage"], StringField(h, "messageId"),
                     h.value("isFinal", false));
  } else if (step.contains("handover_skip")) {
    kit.SendHandoverSkip();
  } else if (step.contains("advance_ms")) {
    kit.Advance(absl::Milliseconds(step["advance_ms"].get<double>()));
  } else if (step.contains("cancel")) {
    kit.Cancel();
  } else if (step.contains("reassign")) {
    kit.Reassign();
  } else {
    return false;
  }
  return true;
}

}  // namespace baton::conformance
