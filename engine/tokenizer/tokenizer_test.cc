// The tokenizers on real files: llama.cpp's 46 test strings through every
// file form each model ships (their ids must match exactly), the
// stories260K reference, loading from directories, speed, and errors.
#include "engine/tokenizer/tokenizer.h"

#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "engine/gguf.h"
#include "engine/model_directory.h"
#include "engine/tokenizer/pretokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct VocabCase {
  std::string text;
  std::vector<TokenId> ids;
};

// Reads <stem>.inp / <stem>.out (format: /work/shared/tokenizers/README.md).
std::vector<VocabCase> ReadCases(const fs::path& stem) {
  absl::StatusOr<std::string> inp = ReadFileToString(fs::path(stem.string() + ".inp"));
  absl::StatusOr<std::string> out = ReadFileToString(fs::path(stem.string() + ".out"));
  if (!inp.ok() || !out.ok()) {
    ADD_FAILURE() << "cannot read the test vectors " << stem;
    return {};
  }
  std::vector<std::string> texts = absl::StrSplit(*inp, "\n__ggml_vocab_test__\n");
  EXPECT_TRUE(!texts.empty() && texts.back().empty()) << stem << ".inp must end with a separator";
  texts.pop_back();
  std::vector<std::string> lines = absl::StrSplit(*out, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  EXPECT_EQ(texts.size(), lines.size()) << stem;
  std::vector<VocabCase> cases;
  for (size_t i = 0; i < texts.size() && i < lines.size(); ++i) {
    VocabCase c{texts[i], {}};
    for (absl::string_view id : absl::StrSplit(lines[i], ' ', absl::SkipEmpty())) {
      c.ids.push_back(std::stoi(std::string(id.data(), id.size())));
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

// Seconds each Load() took, by name.
std::map<std::string, double>& LoadSeconds() {
  static auto* const seconds = new std::map<std::string, double>;
  return *seconds;
}

// Loads (once per process) a tokenizer by one of the loaders, naming it by
// "<folder>/<form>".
const Tokenizer* Load(const std::string& name) {
  static auto* const cache = new std::map<std::string, std::unique_ptr<Tokenizer>>;
  if (auto it = cache->find(name); it != cache->end()) return it->second.get();
  const fs::path tok = testing::SharedDir() / "tokenizers";
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t;
  if (name == "llama-spm/gguf") {
    t = LoadTokenizer(tok / "llama-spm/ggml-vocab-llama-spm.gguf");
  } else if (name == "llama-spm/tokenizer.json") {
    t = LoadHfTokenizer(tok / "llama-spm/tokenizer.json", tok / "llama-spm/tokenizer_config.json");
  } else if (name == "llama-spm/tokenizer.model") {
    t = LoadSentencePieceModel(tok / "llama-spm/tokenizer.model");
  } else if (name == "gpt-2/gguf") {
    t = LoadTokenizer(tok / "gpt-2/ggml-vocab-gpt-2.gguf");
  } else if (name == "gpt-2/tokenizer.json") {
    t = LoadHfTokenizer(tok / "gpt-2/tokenizer.json", tok / "gpt-2/tokenizer_config.json");
  } else if (name == "llama-bpe/tokenizer.model") {
    t = LoadTiktokenModel(tok / "llama-bpe/tokenizer.model");
  } else if (name == "stories260K") {
    t = LoadTokenizer(testing::SharedDir() / "models/stories260K/stories260K.gguf");
  } else {
    ADD_FAILURE() << "unknown tokenizer " << name;
    return nullptr;
  }
  LoadSeconds()[name] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!t.ok()) {
    ADD_FAILURE() << name << ": " << t.status();
    return nullptr;
  }
  return cache->emplace(name, *std::move(t)).first->second.get();
}

std::string Folder(const std::string& form) { return form.substr(0, form.find('/')); }

// ---- The 46 llama.cpp test strings, through every file form.
//
// Every case must also round-trip: decode(encode(s)) == s. No case is
// exempt, because for these vocabularies the tokenizers are lossless:
//  - spm (llama-spm): byte fallback covers every character that has no
//    piece, and Decode drops exactly the one space that the dummy prefix
//    added (also for " Hello", "\n" or "", whose first token is "▁" alone
//    or none);
//  - byte-level (gpt-2, llama-bpe): every byte is a token.
// What does not round-trip is covered in bpe_merge_test.cc (a vocabulary
// without byte fallback turns unknown characters into <unk>; the
// remove_extra_whitespaces option drops spaces).
class VocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabTest, EncodesEveryCaseAsLlamaCppAndRoundTrips) {
  const std::string form = GetParam();
  ASSERT_FALSE(testing::RequireSharedFile("tokenizers/" + Folder(form)).empty());
  const fs::path stem =
      testing::SharedDir() / "tokenizers" / Folder(form) / ("ggml-vocab-" + Folder(form) + ".gguf");
  const std::vector<VocabCase> cases = ReadCases(stem);
  ASSERT_EQ(cases.size(), 46u);
  const Tokenizer* t = Load(form);
  ASSERT_NE(t, nullptr);
  int matched = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const VocabCase& c = cases[i];
    absl::StatusOr<std::vector<TokenId>> ids = t->Encode(c.text, /*add_special=*/false);
    ASSERT_TRUE(ids.ok()) << form << " case " << i << ": " << ids.status();
    EXPECT_EQ(*ids, c.ids) << form << " case " << i << ": \"" << c.text << "\"";
    matched += *ids == c.ids;
    absl::StatusOr<std::string> text = t->Decode(*ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, c.text) << form << " case " << i << " does not round-trip";
  }
  EXPECT_EQ(matched, 46) << form;
}

INSTANTIATE_TEST_SUITE_P(AllForms, VocabTest,
                         ::testing::Values("llama-spm/gguf", "llama-spm/tokenizer.json",
                                           "llama-spm/tokenizer.model", "gpt-2/gguf",
                                           "gpt-2/tokenizer.json", "llama-bpe/tokenizer.model"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// The forms of one vocabulary agree on everything, not just the 46 cases.
// `decoded_differently`: an id whose detokenized bytes differ by design (the
// unknown token: SentencePiece shows " ⁇ ", Hugging Face its text "<unk>",
// hidden as a special token).
void ExpectSameTokenizer(const Tokenizer& a, const Tokenizer& b,
                         std::optional<TokenId> decoded_differently = std::nullopt) {
  EXPECT_EQ(a.kind(), b.kind());
  ASSERT_EQ(a.vocab_size(), b.vocab_size());
  EXPECT_EQ(a.adds_bos(), b.adds_bos());
  EXPECT_EQ(a.stop_ids(), b.stop_ids());
  for (TokenId id = 0; id < a.vocab_size(); ++id) {
    for (bool special : {false, true}) {
      if (id == decoded_differently) continue;
      ASSERT_EQ(*a.TokenBytes(id, special), *b.TokenBytes(id, special)) << "id " << id;
    }
    ASSERT_EQ(*a.Piece(id), *b.Piece(id)) << "id " << id;
  }
}

TEST(TokenizerFormsTest, LlamaSpmFormsAgree) {
  const Tokenizer* gguf = Load("llama-spm/gguf");
  const Tokenizer* json = Load("llama-spm/tokenizer.json");
  const Tokenizer* model = Load("llama-spm/tokenizer.model");
  ASSERT_TRUE(gguf && json && model);
  EXPECT_EQ(gguf->bos_id(), json->bos_id());
  EXPECT_EQ(gguf->bos_id(), model->bos_id());
  ExpectSameTokenizer(*gguf, *json, /*decoded_differently=*/0);
  EXPECT_EQ(*json->TokenBytes(0, true), "<unk>");
  EXPECT_EQ(*json->TokenBytes(0, false), "");
  ExpectSameTokenizer(*gguf, *model);
  for (const Tokenizer* t : {gguf, json, model}) {
    EXPECT_EQ(t->kind(), "spm");
    EXPECT_EQ(t->vocab_size(), 32000);
    EXPECT_EQ(t->bos_id(), 1);
    EXPECT_EQ(t->eos_id(), 2);
    EXPECT_THAT(t->stop_ids(), ElementsAre(2));
    EXPECT_TRUE(t->adds_bos());
    EXPECT_THAT(*t->Encode("Hello world", true), ElementsAre(1, 15043, 3186));
  }
}

TEST(TokenizerFormsTest, Gpt2FormsAgree) {
  const Tokenizer* gguf = Load("gpt-2/gguf");
  const Tokenizer* json = Load("gpt-2/tokenizer.json");
  ASSERT_TRUE(gguf && json);
  ExpectSameTokenizer(*gguf, *json);
  for (const Tokenizer* t : {gguf, json}) {
    EXPECT_EQ(t->kind(), "bpe");
    EXPECT_EQ(t->vocab_size(), 50257);
    EXPECT_FALSE(t->adds_bos());
    EXPECT_THAT(t->stop_ids(), ElementsAre(50256));
    EXPECT_THAT(*t->Encode("Hello world", true), ElementsAre(15496, 995));
  }
  // The GGUF names bos/eos; GPT-2's tokenizer_config.json names neither
  // (<|endoftext|> still stops generation, by its name).
  EXPECT_EQ(gguf->bos_id(), 50256);
  EXPECT_EQ(gguf->eos_id(), 50256);
  EXPECT_EQ(json->bos_id(), std::nullopt);
  EXPECT_EQ(json->eos_id(), std::nullopt);
}

TEST(TokenizerFormsTest, Llama3SpecialTokens) {
  const Tokenizer* t = Load("llama-bpe/tokenizer.model");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->kind(), "bpe");
  EXPECT_EQ(t->vocab_size(), 128256);
  EXPECT_EQ(t->bos_id(), 128000);
  EXPECT_EQ(t->eos_id(), 128001);
  EXPECT_THAT(t->stop_ids(), ElementsAre(128001, 128008, 128009));
  EXPECT_TRUE(t->adds_bos());
  EXPECT_EQ(*t->Piece(128000), "<|begin_of_text|>");
  EXPECT_EQ(*t->Piece(128004), "<|finetune_right_pad_id|>");
  EXPECT_EQ(*t->Piece(128005), "<|reserved_special_token_2|>");
  EXPECT_EQ(*t->Piece(128006), "<|start_header_id|>");
  EXPECT_EQ(*t->Piece(128008), "<|eom_id|>");
  EXPECT_EQ(*t->Piece(128009), "<|eot_id|>");
  EXPECT_EQ(*t->Piece(128010), "<|python_tag|>");
  EXPECT_EQ(*t->Piece(128011), "<|reserved_special_token_3|>");
  EXPECT_EQ(*t->Piece(128255), "<|reserved_special_token_247|>");

  const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  // parse_special: the markers are single tokens ...
  EXPECT_THAT(*t->Encode(chat, true, /*parse_special=*/true),
              ElementsAre(128000, 128006, 882, 128007, 271, 13347, 128009));
  // ... otherwise they are plain text.
  const std::vector<TokenId> plain = *t->Encode(chat, false, /*parse_special=*/false);
  EXPECT_GT(plain.size(), 7u);
  for (TokenId id : plain) EXPECT_LT(id, 128000);
  EXPECT_EQ(*t->Decode(plain), chat);
  // Special tokens decode to nothing unless asked for.
  const std::vector<TokenId> ids = *t->Encode(chat, true, true);
  EXPECT_EQ(*t->Decode(ids), "user\n\nHi");
  EXPECT_EQ(*t->Decode(ids, /*include_special=*/true), "<|begin_of_text|>" + chat);
}

TEST(TokenizerFormsTest, SpmSpecialTokensInText) {
  const Tokenizer* t = Load("llama-spm/gguf");
  ASSERT_NE(t, nullptr);
  // Text after a special token is encoded as a text of its own (llama.cpp's
  // rule): it gets the dummy prefix again.
  EXPECT_THAT(*t->Encode("Hello</s>Hello", false, /*parse_special=*/true),
              ElementsAre(15043, 2, 15043));
  EXPECT_THAT(*t->Encode("<s>", false, false), ElementsAre(529, 29879, 29958));
  EXPECT_EQ(*t->Decode({1, 15043, 2}), "Hello");
  EXPECT_EQ(*t->Decode({1, 15043, 2}, true), "<s> Hello</s>");
}

// Random text: every form of a vocabulary gives the same ids, and decoding
// gives the text back. Not reversible, so not checked: in spm, text after a
// special token matched with parse_special (it gets a dummy prefix of its
// own), and U+2581 "▁" itself, which spm cannot tell from a space (it is not
// in the alphabet).
TEST(TokenizerFormsTest, RandomTextAgreesAcrossFormsAndRoundTrips) {
  const std::vector<std::string> alphabet = {"a",
                                             "e",
                                             "the",
                                             "The",
                                             " ",
                                             "  ",
                                             "\t",
                                             "\n",
                                             "\r\n",
                                             "'s",
                                             "'RE",
                                             "!",
                                             "...",
                                             "1",
                                             "42",
                                             "½",
                                             "é",
                                             "e\u0301",
                                             "нещо",
                                             "我",
                                             "想",
                                             "ក",
                                             "ា",
                                             "🦙",
                                             "😶\u200d🌫️",
                                             "\x7f",
                                             "<s>",
                                             "</s>",
                                             "<|endoftext|>",
                                             "<0x0A>",
                                             "\u3000",
                                             "\u00a0",
                                             "_",
                                             "-",
                                             "ab12cd"};
  const std::vector<std::vector<std::string>> groups = {
      {"llama-spm/gguf", "llama-spm/tokenizer.json", "llama-spm/tokenizer.model"},
      {"gpt-2/gguf", "gpt-2/tokenizer.json"},
      {"llama-bpe/tokenizer.model"}};
  std::mt19937 rng(9);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    for (int i = 0, n = static_cast<int>(rng() % 16); i < n; ++i) {
      text += alphabet[rng() % alphabet.size()];
    }
    const bool parse_special = rng() % 2;
    for (const auto& group : groups) {
      std::optional<std::vector<TokenId>> first;
      for (const std::string& form : group) {
        const Tokenizer* t = Load(form);
        ASSERT_NE(t, nullptr);
        absl::StatusOr<std::vector<TokenId>> ids = t->Encode(text, false, parse_special);
        ASSERT_TRUE(ids.ok()) << ids.status();
        if (first.has_value()) {
          EXPECT_EQ(*ids, *first) << form << ": \"" << text << "\"";
        } else {
          first = *ids;
        }
        if (!parse_special || t->kind() == "bpe") {
          EXPECT_EQ(*t->Decode(*ids, /*include_special=*/parse_special), text)
              << form << ": \"" << text << "\"";
        }
      }
    }
  }
}

// ---- stories260K's embedded 512-token tokenizer (the model's reference run).

constexpr TokenId kStoriesPrompt[] = {1, 403, 407, 261, 378};
constexpr TokenId kStoriesGenerated[] = {
    432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
    337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432,
    358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337,
    335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};
constexpr char kStoriesText[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball. She wanted to play with it, but it was too high."
    "\nLily";

void ExpectStoriesTokenizer(const Tokenizer& t) {
  EXPECT_EQ(t.kind(), "spm");
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_TRUE(t.adds_bos());
  absl::StatusOr<std::vector<TokenId>> prompt = t.Encode("Once upon a time", true);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, std::vector<TokenId>(std::begin(kStoriesPrompt), std::end(kStoriesPrompt)));

  std::vector<TokenId> all(std::begin(kStoriesPrompt), std::end(kStoriesPrompt));
  all.insert(all.end(), std::begin(kStoriesGenerated), std::end(kStoriesGenerated));
  EXPECT_EQ(*t.Decode(all), kStoriesText);
  // The generated ids alone: the text after the prompt (its first token is
  // ",", which has no leading space to drop).
  EXPECT_EQ(
      *t.Decode(std::vector<TokenId>(std::begin(kStoriesGenerated), std::end(kStoriesGenerated))),
      std::string(kStoriesText).substr(std::string("Once upon a time").size()));
  // And the whole text encodes back to the same ids.
  EXPECT_EQ(*t.Encode(kStoriesText, true), all);
}

TEST(StoriesTokenizerTest, FromGguf) {
  ASSERT_FALSE(testing::RequireSharedFile("models/stories260K/stories260K.gguf").empty());
  const Tokenizer* t = Load("stories260K");
  ASSERT_NE(t, nullptr);
  ExpectStoriesTokenizer(*t);
}

TEST(StoriesTokenizerTest, FromDirectoryWithGgufMetadataJson) {
  const fs::path gguf_path = testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf_path.empty());
  absl::StatusOr<GgufFile> gguf = GgufFile::Open(gguf_path);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  testing::TempDir dir;
  ASSERT_TRUE(
      WriteFileAtomically(dir.path() / kGgufMetadataFileName, gguf->MetadataToJson().dump()).ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  ASSERT_TRUE(t.ok()) << t.status();
  ExpectStoriesTokenizer(**t);
}

// ---- LoadTokenizer on directories.

TEST(LoadTokenizerTest, DirectoriesPickTheirFiles) {
  const fs::path tok = testing::RequireSharedFile("tokenizers");
  ASSERT_FALSE(tok.empty());
  // tokenizer.json (+ config) is preferred over tokenizer.model.
  absl::StatusOr<std::unique_ptr<Tokenizer>> spm = LoadTokenizer(tok / "llama-spm");
  ASSERT_TRUE(spm.ok()) << spm.status();
  EXPECT_EQ((*spm)->kind(), "spm");
  EXPECT_THAT(*(*spm)->Encode("Hello world", true), ElementsAre(1, 15043, 3186));
  // A tokenizer.model in tiktoken form is told apart by content (here a
  // small one: the 256 bytes, then Llama 3's special tokens).
  testing::TempDir tiktoken;
  {
    std::string lines;
    for (int b = 0; b < 256; ++b) {
      lines += absl::StrCat(absl::Base64Escape(std::string(1, static_cast<char>(b))), " ", b, "\n");
    }
    WriteFileAtomically(tiktoken.path() / "tokenizer.model", lines).IgnoreError();
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> bytes = LoadTokenizer(tiktoken.path());
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ((*bytes)->vocab_size(), 512);
  EXPECT_EQ((*bytes)->bos_id(), 256);
  EXPECT_EQ(*(*bytes)->Piece(257), "<|end_of_text|>");
  EXPECT_THAT(*(*bytes)->Encode("Hi", true), ElementsAre(256, 'H', 'i'));
  // A SentencePiece tokenizer.model alone in a directory.
  testing::TempDir dir;
  fs::copy_file(tok / "llama-spm/tokenizer.model", dir.path() / "tokenizer.model");
  absl::StatusOr<std::unique_ptr<Tokenizer>> model = LoadTokenizer(dir.path());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->vocab_size(), 32000);
}

// ---- tokenizer.json variants (edited copies of the shipped files).

class HfVariantTest : public ::testing::Test {
 protected:
  // The shipped tokenizer.json of `folder`, to edit.
  static nlohmann::json Original(const std::string& folder) {
    return nlohmann::json::parse(
        *ReadFileToString(testing::SharedDir() / "tokenizers" / folder / "tokenizer.json"));
  }
  // Writes `j` (and `config` unless null) to the temp dir and loads it.
  absl::StatusOr<std::unique_ptr<Tokenizer>> LoadEdited(const nlohmann::json& j,
                                                        const nlohmann::json& config = nullptr) {
    WriteFile(dir_.path() / "tokenizer.json", j.dump());
    fs::remove(dir_.path() / "tokenizer_config.json");
    if (!config.is_null()) WriteFile(dir_.path() / "tokenizer_config.json", config.dump());
    return LoadTokenizer(dir_.path());
  }
  static void WriteFile(const fs::path& p, std::string_view bytes) {
    std::ofstream(p, std::ios::binary) << bytes;
  }
  testing::TempDir dir_;
};

TEST_F(HfVariantTest, MetaspacePreTokenizer) {
  ASSERT_FALSE(testing::RequireSharedFile("tokenizers/llama-spm/tokenizer.json").empty());
  const Tokenizer* reference = Load("llama-spm/gguf");
  ASSERT_NE(reference, nullptr);
  nlohmann::json j = Original("llama-spm");
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}};
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadEdited(j);
  ASSERT_TRUE(t.ok()) << t.status();
  for (const char* text : {"Hello world", "Hello  world", "🦙 ok\n\n x"}) {
    EXPECT_EQ(*(*t)->Encode(text, false), *reference->Encode(text, false)) << text;
  }
  // Metaspace adds no "▁" to text that already starts with a space ...
  EXPECT_THAT(*(*t)->Encode(" Hello", false), ElementsAre(15043));
  // ... and with prepend_scheme "first", none after a special token.
  const std::vector<TokenId> ids = *(*t)->Encode("</s>Hello", false, /*parse_special=*/true);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids[0], 2);
  EXPECT_NE(ids[1], 15043);
  EXPECT_EQ(*(*t)->Decode(ids), "Hello");

  // split: merges stop at each "▁".
  j["pre_tokenizer"]["split"] = true;
  t = LoadEdited(j);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("Hello  world", false), ElementsAre(15043, 29871, 3186));
}

