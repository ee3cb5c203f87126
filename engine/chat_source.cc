#include "engine/chat_source.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "engine/gguf.h"
#include "engine/json_file.h"
#include "engine/model_directory.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr absl::string_view kGgufTemplateKey = "tokenizer.chat_template";

bool Exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// GGUF metadata in GgufFile::MetadataToJson()'s form ({"key": {"type",
// "value"}}): tokenizer.chat_template and tokenizer.chat_template.NAME as
// tokenizer_config.json would hold them (a string when there is only the
// default, else the list of {"name", "template"}); nullopt when it has none.
absl::StatusOr<std::optional<json>> GgufTemplates(const json& meta, const std::string& label) {
  const std::string named_prefix = absl::StrCat(kGgufTemplateKey, ".");
  json list = json::array();
  for (const auto& [key, entry] : meta.items()) {
    std::string name;
    if (key == kGgufTemplateKey) {
      name = "default";
    } else if (key.starts_with(named_prefix)) {
      name = key.substr(named_prefix.size());
    } else {
      continue;
    }
    if (!entry.is_object() || !entry.contains("value") || !entry["value"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": ", key, " is not a string"));
    }
    json item = {{"name", name}, {"template", entry["value"]}};
    // The default first, as transformers lists it.
    list.insert(name == "default" ? list.begin() : list.end(), std::move(item));
  }
  if (list.empty()) return std::optional<json>();
  if (list.size() == 1 && list[0]["name"] == "default") return std::optional<json>(list[0]["template"]);
  return std::optional<json>(std::move(list));
}

// The special tokens a template sees: tokenizer_config.json's (strings or
// AddedTokens, as transformers.js passes its SPECIAL_TOKEN_ATTRIBUTES), else
// the tokenizer's bos and eos spelled out.
json SpecialTokens(const fs::path& tokenizer_path, const Tokenizer& tokenizer) {
  json out = json::object();
  std::error_code ec;
  if (fs::is_directory(tokenizer_path, ec) && Exists(tokenizer_path / "tokenizer_config.json")) {
    absl::StatusOr<json> config = ReadJsonObject(tokenizer_path / "tokenizer_config.json");
    if (config.ok()) {
      for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                              "cls_token", "mask_token"}) {
        if (config->contains(key)) out[key] = (*config)[key];
      }
      return out;
    }
  }
  const auto spell = [&](const char* key, std::optional<TokenId> id) {
    if (!id.has_value()) return;
    absl::StatusOr<std::string> text = tokenizer.TokenBytes(*id, /*include_special=*/true);
    if (text.ok()) out[key] = *text;
  };
  spell("bos_token", tokenizer.bos_id());
  spell("eos_token", tokenizer.eos_id());
  return out;
}

// The chat_template value of a directory's files, and which file gave it.
struct ConfigTemplate {
  json value;
  std::string label;
};
absl::StatusOr<std::optional<ConfigTemplate>> DirectoryTemplate(const fs::path& dir) {
  for (const char* name : {"tokenizer_config.json", "chat_template.json"}) {
    const fs::path file = dir / name;
    if (!Exists(file)) continue;
    ASSIGN_OR_RETURN(const json config, ReadJsonObject(file));
    if (config.contains("chat_template") && !config["chat_template"].is_null()) {
      return ConfigTemplate{config["chat_template"], absl::StrCat(file.string(), ": chat_template")};
    }
  }
  const fs::path metadata = dir / kGgufMetadataFileName;
  if (!Exists(metadata)) return std::optional<ConfigTemplate>();
  ASSIGN_OR_RETURN(const json meta, ReadJsonObject(metadata));
  ASSIGN_OR_RETURN(std::optional<json> value, GgufTemplates(meta, metadata.string()));
  if (!value.has_value()) return std::optional<ConfigTemplate>();
  return ConfigTemplate{*std::move(value), absl::StrCat(metadata.string(), ": ", kGgufTemplateKey)};
}

}  // namespace

absl::StatusOr<std::optional<chat::ChatTemplates>> LoadChatTemplates(
    const fs::path& tokenizer_path, const Tokenizer& tokenizer, const fs::path& override_file) {
  std::error_code ec;
  const bool dir = fs::is_directory(tokenizer_path, ec);
  fs::path source_file = override_file;
  if (source_file.empty() && dir && Exists(tokenizer_path / "chat_template.jinja")) {
    source_file = tokenizer_path / "chat_template.jinja";
  }
  std::optional<chat::ChatTemplates> out;
  if (!source_file.empty()) {
    ASSIGN_OR_RETURN(std::string source, ReadFileToString(source_file));
    ASSIGN_OR_RETURN(out, chat::ChatTemplates::FromSource(std::move(source), source_file.string()));
  } else {
    std::optional<ConfigTemplate> found;
    if (dir) {
      ASSIGN_OR_RETURN(found, DirectoryTemplate(tokenizer_path));
    } else {
      ASSIGN_OR_RETURN(const GgufFile gguf, GgufFile::Open(tokenizer_path));
      ASSIGN_OR_RETURN(std::optional<json> value,
                       GgufTemplates(gguf.MetadataToJson(), tokenizer_path.string()));
      if (value.has_value()) {
        found = ConfigTemplate{*std::move(value),
                               absl::StrCat(tokenizer_path.string(), ": ", kGgufTemplateKey)};
      }
    }
    if (!found.has_value()) return out;
    ASSIGN_OR_RETURN(out, chat::ChatTemplates::FromConfigValue(found->value, found->label));
  }
  out->SetSpecialTokens(SpecialTokens(tokenizer_path, tokenizer));
  return out;
}

absl::StatusOr<std::vector<int64_t>> GenerationConfigEosIds(const fs::path& dir) {
  std::vector<int64_t> ids;
  const fs::path file = dir / "generation_config.json";
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || !Exists(file)) return ids;
  ASSIGN_OR_RETURN(const json config, ReadJsonObject(file));
  if (!config.contains("eos_token_id") || config["eos_token_id"].is_null()) return ids;
  const json& v = config["eos_token_id"];
  const json list = v.is_array() ? v : json::array({v});
  for (const json& e : list) {
    if (!e.is_number_unsigned() && !(e.is_number_integer() && e.get<int64_t>() >= 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.string(), ": eos_token_id must be a token id or a list of them, got ", v.dump()));
    }
    ids.push_back(e.get<int64_t>());
  }
  return ids;
}

}  // namespace packd::engine
