// Opens a model for serving from any of the forms the engine accepts
// (DESIGN.md §3): a packd model directory (compressed or raw tensors), a
// plain Hugging Face directory, or a GGUF file (F32/F16/BF16). Files are
// memory-mapped; compressed tensors stay compressed (only a tile decoder per
// tensor is opened).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/file.h"
#include "codec/container.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/model_config.h"
#include "engine/models/architecture.h"

namespace packd::engine {

struct ModelText;  // engine/model_text.h

struct ModelSourceOptions {
  // packd directories: check each tensor's encoded-bytes checksum at open
  // (XXH3, cheap next to loading) so a corrupt file fails here, by name.
  bool verify_checksums = true;
  // How the weight files are held (base/file.h): mapped (the page cache), or
  // read into this process's memory at open (kResident: what the CPU backend
  // streams every step reads faster from there).
  FileAccess weights = FileAccess::kMapped;
};

// Immutable after Open; owns the mappings every WeightSource points into.
class ModelSource {
 public:
  static absl::StatusOr<std::unique_ptr<ModelSource>> Open(const std::filesystem::path& path,
                                                           const ModelSourceOptions& options = {});

  // "packd", "safetensors" or "gguf".
  std::string_view format() const { return format_; }
  const std::filesystem::path& path() const { return path_; }
  // How its weight files are held (ModelSourceOptions::weights).
  FileAccess weights_access() const { return weights_access_; }
  const ModelConfig& config() const { return config_; }
  NameScheme name_scheme() const { return scheme_; }
  // What LoadTokenizer() should be given: the directory, or the GGUF file.
  const std::filesystem::path& tokenizer_path() const { return tokenizer_path_; }

  bool Has(std::string_view name) const { return tensors_.count(std::string(name)) != 0; }
  // NotFound naming the model and the tensor.
  absl::StatusOr<WeightSource> Find(std::string_view name) const;
  // Every tensor of the model, by name (the transformer may use fewer).
  const std::map<std::string, WeightSource, std::less<>>& tensors() const { return tensors_; }

  // The model's tokenizer, chat templates and stop ids (engine/model_text.h)
  // with `chat_template_file` replacing its template (empty: the model's own): read
  // from its files by the first call for that file, then shared. Thread-safe.
  absl::StatusOr<std::shared_ptr<const ModelText>> Text(
      const std::filesystem::path& chat_template_file) const;

  // The codec names its tensors are stored with ({"none"} for HF and GGUF).
  std::set<std::string> codecs() const;
  // Totals over all tensors: as stored (encoded) and as the original dtype.
  uint64_t stored_bytes() const { return stored_bytes_; }
  uint64_t original_bytes() const { return original_bytes_; }

 private:
  ModelSource() = default;
  absl::Status OpenPackd(const ModelSourceOptions& options);
  absl::Status OpenCheckpoint(const ModelSourceOptions& options);

  std::string format_;
  std::filesystem::path path_;
  std::filesystem::path tokenizer_path_;
  FileAccess weights_access_ = FileAccess::kMapped;
  ModelConfig config_;
  NameScheme scheme_ = NameScheme::kHuggingFace;
  std::unique_ptr<codec::ContainerReader> container_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::map<std::string, std::unique_ptr<codec::TensorDecoder>, std::less<>> decoders_;
  std::map<std::string, WeightSource, std::less<>> tensors_;
  uint64_t stored_bytes_ = 0;
  uint64_t original_bytes_ = 0;
  // Text(): one per chat template file asked for.
  mutable absl::Mutex text_mu_;
  mutable std::map<std::filesystem::path, std::shared_ptr<const ModelText>> texts_
      ABSL_GUARDED_BY(text_mu_);
};

}  // namespace packd::engine
