// Each normalizer, pre-tokenizer and decoder stage on its own, against what
// the tokenizers library (Rust) produces for the same configuration.
#include "engine/tokenizer/text_pipeline.h"

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/tokenizer/regex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Normalize(const json& config, std::string text) {
  absl::StatusOr<std::unique_ptr<Normalizer>> n = ParseNormalizer(config, "normalizer", "t.json");
  EXPECT_TRUE(n.ok()) << n.status();
  if (!n.ok()) return "";
  if (*n == nullptr) return text;  // null: no normalizer
  absl::Status s = (*n)->Normalize(&text);
  EXPECT_TRUE(s.ok()) << s;
  return text;
}

std::vector<std::string> PreTokenize(const json& config, std::string text, int section = 0) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> p =
      ParsePreTokenizer(config, "pre_tokenizer", "t.json");
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return {};
  std::vector<std::string> pieces = {std::move(text)};
  absl::Status s = (*p)->PreTokenize(&pieces, section);
  EXPECT_TRUE(s.ok()) << s;
  return pieces;
}

json SplitOn(std::string_view pattern_kind, std::string_view pattern, std::string_view behavior,
             bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{std::string(pattern_kind), std::string(pattern)}}},
          {"behavior", std::string(behavior)},
          {"invert", invert}};
}

// Decodes `pieces` (none of them added tokens) as a whole sequence.
std::string DecodeAll(const json& config, const std::vector<std::string>& pieces) {
  absl::StatusOr<std::unique_ptr<Decoder>> d = ParseDecoder(config, "decoder", "t.json");
  EXPECT_TRUE(d.ok()) << d.status();
  if (!d.ok()) return "";
  TextPipeline p;
  p.decoder = *std::move(d);
  std::vector<DecoderPiece> in;
  for (const std::string& s : pieces) in.push_back({s});
  if (!in.empty()) {
    in.front().first = true;
  }
  absl::StatusOr<std::string> text = p.Decode(std::move(in));
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

// The tokenizers documentation's example: "the-final--countdown" split on "-".
TEST(SplitTest, EveryBehavior) {
  const std::string text = "the-final--countdown";
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "Removed"), text),
              ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "Isolated"), text),
              ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "MergedWithPrevious"), text),
              ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "MergedWithNext"), text),
              ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "Contiguous"), text),
              ElementsAre("the", "-", "final", "--", "countdown"));
  // At the edges.
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "MergedWithPrevious"), "-a-"),
              ElementsAre("-", "a-"));
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "MergedWithNext"), "-a-"), ElementsAre("-a", "-"));
  EXPECT_THAT(PreTokenize(SplitOn("String", "-", "Removed"), "---"), ElementsAre());
}

TEST(SplitTest, InvertKeepsTheMatches) {
  // invert: the pattern describes the pieces, not the delimiters.
  EXPECT_THAT(PreTokenize(SplitOn("Regex", "\\w+", "Removed", true), "ab, cd!"),
              ElementsAre("ab", "cd"));
  EXPECT_THAT(PreTokenize(SplitOn("Regex", "\\w+", "Isolated", true), "ab, cd"),
              ElementsAre("ab", ", ", "cd"));
}

TEST(SplitTest, StringPatternsAreLiteral) {
  EXPECT_THAT(PreTokenize(SplitOn("String", ".*", "Isolated"), "a.*b.c"),
              ElementsAre("a", ".*", "b.c"));
  EXPECT_THAT(PreTokenize(SplitOn("String", "\\E", "Isolated"), "x\\Ey"),
              ElementsAre("x", "\\E", "y"));
}

