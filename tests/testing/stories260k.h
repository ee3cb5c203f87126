// Test helpers around the stories260K model in ../shared: the llama2.c
// reference run's token ids, and running a model position by position.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "base/file.h"
#include "engine/backend.h"

namespace packd::testing {

// Positions of the llama2.c reference run (its logits file has this many rows).
inline constexpr int kStoriesPositions = 64;
// The reference prompt ("Once upon a time", with BOS) and the 60 greedy
// tokens llama2.c generates from it.
const std::vector<int32_t>& StoriesPromptIds();
const std::vector<int32_t>& StoriesExpectedIds();
// The reference's 64 inputs: the prompt, then its own greedy tokens.
std::vector<int32_t> StoriesReferenceInputs();

// Runs `model` over `inputs` as one sequence on `backend`, `chunk` tokens
// per Transformer::Forward, and returns the logits at every position,
// [positions][vocab], its weight files held as `access` says. Failures are
// recorded as gtest failures (the result is then empty).
std::vector<float> RunLogits(engine::Backend& backend, const std::filesystem::path& model,
                             const std::vector<int32_t>& inputs, int64_t chunk,
                             FileAccess access = FileAccess::kMapped);

}  // namespace packd::testing
