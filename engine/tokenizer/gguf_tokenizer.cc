// LoadGgufTokenizer: the tokenizer.ggml.* keys of GGUF metadata, in the JSON
// form of GgufFile::MetadataToJson() ({key: {"type", "value", ...}}).
//
// Keys read (llama.cpp's names):
//   tokenizer.ggml.model        "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE)
//   tokenizer.ggml.tokens       [string]
//   tokenizer.ggml.token_type   [int]: 1 normal, 2 unknown, 3 control, 4 user defined,
//                               5 unused, 6 byte (0, undefined, counts as normal)
//   tokenizer.ggml.scores       [f32]  (llama: required)
//   tokenizer.ggml.merges       [string "a b"]  (gpt2: required)
//   tokenizer.ggml.pre          gpt2: which pre-tokenizer regex (required)
//   tokenizer.ggml.{bos,eos,unknown,eot,eom}_token_id, add_bos_token,
//   add_eos_token, add_space_prefix, remove_extra_whitespaces
#include <cmath>
#include <iterator>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/text_pipeline.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

using nlohmann::json;

constexpr char kPrefix[] = "tokenizer.ggml.";

// DeepSeek V3's pre-tokenizer: three Split regexes in turn (digits in
// threes, runs of CJK, then a cl100k-like word pattern).
constexpr std::string_view kDeepSeekV3Regexes[] = {
    R"(\p{N}{1,3})",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
};

// What tokenizer.ggml.pre names for a gpt2 vocabulary (llama.cpp's names).
struct PreTokenizerName {
  std::string_view name;
  std::vector<std::string_view> regexes;
  bool ignore_merges;  // llama.cpp sets it for the Llama 3 family
  bool add_bos;        // the family default when add_bos_token is absent
};
const std::vector<PreTokenizerName>& PreTokenizerNames() {
  static const auto* const names = [] {
    const auto named = [](PretokenizerPattern p) {
      return std::vector<std::string_view>{PretokenizerRegex(p)};
    };
    return new std::vector<PreTokenizerName>{
        {"gpt-2", named(PretokenizerPattern::kGpt2), false, false},
        {"llama3", named(PretokenizerPattern::kLlama3), true, true},
        {"llama-v3", named(PretokenizerPattern::kLlama3), true, true},
        {"llama-bpe", named(PretokenizerPattern::kLlama3), true, true},
        {"qwen2", named(PretokenizerPattern::kQwen2), false, false},
        {"deepseek-r1-qwen", named(PretokenizerPattern::kQwen2), false, true},
        {"deepseek-v3",
         std::vector<std::string_view>(std::begin(kDeepSeekV3Regexes),
                                       std::end(kDeepSeekV3Regexes)),
         false, true},
    };
  }();
  return *names;
}

bool IsIntegerType(std::string_view t) {
  return t == "u8" || t == "i8" || t == "u16" || t == "i16" || t == "u32" || t == "i32" ||
         t == "u64" || t == "i64";
}

// Typed access to the metadata; errors name the label and the key.
class Metadata {
 public:
  Metadata(const json& metadata, std::string_view label) : md_(metadata), label_(label) {}

  const json* Find(std::string_view key) const {
    auto it = md_.find(std::string(key));
    return it == md_.end() ? nullptr : &*it;
  }

