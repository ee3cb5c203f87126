// AVX-512 (F/BW/VL + VBMI + VBMI2) split-weight matmuls (split_gemm.h).
//
// A group of 64 weights becomes four fp32 vectors in gemm's lane order
// (vector c holds elements 16c .. 16c + 15 of the group, element i in lane
// i - 16c) in eight instructions once its 64 exponent bytes e and 64 rest
// bytes r are in registers:
//   lo = r & 0x7f | e << 7 & 0x80     low byte of each bf16
//   hi = r & 0x80 | e >> 1 & 0x7f     high byte
//   (16-bit shifts leak a neighbour byte's bits only into positions the
//   vpternlog select discards)
//   w_c = vpermt2b(lo, kJoin[c], hi) with bytes 0, 1 of each dword zeroed:
//         the dword holds bf16 << 16, i.e. the exact fp32 value.
// Tiled codes give e in registers: one vpermb of the group's 4-bit codes
// through the window table, and, in tiles with escapes, a vpexpandb of the
// group's escapes into the code-0 bytes (codec/FORMAT.md §5).
// Each output is then the FMA chain of gemm's AVX-512 tile (acc = x * w +
// acc over the 16-element chunks of k in ascending order, from zero) and the
// same ReduceLanes, so the bits equal gemm's on the decoded weights.
//
// This file is compiled for baseline x86-64 like the rest: only functions
// with the target attribute use AVX-512, and GetSplitGemmKernels hands them
// out only after checking the CPU.
#include "engine/cpu/kernels.h"
#include "engine/cpu/split_gemm.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <type_traits>

#include "base/cpu_features.h"
#include "codec/vlc_interleaved_avx512.h"
#include "engine/cpu/avx512_lanes.h"

namespace packd::engine::cpu {
namespace {

using internal::ReduceLanes;

#define PACKD_SPLIT_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,bmi2,popcnt,fma")))
#define PACKD_SPLIT_INLINE PACKD_SPLIT_TARGET __attribute__((always_inline)) inline

constexpr int64_t kGroup = 64;
// How far ahead of a row's rest bytes the tiled and vlc kernels prefetch:
// kPrefetchRows rows (the same columns of the rows a later call reads), at
// least kPrefetchBytes. A fixed 16 KiB was 8 rows at k = 2048 but under 3 at
// k = 5632 (an MLP down projection), where the lines then arrived late:
// `tiled` one-token decode from DRAM at k = 5632 ran at 24–26 GFLOP/s on one
// core with 16 KiB and 30–32 with 8 rows (build/bench/kernels; bench/NOTES.md,
// "CPU kernels, fifth round").
constexpr int64_t kPrefetchBytes = 16384;
constexpr int64_t kPrefetchRows = 8;
constexpr int64_t PrefetchAhead(int64_t cols) {
  return std::max(kPrefetchBytes, kPrefetchRows * cols);
}

// vpermt2b indices: dword d of vector c takes lo[16c + d] into byte 2 and
// hi[16c + d] (index + 64 selects the second source) into byte 3; bytes 0
// and 1 are zeroed by the mask kHighHalves.
struct JoinIndex {
  alignas(64) uint8_t idx[4][64];
  constexpr JoinIndex() : idx{} {
    for (int c = 0; c < 4; ++c) {
      for (int d = 0; d < 16; ++d) {
        idx[c][4 * d + 2] = static_cast<uint8_t>(16 * c + d);
        idx[c][4 * d + 3] = static_cast<uint8_t>(64 + 16 * c + d);
      }
    }
  }
};
constexpr JoinIndex kJoin;
constexpr __mmask64 kHighHalves = 0xccccccccccccccccull;

// vpermt2b indices of the bf16 mode: word j of vector h is lo[32h + j]
// (byte 2j) and hi[32h + j] (byte 2j + 1), i.e. elements 32h .. 32h + 31 of
// the group as bf16 in natural order, the weight operand of vdpbf16ps.
struct WordIndex {
  alignas(64) uint8_t idx[2][64];
  constexpr WordIndex() : idx{} {
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < 32; ++j) {
        idx[h][2 * j] = static_cast<uint8_t>(32 * h + j);
        idx[h][2 * j + 1] = static_cast<uint8_t>(64 + 32 * h + j);
      }
    }
  }
};
constexpr WordIndex kWords;

