// A worker of your own: your agents, baton's worker main (flags, provider, drain on SIGTERM).
#include "runtime/worker/worker_main.h"

int main(int argc, char** argv) {
  return baton::WorkerMain(argc, argv, [](baton::WorkerSetup& setup) {
    baton::Agent agent;
    agent.model = setup.Model();  // --provider, --model, --base_url, --api_key_env
    agent.system = "You are a friendly support agent. Answer in one paragraph.";
    setup.Add("support", std::move(agent));
  });
}
