// File: tools/bench/bench_main.h
//
// The main of baton's benchmark binaries. Google Benchmark's own main exits 0 even when a
// benchmark ended with SkipWithError, so a benchmark that broke (a stack that no longer takes
// its load, say) would go unnoticed: this one exits 1 when any did. With `--smoke` it tells the
// binary to register short runs, for ctest (tools/bench/CMakeLists.txt): each benchmark must
// run to its end; how fast it is stays docs/BENCHMARKS.md's business, never a test's.
#ifndef BATON_TOOLS_BENCH_BENCH_MAIN_H_
#define BATON_TOOLS_BENCH_BENCH_MAIN_H_

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "benchmark/benchmark.h"

namespace baton::bench {

// Counts the runs that ended with an error while printing as the console reporter does.
class ErrorCountingReporter final : public benchmark::ConsoleReporter {
 public:
  // Colours on a terminal only: ctest keeps the output as a log.
  ErrorCountingReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) ++errors_;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  int errors() const { return errors_; }

 private:
  int errors_ = 0;
};

// Takes `--smoke` out of the arguments, calls `register_benchmarks(smoke)`, runs the benchmarks
// the other arguments select; 1 when one of them failed or none ran, else 0.
inline int BenchMain(int argc, char** argv,
                     const std::function<void(bool smoke)>& register_benchmarks) {
  bool smoke = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (i > 0 && std::strcmp(argv[i], "--smoke") == 0) {
      smoke = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  int count = static_cast<int>(args.size());
  args.push_back(nullptr);
  register_benchmarks(smoke);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  ErrorCountingReporter reporter;
  size_t ran = benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (reporter.errors() > 0) {
    std::fprintf(stderr, "%d benchmark(s) failed\n", reporter.errors());
    return 1;
  }
  if (ran == 0) {
    std::fprintf(stderr, "no benchmark matched\n");
    return 1;
  }
  return 0;
}

}  // namespace baton::bench

#endif  // BATON_TOOLS_BENCH_BENCH_MAIN_H_