// acc += x . w by pairs of bf16 (vdpbf16ps, x the first factor as in
// bf16_gemm_avx512.cc; the arithmetic of bf16_gemm.h). Inline assembly, so
// that the kernels around it keep the VBMI2 target set: CPUs with VBMI2 but
// no AVX512-BF16 (Ice Lake) run the fp32-mode kernels, and only
// GetSplitGemmKernelsFor hands out the bf16 ones, after checking the CPU.
PACKD_SPLIT_INLINE __m512 DotBf16(__m512 acc, __m512i x, __m512i w) {
  asm("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
  return acc;
}

// The constants of the join, loaded once per call.
struct Join {
  __m512i idx[4];
  __m512i m7f;
  PACKD_SPLIT_INLINE static Join Make() {
    Join j;
    for (int c = 0; c < 4; ++c) j.idx[c] = _mm512_load_si512(kJoin.idx[c]);
    j.m7f = _mm512_set1_epi8(0x7f);
    return j;
  }
  // lo/hi bytes of 64 bf16 from exponents and rest bytes.
  PACKD_SPLIT_INLINE void Bytes(__m512i e, __m512i r, __m512i& lo, __m512i& hi) const {
    lo = _mm512_ternarylogic_epi32(m7f, r, _mm512_slli_epi16(e, 7), 0xca);
    hi = _mm512_ternarylogic_epi32(m7f, _mm512_srli_epi16(e, 1), r, 0xca);
  }
  // Elements 16c .. 16c + 15 of the group as fp32.
  PACKD_SPLIT_INLINE __m512 Weights(__m512i lo, __m512i hi, int c) const {
    return _mm512_castsi512_ps(
        _mm512_maskz_permutex2var_epi8(codec::vlci::OpaqueMask(kHighHalves), lo, idx[c], hi));
  }
  // Elements 32h .. 32h + 31 of the group as bf16 (the bf16 mode); the word
  // indices are loaded at each use (an L1 operand: the fp32 mode's four
  // indices keep their registers).
  PACKD_SPLIT_INLINE static __m512i Words(__m512i lo, __m512i hi, int h) {
    return _mm512_permutex2var_epi8(lo, _mm512_load_si512(kWords.idx[h]), hi);
  }
};

// The 16-entry window table of a tiled matrix for vpermb, repeated in each
// 16-byte quarter (vpermb reads index bits 0..5, the code is bits 0..3):
// entry c in 1..15 is base + c - 1; entry 0 (escapes, replaced) is 0.
PACKD_SPLIT_INLINE __m512i WindowTable(uint8_t base) {
  const __m512i c =
      _mm512_and_si512(_mm512_set_epi64(0x3f3e3d3c3b3a3938, 0x3736353433323130, 0x2f2e2d2c2b2a2928,
                                        0x2726252423222120, 0x1f1e1d1c1b1a1918, 0x1716151413121110,
                                        0x0f0e0d0c0b0a0908, 0x0706050403020100),
                       _mm512_set1_epi8(0x0f));
  const __m512i e = _mm512_add_epi8(c, _mm512_set1_epi8(static_cast<char>(base - 1)));
  return _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(c, c), e);
}

