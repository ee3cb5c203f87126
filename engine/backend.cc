#include "engine/backend.h"

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

}  // namespace packd::engine
