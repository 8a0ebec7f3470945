// File: hooks/json.h
//
// Arbitrary JSON in baton (tool inputs and outputs, provider metadata, client data, UI and model
// messages) is an insertion-ordered nlohmann::json, so key order survives a round trip.
#ifndef BATON_HOOKS_JSON_H_
#define BATON_HOOKS_JSON_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace baton {

using Json = nlohmann::ordered_json;

// ParseJson()
//
// Parses `text` as one JSON value. Returns InvalidArgument naming the byte offset on bad input;
// never throws.
absl::StatusOr<Json> ParseJson(std::string_view text);

// DumpJson()
//
// Compact serialization. Invalid UTF-8 in strings is replaced with U+FFFD rather than throwing.
std::string DumpJson(const Json& value);

// Field accessors that tolerate missing keys and wrong types (untrusted input).
std::string StringField(const Json& object, std::string_view key);
bool BoolField(const Json& object, std::string_view key, bool fallback = false);
int64_t IntField(const Json& object, std::string_view key, int64_t fallback = 0);
const Json* FindField(const Json& object, std::string_view key);

}  // namespace baton

#endif  // BATON_HOOKS_JSON_H_