// Where a row block's exponents come from, a tile at a time: tiled codes
// decoded in registers, or a buffer of exponent bytes. Each has its R rows'
// cursors, its tile width (tiles cut each row into tile_cols columns, the
// last maybe fewer), whether any of its rows has escapes in tile `col`, and
// the exponents of group g (elements 64g .. 64g + 63) of row r, given in
// group order; kEscapes false only for tiles whose rows have no escapes.
template <int R>
struct TiledSource {
  const uint8_t* codes[R];
  const uint8_t* esc[R];
  const uint8_t* rest[R];
  uint64_t first_tile[R];
  const codec::TiledRowsView* w;
  int64_t tile_cols;
  int64_t ahead;  // prefetch distance in rest bytes
  __m512i table, low_nibbles;
  TiledSource() = default;  // (TiledBlock's array, assigned before use)
  PACKD_SPLIT_INLINE TiledSource(const codec::TiledRowsView& view, int64_t row0) : w(&view) {
    tile_cols = static_cast<int64_t>(view.tile_cols);
    ahead = PrefetchAhead(static_cast<int64_t>(view.cols));
    table = WindowTable(view.window_base);
    low_nibbles = _mm512_set1_epi8(0x0f);
    for (int r = 0; r < R; ++r) {
      const uint64_t row = static_cast<uint64_t>(row0 + r);
      codes[r] = view.codes + row * view.code_row_bytes;
      rest[r] = view.rest + row * view.cols;
      first_tile[r] = row * view.tiles_per_row;
      esc[r] = view.escapes + view.EscapeOffset(first_tile[r]);
    }
  }
  // Software prefetch into L2, `ahead` bytes of rest ahead (and the same
  // elements' codes): the hardware prefetchers alone left a core waiting on
  // DRAM (measured: tiled streamed ~20 GB/s without, ~36–39 with, the
  // machine's limit; raw bf16 ~37). Addresses past the end are harmless: a
  // prefetch never faults.
  PACKD_SPLIT_INLINE void Prefetch(int r, int64_t g) const {
    _mm_prefetch(reinterpret_cast<const char*>(rest[r] + g + ahead), _MM_HINT_T1);
    if (g % 128 == 0) {
      _mm_prefetch(reinterpret_cast<const char*>(codes[r] + g / 2 + ahead / 2), _MM_HINT_T1);
    }
  }
  PACKD_SPLIT_INLINE bool Escapes(int64_t col) const {
    bool any = false;
    for (int r = 0; r < R; ++r) {
      const uint64_t t = first_tile[r] + static_cast<uint64_t>(col);
      any |= w->EscapeOffset(t + 1) != w->EscapeOffset(t);
    }
    return any;
  }
  // The group's 32 code bytes in both halves of a register, the upper copy
  // shifted right by 4: byte i's low nibble is element i's code
  // (codec/FORMAT.md §5), so one vpermb through the table gives the
  // exponents. With escapes: the code-0 bytes get the group's escapes by a
  // register-form vpexpandb (the memory form is microcoded on Zen 4); their
  // count was checked against escape_offsets by TiledDecoder::Rows, so the
  // masked load stays inside the row's escapes.
  template <bool kEscapes>
  PACKD_SPLIT_INLINE __m512i Exponents(int r, int64_t g) {
    const __m512i both = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[r] + (g / kGroup) * 32)));
    const __m512i code = _mm512_mask_srli_epi16(both, 0xffff0000u, both, 4);
    const __m512i e = _mm512_permutexvar_epi8(code, table);
    if constexpr (!kEscapes) {
      return e;
    } else {
      const uint64_t escape = _mm512_testn_epi8_mask(code, low_nibbles);
      const uint64_t count = static_cast<uint64_t>(std::popcount(escape));
      const __m512i packed = _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t{0}, count), esc[r]);
      esc[r] += count;
      return _mm512_mask_expand_epi8(e, escape, packed);
    }
  }
};
template <int R>
struct BufferSource {
  const uint8_t* exps[R];
  const uint8_t* rest[R];
  int64_t tile_cols;
  PACKD_SPLIT_INLINE BufferSource(const uint8_t* e, const uint8_t* rs, int64_t k) : tile_cols(k) {
    for (int r = 0; r < R; ++r) {
      exps[r] = e + r * k;
      rest[r] = rs + r * k;
    }
  }
  PACKD_SPLIT_INLINE bool Escapes(int64_t) const { return false; }
  PACKD_SPLIT_INLINE void Prefetch(int, int64_t) const {}
  template <bool>
  PACKD_SPLIT_INLINE __m512i Exponents(int r, int64_t g) {
    return _mm512_loadu_si512(exps[r] + g);
  }
};

