// The per-thread decode logic of the device decoders, as host+device inline
// functions: the CUDA kernels (tiled_decode.cu, vlc_decode.cu) call them for
// their thread's work item, and device_image_test.cc calls the very same
// functions in a host loop over all work items, comparing the result bit for
// bit with the CPU codec. All bit layouts are those of codec/FORMAT.md §3-§5.
//
// Work items (DecodePlan::items, PlanRows below) and what each writes:
//   tiled:        item = 32 * (tile - t_first) + lane; a warp per tile, lane
//                 k decodes elements [8k, 8k + 8) of each 256-element chunk
//                 of its tile (so a warp's stores are contiguous);
//   vlc Huffman,
//   vlc rANS:     item = tile - t_first; one thread decodes a tile's
//                 bitstream serially (tiles are independent streams);
//   vlc constant: item = 8-element slot - slot_first.
// An item writes exactly the elements of its part that lie in the plan's
// range [e_begin, e_end), element e to out + (e - e_begin) * elem_bytes, and
// nothing else; items never write the same byte. `out` must be aligned to
// elem_bytes (DecodeRows checks it).
//
// Memory safety: the image was validated on the host (DeviceImage::Build), so
// tables and offsets are consistent; the code bits themselves are not fully
// validated there (vlc), and every read derived from them is clamped (to the
// tile's escapes, its stream, or the stream's end plus the peek window inside
// the image), so corrupt bits decode to wrong values (caught by the container
// checksum), never to an out-of-bounds access.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "codec/cuda/device_image_layout.h"

// Host+device functions (plain inline functions without nvcc).
#ifndef PACKD_HD
#if defined(__CUDACC__)
#define PACKD_HD __host__ __device__
#else
#define PACKD_HD
#endif
#endif

namespace packd::codec::cuda {

// ---- Memory access. Aligned loads and stores of the width named (the
// callers guarantee the alignment); on the device through the read-only cache.
// On the host (tests) a misaligned access traps, as it faults on a GPU.

PACKD_HD inline void CheckAligned(const void* p, uintptr_t alignment) {
#if !defined(__CUDA_ARCH__)
  if ((reinterpret_cast<uintptr_t>(p) & (alignment - 1)) != 0) __builtin_trap();
#endif
}

// An aligned load of a T (uint16_t, uint32_t or uint64_t) at p. kNc: through
// the read-only cache, which only global memory may use (kNc = false also
// reads shared memory, through a generic pointer).
template <class T, bool kNc = true>
PACKD_HD inline T LoadAligned(const uint8_t* p) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8);
#if defined(__CUDA_ARCH__)
  if constexpr (kNc) {
    // __ldg's overloads are for the unsigned built-in types of each width.
    using U =
        std::conditional_t<sizeof(T) == 2, unsigned short,
                           std::conditional_t<sizeof(T) == 4, unsigned int, unsigned long long>>;
    return static_cast<T>(__ldg(reinterpret_cast<const U*>(p)));
  } else {
    return *reinterpret_cast<const T*>(p);
  }
#else
  CheckAligned(p, sizeof(T));
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
#endif
}

// 16 bytes at a 16-byte aligned p in one vector load (lo: bytes 0-7).
template <bool kNc = true>
PACKD_HD inline void LoadAligned16(const uint8_t* p, uint64_t& lo, uint64_t& hi) {
#if defined(__CUDA_ARCH__)
  ulonglong2 v;
  if constexpr (kNc) {
    v = __ldg(reinterpret_cast<const ulonglong2*>(p));
  } else {
    v = *reinterpret_cast<const ulonglong2*>(p);
  }
  lo = v.x;
  hi = v.y;
#else
  CheckAligned(p, 16);
  std::memcpy(&lo, p, 8);
  std::memcpy(&hi, p + 8, 8);
#endif
}

PACKD_HD inline uint64_t LoadU64(const uint8_t* p) { return LoadAligned<uint64_t>(p); }
PACKD_HD inline uint32_t LoadU32(const uint8_t* p) { return LoadAligned<uint32_t>(p); }

