// File: runtime/worker/worker_main.h
//
// WorkerMain: the whole main of a worker process, for baton's own worker (tasks/) and a user's
// alike. It parses the worker's flags (orchestrator address, capacity, provider and model,
// admin and health endpoints), lets the caller register its agents with a model built from
// those flags, serves until SIGTERM or SIGINT, then drains (a second signal exits at once).
//
//   int main(int argc, char** argv) {
//     return baton::WorkerMain(argc, argv, [](baton::WorkerSetup& setup) {
//       baton::Agent agent;
//       agent.model = setup.Model();
//       agent.system = "You are a helpful assistant.";
//       setup.Add("assistant", std::move(agent));
//     });
//   }
//
// docs/worker.md lists the flags.
#ifndef BATON_RUNTIME_WORKER_WORKER_MAIN_H_
#define BATON_RUNTIME_WORKER_WORKER_MAIN_H_

#include <functional>
#include <memory>
#include <string>

#include "hooks/agent.h"

namespace baton {

class WorkerSetup {
 public:
  virtual ~WorkerSetup() = default;
  // The model the flags describe (--provider, --model, --base_url, --api_key_env), shared by
  // every agent that takes it.
  virtual std::shared_ptr<LanguageModel> Model() = 0;
  // Hosts `agent` under `name` (the name clients give CreateSession).
  virtual void Add(const std::string& name, Agent agent) = 0;
};

int WorkerMain(int argc, char** argv, const std::function<void(WorkerSetup&)>& register_agents);

}  // namespace baton

#endif  // BATON_RUNTIME_WORKER_WORKER_MAIN_H_
