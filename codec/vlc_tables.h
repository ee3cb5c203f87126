// The "vlc" codec's decode tables (codec/FORMAT.md §4), built from a tensor's
// header: the CPU decoder (codec/vlc_codec.cc) and the device image
// (codec/cuda/device_image.cc) use the very same entries, so they are built
// here once.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace packd::codec {

// Bits one multi-symbol table lookup consumes at most, and its entries.
inline constexpr int kVlcTableBits = 11;
inline constexpr uint32_t kVlcTableSize = 1u << kVlcTableBits;
// rANS: frequencies sum to 2^kVlcRansPrecision.
inline constexpr int kVlcRansPrecision = 12;
inline constexpr uint32_t kVlcRansTotal = 1u << kVlcRansPrecision;

// Lengths of an optimal prefix code with no code longer than `limit` for the
// symbols with nonzero counts (package-merge; Larmore & Hirschberg 1990).
// Requires 2 <= nonzero symbols <= 2^limit. The result is a complete code
// (Kraft sum exactly 1), which the decoders rely on: every table index then
// decodes to a symbol.
std::vector<uint8_t> VlcLimitedCodeLengths(std::span<const uint64_t> counts, int limit);

// Canonical codes (the DEFLATE rule): shorter codes first, codes of one length
// consecutive in symbol order. Returns each symbol's code bit-reversed, i.e.
// as it is laid out LSB-first in the stream (first code bit = lowest bit).
// `lengths` (<= kVlcTableBits, 0: unused symbol) must describe a prefix code.
std::vector<uint32_t> VlcCanonicalStreamCodes(std::span<const uint8_t> lengths);

// From the code lengths of a complete prefix code (lengths <= kVlcTableBits):
// single[i]: the first symbol that the next kVlcTableBits stream bits (i,
//   LSB-first) determine (bits 0-7) and its length (bits 8-11);
// multi[i]: every symbol those bits fully determine, up to 4: bits 0-3 the
//   bits they use, bits 6-8 how many (1..4), bits 32-63 the symbols (first in
//   the low byte). The length sits in the low bits so that the shift that
//   consumes it (which masks its count to 6 bits) takes the entry as is.
// Both spans hold kVlcTableSize entries.
void BuildVlcDecodeTables(std::span<const uint8_t> lengths, std::span<uint64_t> multi,
                          std::span<uint16_t> single);

// The kVlcRansTotal rANS slots from frequencies summing to kVlcRansTotal
// (each < kVlcRansTotal): slot = symbol | freq << 8 | (slot - start) << 20.
void BuildVlcRansSlots(std::span<const uint16_t> freq, std::span<uint32_t> slots);

}  // namespace packd::codec
