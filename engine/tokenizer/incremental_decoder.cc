#include "base/status_macros.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace packd::engine {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool include_special)
    : tokenizer_(tokenizer), include_special_(include_special) {}

absl::StatusOr<std::string> IncrementalDecoder::Push(TokenId id) {
  ASSIGN_OR_RETURN(std::string bytes, tokenizer_.TokenBytes(id, include_special_));
  if (first_) {
    // Decode() treats the first token with visible bytes specially (spm drops
    // its dummy-prefix space); decoding that token alone applies the same rule.
    ASSIGN_OR_RETURN(const std::string visible, tokenizer_.TokenBytes(id, false));
    if (!visible.empty()) {
      first_ = false;
      ASSIGN_OR_RETURN(bytes, tokenizer_.Decode({id}, include_special_));
    } else if (!bytes.empty()) {
      first_ = false;  // a special token shown first: the next token does not start the text
    }
  }
  pending_.append(bytes);
  std::string out;
  const size_t held = AppendValidUtf8(pending_, &out);
  pending_.erase(0, pending_.size() - held);
  return out;
}

std::string IncrementalDecoder::Flush() {
  std::string out = ReplaceInvalidUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace packd::engine