// Groups [g0, g1) of T tokens x R rows into the accumulators. X: float (the
// fp32 mode: gemm's FMA chain over 16-element chunks) or uint16_t (bf16 x,
// the bf16 mode: bf16_gemm.h's vdpbf16ps chain over 32-element chunks).
template <bool kEscapes, int T, int R, typename X, typename Source>
PACKD_SPLIT_INLINE void RowsGroups(const X* x, int64_t x_stride, Source& src, const Join& join,
                                   int64_t g0, int64_t g1, __m512 (&acc)[T][R]) {
  for (int64_t g = g0; g < g1; g += kGroup) {
    __m512i lo[R], hi[R];
    for (int r = 0; r < R; ++r) {
      src.Prefetch(r, g);
      join.Bytes(src.template Exponents<kEscapes>(r, g), _mm512_loadu_si512(src.rest[r] + g), lo[r],
                 hi[r]);
    }
    if constexpr (std::is_same_v<X, uint16_t>) {
      for (int h = 0; h < 2; ++h) {
        __m512i xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_si512(x + t * x_stride + g + 32 * h);
        for (int r = 0; r < R; ++r) {
          const __m512i wv = Join::Words(lo[r], hi[r], h);
          for (int t = 0; t < T; ++t) acc[t][r] = DotBf16(acc[t][r], xv[t], wv);
        }
      }
    } else {
      for (int c = 0; c < 4; ++c) {
        __m512 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_ps(x + t * x_stride + g + 16 * c);
        for (int r = 0; r < R; ++r) {
          const __m512 wv = join.Weights(lo[r], hi[r], c);
          for (int t = 0; t < T; ++t) acc[t][r] = _mm512_fmadd_ps(xv[t], wv, acc[t][r]);
        }
      }
    }
  }
}

// Tile column `col` (groups [c0, c1)) of T tokens x R rows: tiles in which
// none of the R rows has escapes skip the escape logic.
template <int T, int R, typename X, typename Source>
PACKD_SPLIT_INLINE void TileColumn(const X* x, int64_t x_stride, Source& src, const Join& join,
                                   int64_t c0, int64_t c1, int64_t col, __m512 (&acc)[T][R]) {
  if (src.Escapes(col)) {
    RowsGroups<true>(x, x_stride, src, join, c0, c1, acc);
  } else {
    RowsGroups<false>(x, x_stride, src, join, c0, c1, acc);
  }
}

// T tokens x R rows over all of k (a multiple of 64), a tile at a time. Registers:
// T * R accumulators, 2R joined byte vectors, T x chunks, 4 indices.
template <int T, int R, typename X, typename Source>
PACKD_SPLIT_INLINE void RowsTile(const X* x, int64_t x_stride, Source src, int64_t k, float* out,
                                 int64_t out_stride) {
  const Join join = Join::Make();
  __m512 acc[T][R];
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  }
  for (int64_t c0 = 0, col = 0; c0 < k; c0 += src.tile_cols, ++col) {
    TileColumn(x, x_stride, src, join, c0, std::min(k, c0 + src.tile_cols), col, acc);
  }
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) out[t * out_stride + r] = ReduceLanes(acc[t][r]);
  }
}

