// bf16_gemm.h's kernels: AVX-512 with AVX512-BF16, on RunGemm's blocking
// (kernels_internal.h) with bf16 activations.
//
// Only functions compiled with the target attribute below contain AVX-512
// code; this file is compiled for baseline x86-64 like the rest, and nothing
// here runs unless GetBf16GemmKernelsFor found the CPU features.
#include "engine/cpu/bf16_gemm.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include "base/cpu_features.h"
#include "engine/cpu/avx512_lanes.h"
#include "engine/cpu/kernels_internal.h"

#define PACKD_AVX512_BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))

namespace packd::engine::cpu {
namespace {

using codec::DType;
using internal::GemmTilesOf;

// bf16 elements per vdpbf16ps: 16 fp32 lanes, a pair of products each.
constexpr int kChunk = 32;

// Mask of the first `count` 16-bit lanes (count in [0, 32)).
PACKD_AVX512_BF16 inline __mmask32 FirstWords(int64_t count) {
  return static_cast<__mmask32>((uint32_t{1} << count) - 1u);
}

PACKD_AVX512_BF16 inline __m512 Dot(__m512 acc, __m512i x, __m512i w) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(x), reinterpret_cast<__m512bh&>(w));
}

// out[t * out_stride + r] = ReduceLanes(acc[t][r]) for a 4 x 4 tile, all 16
// trees at once: each level's additions pair the lanes ReduceLanes pairs
// (i and i + 8, i and i + 4, i and i + 2, 0 and 1), four or eight outputs
// per vector, so every output gets the same additions of the same values.
PACKD_AVX512_BF16 inline void ReduceTile4x4(const __m512 (&acc)[4][4], float* out,
                                            int64_t out_stride) {
  // Level 1: v[m] = lanes 0-7 + lanes 8-15 of acc o = 2m (low half) and of
  // o = 2m + 1 (high half), with o = r * 4 + t (so the last level's 128-bit
  // quarter t holds token t's four rows).
  __m512 v[8];
  for (int m = 0; m < 8; ++m) {
    const __m512 a = acc[(2 * m) % 4][(2 * m) / 4], b = acc[(2 * m + 1) % 4][(2 * m + 1) / 4];
    v[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  }
  // Level 2: quarter j of u[p] = lanes 0-3 + lanes 4-7 of output o = 4p + j.
  __m512 u[4];
  for (int p = 0; p < 4; ++p) {
    u[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x88),
                         _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xdd));
  }
  // Level 3: quarter j of y[q] = [lanes 0 + 2, 1 + 3 of o = 8q + j, the same
  // of o = 8q + 4 + j].
  __m512 y[2];
  for (int q = 0; q < 2; ++q) {
    y[q] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * q], u[2 * q + 1], 0x44),
                         _mm512_shuffle_ps(u[2 * q], u[2 * q + 1], 0xee));
  }
  // Level 4: quarter j = lanes 0 + 1 of o = j, 4 + j, 8 + j, 12 + j: token
  // j, rows 0..3.
  const __m512 s =
      _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xdd));
  _mm_storeu_ps(out, _mm512_castps512_ps128(s));
  _mm_storeu_ps(out + out_stride, _mm512_extractf32x4_ps(s, 1));
  _mm_storeu_ps(out + 2 * out_stride, _mm512_extractf32x4_ps(s, 2));
  _mm_storeu_ps(out + 3 * out_stride, _mm512_extractf32x4_ps(s, 3));
}

