// Where each part of a device image lies and the parameters its kernels need:
// plain data, computed on the host by DeviceImage (codec/cuda/device_image.h)
// and passed by value to the kernels (codec/cuda/decode_math.h). Includes
// nothing but <cstdint>, so that nvcc sees no host library through it.
//
// A device image is one buffer, kDeviceImageAlignment-aligned, holding the
// parts below at kImagePartAlignment-aligned offsets (so the kernels' 8- and
// 16-byte loads are aligned), each a byte-for-byte copy of a component of
// codec/FORMAT.md or a decode table built from the header; every byte between
// and after the parts is zero.
#pragma once

#include <cstdint>

namespace packd::codec::cuda {

// Offset alignment of every part in the image.
inline constexpr uint64_t kImagePartAlignment = 256;
// Zero bytes the image keeps after the vlc "codes" component (which already
// ends with 8 zero bytes): the Huffman kernel peeks 16 aligned bytes around
// any byte position <= the end of a tile's stream.
inline constexpr uint64_t kImageCodesSlack = 16;

// vlc decode tables: 2^11 Huffman entries (u64) or 2^12 rANS slots (u32).
inline constexpr uint32_t kVlcTableBits = 11;
inline constexpr uint32_t kVlcTableSize = 1u << kVlcTableBits;
inline constexpr uint32_t kRansPrecision = 12;
inline constexpr uint32_t kRansTotal = 1u << kRansPrecision;
inline constexpr uint32_t kRansLow = 1u << 16;
inline constexpr uint64_t kVlcTableBytes = 16384;  // both tables: 16 KiB
static_assert(kVlcTableSize * 8 == kVlcTableBytes && kRansTotal * 4 == kVlcTableBytes);

// tiled (format version 2): elements per group, bytes per group (64 4-bit
// codes), elements per warp chunk.
inline constexpr uint32_t kTiledGroup = 64;
inline constexpr uint32_t kTiledGroupBytes = 32;
inline constexpr uint32_t kTiledChunk = 256;  // 32 lanes x 8 elements = 4 groups

// Which decode the image is for.
enum class DeviceCodecKind : uint32_t {
  kTiled = 1,        // codec "tiled"
  kVlcHuffman = 2,   // codec "vlc", mode 0
  kVlcConstant = 3,  // codec "vlc", mode 1 (no bitstream)
  kVlcRans = 4,      // codec "vlc", mode 2
  kVlcLanes = 5,     // codec "vlc", mode 0, 16-bit elements: transcoded to
                     // per-row lane streams at upload (vlc_lanes.h)
};

struct DeviceImageLayout {
  DeviceCodecKind kind = DeviceCodecKind::kTiled;
  // Element format (codec/dtype.h FloatFormat).
  uint32_t elem_bytes = 0;
  uint32_t exp_bits = 0;
  uint32_t mant_bits = 0;
  uint32_t rest_bits = 0;  // 1 + mant_bits

  // The tensor as DeviceDecoder sees it: rows x cols, row-major (a 1-D tensor
  // is one row). DecodeRows works in these rows.
  uint64_t tensor_rows = 0;
  uint64_t tensor_cols = 0;
  uint64_t elements = 0;  // tensor_rows * tensor_cols

  // The codec's tile grid (codec/tile_grid.h), which may differ from the
  // tensor's rows (a tensor narrower than a tile is one flat grid row).
  uint64_t grid_rows = 0;
  uint64_t grid_cols = 0;
  uint64_t tile_cols = 0;
  uint64_t tiles_per_row = 0;
  uint64_t tiles = 0;

  // tiled: the exponent window base and the group layout of "codes".
  uint32_t window_base = 0;
  uint64_t groups_per_full_tile = 0;
  uint64_t groups_per_row = 0;

  // vlc: width of an "offsets" entry (4 or 8; kVlcLanes: 8, row offsets in
  // 16-bit words), the constant-mode exponent.
  uint32_t offset_bytes = 0;
  uint32_t const_exponent = 0;

  // Parts: byte offset in the image and length. Absent parts have length 0.
  uint64_t codes_offset = 0, codes_bytes = 0;  // "codes" (both codecs; kVlcLanes: the lane streams)
  uint64_t rest_offset = 0, rest_bytes = 0;    // "rest" (both codecs)
  uint64_t escapes_offset = 0, escapes_bytes = 0;  // tiled "escapes"
  uint64_t offsets_offset = 0,
           offsets_bytes = 0;  // tiled "escape_offsets" / vlc "offsets" / lanes rows
  uint64_t table_offset = 0, table_bytes = 0;  // vlc Huffman or rANS table
  uint64_t image_bytes = 0;                    // total, a multiple of kImagePartAlignment
};

// What one DecodeRows call decodes: the flat element range of its rows, the
// tiles that overlap it, and how many work items (GPU threads) the kernel
// runs: tiled 32 per tile (a warp), vlc Huffman/rANS 1 per tile, vlc constant
// 1 per 8-element slot, vlc lanes 32 per row (a warp; t_first is then the
// first row). Computed by PlanRows (decode_math.h).
struct DecodePlan {
  uint64_t e_begin = 0;     // first element, flat
  uint64_t e_end = 0;       // one past the last element
  uint64_t t_first = 0;     // first overlapping tile
  uint64_t t_count = 0;     // overlapping tiles (0 when the range is empty)
  uint64_t slot_first = 0;  // constant mode: e_begin / 8
  uint64_t items = 0;       // work items; 0 = nothing to launch
};

}  // namespace packd::codec::cuda
