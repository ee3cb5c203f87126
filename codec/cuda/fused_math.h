// The per-lane logic of the fused decode-in-matmul kernels (fused_matmul.cu),
// as host+device inline functions: the kernels call them for their lane, and
// fused_matmul_test.cc calls the very same functions for all 32 lanes of every
// warp on the host, so the CPU test computes the exact bits the GPU must
// produce (IEEE fp32 FMA is correctly rounded on both).
//
// ## The reduction order (what makes compressed and raw bit-identical)
//
// out[b][m] = sum over k of x[b][k] * w[m][k], for x and w in the weight's
// half type (bf16 or f16: x is rounded to it first, as the GEMM path does), so
// every product is exact in fp32. Every fused kernel — over raw weights, over
// `tiled` weights decoded in registers, over any codec staged in shared
// memory — computes each output element in this one order:
//
//   1. Column k belongs to lane (k mod 256) / 8: a row is a run of 256-column
//      chunks, and lane L takes columns [8L, 8L + 8) of each chunk.
//   2. Lane L's partial is a chain of fmaf over its columns in ascending
//      order, starting from +0.0f; a column past the row's end is skipped
//      (never an fma with 0, which would turn an Inf product into NaN).
//   3. The 32 partials are summed by the xor butterfly 16, 8, 4, 2, 1
//      (v += shfl_xor(v, d)); IEEE addition is commutative, so every lane
//      ends with the same bits.
//
// The order depends on nothing but (m, k): not on the batch size n, not on
// how many rows a warp handles, not on the codec or its tile width. So the
// raw kernel is the bitwise reference of every compressed one, and a
// token's result is the same in every batch of n <= kFusedMaxBatch.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "codec/cuda/decode_math.h"
#include "codec/cuda/device_image_layout.h"
#include "codec/cuda/vlc_lanes.h"

// Full unrolling of the constant-trip loops over batch rows, weight rows and
// a lane's 8 columns, so that their arrays stay in registers on the device.
#if defined(__CUDA_ARCH__)
#define PACKD_UNROLL _Pragma("unroll")
#else
#define PACKD_UNROLL
#endif

namespace packd::codec::cuda {

// The largest batch (activation rows) a fused kernel takes.
inline constexpr int kFusedMaxBatch = 32;
// Shared memory the staged kernel may use per block (rows of decoded
// weights, plus the vlc table): 2 blocks fit an H100/H200 SM.
inline constexpr uint64_t kFusedStagedSmemBytes = 96 * 1024;
// Rows the staged kernel decodes per band, at most (8 warps, 2 rows each).
inline constexpr uint64_t kFusedStagedMaxRows = 16;

// ---- Scalars.

PACKD_HD inline float Fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

PACKD_HD inline float FloatFromBits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
#endif
}

// The exact fp32 value of a bf16 (bf16 = true) or f16 bit pattern (low 16
// bits of h). Integer ops only (plus one exact multiply for f16 subnormals),
// so host and device agree on every pattern, NaN payloads included.
PACKD_HD inline float HalfToFloat(uint32_t h, bool bf16) {
  if (bf16) return FloatFromBits(h << 16);
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 31u;
  const uint32_t m = h & 0x3ffu;
  if (e == 31) return FloatFromBits(sign | 0x7f800000u | (m << 13));
  if (e != 0) return FloatFromBits(sign | ((e + 112) << 23) | (m << 13));
  // Subnormal or zero: m * 2^-24, exact in fp32.
  const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
  return sign != 0 ? -v : v;
}

// Four little-endian bf16 in v to w[at .. at + 4): one op each (a bf16 is
// the high half of its fp32).
PACKD_HD inline void Bf16x4ToFloats(uint64_t v, float (&w)[8], uint32_t at) {
  for (uint32_t i = 0; i < 2; ++i) {
    const uint32_t word = static_cast<uint32_t>(v >> (32 * i));
    w[at + 2 * i] = FloatFromBits(word << 16);
    w[at + 2 * i + 1] = FloatFromBits(word & 0xffff0000u);
  }
}

