// The pre-tokenizer regexes that GGUF (tokenizer.ggml.pre) and tiktoken
// files name instead of writing them out: the text is cut into words by the
// regex (regex.h, ICU's engine), and BPE merges never cross a word boundary.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace packd::engine {

enum class PretokenizerPattern {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  // (Llama 3; the same as tiktoken's cl100k_base)
  kLlama3,
  // Llama 3's with \p{N} (single digits) in place of \p{N}{1,3}.
  kQwen2,
};

// "gpt-2", "llama3", "qwen2".
std::string_view PretokenizerPatternName(PretokenizerPattern pattern);

// The regex, as tokenizer.json and tiktoken write it.
std::string_view PretokenizerRegex(PretokenizerPattern pattern);

// The pattern whose regex is exactly `regex`, or nullopt.
std::optional<PretokenizerPattern> PretokenizerPatternFromRegex(std::string_view regex);

// Appends to `words` the matches of the pattern's regex over `text` and the
// text between them (every byte of `text` lies in exactly one word). `text`
// must be valid UTF-8; the views point into it.
void Pretokenize(PretokenizerPattern pattern, std::string_view text,
                 std::vector<std::string_view>* words);

}  // namespace packd::engine
