// File: hooks/json.h
//
// Arbitrary JSON in baton (tool inputs and outputs, provider metadata, client data, UI and model
// messages) is an insertion-ordered nlohmann::json, so key order survives a round trip.
#ifndef BATON_HOOKS_JSON_H_
#define BATON_HOOKS_JSON_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace baton {

using Json = nlohmann::ordered_json;

// Nesting limits (docs/bad-input.md, "Nesting"). Copying, comparing and dumping an nlohmann value
// recurse once per level, and so does parsing once an object gains a member after a deep one
// (ordered_json's objects grow by copying their members): a value nested deeply enough (100,000
// levels fit in 200 KB of text) overflows the stack of whatever process holds it. So nesting is
// bounded where JSON enters baton, and nothing deeper is ever built.
//
// kMaxDataDepth bounds JSON that comes from outside baton or from user code: `.in` records and
// CreateSession payloads (and what they carry: messages, metadata, handover partials), a
// provider's events and its tool-call arguments, a tool's output, what a hook returns or
// writes. Levels count from 1 for the outermost array or object; a scalar is depth 0.
inline constexpr int kMaxDataDepth = 128;
// kMaxToolInputDepth bounds a model's tool-call arguments: 8 levels fewer than other data, so
// that a head start's handover record, which carries them 5 levels down
// (partialAssistantMessage[].content[].input), is always a record the orchestrator takes.
inline constexpr int kMaxToolInputDepth = kMaxDataDepth - 8;
// kMaxJsonDepth bounds every JSON text baton parses, its own documents too (snapshots, provider
// requests, assignments; `.out` chunks have kMaxChunkDepth, hooks/records.h): they wrap data of
// at most kMaxDataDepth in a few levels of their own, so whatever baton builds around data stays
// well inside this limit.
inline constexpr int kMaxJsonDepth = 256;

// ParseJson()
//
// Parses `text` as one JSON value nested at most `max_depth` levels. Returns InvalidArgument on
// bad input: "invalid JSON at byte N", or "JSON nests deeper than D levels at byte N" (N counts
// from 1); never throws. The depth is checked first by a linear scan of the text, so a document
// nested too deeply is never built.
absl::StatusOr<Json> ParseJson(std::string_view text, int max_depth = kMaxJsonDepth);

// JsonTextTooDeep()
//
// The offset (from 0) of the `[` or `{` that opens level `max_depth` + 1 in `text`, or npos
// when the text nests no deeper than `max_depth`. Linear and without recursion; strings (with
// their escapes) are skipped. On text that is not JSON it counts brackets outside strings, at
// least as deep as any parser would get before it fails.
size_t JsonTextTooDeep(std::string_view text, int max_depth);

// CheckJsonTextDepth()
//
// OK, or InvalidArgument "<what> nests deeper than D levels at byte N".
absl::Status CheckJsonTextDepth(std::string_view text, int max_depth, std::string_view what);

// JsonDepth()
//
// How deeply `value` nests (0 for a scalar, 1 for a flat array or object), counting no further
// than `max_depth` + 1: the walk stops at the first level deeper than `max_depth`. Iterative,
// with an explicit stack, so it is safe on any value, however deep.
int JsonDepth(const Json& value, int max_depth = kMaxJsonDepth);

// CheckJsonDepth()
//
// OK, or InvalidArgument "<what> nests deeper than D levels". For JSON that user code builds in
// C++ (a tool's output, what a hook returns), before baton copies or serializes it.
absl::Status CheckJsonDepth(const Json& value, int max_depth, std::string_view what);

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
