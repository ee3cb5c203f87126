#include "base/status_macros.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace packd::engine {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool include_special)
    : tokenizer_(tokenizer), include_special_(include_special) {}

absl::StatusOr<std::string> IncrementalDecoder::Push(TokenId id) {
  // Leading tokens that show nothing yet are held and decoded together:
  // Decode() treats the start of the text specially (spm drops the first
  // token's dummy-prefix space; a Strip decoder may strip across tokens).
  // Past kMaxLeading such tokens the start is taken as settled.
  constexpr size_t kMaxLeading = 256;
  std::string bytes;
  if (first_) {
    leading_.push_back(id);
    ASSIGN_OR_RETURN(bytes, tokenizer_.Decode(leading_, include_special_));
    if (bytes.empty() && leading_.size() < kMaxLeading) return std::string();
    first_ = false;
    leading_.clear();
  } else {
    ASSIGN_OR_RETURN(bytes, tokenizer_.TokenBytes(id, include_special_));
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
