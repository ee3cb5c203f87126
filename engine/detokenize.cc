#include "engine/detokenize.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/tokenizer/utf8.h"

namespace packd::engine {

absl::StatusOr<std::string> Detokenize(const Tokenizer& tokenizer, const std::vector<TokenId>& ids,
                                       bool include_special, std::string_view field) {
  const int vocab = tokenizer.vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(std::string(field), "[", i, "]: ", ids[i],
                                                     " is outside the vocabulary (ids 0 to ",
                                                     vocab - 1, ")"));
    }
  }
  ASSIGN_OR_RETURN(std::string bytes, tokenizer.Decode(ids, include_special));
  return ReplaceInvalidUtf8(bytes);
}

}  // namespace packd::engine