// Up to 8 consecutive half elements at p (2-byte aligned) to floats; w[j]
// for j >= valid is left as it is. One pair of 8-byte loads when p is 16-byte
// aligned and all 8 are wanted.
template <bool kNc>
PACKD_HD inline void LoadHalf8(const uint8_t* p, uint32_t valid, bool bf16, float (&w)[8]) {
  if (valid == 8 && (reinterpret_cast<uintptr_t>(p) & 15) == 0) {
    uint64_t lo, hi;
    LoadAligned16<kNc>(p, lo, hi);
    if (bf16) {
      Bf16x4ToFloats(lo, w, 0);
      Bf16x4ToFloats(hi, w, 4);
      return;
    }
    for (uint32_t j = 0; j < 4; ++j) {
      w[j] = HalfToFloat(static_cast<uint32_t>(lo >> (16 * j)) & 0xffffu, bf16);
      w[4 + j] = HalfToFloat(static_cast<uint32_t>(hi >> (16 * j)) & 0xffffu, bf16);
    }
    return;
  }
  for (uint32_t j = 0; j < 8; ++j) {
    if (j < valid) w[j] = HalfToFloat(LoadAligned<uint16_t, kNc>(p + 2 * j), bf16);
  }
}

// ---- Activations: x [n, k] in the weight's half type, row stride ldx
// elements, in global memory.
struct FusedX {
  const uint8_t* data = nullptr;
  uint64_t ldx = 0;  // elements
  bool bf16 = true;

  PACKD_HD void Load(int b, uint64_t col0, uint32_t valid, float (&v)[8]) const {
    LoadHalf8<true>(data + 2 * (uint64_t(b) * ldx + col0), valid, bf16, v);
  }
};

// ---- Weight rows. A row source yields, chunk after chunk (c = 0, 1, ...,
// each exactly once and in order, by every lane), the lane's 8 weights of the
// chunk as floats and how many lie inside the row.

// A half row of k elements at `row` (global memory: kNc; shared: !kNc).
template <bool kNc>
struct RawRow {
  const uint8_t* row = nullptr;
  uint64_t k = 0;
  bool bf16 = true;

  PACKD_HD uint32_t Next(uint64_t c, uint32_t lane, float (&w)[8]) {
    const uint64_t col0 = LaneCol0(c, lane);
    const uint32_t valid = LaneValid(col0, k);
    if (valid > 0) LoadHalf8<kNc>(row + 2 * col0, valid, bf16, w);
    return valid;
  }
};

// The lane's `valid` (1..8) weights from their exponents (byte j of exps)
// and the rest plane, elements e0, e0 + 1, ... of the tensor, as floats.
// Returns valid.
PACKD_HD inline uint32_t JoinLane8(const DeviceImageLayout& L, const uint8_t* image, uint64_t e0,
                                   uint32_t valid, uint64_t exps, float (&w)[8]) {
  const uint8_t* plane = image + L.rest_offset;
  const bool bf16 = L.exp_bits == 8;
  if (bf16 && valid == 8 && (e0 & 7) == 0) {
    uint64_t lo, hi;
    JoinBF16x8(exps, LoadU64(plane + e0), lo, hi);
    Bf16x4ToFloats(lo, w, 0);
    Bf16x4ToFloats(hi, w, 4);
    return 8;
  }
  PACKD_UNROLL
  for (uint32_t j = 0; j < 8; ++j) {
    if (j < valid) {
      const uint32_t e = static_cast<uint32_t>(exps >> (8 * j)) & 0xffu;
      const uint32_t v = JoinElement(L, e, ReadRest(plane, L.rest_bytes, e0 + j, L.rest_bits));
      w[j] = HalfToFloat(v, bf16);
    }
  }
  return valid;
}

