// LoadHfTokenizer: a Hugging Face tokenizer.json (tokenizers library) with a
// BPE model, plus tokenizer_config.json for bos/eos and add_bos_token /
// add_eos_token.
//
// What is read (anything else is an error naming it and its JSON path):
//  - model: type "BPE" (or no type: older files), vocab, merges ("a b" strings
//    or [a, b] pairs), unk_token, byte_fallback, fuse_unk, ignore_merges;
//  - normalizer, pre_tokenizer, decoder: every stage text_pipeline.h knows;
//  - post_processor: TemplateProcessing (a special token before / after $A
//    means bos / eos is added), Bert/RobertaProcessing, ByteLevel, Sequence;
//  - added_tokens: special ones become control tokens (matched unless the
//    caller splits special tokens), the others user-defined (always matched);
//    lstrip, rstrip and single_word are honoured, "normalized" is not (tokens
//    are matched in the raw text, as transformers.js does).
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/json_file.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/text_pipeline.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

using nlohmann::json;

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

// The special tokens a TemplateProcessing post-processor puts around the
// text of a single sequence.
struct TemplateSpec {
  std::optional<std::string> before, after;
};

// Reads the post-processor: TemplateProcessing (the special tokens around
// $A), Bert/RobertaProcessing (cls before, sep after), ByteLevel (nothing to
// add: offsets only), or a Sequence of those (`depth`: Sequences around j).
absl::Status ParsePostProcessor(const json& j, const std::string& path, const std::string& label,
                                int depth, TemplateSpec* spec) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = TypeOf(j);
  if (type == "Sequence" && j.contains("processors") && j["processors"].is_array()) {
    if (depth >= kMaxSequenceDepth) {
      return absl::InvalidArgumentError(absl::StrCat(
          label, ": ", path, ": Sequences nested more than ", kMaxSequenceDepth, " deep"));
    }
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      RETURN_IF_ERROR(ParsePostProcessor(
          j["processors"][i], absl::StrCat(path, ".processors[", i, "]"), label, depth + 1, spec));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    for (const char* key : {"cls", "sep"}) {
      if (!j.contains(key) || !j[key].is_array() || j[key].empty() || !j[key][0].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(label, ": ", path, ".", key, ": expected [token, id]"));
      }
    }
    spec->before = j["cls"][0].get<std::string>();
    spec->after = j["sep"][0].get<std::string>();
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") {
    return Unsupported(label, absl::StrCat(path, ": post_processor type \"", type, "\""), j);
  }
  if (!j.contains("single") || !j["single"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": ", path, ".single: expected an array"));
  }
  bool seen_text = false;
  for (const json& item : j["single"]) {
    if (item.contains("Sequence")) {
      seen_text = true;
    } else if (item.contains("SpecialToken")) {
      std::optional<std::string>& slot = seen_text ? spec->after : spec->before;
      if (slot.has_value()) {
        return Unsupported(label,
                           absl::StrCat(path,
                                        ".single: more than one special token on one side "
                                        "of the text"),
                           j["single"]);
      }
      slot = item["SpecialToken"].value("id", "");
    }
  }
  return absl::OkStatus();
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
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0)) {
    return Unsupported(label, "model.dropout (BPE dropout samples merges at random)",
                       model["dropout"]);
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

  // Normalizer, pre-tokenizer and decoder; a ByteLevel stage makes the
  // vocabulary byte-level.
  auto pipeline = std::make_shared<TextPipeline>();
  ASSIGN_OR_RETURN(pipeline->normalizer,
                   ParseNormalizer(j.value("normalizer", json()), "normalizer", label));
  ASSIGN_OR_RETURN(pipeline->pre_tokenizer,
                   ParsePreTokenizer(j.value("pre_tokenizer", json()), "pre_tokenizer", label));
  ASSIGN_OR_RETURN(pipeline->decoder, ParseDecoder(j.value("decoder", json()), "decoder", label));
  m.family = pipeline->byte_level() ? BpeFamily::kByteLevel : BpeFamily::kSentencePiece;
  m.pipeline = std::move(pipeline);
  m.ignore_merges = model.value("ignore_merges", false);
  m.byte_fallback = model.value("byte_fallback", false);
  m.fuse_unk = model.value("fuse_unk", false);
  if (m.byte_fallback) {
    for (size_t id = 0; id < m.pieces.size(); ++id) {
      const std::string& p = m.pieces[id];
      if (m.types[id] == TokenType::kNormal && p.size() == 6 && p.starts_with("<0x") &&
          p.back() == '>') {
        m.types[id] = TokenType::kByte;
      }
    }
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
  RETURN_IF_ERROR(
      ParsePostProcessor(j.value("post_processor", json()), "post_processor", label, 0, &tmpl));
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
  ASSIGN_OR_RETURN(const json j, ReadJsonObject(tokenizer_json));
  json config = json::object();
  std::string config_label = "tokenizer_config.json";
  if (tokenizer_config_json.has_value()) {
    config_label = tokenizer_config_json->string();
    ASSIGN_OR_RETURN(config, ReadJsonObject(*tokenizer_config_json));
  }
  try {
    return Load(j, label, config, config_label);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": malformed tokenizer.json: ", e.what()));
  }
}

}  // namespace packd::engine
