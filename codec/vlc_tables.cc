#include "codec/vlc_tables.h"

#include <array>

namespace packd::codec {
namespace {

uint32_t ReverseBits(uint32_t v, int n) {
  uint32_t r = 0;
  for (int i = 0; i < n; ++i) r |= ((v >> i) & 1u) << (n - 1 - i);
  return r;
}

}  // namespace

std::vector<uint32_t> VlcCanonicalStreamCodes(std::span<const uint8_t> lengths) {
  std::array<uint32_t, kVlcTableBits + 2> count{}, next{};
  for (uint8_t l : lengths) ++count[l];
  count[0] = 0;
  uint32_t code = 0;
  for (int bits = 1; bits <= kVlcTableBits; ++bits) {
    code = (code + count[bits - 1]) << 1;
    next[bits] = code;
  }
  std::vector<uint32_t> codes(lengths.size(), 0);
  for (size_t s = 0; s < lengths.size(); ++s) {
    if (lengths[s] != 0) codes[s] = ReverseBits(next[lengths[s]]++, lengths[s]);
  }
  return codes;
}

void BuildVlcDecodeTables(std::span<const uint8_t> lengths, std::span<uint64_t> multi,
                          std::span<uint16_t> single) {
  const std::vector<uint32_t> codes = VlcCanonicalStreamCodes(lengths);
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int l = lengths[s];
    if (l == 0) continue;
    for (uint32_t hi = 0; hi < (1u << (kVlcTableBits - l)); ++hi) {
      single[codes[s] | (hi << l)] = static_cast<uint16_t>(s | (l << 8));
    }
  }
  for (uint32_t i = 0; i < kVlcTableSize; ++i) {
    uint64_t symbols = 0;
    uint32_t bits = 0, n = 0;
    while (n < 4) {
      const uint32_t s = single[i >> bits];
      const uint32_t l = s >> 8;
      if (bits + l > static_cast<uint32_t>(kVlcTableBits)) break;
      symbols |= uint64_t{s & 0xff} << (8 * n);
      bits += l;
      ++n;
    }
    multi[i] = (symbols << 32) | bits | (uint64_t{n} << 6);
  }
}

void BuildVlcRansSlots(std::span<const uint16_t> freq, std::span<uint32_t> slots) {
  uint32_t start = 0;
  for (size_t s = 0; s < freq.size(); ++s) {
    for (uint32_t j = 0; j < freq[s]; ++j) {
      slots[start + j] = static_cast<uint32_t>(s) | uint32_t{freq[s]} << 8 | j << 20;
    }
    start += freq[s];
  }
}

}  // namespace packd::codec
