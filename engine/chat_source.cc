#include "engine/chat_source.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "engine/gguf.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr absl::string_view kGgufTemplateKey = "tokenizer.chat_template";

absl::StatusOr<json> ReadJsonFile(const fs::path& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not valid JSON"));
  }
  return j;
}

bool Exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// tokenizer.chat_template and tokenizer.chat_template.NAME as the list form
// of tokenizer_config.json's chat_template (GGUF's spelling of it).
json GgufTemplates(const std::vector<std::pair<std::string, std::string>>& entries) {
  if (entries.size() == 1 && entries[0].first == "default") return entries[0].second;
  json list = json::array();
  for (const auto& [name, source] : entries) list.push_back({{"name", name}, {"template", source}});
  return list;
}

// The chat templates of GGUF metadata, given a way to read a string key.
template <typename GetString>
absl::StatusOr<std::optional<json>> FromGgufKeys(const std::vector<std::string>& keys,
                                                 GetString get) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (const std::string& key : keys) {
    if (key == kGgufTemplateKey) {
      ASSIGN_OR_RETURN(std::string s, get(key));
      entries.emplace(entries.begin(), "default", std::move(s));
    } else if (key.starts_with(std::string(kGgufTemplateKey) + ".")) {
      ASSIGN_OR_RETURN(std::string s, get(key));
      entries.emplace_back(key.substr(kGgufTemplateKey.size() + 1), std::move(s));
    }
  }
  if (entries.empty()) return std::optional<json>();
  return std::optional<json>(GgufTemplates(entries));
}

absl::StatusOr<std::optional<json>> GgufFileTemplates(const fs::path& file) {
  ASSIGN_OR_RETURN(const GgufFile gguf, GgufFile::Open(file));
  std::vector<std::string> keys;
  for (const auto& [key, value] : gguf.metadata()) keys.push_back(key);
  return FromGgufKeys(keys, [&](const std::string& key) { return gguf.GetString(key); });
}

// gguf_metadata.json: {"key": {"type": "string", "value": "..."}, ...}.
absl::StatusOr<std::optional<json>> GgufJsonTemplates(const fs::path& file) {
  ASSIGN_OR_RETURN(const json meta, ReadJsonFile(file));
  if (!meta.is_object()) return std::optional<json>();
  std::vector<std::string> keys;
  for (const auto& [key, value] : meta.items()) keys.push_back(key);
  return FromGgufKeys(keys, [&](const std::string& key) -> absl::StatusOr<std::string> {
    const json& v = meta[key];
    if (!v.is_object() || !v.contains("value") || !v["value"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), ": ", key, " is not a string value"));
    }
    return v["value"].get<std::string>();
  });
}

// The special tokens a template sees, as strings.
json SpecialTokens(const fs::path& tokenizer_path, const Tokenizer& tokenizer) {
  json out = json::object();
  const fs::path config = tokenizer_path / "tokenizer_config.json";
  std::error_code ec;
  if (fs::is_directory(tokenizer_path, ec) && Exists(config)) {
    absl::StatusOr<json> c = ReadJsonFile(config);
    if (c.ok() && c->is_object()) {
      // transformers.js's SPECIAL_TOKEN_ATTRIBUTES.
      for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                              "cls_token", "mask_token"}) {
        if (!c->contains(key)) continue;
        const json& v = (*c)[key];
        if (v.is_string()) {
          out[key] = v;
        } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
          out[key] = v["content"];
        }
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

}  // namespace

absl::StatusOr<std::optional<chat::ChatTemplates>> LoadChatTemplates(
    const fs::path& tokenizer_path, const Tokenizer& tokenizer, const fs::path& override_file) {
  std::optional<chat::ChatTemplates> out;
  std::error_code ec;
  const bool dir = fs::is_directory(tokenizer_path, ec);
  if (!override_file.empty()) {
    ASSIGN_OR_RETURN(std::string source, ReadFileToString(override_file));
    ASSIGN_OR_RETURN(out, chat::ChatTemplates::FromSource(std::move(source),
                                                          override_file.string()));
  } else if (dir && Exists(tokenizer_path / "chat_template.jinja")) {
    const fs::path file = tokenizer_path / "chat_template.jinja";
    ASSIGN_OR_RETURN(std::string source, ReadFileToString(file));
    ASSIGN_OR_RETURN(out, chat::ChatTemplates::FromSource(std::move(source), file.string()));
  } else if (dir) {
    for (const char* name : {"tokenizer_config.json", "chat_template.json"}) {
      const fs::path file = tokenizer_path / name;
      if (!Exists(file)) continue;
      ASSIGN_OR_RETURN(const json config, ReadJsonFile(file));
      if (!config.is_object() || !config.contains("chat_template") ||
          config["chat_template"].is_null()) {
        continue;
      }
      ASSIGN_OR_RETURN(out, chat::ChatTemplates::FromConfigValue(
                                config["chat_template"],
                                absl::StrCat(file.string(), ": chat_template")));
      break;
    }
    if (!out.has_value() && Exists(tokenizer_path / "gguf_metadata.json")) {
      const fs::path file = tokenizer_path / "gguf_metadata.json";
      ASSIGN_OR_RETURN(const std::optional<json> value, GgufJsonTemplates(file));
      if (value.has_value()) {
        ASSIGN_OR_RETURN(out, chat::ChatTemplates::FromConfigValue(
                                  *value, absl::StrCat(file.string(), ": ", kGgufTemplateKey)));
      }
    }
  } else {
    ASSIGN_OR_RETURN(const std::optional<json> value, GgufFileTemplates(tokenizer_path));
    if (value.has_value()) {
      ASSIGN_OR_RETURN(out, chat::ChatTemplates::FromConfigValue(
                                *value, absl::StrCat(tokenizer_path.string(), ": ",
                                                     kGgufTemplateKey)));
    }
  }
  if (out.has_value()) out->SetSpecialTokens(SpecialTokens(tokenizer_path, tokenizer));
  return out;
}

absl::StatusOr<std::vector<int64_t>> GenerationConfigEosIds(const fs::path& dir) {
  std::vector<int64_t> ids;
  const fs::path file = dir / "generation_config.json";
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || !Exists(file)) return ids;
  ASSIGN_OR_RETURN(const json config, ReadJsonFile(file));
  if (!config.is_object() || !config.contains("eos_token_id") || config["eos_token_id"].is_null()) {
    return ids;
  }
  const json& v = config["eos_token_id"];
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        file.string(), ": eos_token_id must be a token id or a list of them, got ", v.dump()));
  };
  const json list = v.is_array() ? v : json::array({v});
  for (const json& e : list) {
    if (!e.is_number_unsigned() && !(e.is_number_integer() && e.get<int64_t>() >= 0)) return bad();
    ids.push_back(e.get<int64_t>());
  }
  return ids;
}

}  // namespace packd::engine
