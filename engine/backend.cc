#include "engine/backend.h"

#include "absl/strings/str_cat.h"

namespace packd::engine {

std::string_view MemoryKindName(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kWeights:
      return "weights";
    case MemoryKind::kKvCache:
      return "kv_cache";
    case MemoryKind::kWorkspace:
      return "workspace";
    case MemoryKind::kDecodeScratch:
      return "decode_scratch";
  }
  return "?";
}

absl::Status CheckWeightSource(std::string_view backend, const WeightSource& s) {
  const std::string what = absl::StrCat(std::string(backend), ": weight '", s.name, "'");
  const codec::DType t = s.info.dtype;
  if (t != codec::DType::kF32 && t != codec::DType::kF16 && t != codec::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " has dtype ", std::string(codec::DTypeName(t)), "; F32, F16 or BF16 expected"));
  }
  if ((s.decoder == nullptr) == s.raw.empty() && s.info.elements() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " needs exactly one of raw bytes or a decoder"));
  }
  if (s.decoder == nullptr && s.raw.size() != s.info.bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " has ", s.raw.size(),
                                                   " bytes; its shape needs ", s.info.bytes()));
  }
  return absl::OkStatus();
}

}  // namespace packd::engine
