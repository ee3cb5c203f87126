#include "engine/tokenizer/text_pipeline.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/unicode_normalizer.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

using nlohmann::json;

// ---- Reading tokenizer.json values ------------------------------------------

// Where a value is, for errors: "file: json.path".
struct Where {
  const std::string& label;
  std::string path;
  int depth = 0;  // Sequences this value is nested in
  std::string Child(const std::string& key) const { return absl::StrCat(path, ".", key); }
  std::string Index(size_t i) const { return absl::StrCat(path, "[", i, "]"); }
  std::string Text() const { return absl::StrCat(label, ": ", path); }
};

std::string Shown(const json& j) {
  std::string text = j.dump();
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  return text;
}

absl::Status Unsupported(const Where& w, const std::string& what, const json& j) {
  return absl::UnimplementedError(
      absl::StrCat(w.Text(), ": ", what, " is not supported: ", Shown(j)));
}

absl::Status BadValue(const Where& w, const std::string& key, const std::string& expected) {
  return absl::InvalidArgumentError(absl::StrCat(w.Text(), ".", key, ": expected ", expected));
}

absl::StatusOr<std::string> TypeOf(const json& j, const Where& w) {
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(w.Text(), ": not an object"));
  if (!j.contains("type") || !j["type"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(w.Text(), ": no \"type\" string"));
  }
  return j["type"].get<std::string>();
}

absl::StatusOr<std::string> StringField(const json& j, const Where& w, const char* key,
                                        std::optional<std::string> fallback = std::nullopt) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback.has_value()) return *fallback;
    return BadValue(w, key, "a string (it is missing)");
  }
  if (!j[key].is_string()) return BadValue(w, key, "a string");
  return j[key].get<std::string>();
}

absl::StatusOr<bool> BoolField(const json& j, const Where& w, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) return BadValue(w, key, "true or false");
  return j[key].get<bool>();
}

absl::StatusOr<int64_t> IntField(const json& j, const Where& w, const char* key, int64_t fallback,
                                 int64_t max) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0 || j[key].get<int64_t>() > max) {
    return BadValue(w, key, absl::StrCat("an integer in 0..", max));
  }
  return j[key].get<int64_t>();
}

// A {"String": ...} or {"Regex": ...} pattern.
absl::StatusOr<Regex> ParsePattern(const json& j, const Where& w) {
  const Where pw{w.label, w.Child("pattern")};
  if (!j.contains("pattern") || !j["pattern"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(pw.Text(), ": expected {\"String\": ...} or {\"Regex\": ...}"));
  }
  const json& p = j["pattern"];
  if (p.contains("String") && p["String"].is_string()) {
    return Regex::Literal(p["String"].get<std::string>(), pw.Text());
  }
  if (p.contains("Regex") && p["Regex"].is_string()) {
    return Regex::Compile(p["Regex"].get<std::string>(), pw.Text());
  }
  return absl::InvalidArgumentError(
      absl::StrCat(pw.Text(), ": expected {\"String\": ...} or {\"Regex\": ...}, got ", Shown(p)));
}

// The stages of a Sequence: `key` (an array) parsed element by element.
template <typename T>
absl::StatusOr<std::vector<std::unique_ptr<T>>> ParseSteps(
    const json& j, const Where& w, const char* key,
    absl::StatusOr<std::unique_ptr<T>> (*parse)(const json&, const Where&)) {
  if (!j.contains(key) || !j[key].is_array()) return BadValue(w, key, "an array");
  if (w.depth >= kMaxSequenceDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(w.Text(), ": Sequences nested more than ", kMaxSequenceDepth, " deep"));
  }
  const Where list{w.label, w.Child(key), w.depth + 1};
  std::vector<std::unique_ptr<T>> steps;
  for (size_t i = 0; i < j[key].size(); ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<T> step,
                     parse(j[key][i], Where{w.label, list.Index(i), list.depth}));
    if (step != nullptr) steps.push_back(std::move(step));
  }
  return steps;
}

// ---- Character helpers ------------------------------------------------------

// Calls f(code point, byte offset, byte length) for each character of valid
// UTF-8 text.
template <typename F>
void ForEachChar(std::string_view text, F&& f) {
  size_t pos = 0;
  while (pos < text.size()) {
    const Utf8Step step = ReadUtf8(text, pos);
    const size_t length = step.length > 0 ? step.length : 1;
    f(step.kind == Utf8Step::Kind::kChar ? step.code_point : char32_t{0xFFFD}, pos, length);
    pos += length;
  }
}