TEST(SplitTest, UnicodePropertiesAndWhitespace) {
  // DeepSeek V3's digit and CJK splits.
  const json deepseek = {
      {"type", "Sequence"},
      {"pretokenizers",
       {SplitOn("Regex", "\\p{N}{1,3}", "Isolated"),
        SplitOn("Regex", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+", "Isolated")}}};
  EXPECT_THAT(PreTokenize(deepseek, "ab12345中文x"), ElementsAre("ab", "123", "45", "中文", "x"));
  // \s is JavaScript's whitespace (U+3000, U+00A0 and U+FEFF included,
  // U+0085 not), as transformers.js reads the pattern.
  EXPECT_THAT(PreTokenize(SplitOn("Regex", "\\s+", "Removed"), "a\ufeffb\u3000c\u00a0d\u0085e"),
              ElementsAre("a", "b", "c", "d\u0085e"));
  EXPECT_THAT(PreTokenize(SplitOn("Regex", "[^\\s\\p{L}]+", "Removed", true), "ab, \ufeffcd"),
              ElementsAre(","));
}

TEST(PreTokenizerTest, ByteLevel) {
  const json gpt2 = {{"type", "ByteLevel"}, {"add_prefix_space", false}};
  EXPECT_THAT(PreTokenize(gpt2, "Hello world"), ElementsAre("Hello", "\xC4\xA0world"));
  const json prefix = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}};
  EXPECT_THAT(PreTokenize(prefix, "Hi all"), ElementsAre("\xC4\xA0Hi\xC4\xA0"
                                                         "all"));
  EXPECT_THAT(PreTokenize(prefix, " Hi"), ElementsAre("\xC4\xA0Hi"));
  // Every byte becomes a printable character: "é" is C3 A9 -> "Ã©".
  EXPECT_THAT(PreTokenize(gpt2, "é\n"), ElementsAre("\xC3\x83\xC2\xA9", "\xC4\x8A"));
}

TEST(PreTokenizerTest, MetaspacePrependSchemes) {
  const json always = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}};
  EXPECT_THAT(PreTokenize(always, "Hey friend"), ElementsAre("▁Hey", "▁friend"));
  EXPECT_THAT(PreTokenize(always, "Hey", 1), ElementsAre("▁Hey"));
  const json first = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}};
  EXPECT_THAT(PreTokenize(first, "Hey", 0), ElementsAre("▁Hey"));
  EXPECT_THAT(PreTokenize(first, "Hey", 1), ElementsAre("Hey"));
  const json never_unsplit = {{"type", "Metaspace"}, {"prepend_scheme", "never"}, {"split", false}};
  EXPECT_THAT(PreTokenize(never_unsplit, "a b  c"), ElementsAre("a▁b▁▁c"));
  // Older files say add_prefix_space instead of prepend_scheme.
  const json old = {{"type", "Metaspace"}, {"add_prefix_space", false}};
  EXPECT_THAT(PreTokenize(old, "a b"), ElementsAre("a", "▁b"));
}

TEST(PreTokenizerTest, DigitsPunctuationWhitespace) {
  EXPECT_THAT(PreTokenize({{"type", "Digits"}, {"individual_digits", true}}, "a123b"),
              ElementsAre("a", "1", "2", "3", "b"));
  EXPECT_THAT(PreTokenize({{"type", "Digits"}, {"individual_digits", false}}, "a123b٣٤"),
              ElementsAre("a", "123", "b", "٣٤"));
  EXPECT_THAT(PreTokenize({{"type", "Punctuation"}}, "Hey!! you?"),
              ElementsAre("Hey", "!", "!", " you", "?"));
  EXPECT_THAT(PreTokenize({{"type", "Punctuation"}, {"behavior", "Contiguous"}}, "Hey!! you?"),
              ElementsAre("Hey", "!!", " you", "?"));
  EXPECT_THAT(PreTokenize({{"type", "Whitespace"}}, "Hey friend!  How's it?"),
              ElementsAre("Hey", "friend", "!", "How", "'", "s", "it", "?"));
  EXPECT_THAT(PreTokenize({{"type", "WhitespaceSplit"}}, " Hey\tfriend!\u3000x "),
              ElementsAre("Hey", "friend!", "x"));
  EXPECT_THAT(PreTokenize({{"type", "BertPreTokenizer"}}, "Hey, you!"),
              ElementsAre("Hey", ",", "you", "!"));
}

TEST(NormalizerTest, EachType) {
  EXPECT_EQ(Normalize({{"type", "NFC"}}, "e\u0301"), "é");
  EXPECT_EQ(Normalize({{"type", "NFD"}}, "é"), "e\u0301");
  EXPECT_EQ(Normalize({{"type", "NFKC"}}, "ﬁ①"), "fi1");
  EXPECT_EQ(Normalize({{"type", "NFKD"}}, "ﬁ"), "fi");
  // Full lowercasing: final sigma, İ -> i + combining dot.
  EXPECT_EQ(Normalize({{"type", "Lowercase"}}, "ÀB ΟΔΟΣ İ"), "àb οδος i\u0307");
  EXPECT_EQ(Normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                      " \t\u3000a b \n"),
            "a b");
  EXPECT_EQ(Normalize({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}, "  a  "),
            "  a");
  EXPECT_EQ(Normalize({{"type", "Strip"}}, "   "), "");
  EXPECT_EQ(Normalize({{"type", "Sequence"},
                       {"normalizers", {{{"type", "NFD"}}, {{"type", "StripAccents"}}}}},
                      "café naïve"),
            "cafe naive");
  EXPECT_EQ(
      Normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}, "a b  c"),
      "a▁b▁▁c");
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}},
                      "a b    c"),
            "a b c");
  EXPECT_EQ(Normalize({{"type", "Prepend"}, {"prepend", "▁"}}, "x"), "▁x");
  EXPECT_EQ(Normalize({{"type", "Prepend"}, {"prepend", "▁"}}, ""), "");
  EXPECT_EQ(Normalize({{"type", "BertNormalizer"}, {"lowercase", true}}, "Héllo\tWorld\x01中"),
            "hello world 中 ");
  EXPECT_EQ(Normalize(nullptr, "as is"), "as is");
}

