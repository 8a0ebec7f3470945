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

// ToValidUtf8()
//
// `text` with every byte sequence that is not well-formed UTF-8 (stray continuation bytes,
// truncated or overlong sequences, surrogates, code points above U+10FFFF) replaced by U+FFFD,
// as DumpJson does inside JSON. For text from user code that goes into a protobuf string field,
// which a receiver refuses to parse otherwise.
std::string ToValidUtf8(std::string_view text);

// ClipText()
//
// `text` as is when it fits `max_bytes`; otherwise cut at a character boundary and followed by
// "… (N bytes)", N the size of the whole text, the result at most `max_bytes` long (for
// `max_bytes` of at least 32). For text that goes where size is bounded: a gRPC status message
// is sent whole or not at all (docs/bad-input.md).
std::string ClipText(std::string_view text, size_t max_bytes);

// Quoted()
//
// A caller's value for an error or a log message: in double quotes, with `"`, `\` and control
// characters escaped, and, when longer than `max_bytes`, cut at a character boundary with
// "… (N bytes)" after the closing quote. Error messages quote input only through this, so no
// input makes a message unbounded.
inline constexpr size_t kQuotedBytes = 64;
std::string Quoted(std::string_view value, size_t max_bytes = kQuotedBytes);

// Field accessors that tolerate missing keys and wrong types (untrusted input).
std::string StringField(const Json& object, std::string_view key);
bool BoolField(const Json& object, std::string_view key, bool fallback = false);
int64_t IntField(const Json& object, std::string_view key, int64_t fallback = 0);
const Json* FindField(const Json& object, std::string_view key);

}  // namespace baton

#endif  // BATON_HOOKS_JSON_H_
