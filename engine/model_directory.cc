#include "engine/model_directory.h"

#include "absl/strings/str_cat.h"

namespace packd::engine {

absl::StatusOr<std::filesystem::path> ResolveWeightsFile(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const std::filesystem::path weights = path / kWeightsFileName;
    if (!std::filesystem::exists(weights, ec)) {
      return absl::NotFoundError(absl::StrCat(path.string(), " has no ", kWeightsFileName,
                                              ": not a packd model directory (make one with "
                                              "`packd compress`)"));
    }
    return weights;
  }
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": no such file or directory"));
  }
  return path;
}

absl::StatusOr<codec::ContainerReader> OpenModelWeights(const std::filesystem::path& path,
                                                        FileAccess access) {
  absl::StatusOr<std::filesystem::path> weights = ResolveWeightsFile(path);
  if (!weights.ok()) return weights.status();
  return codec::ContainerReader::Open(*weights, access);
}

}  // namespace packd::engine