PACKD_HD inline uint32_t LoadU8(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

PACKD_HD inline void StoreU16(uint8_t* p, uint32_t v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<uint16_t*>(p) = static_cast<uint16_t>(v);
#else
  CheckAligned(p, 2);
  const uint16_t w = static_cast<uint16_t>(v);
  std::memcpy(p, &w, 2);
#endif
}

PACKD_HD inline void StoreU32(uint8_t* p, uint32_t v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<uint32_t*>(p) = v;
#else
  CheckAligned(p, 4);
  std::memcpy(p, &v, 4);
#endif
}

// 16 bytes at a 16-byte aligned p: lo then hi, little-endian.
PACKD_HD inline void StoreU128(uint8_t* p, uint64_t lo, uint64_t hi) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<ulonglong2*>(p) = make_ulonglong2(lo, hi);
#else
  CheckAligned(p, 16);
  std::memcpy(p, &lo, 8);
  std::memcpy(p + 8, &hi, 8);
#endif
}

PACKD_HD inline uint32_t Popcount64(uint64_t v) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__popcll(v));
#else
  return static_cast<uint32_t>(std::popcount(v));
#endif
}

PACKD_HD inline uint64_t MinU64(uint64_t a, uint64_t b) { return a < b ? a : b; }

// Bits [0, n) set, n in 0..64.
PACKD_HD inline uint64_t LowMask(uint32_t n) {
  return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
}

#if defined(__CUDACC__)
// The image's vlc table (kVlcTableBytes at `src`) into shared memory by the
// whole block (16-byte loads); the caller syncs before reading it.
__device__ __forceinline__ void CopyVlcTableToShared(const uint8_t* src, uint4* dst) {
  const uint4* s = reinterpret_cast<const uint4*>(src);
  for (uint32_t i = threadIdx.x; i < kVlcTableBytes / sizeof(uint4); i += blockDim.x) {
    dst[i] = __ldg(s + i);
  }
}
#endif

// ---- Elements (FORMAT.md §3).

// sign << (exp_bits + mant_bits) | exponent << mant_bits | mantissa, from the
// exponent field and rest = sign << mant_bits | mantissa.
PACKD_HD inline uint32_t JoinElement(const DeviceImageLayout& L, uint32_t exponent, uint32_t rest) {
  return ((rest >> L.mant_bits) << (L.exp_bits + L.mant_bits)) | (exponent << L.mant_bits) |
         (rest & ((1u << L.mant_bits) - 1));
}

// Element i's rest from the rest plane (rest_bits <= 24 wide at bit
// i * rest_bits, LSB-first); byte loads, none at or past plane_bytes.
PACKD_HD inline uint32_t ReadRest(const uint8_t* plane, uint64_t plane_bytes, uint64_t i,
                                  uint32_t rest_bits) {
  const uint64_t bit = i * rest_bits;
  const uint64_t byte = bit >> 3;
  uint32_t v = 0;
  for (uint32_t b = 0; b < 4; ++b) {
    if (byte + b < plane_bytes) v |= LoadU8(plane + byte + b) << (8 * b);
  }
  return (v >> (bit & 7)) & ((1u << rest_bits) - 1);
}

// Four bytes of x to the low bytes of four 16-bit lanes.
PACKD_HD inline uint64_t SpreadBytes4(uint32_t x) {
  uint64_t v = (x | (uint64_t{x} << 16)) & 0x0000FFFF0000FFFFull;
  return (v | (v << 8)) & 0x00FF00FF00FF00FFull;
}

// Eight bf16 elements from their eight exponents (byte j of exps) and eight
// rest bytes (byte j of rests: sign << 7 | mantissa): elements 0-3 in lo,
// 4-7 in hi, little-endian.
PACKD_HD inline void JoinBF16x8(uint64_t exps, uint64_t rests, uint64_t& lo, uint64_t& hi) {
  for (int half = 0; half < 2; ++half) {
    const uint64_t e = SpreadBytes4(static_cast<uint32_t>(exps >> (32 * half)));
    const uint64_t r = SpreadBytes4(static_cast<uint32_t>(rests >> (32 * half)));
    const uint64_t v = ((r & 0x0080008000800080ull) << 8) | (e << 7) | (r & 0x007F007F007F007Full);
    (half == 0 ? lo : hi) = v;
  }
}