// T tokens over `rows` tiled rows in pairs (an odd last row by RowsTile<T,
// 1>), up to kBlockPairs pairs a tile column at a time: every pair reads the
// tokens' x for the column from L1, where TiledTile's pair streams all of
// each token's x from L2 (5+ fp32 tokens of k >= 2048 overflow L1; without
// this, `tiled` batch-8 decode ran at 0.73–0.78x raw, with it 0.91–0.92x:
// bench/NOTES.md). Between columns each pair's accumulators wait in `park`,
// so every lane's FMA chain, and so the bits, are TiledTile's.
constexpr int kBlockPairs = 8;
template <int T, typename X>
PACKD_SPLIT_TARGET void TiledBlock(const X* x, int64_t x_stride, const codec::TiledRowsView& w,
                                   int64_t row0, int64_t rows, float* out, int64_t out_stride) {
  const Join join = Join::Make();
  const int64_t k = static_cast<int64_t>(w.cols);
  for (int64_t r = 0; r + 1 < rows; r += 2 * kBlockPairs) {
    const int pairs = static_cast<int>(std::min<int64_t>(kBlockPairs, (rows - r) / 2));
    TiledSource<2> src[kBlockPairs];
    alignas(64) __m512 park[kBlockPairs][T][2];
    for (int p = 0; p < pairs; ++p) {
      src[p] = TiledSource<2>(w, row0 + r + 2 * p);
      for (int t = 0; t < T; ++t) park[p][t][0] = park[p][t][1] = _mm512_setzero_ps();
    }
    for (int64_t c0 = 0, col = 0; c0 < k; c0 += src[0].tile_cols, ++col) {
      const int64_t c1 = std::min(k, c0 + src[0].tile_cols);
      for (int p = 0; p < pairs; ++p) {
        __m512 acc[T][2];
        std::memcpy(acc, park[p], sizeof(acc));
        TileColumn(x, x_stride, src[p], join, c0, c1, col, acc);
        std::memcpy(park[p], acc, sizeof(acc));
      }
    }
    for (int p = 0; p < pairs; ++p) {
      for (int t = 0; t < T; ++t) {
        for (int q = 0; q < 2; ++q) {
          out[t * out_stride + r + 2 * p + q] = ReduceLanes(park[p][t][q]);
        }
      }
    }
  }
  if (rows % 2 == 1) {
    RowsTile<T, 1>(x, x_stride, TiledSource<1>(w, row0 + rows - 1), k, out + rows - 1, out_stride);
  }
}

template <int T, int R, typename X>
PACKD_SPLIT_TARGET void TiledTile(const X* x, int64_t x_stride, const codec::TiledRowsView& w,
                                  int64_t row0, float* out, int64_t out_stride) {
  RowsTile<T, R>(x, x_stride, TiledSource<R>(w, row0), static_cast<int64_t>(w.cols), out,
                 out_stride);
}

// The vlc tile's join and widening, a permute each: `dup` puts rest byte j
// in both bytes of word j; half[h] puts word 16h + j of a 32-word vector in
// the high word of dword j (the low words zeroed by kHighWords), i.e. the
// bf16 as its exact fp32 value.
struct VlcJoinIndex {
  alignas(64) uint8_t dup[64];
  alignas(64) uint16_t half[2][32];
  constexpr VlcJoinIndex() : dup{}, half{} {
    for (int j = 0; j < 32; ++j) dup[2 * j] = dup[2 * j + 1] = static_cast<uint8_t>(j);
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < 16; ++j) half[h][2 * j + 1] = static_cast<uint16_t>(16 * h + j);
    }
  }
};
constexpr VlcJoinIndex kVlcJoin;
constexpr __mmask32 kHighWords = 0xaaaaaaaau;

