#include "engine/tokenizer/unicode_normalizer.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>

#include "absl/strings/str_cat.h"

namespace packd::engine {
namespace {

absl::Status IcuError(std::string_view what, UErrorCode code) {
  return absl::InternalError(
      absl::StrCat("Unicode normalization: ", std::string(what), " failed: ", u_errorName(code)));
}

}  // namespace

absl::StatusOr<std::string> NormalizeUnicode(UnicodeForm form, std::string_view text) {
  if (form == UnicodeForm::kNone || text.empty()) return std::string(text);
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* normalizer = nullptr;
  switch (form) {
    case UnicodeForm::kNfc:
      normalizer = unorm2_getNFCInstance(&status);
      break;
    case UnicodeForm::kNfd:
      normalizer = unorm2_getNFDInstance(&status);
      break;
    case UnicodeForm::kNfkc:
      normalizer = unorm2_getNFKCInstance(&status);
      break;
    case UnicodeForm::kNfkd:
      normalizer = unorm2_getNFKDInstance(&status);
      break;
    case UnicodeForm::kNone:
      break;
  }
  if (U_FAILURE(status) || normalizer == nullptr) return IcuError("loading the normalizer", status);

  // UTF-8 -> UTF-16 -> normalized UTF-16 -> UTF-8.
  std::vector<UChar> utf16(text.size() + 1);
  int32_t utf16_length = 0;
  u_strFromUTF8(utf16.data(), static_cast<int32_t>(utf16.size()), &utf16_length, text.data(),
                static_cast<int32_t>(text.size()), &status);
  if (U_FAILURE(status)) return IcuError("UTF-8 decoding", status);

  std::vector<UChar> normalized(static_cast<size_t>(utf16_length) * 3 + 16);
  int32_t normalized_length =
      unorm2_normalize(normalizer, utf16.data(), utf16_length, normalized.data(),
                       static_cast<int32_t>(normalized.size()), &status);
  if (status == U_BUFFER_OVERFLOW_ERROR) {
    status = U_ZERO_ERROR;
    normalized.resize(static_cast<size_t>(normalized_length));
    normalized_length = unorm2_normalize(normalizer, utf16.data(), utf16_length, normalized.data(),
                                         static_cast<int32_t>(normalized.size()), &status);
  }
  if (U_FAILURE(status)) return IcuError("normalization", status);

  std::string out(static_cast<size_t>(normalized_length) * 3, '\0');
  int32_t out_length = 0;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &out_length, normalized.data(),
              normalized_length, &status);
  if (U_FAILURE(status)) return IcuError("UTF-8 encoding", status);
  out.resize(static_cast<size_t>(out_length));
  return out;
}

}  // namespace packd::engine
