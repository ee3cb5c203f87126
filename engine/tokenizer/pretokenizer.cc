#include "engine/tokenizer/pretokenizer.h"

#include <unicode/uchar.h>

#include <array>
#include <cstdint>

#include "engine/tokenizer/utf8.h"

namespace packd::engine {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Character classes of the regexes. Exactly one of letter / number / other
// holds for every code point; whitespace code points are "other" for none of
// the patterns' purposes, so kOther means [^\s\p{L}\p{N}].
enum CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

CharClass ClassifyWithIcu(char32_t cp) {
  const uint32_t mask = U_MASK(u_charType(static_cast<UChar32>(cp)));
  if (mask & U_GC_L_MASK) return kLetter;
  if (mask & U_GC_N_MASK) return kNumber;
  if (u_isUWhiteSpace(static_cast<UChar32>(cp))) return kSpace;
  return kOther;
}

CharClass Classify(char32_t cp) {
  static const std::array<CharClass, 128> ascii = [] {
    std::array<CharClass, 128> t{};
    for (char32_t c = 0; c < 128; ++c) t[c] = ClassifyWithIcu(c);
    return t;
  }();
  return cp < 128 ? ascii[cp] : ClassifyWithIcu(cp);
}

// The text as code points, with their classes and byte offsets.
struct CodePoints {
  std::vector<char32_t> cp;
  std::vector<CharClass> cls;
  std::vector<size_t> offset;  // size() + 1 entries; the last is the text's length

  explicit CodePoints(std::string_view text) {
    cp.reserve(text.size());
    cls.reserve(text.size());
    offset.reserve(text.size() + 1);
    size_t pos = 0;
    while (pos < text.size()) {
      const Utf8Step step = ReadUtf8(text, pos);
      // Callers validate the text; a bad byte is kept as an "other" character.
      const char32_t c = step.kind == Utf8Step::Kind::kChar ? step.code_point : 0xFFFD;
      cp.push_back(c);
      cls.push_back(step.kind == Utf8Step::Kind::kChar ? Classify(c) : kOther);
      offset.push_back(pos);
      pos += step.length > 0 ? step.length : 1;
    }
    offset.push_back(text.size());
  }
  size_t size() const { return cp.size(); }
};

bool IsNewline(char32_t c) { return c == '\r' || c == '\n'; }

// Simple case folding for the letters of the contractions: (?i) makes "s"
// match "S" and U+017F (long s) as well.
char32_t FoldContractionLetter(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A' + 'a';
  if (c == 0x17F) return 's';
  return c;
}

// Length (in code points) of a contraction ('s 't 're 've 'm 'll 'd) at i,
// or 0.
size_t ContractionLength(const CodePoints& t, size_t i, bool ignore_case) {
  const size_t n = t.size();
  if (t.cp[i] != '\'' || i + 1 >= n) return 0;
  const auto at = [&](size_t k) { return ignore_case ? FoldContractionLetter(t.cp[k]) : t.cp[k]; };
  const char32_t c1 = at(i + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (i + 2 >= n) return 0;
  const char32_t c2 = at(i + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// End of the run of class `cls` starting at i.
size_t RunEnd(const CodePoints& t, size_t i, CharClass cls) {
  while (i < t.size() && t.cls[i] == cls) ++i;
  return i;
}

// The match of \s+(?!\S)|\s+ at i (t.cls[i] == kSpace): the whitespace run,
// less its last character when a non-space follows and the run is longer
// than one (that character then starts the next word, e.g. " Hello").
size_t TrailingSpaceMatchEnd(const CodePoints& t, size_t i) {
  const size_t end = RunEnd(t, i, kSpace);
  if (end == t.size() || end - i == 1) return end;
  return end - 1;
}

// The end of the match at i of the GPT-2 pattern.
size_t Gpt2MatchEnd(const CodePoints& t, size_t i) {
  if (size_t len = ContractionLength(t, i, /*ignore_case=*/false)) return i + len;
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+'
  const size_t j = t.cp[i] == ' ' ? i + 1 : i;
  if (j < t.size() && t.cls[j] != kSpace) return RunEnd(t, j, t.cls[j]);
  // \s+(?!\S)|\s+ (t.cp[i] is whitespace here).
  return TrailingSpaceMatchEnd(t, i);
}

// The end of the match at i of the Llama 3 (max_digits 3) or Qwen2
// (max_digits 1) pattern.
size_t Llama3MatchEnd(const CodePoints& t, size_t i, size_t max_digits) {
  const size_t n = t.size();
  const char32_t c = t.cp[i];
  const CharClass cls = t.cls[i];
  if (size_t len = ContractionLength(t, i, /*ignore_case=*/true)) return i + len;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (cls == kLetter) return RunEnd(t, i, kLetter);
  if (!IsNewline(c) && cls != kNumber && i + 1 < n && t.cls[i + 1] == kLetter) {
    return RunEnd(t, i + 1, kLetter);
  }
  // \p{N}{1,max_digits}
  if (cls == kNumber) {
    size_t end = i;
    while (end < n && end - i < max_digits && t.cls[end] == kNumber) ++end;
    return end;
  }
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t j = c == ' ' ? i + 1 : i;
  if (j < n && t.cls[j] == kOther) {
    size_t end = RunEnd(t, j, kOther);
    while (end < n && IsNewline(t.cp[end])) ++end;
    return end;
  }
  // \s*[\r\n]+ : up to the last newline of the whitespace run (c is whitespace).
  const size_t run_end = RunEnd(t, i, kSpace);
  for (size_t k = run_end; k > i; --k) {
    if (IsNewline(t.cp[k - 1])) return k;
  }
  // \s+(?!\S)|\s+
  return TrailingSpaceMatchEnd(t, i);
}

}  // namespace

std::string_view PretokenizerPatternName(PretokenizerPattern pattern) {
  switch (pattern) {
    case PretokenizerPattern::kGpt2:
      return "gpt-2";
    case PretokenizerPattern::kLlama3:
      return "llama3";
    case PretokenizerPattern::kQwen2:
      return "qwen2";
  }
  return "?";
}

std::string_view PretokenizerRegex(PretokenizerPattern pattern) {
  switch (pattern) {
    case PretokenizerPattern::kGpt2:
      return kGpt2Regex;
    case PretokenizerPattern::kLlama3:
      return kLlama3Regex;
    case PretokenizerPattern::kQwen2:
      return kQwen2Regex;
  }
  return "";
}

std::optional<PretokenizerPattern> PretokenizerPatternFromRegex(std::string_view regex) {
  for (PretokenizerPattern p :
       {PretokenizerPattern::kGpt2, PretokenizerPattern::kLlama3, PretokenizerPattern::kQwen2}) {
    if (regex == PretokenizerRegex(p)) return p;
  }
  return std::nullopt;
}

void Pretokenize(PretokenizerPattern pattern, std::string_view text,
                 std::vector<std::string_view>* words) {
  const CodePoints t(text);
  size_t i = 0;
  while (i < t.size()) {
    size_t end = 0;
    switch (pattern) {
      case PretokenizerPattern::kGpt2:
        end = Gpt2MatchEnd(t, i);
        break;
      case PretokenizerPattern::kLlama3:
        end = Llama3MatchEnd(t, i, 3);
        break;
      case PretokenizerPattern::kQwen2:
        end = Llama3MatchEnd(t, i, 1);
        break;
    }
    if (end <= i) end = i + 1;  // unreachable: every character matches some alternative
    words->push_back(text.substr(t.offset[i], t.offset[end] - t.offset[i]));
    i = end;
  }
}

}  // namespace packd::engine
