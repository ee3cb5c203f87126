#include "base/checksum.h"

#include "absl/strings/str_format.h"
#include "xxhash.h"

namespace packd {

uint64_t Checksum64(std::span<const uint8_t> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

uint64_t Checksum64(const std::vector<std::span<const uint8_t>>& parts) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  for (std::span<const uint8_t> p : parts) XXH3_64bits_update(state, p.data(), p.size());
  const uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return sum;
}

std::string ChecksumHex(uint64_t sum) { return absl::StrFormat("%016x", sum); }

bool ParseChecksumHex(std::string_view hex, uint64_t* sum) {
  if (hex.size() != 16) return false;
  uint64_t v = 0;
  for (char c : hex) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *sum = v;
  return true;
}

}  // namespace packd
