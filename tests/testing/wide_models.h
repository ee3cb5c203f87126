// Test helper: the synthesized `wide` model and its compressed copies.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace packd::testing {

// The `wide` BF16 shape (engine/synth.h: rows as wide as the codecs' tiles,
// so compressed matmuls take the split kernels) synthesized into dir/raw,
// and its vlc and tiled copies in dir/vlc and dir/tiled.
struct WideModels {
  std::filesystem::path raw;
  std::vector<std::pair<std::string, std::filesystem::path>> packed;  // codec, dir
};

// Writes them (2 threads). Failures are recorded as gtest failures (the
// paths are then unusable).
WideModels MakeWideModels(const std::filesystem::path& dir);

}  // namespace packd::testing
