// The Hugging Face directory flavour of Checkpoint (engine/checkpoint.h).
#pragma once

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/checkpoint.h"

namespace packd::engine {

// Files copied verbatim from a Hugging Face directory when present.
inline constexpr const char* kHfSideFiles[] = {
    "config.json",           "generation_config.json",  "tokenizer.json", "tokenizer.model",
    "tokenizer_config.json", "special_tokens_map.json", "vocab.json",     "merges.txt",
    "added_tokens.json",     "chat_template.jinja",     "chat_template.json",
};

absl::StatusOr<std::unique_ptr<Checkpoint>> OpenHfCheckpoint(
    const std::filesystem::path& dir, FileAccess access = FileAccess::kMapped);

}  // namespace packd::engine