// Writes elements [e0, e0 + count) (count <= 8), element e0 + j having
// exponent byte j of exps, joined with its rest; only those inside
// [e_begin, e_end) are written. bf16 with 8 in-range elements at an 8-aligned
// e0 and a 16-byte aligned destination takes one 8-byte rest load and one
// 16-byte store; anything else goes element by element.
PACKD_HD inline void EmitElements(const DeviceImageLayout& L, const uint8_t* image, uint64_t e0,
                                  uint32_t count, uint64_t exps, uint64_t e_begin, uint64_t e_end,
                                  uint8_t* out) {
  const uint8_t* plane = image + L.rest_offset;
  if (L.elem_bytes == 2 && L.exp_bits == 8 && count == 8 && e0 >= e_begin && e0 + 8 <= e_end &&
      (e0 & 7) == 0) {
    uint8_t* dst = out + (e0 - e_begin) * 2;
    if ((reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
      uint64_t lo, hi;
      JoinBF16x8(exps, LoadU64(plane + e0), lo, hi);
      StoreU128(dst, lo, hi);
      return;
    }
  }
  for (uint32_t j = 0; j < count; ++j) {
    const uint64_t e = e0 + j;
    if (e < e_begin || e >= e_end) continue;
    const uint32_t exponent = static_cast<uint32_t>(exps >> (8 * j)) & 0xff;
    const uint32_t v = JoinElement(L, exponent, ReadRest(plane, L.rest_bytes, e, L.rest_bits));
    uint8_t* dst = out + (e - e_begin) * L.elem_bytes;
    if (L.elem_bytes == 2) {
      StoreU16(dst, v);
    } else {
      StoreU32(dst, v);
    }
  }
}

// ---- Tiles (FORMAT.md §3, codec/tile_grid.h).

struct TileSpan {
  uint64_t row = 0;    // grid row
  uint64_t col = 0;    // tile index within the row
  uint64_t first = 0;  // flat index of the first element
  uint32_t size = 0;   // elements
};

PACKD_HD inline TileSpan TileAt(const DeviceImageLayout& L, uint64_t t) {
  TileSpan s;
  s.row = t / L.tiles_per_row;
  s.col = t - s.row * L.tiles_per_row;
  const uint64_t c0 = s.col * L.tile_cols;
  s.first = s.row * L.grid_cols + c0;
  s.size = static_cast<uint32_t>(MinU64(L.tile_cols, L.grid_cols - c0));
  return s;
}

// The tile holding flat element e < elements.
PACKD_HD inline uint64_t TileOf(const DeviceImageLayout& L, uint64_t e) {
  const uint64_t row = e / L.grid_cols;
  return row * L.tiles_per_row + (e - row * L.grid_cols) / L.tile_cols;
}

// The plan of DecodeRows(row_begin, row_count); the rows must lie inside the
// tensor (CheckDecodeRowsArgs).
PACKD_HD inline DecodePlan PlanRows(const DeviceImageLayout& L, uint64_t row_begin,
                                    uint64_t row_count) {
  DecodePlan p;
  p.e_begin = row_begin * L.tensor_cols;
  p.e_end = p.e_begin + row_count * L.tensor_cols;
  if (p.e_end <= p.e_begin) {
    p.e_end = p.e_begin;
    return p;
  }
  p.t_first = TileOf(L, p.e_begin);
  p.t_count = TileOf(L, p.e_end - 1) + 1 - p.t_first;
  switch (L.kind) {
    case DeviceCodecKind::kTiled:
      p.items = 32 * p.t_count;
      break;
    case DeviceCodecKind::kVlcHuffman:
    case DeviceCodecKind::kVlcRans:
      p.items = p.t_count;
      break;
    case DeviceCodecKind::kVlcConstant:
      p.slot_first = p.e_begin / 8;
      p.items = (p.e_end + 7) / 8 - p.slot_first;
      break;
    case DeviceCodecKind::kVlcLanes:
      p.t_first = row_begin;
      p.t_count = row_count;
      p.items = 32 * row_count;
      break;
  }
  return p;
}

// ---- The lane split of a row (the fused matmul's reduction order,
// fused_math.h, and the vlc lanes layout, vlc_lanes.h, share it): a row is
// a run of kFusedChunk-column chunks, and lane L of a warp takes columns
// [8L, 8L + 8) of each.

inline constexpr uint64_t kFusedChunk = 256;
inline constexpr uint32_t kFusedLanes = 32;
inline constexpr uint32_t kFusedLaneCols = 8;

// Lane `lane`'s first column in chunk c, and how many of its 8 columns lie
// inside a row of k columns (0..8).
PACKD_HD inline uint64_t LaneCol0(uint64_t c, uint32_t lane) {
  return c * kFusedChunk + uint64_t{kFusedLaneCols} * lane;
}
PACKD_HD inline uint32_t LaneValid(uint64_t col0, uint64_t k) {
  return col0 >= k ? 0u : static_cast<uint32_t>(MinU64(kFusedLaneCols, k - col0));
}

PACKD_HD inline uint64_t FusedChunks(uint64_t k) { return (k + kFusedChunk - 1) / kFusedChunk; }

// ---- tiled (FORMAT.md §5, format version 2).
//
// A group's 64 codes are 32 bytes: byte j holds the code of element j in its
// low nibble and that of element 32 + j in its high nibble. Lane gl (0..7) of
// a group takes elements [8 * gl, 8 * gl + 8): its codes are the low (gl < 4)
// or high (gl >= 4) nibbles of the group's u64 word gl % 4, so one load, a
// shift and a mask give all 8, one per byte (TiledLaneCodes).

inline constexpr uint64_t kEveryByte = 0x0101010101010101ull;   // bit 0 of each byte
inline constexpr uint64_t kLowNibbles = 0x0f0f0f0f0f0f0f0full;  // bits 0-3 of each byte

// Group lane gl's codes from the group's word gl % 4: byte j is the code of
// element 8 * gl + j of the group.
PACKD_HD inline uint64_t TiledLaneCodes(uint64_t word, uint32_t gl) {
  return (word >> (4 * (gl / 4))) & kLowNibbles;
}

// Bit 0 of byte j set iff byte j of `codes` (a code, 0..15, per byte) is not
// 0: c + 15 reaches bit 4 iff c >= 1, and never carries out of its byte.
PACKD_HD inline uint64_t TiledNonZeroCodes(uint64_t codes) {
  return ((codes + kLowNibbles) >> 4) & kEveryByte;
}

// Bit 4n set iff nibble n (0..15) of w is not 0: the nibble's four bits ORed
// into its bit 0 (the shifts bring the next nibble's bits only into bits 1-3).
PACKD_HD inline uint64_t NonZeroNibbles(uint64_t w) {
  uint64_t t = w | (w >> 1);
  t |= t >> 2;
  return t & 0x1111111111111111ull;
}

// Bits 0..gl-1 of every byte (gl in 0..7): in TiledEscapeMask's bit order,
// the lanes before lane gl. Each byte is 2^gl - 1, so nothing borrows.
PACKD_HD inline uint64_t LanesBelow(uint32_t gl) { return (kEveryByte << gl) - kEveryByte; }

// The first `valid` (0..64) elements of a group in TiledEscapeMask's bit
// order: bit 8j + gl for each element 8 * gl + j < valid.
PACKD_HD inline uint64_t TiledValidMask(uint32_t valid) {
  if (valid >= kTiledGroup) return ~uint64_t{0};
  const uint32_t full_lanes = valid / 8;  // 0..7
  return (kEveryByte * ((1u << full_lanes) - 1)) |
         ((kEveryByte & LowMask(8 * (valid % 8))) << full_lanes);
}

// The escapes of a group whose 32 code bytes are the little-endian words
// w0..w3: bit 8j + gl is set iff element 8 * gl + j lies below `valid` (the
// group's element count, 1..64) and its code is 0. Padding codes (elements
// at or past `valid`) are never escapes.
//
// The bit order is lane-interleaved: FORMAT.md's esc_g (bit k for element k)
// transposed as an 8x8 bit matrix. It is what the nibble layout gives in a
// few word operations — nibble 2j of word i is element 8i + j (lane i),
// nibble 2j + 1 element 32 + 8i + j (lane 4 + i), so word i's nibble flags
// shifted by i land on bits 8j + i and 8j + 4 + i — and what a lane wants:
// lane gl's escapes are bit gl of every byte, those of the lanes before it
// the bits below gl (TiledEscapesBefore). Element order would cost an 8x8
// bit transpose per group that no reader needs; counts (popcounts) are the
// same in either order.
PACKD_HD inline uint64_t TiledEscapeMask(uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3,
                                         uint32_t valid) {
  const uint64_t non_zero = NonZeroNibbles(w0) | (NonZeroNibbles(w1) << 1) |
                            (NonZeroNibbles(w2) << 2) | (NonZeroNibbles(w3) << 3);
  return ~non_zero & TiledValidMask(valid);
}

// How many escapes of a TiledEscapeMask lie in the lanes before gl (the
// elements before 8 * gl).
PACKD_HD inline uint32_t TiledEscapesBefore(uint64_t mask, uint32_t gl) {
  return Popcount64(mask & LanesBelow(gl));
}

// Bit 0 of byte j of `flags` (whose other bits are 0) to bit j: the
// multiply puts byte j's bit at bit 56 + j, and its other partial products on
// distinct bits, so nothing carries.
PACKD_HD inline uint32_t ByteFlagBits(uint64_t flags) {
  return static_cast<uint32_t>((flags * 0x0102040810204080ull) >> 56);
}

// Index of the lowest set bit of a non-zero word.
PACKD_HD inline uint32_t LowestBit(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__ffs(static_cast<int>(v)) - 1);
#else
  return static_cast<uint32_t>(std::countr_zero(v));
#endif
}

