#include "engine/tokenizer/utf8.h"

#include <cstdint>

namespace packd::engine {

Utf8Step ReadUtf8(std::string_view s, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) return {Utf8Step::Kind::kChar, 1, b0};
  // Length and the range allowed for the second byte (Unicode Table 3-7);
  // later continuation bytes are always 80..BF.
  int length = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  char32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {Utf8Step::Kind::kInvalid, 1, 0};  // 80..C1, F5..FF never start a character
  }
  for (int i = 1; i < length; ++i) {
    if (pos + i >= s.size()) return {Utf8Step::Kind::kIncomplete, i, 0};
    const uint8_t b = byte(pos + i);
    if (b < lo || b > hi) return {Utf8Step::Kind::kInvalid, i, 0};
    cp = (cp << 6) | (b & 0x3F);
    lo = 0x80;
    hi = 0xBF;
  }
  return {Utf8Step::Kind::kChar, length, cp};
}

std::optional<size_t> FindInvalidUtf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    // ASCII fast path.
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Utf8Step step = ReadUtf8(s, pos);
    if (step.kind != Utf8Step::Kind::kChar) return pos;
    pos += step.length;
  }
  return std::nullopt;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t AppendValidUtf8(std::string_view bytes, std::string* out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Utf8Step step = ReadUtf8(bytes, pos);
    switch (step.kind) {
      case Utf8Step::Kind::kChar:
        out->append(bytes.substr(pos, step.length));
        break;
      case Utf8Step::Kind::kInvalid:
        out->append(kReplacementCharacter);
        break;
      case Utf8Step::Kind::kIncomplete:
        return bytes.size() - pos;
    }
    pos += step.length;
  }
  return 0;
}

std::string ReplaceInvalidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  if (AppendValidUtf8(s, &out) != 0) out.append(kReplacementCharacter);
  return out;
}

}  // namespace packd::engine
