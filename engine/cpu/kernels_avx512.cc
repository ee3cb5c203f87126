// AVX-512 (F + BW + VL) kernels: 16 fp32 lanes, masked loads for tails.
//
// Only functions marked PACKD_AVX512 contain AVX-512 code; this file is
// compiled for baseline x86-64 like the rest, and nothing here runs unless
// DetectIsa() found AVX-512 (base/cpu_features.h).
#include "engine/cpu/kernels_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "engine/cpu/avx512_lanes.h"

namespace packd::engine::cpu::internal {
namespace {

using codec::DType;

constexpr int kLanes = 16;

// 16 weights of type D at p, as fp32; `mask` selects the lanes to read (the
// others are 0 and their memory is not touched).
template <DType D>
PACKD_AVX512 __m512 LoadWeights(const uint8_t* p, __mmask16 mask) {
  if constexpr (D == DType::kF32) {
    return _mm512_maskz_loadu_ps(mask, p);
  } else {
    const __m256i h = _mm256_maskz_loadu_epi16(mask, p);
    if constexpr (D == DType::kF16) {
      return _mm512_cvtph_ps(h);
    } else {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}
template <DType D>
PACKD_AVX512 __m512 LoadWeights(const uint8_t* p) {
  if constexpr (D == DType::kF32) {
    return _mm512_loadu_ps(p);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (D == DType::kF16) {
      return _mm512_cvtph_ps(h);
    } else {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
}

template <DType D, int T, int R>
struct Avx512Tile {
  __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) static void Run(
      const float* x, int64_t x_stride, const uint8_t* w, int64_t k, float* out,
      int64_t out_stride) {
    constexpr int64_t kElemBytes = D == DType::kF32 ? 4 : 2;
    const int64_t row_bytes = k * kElemBytes;
    __m512 acc[T][R];
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
    }
    const int64_t full = k - k % kLanes;
    for (int64_t i = 0; i < full; i += kLanes) {
      __m512 wv[R];
      // The weights stream from DRAM (at one token wholly; at several, the
      // first token group of a row block): prefetch into L2 a few rows
      // ahead, one line per 64 bytes (the hardware prefetchers alone leave
      // the core waiting; bench/NOTES.md, issue 19).
      if ((i * kElemBytes) % 64 == 0) {
        for (int r = 0; r < R; ++r) {
          _mm_prefetch(reinterpret_cast<const char*>(w + r * row_bytes + i * kElemBytes +
                                                     kGemmPrefetchBytes),
                       _MM_HINT_T1);
        }
      }
      for (int r = 0; r < R; ++r) wv[r] = LoadWeights<D>(w + r * row_bytes + i * kElemBytes);
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_loadu_ps(x + t * x_stride + i);
        for (int r = 0; r < R; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
      }
    }
    if (full < k) {
      const __mmask16 mask = FirstLanes(k - full);
      __m512 wv[R];
      for (int r = 0; r < R; ++r) {
        wv[r] = LoadWeights<D>(w + r * row_bytes + full * kElemBytes, mask);
      }
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_maskz_loadu_ps(mask, x + t * x_stride + full);
        for (int r = 0; r < R; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
      }
    }
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) out[t * out_stride + r] = ReduceLanes(acc[t][r]);
    }
  }
};

// 4 tokens x 4 rows: 16 accumulators + 4 weight vectors + x in 32 registers;
// per 16 elements of k, 8 loads feed 16 FMAs. One token: 8 rows at a time
// (8 weight streams in flight).
constexpr int kTokens = 4, kRows = 4, kDecodeRows = 8;
constexpr GemmTiles kTilesF32 =
    MakeGemmTiles<Avx512Tile, DType::kF32, kTokens, kRows, kDecodeRows>();
constexpr GemmTiles kTilesF16 =
    MakeGemmTiles<Avx512Tile, DType::kF16, kTokens, kRows, kDecodeRows>();
constexpr GemmTiles kTilesBF16 =
    MakeGemmTiles<Avx512Tile, DType::kBF16, kTokens, kRows, kDecodeRows>();

void Gemm(const float* x, int64_t n, int64_t x_stride, const void* w, DType wtype, int64_t rows,
          int64_t k, float* out, int64_t out_stride) {
  const GemmTiles* tiles = wtype == DType::kF32    ? &kTilesF32
                           : wtype == DType::kF16  ? &kTilesF16
                           : wtype == DType::kBF16 ? &kTilesBF16
                                                   : nullptr;
  RunGemm(tiles, x, n, x_stride, w, rows, k, out, out_stride);
}

template <DType D>
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void ConvertToF32(
    const uint8_t* src, int64_t n, float* dst) {
  constexpr int64_t kElemBytes = D == DType::kF32 ? 4 : 2;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    _mm512_storeu_ps(dst + i, LoadWeights<D>(src + i * kElemBytes));
  if (i < n) {
    const __mmask16 mask = FirstLanes(n - i);
    _mm512_mask_storeu_ps(dst + i, mask, LoadWeights<D>(src + i * kElemBytes, mask));
  }
}

void ToF32(const void* src, DType type, int64_t n, float* dst) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
      return ConvertToF32<DType::kF16>(p, n, dst);
    case DType::kBF16:
      return ConvertToF32<DType::kBF16>(p, n, dst);
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = std::nanf("");
      return;
  }
}

