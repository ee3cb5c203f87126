// The Tokenizer behind every loader: BPE over a BpeModel (see bpe_model.h
// and TOKENIZERS.md).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

// Validates `model` (sizes, ids in range, every merge's pieces in the
// vocabulary, the byte tokens the family needs) and builds the tokenizer.
// Errors name model.label. The result is immutable and thread-safe.
absl::StatusOr<std::unique_ptr<Tokenizer>> NewBpeTokenizer(BpeModel model);

}  // namespace packd::engine