TEST_F(HfVariantTest, NfcNormalizer) {
  ASSERT_FALSE(testing::RequireSharedFile("tokenizers/gpt-2/tokenizer.json").empty());
  const Tokenizer* plain = Load("gpt-2/tokenizer.json");
  ASSERT_NE(plain, nullptr);
  nlohmann::json j = Original("gpt-2");
  j["normalizer"] = {{"type", "NFC"}};
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadEdited(j);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string composed = "caf\u00e9", decomposed = "cafe\u0301";
  EXPECT_EQ(*(*t)->Encode(decomposed, false), *plain->Encode(composed, false));
  EXPECT_NE(*plain->Encode(decomposed, false), *plain->Encode(composed, false));
}

TEST_F(HfVariantTest, AddedTokenOptionsAndQwen2Regex) {
  ASSERT_FALSE(testing::RequireSharedFile("tokenizers/gpt-2/tokenizer.json").empty());
  const Tokenizer* plain = Load("gpt-2/tokenizer.json");
  ASSERT_NE(plain, nullptr);
  EXPECT_THAT(*plain->Encode("Hi <|endoftext|>", false, true), ElementsAre(17250, 220, 50256));
  nlohmann::json j = Original("gpt-2");
  j["added_tokens"][0]["lstrip"] = true;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadEdited(j);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("Hi <|endoftext|>", false, true), ElementsAre(17250, 50256));

  j = Original("gpt-2");
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", std::string(PretokenizerRegex(PretokenizerPattern::kQwen2))}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  t = LoadEdited(j);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("1234", false), ElementsAre(16, 17, 18, 19));
  EXPECT_THAT(*plain->Encode("1234", false), ElementsAre(1065, 2682));
}

