// vlc mode 3, "interleaved" (codec/FORMAT.md §4): a prefix code of at most 7
// bits over a tensor's 15 most useful exponents plus an escape code, each
// tile written as 32 interleaved lane streams so that the 32 16-bit lanes of
// an AVX-512 register decode 32 consecutive elements per step: element j of
// a tile is lane j mod 32's (j / 32)-th symbol. A 7-bit peek indexes a 128-entry table
// (two byte shuffles on AVX-512, no gather); an escaped exponent follows its
// escape code as 8 raw bits in the lane's own stream. The lanes refill a byte
// at a time, in lane order, from one shared byte stream per tile.
//
// Used by codec/vlc_codec.cc (the decoder behind TensorDecoder) and by the
// CPU matmul (engine/cpu/split_gemm_avx512.cc), which runs the same step in
// registers, fused with the multiply.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace packd::codec {

inline constexpr int kVlcLanes = 32;
inline constexpr int kVlcInterleavedMaxLen = 7;
inline constexpr int kVlcInterleavedPeek = 128;       // 2^kVlcInterleavedMaxLen
inline constexpr int kVlcInterleavedMaxSymbols = 15;  // coded exponents, + escape
inline constexpr uint8_t kVlcEscapeIndex = 15;
// A tile's last kVlcOnDemandSteps steps refill on demand (a lane takes a
// byte only when its code does not fit), so lanes end with few unused bits;
// earlier steps refill ahead (cheaper: no second peek). FORMAT.md §4.
inline constexpr uint32_t kVlcOnDemandSteps = 4;
inline uint32_t VlcFirstOnDemandStep(uint32_t steps) {
  return steps > kVlcOnDemandSteps ? steps - kVlcOnDemandSteps : 0;
}
// Bytes after the last tile that a decoder may load (32 per refill load).
inline constexpr uint64_t kVlcInterleavedPadding = 32;

// The decode tables of an interleaved code, built from the header.
struct VlcInterleavedCode {
  // entry[v], v = a lane's next 7 stream bits (LSB-first): the code length
  // (bits 0-2, 1..7) | the symbol index << 3 (0..14 for exps[index], 15 for
  // the escape code). Complete: every v decodes.
  alignas(64) uint8_t entry[kVlcInterleavedPeek] = {};
  // exps[i]: the exponent of symbol index i (coded exponents ascending);
  // exps[15] and unused entries are 0.
  alignas(16) uint8_t exps[16] = {};
  bool has_escape = false;
};

// From the header's code lengths (one per exponent of the alphabet, 0 = not
// coded, i.e. escaped) and the escape code's length (0 = none): DataLoss text
// unless lengths <= 7, 1..15 coded exponents (+ escape) are at least 2
// codes, and the code is complete (Kraft sum exactly 1). Canonical order:
// the coded exponents ascending, then the escape.
absl::StatusOr<VlcInterleavedCode> MakeVlcInterleavedCode(std::span<const uint8_t> lengths,
                                                          int escape_len);

// The encoder's choice for an exponent histogram with >= 2 distinct values:
// the code over the N most frequent exponents (N <= 15, the others escaped)
// and lengths <= 7 that gives the fewest bits (codes + 8 per escape).
struct VlcInterleavedLengths {
  std::vector<uint8_t> lengths;  // per exponent, 0 = escaped
  int escape_len = 0;            // 0: every exponent is coded
  double bits = 0;               // codes + escape bytes, in bits (no lane overhead)
};
VlcInterleavedLengths ChooseVlcInterleavedLengths(std::span<const uint64_t> counts);

// Appends the stream of a tile of n exponents to `out` (FORMAT.md §4,
// "Mode 3"). `lengths`/`escape_len` as for MakeVlcInterleavedCode.
class VlcInterleavedEncoder {
 public:
  VlcInterleavedEncoder(std::span<const uint8_t> lengths, int escape_len);
  void EncodeTile(const uint8_t* exps, uint32_t n, std::vector<uint8_t>& out) const;

 private:
  std::vector<uint32_t> code_;  // stream code (LSB-first) per exponent
  std::vector<uint8_t> len_;    // 0: escaped
  uint32_t escape_code_ = 0;
  int escape_len_ = 0;
};

// Decodes a tile's n exponents from stream bytes [begin, end) (at least
// kVlcInterleavedPadding readable bytes must follow `end`) into exps. False
// when the stream does not hold exactly the tile: it ends early (no read then
// goes beyond end + 32) or bytes are left over. `avx512`: the AVX-512 kernel
// (the caller checked the CPU: VlcInterleavedAvx512Supported()), else scalar;
// both give the same result.
bool DecodeVlcInterleavedTile(const VlcInterleavedCode& code, const uint8_t* begin,
                              const uint8_t* end, uint32_t n, uint8_t* exps, bool avx512);
bool VlcInterleavedAvx512Supported();

// DecodeVlcInterleavedTile for 4 tiles of n exponents each, the AVX-512
// kernel stepping them in lockstep (4 independent dependency chains); ok[i]
// as that function's result for tile i.
void DecodeVlcInterleavedTiles4(const VlcInterleavedCode& code, const uint8_t* const begin[4],
                                const uint8_t* const end[4], uint32_t n, uint8_t* const exps[4],
                                bool avx512, bool ok[4]);

}  // namespace packd::codec