  absl::Status Error(std::string_view key, std::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(label_, ": ", std::string(key), " ", std::string(what)));
  }

  // The entry's "value" after checking its "type" against `expected`
  // (a predicate on the type name).
  template <typename Pred>
  absl::StatusOr<const json*> Value(std::string_view key, const json& entry, Pred expected,
                                    std::string_view expected_name) const {
    if (!entry.is_object() || !entry.contains("type") || !entry.contains("value") ||
        !entry["type"].is_string()) {
      return Error(key, "is not a {\"type\", \"value\"} object");
    }
    const std::string type = entry["type"].get<std::string>();
    if (!expected(type)) {
      return Error(key, absl::StrCat("has type ", type, "; expected ", std::string(expected_name)));
    }
    return &entry["value"];
  }

  absl::StatusOr<std::optional<std::string>> OptionalString(std::string_view key) const {
    const json* e = Find(key);
    if (e == nullptr) return std::optional<std::string>();
    ASSIGN_OR_RETURN(const json* v,
                     Value(
                         key, *e, [](std::string_view t) { return t == "string"; }, "string"));
    if (!v->is_string()) return Error(key, "is not a string");
    return std::optional<std::string>(v->get<std::string>());
  }

  absl::StatusOr<std::optional<bool>> OptionalBool(std::string_view key) const {
    const json* e = Find(key);
    if (e == nullptr) return std::optional<bool>();
    ASSIGN_OR_RETURN(const json* v,
                     Value(
                         key, *e, [](std::string_view t) { return t == "bool"; }, "bool"));
    if (!v->is_boolean()) return Error(key, "is not a boolean");
    return std::optional<bool>(v->get<bool>());
  }

  // A token id; absent, or -1 / 0xFFFFFFFF (llama.cpp's "none"), is nullopt.
  absl::StatusOr<std::optional<TokenId>> OptionalTokenId(std::string_view key) const {
    const json* e = Find(key);
    if (e == nullptr) return std::optional<TokenId>();
    ASSIGN_OR_RETURN(const json* v, Value(key, *e, IsIntegerType, "an integer"));
    if (!v->is_number_integer()) return Error(key, "is not an integer");
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      if (u == 0xFFFFFFFFull || u == ~uint64_t{0}) return std::optional<TokenId>();
      if (u > static_cast<uint64_t>(std::numeric_limits<TokenId>::max())) {
        return Error(key, absl::StrCat("= ", u, " is not a token id"));
      }
      return std::optional<TokenId>(static_cast<TokenId>(u));
    }
    const int64_t i = v->get<int64_t>();
    if (i == -1) return std::optional<TokenId>();
    if (i < 0 || i > std::numeric_limits<TokenId>::max()) {
      return Error(key, absl::StrCat("= ", i, " is not a token id"));
    }
    return std::optional<TokenId>(static_cast<TokenId>(i));
  }

  // The elements of an array, checking the element type; nullptr if absent.
  absl::StatusOr<const json*> OptionalArray(std::string_view key,
                                            bool (*element_ok)(std::string_view),
                                            std::string_view element_name) const {
    const json* e = Find(key);
    if (e == nullptr) return nullptr;
    ASSIGN_OR_RETURN(const json* v,
                     Value(
                         key, *e, [](std::string_view t) { return t == "array"; }, "array"));
    if (!v->is_array()) return Error(key, "is not an array");
    const auto et = e->find("element_type");
    if (et == e->end() || !et->is_string() || !element_ok(et->get<std::string>())) {
      return Error(key, absl::StrCat("must be an array of ", std::string(element_name)));
    }
    return v;
  }

 private:
  const json& md_;
  std::string label_;
};

