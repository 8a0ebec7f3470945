#include "tasks/agents.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"

namespace baton::tasks {

Agent ChatAgent(std::shared_ptr<LanguageModel> model) {
  Agent agent;
  agent.id = "chat";
  agent.model = std::move(model);
  agent.system = "You are a helpful assistant. Answer briefly.";
  return agent;
}

Agent WeatherAgent(std::shared_ptr<LanguageModel> model) {
  Agent agent;
  agent.id = "weather";
  agent.model = std::move(model);
  agent.system = "You answer questions about the weather. Use get_weather for live data.";
  agent.tools.push_back(
      Tool{.name = "get_weather",
           .description = "Current weather for a city",
           .input_schema = {{"type", "object"},
                            {"properties", {{"city", {{"type", "string"}}}}},
                            {"required", {"city"}}},
           .execute = [](const Json& input, const ToolContext&) -> absl::StatusOr<Json> {
             static const std::map<std::string, int> kTemperatures = {
                 {"Oslo", 4}, {"Lisbon", 19}, {"Nairobi", 24}};
             std::string city = input.value("city", "");
             auto it = kTemperatures.find(city);
             if (it == kTemperatures.end()) return absl::NotFoundError("City not found");
             return Json{{"city", city}, {"tempC", it->second}};
           }});
  return agent;
}

Agent FilesAgent(std::shared_ptr<LanguageModel> model) {
  Agent agent;
  agent.id = "files";
  agent.model = std::move(model);
  agent.system = "You manage the user's notes. Ask before deleting anything.";
  Json path_schema = {
      {"type", "object"}, {"properties", {{"path", {{"type", "string"}}}}}, {"required", {"path"}}};
  agent.tools.push_back(
      Tool{.name = "read_file",
           .description = "Reads a note",
           .input_schema = path_schema,
           .execute = [](const Json& input, const ToolContext&) -> absl::StatusOr<Json> {
             std::string path = input.value("path", "");
             if (path != "todo.txt")
               return absl::NotFoundError(absl::StrCat("no such file: ", path));
             return Json("buy milk");
           }});
  agent.tools.push_back(
      Tool{.name = "delete_file",
           .description = "Deletes a note",
           .input_schema = path_schema,
           .execute = [](const Json& input, const ToolContext&) -> absl::StatusOr<Json> {
             return Json{{"deleted", input.value("path", "")}};
           },
           .needs_approval = true});
  return agent;
}

Agent LookupAgent(std::shared_ptr<LanguageModel> model) {
  Agent agent;
  agent.id = "lookup";
  agent.model = std::move(model);
  agent.system = "You look values up.";
  agent.options.max_steps = 5;
  agent.tools.push_back(
      Tool{.name = "lookup",
           .description = "Looks a key up",
           .input_schema = {{"type", "object"},
                            {"properties", {{"key", {{"type", "string"}}}}},
                            {"required", {"key"}},
                            {"additionalProperties", false}},
           .execute = [](const Json& input, const ToolContext&) -> absl::StatusOr<Json> {
             std::string key = input.value("key", "");
             return Json{{"key", key}, {"value", "v-" + key}, {"found", true}};
           }});
  return agent;
}

}  // namespace baton::tasks