TEST_F(HfVariantTest, TokenizerConfig) {
  ASSERT_FALSE(testing::RequireSharedFile("tokenizers/llama-spm/tokenizer.json").empty());
  const nlohmann::json j = Original("llama-spm");
  // Without tokenizer_config.json the post-processor's template says bos.
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadEdited(j);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE((*t)->adds_bos());
  EXPECT_EQ((*t)->bos_id(), 1);
  EXPECT_EQ((*t)->eos_id(), std::nullopt);
  // The config overrides it, and may ask for eos.
  t = LoadEdited(j, {{"add_bos_token", false}, {"add_eos_token", true}, {"eos_token", "</s>"}});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_FALSE((*t)->adds_bos());
  EXPECT_TRUE((*t)->adds_eos());
  EXPECT_THAT(*(*t)->Encode("Hello", true), ElementsAre(15043, 2));
  // A token the vocabulary lacks is an error naming the config file.
  t = LoadEdited(j, {{"eos_token", {{"content", "<nope>"}}}});
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer_config.json"));
  EXPECT_THAT(t.status().message(), HasSubstr("<nope>"));
}

// ---- Speed: loading and encoding are far from quadratic.

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(TokenizerSpeedTest, LoadsQuickly) {
  ASSERT_FALSE(testing::RequireSharedFile("tokenizers").empty());
  for (const std::string name :
       {"llama-bpe/tokenizer.model", "gpt-2/tokenizer.json", "gpt-2/gguf",
        "llama-spm/tokenizer.model", "llama-spm/tokenizer.json", "llama-spm/gguf"}) {
    ASSERT_NE(Load(name), nullptr);  // loaded here or by an earlier test, and timed
    const double s = LoadSeconds()[name];
    std::printf("load %-28s %6.0f ms\n", name.c_str(), s * 1e3);
    // Well under a second in an optimized build; generous for a busy machine
    // or a debug build.
    EXPECT_LT(s, 5.0) << name;
  }
}

