// LoadTokenizer: picks the loader for what a model directory or file holds.
#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/gguf.h"
#include "engine/json_file.h"
#include "engine/model_directory.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

namespace fs = std::filesystem;

// Whether a tokenizer.model is tiktoken text ("<base64> <rank>" lines) rather
// than a SentencePiece protobuf (which starts with a length-delimited field 1,
// byte 0x0A, and is binary).
bool LooksLikeTiktoken(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string head(256, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  const size_t newline = head.find('\n');
  if (newline == std::string::npos && head.size() == 256) return false;
  const std::string_view first(head.data(), std::min(newline, head.size()));
  const size_t space = first.find(' ');
  if (space == 0 || space == std::string_view::npos || space + 1 >= first.size()) return false;
  for (char c : first.substr(0, space)) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) {
      return false;
    }
  }
  for (char c : first.substr(space + 1)) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '\r') return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerModel(const fs::path& file) {
  return LooksLikeTiktoken(file) ? LoadTiktokenModel(file) : LoadSentencePieceModel(file);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGgufMetadataJson(const fs::path& file) {
  ASSIGN_OR_RETURN(const nlohmann::json j, ReadJsonObject(file));
  return LoadGgufTokenizer(j, file.string());
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfWithSiblingConfig(const fs::path& json) {
  std::error_code ec;
  const fs::path config = json.parent_path() / "tokenizer_config.json";
  return LoadHfTokenizer(
      json, fs::is_regular_file(config, ec) ? std::optional<fs::path>(config) : std::nullopt);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (fs::is_directory(status)) {
    if (fs::is_regular_file(path / "tokenizer.json", ec)) {
      return LoadHfWithSiblingConfig(path / "tokenizer.json");
    }
    if (fs::is_regular_file(path / "tokenizer.model", ec)) {
      return LoadTokenizerModel(path / "tokenizer.model");
    }
    if (fs::is_regular_file(path / kGgufMetadataFileName, ec)) {
      return LoadGgufMetadataJson(path / kGgufMetadataFileName);
    }
    return absl::NotFoundError(absl::StrCat(path.string(),
                                            ": no tokenizer.json, tokenizer.model or ",
                                            kGgufMetadataFileName, " in this directory"));
  }
  if (!fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file or directory"));
  }
  const std::string name = path.filename().string();
  const std::string ext = path.extension().string();
  if (ext == ".gguf") {
    ASSIGN_OR_RETURN(const GgufFile gguf, GgufFile::Open(path));
    return LoadGgufTokenizer(gguf.MetadataToJson(), path.string());
  }
  if (name == kGgufMetadataFileName) return LoadGgufMetadataJson(path);
  if (ext == ".json") return LoadHfWithSiblingConfig(path);
  if (ext == ".model") return LoadTokenizerModel(path);
  return absl::InvalidArgumentError(
      absl::StrCat(path.string(),
                   ": not a tokenizer file packd knows (a directory, *.gguf, tokenizer.json, "
                   "tokenizer.model or gguf_metadata.json)"));
}

}  // namespace packd::engine