// T tokens x R rows over the whole of k, every output by the sequence of
// bf16_gemm.h (x is always vdpbf16ps's first factor, w its second). D is
// always kBF16 (MakeGemmTiles' tile signature).
template <DType D, int T, int R>
struct Bf16Tile {
  PACKD_AVX512_BF16 static void Run(const uint16_t* x, int64_t x_stride, const uint8_t* w,
                                    int64_t k, float* out, int64_t out_stride) {
    static_assert(D == DType::kBF16);
    const int64_t row_bytes = k * 2;
    __m512 acc[T][R];
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
    }
    const int64_t full = k - k % kChunk;
    for (int64_t i = 0; i < full; i += kChunk) {
      __m512i wv[R];
      // The weights stream from DRAM (at one token wholly; at several, the
      // first token group of a row block), 64 bytes per row per step:
      // without the prefetch the core waits on memory (bench/NOTES.md, "CPU
      // bf16 matmul mode").
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(
            reinterpret_cast<const char*>(w + r * row_bytes + i * 2 + internal::kGemmPrefetchBytes),
            _MM_HINT_T1);
      }
      for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_si512(w + r * row_bytes + i * 2);
      for (int t = 0; t < T; ++t) {
        const __m512i xv = _mm512_loadu_si512(x + t * x_stride + i);
        for (int r = 0; r < R; ++r) acc[t][r] = Dot(acc[t][r], xv, wv[r]);
      }
    }
    if (full < k) {
      const __mmask32 mask = FirstWords(k - full);
      __m512i wv[R];
      for (int r = 0; r < R; ++r) {
        wv[r] = _mm512_maskz_loadu_epi16(mask, w + r * row_bytes + full * 2);
      }
      for (int t = 0; t < T; ++t) {
        const __m512i xv = _mm512_maskz_loadu_epi16(mask, x + t * x_stride + full);
        for (int r = 0; r < R; ++r) acc[t][r] = Dot(acc[t][r], xv, wv[r]);
      }
    }
    if constexpr (T == 4 && R == 4) {
      ReduceTile4x4(acc, out, out_stride);
    } else {
      for (int t = 0; t < T; ++t) {
        for (int r = 0; r < R; ++r) out[t * out_stride + r] = internal::ReduceLanes(acc[t][r]);
      }
    }
  }
};

// 4 tokens x 4 rows: 16 accumulators, 4 weight vectors and x; per 32
// elements of k, 8 loads feed 16 dot products. One token: 8 rows at a time
// (8 weight streams in flight).
constexpr int kTokens = 4, kRows = 4, kDecodeRows = 8;
constexpr GemmTilesOf<uint16_t> kTiles =
    internal::MakeGemmTiles<Bf16Tile, DType::kBF16, kTokens, kRows, kDecodeRows, uint16_t>();

void Gemm(const uint16_t* x, int64_t n, int64_t x_stride, const void* w, int64_t rows, int64_t k,
          float* out, int64_t out_stride) {
  internal::RunGemm(&kTiles, x, n, x_stride, w, rows, k, out, out_stride);
}

PACKD_AVX512_BF16 void Round(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), reinterpret_cast<const __m256i&>(h));
  }
  if (i < n) {
    const __mmask16 mask = internal::FirstLanes(n - i);
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + i));
    _mm256_mask_storeu_epi16(out + i, mask, reinterpret_cast<const __m256i&>(h));
  }
}

constexpr Bf16GemmKernels kAvx512Bf16 = {.round = Round, .gemm = Gemm};

}  // namespace

const Bf16GemmKernels* GetBf16GemmKernelsFor(Isa isa) {
  static const bool supported = HardwareCpuFeatures().avx512bf16;
  return isa == Isa::kAvx512 && GetKernelsFor(isa).isa == Isa::kAvx512 && supported ? &kAvx512Bf16
                                                                                    : nullptr;
}

const Bf16GemmKernels* GetBf16GemmKernels() { return GetBf16GemmKernelsFor(GetKernels().isa); }

}  // namespace packd::engine::cpu

#else  // !defined(__x86_64__)

namespace packd::engine::cpu {
const Bf16GemmKernels* GetBf16GemmKernelsFor(Isa) { return nullptr; }
const Bf16GemmKernels* GetBf16GemmKernels() { return nullptr; }
}  // namespace packd::engine::cpu

#endif
