// The "tiled" codec: a fixed-length 4-bit exponent code with escapes, laid out
// so that any tile is found in O(1) and decoded with one byte shuffle per 64
// weights (codec/FORMAT.md §5, version 2).
//
// Per tensor a window of 15 consecutive exponent values [base, base + 14] is
// chosen to cover the most elements. Each element gets a 4-bit code c: c in
// 1..15 means exponent = base + c - 1, c = 0 is an escape whose exponent is
// stored as one byte in the "escapes" component. A group of 64 elements keeps
// its codes in 32 bytes (byte j: element j's code in the low nibble, element
// 32 + j's in the high one); sign and mantissa are kept raw in the rest plane
// (codec/rest_plane.h). For trained bf16 weights that is ~12.07 bits/weight,
// ~1.4 above the order-0 bound, in exchange for a decode that a matmul does
// in registers at memory speed (engine/cpu/split_gemm.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/dtype.h"
#include "codec/tensor_codec.h"
#include "codec/tile_grid.h"

namespace packd::codec {

// Format constants of version 2 (see codec/FORMAT.md §5).
inline constexpr uint16_t kTiledFormatVersion = 2;
inline constexpr uint32_t kTiledCodeWidth = 4;   // bits per code, header field
inline constexpr uint32_t kTiledWindow = 15;     // exponents codes 1..15 name
inline constexpr uint32_t kTiledGroupSize = 64;  // elements per group
// 512: offsets cost 0.0625 bits/weight, a tile decodes to 1 KiB of bf16, and
// it divides most LLM hidden sizes (codec/FORMAT.md §5).
inline constexpr uint32_t kTiledDefaultTileCols = 512;
inline constexpr uint64_t kTiledHeaderBytes = 32;
inline constexpr uint64_t kTiledGroupBytes = kTiledGroupSize * kTiledCodeWidth / 8;  // 32

// The codec registered as "tiled" (static, stateless, thread-safe).
const TensorCodec& TiledCodec();

// Encode with an explicit tile width (a non-zero multiple of 64; TiledCodec()
// uses kTiledDefaultTileCols). Runs on `threads` threads (<= 0: all).
absl::StatusOr<EncodedTensor> EncodeTiled(const TensorInfo& info, std::span<const uint8_t> raw,
                                          int threads, uint32_t tile_cols = kTiledDefaultTileCols);

// Decoders run the AVX-512 (F/BW/VL/VBMI/VBMI2, POPCNT, BMI2) kernels when
// DetectCpuFeatures() has them at the time the decoder is opened (or
// DecodeTiledTile is called), else the portable scalar ones; both give the
// same bytes. PACKD_CPU_ISA=portable forces the scalar ones
// (base/cpu_features.h). TiledAvx512Supported(): whether the CPU has them,
// whatever the cap.
bool TiledAvx512Supported();

// Raw pointers to everything needed to decode one tile, for a matmul that
// decodes tiles into its own buffers. Obtained from TiledDecoder::Tile(), which
// has validated the pointers against the component sizes: it is only valid
// while the ComponentViews the decoder was opened on are alive. Plain data,
// freely copied and used from any thread.
struct TiledTileView {
  FloatFormat format;
  uint64_t tile = 0;        // index, for error messages
  uint64_t first = 0;       // flat index of the tile's first element
  uint32_t size = 0;        // elements in the tile
  uint8_t window_base = 0;  // code c in 1..15 means exponent window_base + c - 1
  // ceil(size / 64) groups of 32 bytes: byte j holds the code of element
  // 64 * group + j in bits 0..3 and of element 64 * group + 32 + j in 4..7.
  const uint8_t* codes = nullptr;
  // escape_count exponent bytes, in element order, for the code-0 elements.
  const uint8_t* escapes = nullptr;
  uint32_t escape_count = 0;
  // The whole tensor's rest plane; element i's rest is at bit i * rest_bits.
  // bf16: rest byte of element first + k is rest_plane[first + k].
  std::span<const uint8_t> rest_plane;
};

// Decodes a view into out (size * elem_bytes raw little-endian bytes of the
// original dtype; bf16 tensors give bf16). First checks that the tile's number
// of code-0 elements equals escape_count (DataLossError naming the tile
// otherwise), so a hostile file never makes it read out of bounds. Thread-safe.
absl::Status DecodeTiledTile(const TiledTileView& view, std::span<uint8_t> out);

// A bf16 matrix whose tiles cut each row (the grid's cols is the matrix's k)
// seen row by row, for a matmul that decodes in registers (engine/cpu): the
// groups of a row are consecutive in codes, and so are its escapes. Obtained
// from TiledDecoder::Rows(), which has checked every tile's code-0 count
// against escape_offsets, so a reader that takes exactly popcount(escape mask)
// escapes per group stays inside the row's escapes. Valid while the component
// views are. Plain data, usable from any thread.
struct TiledRowsView {
  uint64_t rows = 0;
  uint64_t cols = 0;
  uint8_t window_base = 0;
  uint64_t tile_cols = 0;  // a row's tiles: tile_cols columns each, the last maybe fewer
  // Row r's ceil(cols / 64) groups (32 bytes each) start at codes + r * code_row_bytes.
  const uint8_t* codes = nullptr;
  uint64_t code_row_bytes = 0;
  // Row r's escapes start at escapes + EscapeBegin(r).
  const uint8_t* escapes = nullptr;
  const uint8_t* escape_offsets = nullptr;  // (tiles + 1) little-endian u32
  uint64_t tiles_per_row = 0;
  // Row r's rest bytes (sign << 7 | mantissa) start at rest + r * cols.
  const uint8_t* rest = nullptr;

