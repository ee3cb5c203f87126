// Token ids back to text for a client (the Detokenize RPC, `packd tokenize
// --decode`): Hugging Face's decode, made safe to put in a proto string or
// JSON.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

// Tokenizer::Decode(ids, include_special) (special tokens included as the
// text they spell when include_special, as Hugging Face's decode does by
// default), with each maximal invalid UTF-8 subpart replaced by U+FFFD: the
// result is always valid UTF-8, also when the ids end inside a character.
// An id outside [0, vocab_size) is InvalidArgument naming `field`, the index
// and the id: "token_ids[2]: 99999 is outside the vocabulary (ids 0 to 511)".
absl::StatusOr<std::string> Detokenize(const Tokenizer& tokenizer, const std::vector<TokenId>& ids,
                                       bool include_special, std::string_view field);

}  // namespace packd::engine
