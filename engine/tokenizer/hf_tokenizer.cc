// LoadHfTokenizer: a Hugging Face tokenizer.json (tokenizers library) with a
// BPE model, plus tokenizer_config.json for bos/eos and add_bos_token /
// add_eos_token.
//
// What is understood (anything else is an error naming it):
//  - model: type "BPE" (or no type: older files), vocab, merges ("a b" strings
//    or [a, b] pairs), unk_token, byte_fallback, fuse_unk, ignore_merges;
//  - normalizer: null, NFC/NFD/NFKC/NFKD, Prepend("▁"), Replace(" " -> "▁"),
//    Sequence of those;
//  - pre_tokenizer: null; ByteLevel (use_regex: the GPT-2 regex);
//    Sequence[Split(Regex, Isolated), ByteLevel(use_regex false)] with the
//    GPT-2, Llama 3 or Qwen2 regex; Metaspace("▁");
//  - post_processor: TemplateProcessing (a special token before / after $A
//    means bos / eos is added), possibly inside a Sequence;
//  - added_tokens: special ones become control tokens (matched only with
//    parse_special), the others user-defined (always matched); lstrip,
//    rstrip and single_word are honoured, "normalized" is not (tokens are
//    matched in the raw text).
// The decoder is not read: ByteLevel or SentencePiece-style decoding follows
// from the pre-tokenizer / normalizer.
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

using nlohmann::json;

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // "▁"

absl::Status Unsupported(const std::string& label, std::string_view what, const json& j) {
  std::string text = j.dump();
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  return absl::UnimplementedError(
      absl::StrCat(label, ": ", std::string(what), " is not supported: ", text));
}

std::string TypeOf(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : std::string();
}

// What the normalizer asks for.
struct NormalizerSpec {
  UnicodeForm form = UnicodeForm::kNone;
  bool prepend_marker = false;           // Prepend("▁")
  bool replace_space_by_marker = false;  // Replace(" ", "▁")
};

absl::Status ParseNormalizer(const json& j, const std::string& label, NormalizerSpec* spec) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    for (const json& child : j.at("normalizers")) {
      RETURN_IF_ERROR(ParseNormalizer(child, label, spec));
    }
    return absl::OkStatus();
  }
  const UnicodeForm form = type == "NFC"    ? UnicodeForm::kNfc
                           : type == "NFD"  ? UnicodeForm::kNfd
                           : type == "NFKC" ? UnicodeForm::kNfkc
                           : type == "NFKD" ? UnicodeForm::kNfkd
                                            : UnicodeForm::kNone;
  if (form != UnicodeForm::kNone && spec->form == UnicodeForm::kNone) {
    spec->form = form;
    return absl::OkStatus();
  }
  if (type == "Prepend" && j.value("prepend", "") == kSpaceMarker) {
    spec->prepend_marker = true;
    return absl::OkStatus();
  }
  if (type == "Replace" && j.contains("pattern") && j["pattern"].is_object() &&
      j["pattern"].value("String", "") == " " && j.value("content", "") == kSpaceMarker) {
    spec->replace_space_by_marker = true;
    return absl::OkStatus();
  }
  return Unsupported(label, "normalizer", j);
}

// What the pre-tokenizer asks for.
struct PreTokenizerSpec {
  bool byte_level = false;
  bool add_prefix_space = false;  // ByteLevel
  std::optional<PretokenizerPattern> pattern;
  bool metaspace = false;
  std::string prepend_scheme = "always";  // Metaspace
  bool split = true;                      // Metaspace
};