TEST(DecoderTest, SentencePieceChain) {
  // Llama 2 / Mistral tokenizer.json.
  const json llama2 = {{"type", "Sequence"},
                       {"decoders",
                        {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                         {{"type", "ByteFallback"}},
                         {{"type", "Fuse"}},
                         {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(DecodeAll(llama2, {"▁Hello", "▁world", "<0x21>", "<0xE2>", "<0x82>", "<0xAC>"}),
            "Hello world!€");
  // Only the sequence's first piece loses its space after Fuse.
  EXPECT_EQ(DecodeAll(llama2, {"▁▁a", "▁b"}), " a b");
  const json metaspace = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}};
  EXPECT_EQ(DecodeAll(metaspace, {"▁Hey", "▁friend"}), "Hey friend");
  const json never = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "never"}};
  EXPECT_EQ(DecodeAll(never, {"▁Hey"}), " Hey");
  // Without Fuse, Strip cuts every piece.
  const json strip = {{"type", "Strip"}, {"content", "x"}, {"start", 2}, {"stop", 0}};
  EXPECT_EQ(DecodeAll(strip, {"xxxa", "xb"}), "xab");
}

TEST(DecoderTest, ByteLevelAndNone) {
  EXPECT_EQ(DecodeAll({{"type", "ByteLevel"}}, {"Hello", "\xC4\xA0world", "\xC4\x8A"}),
            "Hello world\n");
  // No decoder: pieces joined by spaces (Hugging Face's default).
  EXPECT_EQ(DecodeAll(nullptr, {"a", "b"}), "a b");
  // Added tokens pass ByteLevel unchanged.
  absl::StatusOr<std::unique_ptr<Decoder>> d = ParseDecoder({{"type", "ByteLevel"}}, "d", "t");
  ASSERT_TRUE(d.ok());
  TextPipeline p;
  p.decoder = *std::move(d);
  EXPECT_EQ(*p.Decode({{"Ċ", false, true}, {"<｜User｜>", true}}), "\n<｜User｜>");
}

TEST(PipelineErrorsTest, NamesTheConstructAndItsPath) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> p = ParsePreTokenizer(
      {{"type", "Sequence"}, {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Nope"}}}}},
      "pre_tokenizer", "t.json");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("t.json: pre_tokenizer.pretokenizers[1]"));
  EXPECT_THAT(p.status().message(), HasSubstr("\"Nope\""));
  p = ParsePreTokenizer(SplitOn("Regex", "[a-", "Isolated"), "pre_tokenizer", "t.json");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("pre_tokenizer.pattern"));
  p = ParsePreTokenizer(SplitOn("Regex", "a", "Sideways"), "pre_tokenizer", "t.json");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("pre_tokenizer.behavior"));
  absl::StatusOr<std::unique_ptr<Normalizer>> n = ParseNormalizer(
      {{"type", "Replace"}, {"pattern", {{"Glob", "*"}}}, {"content", ""}}, "normalizer", "t.json");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(n.status().message(), HasSubstr("normalizer.pattern"));
  absl::StatusOr<std::unique_ptr<Decoder>> d =
      ParseDecoder({{"type", "Strip"}, {"content", " "}, {"start", -1}}, "decoder", "t.json");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("decoder.start"));
  // Cutting the end of the text cannot be streamed.
  d = ParseDecoder({{"type", "Strip"}, {"content", " "}, {"stop", 1}}, "decoder", "t.json");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("stop > 0"));
  d = ParseDecoder({{"type", "BPEDecoder"}}, "decoder", "t.json");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr("\"BPEDecoder\""));
}

TEST(PipelineErrorsTest, DeepNestingIsRefused) {
  // Built as text: nesting json values by copy would take quadratic time.
  std::string text = R"({"type": "NFC"})";
  for (int i = 0; i < 1000; ++i) {
    text = absl::StrCat(R"({"type": "Sequence", "normalizers": [)", text, "]}");
  }
  const json n = json::parse(text);
  absl::StatusOr<std::unique_ptr<Normalizer>> parsed = ParseNormalizer(n, "normalizer", "t.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("nested more than 16 deep"));
}

// A pattern that backtracks exponentially ends with an error, not a hang.
TEST(RegexTest, PathologicalPatternsAreBounded) {
  absl::StatusOr<Regex> r = Regex::Compile("(a|aa)*(a|aa)*b", "test");
  ASSERT_TRUE(r.ok()) << r.status();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> m = r->FindAll(std::string(60, 'a'));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(m.status().message(), HasSubstr("takes too long"));
  EXPECT_LT(seconds, 60);
}

TEST(RegexTest, ByteOffsetsAcrossAstralCharacters) {
  absl::StatusOr<Regex> r = Regex::Compile("\\p{L}+", "test");
  ASSERT_TRUE(r.ok());
  // 🦙 is 4 UTF-8 bytes and 2 UTF-16 units.
  absl::StatusOr<std::vector<std::pair<size_t, size_t>>> m = r->FindAll("🦙ab🦙𝒜c");
  ASSERT_TRUE(m.ok());
  EXPECT_THAT(*m, ElementsAre(std::pair<size_t, size_t>(4, 6), std::pair<size_t, size_t>(10, 15)));
}

}  // namespace
}  // namespace packd::engine
