#include "engine/tokenizer/added_tokens.h"

#include <unicode/uchar.h>

#include <algorithm>

#include "engine/tokenizer/utf8.h"

namespace packd::engine {
namespace {

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

bool IsWordChar(char32_t cp) { return cp == '_' || u_isalnum(static_cast<UChar32>(cp)); }

// Whether the character ending at `end` (exclusive) is a word character.
bool WordCharBefore(std::string_view text, size_t end) {
  if (end == 0) return false;
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  const Utf8Step step = ReadUtf8(text, start);
  return step.kind == Utf8Step::Kind::kChar && start + step.length == end &&
         IsWordChar(step.code_point);
}

bool WordCharAt(std::string_view text, size_t pos) {
  if (pos >= text.size()) return false;
  const Utf8Step step = ReadUtf8(text, pos);
  return step.kind == Utf8Step::Kind::kChar && IsWordChar(step.code_point);
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
    if (token.single_word && (WordCharBefore(text, pos) || WordCharAt(text, i + 1))) continue;
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
    if (token.lstrip) {
      while (match_start > text_start && IsAsciiSpace(text[match_start - 1])) --match_start;
    }
    if (token.rstrip) {
      while (match_end < text.size() && IsAsciiSpace(text[match_end])) ++match_end;
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
