// "vlc": canonical, length-limited Huffman codes (or, for tensors dominated by
// one exponent, rANS) over the exponent field.
//
// Each tensor gets one code table built from its exponent histogram; the tensor
// is cut into tiles (codec/tile_grid.h) and every tile is an independent,
// byte-aligned bitstream with an explicit start offset, so that any tile can be
// decoded alone (a GPU thread or warp per tile, a CPU matmul per row segment).
// Sign and mantissa bits are kept raw in the rest plane (codec/rest_plane.h).
// The byte layout of the components is specified in codec/FORMAT.md §4.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "codec/tensor_codec.h"
#include "codec/vlc_interleaved.h"

namespace packd::codec {

// The header version this build writes (codec/FORMAT.md §4); it reads 1 too.
inline constexpr uint16_t kVlcFormatVersion = 2;

// How the encoder codes a tensor with at least 2 distinct exponents (tensors
// with 0 or 1 always use the constant mode, which has no bitstream).
enum class VlcMode {
  // 16-bit tensors interleaved, fp32 ones Huffman, unless rANS is estimated
  // to save more than ~0.05 bits/weight (a dominant exponent, e.g. a sparse
  // tensor; the other modes decode faster).
  kAuto,
  kHuffman,      // always serial Huffman (mode 0)
  kRans,         // always rANS (mode 2); max_code_len is then unused
  kInterleaved,  // always interleaved (mode 3; codes <= 7 bits, max_code_len unused)
};

// Encoder parameters. A decoder needs neither: the header records the tile
// width and the code lengths. The defaults are what VlcCodec().Encode uses.
struct VlcOptions {
  // Elements per tile (TileGrid::ForShape). 1024: the u32 start offset costs
  // 32/1024 = 0.031 bits/weight plus ~4/1024 for byte alignment, well inside
  // the 0.15 bits/weight budget, while rows of LLM matrices (multiples of 1024)
  // split into whole tiles and a tile's decoded bf16 (2 KiB) stays in L1.
  uint32_t tile_cols = 1024;
  // The interleaved mode's tiles: this wide, or a row where rows are
  // narrower (so a tile never spans rows and a matmul reads whole rows).
  // Each tile ends with ~2 unused bits per lane (~64 bits) plus its
  // offset: ~0.02 bits/weight at 4096 columns, ~0.09 at 1024.
  uint32_t interleaved_tile_cols = 4096;
  // Longest code, 1..11 (at least 8 when all 256 bf16/fp32 exponents occur).
  // 11 keeps the decode table at 2048 entries (16 KiB of u64 entries holding
  // up to 4 symbols each: L1 / shared-memory sized; 5 peeks per 64-bit load)
  // at a cost of ~0.004 bits/weight on N(0, 0.02) bf16: only exponents rarer
  // than ~2^-11 get shorter codes than plain Huffman would give them.
  int max_code_len = 11;
  VlcMode mode = VlcMode::kAuto;
};

// A bf16 matrix in interleaved mode seen row by row, for a matmul that decodes
// in registers (engine/cpu): tile t of row r is tile r * tiles_per_row + t,
// its stream bytes [offset(t), offset(t + 1)) of codes (followed by at least
// kVlcInterleavedPadding readable bytes). Obtained from
// VlcInterleavedRows(); valid while the decoder and its component views are.
struct VlcInterleavedRowsView {
  uint64_t rows = 0, cols = 0, tile_cols = 0, tiles_per_row = 0;
  const VlcInterleavedCode* code = nullptr;
  const uint8_t* offsets = nullptr;
  int offset_bytes = 4;
  const uint8_t* codes = nullptr;
  const uint8_t* rest = nullptr;  // row r's rest bytes at rest + r * cols

  uint64_t Offset(uint64_t t) const {
    const uint8_t* p = offsets + t * offset_bytes;
    uint64_t v = 0;
    for (int b = 0; b < offset_bytes; ++b) v |= uint64_t{p[b]} << (8 * b);
    return v;
  }
};

// The row view of a decoder VlcCodec().OpenDecoder returned, when it is a
// bf16 tensor in interleaved mode (FailedPrecondition otherwise). O(1).
absl::StatusOr<VlcInterleavedRowsView> VlcInterleavedRows(const TensorDecoder& decoder);

// The "vlc" codec (F32, F16, BF16). Static, stateless, thread-safe. A
// decoder picks its AVX-512 and BMI2 code when it is opened, from
// DetectCpuFeatures() (base/cpu_features.h: PACKD_CPU_ISA=portable forces the
// portable code); every path gives the same bytes.
const TensorCodec& VlcCodec();

// VlcCodec().Encode with explicit options (InvalidArgument when out of range).
absl::StatusOr<EncodedTensor> VlcEncode(const TensorInfo& info, std::span<const uint8_t> raw,
                                        int threads, const VlcOptions& options);

}  // namespace packd::codec