// The exponents of a lane's up to 8 elements, byte j for element j, from
// their codes (byte j: element j's code, TiledLaneCodes) and escapes (bit j:
// element j is an escape), the first escape being escapes[index]. A code c
// in 1..15 gives window_base + c - 1; an escape gives its byte, in order; a
// 0 that is not an escape (padding) gives window_base, for an element nobody
// stores. Escape reads stop at esc_end (the tile's end: a consistent tile
// never reaches it) and give 0 past it.
PACKD_HD inline uint64_t TiledLaneExponents(uint64_t codes, uint32_t escape_bits,
                                            uint32_t window_base, const uint8_t* escapes,
                                            uint32_t index, uint32_t esc_end) {
  // c - (c != 0) + base per byte: never below 0, never above 255 (base <=
  // 2^exp_bits - 15, checked by OpenDecoder), so no carry crosses a byte.
  uint64_t e = codes - TiledNonZeroCodes(codes) + uint64_t{window_base} * kEveryByte;
  for (uint32_t bits = escape_bits; bits != 0; bits &= bits - 1) {
    const uint32_t shift = 8 * LowestBit(bits);
    const uint64_t escape = index < esc_end ? LoadU8(escapes + index) : 0;
    ++index;
    e = (e & ~(uint64_t{0xff} << shift)) | (escape << shift);
  }
  return e;
}

