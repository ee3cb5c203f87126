// Unicode normalization forms (NFC, NFD, NFKC, NFKD) through ICU, for
// tokenizer.json normalizers such as Qwen2's NFC.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace packd::engine {

enum class UnicodeForm { kNone, kNfc, kNfd, kNfkc, kNfkd };

// `text` (valid UTF-8) in the given form; kNone returns it unchanged.
absl::StatusOr<std::string> NormalizeUnicode(UnicodeForm form, std::string_view text);

}  // namespace packd::engine