TEST(TokenizerSpeedTest, Encodes100KBQuickly) {
  const std::vector<VocabCase> cases =
      ReadCases(testing::SharedDir() / "tokenizers/llama-spm/ggml-vocab-llama-spm.gguf");
  ASSERT_EQ(cases.size(), 46u);
  std::string mixed;
  while (mixed.size() < 100'000) mixed += cases[45].text + "\n";
  // One 100 KB word: the worst case for merging (no pre-tokenizer split).
  const std::string word(100'000, 'a');
  for (const std::string form :
       {"llama-spm/tokenizer.model", "gpt-2/tokenizer.json", "llama-bpe/tokenizer.model"}) {
    const Tokenizer* t = Load(form);
    ASSERT_NE(t, nullptr);
    for (const std::string* text : {static_cast<const std::string*>(&mixed), &word}) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<std::vector<TokenId>> ids = t->Encode(*text, false);
      const double s = Seconds(start);
      ASSERT_TRUE(ids.ok()) << ids.status();
      std::printf("encode %-28s %s: %zu bytes -> %zu tokens in %.0f ms\n", form.c_str(),
                  text == &word ? "one word" : "mixed   ", text->size(), ids->size(), s * 1e3);
      EXPECT_LT(s, 5.0) << form;
      EXPECT_EQ(*t->Decode(*ids), *text) << form;
    }
  }
}

// ---- Errors: clear statuses, no crashes.

void WriteFile(const fs::path& p, std::string_view bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

TEST(TokenizerErrorsTest, MissingFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer("/nonexistent/tokenizer.model");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("/nonexistent/tokenizer.model"));
  EXPECT_FALSE(LoadSentencePieceModel("/nonexistent/tokenizer.model").ok());
  EXPECT_FALSE(LoadTiktokenModel("/nonexistent/tokenizer.model").ok());
  EXPECT_FALSE(LoadHfTokenizer("/nonexistent/tokenizer.json", std::nullopt).ok());

  testing::TempDir empty;
  t = LoadTokenizer(empty.path());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.json"));
}

TEST(TokenizerErrorsTest, TruncatedOrGarbageSentencePieceModel) {
  const fs::path model = testing::RequireSharedFile("tokenizers/llama-spm/tokenizer.model");
  ASSERT_FALSE(model.empty());
  const std::string bytes = *ReadFileToString(model);
  testing::TempDir dir;
  const fs::path p = dir.path() / "tokenizer.model";
  // Cut inside a piece, between pieces, and inside the trainer spec.
  for (size_t size : {size_t{1}, size_t{7}, size_t{1000}, size_t{250'000}, bytes.size() - 300,
                      bytes.size() - 20}) {
    WriteFile(p, std::string_view(bytes).substr(0, size));
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(p);
    ASSERT_FALSE(t.ok()) << "truncated to " << size;
    EXPECT_THAT(t.status().message(), HasSubstr(p.string())) << size;
  }
  std::mt19937 rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    std::string garbage(1 + rng() % 3000, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    WriteFile(p, garbage);
    EXPECT_FALSE(LoadSentencePieceModel(p).ok());
    EXPECT_FALSE(LoadTokenizer(p).ok());
  }
  WriteFile(p, "");
  EXPECT_FALSE(LoadTokenizer(p).ok());
  WriteFile(p, "hello world\n");
  EXPECT_FALSE(LoadTokenizer(p).ok());
}

TEST(TokenizerErrorsTest, BadTiktokenFile) {
  testing::TempDir dir;
  const fs::path p = dir.path() / "tokenizer.model";
  WriteFile(p, "IQ== 0\nIg== 1\n!!!! 2\n");
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTiktokenModel(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr(p.string() + ":3"));
  WriteFile(p, "IQ== 0\nIg== 5\n");
  t = LoadTiktokenModel(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("rank 5"));
  // Ranks are fine but bytes are missing: byte-level BPE needs all 256.
  WriteFile(p, "IQ== 0\nIg== 1\n");
  t = LoadTokenizer(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("no token for byte"));
}

TEST(TokenizerErrorsTest, UnsupportedTokenizerJson) {
  testing::TempDir dir;
  const fs::path p = dir.path() / "tokenizer.json";
  WriteFile(p, R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})");
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir.path());
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(t.status().message(), HasSubstr("Unigram"));
  EXPECT_THAT(t.status().message(), HasSubstr(p.string()));

  WriteFile(p, "{not json");
  t = LoadTokenizer(dir.path());
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("not valid JSON"));

  // Any regex loads (ICU's engine); one that does not compile is refused
  // naming its JSON path.
  nlohmann::json j = nlohmann::json::parse(
      *ReadFileToString(testing::SharedDir() / "tokenizers/gpt-2/tokenizer.json"));
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", "\\p{L}+"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  WriteFile(p, j.dump());
  t = LoadTokenizer(p);
  ASSERT_TRUE(t.ok()) << t.status();
  {
    // "ab", " ", "cd": the space is a word of its own under this regex.
    const std::vector<TokenId> ids = *(*t)->Encode("ab cd", false);
    std::vector<std::string> pieces;
    for (TokenId id : ids) pieces.push_back(*(*t)->Piece(id));
    EXPECT_THAT(pieces, ElementsAre("ab", "\xC4\xA0", "cd"));
  }
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  WriteFile(p, j.dump());
  t = LoadTokenizer(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("pre_tokenizer.pretokenizers[0].pattern"));
  EXPECT_THAT(t.status().message(), HasSubstr("(unclosed"));
  // Types packd does not implement, each named with its path.
  j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "UnicodeScripts"}};
  WriteFile(p, j.dump());
  t = LoadTokenizer(p);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(t.status().message(), HasSubstr("pre_tokenizer.pretokenizers[0]"));
  EXPECT_THAT(t.status().message(), HasSubstr("\"UnicodeScripts\""));
  j["pre_tokenizer"] = {{"type", "ByteLevel"}};
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}};
  WriteFile(p, j.dump());
  t = LoadTokenizer(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("normalizer.normalizers[1]"));
  EXPECT_THAT(t.status().message(), HasSubstr("\"Precompiled\""));
  j["normalizer"] = nullptr;
  j["decoder"] = {{"type", "CTC"}};
  WriteFile(p, j.dump());
  t = LoadTokenizer(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("decoder: decoder type \"CTC\""));
  j["decoder"] = {{"type", "ByteLevel"}};
  j["post_processor"] = {{"type", "Weird"}};
  WriteFile(p, j.dump());
  t = LoadTokenizer(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("post_processor"));
  EXPECT_THAT(t.status().message(), HasSubstr("\"Weird\""));
}