// Lane `lane`'s elements [8 * lane, 8 * lane + 8) of the 256-element chunk
// starting at element c0 of a tile of `size` elements whose groups start at
// `codes` (group c0 / 64 + lane / 8, its lane lane % 8): returns how many
// lie in the tile (0..8) and, when any do, sets their codes (TiledLaneCodes)
// and escapes (bit j: element j lies in the tile and its code is 0). One
// aligned 8-byte load.
PACKD_HD inline uint32_t TiledLaneCodesInTile(const uint8_t* codes, uint32_t size, uint64_t c0,
                                              uint32_t lane, uint64_t* lane_codes,
                                              uint32_t* escape_bits) {
  const uint64_t k0 = c0 + 8 * uint64_t{lane};  // the lane's first element, in the tile
  if (k0 >= size) return 0;
  const uint32_t n = static_cast<uint32_t>(MinU64(8, size - k0));
  const uint32_t gl = lane % 8;
  const uint8_t* group = codes + (k0 / kTiledGroup) * kTiledGroupBytes;
  *lane_codes = TiledLaneCodes(LoadU64(group + 8 * (gl % 4)), gl);
  *escape_bits = ByteFlagBits(~TiledNonZeroCodes(*lane_codes) & kEveryByte) & ((1u << n) - 1);
  return n;
}