absl::Status ParsePreTokenizer(const json& j, const std::string& label, PreTokenizerSpec* spec) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence") {
    for (const json& child : j.at("pretokenizers")) {
      RETURN_IF_ERROR(ParsePreTokenizer(child, label, spec));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    if (spec->byte_level) return Unsupported(label, "a second ByteLevel pre-tokenizer", j);
    spec->byte_level = true;
    spec->add_prefix_space = j.value("add_prefix_space", false);
    if (j.value("use_regex", true)) {
      if (spec->pattern.has_value()) return Unsupported(label, "ByteLevel after a Split", j);
      spec->pattern = PretokenizerPattern::kGpt2;
    } else if (!spec->pattern.has_value()) {
      return Unsupported(label, "ByteLevel without a regex (no word splitting)", j);
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    if (spec->pattern.has_value() || spec->byte_level) {
      return Unsupported(label, "more than one pre-tokenizer regex", j);
    }
    const json& pattern = j.at("pattern");
    if (!pattern.is_object() || !pattern.contains("Regex") || !pattern["Regex"].is_string()) {
      return Unsupported(label, "Split with a non-regex pattern", j);
    }
    if (j.value("behavior", "") != "Isolated" || j.value("invert", false)) {
      return Unsupported(label, "Split with a behavior other than Isolated", j);
    }
    spec->pattern = PretokenizerPatternFromRegex(pattern["Regex"].get<std::string>());
    if (!spec->pattern.has_value()) {
      return Unsupported(
          label, "the Split regex (packd knows the GPT-2, Llama 3 and Qwen2 regexes)", pattern);
    }
    return absl::OkStatus();
  }
  if (type == "Metaspace") {
    if (j.value("replacement", std::string(kSpaceMarker)) != kSpaceMarker) {
      return Unsupported(label, "Metaspace with a replacement other than \"▁\"", j);
    }
    spec->metaspace = true;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      spec->prepend_scheme = j["prepend_scheme"].get<std::string>();
    } else if (!j.value("add_prefix_space", true)) {
      spec->prepend_scheme = "never";
    }
    if (spec->prepend_scheme != "always" && spec->prepend_scheme != "first" &&
        spec->prepend_scheme != "never") {
      return Unsupported(label, "Metaspace prepend_scheme", j);
    }
    spec->split = j.value("split", true);
    return absl::OkStatus();
  }
  return Unsupported(label, "pre_tokenizer", j);
}

// The special tokens a TemplateProcessing post-processor puts around the
// text of a single sequence.
struct TemplateSpec {
  std::optional<std::string> before, after;
};

void ParsePostProcessor(const json& j, TemplateSpec* spec) {
  const std::string type = TypeOf(j);
  if (type == "Sequence" && j.contains("processors")) {
    for (const json& child : j["processors"]) ParsePostProcessor(child, spec);
    return;
  }
  if (type != "TemplateProcessing" || !j.contains("single") || !j["single"].is_array()) return;
  bool seen_text = false;
  for (const json& item : j["single"]) {
    if (item.contains("Sequence")) {
      seen_text = true;
    } else if (item.contains("SpecialToken")) {
      std::string id = item["SpecialToken"].value("id", "");
      (seen_text ? spec->after : spec->before) = std::move(id);
    }
  }
}

// tokenizer_config.json's bos_token / eos_token: a string, an AddedToken
// object with "content", or null.
absl::StatusOr<std::optional<std::string>> ConfigToken(const json& config, const char* key,
                                                       const std::string& label) {
  if (!config.contains(key) || config[key].is_null()) return std::optional<std::string>();
  const json& v = config[key];
  if (v.is_string()) return std::optional<std::string>(v.get<std::string>());
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return std::optional<std::string>(v["content"].get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat(label, ": ", key, " is neither a string nor {\"content\": ...}"));
}

absl::StatusOr<std::optional<bool>> ConfigBool(const json& config, const char* key,
                                               const std::string& label) {
  if (!config.contains(key) || config[key].is_null()) return std::optional<bool>();
  if (!config[key].is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": ", key, " is not a boolean"));
  }
  return std::optional<bool>(config[key].get<bool>());
}

