#include "engine/tokenizer/regex.h"

#include <unicode/regex.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace packd::engine {
namespace {

// Match-engine steps one find may take (ICU counts in units of roughly
// 10,000 operations: this is some seconds of work at worst, far more than any
// real pattern needs on a text piece).
constexpr int32_t kTimeLimitSteps = 5000;
// All the finds over one text.
constexpr std::chrono::seconds kSearchDeadline{10};
// Backtracking stack per find.
constexpr int32_t kStackLimitBytes = 16 << 20;

// The text as UTF-16 with, for every UTF-16 index, the byte offset in the
// UTF-8 text (one entry more than the code units, for the end).
struct Utf16Text {
  icu::UnicodeString text;
  std::vector<uint32_t> byte_offset;

  explicit Utf16Text(std::string_view utf8) {
    byte_offset.reserve(utf8.size() + 1);
    size_t pos = 0;
    while (pos < utf8.size()) {
      const Utf8Step step = ReadUtf8(utf8, pos);
      const size_t length = step.length > 0 ? step.length : 1;
      const UChar32 cp =
          step.kind == Utf8Step::Kind::kChar ? static_cast<UChar32>(step.code_point) : 0xFFFD;
      text.append(cp);
      byte_offset.push_back(static_cast<uint32_t>(pos));
      if (U16_LENGTH(cp) == 2) byte_offset.push_back(static_cast<uint32_t>(pos));
      pos += length;
    }
    byte_offset.push_back(static_cast<uint32_t>(utf8.size()));
  }
};

std::string IcuErrorText(UErrorCode code) { return u_errorName(code); }

// JavaScript's \s (ECMAScript WhiteSpace and LineTerminator): tab to carriage
// return, the space separators (Zs), U+2028, U+2029 and U+FEFF. A set nested
// in a class ([^\s\p{L}]) is a union member in ICU's syntax.
constexpr std::string_view kWhitespaceSet = R"([\t-\r\p{Zs}\u2028\u2029\ufeff])";
constexpr std::string_view kNonWhitespaceSet = R"([^\t-\r\p{Zs}\u2028\u2029\ufeff])";

// The pattern for ICU: \s and \S become JavaScript's whitespace sets.
std::string RegexForIcu(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 16);
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c != '\\' || i + 1 == pattern.size()) {
      out.push_back(c);
      continue;
    }
    const char next = pattern[++i];
    if (next == 's') {
      out.append(kWhitespaceSet);
    } else if (next == 'S') {
      out.append(kNonWhitespaceSet);
    } else {
      out.push_back('\\');
      out.push_back(next);
    }
  }
  return out;
}

}  // namespace

bool IsTokenizerWhitespace(char32_t c) {
  return (c >= '\t' && c <= '\r') || c == 0x2028 || c == 0x2029 || c == 0xFEFF ||
         u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
}

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern, std::string_view where) {
  if (std::optional<size_t> bad = FindInvalidUtf8(pattern); bad.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(where), ": the regex is not valid UTF-8 at byte ", *bad));
  }
  const std::string icu_pattern = RegexForIcu(pattern);
  UParseError parse_error{};
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexPattern> compiled(icu::RegexPattern::compile(
      icu::UnicodeString::fromUTF8(icu_pattern), 0, parse_error, status));
  if (U_FAILURE(status) || compiled == nullptr) {
    std::string shown(pattern.substr(0, 200));
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(where), ": the regex ", shown, " does not compile (", IcuErrorText(status),
        parse_error.offset >= 0 ? absl::StrCat(" at character ", parse_error.offset) : "", ")"));
  }
  Regex r;
  r.pattern_ = std::string(pattern);
  r.where_ = std::string(where);
  r.compiled_ = std::move(compiled);
  return r;
}

absl::StatusOr<Regex> Regex::Literal(std::string_view literal, std::string_view where) {
  if (std::optional<size_t> bad = FindInvalidUtf8(literal); bad.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(where), ": the string is not valid UTF-8 at byte ", *bad));
  }
  Regex r;
  r.pattern_ = std::string(literal);
  r.where_ = std::string(where);
  r.literal_ = true;
  return r;
}

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

absl::StatusOr<std::vector<std::pair<size_t, size_t>>> Regex::FindAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  if (text.empty()) return matches;
  if (literal_) {
    if (pattern_.empty()) return matches;
    for (size_t pos = text.find(pattern_); pos != std::string_view::npos;
         pos = text.find(pattern_, pos + pattern_.size())) {
      matches.emplace_back(pos, pos + pattern_.size());
    }
    return matches;
  }
  const Utf16Text t(text);
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> m(compiled_->matcher(t.text, status));
  if (U_FAILURE(status)) {
    return absl::InternalError(absl::StrCat(where_, ": regex matcher: ", IcuErrorText(status)));
  }
  m->setTimeLimit(kTimeLimitSteps, status);
  m->setStackLimit(kStackLimitBytes, status);
  // Each find is bounded by the step limit; many slow finds in a row are
  // bounded by this overall deadline.
  const auto deadline = std::chrono::steady_clock::now() + kSearchDeadline;
  while (m->find(status) && U_SUCCESS(status)) {
    if (std::chrono::steady_clock::now() > deadline) {
      status = U_REGEX_TIME_OUT;
      break;
    }
    const int32_t begin = m->start(status);
    const int32_t end = m->end(status);
    if (U_FAILURE(status)) break;
    if (end > begin) matches.emplace_back(t.byte_offset[begin], t.byte_offset[end]);
  }
  if (status == U_REGEX_TIME_OUT || status == U_REGEX_STACK_OVERFLOW) {
    return absl::ResourceExhaustedError(absl::StrCat(
        where_, ": the regex ", pattern_.substr(0, 200), " takes too long on this text (",
        IcuErrorText(status), "); the pattern backtracks without bound"));
  }
  if (U_FAILURE(status)) {
    return absl::InternalError(absl::StrCat(where_, ": regex search: ", IcuErrorText(status)));
  }
  return matches;
}

absl::StatusOr<std::string> Regex::ReplaceAll(std::string_view text,
                                              std::string_view replacement) const {
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> matches = FindAll(text);
  if (!matches.ok()) return matches.status();
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (const auto& [begin, end] : *matches) {
    out.append(text.substr(pos, begin - pos));
    out.append(replacement);
    pos = end;
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace packd::engine
