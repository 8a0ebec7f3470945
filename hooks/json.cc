#include "hooks/json.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace baton {

size_t JsonTextTooDeep(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;  // the character after a backslash, whatever it is
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

absl::Status CheckJsonTextDepth(std::string_view text, int max_depth, std::string_view what) {
  size_t at = JsonTextTooDeep(text, max_depth);
  if (at == std::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(std::string(what), " nests deeper than ",
                                                 max_depth, " levels at byte ", at + 1));
}

int JsonDepth(const Json& value, int max_depth) {
  if (!value.is_structured()) return 0;
  // One entry per open level: where the walk is in that array or object, and its end.
  std::vector<std::pair<Json::const_iterator, Json::const_iterator>> open;
  open.emplace_back(value.cbegin(), value.cend());
  int deepest = 1;
  while (!open.empty()) {
    auto& [at, end] = open.back();
    if (at == end) {
      open.pop_back();
      continue;
    }
    const Json& child = *at;
    ++at;
    if (!child.is_structured()) continue;
    int level = static_cast<int>(open.size()) + 1;
    deepest = std::max(deepest, level);
    if (level > max_depth) return level;
    open.emplace_back(child.cbegin(), child.cend());
  }
  return deepest;
}

absl::Status CheckJsonDepth(const Json& value, int max_depth, std::string_view what) {
  if (JsonDepth(value, max_depth) <= max_depth) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(what), " nests deeper than ", max_depth, " levels"));
}

absl::StatusOr<Json> ParseJson(std::string_view text, int max_depth) {
  // Before nlohmann builds anything: a value too deep would crash whoever copies or dumps it.
  if (absl::Status depth = CheckJsonTextDepth(text, max_depth, "JSON"); !depth.ok()) return depth;
  Json value = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    // Re-parse with exceptions only to learn where it broke; bad input is the rare path.
    try {
      Json ignored = Json::parse(text);
      static_cast<void>(ignored);
    } catch (const Json::parse_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", e.byte));
    } catch (const Json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
    }
    return absl::InvalidArgumentError("invalid JSON");
  }
  return value;
}

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string ToValidUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    auto byte = [&](size_t at) { return static_cast<unsigned char>(text[at]); };
    unsigned char c = byte(i);
    size_t length = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xe  ? 3
                    : (c >> 3) == 0x1e ? 4
                                       : 0;
    bool ok = length > 0 && i + length <= text.size();
    for (size_t k = 1; ok && k < length; ++k) ok = (byte(i + k) & 0xc0) == 0x80;
    if (ok && length > 1) {
      uint32_t cp = c & (0xff >> (length + 1));
      for (size_t k = 1; k < length; ++k) cp = (cp << 6) | (byte(i + k) & 0x3f);
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[length] && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
    }
    if (ok) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out.append("\xef\xbf\xbd");  // U+FFFD for one bad byte; resynchronise on the next
      i += 1;
    }
  }
  return out;
}

namespace {

// The longest prefix of `text` of at most `max_bytes` that does not end inside a character.
std::string_view CharacterPrefix(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
  return text.substr(0, cut);
}

std::string SizeSuffix(size_t bytes) {
  return "\xe2\x80\xa6 (" + std::to_string(bytes) + " bytes)";
}

}  // namespace

std::string ClipText(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::string suffix = SizeSuffix(text.size());
  size_t room = max_bytes > suffix.size() ? max_bytes - suffix.size() : 0;
  return std::string(CharacterPrefix(text, room)) + suffix;
}

std::string Quoted(std::string_view value, size_t max_bytes) {
  std::string_view shown = CharacterPrefix(value, max_bytes);
  std::string out = "\"";
  for (char ch : shown) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  out += '"';
  if (shown.size() < value.size()) out += SizeSuffix(value.size());
  return out;
}

const Json* FindField(const Json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string StringField(const Json& object, std::string_view key) {
  const Json* field = FindField(object, key);
  return field != nullptr && field->is_string() ? field->get<std::string>() : std::string();
}

}  // namespace baton

namespace baton {

int64_t IntField(const Json& object, std::string_view key, int64_t fallback) {
  const Json* field = FindField(object, key);
  return field != nullptr && field->is_number_integer() ? field->get<int64_t>() : fallback;
}

bool BoolField(const Json& object, std::string_view key, bool fallback) {
  const Json* field = FindField(object, key);
  return field != nullptr && field->is_boolean() ? field->get<bool>() : fallback;
}

}  // namespace baton
