#include "runtime/transcript/ui_chunk.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "hooks/records.h"

namespace baton {

void AppendJsonString(std::string& out, std::string_view text) {
  for (char c : text) {
    // Outside ASCII, nlohmann checks the UTF-8 and replaces what is invalid in its own way:
    // such a string is written by it, so the bytes stay the same.
    if (static_cast<unsigned char>(c) >= 0x80) {
      out += DumpJson(Json(std::string(text)));
      return;
    }
  }
  out.push_back('"');
  size_t plain = 0;  // start of the run of bytes copied as they are
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        char escaped[8];
        std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
        out += escaped;
      }
    }
  }
  out.append(text.data() + plain, text.size() - plain);
  out.push_back('"');
}

std::string ChunkText(std::string_view type, std::initializer_list<ChunkField> fields) {
  size_t size = type.size() + 12;
  for (const ChunkField& f : fields) size += f.key.size() + f.value.size() + 6;
  std::string out;
  out.reserve(size);
  out += "{\"type\":";
  AppendJsonString(out, type);
  for (const ChunkField& f : fields) {
    out.push_back(',');
    AppendJsonString(out, f.key);
    out.push_back(':');
    AppendJsonString(out, f.value);
  }
  out.push_back('}');
  return out;
}

std::string DumpChunk(const Json& chunk, std::string* why) {
  if (JsonDepth(chunk, kMaxChunkDepth) <= kMaxChunkDepth) return DumpJson(chunk);
  std::string what = absl::StrCat("a \"", StringField(chunk, "type"), "\" chunk nests deeper than ",
                                  kMaxChunkDepth, " levels and was dropped");
  std::string text = ChunkText("error", {{"errorText", what}});
  if (why != nullptr) *why = std::move(what);
  return text;
}

}  // namespace baton