#if defined(__CUDA_ARCH__)
// TiledLaneChunk for a whole warp at once (every lane calls it): each lane
// loads only its own 8 codes (TiledLaneCodesInTile: one 8-byte load; the 32
// lanes read the chunk's 128 code bytes together) and counts its own
// escapes; an inclusive scan of those counts over the warp's lanes by
// shuffles gives each lane the escapes before its elements (lanes are in
// element order) and lane 31 the chunk's total. TiledLaneChunk instead has
// every lane load and count all four groups. Same results (decode_math_test
// replays this scan on the host); TiledLaneCodesInTile and
// TiledLaneExponents are shared with it.
__device__ __forceinline__ uint32_t TiledLaneChunkWarp(const uint8_t* codes, uint32_t size,
                                                       uint64_t c0, uint32_t lane,
                                                       uint32_t window_base, const uint8_t* escapes,
                                                       uint32_t esc_index, uint32_t esc_end,
                                                       uint64_t* exps, uint32_t* chunk_escapes) {
  uint64_t lane_codes = 0;
  uint32_t escape_bits = 0;
  const uint32_t n = TiledLaneCodesInTile(codes, size, c0, lane, &lane_codes, &escape_bits);
  const uint32_t count = Popcount64(escape_bits);
  uint32_t through = count;  // escapes of lanes 0..lane
#pragma unroll
  for (uint32_t d = 1; d < 32; d *= 2) {
    const uint32_t below = __shfl_up_sync(0xffffffffu, through, d);
    if (lane >= d) through += below;
  }
  *chunk_escapes += __shfl_sync(0xffffffffu, through, 31);
  if (n > 0) {
    *exps = TiledLaneExponents(lane_codes, escape_bits, window_base, escapes,
                               esc_index + through - count, esc_end);
  }
  return n;
}
#endif

// Row `row` of a `tiled` image whose grid rows are the tensor's rows and
// whose tile width is a multiple of kFusedChunk (TiledRowsFuse), decoded in
// registers: a chunk never straddles two tiles, and the lane's elements of it
// are exactly TiledLaneChunk's.
struct TiledRow {
  const DeviceImageLayout* L = nullptr;
  const uint8_t* image = nullptr;
  uint64_t row = 0;
  // The current tile (its index in the row, its groups, size and escape
  // range), the chunk's offset in it, and the escapes index of the chunk's
  // first escape. Chunks come in order, so these advance by adds: no
  // division per chunk.
  uint64_t tile_col = 0;
  uint64_t c0 = 0;
  const uint8_t* codes = nullptr;
  uint32_t size = 0;
  uint32_t esc_index = 0;
  uint32_t esc_end = 0;

  PACKD_HD void StartTile() {
    const uint64_t t = row * L->tiles_per_row + tile_col;
    codes =
        image + L->codes_offset +
        (row * L->groups_per_row + tile_col * L->groups_per_full_tile) * uint64_t{kTiledGroupBytes};
    size = static_cast<uint32_t>(MinU64(L->tile_cols, L->grid_cols - tile_col * L->tile_cols));
    esc_index = LoadU32(image + L->offsets_offset + 4 * t);
    esc_end = LoadU32(image + L->offsets_offset + 4 * (t + 1));
    c0 = 0;
  }

  PACKD_HD uint32_t Next(uint64_t c, uint32_t lane, float (&w)[8]) {
    if (c == 0) {
      tile_col = 0;
      StartTile();
    } else {
      c0 += kFusedChunk;
      if (c0 == L->tile_cols) {
        ++tile_col;
        StartTile();
      }
    }
    uint64_t exps = 0;
    const uint32_t index = esc_index;
#if defined(__CUDA_ARCH__)
    const uint32_t valid =
        TiledLaneChunkWarp(codes, size, c0, lane, L->window_base, image + L->escapes_offset, index,
                           esc_end, &exps, &esc_index);
#else
    const uint32_t valid =
        TiledLaneChunk(codes, size, c0, lane, L->window_base, image + L->escapes_offset, index,
                       esc_end, &exps, &esc_index);
#endif
    if (valid == 0) return 0;
    return JoinLane8(*L, image, row * L->grid_cols + LaneCol0(c, lane), valid, exps, w);
  }
};

#if defined(__CUDACC__)
// Row `row` of a kVlcLanes image (vlc_lanes.h), decoded by the warp's lanes
// together: device only (ballots); the host twins decode the row with
// HostVlcLanesRow first. `multi` is the table in shared memory.
struct VlcLanesRow {
  const DeviceImageLayout* L = nullptr;
  const uint8_t* image = nullptr;
  const uint64_t* multi = nullptr;
  uint64_t row = 0;
  VlcLane lane;
  uint64_t at = 0, end = 0;