  // escape_offsets[t]: the index in escapes of tile t's first escape.
  uint32_t EscapeOffset(uint64_t t) const {
    const uint8_t* p = escape_offsets + 4 * t;
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
  }
  uint64_t EscapeBegin(uint64_t row) const { return EscapeOffset(row * tiles_per_row); }
};

// The decoder TiledCodec().OpenDecoder returns; engine code that wants tile
// views opens it directly. All const methods are thread-safe.
class TiledDecoder final : public TensorDecoder {
 public:
  // Validates every component against `info` in O(tiles + escapes) (see
  // TensorCodec::OpenDecoder). The views must outlive the decoder.
  static absl::StatusOr<std::unique_ptr<TiledDecoder>> Open(const TensorInfo& info,
                                                            const ComponentViews& components);

  const TileGrid& grid() const override { return grid_; }
  absl::Status DecodeTile(uint64_t tile, std::span<uint8_t> out) const override;
  // Runs of tiles without a virtual call or view check per tile; DecodeAll
  // (the base class's) splits the tensor into such runs across threads.
  absl::Status DecodeTiles(uint64_t first, uint64_t count, std::span<uint8_t> out) const override;
  absl::Status DecodeExponents(uint64_t first, uint64_t count,
                               std::span<uint8_t> exps) const override;
  std::span<const uint8_t> rest_plane() const override { return rest_; }

  // The row view of a bf16 matrix whose tiles cut each row (always the case
  // when the grid has more than one row). Scans all codes once, O(groups),
  // to check the escape counts (DataLoss naming the first bad tile);
  // FailedPrecondition for other dtypes.
  absl::StatusOr<TiledRowsView> Rows() const;

  // The raw view of tile t < grid().tiles() (OutOfRange otherwise). O(1).
  absl::StatusOr<TiledTileView> Tile(uint64_t t) const;
  uint8_t window_base() const { return window_base_; }
  uint64_t escape_total() const { return escapes_.size(); }

 private:
  TiledDecoder(const FloatFormat& format, int elem_bytes)
      : TensorDecoder(elem_bytes), format_(format) {}
  TiledTileView ViewUnchecked(uint64_t t) const;

  FloatFormat format_;
  TileGrid grid_;
  bool avx512_ = false;  // the AVX-512 kernels, else the scalar ones (picked at Open)
  uint8_t window_base_ = 0;
  uint64_t tiles_per_row_ = 0;
  uint64_t groups_per_full_tile_ = 0;
  uint64_t groups_per_row_ = 0;
  std::span<const uint8_t> codes_;
  std::span<const uint8_t> escapes_;
  std::span<const uint8_t> escape_offsets_;  // (tiles + 1) little-endian u32
  std::span<const uint8_t> rest_;
};

}  // namespace packd::codec
