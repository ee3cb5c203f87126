// Finds a model's chat template(s) and the special tokens a template sees,
// wherever the model keeps them (issue 13; engine/chat/ renders them).
//
// Where the template comes from, the first that exists:
//  1. an override file (EngineOptions::chat_template_file, the server's
//     models[].chat_template): the whole file is one template, "default";
//  2. a Hugging Face or packd directory: chat_template.jinja (what
//     transformers >= 4.43 saves), then tokenizer_config.json's
//     "chat_template" (a string, or a list of {"name", "template"}), then
//     chat_template.json's "chat_template" (processors' form);
//  3. a GGUF file's tokenizer.chat_template (and tokenizer.chat_template.NAME
//     for named ones), or a packd directory's gguf_metadata.json with them.
// A model with none has no chat (requests with messages are refused, naming
// the model). A template that does not parse fails the load, naming the file
// and the position.
//
// The special tokens: tokenizer_config.json's bos_token / eos_token /
// unk_token / pad_token (a string or {"content"}), as transformers passes
// them; without that file, the tokenizer's bos / eos ids spelled out.
#pragma once

#include <filesystem>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

// `tokenizer_path`: ModelSource::tokenizer_path() (a directory or a GGUF
// file). `override_file`: empty for none. nullopt: the model has no chat
// template.
absl::StatusOr<std::optional<chat::ChatTemplates>> LoadChatTemplates(
    const std::filesystem::path& tokenizer_path, const Tokenizer& tokenizer,
    const std::filesystem::path& override_file);

// generation_config.json's eos_token_id (an id or a list) beside a directory
// model: the ids its authors meant to end generation (Llama 3.1 Instruct:
// <|end_of_text|>, <|eom_id|>, <|eot_id|>). Empty when there is no such file
// or key; an error names the file when the value is malformed.
absl::StatusOr<std::vector<int64_t>> GenerationConfigEosIds(const std::filesystem::path& dir);

}  // namespace packd::engine
