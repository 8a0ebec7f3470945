// File: runtime/base/log.h
//
// Structured logs: one JSON object per line on stderr, with a time, a level, a message and the
// fields that locate it (worker, run, attempt, trace ids). Each line is one write(2), so lines of
// concurrent threads never interleave. API keys and tokens must never be passed as fields.
#ifndef BATON_RUNTIME_BASE_LOG_H_
#define BATON_RUNTIME_BASE_LOG_H_

#include <string_view>

#include "hooks/json.h"

namespace baton {

// Levels, lowest first: "debug", "info", "warn", "error". BATON_LOG_LEVEL in the environment
// sets the lowest level written (default "info"); "off" writes nothing.
void LogJson(std::string_view level, std::string_view message, Json fields = Json::object());

}  // namespace baton

#endif  // BATON_RUNTIME_BASE_LOG_H_
