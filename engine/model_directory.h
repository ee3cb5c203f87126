// Names and lookup of the files of a packd model directory (DESIGN.md §3).
#pragma once

#include <filesystem>

#include "absl/status/statusor.h"
#include "codec/container.h"

namespace packd::engine {

// The weights container inside a model directory.
inline constexpr char kWeightsFileName[] = "model.packd.safetensors";
// For GGUF sources: every GGUF metadata key/value, typed, as JSON (the
// tokenizer and hyperparameters travel here so the directory needs no GGUF).
inline constexpr char kGgufMetadataFileName[] = "gguf_metadata.json";

// `path` may be a model directory or a weights file; returns the weights file,
// or NotFound saying why `path` is not a packd model directory.
absl::StatusOr<std::filesystem::path> ResolveWeightsFile(const std::filesystem::path& path);

// ResolveWeightsFile + ContainerReader::Open: the validated weights of a model
// directory (or of a weights file given directly).
absl::StatusOr<codec::ContainerReader> OpenModelWeights(const std::filesystem::path& path,
                                                        FileAccess access = FileAccess::kMapped);

}  // namespace packd::engine
