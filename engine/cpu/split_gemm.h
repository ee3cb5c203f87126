// Matmuls over bf16 weights held split, as packd's exponent codecs store them
// (codec/FORMAT.md §3): one exponent byte per weight and the raw rest plane
// (sign << 7 | mantissa). The kernels join exponent and rest into fp32 in
// registers and multiply at once, so a compressed weight is never written out
// as bf16 and read back. The `tiled` kernel goes further and computes the
// exponents from the tiled codes in registers too (codec/FORMAT.md §5).
//
// Bit-exact contract: every output equals, bit for bit, what Kernels::gemm of
// the same ISA gives for the decoded bf16 weights (the same 16-lane FMA chain
// over k in ascending chunks, the same lane reduction; kernels_internal.h).
// So a compressed model's logits equal the uncompressed model's. (A NaN
// output is a NaN in both, but its payload may differ: which NaN operand an
// FMA propagates depends on the operand order each compiled tile uses, as
// between gemm's own tiles.)
#pragma once

#include <algorithm>
#include <cstdint>

#include "codec/tiled_codec.h"
#include "codec/vlc_codec.h"
#include "engine/cpu/kernels.h"

namespace packd::engine::cpu {

// Tokens one pass over the weights serves (the tile's widest token group).
inline constexpr int64_t kSplitGemmMaxTokens = 8;

// X: float (the fp32 mode, SplitGemmKernels: bits of Kernels::gemm) or
// uint16_t (the bf16 mode, SplitGemmBf16Kernels: x already rounded to bf16
// by Bf16GemmKernels::round, and every output bit for bit what
// Bf16GemmKernels::gemm gives for the decoded weights; bf16_gemm.h).
template <typename X>
struct SplitGemmKernelsOf {
  // out[t * out_stride + r] = sum_j x[t * x_stride + j] * w[row0 + r][j] for
  // t < n, r < rows, over the rows of a tiled bf16 matrix (view from
  // codec::TiledDecoder::Rows(), which checked the escape counts); k =
  // view.cols, a multiple of 64. Decodes each row's codes once per group of
  // up to kSplitGemmMaxTokens tokens (so for larger n more than once: the CPU
  // backend calls it for steps of at most that many tokens and decodes bf16
  // row blocks for larger ones).
  void (*tiled)(const X* x, int64_t n, int64_t x_stride, const codec::TiledRowsView& w,
                int64_t row0, int64_t rows, float* out, int64_t out_stride);
  // The same over the rows of a bf16 vlc matrix in interleaved mode (view
  // from codec::VlcInterleavedRows()): the 32 lanes of each tile decoded in
  // registers, 32 weights per step, joined with the rest bytes and
  // multiplied at once. k = view.cols, a multiple of 64; view.tile_cols a
  // multiple of 32 (the CPU backend checks). A stream that runs past its tile (a corrupt file the
  // container checksum did not catch) gives wrong numbers, never a read
  // outside the codes component.
  void (*vlc)(const X* x, int64_t n, int64_t x_stride, const codec::VlcInterleavedRowsView& w,
              int64_t row0, int64_t rows, float* out, int64_t out_stride);
  // The same over split rows: row r's k exponent bytes at exps + r * k (a
  // buffer the caller decoded, e.g. TensorDecoder::DecodeExponents) and its k
  // rest bytes at rest + r * k; k a multiple of 64.
  void (*split)(const X* x, int64_t n, int64_t x_stride, const uint8_t* exps, const uint8_t* rest,
                int64_t rows, int64_t k, float* out, int64_t out_stride);
};

// The rows of one split-kernel call, as the CPU backend cuts a k-column
// matrix: blocks whose exponents (one byte per weight) would fill about half
// of L1, in multiples of 4 rows (the one-token tile height).
inline int64_t SplitGemmRowBlock(int64_t k) {
  return std::clamp<int64_t>(16384 / std::max<int64_t>(k, 1) / 4 * 4, 4, 256);
}

using SplitGemmKernels = SplitGemmKernelsOf<float>;
using SplitGemmBf16Kernels = SplitGemmKernelsOf<uint16_t>;

// The kernels matching GetKernels(), or null when that ISA has none: they
// exist for AVX-512 on CPUs that also have VBMI and VBMI2 (the byte permutes
// and expands of the decode and join). Callers without them decode to bf16
// and call Kernels::gemm, which gives the same bits.
const SplitGemmKernels* GetSplitGemmKernels();
// The same for a given ISA (tests): null unless isa is kAvx512 and the CPU
// has AVX-512 with VBMI and VBMI2.
const SplitGemmKernels* GetSplitGemmKernelsFor(Isa isa);
// The bf16 mode's kernels: non-null where GetSplitGemmKernels() is and the
// CPU also has AVX512-BF16 (vdpbf16ps).
const SplitGemmBf16Kernels* GetSplitGemmBf16Kernels();
const SplitGemmBf16Kernels* GetSplitGemmBf16KernelsFor(Isa isa);

}  // namespace packd::engine::cpu
