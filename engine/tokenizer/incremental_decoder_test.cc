// IncrementalDecoder on real vocabularies: streamed text never holds half a
// UTF-8 character and adds up to Decode().
#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

namespace fs = std::filesystem;

const Tokenizer* Load(const std::string& relative) {
  static auto* const cache = new std::map<std::string, std::unique_ptr<Tokenizer>>;
  if (auto it = cache->find(relative); it != cache->end()) return it->second.get();
  const fs::path path = testing::RequireSharedFile(fs::path("tokenizers") / relative);
  if (path.empty()) return nullptr;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(path);
  if (!t.ok()) {
    ADD_FAILURE() << t.status();
    return nullptr;
  }
  return cache->emplace(relative, *std::move(t)).first->second.get();
}

// One spm vocabulary with byte fallback, two byte-level ones.
const char* const kVocabularies[] = {
    "llama-spm/ggml-vocab-llama-spm.gguf",
    "gpt-2/ggml-vocab-gpt-2.gguf",
    "llama-bpe/tokenizer.model",
};

struct Streamed {
  std::vector<std::string> pieces;  // what each Push returned, then Flush
  std::string text;                 // their concatenation
};

Streamed Stream(const Tokenizer& t, const std::vector<TokenId>& ids, bool include_special) {
  IncrementalDecoder decoder(t, include_special);
  Streamed s;
  for (TokenId id : ids) {
    absl::StatusOr<std::string> piece = decoder.Push(id);
    EXPECT_TRUE(piece.ok()) << piece.status();
    if (!piece.ok()) return s;
    s.pieces.push_back(*piece);
  }
  s.pieces.push_back(decoder.Flush());
  for (const std::string& p : s.pieces) s.text += p;
  return s;
}

void ExpectEveryPieceValid(const Streamed& s) {
  for (size_t i = 0; i < s.pieces.size(); ++i) {
    EXPECT_EQ(FindInvalidUtf8(s.pieces[i]), std::nullopt)
        << "piece " << i << " is not whole UTF-8: \"" << s.pieces[i] << "\"";
  }
}

class IncrementalDecoderTest : public ::testing::TestWithParam<const char*> {};

TEST_P(IncrementalDecoderTest, MultiByteCharactersAreNeverSplit) {
  const Tokenizer* t = Load(GetParam());
  ASSERT_NE(t, nullptr);
  const std::vector<std::string> texts = {
      "Hello, world!",
      " this is 🦙.cpp",
      "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅",
      "我想在apple工作1314151天～",
      "កាន់តែពិសេសអាចខលចេញ",
      "Cửa Việt — нещо на Български",
      "\n \n\n\t emoji at the end 😁",
      "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 and 𓂀 hieroglyphs",
  };
  int held_back = 0;  // pushes that returned nothing because a character was incomplete
  for (const std::string& text : texts) {
    for (bool include_special : {false, true}) {
      absl::StatusOr<std::vector<TokenId>> ids = t->Encode(text, /*add_special=*/true);
      ASSERT_TRUE(ids.ok()) << ids.status();
      const Streamed s = Stream(*t, *ids, include_special);
      ExpectEveryPieceValid(s);
      EXPECT_EQ(s.text, *t->Decode(*ids, include_special)) << text;
      if (!include_special) EXPECT_EQ(s.text, text);
      for (size_t i = 0; i + 1 < s.pieces.size(); ++i) {
        absl::StatusOr<std::string> bytes = t->TokenBytes((*ids)[i], include_special);
        held_back += s.pieces[i].empty() && !bytes->empty();
      }
    }
  }
  // Emoji and CJK do get split across tokens (byte fallback / byte-level),
  // so some pushes must have been held back.
  EXPECT_GT(held_back, 0);
}

TEST_P(IncrementalDecoderTest, RandomIdsMatchDecodeWithReplacement) {
  const Tokenizer* t = Load(GetParam());
  ASSERT_NE(t, nullptr);
  std::mt19937 rng(42);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<TokenId> ids(1 + rng() % 40);
    for (TokenId& id : ids) {
      // Mostly low ids (bytes and short pieces), some from the whole vocabulary.
      id = static_cast<TokenId>(rng() % 4 == 0 ? rng() % t->vocab_size() : rng() % 400);
    }
    for (bool include_special : {false, true}) {
      const Streamed s = Stream(*t, ids, include_special);
      ExpectEveryPieceValid(s);
      absl::StatusOr<std::string> decoded = t->Decode(ids, include_special);
      ASSERT_TRUE(decoded.ok());
      EXPECT_EQ(s.text, ReplaceInvalidUtf8(*decoded)) << "trial " << trial;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, IncrementalDecoderTest, ::testing::ValuesIn(kVocabularies),
                         [](const auto& info) {
                           std::string name =
                               std::string(info.param).substr(0, std::string(info.param).find('/'));
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(IncrementalDecoderSpmTest, ByteFallbackEmojiAndInvalidBytes) {
  const Tokenizer* t = Load("llama-spm/ggml-vocab-llama-spm.gguf");
  ASSERT_NE(t, nullptr);
  // "🦙" has no piece: four byte tokens <0xF0> <0x9F> <0xA6> <0x99>.
  const std::vector<TokenId> llama = *t->Encode("🦙", false);
  ASSERT_EQ(llama.size(), 5u);  // "▁" + 4 bytes
  IncrementalDecoder decoder(*t);
  EXPECT_EQ(*decoder.Push(llama[0]), "");  // the dummy-prefix space is dropped
  EXPECT_EQ(*decoder.Push(llama[1]), "");
  EXPECT_EQ(*decoder.Push(llama[2]), "");
  EXPECT_EQ(*decoder.Push(llama[3]), "");
  EXPECT_EQ(*decoder.Push(llama[4]), "🦙");
  EXPECT_EQ(decoder.Flush(), "");

  // <0xE2> then "▁Hello": the incomplete E2 becomes U+FFFD when a
  // non-continuation byte arrives; a lone <0xFF> is U+FFFD at once; a
  // truncated character at the end comes out of Flush as U+FFFD.
  const TokenId e2 = 3 + 0xE2, ff = 3 + 0xFF, f0 = 3 + 0xF0, x9f = 3 + 0x9F;
  ASSERT_EQ(*t->Piece(e2), "<0xE2>");
  IncrementalDecoder d2(*t);
  EXPECT_EQ(*d2.Push(e2), "");
  EXPECT_EQ(*d2.Push(15043), "\xEF\xBF\xBD Hello");
  EXPECT_EQ(*d2.Push(ff), "\xEF\xBF\xBD");
  EXPECT_EQ(*d2.Push(f0), "");
  EXPECT_EQ(*d2.Push(x9f), "");
  EXPECT_EQ(d2.Flush(), "\xEF\xBF\xBD");

  // Control tokens: hidden (the first visible token loses its dummy-prefix
  // space), or shown with include_special (then the shown one comes first and
  // the next token keeps its space, as Hugging Face decodes), as in Decode.
  IncrementalDecoder plain(*t), special(*t, /*include_special=*/true);
  EXPECT_EQ(*plain.Push(1), "");
  EXPECT_EQ(*plain.Push(15043), "Hello");
  EXPECT_EQ(*special.Push(1), "<s>");
  EXPECT_EQ(*special.Push(15043), " Hello");
  EXPECT_EQ(*special.Push(2), "</s>");
  EXPECT_EQ(*t->Decode({1, 15043, 2}, true), "<s> Hello</s>");
}

}  // namespace
}  // namespace packd::engine
