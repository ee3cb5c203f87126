#include "engine/model_text.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/chat_source.h"
#include "engine/model_source.h"

namespace packd::engine {
namespace {

// Whether `path` carries any tokenizer the loaders know.
bool HasTokenizer(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_directory(path, ec)) return true;  // a GGUF file
  for (const char* f : {"tokenizer.json", "tokenizer.model", "gguf_metadata.json"}) {
    if (std::filesystem::exists(path / f, ec)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ModelText>> LoadModelText(
    const ModelSource& source, const std::filesystem::path& chat_template_file) {
  auto text = std::make_shared<ModelText>();
  const ModelConfig& c = source.config();
  const std::filesystem::path& path = source.tokenizer_path();
  if (HasTokenizer(path)) {
    ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadTokenizer(path));
    // An id the embedding has no row for could be produced and then not be
    // embedded: refused here rather than at the first such prompt.
    if (tokenizer->vocab_size() > c.vocab_size) {
      return absl::FailedPreconditionError(
          absl::StrCat(source.path().string(), ": the tokenizer has ", tokenizer->vocab_size(),
                       " tokens but the model's embedding has ", c.vocab_size, " rows: ids from ",
                       c.vocab_size, " up could not be embedded (a tokenizer of another model?)"));
    }
    text->stop_ids = tokenizer->stop_ids();
    ASSIGN_OR_RETURN(text->chat, LoadChatTemplates(path, *tokenizer, chat_template_file));
    for (TokenId id = 0; id < tokenizer->vocab_size(); ++id) {
      absl::StatusOr<std::string> bytes = tokenizer->TokenBytes(id, /*include_special=*/true);
      if (bytes.ok())
        text->longest_token_bytes = std::max<uint64_t>(text->longest_token_bytes, bytes->size());
    }
    text->tokenizer = std::move(tokenizer);
  }
  for (int64_t id : c.eos_token_ids) text->stop_ids.push_back(static_cast<TokenId>(id));
  // generation_config.json's eos ids end generation too (Llama 3 names
  // <|eot_id|> only there).
  ASSIGN_OR_RETURN(const std::vector<int64_t> generation_eos, GenerationConfigEosIds(path));
  for (int64_t id : generation_eos) {
    if (id >= c.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat((path / "generation_config.json").string(), ": eos_token_id ", id,
                       " is outside the vocabulary [0, ", c.vocab_size, ")"));
    }
    text->stop_ids.push_back(static_cast<TokenId>(id));
  }
  std::sort(text->stop_ids.begin(), text->stop_ids.end());
  text->stop_ids.erase(std::unique(text->stop_ids.begin(), text->stop_ids.end()),
                       text->stop_ids.end());
  return std::shared_ptr<const ModelText>(std::move(text));
}

}  // namespace packd::engine
