// The tokenizers against Hugging Face's own implementation: for every folder of
// ../shared/tokenizers with a tokenizer.json + tokenizer_config.json, the ids and
// texts that transformers.js 3.8.1 gives for ~500 hard strings
// (tests/tokenizer_reference/<name>.json, made by make_expectations.mjs there;
// its README says how). Also: the other file forms of the same vocabulary
// (tokenizer.model, GGUF) give the same ids as the tokenizer.json form.
//
// Mismatches are reported per check with a count and a few examples in detail
// (the string escaped, expected and actual ids with their pieces, the first
// differing position), so a tokenizer that is wrong everywhere stays readable.
#include <unicode/uchar.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/file.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

namespace fs = std::filesystem;

// One test string and what transformers.js made of it.
struct ReferenceCase {
  std::string text;
  std::vector<TokenId> ids;          // encode(text, {add_special_tokens: false})
  std::vector<TokenId> ids_special;  // encode(text): the post-processor's bos/eos
  std::vector<TokenId> ids_split;    // special tokens left in the text (split_special_tokens)
  std::string decoded;               // decode(ids), special tokens kept
  std::string decoded_skip;          // decode(ids, {skip_special_tokens: true})
};

// A random id sequence and transformers.js's decode of it.
struct DecodeCase {
  std::vector<TokenId> ids;
  std::string decoded;       // special tokens kept
  std::string decoded_skip;  // skip_special_tokens
};

struct Reference {
  // tokenizer_config.json's add_bos_token / add_eos_token (nullopt: not set).
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::optional<TokenId> bos_token_id;
  std::optional<TokenId> eos_token_id;
  std::vector<ReferenceCase> cases;
  std::vector<DecodeCase> decode_cases;
};

// The repository root: $PACKD_SOURCE_DIR (set by ctest), else the working
// directory (as testing::SharedDir() assumes).
fs::path SourceDir() {
  if (const char* env = std::getenv("PACKD_SOURCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return fs::current_path();
}

absl::StatusOr<Reference> ReadReference(const fs::path& file) {
  absl::StatusOr<std::string> text = ReadFileToString(file);
  if (!text.ok()) return text.status();
  try {
    const nlohmann::json j = nlohmann::json::parse(*text);
    auto optional_bool = [&](const char* key) -> std::optional<bool> {
      if (!j.contains(key) || j[key].is_null()) return std::nullopt;
      return j[key].get<bool>();
    };
    auto optional_id = [&](const char* key) -> std::optional<TokenId> {
      if (!j.contains(key) || j[key].is_null()) return std::nullopt;
      return j[key].get<TokenId>();
    };
    Reference r;
    r.add_bos_token = optional_bool("add_bos_token");
    r.add_eos_token = optional_bool("add_eos_token");
    r.bos_token_id = optional_id("bos_token_id");
    r.eos_token_id = optional_id("eos_token_id");
    for (const nlohmann::json& c : j.at("cases")) {
      r.cases.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<TokenId>>(),
                         c.at("ids_special").get<std::vector<TokenId>>(),
                         c.at("ids_split").get<std::vector<TokenId>>(),
                         c.at("decoded").get<std::string>(),
                         c.at("decoded_skip").get<std::string>()});
    }
    for (const nlohmann::json& c : j.at("decode_cases")) {
      r.decode_cases.push_back({c.at("ids").get<std::vector<TokenId>>(),
                                c.at("decoded").get<std::string>(),
                                c.at("decoded_skip").get<std::string>()});
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file.string(), ": ", e.what()));
  }
}

// What Encode(text, /*add_special=*/true) must give. packd follows
// tokenizer_config.json's add_bos_token / add_eos_token, as Python
// transformers' LlamaTokenizerFast does; transformers.js adds bos/eos only
// through tokenizer.json's post-processor (DeepSeek V3 says add_bos_token but
// has a ByteLevel post-processor: transformers.js adds no bos there). Where the
// config says neither, the post-processor decides, and transformers.js is right.
std::vector<TokenId> ExpectedWithSpecial(const Reference& r, const ReferenceCase& c) {
  const bool bos = r.add_bos_token.value_or(false) && r.bos_token_id.has_value();
  const bool eos = r.add_eos_token.value_or(false) && r.eos_token_id.has_value();
  if (!bos && !eos) return c.ids_special;
  std::vector<TokenId> ids;
  if (bos) ids.push_back(*r.bos_token_id);
  ids.insert(ids.end(), c.ids.begin(), c.ids.end());
  if (eos) ids.push_back(*r.eos_token_id);
  return ids;
}

