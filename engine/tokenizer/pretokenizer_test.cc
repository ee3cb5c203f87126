// The named pre-tokenizer regexes, through ICU's engine, against what
// Oniguruma / Rust regex match.
#include "engine/tokenizer/pretokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::engine {
namespace {

using ::testing::ElementsAre;
using P = PretokenizerPattern;

std::vector<std::string> Split(P pattern, std::string_view text) {
  std::vector<std::string_view> words;
  Pretokenize(pattern, text, &words);
  return std::vector<std::string>(words.begin(), words.end());
}

TEST(PretokenizerTest, Gpt2) {
  EXPECT_THAT(Split(P::kGpt2, "Hello world"), ElementsAre("Hello", " world"));
  // \s+(?!\S) leaves the last space to the word that follows.
  EXPECT_THAT(Split(P::kGpt2, "   Hello"), ElementsAre("  ", " Hello"));
  EXPECT_THAT(Split(P::kGpt2, "Hello   "), ElementsAre("Hello", "   "));
  // Contractions are case-sensitive; " ?" takes only a space, not a tab.
  EXPECT_THAT(Split(P::kGpt2, "I'm x'RE"), ElementsAre("I", "'m", " x", "'", "RE"));
  EXPECT_THAT(Split(P::kGpt2, "abc123 !!x"), ElementsAre("abc", "123", " !!", "x"));
  EXPECT_THAT(Split(P::kGpt2, "a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(Split(P::kGpt2, "x\t y"), ElementsAre("x", "\t", " y"));
  EXPECT_THAT(Split(P::kGpt2, "\tHello"), ElementsAre("\t", "Hello"));
  // Unicode classes: ½ is a number (No), U+3000 is whitespace.
  EXPECT_THAT(Split(P::kGpt2, "4 ½ нещо на"), ElementsAre("4", " ½", " нещо", " на"));
  EXPECT_THAT(Split(P::kGpt2, "a\u3000b"), ElementsAre("a", "\u3000", "b"));
  EXPECT_THAT(Split(P::kGpt2, "3333333"), ElementsAre("3333333"));
}

TEST(PretokenizerTest, Llama3) {
  EXPECT_THAT(Split(P::kLlama3, "Hello world"), ElementsAre("Hello", " world"));
  EXPECT_THAT(Split(P::kLlama3, "1234567"), ElementsAre("123", "456", "7"));
  // Case-insensitive contractions; after a space, " '" is taken first.
  EXPECT_THAT(Split(P::kLlama3, "I'm x'RE 'RE"), ElementsAre("I", "'m", " x", "'RE", " '", "RE"));
  EXPECT_THAT(Split(P::kLlama3, "we'Ve a'lL"), ElementsAre("we", "'Ve", " a", "'lL"));
  // Any one non-letter, non-digit, non-newline character may lead a word.
  EXPECT_THAT(Split(P::kLlama3, "\tHello (normal)"), ElementsAre("\tHello", " (", "normal", ")"));
  EXPECT_THAT(Split(P::kLlama3, "a\u3000b"), ElementsAre("a", "\u3000b"));
  // \s*[\r\n]+ runs up to the last newline of the whitespace.
  EXPECT_THAT(Split(P::kLlama3, "a\n\nb"), ElementsAre("a", "\n\n", "b"));
  EXPECT_THAT(Split(P::kLlama3, "x  \n  y"), ElementsAre("x", "  \n", " ", " y"));
  EXPECT_THAT(Split(P::kLlama3, "!!!\n\nx"), ElementsAre("!!!\n\n", "x"));
  EXPECT_THAT(Split(P::kLlama3, "end  "), ElementsAre("end", "  "));
  EXPECT_THAT(Split(P::kLlama3, "3.3 3..3"), ElementsAre("3", ".", "3", " ", "3", "..", "3"));
}

TEST(PretokenizerTest, Qwen2SplitsDigitsOneByOne) {
  EXPECT_THAT(Split(P::kQwen2, "x1234 y"), ElementsAre("x", "1", "2", "3", "4", " y"));
  EXPECT_THAT(Split(P::kQwen2, "I'M"), ElementsAre("I", "'M"));
}

TEST(PretokenizerTest, EmptyAndCoverage) {
  EXPECT_TRUE(Split(P::kGpt2, "").empty());
  // Whatever the text, the words are non-empty and cover it exactly.
  const std::vector<std::string> alphabet = {
      "a",  "Z",  "é",      "нє",     "我", "ក", "ា",  "1", "½",    "٣",      " ",      "  ", "\t",
      "\n", "\r", "\u3000", "\u00a0", "'",  "s", "RE", "!", "🦙", "\u200d", "\ufe0f", "_"};
  std::mt19937 rng(3);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int n = static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    for (P p : {P::kGpt2, P::kLlama3, P::kQwen2}) {
      std::string joined;
      for (const std::string& w : Split(p, text)) {
        EXPECT_FALSE(w.empty());
        joined += w;
      }
      EXPECT_EQ(joined, text) << PretokenizerPatternName(p);
    }
  }
}

TEST(PretokenizerTest, RegexNames) {
  for (P p : {P::kGpt2, P::kLlama3, P::kQwen2}) {
    EXPECT_EQ(PretokenizerPatternFromRegex(PretokenizerRegex(p)), p);
  }
  EXPECT_EQ(PretokenizerPatternFromRegex("\\p{L}+"), std::nullopt);
  EXPECT_EQ(PretokenizerPatternFromRegex(""), std::nullopt);
}

}  // namespace
}  // namespace packd::engine