// The exponents of lane `lane`'s elements [8 * lane, 8 * lane + 8) of the
// 256-element chunk starting at element c0 of a tile of `size` elements whose
// groups start at `codes`. The lane reads all four groups of the chunk (the
// same addresses across a warp: broadcast loads) to know how many escapes
// precede its elements, so no lane needs another's registers (the fused
// kernel's TiledLaneChunkWarp, fused_math.h, counts by shuffles instead).
// `esc_index` is the escapes index of the chunk's first escape, `esc_end`
// the tile's end (reads are clamped to it: a consistent tile never needs
// that). Returns how many of the lane's elements lie in the tile (0..8;
// exponent byte j of *exps for j below it) and adds the chunk's escape count
// to *chunk_escapes.
PACKD_HD inline uint32_t TiledLaneChunk(const uint8_t* codes, uint32_t size, uint64_t c0,
                                        uint32_t lane, uint32_t window_base, const uint8_t* escapes,
                                        uint32_t esc_index, uint32_t esc_end, uint64_t* exps,
                                        uint32_t* chunk_escapes) {
  const uint32_t my_group = lane / 8;
  uint32_t esc_before = 0, escapes_here = 0;
  for (uint32_t g = 0; g < kTiledChunk / kTiledGroup; ++g) {
    const uint64_t g0 = c0 + g * kTiledGroup;  // element offset of the group in the tile
    if (g0 >= size) break;
    const uint8_t* group = codes + (g0 / kTiledGroup) * kTiledGroupBytes;
    uint64_t w0, w1, w2, w3;
    LoadAligned16(group, w0, w1);
    LoadAligned16(group + 16, w2, w3);
    const uint64_t esc =
        TiledEscapeMask(w0, w1, w2, w3, static_cast<uint32_t>(MinU64(kTiledGroup, size - g0)));
    if (g < my_group) esc_before += Popcount64(esc);
    if (g == my_group) esc_before += TiledEscapesBefore(esc, lane % 8);
    escapes_here += Popcount64(esc);
  }
  *chunk_escapes += escapes_here;
  uint64_t lane_codes = 0;
  uint32_t escape_bits = 0;
  const uint32_t n = TiledLaneCodesInTile(codes, size, c0, lane, &lane_codes, &escape_bits);
  if (n > 0) {
    *exps = TiledLaneExponents(lane_codes, escape_bits, window_base, escapes,
                               esc_index + esc_before, esc_end);
  }
  return n;
}

// Where tile t's groups start in the image.
PACKD_HD inline const uint8_t* TiledCodes(const DeviceImageLayout& L, const uint8_t* image,
                                          const TileSpan& s) {
  return image + L.codes_offset +
         (s.row * L.groups_per_row + s.col * L.groups_per_full_tile) * uint64_t{kTiledGroupBytes};
}

// Work item `lane` (0..31) of tile t's warp: for each 256-element chunk of
// the tile, elements [8 * lane, 8 * lane + 8) of the chunk (TiledLaneChunk),
// so that a warp's stores are contiguous.
PACKD_HD inline void TiledDecodeLane(const DeviceImageLayout& L, const uint8_t* image, uint64_t t,
                                     uint32_t lane, uint64_t e_begin, uint64_t e_end,
                                     uint8_t* out) {
  const TileSpan s = TileAt(L, t);
  const uint8_t* codes = TiledCodes(L, image, s);
  const uint8_t* escapes = image + L.escapes_offset;
  const uint32_t esc_first = LoadU32(image + L.offsets_offset + 4 * t);
  const uint32_t esc_end = LoadU32(image + L.offsets_offset + 4 * (t + 1));
  uint32_t esc_before_chunk = 0;  // escapes of the tile before this chunk
  for (uint64_t c0 = 0; c0 < s.size; c0 += kTiledChunk) {
    if (s.first + c0 >= e_end) break;
    uint64_t exps = 0;
    const uint32_t before = esc_before_chunk;
    const uint32_t n = TiledLaneChunk(codes, s.size, c0, lane, L.window_base, escapes,
                                      esc_first + before, esc_end, &exps, &esc_before_chunk);
    const uint64_t e0 = s.first + c0 + 8 * lane;
    if (n > 0 && e0 < e_end && e0 + 8 > e_begin) {
      EmitElements(L, image, e0, n, exps, e_begin, e_end, out);
    }
  }
}

// ---- vlc (FORMAT.md §4).

// Start of tile t's stream in "codes" (t <= tiles), in bytes.
PACKD_HD inline uint64_t VlcOffset(const DeviceImageLayout& L, const uint8_t* image, uint64_t t) {
  const uint8_t* p = image + L.offsets_offset;
  return L.offset_bytes == 8 ? LoadU64(p + 8 * t) : LoadU32(p + 4 * t);
}

