// Shared pieces of the per-ISA kernel files (kernels_portable.cc,
// kernels_avx2.cc, kernels_avx512.cc); not part of the public API.
//
// Gemm in every ISA is one blocking driver (RunGemm) over a table of
// microkernels ("tiles"). A tile computes out[t][r] for T tokens and R rows
// over the whole of k. Every tile of an ISA computes each of its T * R outputs
// with the same instruction sequence (below), so the value of an output does
// not depend on which tile, row block or call computed it:
//
//   acc = W zero lanes
//   for each full chunk c of W elements, in order: acc = acc + x[c] * w[c]
//       (lane-wise; one fused multiply-add on the SIMD paths, a multiply and
//       an add on the portable path)
//   if k % W != 0: the same step once more on the last chunk zero-padded
//   out = ReduceLanes(acc): a fixed pairwise tree (lanes i and i + W/2 first)
//
// Dot uses the same sequence with one accumulator, so dot(a, b, k) equals
// gemm of one token with one F32 row.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>

#include "codec/dtype.h"
#include "engine/cpu/kernels.h"

namespace packd::engine::cpu::internal {

// How far ahead in its own row a gemm tile prefetches weights into L2, in
// bytes (kernels_avx512.cc, bf16_gemm_avx512.cc). 64 KiB: with the weights in
// huge pages (FileAccess::kResident) a one-token gemm read 54 GB/s on two
// cores with it against 51 at 16 KiB (throwaway harness, 2048-column rows;
// 57.5 vs 50.5 at 8192 columns); at 2048 columns it is the next row block of
// a multi-token step, which then streams in while the current one computes.
inline constexpr int64_t kGemmPrefetchBytes = 65536;

// out[t * out_stride + r] for t < T, r < R; w points at row 0 of the tile
// (row r at w + r * k * elem_bytes). X is the activations' element type:
// float for Kernels::gemm, uint16_t (bf16 bits) for bf16_gemm.h's kernel.
template <typename X>
using GemmTileOf = void (*)(const X* x, int64_t x_stride, const uint8_t* w, int64_t k, float* out,
                            int64_t out_stride);

template <typename X>
struct GemmTilesOf {
  static constexpr int kMaxTokens = 6;
  static constexpr int kMaxRows = 8;
  int elem_bytes = 0;
  int tokens = 0;       // T of the prefill tile (n >= 2)
  int rows = 0;         // R of the prefill tile
  int decode_rows = 0;  // R of the one-token tile
  // tile[T][R]: filled for T = 1 and R <= decode_rows, and for 2 <= T <=
  // tokens and R <= rows.
  GemmTileOf<X> tile[kMaxTokens + 1][kMaxRows + 1] = {};
};
using GemmTile = GemmTileOf<float>;
using GemmTiles = GemmTilesOf<float>;

// Fills a GemmTilesOf<X> from a class template Tile<DType, T, R> with a
// static member `Run` of GemmTileOf<X>'s signature.
template <template <codec::DType, int, int> class Tile, codec::DType D, int T, typename G,
          int... Rs>
constexpr void FillTileRow(G& g, std::integer_sequence<int, Rs...>) {
  ((g.tile[T][Rs + 1] = &Tile<D, T, Rs + 1>::Run), ...);
}
template <template <codec::DType, int, int> class Tile, codec::DType D, int kTokens, int kRows,
          int kDecodeRows, typename G, int... Ts>
constexpr void FillTiles(G& g, std::integer_sequence<int, Ts...>) {
  (FillTileRow<Tile, D, Ts + 1>(g,
                                std::make_integer_sequence<int, (Ts == 0 ? kDecodeRows : kRows)>()),
   ...);
}
template <template <codec::DType, int, int> class Tile, codec::DType D, int kTokens, int kRows,
          int kDecodeRows, typename X = float>
constexpr GemmTilesOf<X> MakeGemmTiles() {
  using G = GemmTilesOf<X>;
  static_assert(kTokens >= 1 && kTokens <= G::kMaxTokens);
  static_assert(kRows >= 1 && kRows <= G::kMaxRows);
  static_assert(kDecodeRows >= kRows && kDecodeRows <= G::kMaxRows,
                "token tails of prefill use the one-token tiles");
  G g;
  g.elem_bytes = D == codec::DType::kF32 ? 4 : 2;
  g.tokens = kTokens;
  g.rows = kRows;
  g.decode_rows = kDecodeRows;
  FillTiles<Tile, D, kTokens, kRows, kDecodeRows>(g, std::make_integer_sequence<int, kTokens>());
  return g;
}

// The Kernels::gemm contract on top of a tile table (kernels.cc; defined for
// X = float and uint16_t). `tiles` is the table for wtype, or null for a
// dtype gemm cannot read (out is then filled with NaN).
template <typename X>
void RunGemm(const GemmTilesOf<X>* tiles, const X* x, int64_t n, int64_t x_stride, const void* w,
             int64_t rows, int64_t k, float* out, int64_t out_stride);

// Exact scalar conversions (portable path and tests of the SIMD paths).
// F16: subnormals, infinities and NaN payloads kept; a signalling NaN comes
// back quiet, as F16C's vcvtph2ps does.
inline float BF16ToF32(uint16_t h) {
  const uint32_t bits = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
float F16ToF32(uint16_t h);

// Per-ISA tables; Avx2Kernels / Avx512Kernels return PortableKernels() when
// the build is not for x86-64.
const Kernels& PortableKernels();
const Kernels& Avx2Kernels();
const Kernels& Avx512Kernels();

}  // namespace packd::engine::cpu::internal