// T tokens x R rows of an interleaved vlc matrix. Per step and row: the 32
// lanes' exponents (already << 7) from codec::vlci::Step, the 32 rest bytes
// doubled into words (kVlcJoin.dup), bf16 = sign << 15 | exponent << 7 |
// mantissa by one select, then (fp32 mode) each half to fp32 by a permute:
// element 16c + i of the row in lane i, gemm's order; or (bf16 mode) the 32
// bf16 straight into one vdpbf16ps per token. The loops over rows are
// unrolled so that each row's lane state stays in registers (an indexed
// array would live on the stack).
template <int T, int R, typename X>
PACKD_SPLIT_TARGET void VlcTile(const X* x, int64_t x_stride,
                                const codec::VlcInterleavedRowsView& w, int64_t row0, float* out,
                                int64_t out_stride) {
  constexpr int kLanes = codec::kVlcLanes;
  const codec::vlci::Tables<7> tables(*w.code);
  const __m512i exponent = _mm512_set1_epi16(0x7f80);
  const __m512i dup = _mm512_load_si512(kVlcJoin.dup);
  const __m512i half0 = _mm512_load_si512(kVlcJoin.half[0]);
  const __m512i half1 = _mm512_load_si512(kVlcJoin.half[1]);
  const int64_t k = static_cast<int64_t>(w.cols);
  const int64_t tile_cols = static_cast<int64_t>(w.tile_cols);
  const int64_t ahead = PrefetchAhead(k);
  __m512 acc[T][R];
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  }
  codec::vlci::LaneState lanes[R];
  const uint8_t* end[R];
  const uint8_t* rest[R];
  uint64_t first_tile[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const uint64_t row = static_cast<uint64_t>(row0 + r);
    rest[r] = w.rest + row * w.cols;
    first_tile[r] = row * w.tiles_per_row;
  }
  for (int64_t c0 = 0, col = 0; c0 < k; c0 += tile_cols, ++col) {
    const int64_t steps = std::min(tile_cols, k - c0) / kLanes;
    const int64_t first = codec::VlcFirstOnDemandStep(static_cast<uint32_t>(steps));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint64_t t = first_tile[r] + static_cast<uint64_t>(col);
      end[r] = w.codes + w.Offset(t + 1);
      lanes[r] = codec::vlci::Start<false>(w.codes + w.Offset(t), end[r],
                                           static_cast<uint32_t>(first), ~__mmask32{0}, nullptr);
    }
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t i = c0 + s * kLanes;
      __m512 wv[R][2];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (s % 2 == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(rest[r] + i + ahead), _MM_HINT_T1);
          _mm_prefetch(reinterpret_cast<const char*>(lanes[r].p + ahead / 4), _MM_HINT_T1);
        }
        // Steps before the on-demand ones refill for the next (none before
        // the first on-demand step).
        const __m512i e =
            s < first ? codec::vlci::Step<false, false>(tables, lanes[r], end[r], ~__mmask32{0},
                                                        s + 1 < first ? ~__mmask32{0} : 0, nullptr)
                      : codec::vlci::Step<false, true>(tables, lanes[r], end[r], ~__mmask32{0}, 0,
                                                       nullptr);
        // Each rest byte in both bytes of its word; then bit 15 is the sign
        // (rest bit 7 of the high copy), bits 0..6 the mantissa (the low
        // copy), and bits 7..14 take the exponent.
        const __m512i rr = _mm512_permutexvar_epi8(
            dup, _mm512_castsi256_si512(
                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rest[r] + i))));
        const __m512i bf16 = _mm512_ternarylogic_epi32(exponent, e, rr, 0xca);
        if constexpr (std::is_same_v<X, uint16_t>) {
          // The bf16 mode: the step's 32 weights are one vdpbf16ps chunk.
          for (int t = 0; t < T; ++t) {
            acc[t][r] = DotBf16(acc[t][r], _mm512_loadu_si512(x + t * x_stride + i), bf16);
          }
        } else {
          // fp32 = bf16 << 16: word j of each half into the high word of
          // dword j.
          const __mmask32 high_words = codec::vlci::OpaqueMask(kHighWords);
          wv[r][0] = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(high_words, half0, bf16));
          wv[r][1] = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(high_words, half1, bf16));
        }
      }
      if constexpr (std::is_same_v<X, float>) {  // (the bf16 mode multiplied per row above)
        for (int h = 0; h < 2; ++h) {
          for (int t = 0; t < T; ++t) {
            const __m512 xv = _mm512_loadu_ps(x + t * x_stride + i + 16 * h);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r][h], acc[t][r]);
          }
        }
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < R; ++r) out[t * out_stride + r] = ReduceLanes(acc[t][r]);
  }
}

template <int T, int R, typename X>
PACKD_SPLIT_TARGET void SplitTile(const X* x, int64_t x_stride, const uint8_t* exps,
                                  const uint8_t* rest, int64_t k, float* out, int64_t out_stride) {
  RowsTile<T, R>(x, x_stride, BufferSource<R>(exps, rest, k), k, out, out_stride);
}