// 64 stream bits from bit position pos of codes (LSB-first), from the two
// aligned words around it. codes must be 8-aligned with 16 readable bytes
// from byte pos / 8 rounded down to 8.
PACKD_HD inline uint64_t Peek64(const uint8_t* codes, uint64_t pos) {
  const uint64_t a = (pos >> 3) & ~uint64_t{7};
  const uint32_t sh = static_cast<uint32_t>(pos - 8 * a);  // 0..63
  const uint64_t w0 = LoadU64(codes + a);
  if (sh == 0) return w0;
  return (w0 >> sh) | (LoadU64(codes + a + 8) << (64 - sh));
}

// One Huffman table entry (built by DeviceImage, the same as the CPU
// decoder's): for the next 11 stream bits, bits 0-3 = the bits its complete
// codes use, bits 6-8 = how many codes (1..4), bits 32-63 = their exponents,
// the first in the low byte.
PACKD_HD inline uint32_t HuffmanEntryBits(uint64_t e) { return static_cast<uint32_t>(e & 15); }
PACKD_HD inline uint32_t HuffmanEntryCount(uint64_t e) {
  return static_cast<uint32_t>((e >> 6) & 7);
}
PACKD_HD inline uint32_t HuffmanEntrySymbols(uint64_t e) { return static_cast<uint32_t>(e >> 32); }

// Collects decoded exponents of one tile into groups of 8 (aligned to the
// tile's first element) and emits each full group.
struct ExponentSink {
  uint64_t first = 0;  // the tile's first element
  uint32_t done = 0;   // exponents received
  uint32_t pending = 0;
  uint64_t exps = 0;

  PACKD_HD void Push(const DeviceImageLayout& L, const uint8_t* image, uint32_t exponent,
                     uint64_t e_begin, uint64_t e_end, uint8_t* out) {
    exps |= uint64_t{exponent & 0xff} << (8 * pending);
    ++done;
    if (++pending == 8) {
      EmitElements(L, image, first + done - 8, 8, exps, e_begin, e_end, out);
      exps = 0;
      pending = 0;
    }
  }
  PACKD_HD void Flush(const DeviceImageLayout& L, const uint8_t* image, uint64_t e_begin,
                      uint64_t e_end, uint8_t* out) {
    if (pending != 0)
      EmitElements(L, image, first + done - pending, pending, exps, e_begin, e_end, out);
    pending = 0;
    exps = 0;
  }
};

// Exponents of tile t it must decode to cover [e_begin, e_end): all up to
// the range's end (a stream decodes from its start).
PACKD_HD inline uint32_t VlcSymbolsNeeded(const TileSpan& s, uint64_t e_end) {
  return static_cast<uint32_t>(MinU64(s.size, e_end - s.first));
}

// Huffman (mode 0): work item of tile t. `multi` is the 2^11-entry table (in
// shared memory on the device). Each peek of 64 bits serves five lookups of
// at most 11 bits, each yielding 1..4 exponents.
PACKD_HD inline void VlcHuffmanDecodeTile(const DeviceImageLayout& L, const uint8_t* image,
                                          const uint64_t* multi, uint64_t t, uint64_t e_begin,
                                          uint64_t e_end, uint8_t* out) {
  const TileSpan s = TileAt(L, t);
  const uint8_t* codes = image + L.codes_offset;
  uint64_t pos = 8 * VlcOffset(L, image, t);
  const uint64_t end = 8 * VlcOffset(L, image, t + 1);
  const uint32_t need = VlcSymbolsNeeded(s, e_end);
  ExponentSink sink;
  sink.first = s.first;
  while (sink.done < need) {
    if (pos > end) pos = end;  // a corrupt stream: keep the peeks inside the image
    uint64_t buf = Peek64(codes, pos);
    for (int k = 0; k < 5 && sink.done < need; ++k) {
      const uint64_t e = multi[buf & (kVlcTableSize - 1)];
      const uint32_t bits = HuffmanEntryBits(e);
      uint32_t syms = HuffmanEntrySymbols(e);
      buf >>= bits;
      pos += bits;
      for (uint32_t j = HuffmanEntryCount(e); j > 0 && sink.done < need; --j) {
        sink.Push(L, image, syms & 0xff, e_begin, e_end, out);
        syms >>= 8;
      }
    }
  }
  sink.Flush(L, image, e_begin, e_end, out);
}

