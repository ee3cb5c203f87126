#include "engine/model_source.h"

#include "absl/strings/str_cat.h"
#include "base/checksum.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "engine/model_directory.h"
#include "engine/model_text.h"
#include "nlohmann/json.hpp"

namespace packd::engine {
namespace {

absl::StatusOr<nlohmann::json> ParseJson(std::string_view bytes, const std::string& label) {
  nlohmann::json j = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(label, ": not valid JSON"));
  return j;
}

absl::StatusOr<nlohmann::json> ReadJson(const std::filesystem::path& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  return ParseJson(bytes, path.string());
}

bool IsFloatDType(codec::DType t) {
  return t == codec::DType::kF32 || t == codec::DType::kF16 || t == codec::DType::kBF16;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelSource>> ModelSource::Open(const std::filesystem::path& path,
                                                               const ModelSourceOptions& options) {
  std::unique_ptr<ModelSource> m(new ModelSource());
  m->path_ = path;
  m->weights_access_ = options.weights;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file or directory"));
  }
  const bool packd = std::filesystem::is_directory(path, ec)
                         ? std::filesystem::exists(path / kWeightsFileName, ec)
                         : path.extension() == ".safetensors";
  if (packd) {
    RETURN_IF_ERROR(m->OpenPackd(options));
  } else {
    RETURN_IF_ERROR(m->OpenCheckpoint(options));
  }
  // GGUF files state no tie flag: a missing output.weight means tied. (A
  // Hugging Face config says so itself; an untied one without lm_head.weight
  // is an error at load, not silently a different model.)
  const ModelTensorNames names = ModelNames(m->scheme_);
  if (m->scheme_ == NameScheme::kGguf && !m->Has(names.lm_head)) {
    m->config_.tie_word_embeddings = true;
  }
  RETURN_IF_ERROR(m->config_.Validate(path.string()));
  return m;
}

absl::Status ModelSource::OpenPackd(const ModelSourceOptions& options) {
  format_ = "packd";
  ASSIGN_OR_RETURN(codec::ContainerReader reader, OpenModelWeights(path_, options.weights));
  container_ = std::make_unique<codec::ContainerReader>(std::move(reader));
  const std::filesystem::path dir =
      std::filesystem::is_directory(path_) ? path_ : path_.parent_path();
  tokenizer_path_ = dir;
  if (std::filesystem::exists(dir / kGgufMetadataFileName)) {
    ASSIGN_OR_RETURN(nlohmann::json meta, ReadJson(dir / kGgufMetadataFileName));
    ASSIGN_OR_RETURN(config_, ParseGgufConfig(meta, (dir / kGgufMetadataFileName).string()));
    scheme_ = NameScheme::kGguf;
  } else {
    ASSIGN_OR_RETURN(nlohmann::json cfg, ReadJson(dir / "config.json"));
    ASSIGN_OR_RETURN(config_, ParseHfConfig(cfg, (dir / "config.json").string()));
    scheme_ = NameScheme::kHuggingFace;
  }
  for (const codec::ManifestTensor& t : container_->tensors()) {
    WeightSource w;
    w.name = t.name;
    w.info = t.info;
    w.codec = t.codec;
    w.stored_bytes = t.encoded_bytes;
    const codec::ComponentViews parts = container_->Components(t);
    if (options.verify_checksums) {
      std::vector<std::span<const uint8_t>> spans;
      for (const auto& [comp, entry] : t.components) spans.push_back(parts.find(comp)->second);
      if (Checksum64(spans) != t.encoded_checksum) {
        return absl::DataLossError(absl::StrCat(container_->label(), ": tensor '", t.name,
                                                "': stored bytes fail their checksum (corrupt "
                                                "file; run `packd verify`)"));
      }
    }
    if (t.codec == "none") {
      ASSIGN_OR_RETURN(w.raw, codec::GetComponent(parts, "none", "raw"));
    } else {
      ASSIGN_OR_RETURN(std::unique_ptr<codec::TensorDecoder> dec, container_->OpenDecoder(t));
      w.decoder = dec.get();
      w.components = parts;
      decoders_.emplace(t.name, std::move(dec));
    }
    stored_bytes_ += t.encoded_bytes;
    original_bytes_ += t.original_bytes;
    tensors_.emplace(t.name, std::move(w));
  }
  return absl::OkStatus();
}

absl::Status ModelSource::OpenCheckpoint(const ModelSourceOptions& options) {
  tokenizer_path_ = path_;
  if (std::filesystem::is_directory(path_)) {
    // The config first: an unsupported model is refused before its weights
    // are even opened.
    ASSIGN_OR_RETURN(nlohmann::json cfg, ReadJson(path_ / "config.json"));
    ASSIGN_OR_RETURN(config_, ParseHfConfig(cfg, (path_ / "config.json").string()));
    scheme_ = NameScheme::kHuggingFace;
    ASSIGN_OR_RETURN(checkpoint_, Checkpoint::Open(path_, options.weights));
  } else {
    ASSIGN_OR_RETURN(checkpoint_, Checkpoint::Open(path_, options.weights));
    const SideFile* meta = nullptr;
    for (const SideFile& f : checkpoint_->side_files()) {
      if (f.name == kGgufMetadataFileName) meta = &f;
    }
    if (meta == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path_.string(), ": not a GGUF file"));
    }
    ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(meta->bytes, path_.string()));
    ASSIGN_OR_RETURN(config_, ParseGgufConfig(j, path_.string()));
    scheme_ = NameScheme::kGguf;
  }
  format_ = std::string(checkpoint_->format());
  for (const SourceTensor& t : checkpoint_->tensors()) {
    WeightSource w;
    w.name = t.name;
    w.info = t.info;
    w.raw = t.data;
    w.stored_bytes = t.data.size();
    stored_bytes_ += t.data.size();
    original_bytes_ += t.data.size();
    tensors_.emplace(t.name, std::move(w));
  }
  return absl::OkStatus();
}

absl::StatusOr<WeightSource> ModelSource::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat(path_.string(), ": the model has no tensor '", std::string(name), "'"));
  }
  if (!IsFloatDType(it->second.info.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_.string(), ": tensor '", std::string(name), "' has dtype ",
                     std::string(codec::DTypeName(it->second.info.dtype)),
                     "; the engine computes from F32, F16 or BF16 weights"));
  }
  return it->second;
}

}  // namespace packd::engine

namespace packd::engine {

std::set<std::string> ModelSource::codecs() const {
  std::set<std::string> out;
  for (const auto& [name, w] : tensors_) out.insert(w.codec);
  return out;
}

absl::StatusOr<std::shared_ptr<const ModelText>> ModelSource::Text(
    const std::filesystem::path& chat_template_file) const {
  // Loaded under the lock: concurrent first calls read the files once.
  absl::MutexLock lock(&text_mu_);
  if (auto it = texts_.find(chat_template_file); it != texts_.end()) return it->second;
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelText> text, LoadModelText(*this, chat_template_file));
  texts_.emplace(chat_template_file, text);
  return text;
}

}  // namespace packd::engine
