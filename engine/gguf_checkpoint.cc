#include "engine/gguf_checkpoint.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/gguf.h"
#include "engine/model_directory.h"
#include "nlohmann/json.hpp"

namespace packd::engine {

namespace {

class GgufCheckpoint final : public Checkpoint {
 public:
  explicit GgufCheckpoint(GgufFile file) : file_(std::move(file)) {}
  std::string_view format() const override { return "gguf"; }
  const std::vector<SourceTensor>& tensors() const override { return tensors_; }
  const std::vector<SideFile>& side_files() const override { return side_files_; }
  std::string source_json() const override {
    return nlohmann::json{
        {"format", "gguf"}, {"files", {file_.label()}}, {"version", file_.version()}}
        .dump();
  }

  GgufFile file_;
  std::vector<SourceTensor> tensors_;
  std::vector<SideFile> side_files_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> OpenGgufCheckpoint(const std::filesystem::path& path,
                                                               FileAccess access) {
  ASSIGN_OR_RETURN(GgufFile file, GgufFile::Open(path, access));
  auto ckpt = std::make_unique<GgufCheckpoint>(std::move(file));
  const GgufFile& f = ckpt->file_;
  for (const GgufTensor& t : f.tensors()) {
    ASSIGN_OR_RETURN(std::span<const uint8_t> data, f.Data(t));  // errors name the tensor/type
    ASSIGN_OR_RETURN(codec::DType dtype, f.TensorDType(t));
    ckpt->tensors_.push_back({t.name, codec::TensorInfo{dtype, t.shape}, data, f.label()});
  }
  std::sort(ckpt->tensors_.begin(), ckpt->tensors_.end(),
            [](const SourceTensor& a, const SourceTensor& b) { return a.name < b.name; });
  ASSIGN_OR_RETURN(nlohmann::json config, f.HuggingFaceConfig());
  ckpt->side_files_.push_back({"config.json", config.dump(2) + "\n"});
  ckpt->side_files_.push_back({kGgufMetadataFileName, f.MetadataToJson().dump() + "\n"});
  return ckpt;
}

}  // namespace packd::engine
