#include "runtime/base/flags.h"

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"

namespace baton {

bool HelpListsFlagsOf(std::string_view file) {
  return file.find("absl/") == std::string_view::npos;
}

void SetUpHelp(std::string_view usage) {
  absl::SetProgramUsageMessage(absl::string_view(usage.data(), usage.size()));
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return HelpListsFlagsOf(std::string_view(file.data(), file.size()));
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace baton
