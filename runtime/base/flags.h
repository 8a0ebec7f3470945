// File: runtime/base/flags.h
//
// `--help` for every baton binary. absl lists only the flags defined in the binary's own source
// file (<program>.cc), and baton's flags live in libraries (runtime/worker/worker_main.cc) or in
// a main.cc: without this, `baton-worker --help` answers "No flags matched".
#ifndef BATON_RUNTIME_BASE_FLAGS_H_
#define BATON_RUNTIME_BASE_FLAGS_H_

#include <string_view>

namespace baton {

// Sets the usage line and makes --help and --helpshort list every flag but absl's own (those
// stay in --helpfull). Call before absl::ParseCommandLine.
void SetUpHelp(std::string_view usage);

// Whether --help lists the flags defined in `file` (a __FILE__ path): all but absl's.
bool HelpListsFlagsOf(std::string_view file);

}  // namespace baton

#endif  // BATON_RUNTIME_BASE_FLAGS_H_
