// The merge algorithm against a naive reference, and BpeModel options on a
// small hand-made SentencePiece vocabulary (unknown characters, unused
// pieces, whitespace options, added tokens).
#include "engine/tokenizer/bpe_merge.h"

#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/unicode_normalizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The definition: repeatedly merge the leftmost pair of lowest rank.
std::vector<TokenId> NaiveMerge(const MergeTable& table, std::vector<TokenId> s) {
  while (true) {
    int best = -1;
    uint32_t best_rank = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const MergeRule* r = table.Find(s[i], s[i + 1]);
      if (r != nullptr && (best < 0 || r->rank < best_rank)) {
        best = static_cast<int>(i);
        best_rank = r->rank;
      }
    }
    if (best < 0) return s;
    s[best] = table.Find(s[best], s[best + 1])->result;
    s.erase(s.begin() + best + 1);
  }
}

TEST(MergeTableTest, KeepsTheLowerRank) {
  MergeTable t;
  EXPECT_EQ(t.Find(1, 2), nullptr);
  t.Add(1, 2, 10, 100);
  t.Add(1, 2, 5, 101);
  t.Add(1, 2, 7, 102);
  ASSERT_NE(t.Find(1, 2), nullptr);
  EXPECT_EQ(t.Find(1, 2)->rank, 5u);
  EXPECT_EQ(t.Find(1, 2)->result, 101);
  EXPECT_EQ(t.Find(2, 1), nullptr);
  EXPECT_EQ(t.size(), 1u);
  for (int i = 0; i < 100000; ++i) t.Add(i, i + 1, i, i);  // grows
  EXPECT_EQ(t.size(), 100000u);
  EXPECT_EQ(t.Find(77777, 77778)->result, 77777);
}

TEST(BpeMergerTest, RankThenLeftmost) {
  MergeTable t;
  t.Add(0, 1, 1, 10);  // a b -> x
  t.Add(1, 2, 0, 11);  // b c -> y (better)
  t.Add(0, 0, 2, 12);  // a a -> A
  t.Add(12, 12, 3, 13);
  BpeMerger m(t);
  std::vector<TokenId> s = {0, 1, 2};
  m.Merge(&s);
  EXPECT_THAT(s, ElementsAre(0, 11));
  s = {0, 0, 0};
  m.Merge(&s);
  EXPECT_THAT(s, ElementsAre(12, 0));
  s = {0, 0, 0, 0};
  m.Merge(&s);
  EXPECT_THAT(s, ElementsAre(13));
  s = {};
  m.Merge(&s);
  EXPECT_TRUE(s.empty());
  s = {5};
  m.Merge(&s);
  EXPECT_THAT(s, ElementsAre(5));
}

TEST(BpeMergerTest, UnmergesRecursively) {
  MergeTable t;
  t.Add(0, 1, 0, 10);
  t.Add(10, 2, 1, 11);
  BpeMerger m(t);
  const std::function<bool(TokenId)> unused = [](TokenId id) { return id == 11; };
  std::vector<TokenId> s = {0, 1, 2};
  m.Merge(&s, &unused);
  EXPECT_THAT(s, ElementsAre(10, 2));  // 11 split back, 10 kept
}

TEST(BpeMergerTest, MatchesNaiveReference) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    MergeTable t;
    const int alphabet = 2 + static_cast<int>(rng() % 4);
    int next_id = alphabet;
    std::vector<TokenId> ids;
    for (int i = 0; i < alphabet; ++i) ids.push_back(i);
    for (int r = 0, n = static_cast<int>(rng() % 30); r < n; ++r) {
      // Ranks repeat on purpose: ties between different pairs go leftmost.
      t.Add(ids[rng() % ids.size()], ids[rng() % ids.size()], static_cast<uint32_t>(rng() % 8),
            next_id);
      ids.push_back(next_id++);
    }
    BpeMerger m(t);
    for (int k = 0; k < 10; ++k) {
      std::vector<TokenId> s(rng() % 40);
      for (TokenId& id : s) id = static_cast<TokenId>(rng() % alphabet);
      const std::vector<TokenId> expected = NaiveMerge(t, s);
      m.Merge(&s);
      ASSERT_EQ(s, expected) << "trial " << trial;
    }
  }
}

// A small SentencePiece-style vocabulary.
BpeModel SmallSpm() {
  BpeModel m;
  m.family = BpeFamily::kSentencePiece;
  m.label = "small";
  using T = TokenType;
  m.pieces = {"<unk>", "<s>", "</s>", "▁", "a", "b", "▁a", "ab", "▁ab", "<user>"};
  m.types = {T::kUnknown, T::kControl, T::kControl, T::kNormal, T::kNormal,
             T::kNormal,  T::kNormal,  T::kNormal,  T::kNormal, T::kUserDefined};
  m.scores = {0, 0, 0, -1, -2, -3, -4, -0.5f, -5, 0};
  m.unk = 0;
  m.bos = 1;
  m.eos = 2;
  m.add_bos = true;
  return m;
}

std::unique_ptr<Tokenizer> Build(BpeModel m) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = NewBpeTokenizer(std::move(m));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

TEST(SmallSpmTest, MergesByScore) {
  auto t = Build(SmallSpm());
  ASSERT_NE(t, nullptr);
  // "▁ab": a+b (score -0.5) before ▁+a (-4), then ▁+ab.
  EXPECT_THAT(*t->Encode("ab", true), ElementsAre(1, 8));
  EXPECT_EQ(*t->Decode({1, 8}), "ab");
  EXPECT_EQ(*t->Decode({1, 8}, true), "<s> ab");  // shown <s> comes first
  EXPECT_THAT(*t->Encode("bab", false), ElementsAre(3, 5, 7));
}

