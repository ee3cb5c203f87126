// Regular expressions of tokenizer files (Hugging Face Split, Replace and
// pre-tokenizer patterns) through ICU's regex engine, over UTF-8 text.
//
// The patterns are written for Oniguruma (Hugging Face tokenizers) and read
// the same way by ICU, with one change: `\s` / `\S` mean JavaScript's
// whitespace (IsTokenizerWhitespace), as transformers.js, packd's reference,
// reads them, instead of ICU's [\t\n\f\r\p{Z}]. (Oniguruma's is the Unicode
// White_Space property: the two differ only on U+0085 and U+FEFF.)
//
// Work is bounded: a match that takes more than a few seconds' worth of
// steps (a pathological pattern such as (a+)+b on a long run of a's) ends
// with an error instead of hanging.
#pragma once

#include <unicode/uversion.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

U_NAMESPACE_BEGIN
class RegexPattern;
U_NAMESPACE_END

namespace packd::engine {

// Immutable after Compile; const methods are thread-safe.
class Regex {
 public:
  // `where` names the pattern in errors ("tokenizer.json: pre_tokenizer.pattern").
  static absl::StatusOr<Regex> Compile(std::string_view pattern, std::string_view where);
  // A pattern matching `literal` exactly (found by plain string search).
  static absl::StatusOr<Regex> Literal(std::string_view literal, std::string_view where);

  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // The non-empty matches in `text` (valid UTF-8), leftmost first and not
  // overlapping, as byte ranges [begin, end).
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> FindAll(std::string_view text) const;

  // `text` with every match replaced by `replacement` (taken literally).
  absl::StatusOr<std::string> ReplaceAll(std::string_view text, std::string_view replacement) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;  // as written in the file
  std::string where_;
  bool literal_ = false;  // pattern_ is a plain string: found without ICU
  std::unique_ptr<icu::RegexPattern> compiled_;
};

// The whitespace of `\s` and of every tokenizer stage that strips or splits
// at whitespace: U+0009..U+000D, the space separators (Zs), U+2028, U+2029
// and U+FEFF (JavaScript's set; String.prototype.trim strips the same).
bool IsTokenizerWhitespace(char32_t c);

}  // namespace packd::engine