// Rust's char::is_numeric: general category Nd, Nl or No.
bool IsNumeric(char32_t c) {
  return (U_MASK(u_charType(static_cast<UChar32>(c))) & U_GC_N_MASK) != 0;
}

// Hugging Face's is_punc: ASCII punctuation or general category P*.
bool IsPunctuation(char32_t c) {
  if (c < 128)
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  return (U_MASK(u_charType(static_cast<UChar32>(c))) & U_GC_P_MASK) != 0;
}

bool IsNonSpacingMark(char32_t c) {
  return u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK;
}

// BertNormalizer's control characters: categories Cc, Cf, Cn, Co, except
// tab, newline and carriage return (which are whitespace).
bool IsBertControl(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  const int8_t t = u_charType(static_cast<UChar32>(c));
  return t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_UNASSIGNED || t == U_PRIVATE_USE_CHAR;
}

// The CJK ideograph blocks BertNormalizer pads with spaces.
bool IsChineseChar(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// ---- Normalizers ------------------------------------------------------------

class UnicodeFormNormalizer final : public Normalizer {
 public:
  explicit UnicodeFormNormalizer(UnicodeForm form) : form_(form) {}
  absl::Status Normalize(std::string* text) const override {
    ASSIGN_OR_RETURN(*text, NormalizeUnicode(form_, *text));
    return absl::OkStatus();
  }

 private:
  UnicodeForm form_;
};

// Full Unicode lowercasing (context-sensitive final sigma included), as
// Rust's str::to_lowercase.
class LowercaseNormalizer final : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    icu::UnicodeString u = icu::UnicodeString::fromUTF8(*text);
    u.toLower(icu::Locale::getRoot());
    text->clear();
    u.toUTF8String(*text);
    return absl::OkStatus();
  }
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string* text) const override {
    // The first non-whitespace character and the end of the last one.
    size_t first = text->size(), last_end = 0;
    ForEachChar(*text, [&](char32_t c, size_t pos, size_t length) {
      if (IsTokenizerWhitespace(c)) return;
      first = std::min(first, pos);
      last_end = pos + length;
    });
    const size_t begin = left_ ? first : 0;
    const size_t end = right_ ? last_end : text->size();
    *text = begin < end ? text->substr(begin, end - begin) : std::string();
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

// Removes non-spacing marks (after an NFD normalizer, the accents).
class StripAccentsNormalizer final : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    std::string out;
    out.reserve(text->size());
    ForEachChar(*text, [&](char32_t c, size_t pos, size_t length) {
      if (!IsNonSpacingMark(c)) out.append(*text, pos, length);
    });
    *text = std::move(out);
    return absl::OkStatus();
  }
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* text) const override {
    ASSIGN_OR_RETURN(*text, pattern_.ReplaceAll(*text, content_));
    return absl::OkStatus();
  }

 private:
  Regex pattern_;
  std::string content_;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class BertNormalizer final : public Normalizer {
 public:
  BertNormalizer(bool clean_text, bool chinese_chars, bool strip_accents, bool lowercase)
      : clean_text_(clean_text),
        chinese_chars_(chinese_chars),
        strip_accents_(strip_accents),
        lowercase_(lowercase) {}
  absl::Status Normalize(std::string* text) const override {
    std::string out;
    out.reserve(text->size());
    ForEachChar(*text, [&](char32_t c, size_t pos, size_t length) {
      if (clean_text_) {
        if (c == 0 || c == 0xFFFD || IsBertControl(c)) return;
        if (IsTokenizerWhitespace(c)) {
          out.push_back(' ');
          return;
        }
      }
      if (chinese_chars_ && IsChineseChar(c)) {
        out.push_back(' ');
        out.append(*text, pos, length);
        out.push_back(' ');
        return;
      }
      out.append(*text, pos, length);
    });
    *text = std::move(out);
    if (strip_accents_) {
      RETURN_IF_ERROR(UnicodeFormNormalizer(UnicodeForm::kNfd).Normalize(text));
      RETURN_IF_ERROR(StripAccentsNormalizer().Normalize(text));
    }
    if (lowercase_) RETURN_IF_ERROR(LowercaseNormalizer().Normalize(text));
    return absl::OkStatus();
  }

 private:
  bool clean_text_, chinese_chars_, strip_accents_, lowercase_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status Normalize(std::string* text) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->Normalize(text));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizerAt(const json& j, const Where& w) {
  if (j.is_null()) return nullptr;
  ASSIGN_OR_RETURN(const std::string type, TypeOf(j, w));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Normalizer>> steps,
                     ParseSteps<Normalizer>(j, w, "normalizers", ParseNormalizerAt));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  if (type == "NFC") return std::make_unique<UnicodeFormNormalizer>(UnicodeForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeFormNormalizer>(UnicodeForm::kNfd);
  if (type == "NFKC") return std::make_unique<UnicodeFormNormalizer>(UnicodeForm::kNfkc);
  if (type == "NFKD") return std::make_unique<UnicodeFormNormalizer>(UnicodeForm::kNfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Strip") {
    ASSIGN_OR_RETURN(const bool left, BoolField(j, w, "strip_left", true));
    ASSIGN_OR_RETURN(const bool right, BoolField(j, w, "strip_right", true));
    return std::make_unique<StripNormalizer>(left, right);
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Regex pattern, ParsePattern(j, w));
    ASSIGN_OR_RETURN(std::string content, StringField(j, w, "content"));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, StringField(j, w, "prepend"));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "BertNormalizer") {
    ASSIGN_OR_RETURN(const bool clean_text, BoolField(j, w, "clean_text", true));
    ASSIGN_OR_RETURN(const bool chinese, BoolField(j, w, "handle_chinese_chars", true));
    ASSIGN_OR_RETURN(const bool lowercase, BoolField(j, w, "lowercase", true));
    ASSIGN_OR_RETURN(const bool strip_accents, BoolField(j, w, "strip_accents", lowercase));
    return std::make_unique<BertNormalizer>(clean_text, chinese, strip_accents, lowercase);
  }
  return Unsupported(w, absl::StrCat("normalizer type \"", type, "\""), j);
}