// A GGUF file converted from DeepSeek V3's tokenizer.json (llama.cpp names
// its pre-tokenizer "deepseek-v3") tokenizes as the tokenizer.json does.
TEST(TokenizerFormsTest, DeepSeekV3GgufAgreesWithTokenizerJson) {
  const fs::path dir = testing::RequireSharedFile("tokenizers/deepseek-v3/tokenizer.json");
  ASSERT_FALSE(dir.empty());
  absl::StatusOr<std::unique_ptr<Tokenizer>> hf = LoadTokenizer(dir.parent_path());
  ASSERT_TRUE(hf.ok()) << hf.status();
  const nlohmann::json j = nlohmann::json::parse(*ReadFileToString(dir));
  std::vector<std::string> tokens((*hf)->vocab_size());
  std::vector<int> types((*hf)->vocab_size(), 1);
  for (const auto& [piece, id] : j["model"]["vocab"].items()) tokens[id.get<int>()] = piece;
  for (const nlohmann::json& a : j["added_tokens"]) {
    tokens[a["id"].get<int>()] = a["content"].get<std::string>();
    types[a["id"].get<int>()] = a["special"].get<bool>() ? 3 : 4;
  }
  std::vector<std::string> merges;
  for (const nlohmann::json& m : j["model"]["merges"]) {
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  const auto value = [](std::string type, nlohmann::json v) {
    return nlohmann::json{{"type", type}, {"value", v}};
  };
  const auto array = [](std::string element_type, nlohmann::json v) {
    return nlohmann::json{{"type", "array"}, {"element_type", element_type}, {"value", v}};
  };
  const nlohmann::json md = {
      {"tokenizer.ggml.model", value("string", "gpt2")},
      {"tokenizer.ggml.pre", value("string", "deepseek-v3")},
      {"tokenizer.ggml.tokens", array("string", tokens)},
      {"tokenizer.ggml.token_type", array("i32", types)},
      {"tokenizer.ggml.merges", array("string", merges)},
      {"tokenizer.ggml.bos_token_id", value("u32", *(*hf)->bos_id())},
      {"tokenizer.ggml.eos_token_id", value("u32", *(*hf)->eos_id())},
  };
  absl::StatusOr<std::unique_ptr<Tokenizer>> gguf = LoadGgufTokenizer(md, "deepseek-v3.gguf");
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  for (std::string_view text : {"Hello world", "12345678 3.14", "中文字符测试 日本語のカタカナ",
                                "!!!abc ?\n\n x", "def f(x):\n    return x**2",
                                "<｜User｜>hi<｜Assistant｜>", "  \t mixed 中English文 123abc"}) {
    EXPECT_EQ(*(*gguf)->Encode(text, true, true), *(*hf)->Encode(text, true, true)) << text;
  }
}

// Hostile files are refused or bounded, never a hang or a huge allocation.
TEST(TokenizerErrorsTest, HostileTokenizerJson) {
  testing::TempDir dir;
  const fs::path p = dir.path() / "tokenizer.json";
  nlohmann::json j = nlohmann::json::parse(
      *ReadFileToString(testing::SharedDir() / "tokenizers/gpt-2/tokenizer.json"));
  // An id of a billion would need a billion-entry vocabulary.
  nlohmann::json big = j;
  big["model"]["vocab"]["hello"] = 1000000000;
  WriteFile(p, big.dump());
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(p);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("id 1000000000"));
  // A regex that backtracks exponentially loads, and encoding text it chokes
  // on ends with an error naming it.
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", "(a|aa)*(a|aa)*b"}}}, {"behavior", "Isolated"}},
        {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  WriteFile(p, j.dump());
  t = LoadTokenizer(p);
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<std::vector<TokenId>> ids = (*t)->Encode(std::string(60, 'a'), false);
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(ids.status().message(), HasSubstr("(a|aa)*(a|aa)*b"));
  EXPECT_TRUE((*t)->Encode("aab", false).ok());
}

TEST(TokenizerErrorsTest, UnsupportedGgufTokenizer) {
  const fs::path gguf_path = testing::RequireSharedFile("tokenizers/gpt-2/ggml-vocab-gpt-2.gguf");
  ASSERT_FALSE(gguf_path.empty());
  const nlohmann::json md = GgufFile::Open(gguf_path)->MetadataToJson();

  nlohmann::json bad = md;
  bad["tokenizer.ggml.model"]["value"] = "bert";
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadGgufTokenizer(bad, "m.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("m.gguf"));
  EXPECT_THAT(t.status().message(), HasSubstr("\"bert\""));

  bad = md;
  bad["tokenizer.ggml.pre"]["value"] = "deepseek-coder";
  t = LoadGgufTokenizer(bad, "m.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("deepseek-coder"));

  bad = md;
  bad.erase("tokenizer.ggml.merges");
  t = LoadGgufTokenizer(bad, "m.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.ggml.merges"));

  bad = md;
  bad["tokenizer.ggml.tokens"]["value"][5] = 7;
  t = LoadGgufTokenizer(bad, "m.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.ggml.tokens"));

  bad = md;
  bad["tokenizer.ggml.eos_token_id"]["value"] = 99999;
  t = LoadGgufTokenizer(bad, "m.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("99999"));

  t = LoadGgufTokenizer(nlohmann::json::object(), "m.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(t.status().message(), HasSubstr("tokenizer.ggml.model"));
}

TEST(TokenizerErrorsTest, OutOfRangeIds) {
  for (const std::string form : {"llama-spm/gguf", "gpt-2/gguf", "llama-bpe/tokenizer.model"}) {
    const Tokenizer* t = Load(form);
    ASSERT_NE(t, nullptr);
    for (TokenId id : {-1, t->vocab_size(), t->vocab_size() + 1000, -2147483647 - 1}) {
      EXPECT_EQ(t->Decode({1, id}).status().code(), absl::StatusCode::kOutOfRange) << form;
      EXPECT_EQ(t->TokenBytes(id).status().code(), absl::StatusCode::kOutOfRange) << form;
      EXPECT_EQ(t->Piece(id).status().code(), absl::StatusCode::kOutOfRange) << form;
      IncrementalDecoder decoder(*t);
      EXPECT_EQ(decoder.Push(id).status().code(), absl::StatusCode::kOutOfRange) << form;
    }
  }
}

TEST(TokenizerErrorsTest, InvalidUtf8Input) {
  for (const std::string form :
       {"llama-spm/tokenizer.model", "gpt-2/tokenizer.json", "llama-bpe/tokenizer.model"}) {
    const Tokenizer* t = Load(form);
    ASSERT_NE(t, nullptr);
    for (const auto& [text, offset] : std::vector<std::pair<std::string, int>>{
             {"abc\xff", 3},
             {"h\xc3\xa9llo \xe2\x82", 7},  // truncated euro sign
             {"\xc0\x80", 0},               // overlong NUL
             {"ok \xed\xa0\x80", 3},        // surrogate
             {"\xf4\x90\x80\x80", 0}}) {    // above U+10FFFF
      absl::StatusOr<std::vector<TokenId>> ids = t->Encode(text, true);
      ASSERT_FALSE(ids.ok()) << form;
      EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(ids.status().message(), HasSubstr("byte offset " + std::to_string(offset)));
    }
  }
}

}  // namespace
}  // namespace packd::engine