// Same sequence as a one-token, one-row F32 gemm tile.
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) float Dot(const float* a,
                                                                             const float* b,
                                                                             int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  }
  if (i < n) {
    const __mmask16 mask = FirstLanes(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i),
                          acc);
  }
  return ReduceLanes(acc);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void RmsNorm(
    const float* x, const float* w, int64_t d, float eps, float* out) {
  const float ss = Dot(x, x, d);
  const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(ss / static_cast<float>(d) + eps));
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes) {
    const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), scale);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(v, _mm512_loadu_ps(w + i)));
  }
  if (i < d) {
    const __mmask16 mask = FirstLanes(d - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), scale);
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, w + i)));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void Add(float* x,
                                                                            const float* y,
                                                                            int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 mask = FirstLanes(n - i);
    _mm512_mask_storeu_ps(
        x + i, mask,
        _mm512_add_ps(_mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i)));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void Axpy(float alpha,
                                                                             const float* x,
                                                                             float* y, int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 mask = FirstLanes(n - i);
    _mm512_mask_storeu_ps(
        y + i, mask,
        _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mask, x + i), _mm512_maskz_loadu_ps(mask, y + i)));
  }
}

// e^x, within ~2 ulp for normal results: x = n ln2 + r with |r| <= ln2 / 2,
// e^r by the Cephes expf polynomial, then scaled by 2^n with vscalefps, which
// rounds correctly into the subnormal range and overflows to inf. NaN stays
// NaN (vmaxps / vminps return their second operand when one is NaN).
PACKD_AVX512 __m512 Exp(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

PACKD_AVX512 __m512 SiluMulVec(__m512 g, __m512 u) {
  const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void SiluMul(float* gate,
                                                                                const float* up,
                                                                                int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm512_storeu_ps(gate + i, SiluMulVec(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    const __mmask16 mask = FirstLanes(n - i);
    _mm512_mask_storeu_ps(
        gate + i, mask,
        SiluMulVec(_mm512_maskz_loadu_ps(mask, gate + i), _mm512_maskz_loadu_ps(mask, up + i)));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void Softmax(float* x,
                                                                                int64_t n) {
  if (n <= 0) return;
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  __m512 vmax = neg_inf;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  const __mmask16 tail = FirstLanes(n - i);
  if (i < n) vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(neg_inf, tail, x + i));
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 sum = _mm512_setzero_ps();
  for (i = 0; i + kLanes <= n; i += kLanes) {
    const __m512 e = Exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), max));
    _mm512_storeu_ps(x + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (i < n) {
    const __m512 e =
        _mm512_maskz_mov_ps(tail, Exp(_mm512_sub_ps(_mm512_mask_loadu_ps(max, tail, x + i), max)));
    _mm512_mask_storeu_ps(x + i, tail, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / ReduceLanes(sum));
  for (i = 0; i + kLanes <= n; i += kLanes) {
    _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
  }
  if (i < n) {
    _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), inv));
  }
}

constexpr Kernels kAvx512 = {
    .isa = Isa::kAvx512,
    .gemm = Gemm,
    .to_f32 = ToF32,
    .rms_norm = RmsNorm,
    .add = Add,
    .silu_mul = SiluMul,
    .dot = Dot,
    .axpy = Axpy,
    .softmax = Softmax,
};

}  // namespace

const Kernels& Avx512Kernels() { return kAvx512; }

}  // namespace packd::engine::cpu::internal

#else  // !defined(__x86_64__)

namespace packd::engine::cpu::internal {
const Kernels& Avx512Kernels() { return PortableKernels(); }
}  // namespace packd::engine::cpu::internal

#endif
