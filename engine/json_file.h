// Reading the JSON files beside a model (tokenizer.json, tokenizer_config.json,
// generation_config.json, gguf_metadata.json, ...).
#pragma once

#include <filesystem>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace packd::engine {

// The file's JSON object. InvalidArgument naming the file when it is not
// valid JSON or not an object; the file's own error when it cannot be read.
absl::StatusOr<nlohmann::json> ReadJsonObject(const std::filesystem::path& path);

}  // namespace packd::engine