  __device__ uint32_t Next(uint64_t c, uint32_t lane_id, float (&w)[8]) {
    if (c == 0) {
      at = VlcLanesRowOffset(*L, image, row);
      end = VlcLanesRowOffset(*L, image, row + 1);
      lane = VlcLane();
    }
    const uint64_t col0 = LaneCol0(c, lane_id);
    const uint32_t valid = LaneValid(col0, L->tensor_cols);
    const uint64_t exps = WarpVlcLanesChunk(lane, valid, multi, image + L->codes_offset, at, end);
    if (valid == 0) return 0;
    return JoinLane8(*L, image, row * L->tensor_cols + col0, valid, exps, w);
  }
};
#endif

// Whether a layout's rows can be read by TiledRow.
PACKD_HD inline bool TiledRowsFuse(const DeviceImageLayout& L) {
  return L.kind == DeviceCodecKind::kTiled && L.elem_bytes == 2 && L.grid_cols == L.tensor_cols &&
         L.grid_rows == L.tensor_rows && L.tile_cols % kFusedChunk == 0;
}

// Rows per band of the staged kernel for a layout: as many decoded rows as
// fit kFusedStagedSmemBytes beside the vlc table, at most
// kFusedStagedMaxRows; 0 when not even one row fits (or the tensor is not a
// half matrix).
PACKD_HD inline uint64_t StagedRows(const DeviceImageLayout& L) {
  if (L.elem_bytes != 2 || L.tensor_cols == 0) return 0;
  const uint64_t row_bytes = 2 * L.tensor_cols;
  const uint64_t room = kFusedStagedSmemBytes - kVlcTableBytes;
  return MinU64(kFusedStagedMaxRows, room / row_bytes);
}

// ---- The order (steps 1-3 above).

// Lane `lane`'s partials for `nrows` rows (row sources rows[0..nrows)) and
// n <= NB activation rows: acc[r][b] for b < n. Every lane of a warp must
// call it (the row sources keep per-chunk state).
template <int NB, int RW, class Row>
PACKD_HD inline void LaneAccumulate(Row (&rows)[RW], int nrows, uint32_t lane, const FusedX& x,
                                    int n, uint64_t k, float (&acc)[RW][NB]) {
  PACKD_UNROLL
  for (int r = 0; r < RW; ++r) {
    PACKD_UNROLL
    for (int b = 0; b < NB; ++b) acc[r][b] = 0.0f;
  }
  const uint64_t chunks = FusedChunks(k);
  for (uint64_t c = 0; c < chunks; ++c) {
    float w[RW][8];
    uint32_t valid = 0;
    PACKD_UNROLL
    for (int r = 0; r < RW; ++r) {
      if (r < nrows) valid = rows[r].Next(c, lane, w[r]);
    }
    if (valid == 0) continue;
    const uint64_t col0 = LaneCol0(c, lane);
    PACKD_UNROLL
    for (int b = 0; b < NB; ++b) {
      if (b < n) {
        float xs[8];
        x.Load(b, col0, valid, xs);
        PACKD_UNROLL
        for (int r = 0; r < RW; ++r) {
          if (r < nrows) {
            PACKD_UNROLL
            for (uint32_t j = 0; j < 8; ++j) {
              if (j < valid) acc[r][b] = Fma(w[r][j], xs[j], acc[r][b]);
            }
          }
        }
      }
    }
  }
}

// Step 3 on the host: the butterfly over 32 lane partials, as the shuffles
// compute it (all lanes end equal; lane 0's value is returned).
inline float HostButterflySum(const float (&partials)[kFusedLanes]) {
  float v[kFusedLanes];
  for (uint32_t i = 0; i < kFusedLanes; ++i) v[i] = partials[i];
  for (uint32_t d = kFusedLanes / 2; d >= 1; d /= 2) {
    float next[kFusedLanes];
    for (uint32_t i = 0; i < kFusedLanes; ++i) next[i] = v[i] + v[i ^ d];
    for (uint32_t i = 0; i < kFusedLanes; ++i) v[i] = next[i];
  }
  return v[0];
}

}  // namespace packd::codec::cuda
