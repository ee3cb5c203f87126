// The GGUF flavour of Checkpoint (engine/checkpoint.h): tensors keep their GGUF
// names and bytes, shapes become row-major; config.json is derived from the
// llama.* keys and every metadata key travels in gguf_metadata.json.
#pragma once

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/checkpoint.h"

namespace packd::engine {

// Fails, naming the tensor, if any tensor is not F32, F16 or BF16.
absl::StatusOr<std::unique_ptr<Checkpoint>> OpenGgufCheckpoint(
    const std::filesystem::path& path, FileAccess access = FileAccess::kMapped);

}  // namespace packd::engine
