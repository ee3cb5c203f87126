#include "engine/checkpoint.h"

#include "absl/strings/str_cat.h"
#include "engine/gguf_checkpoint.h"
#include "engine/hf_checkpoint.h"

namespace packd::engine {

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return OpenHfCheckpoint(path);
  if (std::filesystem::is_regular_file(path, ec)) return OpenGgufCheckpoint(path);
  return absl::NotFoundError(absl::StrCat(
      path.string(), ": no such checkpoint (want a Hugging Face directory or a GGUF file)"));
}

}  // namespace packd::engine