// `s` in double quotes, readable: control, format, space-like and unassigned
// characters as \u{XXXX}, combining marks on an ASCII base too (so "e\u0301"
// and "é" look different), invalid bytes as \xNN.
std::string Escape(std::string_view s) {
  std::string out = "\"";
  bool ascii_base = false;
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Step step = ReadUtf8(s, pos);
    if (step.kind != Utf8Step::Kind::kChar) {
      for (int i = 0; i < step.length; ++i) {
        absl::StrAppendFormat(&out, "\\x%02X", static_cast<unsigned char>(s[pos + i]));
      }
      pos += step.length;
      continue;
    }
    const char32_t cp = step.code_point;
    const int category = u_charType(static_cast<UChar32>(cp));
    const bool mark = category == U_NON_SPACING_MARK || category == U_ENCLOSING_MARK;
    if (cp == '"' || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp != ' ' && (!u_isgraph(static_cast<UChar32>(cp)) || (mark && ascii_base))) {
      absl::StrAppendFormat(&out, "\\u{%04X}", static_cast<uint32_t>(cp));
    } else {
      out.append(s.substr(pos, step.length));
    }
    if (!mark) ascii_base = cp < 0x80;
    pos += step.length;
  }
  return out + "\"";
}

// Ids with their pieces, e.g. [15043 "▁Hello", 3186 "▁world"]; a long list
// is cut to a window around `focus`.
std::string IdsWithPieces(const Tokenizer& t, const std::vector<TokenId>& ids, size_t focus) {
  constexpr size_t kBefore = 6, kAfter = 12;
  const size_t begin = focus > kBefore ? focus - kBefore : 0;
  const size_t end = std::min(ids.size(), focus + kAfter);
  std::vector<std::string> parts;
  if (begin > 0) parts.push_back(absl::StrCat("... (", begin, " before)"));
  for (size_t i = begin; i < end; ++i) {
    absl::StatusOr<std::string> piece = t.Piece(ids[i]);
    parts.push_back(absl::StrCat(ids[i], " ", piece.ok() ? Escape(*piece) : "(no piece)"));
  }
  if (end < ids.size()) parts.push_back(absl::StrCat("... (", ids.size() - end, " after)"));
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "] (", ids.size(), " ids)");
}

