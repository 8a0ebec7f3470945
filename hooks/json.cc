#include "hooks/json.h"

#include "absl/strings/str_cat.h"

namespace baton {

absl::StatusOr<Json> ParseJson(std::string_view text) {
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
