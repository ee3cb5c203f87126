// Tokens matched in the text before BPE: special (control) tokens such as
// "<|begin_of_text|>", and user-defined / Hugging Face non-special added
// tokens. Text is cut at every match (leftmost, then longest, as Hugging Face
// tokenizers and llama.cpp do) and the pieces between matches are encoded
// separately.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

struct AddedToken {
  TokenId id = -1;
  std::string content;  // the text that is matched, as written in the input
  // Special tokens match only when the caller asks for it (parse_special);
  // the others always match.
  bool special = true;
  // Hugging Face options: the match also takes the whitespace (regex.h) on
  // its left / right; the match counts only when no letter, digit or '_' is next
  // to it.
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// Immutable after construction; const methods are thread-safe.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Tokens with empty content are ignored; of two with the same content the
  // first wins.
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);

  // A piece of the input: text to encode (id < 0) or a matched token.
  struct Segment {
    std::string_view text;  // the text, or the matched span (whitespace included)
    TokenId id = -1;
  };
  // Cuts `text` at the matches; empty text segments are left out.
  void Split(std::string_view text, bool parse_special, std::vector<Segment>* out) const;

  bool empty() const { return tokens_.empty(); }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int>> children;  // sorted by byte
    int token = -1;                                 // index into tokens_ when a token ends here
  };
  int Child(int node, uint8_t byte) const;
  // Index into tokens_ and end of the longest acceptable match at `pos`, or
  // {-1, pos}.
  std::pair<int, size_t> LongestMatch(std::string_view text, size_t pos, bool parse_special) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  bool first_byte_[256] = {};
};

}  // namespace packd::engine