// ---- Splitting --------------------------------------------------------------

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<SplitBehavior> ParseBehavior(const json& j, const Where& w, SplitBehavior fallback) {
  if (!j.contains("behavior") || j["behavior"].is_null()) return fallback;
  const std::string b = j["behavior"].is_string() ? j["behavior"].get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return BadValue(w, "behavior",
                  "Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

struct Span {
  size_t begin, end;
  bool match;
};

// Cuts `piece` at `matches` (sorted, non-overlapping byte ranges) the way
// tokenizers' NormalizedString::split does, appending the non-empty results.
void SplitAtMatches(const std::string& piece, const std::vector<std::pair<size_t, size_t>>& matches,
                    SplitBehavior behavior, bool invert, std::vector<std::string>* out) {
  std::vector<Span> spans;
  size_t prev = 0;
  for (const auto& [begin, end] : matches) {
    if (begin > prev) spans.push_back({prev, begin, false});
    spans.push_back({begin, end, true});
    prev = end;
  }
  if (prev < piece.size()) spans.push_back({prev, piece.size(), false});
  if (invert) {
    for (Span& s : spans) s.match = !s.match;
  }

  std::vector<Span> kept;  // match = "remove" after this
  switch (behavior) {
    case SplitBehavior::kRemoved:
      kept = spans;
      break;
    case SplitBehavior::kIsolated:
      for (const Span& s : spans) kept.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.match && !previous_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;  // of the span after, walking backwards
      for (size_t i = spans.size(); i-- > 0;) {
        const Span& s = spans[i];
        if (s.match && !previous_match && !kept.empty()) {
          kept.back().begin = s.begin;
        } else {
          kept.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Span& s : spans) {
        if (s.match == previous_match && !kept.empty()) {
          kept.back().end = s.end;
        } else {
          kept.push_back({s.begin, s.end, false});
        }
        previous_match = s.match;
      }
      break;
    }
  }
  for (const Span& s : kept) {
    if (!s.match && s.end > s.begin) out->push_back(piece.substr(s.begin, s.end - s.begin));
  }
}

// Every character for which `pred` holds is a match of its own.
template <typename Pred>
std::vector<std::pair<size_t, size_t>> CharMatches(std::string_view text, Pred&& pred) {
  std::vector<std::pair<size_t, size_t>> matches;
  ForEachChar(text, [&](char32_t c, size_t pos, size_t length) {
    if (pred(c)) matches.emplace_back(pos, pos + length);
  });
  return matches;
}

// Applies `split` (piece -> matches) to every piece.
template <typename F>
absl::Status SplitEach(std::vector<std::string>* pieces, SplitBehavior behavior, bool invert,
                       F&& find) {
  std::vector<std::string> out;
  out.reserve(pieces->size());
  for (const std::string& piece : *pieces) {
    absl::StatusOr<std::vector<std::pair<size_t, size_t>>> matches = find(piece);
    if (!matches.ok()) return matches.status();
    SplitAtMatches(piece, *matches, behavior, invert, &out);
  }
  *pieces = std::move(out);
  return absl::OkStatus();
}

// ---- Pre-tokenizers ---------------------------------------------------------

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces, int) const override {
    return SplitEach(pieces, behavior_, invert_,
                     [&](const std::string& p) { return pattern_.FindAll(p); });
  }

 private:
  Regex pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class CharSplitPreTokenizer final : public PreTokenizer {
 public:
  CharSplitPreTokenizer(bool (*pred)(char32_t), SplitBehavior behavior)
      : pred_(pred), behavior_(behavior) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces, int) const override {
    return SplitEach(pieces, behavior_, false, [&](const std::string& p) {
      return absl::StatusOr<std::vector<std::pair<size_t, size_t>>>(CharMatches(p, pred_));
    });
  }

 private:
  bool (*pred_)(char32_t);
  SplitBehavior behavior_;
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces, int) const override {
    if (add_prefix_space_) {
      for (std::string& p : *pieces) {
        if (!p.empty() && p[0] != ' ') p.insert(0, " ");
      }
    }
    if (regex_.has_value()) {
      RETURN_IF_ERROR(SplitEach(pieces, SplitBehavior::kIsolated, false,
                                [&](const std::string& p) { return regex_->FindAll(p); }));
    }
    for (std::string& p : *pieces) p = ByteLevelEncode(p);
    return absl::OkStatus();
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

absl::StatusOr<PrependScheme> ParsePrependScheme(const json& j, const Where& w) {
  if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
    const std::string s =
        j["prepend_scheme"].is_string() ? j["prepend_scheme"].get<std::string>() : "";
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    return BadValue(w, "prepend_scheme", "\"always\", \"first\" or \"never\"");
  }
  // Older files: add_prefix_space.
  ASSIGN_OR_RETURN(const bool add, BoolField(j, w, "add_prefix_space", true));
  return add ? PrependScheme::kAlways : PrependScheme::kNever;
}

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  // `marker` finds `replacement`; split: words start at each replacement.
  MetaspacePreTokenizer(std::string replacement, Regex marker, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)),
        marker_(std::move(marker)),
        scheme_(scheme),
        split_(split) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces, int section) const override {
    std::vector<std::string> out;
    for (std::string& p : *pieces) {
      std::string s = ReplaceString(p, " ", replacement_);
      const bool prepend =
          scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && section == 0);
      if (prepend && !s.starts_with(replacement_)) s.insert(0, replacement_);
      if (!split_) {
        if (!s.empty()) out.push_back(std::move(s));
        continue;
      }
      ASSIGN_OR_RETURN(const auto matches, marker_.FindAll(s));
      SplitAtMatches(s, matches, SplitBehavior::kMergedWithNext, false, &out);
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  Regex marker_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces, int section) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->PreTokenize(pieces, section));
    return absl::OkStatus();
  }
  bool byte_level() const override {
    for (const auto& step : steps_) {
      if (step->byte_level()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizerAt(const json& j, const Where& w) {
  if (j.is_null()) return nullptr;
  ASSIGN_OR_RETURN(const std::string type, TypeOf(j, w));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(std::vector<std::unique_ptr<PreTokenizer>> steps,
                     ParseSteps<PreTokenizer>(j, w, "pretokenizers", ParsePreTokenizerAt));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split") {
    ASSIGN_OR_RETURN(Regex pattern, ParsePattern(j, w));
    ASSIGN_OR_RETURN(const SplitBehavior behavior, ParseBehavior(j, w, SplitBehavior::kIsolated));
    ASSIGN_OR_RETURN(const bool invert, BoolField(j, w, "invert", false));
    return std::make_unique<SplitPreTokenizer>(std::move(pattern), behavior, invert);
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(const bool add_prefix_space, BoolField(j, w, "add_prefix_space", true));
    ASSIGN_OR_RETURN(const bool use_regex, BoolField(j, w, "use_regex", true));
    std::optional<Regex> regex;
    if (use_regex) {
      ASSIGN_OR_RETURN(
          regex, Regex::Compile(PretokenizerRegex(PretokenizerPattern::kGpt2), "the GPT-2 regex"));
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, StringField(j, w, "replacement", "\xE2\x96\x81"));
    ASSIGN_OR_RETURN(const PrependScheme scheme, ParsePrependScheme(j, w));
    ASSIGN_OR_RETURN(const bool split, BoolField(j, w, "split", true));
    ASSIGN_OR_RETURN(Regex marker, Regex::Literal(replacement, w.Child("replacement")));
    return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), std::move(marker),
                                                   scheme, split);
  }
  if (type == "Digits") {
    ASSIGN_OR_RETURN(const bool individual, BoolField(j, w, "individual_digits", false));
    return std::make_unique<CharSplitPreTokenizer>(
        &IsNumeric, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
  }
  if (type == "Punctuation") {
    ASSIGN_OR_RETURN(const SplitBehavior behavior, ParseBehavior(j, w, SplitBehavior::kIsolated));
    return std::make_unique<CharSplitPreTokenizer>(&IsPunctuation, behavior);
  }
  if (type == "WhitespaceSplit") {
    return std::make_unique<CharSplitPreTokenizer>(&IsTokenizerWhitespace, SplitBehavior::kRemoved);
  }
  if (type == "Whitespace") {
    ASSIGN_OR_RETURN(Regex words, Regex::Compile(R"(\w+|[^\w\s]+)", w.Text()));
    return std::make_unique<SplitPreTokenizer>(std::move(words), SplitBehavior::kRemoved,
                                               /*invert=*/true);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    steps.push_back(
        std::make_unique<CharSplitPreTokenizer>(&IsTokenizerWhitespace, SplitBehavior::kRemoved));
    steps.push_back(
        std::make_unique<CharSplitPreTokenizer>(&IsPunctuation, SplitBehavior::kIsolated));
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  return Unsupported(w, absl::StrCat("pre_tokenizer type \"", type, "\""), j);
}

// ---- Decoders ---------------------------------------------------------------

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Decode(std::vector<DecoderPiece>* pieces) const override {
    for (DecoderPiece& p : *pieces) {
      // Decoded text is arbitrary bytes; the regex needs UTF-8, so a piece
      // that is not (a byte token's raw byte) is left as it is.
      if (FindInvalidUtf8(p.text).has_value()) continue;
      ASSIGN_OR_RETURN(p.text, pattern_.ReplaceAll(p.text, content_));
    }
    return absl::OkStatus();
  }

 private:
  Regex pattern_;
  std::string content_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  absl::Status Decode(std::vector<DecoderPiece>* pieces) const override {
    for (DecoderPiece& p : *pieces) {
      if (std::optional<uint8_t> b = ParseByteToken(p.text); b.has_value()) {
        p.text = std::string(1, static_cast<char>(*b));
      }
    }
    return absl::OkStatus();
  }
};

class FuseDecoder final : public Decoder {
 public:
  absl::Status Decode(std::vector<DecoderPiece>* pieces) const override {
    if (pieces->empty()) return absl::OkStatus();
    DecoderPiece fused;
    fused.first = pieces->front().first;
    fused.fused = true;
    for (const DecoderPiece& p : *pieces) fused.text.append(p.text);
    pieces->assign(1, std::move(fused));
    return absl::OkStatus();
  }
};

// Cuts up to `start` copies of `content` (one character) from the start of
// each piece. After Fuse the pieces are one text, so only the sequence's
// first piece loses its start. (Strip's `stop`, cutting the end of the text,
// is refused: text streamed token by token cannot know where it ends.)
class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, int64_t start) : content_(std::move(content)), start_(start) {}
  absl::Status Decode(std::vector<DecoderPiece>* pieces) const override {
    for (DecoderPiece& p : *pieces) {
      if (p.fused && !p.first) continue;
      size_t cut = 0;
      for (int64_t i = 0; i < start_ && p.text.compare(cut, content_.size(), content_) == 0; ++i) {
        cut += content_.size();
      }
      p.text.erase(0, cut);
    }
    return absl::OkStatus();
  }

 private:
  std::string content_;
  int64_t start_;
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme)
      : replacement_(std::move(replacement)), scheme_(scheme) {}
  absl::Status Decode(std::vector<DecoderPiece>* pieces) const override {
    for (DecoderPiece& p : *pieces) {
      p.text = ReplaceString(p.text, replacement_, " ");
      if (p.first && scheme_ != PrependScheme::kNever && p.text.starts_with(' ')) {
        p.text.erase(0, 1);
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
};

class ByteLevelDecoder final : public Decoder {
 public:
  absl::Status Decode(std::vector<DecoderPiece>* pieces) const override {
    for (DecoderPiece& p : *pieces) {
      if (p.added) continue;
      std::string bytes;
      ByteLevelDecode(p.text, &bytes);
      p.text = std::move(bytes);
    }
    return absl::OkStatus();
  }
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  absl::Status Decode(std::vector<DecoderPiece>* pieces) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->Decode(pieces));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoderAt(const json& j, const Where& w) {
  if (j.is_null()) return nullptr;
  ASSIGN_OR_RETURN(const std::string type, TypeOf(j, w));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(std::vector<std::unique_ptr<Decoder>> steps,
                     ParseSteps<Decoder>(j, w, "decoders", ParseDecoderAt));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    ASSIGN_OR_RETURN(Regex pattern, ParsePattern(j, w));
    ASSIGN_OR_RETURN(std::string content, StringField(j, w, "content"));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
  }
  if (type == "Strip") {
    ASSIGN_OR_RETURN(std::string content, StringField(j, w, "content"));
    if (content.empty()) return BadValue(w, "content", "one character");
    ASSIGN_OR_RETURN(const int64_t start, IntField(j, w, "start", 0, 1 << 20));
    ASSIGN_OR_RETURN(const int64_t stop, IntField(j, w, "stop", 0, 1 << 20));
    if (stop > 0) {
      // Streamed text cannot know where the text ends.
      return Unsupported(w, "a Strip decoder with stop > 0", j);
    }
    return std::make_unique<StripDecoder>(std::move(content), start);
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, StringField(j, w, "replacement", "\xE2\x96\x81"));
    ASSIGN_OR_RETURN(const PrependScheme scheme, ParsePrependScheme(j, w));
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), scheme);
  }
  return Unsupported(w, absl::StrCat("decoder type \"", type, "\""), j);
}

}  // namespace

