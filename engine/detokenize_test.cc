// Detokenize on real vocabularies: the ids' text, always valid UTF-8, and a
// bad id named by index and value.
#include "engine/detokenize.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Tokenizer> Load(const std::string& relative) {
  const std::filesystem::path path =
      testing::RequireSharedFile(std::filesystem::path("tokenizers") / relative);
  if (path.empty()) return nullptr;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(path);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

// Llama 2: bos 1, "▁Hello" 15043, "▁world" 3186, byte tokens <0xNN> = NN + 3.
TEST(DetokenizeTest, SpmTextSpecialTokensAndBrokenUtf8) {
  const std::unique_ptr<Tokenizer> t = Load("llama-spm/tokenizer.json");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(*Detokenize(*t, {1, 15043, 3186}, /*include_special=*/false, "ids"), "Hello world");
  EXPECT_THAT(*Detokenize(*t, {1, 15043, 3186}, /*include_special=*/true, "ids"),
              ::testing::StartsWith("<s>"));
  EXPECT_EQ(*Detokenize(*t, {}, true, "ids"), "");
  // "€" is E2 82 AC = ids 229 133 175: cut short it is one U+FFFD per
  // maximal invalid subpart, also in the middle of the text.
  EXPECT_EQ(*Detokenize(*t, {229, 133, 175}, false, "ids"), "€");
  EXPECT_EQ(*Detokenize(*t, {229, 133}, false, "ids"), "\xEF\xBF\xBD");
  EXPECT_EQ(*Detokenize(*t, {229, 15043, 133}, false, "ids"), "\xEF\xBF\xBD Hello\xEF\xBF\xBD");
}

// Byte-level BPE: the single-byte tokens of "é" (C3 A9; GPT-2 spells those
// bytes "Ã" and "©") are half a character each.
TEST(DetokenizeTest, ByteLevelPartialCharacterIsReplaced) {
  const std::unique_ptr<Tokenizer> t = Load("gpt-2/tokenizer.json");
  ASSERT_NE(t, nullptr);
  TokenId c3 = -1, a9 = -1;
  for (TokenId id = 0; id < t->vocab_size(); ++id) {
    const absl::StatusOr<std::string> piece = t->Piece(id);
    if (piece.ok() && *piece == "Ã") c3 = id;
    if (piece.ok() && *piece == "©") a9 = id;
  }
  ASSERT_GE(c3, 0);
  ASSERT_GE(a9, 0);
  EXPECT_EQ(*Detokenize(*t, {c3, a9}, false, "ids"), "é");
  EXPECT_EQ(*Detokenize(*t, {c3}, false, "ids"), "\xEF\xBF\xBD");
  EXPECT_EQ(*Detokenize(*t, {a9, c3, a9}, false, "ids"), "\xEF\xBF\xBDé");
}

TEST(DetokenizeTest, AnIdOutsideTheVocabularyIsNamed) {
  const std::unique_ptr<Tokenizer> t = Load("llama-spm/tokenizer.json");
  ASSERT_NE(t, nullptr);
  absl::StatusOr<std::string> s = Detokenize(*t, {1, 2, 32000}, false, "token_ids");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(),
              HasSubstr("token_ids[2]: 32000 is outside the vocabulary (ids 0 to 31999)"));
  s = Detokenize(*t, {-1}, false, "ids");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("ids[0]: -1"));
}

}  // namespace
}  // namespace packd::engine
