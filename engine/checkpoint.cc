#include "engine/checkpoint.h"

#include "absl/strings/str_cat.h"
#include "engine/gguf_checkpoint.h"
#include "engine/hf_checkpoint.h"
#include "engine/model_directory.h"

namespace packd::engine {

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::filesystem::path& path,
                                                             FileAccess access) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // A packd directory's container reads as safetensors of encoded bytes:
    // taken for a checkpoint it would be "compressed" into garbage.
    if (std::filesystem::exists(path / kWeightsFileName, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path.string(), ": is a packd model directory (it has ", kWeightsFileName,
          "), not a source checkpoint; compress the Hugging Face directory or GGUF file it "
          "was made from"));
    }
    return OpenHfCheckpoint(path, access);
  }
  if (std::filesystem::is_regular_file(path, ec)) return OpenGgufCheckpoint(path, access);
  return absl::NotFoundError(absl::StrCat(
      path.string(), ": no such checkpoint (want a Hugging Face directory or a GGUF file)"));
}

}  // namespace packd::engine
