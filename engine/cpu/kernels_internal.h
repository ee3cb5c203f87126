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

// out[t * out_stride + r] for t < T, r < R; w points at row 0 of the tile
// (row r at w + r * k * elem_bytes).
using GemmTile = void (*)(const float* x, int64_t x_stride, const uint8_t* w, int64_t k, float* out,
                          int64_t out_stride);

struct GemmTiles {
  static constexpr int kMaxTokens = 6;
  static constexpr int kMaxRows = 8;
  int elem_bytes = 0;
  int tokens = 0;       // T of the prefill tile (n >= 2)
  int rows = 0;         // R of the prefill tile
  int decode_rows = 0;  // R of the one-token tile
  // tile[T][R]: filled for T = 1 and R <= decode_rows, and for 2 <= T <=
  // tokens and R <= rows.
  GemmTile tile[kMaxTokens + 1][kMaxRows + 1] = {};
};

// Fills a GemmTiles from a class template Tile<DType, T, R> with a static
// member `Run` of GemmTile's signature.
template <template <codec::DType, int, int> class Tile, codec::DType D, int T, int... Rs>
constexpr void FillTileRow(GemmTiles& g, std::integer_sequence<int, Rs...>) {
  ((g.tile[T][Rs + 1] = &Tile<D, T, Rs + 1>::Run), ...);
}
template <template <codec::DType, int, int> class Tile, codec::DType D, int kTokens, int kRows,
          int kDecodeRows, int... Ts>
constexpr void FillTiles(GemmTiles& g, std::integer_sequence<int, Ts...>) {
  (FillTileRow<Tile, D, Ts + 1>(g,
                                std::make_integer_sequence<int, (Ts == 0 ? kDecodeRows : kRows)>()),
   ...);
}
template <template <codec::DType, int, int> class Tile, codec::DType D, int kTokens, int kRows,
          int kDecodeRows>
constexpr GemmTiles MakeGemmTiles() {
  static_assert(kTokens >= 1 && kTokens <= GemmTiles::kMaxTokens);
  static_assert(kRows >= 1 && kRows <= GemmTiles::kMaxRows);
  static_assert(kDecodeRows >= kRows && kDecodeRows <= GemmTiles::kMaxRows,
                "token tails of prefill use the one-token tiles");
  GemmTiles g;
  g.elem_bytes = D == codec::DType::kF32 ? 4 : 2;
  g.tokens = kTokens;
  g.rows = kRows;
  g.decode_rows = kDecodeRows;
  FillTiles<Tile, D, kTokens, kRows, kDecodeRows>(g, std::make_integer_sequence<int, kTokens>());
  return g;
}

// The Kernels::gemm contract on top of a tile table (kernels.cc). `tiles` is
// the table for wtype, or null for a dtype gemm cannot read (out is then
// filled with NaN).
void RunGemm(const GemmTiles* tiles, const float* x, int64_t n, int64_t x_stride, const void* w,
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
