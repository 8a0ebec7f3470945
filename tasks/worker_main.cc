// baton-worker: hosts the example agents of tasks/ for an orchestrator (docs/worker.md).
//   chat     answers in text
//   weather  get_weather: an answer takes a step-2 model call
//   files    delete_file needs approval; read_file fails on a missing file
#include "runtime/worker/worker_main.h"

#include "tasks/agents.h"

int main(int argc, char** argv) {
  return baton::WorkerMain(argc, argv, [](baton::WorkerSetup& setup) {
    setup.Add("chat", baton::tasks::ChatAgent(setup.Model()));
    setup.Add("weather", baton::tasks::WeatherAgent(setup.Model()));
    setup.Add("files", baton::tasks::FilesAgent(setup.Model()));
    setup.Add("lookup", baton::tasks::LookupAgent(setup.Model()));
  });
}
