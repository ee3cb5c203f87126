#include "engine/tokenizer/added_tokens.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "engine/tokenizer/regex.h"
#include "engine/tokenizer/utf8.h"

namespace packd::engine {
namespace {

bool IsWordChar(char32_t cp) { return cp == '_' || u_isalnum(static_cast<UChar32>(cp)); }

// The character ending at `end` (exclusive) if it is one for which `pred`
// holds: its length in bytes, else 0.
template <typename Pred>
size_t CharBefore(std::string_view text, size_t end, Pred pred) {
  if (end == 0) return 0;
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  const Utf8Step step = ReadUtf8(text, start);
  const bool ok =
      step.kind == Utf8Step::Kind::kChar && start + step.length == end && pred(step.code_point);
  return ok ? end - start : 0;
}

// The same for the character starting at `pos`.
template <typename Pred>
size_t CharAt(std::string_view text, size_t pos, Pred pred) {
  if (pos >= text.size()) return 0;
  const Utf8Step step = ReadUtf8(text, pos);
  return step.kind == Utf8Step::Kind::kChar && pred(step.code_point) ? step.length : 0;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) {
  nodes_.emplace_back();
  for (AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    int node = 0;
    for (char c : token.content) {
      const uint8_t b = static_cast<uint8_t>(c);
      int child = Child(node, b);
      if (child < 0) {
        child = static_cast<int>(nodes_.size());
        nodes_.emplace_back();
        auto& children = nodes_[node].children;
        children.insert(
            std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, int>(b, -1)),
            {b, child});
      }
      node = child;
    }
    if (nodes_[node].token >= 0) continue;  // same content as an earlier token
    nodes_[node].token = static_cast<int>(tokens_.size());
    first_byte_[static_cast<uint8_t>(token.content[0])] = true;
    tokens_.push_back(std::move(token));
  }
}

int AddedTokenMatcher::Child(int node, uint8_t byte) const {
  const auto& children = nodes_[node].children;
  auto it = std::lower_bound(children.begin(), children.end(), std::pair<uint8_t, int>(byte, -1));
  return it != children.end() && it->first == byte ? it->second : -1;
}

std::pair<int, size_t> AddedTokenMatcher::LongestMatch(std::string_view text, size_t pos,
                                                       bool parse_special) const {
  std::pair<int, size_t> best{-1, pos};
  int node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = Child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    const int t = nodes_[node].token;
    if (t < 0) continue;
    const AddedToken& token = tokens_[t];
    if (token.special && !parse_special) continue;
    if (token.single_word &&
        (CharBefore(text, pos, IsWordChar) > 0 || CharAt(text, i + 1, IsWordChar) > 0)) {
      continue;
    }
    best = {t, i + 1};
  }
  return best;
}

void AddedTokenMatcher::Split(std::string_view text, bool parse_special,
                              std::vector<Segment>* out) const {
  size_t text_start = 0;  // start of the pending text segment
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    const auto [t, end] = LongestMatch(text, pos, parse_special);
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[t];
    size_t match_start = pos, match_end = end;
    // lstrip / rstrip take the whitespace (regex.h) next to the token.
    while (token.lstrip && match_start > text_start) {
      const size_t n =
          CharBefore(text.substr(text_start), match_start - text_start, IsTokenizerWhitespace);
      if (n == 0) break;
      match_start -= n;
    }
    while (token.rstrip) {
      const size_t n = CharAt(text, match_end, IsTokenizerWhitespace);
      if (n == 0) break;
      match_end += n;
    }
    if (match_start > text_start) {
      out->push_back({text.substr(text_start, match_start - text_start), -1});
    }
    out->push_back({text.substr(match_start, match_end - match_start), token.id});
    pos = text_start = match_end;
  }
  if (text_start < text.size()) out->push_back({text.substr(text_start), -1});
}

}  // namespace packd::engine
