// A model's text side — its tokenizer, chat templates and end-of-generation
// ids — read from its files once per opened ModelSource and shared by every
// engine on it (ModelSource::Text): the instances of a model, and the engines
// of a model woken from the server's host cache, which read nothing from disk.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

class ModelSource;

// Immutable once loaded; safe to use from any thread.
struct ModelText {
  // Null when the model ships no tokenizer (requests are then token ids).
  std::shared_ptr<const Tokenizer> tokenizer;
  // nullopt: the model has no chat template (engine/chat_source.h).
  std::optional<chat::ChatTemplates> chat;
  // Every id that ends generation: the tokenizer's, config.json's and
  // generation_config.json's eos ids; sorted, without repeats.
  std::vector<TokenId> stop_ids;
  // The longest text, in bytes, any one token stands for (>= 1; 1 without a
  // tokenizer).
  uint64_t longest_token_bytes = 1;
};

// Reads the text side of `source` with `chat_template_file` (empty: the
// model's own template) replacing its chat template. FailedPrecondition
// when the tokenizer has ids the embedding has no row for;
// InvalidArgument for a generation_config.json eos id outside the
// vocabulary; the loaders' errors otherwise.
absl::StatusOr<std::shared_ptr<const ModelText>> LoadModelText(
    const ModelSource& source, const std::filesystem::path& chat_template_file);

}  // namespace packd::engine