// One rANS decode step (FORMAT.md §4, mode 2) on a slot entry (exponent in
// bits 0-7, freq in bits 8-19, i - start in bits 20-31): returns the
// exponent and advances x, before renormalization.
PACKD_HD inline uint32_t RansDecodeStep(const uint32_t* slots, uint32_t& x) {
  const uint32_t e = slots[x & (kRansTotal - 1)];
  x = ((e >> 8) & (kRansTotal - 1)) * (x >> kRansPrecision) + (e >> 20);
  return e & 0xff;
}

// rANS (mode 2): work item of tile t; `slots` is the 2^12-entry table.
PACKD_HD inline void VlcRansDecodeTile(const DeviceImageLayout& L, const uint8_t* image,
                                       const uint32_t* slots, uint64_t t, uint64_t e_begin,
                                       uint64_t e_end, uint8_t* out) {
  const TileSpan s = TileAt(L, t);
  const uint8_t* codes = image + L.codes_offset;
  uint64_t pos = VlcOffset(L, image, t);
  const uint64_t end = VlcOffset(L, image, t + 1);
  // The initial state; pos <= the payload size, so these 4 bytes lie inside
  // "codes" and its 8 bytes of padding even for a corrupt (short) stream.
  uint32_t x = 0;
  for (uint32_t b = 0; b < 4; ++b) x |= LoadU8(codes + pos + b) << (8 * b);
  pos += 4;
  const uint32_t need = VlcSymbolsNeeded(s, e_end);
  ExponentSink sink;
  sink.first = s.first;
  while (sink.done < need) {
    const uint32_t exponent = RansDecodeStep(slots, x);
    if (x < kRansLow) {
      uint32_t w = 0;
      if (pos + 2 <= end) w = LoadU8(codes + pos) | (LoadU8(codes + pos + 1) << 8);
      pos += 2;
      x = (x << 16) | w;
    }
    sink.Push(L, image, exponent, e_begin, e_end, out);
  }
  sink.Flush(L, image, e_begin, e_end, out);
}

// Constant mode (mode 1): work item of the 8-element slot `slot`.
PACKD_HD inline void VlcConstantDecodeSlot(const DeviceImageLayout& L, const uint8_t* image,
                                           uint64_t slot, uint64_t e_begin, uint64_t e_end,
                                           uint8_t* out) {
  const uint64_t e0 = 8 * slot;
  const uint32_t n = static_cast<uint32_t>(MinU64(8, L.elements - e0));
  EmitElements(L, image, e0, n, uint64_t{L.const_exponent} * 0x0101010101010101ull, e_begin, e_end,
               out);
}

// Work item `item` < plan.items of any kind. `table` is a copy of the image's
// vlc table as the kernel holds it in shared memory: u64 entries (Huffman) or
// u32 slots (rANS); unused for tiled and constant. The kernels call the
// per-kind functions directly; this dispatch is for host loops (tests).
PACKD_HD inline void DecodeItem(const DeviceImageLayout& L, const uint8_t* image, const void* table,
                                const DecodePlan& plan, uint64_t item, uint8_t* out) {
  switch (L.kind) {
    case DeviceCodecKind::kTiled:
      TiledDecodeLane(L, image, plan.t_first + item / 32, static_cast<uint32_t>(item % 32),
                      plan.e_begin, plan.e_end, out);
      break;
    case DeviceCodecKind::kVlcHuffman:
      VlcHuffmanDecodeTile(L, image, static_cast<const uint64_t*>(table), plan.t_first + item,
                           plan.e_begin, plan.e_end, out);
      break;
    case DeviceCodecKind::kVlcRans:
      VlcRansDecodeTile(L, image, static_cast<const uint32_t*>(table), plan.t_first + item,
                        plan.e_begin, plan.e_end, out);
      break;
    case DeviceCodecKind::kVlcConstant:
      VlcConstantDecodeSlot(L, image, plan.slot_first + item, plan.e_begin, plan.e_end, out);
      break;
    case DeviceCodecKind::kVlcLanes:
      // A row's lanes decode together (ballots): no per-item decode; the
      // callers use VlcLanesDecodeKernel / HostVlcLanesRow (vlc_lanes.h).
      break;
  }
}

}  // namespace packd::codec::cuda
