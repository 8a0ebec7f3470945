#include "runtime/transcript/ui_chunk.h"

#include <array>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "hooks/records.h"

namespace baton {

namespace {

// What becomes of each byte in a JSON string: kPlain bytes are copied, kEscaped ones written as
// an escape, kOther ones (outside ASCII) start a UTF-8 sequence to check.
enum ByteClass : unsigned char { kPlain, kEscaped, kOther };

constexpr std::array<ByteClass, 256> kByteClass = [] {
  std::array<ByteClass, 256> classes{};
  for (int b = 0; b < 256; ++b) {
    classes[b] = b >= 0x80 ? kOther : (b < 0x20 || b == '"' || b == '\\') ? kEscaped : kPlain;
  }
  return classes;
}();

void AppendEscape(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default: {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    }
  }
}

// The length of the well-formed UTF-8 sequence starting at text[i] (Unicode's table 3-7: no
// overlong forms, no surrogates, nothing past U+10FFFF; what nlohmann's decoder takes), or 0.
size_t Utf8Length(std::string_view text, size_t i) {
  auto in = [&](size_t k, unsigned lo, unsigned hi) {
    if (i + k >= text.size()) return false;
    const unsigned c = static_cast<unsigned char>(text[i + k]);
    return c >= lo && c <= hi;
  };
  auto tail = [&](size_t from, size_t to) {
    for (size_t k = from; k <= to; ++k) {
      if (!in(k, 0x80, 0xBF)) return false;
    }
    return true;
  };
  const unsigned c = static_cast<unsigned char>(text[i]);
  if (c >= 0xC2 && c <= 0xDF) return tail(1, 1) ? 2 : 0;
  if (c == 0xE0) return in(1, 0xA0, 0xBF) && tail(2, 2) ? 3 : 0;
  if (c == 0xED) return in(1, 0x80, 0x9F) && tail(2, 2) ? 3 : 0;
  if (c >= 0xE1 && c <= 0xEF) return tail(1, 2) ? 3 : 0;
  if (c == 0xF0) return in(1, 0x90, 0xBF) && tail(2, 3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return tail(1, 3) ? 4 : 0;
  if (c == 0xF4) return in(1, 0x80, 0x8F) && tail(2, 3) ? 4 : 0;
  return 0;
}

// `"name":`, for the field names this file's callers write: plain ASCII, nothing to escape.
void AppendName(std::string& out, std::string_view name) {
  out.push_back('"');
  out.append(name);
  out += "\":";
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view text) {
  const size_t start = out.size();
  out.push_back('"');
  size_t plain = 0;  // start of the run of bytes copied as they are
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const ByteClass k = kByteClass[c];
    if (k == kPlain) continue;
    if (k == kOther) {
      // Well-formed UTF-8 is copied as it is, as nlohmann does. What is not, nlohmann replaces
      // in its own way: such a string is written by it, so the bytes stay the same.
      const size_t length = Utf8Length(text, i);
      if (length == 0) {
        out.resize(start);
        out += DumpJson(Json(std::string(text)));
        return;
      }
      i += length - 1;
      continue;
    }
    out.append(text.data() + plain, i - plain);
    plain = i + 1;
    AppendEscape(out, c);
  }
  out.append(text.data() + plain, text.size() - plain);
  out.push_back('"');
}

std::string ChunkText(std::string_view type, std::initializer_list<ChunkField> fields) {
  size_t size = type.size() + 12;
  for (const ChunkField& f : fields) size += f.key.size() + f.value.size() + 6;
  std::string out;
  out.reserve(size);
  out += "{\"type\":\"";
  out.append(type);
  out.push_back('"');
  for (const ChunkField& f : fields) {
    out.push_back(',');
    AppendName(out, f.key);
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