std::string Key(std::string_view name) { return absl::StrCat(kPrefix, std::string(name)); }

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const json& metadata, std::string_view label_view) {
  const std::string label(label_view);
  if (!metadata.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": GGUF metadata is not a JSON object"));
  }
  const Metadata md(metadata, label);
  BpeModel m;
  m.label = std::string(label);

  ASSIGN_OR_RETURN(std::optional<std::string> model, md.OptionalString(Key("model")));
  if (!model.has_value()) {
    return absl::NotFoundError(
        absl::StrCat(label, ": no tokenizer.ggml.model key: the GGUF metadata holds no tokenizer"));
  }
  if (*model == "llama") {
    m.family = BpeFamily::kSentencePiece;
  } else if (*model == "gpt2") {
    m.family = BpeFamily::kByteLevel;
  } else {
    return absl::UnimplementedError(
        absl::StrCat(label, ": tokenizer.ggml.model \"", *model,
                     "\" is not supported (packd reads \"llama\", SentencePiece-style BPE, "
                     "and \"gpt2\", byte-level BPE)"));
  }
  const bool spm = m.family == BpeFamily::kSentencePiece;

  // Tokens.
  ASSIGN_OR_RETURN(const json* tokens,
                   md.OptionalArray(
                       Key("tokens"), [](std::string_view t) { return t == "string"; }, "strings"));
  if (tokens == nullptr) return md.Error(Key("tokens"), "is missing");
  const size_t n = tokens->size();
  m.pieces.reserve(n);
  for (const json& t : *tokens) {
    if (!t.is_string()) return md.Error(Key("tokens"), "has an element that is not a string");
    m.pieces.push_back(t.get<std::string>());
  }

  // Token types.
  m.types.assign(n, TokenType::kNormal);
  ASSIGN_OR_RETURN(const json* types,
                   md.OptionalArray(Key("token_type"), IsIntegerType, "integers"));
  if (types != nullptr) {
    if (types->size() != n) {
      return md.Error(Key("token_type"),
                      absl::StrCat("has ", types->size(), " elements for ", n, " tokens"));
    }
    for (size_t i = 0; i < n; ++i) {
      const json& t = (*types)[i];
      const int64_t v = t.is_number_integer() ? t.get<int64_t>() : -1;
      if (v < 0 || v > 6) {
        return md.Error(Key("token_type"),
                        absl::StrCat("[", i, "] = ", t.dump(), " is not a token type (0..6)"));
      }
      m.types[i] = v == 0 ? TokenType::kNormal : static_cast<TokenType>(v);
    }
  }

  // Merge priorities.
  if (spm) {
    ASSIGN_OR_RETURN(
        const json* scores,
        md.OptionalArray(
            Key("scores"), [](std::string_view t) { return t == "f32" || t == "f64"; }, "floats"));
    if (scores == nullptr) {
      return md.Error(Key("scores"), "is missing (a \"llama\" vocabulary merges by score)");
    }
    if (scores->size() != n) {
      return md.Error(Key("scores"),
                      absl::StrCat("has ", scores->size(), " elements for ", n, " tokens"));
    }
    m.scores.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const json& s = (*scores)[i];
      if (s.is_number()) {
        m.scores.push_back(s.get<float>());
      } else if (s == "-Infinity") {
        m.scores.push_back(-std::numeric_limits<float>::infinity());
      } else if (s == "Infinity") {
        m.scores.push_back(std::numeric_limits<float>::infinity());
      } else {
        return md.Error(Key("scores"), absl::StrCat("[", i, "] = ", s.dump(), " is not a score"));
      }
    }
  } else {
    ASSIGN_OR_RETURN(
        const json* merges,
        md.OptionalArray(
            Key("merges"), [](std::string_view t) { return t == "string"; }, "strings"));
    if (merges == nullptr) {
      return md.Error(Key("merges"), "is missing (a \"gpt2\" vocabulary merges by rank)");
    }
    m.merges.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
      const json& e = (*merges)[i];
      const std::string s = e.is_string() ? e.get<std::string>() : std::string();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos || space + 1 >= s.size()) {
        return md.Error(Key("merges"),
                        absl::StrCat("[", i, "] = ", e.dump(), " is not \"<left> <right>\""));
      }
      m.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    }
  }

  // Pre-tokenizer.
  ASSIGN_OR_RETURN(std::optional<std::string> pre, md.OptionalString(Key("pre")));
  bool default_add_bos = spm;
  if (!spm) {
    if (!pre.has_value()) {
      return md.Error(Key("pre"),
                      "is missing: a \"gpt2\" vocabulary must say which pre-tokenizer it uses");
    }
    const PreTokenizerName* found = nullptr;
    for (const PreTokenizerName& p : PreTokenizerNames()) {
      if (p.name == *pre) found = &p;
    }
    if (found == nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          label, ": tokenizer.ggml.pre \"", *pre,
          "\" is not supported (packd knows gpt-2, llama3 / llama-v3 / llama-bpe, qwen2, "
          "deepseek-r1-qwen, deepseek-v3)"));
    }
    ASSIGN_OR_RETURN(m.pipeline, ByteLevelPipeline(found->regexes, label));
    m.ignore_merges = found->ignore_merges;
    default_add_bos = found->add_bos;
  }

  // Special tokens and options.
  ASSIGN_OR_RETURN(m.bos, md.OptionalTokenId(Key("bos_token_id")));
  ASSIGN_OR_RETURN(m.eos, md.OptionalTokenId(Key("eos_token_id")));
  ASSIGN_OR_RETURN(m.unk, md.OptionalTokenId(Key("unknown_token_id")));
  if (spm) {
    // SentencePiece's defaults (unk 0, bos 1, eos 2), as llama.cpp assumes.
    if (!md.Find(Key("bos_token_id")) && n > 1) m.bos = 1;
    if (!md.Find(Key("eos_token_id")) && n > 2) m.eos = 2;
    if (!md.Find(Key("unknown_token_id"))) {
      for (size_t i = 0; i < n && !m.unk.has_value(); ++i) {
        if (m.types[i] == TokenType::kUnknown) m.unk = static_cast<TokenId>(i);
      }
    }
  }
  for (std::string_view key : {"eot_token_id", "eom_token_id"}) {
    ASSIGN_OR_RETURN(std::optional<TokenId> id, md.OptionalTokenId(Key(key)));
    if (id.has_value()) m.extra_stop_ids.push_back(*id);
  }
  ASSIGN_OR_RETURN(std::optional<bool> add_bos, md.OptionalBool(Key("add_bos_token")));
  ASSIGN_OR_RETURN(std::optional<bool> add_eos, md.OptionalBool(Key("add_eos_token")));
  m.add_bos = add_bos.value_or(default_add_bos);
  m.add_eos = add_eos.value_or(false);

  if (spm) {
    ASSIGN_OR_RETURN(std::optional<bool> prefix, md.OptionalBool(Key("add_space_prefix")));
    ASSIGN_OR_RETURN(std::optional<bool> collapse,
                     md.OptionalBool(Key("remove_extra_whitespaces")));
    m.add_dummy_prefix = prefix.value_or(true);
    m.remove_extra_whitespaces = collapse.value_or(false);
    // llama.cpp falls back to bytes whenever the vocabulary has the byte
    // tokens; so does packd.
    int byte_tokens = 0;
    for (size_t i = 0; i < n; ++i) byte_tokens += m.types[i] == TokenType::kByte;
    m.byte_fallback = byte_tokens >= 256;
  }
  return NewBpeTokenizer(std::move(m));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufTokenizer(const nlohmann::json& metadata,
                                                             std::string_view label) {
  try {
    return Load(metadata, label);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(label), ": malformed tokenizer metadata: ", e.what()));
  }
}

}  // namespace packd::engine