// Not reversible: characters without a piece, in a vocabulary without byte
// fallback, become <unk> (one per run), which decodes as " ⁇ ".
TEST(SmallSpmTest, UnknownCharactersWithoutByteFallbackAreNotReversible) {
  auto t = Build(SmallSpm());
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(*t->Encode("a c", false), ElementsAre(6, 3, 0));
  EXPECT_THAT(*t->Encode("acc", false), ElementsAre(6, 0));
  EXPECT_EQ(*t->Decode({6, 3, 0}), "a  \xE2\x81\x87 ");
  BpeModel no_unk = SmallSpm();
  no_unk.unk.reset();
  no_unk.types[0] = TokenType::kControl;
  t = Build(std::move(no_unk));
  ASSERT_NE(t, nullptr);
  absl::StatusOr<std::vector<TokenId>> ids = t->Encode("ac", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_THAT(ids.status().message(), HasSubstr("\"c\" is not in the vocabulary"));
}

TEST(SmallSpmTest, UnusedPiecesAreSplitBack) {
  BpeModel m = SmallSpm();
  m.types[7] = TokenType::kUnused;  // "ab"
  auto t = Build(std::move(m));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(*t->Encode("bab", false), ElementsAre(3, 5, 4, 5));
  EXPECT_THAT(*t->Encode("ab", false), ElementsAre(8));  // merged on into a normal piece
}

// Not reversible either: remove_extra_whitespaces drops spaces.
TEST(SmallSpmTest, WhitespaceOptions) {
  BpeModel m = SmallSpm();
  m.remove_extra_whitespaces = true;
  auto t = Build(std::move(m));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(*t->Encode("  a   b ", false), ElementsAre(6, 3, 5));
  EXPECT_EQ(*t->Decode({6, 3, 5}), "a b");
  EXPECT_TRUE(t->Encode("   ", false)->empty());

  m = SmallSpm();
  m.add_dummy_prefix = false;
  t = Build(std::move(m));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(*t->Encode("ab a", false), ElementsAre(7, 6));
  EXPECT_EQ(*t->Decode({6, 7}), " aab");  // no dummy prefix: nothing to drop
}

TEST(SmallSpmTest, AddedTokens) {
  auto t = Build(SmallSpm());
  ASSERT_NE(t, nullptr);
  // User-defined tokens always match; control tokens only with parse_special.
  EXPECT_THAT(*t->Encode("a<user>b", false), ElementsAre(6, 9, 3, 5));
  EXPECT_THAT(*t->Encode("<s>a", false, /*parse_special=*/true), ElementsAre(1, 6));
  EXPECT_THAT(*t->Encode("<s>", false, /*parse_special=*/false), ElementsAre(3, 0));

  BpeModel m = SmallSpm();
  m.added_tokens = {{9, "<user>", /*special=*/false, /*lstrip=*/true, /*rstrip=*/true}};
  t = Build(std::move(m));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(*t->Encode("a  <user>  b", false), ElementsAre(6, 9, 3, 5));
  // Unicode whitespace too (U+3000, U+00A0), as Hugging Face strips it.
  EXPECT_THAT(*t->Encode("a\u3000 <user>\u00a0\tb", false), ElementsAre(6, 9, 3, 5));
  m = SmallSpm();
  m.added_tokens = {{9, "<user>", false, false, false, /*single_word=*/true}};
  t = Build(std::move(m));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(*t->Encode("a <user> b", false), ElementsAre(6, 3, 9, 3, 3, 5));
  EXPECT_THAT(*t->Encode("a<user>", false), ElementsAre(6, 0));  // inside a word: not matched
}

TEST(SmallSpmTest, InvalidModels) {
  BpeModel m = SmallSpm();
  m.eos = 10;
  EXPECT_THAT(NewBpeTokenizer(std::move(m)).status().message(), HasSubstr("eos token id 10"));
  m = SmallSpm();
  m.types.pop_back();
  EXPECT_FALSE(NewBpeTokenizer(std::move(m)).ok());
  m = SmallSpm();
  m.byte_fallback = true;
  EXPECT_THAT(NewBpeTokenizer(std::move(m)).status().message(), HasSubstr("<0x00>"));
  m = SmallSpm();
  m.scores.clear();
  m.merges = {{"a", "b"}, {"▁", "c"}};
  EXPECT_THAT(NewBpeTokenizer(std::move(m)).status().message(),
              HasSubstr("merge #1 (\"▁ c\"): \"c\" is not in the vocabulary"));
  m = SmallSpm();
  m.family = BpeFamily::kByteLevel;
  m.scores.clear();
  m.merges = {{"a", "b"}};
  EXPECT_THAT(NewBpeTokenizer(std::move(m)).status().message(), HasSubstr("no token for byte"));
}

TEST(UnicodeNormalizerTest, Forms) {
  EXPECT_EQ(*NormalizeUnicode(UnicodeForm::kNone, "e\u0301"), "e\u0301");
  EXPECT_EQ(*NormalizeUnicode(UnicodeForm::kNfc, "e\u0301 ok"), "\u00e9 ok");
  EXPECT_EQ(*NormalizeUnicode(UnicodeForm::kNfd, "\u00e9"), "e\u0301");
  EXPECT_EQ(*NormalizeUnicode(UnicodeForm::kNfkc, "\ufb01"), "fi");
  EXPECT_EQ(*NormalizeUnicode(UnicodeForm::kNfkd, "\u00bd"), "1\u20442");
  EXPECT_EQ(*NormalizeUnicode(UnicodeForm::kNfc, ""), "");
}

}  // namespace
}  // namespace packd::engine
