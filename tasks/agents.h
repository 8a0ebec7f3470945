// File: tasks/agents.h
//
// Example agents, written against baton's public API exactly as a user's own agents would be.
//   chat       answers in text
//   weather    has a get_weather tool, so an answer takes a step-2 model call
//   files      delete_file needs the user's approval; read_file fails on a missing file
#ifndef BATON_TASKS_AGENTS_H_
#define BATON_TASKS_AGENTS_H_

#include <memory>

#include "hooks/agent.h"

namespace baton::tasks {

Agent ChatAgent(std::shared_ptr<LanguageModel> model);
Agent WeatherAgent(std::shared_ptr<LanguageModel> model);
Agent FilesAgent(std::shared_ptr<LanguageModel> model);
// Issue 15's workload (docs/BENCHMARKS.md, BM_ChatTurns): one tool, `lookup`, that returns
// {"key": k, "value": "v-" + k, "found": true}; at most 5 steps a turn.
Agent LookupAgent(std::shared_ptr<LanguageModel> model);

}  // namespace baton::tasks

#endif  // BATON_TASKS_AGENTS_H_
