// `packd compress`: a source checkpoint -> a self-contained packd model directory
// (DESIGN.md §3): config.json, tokenizer files and model.packd.safetensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codec/tensor_codec.h"
#include "engine/model_directory.h"

namespace packd::engine {

struct CompressProgress {
  uint64_t tensors_done, tensors_total;
  uint64_t bytes_done, bytes_total;  // original bytes
  std::string_view tensor;           // the tensor just finished
};

struct CompressOptions {
  std::string codec = "vlc";                              // "vlc", "tiled" or "none"
  int threads = 0;                                        // <= 0: all hardware threads
  std::function<void(const CompressProgress&)> progress;  // called after each tensor
};

struct TensorReport {
  std::string name;
  codec::TensorInfo info;
  std::string codec;  // what was stored: the requested codec, or "none"
  uint64_t original_bytes = 0;
  uint64_t encoded_bytes = 0;
  std::optional<double> entropy_bound;  // bits/weight, float tensors only
};

struct CompressReport {
  std::vector<TensorReport> tensors;
  uint64_t original_bytes() const;
  uint64_t encoded_bytes() const;
  // Over the float tensors only: weights, bits/weight and order-0 bound.
  uint64_t float_weights() const;
  double float_bits_per_weight() const;
  double float_entropy_bound() const;
};

// Compresses `src` (HF directory or GGUF file) into the directory `dst`, which
// must not exist or be empty. The directory is assembled under a temporary
// sibling name and renamed into place only when complete (and every file in it
// fsynced), so an interrupted run never leaves a `dst` that loads.
// A tensor the codec cannot code, or that does not shrink, is stored raw.
absl::StatusOr<CompressReport> CompressModel(const std::filesystem::path& src,
                                             const std::filesystem::path& dst,
                                             const CompressOptions& options);

}  // namespace packd::engine