// Tile tables: [T][R] for T <= kTokens, R <= kRows (index 0 unused).
// One token: 4 rows in flight (4 FMA chains); several: up to 8 tokens x 2
// rows (16 accumulators; each decoded weight vector feeds up to 8 FMAs, so a
// row is decoded once per 8 tokens).
constexpr int kTokens = 8, kRows = 4, kBatchRows = 2;

template <template <int, int> class Fn, typename Ptr, int T, int... Rs>
constexpr void FillRow(Ptr (&table)[kTokens + 1][kRows + 1], std::integer_sequence<int, Rs...>) {
  ((table[T][Rs + 1] = Fn<T, Rs + 1>::kFn), ...);
}

template <typename X>
struct Fns {
  template <int T, int R>
  struct Tiled {
    static constexpr auto kFn = &TiledTile<T, R, X>;
  };
  template <int T, int R>
  struct Split {
    static constexpr auto kFn = &SplitTile<T, R, X>;
  };
  template <int T, int R>
  struct Vlc {
    static constexpr auto kFn = &VlcTile<T, R, X>;
  };
};

template <template <int, int> class Fn, typename Ptr>
struct Table {
  Ptr fn[kTokens + 1][kRows + 1] = {};
  constexpr Table() {
    FillRow<Fn, Ptr, 1>(fn, std::make_integer_sequence<int, kRows>());
    FillRow<Fn, Ptr, 2>(fn, std::make_integer_sequence<int, kBatchRows>());
    FillRow<Fn, Ptr, 3>(fn, std::make_integer_sequence<int, kBatchRows>());
    FillRow<Fn, Ptr, 4>(fn, std::make_integer_sequence<int, kBatchRows>());
    FillRow<Fn, Ptr, 5>(fn, std::make_integer_sequence<int, kBatchRows>());
    FillRow<Fn, Ptr, 6>(fn, std::make_integer_sequence<int, kBatchRows>());
    FillRow<Fn, Ptr, 7>(fn, std::make_integer_sequence<int, kBatchRows>());
    FillRow<Fn, Ptr, 8>(fn, std::make_integer_sequence<int, kBatchRows>());
  }
};
template <typename X>
constexpr Table<Fns<X>::template Tiled, decltype(&TiledTile<1, 1, X>)> kTiled;
template <typename X>
constexpr Table<Fns<X>::template Split, decltype(&SplitTile<1, 1, X>)> kSplit;
template <typename X>
constexpr Table<Fns<X>::template Vlc, decltype(&VlcTile<1, 1, X>)> kVlc;

// Walks the output in tiles: rows in blocks of the tile height (one token:
// kRows; several: kBatchRows), tokens in groups of kTokens within a block,
// so a block's weights stay in cache while every token group passes over it.
template <typename Run>
void ForEachTile(int64_t n, int64_t rows, Run run) {
  const int64_t block = n == 1 ? kRows : kBatchRows;
  for (int64_t r = 0; r < rows; r += block) {
    const int rr = static_cast<int>(std::min<int64_t>(block, rows - r));
    for (int64_t t = 0; t < n; t += kTokens) {
      run(t, static_cast<int>(std::min<int64_t>(kTokens, n - t)), r, rr);
    }
  }
}

// fp32 token groups of at least kBlockTokens go through TiledBlock (at 2–4
// tokens it measured no faster; the bf16 mode's x is half the size and was
// not measured with it).
constexpr int kBlockTokens = 5;
constexpr decltype(&TiledBlock<kBlockTokens, float>) kTiledBlock[kTokens + 1] = {
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    &TiledBlock<5, float>,
    &TiledBlock<6, float>,
    &TiledBlock<7, float>,
    &TiledBlock<8, float>};
static_assert(kTokens == 8 && kBlockTokens == 5, "kTiledBlock lists TiledBlock<5..kTokens>");