absl::StatusOr<json> ReadJson(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON"));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  }
  return j;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const json& j, const std::string& label,
                                                const json& config,
                                                const std::string& config_label) {
  BpeModel m;
  m.label = label;
  if (!j.contains("model") || !j["model"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": no \"model\" object"));
  }
  const json& model = j["model"];
  // Older files (GPT-2's) have no model.type; their model is BPE.
  const std::string model_type = model.value("type", "BPE");
  if (model_type != "BPE") {
    return absl::UnimplementedError(absl::StrCat(label, ": model.type \"", model_type,
                                                 "\" is not supported (packd reads BPE models)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() && !model[key].get<std::string>().empty()) {
      return Unsupported(label, absl::StrCat("model.", key), model[key]);
    }
  }

  // Vocabulary: model.vocab, then added_tokens (which may add ids or name
  // existing ones).
  const json& vocab = model.at("vocab");
  if (!vocab.is_object())
    return absl::InvalidArgumentError(absl::StrCat(label, ": model.vocab is not an object"));
  std::vector<std::optional<std::string>> pieces;
  const auto set_piece = [&](int64_t id, const std::string& piece) -> absl::Status {
    if (id < 0 || id > (int64_t{1} << 24)) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": token \"", piece, "\" has id ", id, " (not in 0..2^24)"));
    }
    if (static_cast<size_t>(id) >= pieces.size()) pieces.resize(id + 1);
    pieces[id] = piece;
    return absl::OkStatus();
  };
  for (const auto& [piece, id] : vocab.items()) {
    if (!id.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": model.vocab[\"", piece, "\"] is not an integer id"));
    }
    RETURN_IF_ERROR(set_piece(id.get<int64_t>(), piece));
  }
  std::optional<std::string> unk_token;
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    unk_token = model["unk_token"].get<std::string>();
  }
  std::vector<AddedToken> added;
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const json& a : j["added_tokens"]) {
      AddedToken t;
      t.id = a.at("id").get<TokenId>();
      t.content = a.at("content").get<std::string>();
      t.special = a.value("special", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.single_word = a.value("single_word", false);
      RETURN_IF_ERROR(set_piece(t.id, t.content));
      added.push_back(std::move(t));
    }
  }
  m.pieces.reserve(pieces.size());
  for (size_t id = 0; id < pieces.size(); ++id) {
    if (!pieces[id].has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": no token has id ", id,
                                                     " (the ids must be 0..", pieces.size() - 1,
                                                     " without gaps)"));
    }
    m.pieces.push_back(std::move(*pieces[id]));
  }
  m.types.assign(m.pieces.size(), TokenType::kNormal);
  for (const AddedToken& t : added) {
    m.types[t.id] = !t.special               ? TokenType::kUserDefined
                    : unk_token == t.content ? TokenType::kUnknown
                                             : TokenType::kControl;
  }

  // Merges.
  if (model.contains("merges") && model["merges"].is_array()) {
    const json& merges = model["merges"];
    m.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& e = merges[i];
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const size_t space = s.find(' ');
        if (space != std::string::npos && s.find(' ', space + 1) == std::string::npos &&
            space > 0 && space + 1 < s.size()) {
          m.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
          continue;
        }
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        m.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat(label, ": model.merges[", i, "] = ", e.dump(),
                                                     " is not \"a b\" or [\"a\", \"b\"]"));
    }
  }
  if (m.merges.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(label, ": model.merges is missing or empty"));
  }

  // Normalizer and pre-tokenizer decide the family.
  NormalizerSpec norm;
  RETURN_IF_ERROR(ParseNormalizer(j.value("normalizer", json()), label, &norm));
  PreTokenizerSpec pre;
  RETURN_IF_ERROR(ParsePreTokenizer(j.value("pre_tokenizer", json()), label, &pre));
  m.unicode_form = norm.form;
  const bool byte_fallback = model.value("byte_fallback", false);
  if (pre.byte_level) {
    if (norm.prepend_marker || norm.replace_space_by_marker || pre.metaspace) {
      return absl::UnimplementedError(
          absl::StrCat(label, ": a ByteLevel pre-tokenizer together with \"▁\" space handling"));
    }
    m.family = BpeFamily::kByteLevel;
    m.pattern = *pre.pattern;
    m.add_prefix_space = pre.add_prefix_space;
    m.ignore_merges = model.value("ignore_merges", false);
  } else if (pre.metaspace || norm.replace_space_by_marker) {
    if (pre.metaspace && (norm.prepend_marker || norm.replace_space_by_marker)) {
      return absl::UnimplementedError(
          absl::StrCat(label, ": both a Metaspace pre-tokenizer and \"▁\" normalizers"));
    }
    m.family = BpeFamily::kSentencePiece;
    m.escape_whitespaces = true;
    m.remove_extra_whitespaces = false;
    if (pre.metaspace) {
      m.add_dummy_prefix = pre.prepend_scheme != "never";
      m.dummy_prefix_first_only = pre.prepend_scheme == "first";
      m.dummy_prefix_unless_present = true;
      m.split_at_whitespace_marker = pre.split;
    } else {
      m.add_dummy_prefix = norm.prepend_marker;
    }
    m.byte_fallback = byte_fallback;
    m.fuse_unk = model.value("fuse_unk", false);
    if (byte_fallback) {
      for (size_t id = 0; id < m.pieces.size(); ++id) {
        const std::string& p = m.pieces[id];
        if (m.types[id] == TokenType::kNormal && p.size() == 6 && p.starts_with("<0x") &&
            p.back() == '>') {
          m.types[id] = TokenType::kByte;
        }
      }
    }
  } else if (norm.prepend_marker) {
    return absl::UnimplementedError(
        absl::StrCat(label, ": Prepend(\"▁\") without Replace(\" \", \"▁\")"));
  } else {
    return absl::UnimplementedError(
        absl::StrCat(label,
                     ": neither a ByteLevel pre-tokenizer nor SentencePiece-style \"▁\" spaces "
                     "(Metaspace, or Replace(\" \", \"▁\")): this tokenizer is not supported"));
  }

  // Special tokens: tokenizer_config.json first, then the post-processor.
  const auto find = [&](const std::string& content) -> std::optional<TokenId> {
    for (const AddedToken& t : added) {
      if (t.content == content) return t.id;
    }
    for (size_t id = 0; id < m.pieces.size(); ++id) {
      if (m.pieces[id] == content) return static_cast<TokenId>(id);
    }
    return std::nullopt;
  };
  TemplateSpec tmpl;
  if (j.contains("post_processor")) ParsePostProcessor(j["post_processor"], &tmpl);
  ASSIGN_OR_RETURN(std::optional<std::string> bos, ConfigToken(config, "bos_token", config_label));
  ASSIGN_OR_RETURN(std::optional<std::string> eos, ConfigToken(config, "eos_token", config_label));
  ASSIGN_OR_RETURN(std::optional<bool> add_bos, ConfigBool(config, "add_bos_token", config_label));
  ASSIGN_OR_RETURN(std::optional<bool> add_eos, ConfigBool(config, "add_eos_token", config_label));
  const auto resolve = [&](const std::optional<std::string>& content,
                           const std::string& where) -> absl::StatusOr<std::optional<TokenId>> {
    if (!content.has_value()) return std::optional<TokenId>();
    std::optional<TokenId> id = find(*content);
    if (!id.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": token \"", *content, "\" is not in the vocabulary of ", label));
    }
    return id;
  };
  ASSIGN_OR_RETURN(m.bos, resolve(bos, config_label + " bos_token"));
  ASSIGN_OR_RETURN(m.eos, resolve(eos, config_label + " eos_token"));
  ASSIGN_OR_RETURN(std::optional<TokenId> template_bos,
                   resolve(tmpl.before, label + " post_processor"));
  ASSIGN_OR_RETURN(std::optional<TokenId> template_eos,
                   resolve(tmpl.after, label + " post_processor"));
  if (!m.bos.has_value()) m.bos = template_bos;
  if (!m.eos.has_value()) m.eos = template_eos;
  m.add_bos = add_bos.value_or(template_bos.has_value());
  m.add_eos = add_eos.value_or(template_eos.has_value());
  if (unk_token.has_value()) m.unk = find(*unk_token);
  m.added_tokens = std::move(added);
  return NewBpeTokenizer(std::move(m));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(
    const std::filesystem::path& tokenizer_json,
    const std::optional<std::filesystem::path>& tokenizer_config_json) {
  const std::string label = tokenizer_json.string();
  ASSIGN_OR_RETURN(const json j, ReadJson(tokenizer_json));
  json config = json::object();
  std::string config_label = "tokenizer_config.json";
  if (tokenizer_config_json.has_value()) {
    config_label = tokenizer_config_json->string();
    ASSIGN_OR_RETURN(config, ReadJson(*tokenizer_config_json));
  }
  try {
    return Load(j, label, config, config_label);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": malformed tokenizer.json: ", e.what()));
  }
}

}  // namespace packd::engine
