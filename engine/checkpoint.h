// A source checkpoint for `packd compress`: a Hugging Face directory
// (config.json, *.safetensors with or without model.safetensors.index.json,
// tokenizer files) or a GGUF file, presented as one list of tensors plus the
// files a self-contained model directory needs besides its weights.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/file.h"
#include "codec/tensor_codec.h"

namespace packd::engine {

struct SourceTensor {
  std::string name;
  codec::TensorInfo info;
  std::span<const uint8_t> data;  // owned by the Checkpoint (its file mappings)
  std::string file;               // where it came from, for messages
};

// A file to write into the model directory (config.json, tokenizer files...).
struct SideFile {
  std::string name;
  std::string bytes;
};

// Owns the mappings of its source files; immutable after Open.
class Checkpoint {
 public:
  // A directory is read as a Hugging Face checkpoint, a file as GGUF.
  // Errors name the file (and tensor) at fault: missing config.json, a shard
  // named by the index that does not exist, a tensor in two shards, ...
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::filesystem::path& path,
                                                          FileAccess access = FileAccess::kMapped);
  virtual ~Checkpoint() = default;

  // "safetensors" or "gguf".
  virtual std::string_view format() const = 0;
  // In a stable order: sorted by name.
  virtual const std::vector<SourceTensor>& tensors() const = 0;
  // config.json, tokenizer and other files for the model directory.
  virtual const std::vector<SideFile>& side_files() const = 0;
  // A JSON object describing the source, recorded in the container manifest.
  virtual std::string source_json() const = 0;
};

}  // namespace packd::engine