template <typename X>
void GemmTiled(const X* x, int64_t n, int64_t x_stride, const codec::TiledRowsView& w, int64_t row0,
               int64_t rows, float* out, int64_t out_stride) {
  for (int64_t t0 = 0; t0 < n; t0 += kTokens) {
    const int64_t group = std::min<int64_t>(kTokens, n - t0);
    const X* xg = x + t0 * x_stride;
    float* og = out + t0 * out_stride;
    if constexpr (std::is_same_v<X, float>) {
      if (group >= kBlockTokens) {
        kTiledBlock[group](xg, x_stride, w, row0, rows, og, out_stride);
        continue;
      }
    }
    ForEachTile(group, rows, [&](int64_t t, int tt, int64_t r, int rr) {
      kTiled<X>.fn[tt][rr](xg + t * x_stride, x_stride, w, row0 + r, og + t * out_stride + r,
                           out_stride);
    });
  }
}

template <typename X>
void GemmVlc(const X* x, int64_t n, int64_t x_stride, const codec::VlcInterleavedRowsView& w,
             int64_t row0, int64_t rows, float* out, int64_t out_stride) {
  ForEachTile(n, rows, [&](int64_t t, int tt, int64_t r, int rr) {
    kVlc<X>.fn[tt][rr](x + t * x_stride, x_stride, w, row0 + r, out + t * out_stride + r,
                       out_stride);
  });
}

template <typename X>
void GemmSplit(const X* x, int64_t n, int64_t x_stride, const uint8_t* exps, const uint8_t* rest,
               int64_t rows, int64_t k, float* out, int64_t out_stride) {
  ForEachTile(n, rows, [&](int64_t t, int tt, int64_t r, int rr) {
    kSplit<X>.fn[tt][rr](x + t * x_stride, x_stride, exps + r * k, rest + r * k, k,
                         out + t * out_stride + r, out_stride);
  });
}

constexpr SplitGemmKernels kAvx512Split = {
    .tiled = GemmTiled<float>, .vlc = GemmVlc<float>, .split = GemmSplit<float>};
constexpr SplitGemmBf16Kernels kAvx512SplitBf16 = {
    .tiled = GemmTiled<uint16_t>, .vlc = GemmVlc<uint16_t>, .split = GemmSplit<uint16_t>};

// The tiled codec's AVX-512 decoder needs the same VBMI/VBMI2/BMI2/POPCNT
// set. The hardware's, like GetKernelsFor: the PACKD_CPU_ISA cap reaches
// GetSplitGemmKernels() through GetKernels().isa.
bool CpuHasSplitIsa() {
  return codec::TiledAvx512Supported() && codec::VlcInterleavedAvx512Supported();
}

}  // namespace

const SplitGemmKernels* GetSplitGemmKernelsFor(Isa isa) {
  static const bool supported = CpuHasSplitIsa();
  return isa == Isa::kAvx512 && GetKernelsFor(isa).isa == Isa::kAvx512 && supported ? &kAvx512Split
                                                                                    : nullptr;
}

const SplitGemmKernels* GetSplitGemmKernels() { return GetSplitGemmKernelsFor(GetKernels().isa); }

const SplitGemmBf16Kernels* GetSplitGemmBf16KernelsFor(Isa isa) {
  static const bool bf16 = HardwareCpuFeatures().avx512bf16;
  return GetSplitGemmKernelsFor(isa) != nullptr && bf16 ? &kAvx512SplitBf16 : nullptr;
}

const SplitGemmBf16Kernels* GetSplitGemmBf16Kernels() {
  return GetSplitGemmBf16KernelsFor(GetKernels().isa);
}

}  // namespace packd::engine::cpu

#else  // !defined(__x86_64__)

namespace packd::engine::cpu {
const SplitGemmKernels* GetSplitGemmKernelsFor(Isa) { return nullptr; }
const SplitGemmKernels* GetSplitGemmKernels() { return nullptr; }
const SplitGemmBf16Kernels* GetSplitGemmBf16KernelsFor(Isa) { return nullptr; }
const SplitGemmBf16Kernels* GetSplitGemmBf16Kernels() { return nullptr; }
}  // namespace packd::engine::cpu

#endif