std::optional<uint8_t> ParseByteToken(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

std::string ReplaceString(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

absl::StatusOr<std::string> TextPipeline::Decode(std::vector<DecoderPiece> pieces) const {
  std::string out;
  if (decoder == nullptr) {
    for (const DecoderPiece& p : pieces) {
      if (!p.first) out.push_back(' ');
      out.append(p.text);
    }
    return out;
  }
  RETURN_IF_ERROR(decoder->Decode(&pieces));
  for (const DecoderPiece& p : pieces) out.append(p.text);
  return out;
}

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const json& j, const std::string& path,
                                                            const std::string& label) {
  return ParseNormalizerAt(j, Where{label, path});
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const json& j,
                                                                const std::string& path,
                                                                const std::string& label) {
  return ParsePreTokenizerAt(j, Where{label, path});
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const json& j, const std::string& path,
                                                      const std::string& label) {
  return ParseDecoderAt(j, Where{label, path});
}

absl::StatusOr<std::shared_ptr<const TextPipeline>> ByteLevelPipeline(
    const std::vector<std::string_view>& regexes, const std::string& label) {
  std::vector<std::unique_ptr<PreTokenizer>> steps;
  for (std::string_view r : regexes) {
    ASSIGN_OR_RETURN(Regex regex, Regex::Compile(r, absl::StrCat(label, ": pre-tokenizer regex")));
    steps.push_back(std::make_unique<SplitPreTokenizer>(std::move(regex), SplitBehavior::kIsolated,
                                                        /*invert=*/false));
  }
  steps.push_back(std::make_unique<ByteLevelPreTokenizer>(false, std::nullopt));
  auto pipeline = std::make_shared<TextPipeline>();
  pipeline->pre_tokenizer = std::make_unique<SequencePreTokenizer>(std::move(steps));
  pipeline->decoder = std::make_unique<ByteLevelDecoder>();
  return std::shared_ptr<const TextPipeline>(std::move(pipeline));
}

}  // namespace packd::engine
