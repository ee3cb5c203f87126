// Test helper: a GGUF model rewritten with BF16 or F16 tensors.
#pragma once

#include <filesystem>

#include "codec/dtype.h"

namespace packd::testing {

// Rewrites the Llama GGUF `src` (F32 tensors, e.g. stories260K) into
// dir/<src stem>-bf16.gguf or -f16.gguf with every tensor rounded to `dtype`
// (kBF16 or kF16, round to nearest even), the same hyperparameters and the
// same tokenizer; returns its path. Failures are recorded as gtest failures
// (the returned file is then unusable).
std::filesystem::path HalfPrecisionGguf(const std::filesystem::path& src,
                                        const std::filesystem::path& dir, codec::DType dtype);

}  // namespace packd::testing
