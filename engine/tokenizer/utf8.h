// UTF-8 reading for the tokenizers: validation of input text, code point
// iteration, and the U+FFFD substitution used when detokenized bytes are not
// valid UTF-8.
//
// Well-formed means Unicode's Table 3-7: no overlong forms, no surrogates,
// nothing above U+10FFFF. Invalid bytes are replaced per "maximal subpart"
// (Unicode §3.9, the WHATWG decoder's rule): each maximal prefix of a
// well-formed sequence that cannot be completed, or each lone bad byte,
// becomes one U+FFFD.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace packd::engine {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// One step of reading UTF-8 at a position.
struct Utf8Step {
  enum class Kind {
    kChar,        // a well-formed character of `length` bytes
    kIncomplete,  // the text ends inside a character that is well-formed so far
    kInvalid,     // a maximal invalid subpart of `length` bytes (>= 1)
  };
  Kind kind = Kind::kChar;
  int length = 0;
  char32_t code_point = 0;  // kChar only
};

// Reads the sequence starting at s[pos]; requires pos < s.size().
Utf8Step ReadUtf8(std::string_view s, size_t pos);

// The byte offset of the first byte that does not belong to a well-formed
// character (an incomplete final character included), or nullopt.
std::optional<size_t> FindInvalidUtf8(std::string_view s);

// Appends the UTF-8 encoding of `cp` (which must be a scalar value).
void AppendUtf8(char32_t cp, std::string* out);

// Appends `bytes` to `out` with every maximal invalid subpart replaced by
// U+FFFD, except a trailing incomplete character, which is not consumed:
// returns its length (0 when `bytes` ends on a character boundary). Feeding
// the unconsumed tail back in front of the next chunk gives the same result
// as ReplaceInvalidUtf8 over the concatenation.
size_t AppendValidUtf8(std::string_view bytes, std::string* out);

// `s` with every maximal invalid subpart (a trailing incomplete character
// included) replaced by U+FFFD.
std::string ReplaceInvalidUtf8(std::string_view s);

}  // namespace packd::engine
