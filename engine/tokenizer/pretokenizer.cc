#include "engine/tokenizer/pretokenizer.h"

#include <array>
#include <cstdlib>

#include "engine/tokenizer/regex.h"

namespace packd::engine {
namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

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
  static const std::array<Regex, 3>* const compiled = [] {
    const auto compile = [](PretokenizerPattern p) {
      absl::StatusOr<Regex> r = Regex::Compile(PretokenizerRegex(p), PretokenizerPatternName(p));
      if (!r.ok()) std::abort();  // the built-in patterns compile
      return *std::move(r);
    };
    return new std::array<Regex, 3>{compile(PretokenizerPattern::kGpt2),
                                    compile(PretokenizerPattern::kLlama3),
                                    compile(PretokenizerPattern::kQwen2)};
  }();
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> matches =
      (*compiled)[static_cast<size_t>(pattern)].FindAll(text);
  size_t pos = 0;
  if (matches.ok()) {
    for (const auto& [begin, end] : *matches) {
      if (begin > pos) words->push_back(text.substr(pos, begin - pos));
      words->push_back(text.substr(begin, end - begin));
      pos = end;
    }
  }
  if (pos < text.size()) words->push_back(text.substr(pos));
}

}  // namespace packd::engine
