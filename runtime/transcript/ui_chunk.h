// File: runtime/transcript/ui_chunk.h
//
// UI chunks written straight to their JSON text. A turn writes dozens of chunks per model step,
// nearly all of them a type and one or two strings (`text-delta` {id, delta}); building a JSON
// tree for each, only to dump it and throw it away, was most of a chunk's cost. The text made
// here is byte for byte what DumpJson writes for the same fields in the same order, so a reader
// cannot tell which way a chunk was made.
#ifndef BATON_RUNTIME_TRANSCRIPT_UI_CHUNK_H_
#define BATON_RUNTIME_TRANSCRIPT_UI_CHUNK_H_

#include <initializer_list>
#include <string>
#include <string_view>

#include "hooks/json.h"

namespace baton {

// Appends `text` as a JSON string: the bytes DumpJson(Json(text)) writes (escaped as nlohmann
// does it, lower-case \u00XX for other control characters; well-formed UTF-8 as it is; a string
// with invalid UTF-8 is handed to nlohmann, which replaces what is invalid).
void AppendJsonString(std::string& out, std::string_view text);

struct ChunkField {
  std::string_view key;
  std::string_view value;
};

// {"type":<type>,<key>:<value>,...}: a chunk of string fields, in the order given. The type and
// the keys are the runtime's own names (plain ASCII, written as they are); the values any text.
std::string ChunkText(std::string_view type, std::initializer_list<ChunkField> fields = {});

// A chunk given as a tree, as text: DumpJson, unless it nests deeper than kMaxChunkDepth, when it
// is an `error` chunk saying what was dropped instead (`why`, when given, gets the same words,
// for the log). Nothing baton accepts nests that deep (docs/bad-input.md): dumping such a tree
// could overflow the stack, and no orchestrator would store it.
std::string DumpChunk(const Json& chunk, std::string* why = nullptr);

}  // namespace baton

#endif  // BATON_RUNTIME_TRANSCRIPT_UI_CHUNK_H_
