// Rounding sizes and offsets to an alignment.
#pragma once

#include <cstdint>

namespace packd {

// n rounded up to a multiple of `alignment` (> 0). The caller keeps n small
// enough not to overflow (n + alignment - 1 <= UINT64_MAX).
constexpr uint64_t RoundUp(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// n rounded down to a multiple of `alignment` (> 0).
constexpr uint64_t RoundDown(uint64_t n, uint64_t alignment) { return n / alignment * alignment; }

}  // namespace packd
