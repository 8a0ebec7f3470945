#include "runtime/base/log.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace baton {
namespace {

int Rank(std::string_view level) {
  if (level == "debug") return 0;
  if (level == "info") return 1;
  if (level == "warn") return 2;
  if (level == "error") return 3;
  return 4;  // "off"
}

int Threshold() {
  static const int threshold = [] {
    const char* env = std::getenv("BATON_LOG_LEVEL");
    return env == nullptr ? Rank("info") : Rank(env);
  }();
  return threshold;
}

}  // namespace

void LogJson(std::string_view level, std::string_view message, Json fields) {
  if (Rank(level) < Threshold()) return;
  Json line = Json::object();
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = level;
  line["msg"] = message;
  if (fields.is_object()) {
    for (auto& [key, value] : fields.items()) line[key] = std::move(value);
  }
  std::string text = DumpJson(line);
  text.push_back('\n');
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
}

}  // namespace baton