template <typename Seq>
size_t FirstDifference(const Seq& a, const Seq& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

std::string IdsMismatch(const Tokenizer& t, const std::string& text,
                        const std::vector<TokenId>& expected,
                        const absl::StatusOr<std::vector<TokenId>>& actual) {
  std::string out = absl::StrCat("    text:     ", Escape(text), "\n");
  if (!actual.ok()) {
    return absl::StrCat(out, "    expected: ", IdsWithPieces(t, expected, 0),
                        "\n    actual:   error ", actual.status().ToString(), "\n");
  }
  const size_t at = FirstDifference(expected, *actual);
  return absl::StrCat(out, "    expected: ", IdsWithPieces(t, expected, at), "\n",
                      "    actual:   ", IdsWithPieces(t, *actual, at), "\n",
                      "    first difference at id ", at, "\n");
}

std::string TextMismatch(const std::string& text, const std::string& expected,
                         const absl::StatusOr<std::string>& actual) {
  std::string out =
      absl::StrCat("    text:     ", Escape(text), "\n    expected: ", Escape(expected), "\n");
  if (!actual.ok()) {
    return absl::StrCat(out, "    actual:   error ", actual.status().ToString(), "\n");
  }
  return absl::StrCat(out, "    actual:   ", Escape(*actual), "\n    first difference at byte ",
                      FirstDifference(expected, *actual), "\n");
}

// How many mismatches of a tokenizer are shown in detail: 5, or
// $PACKD_HF_REFERENCE_DETAILS (e.g. 100000 to see every one).
size_t DetailsShown() {
  if (const char* env = std::getenv("PACKD_HF_REFERENCE_DETAILS"); env != nullptr) {
    if (size_t n = 0; absl::SimpleAtoi(env, &n)) return n;
  }
  return 5;
}

// Collects the mismatches of one tokenizer by check; Finish() reports them:
// one failure per check with its count, and at most DetailsShown() examples
// in all, taken in turn from each failing check.
class MismatchReport {
 public:
  MismatchReport(std::string tokenizer, size_t cases)
      : tokenizer_(std::move(tokenizer)), cases_(cases) {}
  void Add(const std::string& check, std::string detail) {
    by_check_[check].push_back(std::move(detail));
  }
  void Finish() const {
    const size_t kDetails = DetailsShown();
    std::map<std::string, size_t> shown;
    for (size_t round = 0, total = 0; total < kDetails; ++round) {
      bool any = false;
      for (const auto& [check, details] : by_check_) {
        if (round < details.size() && total < kDetails) {
          ++shown[check];
          ++total;
          any = true;
        }
      }
      if (!any) break;
    }
    for (const auto& [check, details] : by_check_) {
      std::string message = absl::StrCat(tokenizer_, ": ", check, ": ", details.size(), " of ",
                                         cases_, " strings differ from the reference");
      for (size_t i = 0; i < shown[check]; ++i) absl::StrAppend(&message, "\n", details[i]);
      if (shown[check] < details.size()) {
        absl::StrAppend(&message, "    (", details.size() - shown[check], " more not shown)\n");
      }
      ADD_FAILURE() << message;
    }
  }

 private:
  std::string tokenizer_;
  size_t cases_;
  std::map<std::string, std::vector<std::string>> by_check_;
};

// The folders of ../shared/tokenizers with a tokenizer.json + tokenizer_config.json,
// each with its reference file.
const std::string kFolders[] = {"gpt-2", "llama-spm",   "llama3-hf",
                                "qwen3", "deepseek-v3", "gemma3"};

// A gtest name for a folder or file name ("llama-spm" -> "llama_spm").
std::string TestName(std::string name) {
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

// Loads (once per process) the tokenizer.json form of a folder.
const Tokenizer* LoadJsonForm(const std::string& folder) {
  static auto* const cache = new std::map<std::string, std::unique_ptr<Tokenizer>>;
  if (auto it = cache->find(folder); it != cache->end()) return it->second.get();
  const fs::path dir = testing::RequireSharedFile(fs::path("tokenizers") / folder);
  if (dir.empty()) return nullptr;
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = LoadTokenizer(dir);
  if (!t.ok()) {
    ADD_FAILURE() << folder << ": LoadTokenizer(" << dir << "): " << t.status();
    return nullptr;
  }
  return cache->emplace(folder, *std::move(t)).first->second.get();
}

const Reference* LoadReference(const std::string& folder) {
  static auto* const cache = new std::map<std::string, Reference>;
  if (auto it = cache->find(folder); it != cache->end()) return &it->second;
  const fs::path file = SourceDir() / "tests/tokenizer_reference" / (folder + ".json");
  absl::StatusOr<Reference> r = ReadReference(file);
  if (!r.ok()) {
    ADD_FAILURE() << "cannot read the reference " << file << ": " << r.status();
    return nullptr;
  }
  return &cache->emplace(folder, *std::move(r)).first->second;
}

class HfReferenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(HfReferenceTest, MatchesTransformersJs) {
  const std::string folder = GetParam();
  const Reference* ref = LoadReference(folder);
  ASSERT_NE(ref, nullptr);
  ASSERT_GT(ref->cases.size(), 100u) << folder;
  ASSERT_GE(ref->decode_cases.size(), 100u) << folder;
  const Tokenizer* t = LoadJsonForm(folder);
  ASSERT_NE(t, nullptr);

  MismatchReport report(folder, ref->cases.size());
  for (const ReferenceCase& c : ref->cases) {
    absl::StatusOr<std::vector<TokenId>> ids =
        t->Encode(c.text, /*add_special=*/false, /*parse_special=*/true);
    const std::vector<TokenId> expected_special = ExpectedWithSpecial(*ref, c);
    absl::StatusOr<std::vector<TokenId>> ids_special =
        t->Encode(c.text, /*add_special=*/true, /*parse_special=*/true);
    const bool ids_differ = !ids.ok() || *ids != c.ids;
    const bool special_differ = !ids_special.ok() || *ids_special != expected_special;
    if (ids_differ) {
      report.Add("Encode(text, add_special=false)", IdsMismatch(*t, c.text, c.ids, ids));
    }
    absl::StatusOr<std::vector<TokenId>> ids_split =
        t->Encode(c.text, /*add_special=*/false, /*parse_special=*/false);
    if (!ids_split.ok() || *ids_split != c.ids_split) {
      report.Add("Encode(text, parse_special=false)",
                 IdsMismatch(*t, c.text, c.ids_split, ids_split));
    }
    if (special_differ) {
      report.Add("Encode(text, add_special=true)",
                 IdsMismatch(*t, c.text, expected_special, ids_special));
    }
    // Decoding the reference's ids (not ours), so that a decode difference
    // shows even where encoding differs. JS strings are always valid UTF-16:
    // compare with invalid bytes replaced.
    for (const bool include_special : {true, false}) {
      absl::StatusOr<std::string> text = t->Decode(c.ids, include_special);
      if (text.ok()) text = ReplaceInvalidUtf8(*text);
      const std::string& expected = include_special ? c.decoded : c.decoded_skip;
      if (!text.ok() || *text != expected) {
        report.Add(include_special ? "Decode(ids, include_special=true)"
                                   : "Decode(ids, include_special=false)",
                   TextMismatch(c.text, expected, text));
      }
    }
    // Where the reference is lossless, so must we be.
    if (c.decoded == c.text && ids.ok()) {
      absl::StatusOr<std::string> round_trip = t->Decode(*ids, /*include_special=*/true);
      if (!round_trip.ok() || *round_trip != c.text) {
        report.Add("Decode(Encode(text)) round trip", TextMismatch(c.text, c.text, round_trip));
      }
    }
  }
  for (const DecodeCase& c : ref->decode_cases) {
    for (const bool include_special : {true, false}) {
      absl::StatusOr<std::string> text = t->Decode(c.ids, include_special);
      if (text.ok()) text = ReplaceInvalidUtf8(*text);
      const std::string& expected = include_special ? c.decoded : c.decoded_skip;
      if (!text.ok() || *text != expected) {
        report.Add(absl::StrCat("Decode(random ids, include_special=", include_special, ")"),
                   TextMismatch(nlohmann::json(c.ids).dump(), expected, text));
      }
    }
  }
  report.Finish();
}

INSTANTIATE_TEST_SUITE_P(SharedTokenizers, HfReferenceTest, ::testing::ValuesIn(kFolders),
                         [](const auto& info) { return TestName(info.param); });

// ---- The other file forms of a vocabulary against its tokenizer.json form,
// on the reference strings (packd's ids on both sides, special tokens parsed).

struct OtherForm {
  std::string folder;
  std::string file;  // in the folder
};

const OtherForm kOtherForms[] = {
    {"llama-spm", "tokenizer.model"},
    {"llama-spm", "ggml-vocab-llama-spm.gguf"},
    {"gpt-2", "ggml-vocab-gpt-2.gguf"},
};

class HfReferenceFormsTest : public ::testing::TestWithParam<OtherForm> {};

TEST_P(HfReferenceFormsTest, AgreesWithTokenizerJson) {
  const OtherForm& form = GetParam();
  const Reference* ref = LoadReference(form.folder);
  ASSERT_NE(ref, nullptr);
  const Tokenizer* json = LoadJsonForm(form.folder);
  ASSERT_NE(json, nullptr);
  const fs::path file =
      testing::RequireSharedFile(fs::path("tokenizers") / form.folder / form.file);
  ASSERT_FALSE(file.empty());
  absl::StatusOr<std::unique_ptr<Tokenizer>> other =
      form.file == "tokenizer.model" ? LoadSentencePieceModel(file) : LoadTokenizer(file);
  ASSERT_TRUE(other.ok()) << other.status();

  MismatchReport report(absl::StrCat(form.folder, "/", form.file, " vs tokenizer.json"),
                        ref->cases.size());
  for (const ReferenceCase& c : ref->cases) {
    for (const bool add_special : {false, true}) {
      absl::StatusOr<std::vector<TokenId>> expected = json->Encode(c.text, add_special, true);
      absl::StatusOr<std::vector<TokenId>> actual = (*other)->Encode(c.text, add_special, true);
      if (!expected.ok()) {
        report.Add("Encode by tokenizer.json",
                   absl::StrCat(Escape(c.text), ": ", expected.status().ToString()));
      } else if (!actual.ok() || *actual != *expected) {
        report.Add(absl::StrCat("Encode(text, add_special=", add_special, ")"),
                   IdsMismatch(*json, c.text, *expected, actual));
      }
    }
    // SentencePiece shows the unknown token as " ⁇ ", Hugging Face as "<unk>"
    // (a special token): by design, so those ids are not compared.
    const std::optional<TokenId> unk = json->Piece(0).ok() && *json->Piece(0) == "<unk>"
                                           ? std::optional<TokenId>(0)
                                           : std::nullopt;
    if (unk.has_value() && std::find(c.ids.begin(), c.ids.end(), *unk) != c.ids.end()) continue;
    for (const bool include_special : {true, false}) {
      absl::StatusOr<std::string> expected = json->Decode(c.ids, include_special);
      absl::StatusOr<std::string> actual = (*other)->Decode(c.ids, include_special);
      if (!expected.ok()) {
        report.Add("Decode by tokenizer.json",
                   absl::StrCat(Escape(c.text), ": ", expected.status().ToString()));
      } else if (!actual.ok() || *actual != *expected) {
        report.Add(absl::StrCat("Decode(ids, include_special=", include_special, ")"),
                   TextMismatch(c.text, *expected, actual));
      }
    }
  }
  report.Finish();
}

INSTANTIATE_TEST_SUITE_P(SharedTokenizers, HfReferenceFormsTest, ::testing::ValuesIn(kOtherForms),
                         [](const auto& info) {
                           return TestName(info.param.folder + "_" + info.param.file);
                         });

}  // namespace
}  // namespace packd::engine
