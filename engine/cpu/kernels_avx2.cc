// AVX2 + FMA + F16C kernels: 8 fp32 lanes. AVX2 has no 16-bit masked loads,
// so a tail shorter than 8 elements is copied into a zero-filled 8-lane buffer
// and goes through the same vector code as a full chunk.
//
// Only functions marked with the target attribute contain AVX code; this file
// is compiled for baseline x86-64 like the rest, and nothing here runs unless
// DetectIsa() found AVX2, FMA and F16C (base/cpu_features.h).
#include "engine/cpu/kernels_internal.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include <cmath>
#include <cstring>

#define PACKD_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define PACKD_AVX2 __attribute__((target("avx2,fma,f16c"), always_inline)) inline

namespace packd::engine::cpu::internal {
namespace {

using codec::DType;

constexpr int kLanes = 8;

// The fixed reduction tree of every 8-lane sum: lanes i and i + 4, then i and
// i + 2, then 0 and 1 (the portable path's tree).
PACKD_AVX2 float ReduceLanes(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

// 8 weights of type D at p, as fp32.
template <DType D>
PACKD_AVX2 __m256 LoadWeights(const uint8_t* p) {
  if constexpr (D == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (D == DType::kF16) {
      return _mm256_cvtph_ps(h);
    } else {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
  }
}

template <DType D, int T, int R>
struct Avx2Tile {
  PACKD_AVX2_TARGET static void Run(const float* x, int64_t x_stride, const uint8_t* w, int64_t k,
                                    float* out, int64_t out_stride) {
    constexpr int64_t kElemBytes = D == DType::kF32 ? 4 : 2;
    const int64_t row_bytes = k * kElemBytes;
    __m256 acc[T][R];
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
    }
    const int64_t full = k - k % kLanes;
    for (int64_t i = 0; i < full; i += kLanes) {
      __m256 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = LoadWeights<D>(w + r * row_bytes + i * kElemBytes);
      for (int t = 0; t < T; ++t) {
        const __m256 xv = _mm256_loadu_ps(x + t * x_stride + i);
        for (int r = 0; r < R; ++r) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
      }
    }
    if (full < k) {
      const int64_t rem = k - full;
      alignas(32) uint8_t wbuf[kLanes * kElemBytes];
      alignas(32) float xbuf[kLanes];
      __m256 wv[R];
      for (int r = 0; r < R; ++r) {
        std::memset(wbuf, 0, sizeof(wbuf));
        std::memcpy(wbuf, w + r * row_bytes + full * kElemBytes, rem * kElemBytes);
        wv[r] = LoadWeights<D>(wbuf);
      }
      for (int t = 0; t < T; ++t) {
        std::memset(xbuf, 0, sizeof(xbuf));
        std::memcpy(xbuf, x + t * x_stride + full, rem * 4);
        const __m256 xv = _mm256_load_ps(xbuf);
        for (int r = 0; r < R; ++r) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
      }
    }
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) out[t * out_stride + r] = ReduceLanes(acc[t][r]);
    }
  }
};

// 4 tokens x 3 rows: 12 accumulators + 3 weight vectors + x in 16 registers.
// One token: 8 rows at a time (8 weight streams in flight).
constexpr int kTokens = 4, kRows = 3, kDecodeRows = 8;
constexpr GemmTiles kTilesF32 = MakeGemmTiles<Avx2Tile, DType::kF32, kTokens, kRows, kDecodeRows>();
constexpr GemmTiles kTilesF16 = MakeGemmTiles<Avx2Tile, DType::kF16, kTokens, kRows, kDecodeRows>();
constexpr GemmTiles kTilesBF16 =
    MakeGemmTiles<Avx2Tile, DType::kBF16, kTokens, kRows, kDecodeRows>();

void Gemm(const float* x, int64_t n, int64_t x_stride, const void* w, DType wtype, int64_t rows,
          int64_t k, float* out, int64_t out_stride) {
  const GemmTiles* tiles = wtype == DType::kF32    ? &kTilesF32
                           : wtype == DType::kF16  ? &kTilesF16
                           : wtype == DType::kBF16 ? &kTilesBF16
                                                   : nullptr;
  RunGemm(tiles, x, n, x_stride, w, rows, k, out, out_stride);
}

// Applies op(float* [kSrc][8]) -> __m256 to n elements: full chunks in place,
// then the tail through zero-padded buffers, so every element takes the same
// vector path. `srcs` are the inputs, `dst` the output (may alias srcs[0]).
template <int kSrc, typename Op>
PACKD_AVX2 void ForEachChunk(const float* const (&srcs)[kSrc], float* dst, int64_t n,
                             const Op& op) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m256 v[kSrc];
    for (int s = 0; s < kSrc; ++s) v[s] = _mm256_loadu_ps(srcs[s] + i);
    _mm256_storeu_ps(dst + i, op(v));
  }
  if (i < n) {
    alignas(32) float buf[kSrc][kLanes] = {};
    __m256 v[kSrc];
    for (int s = 0; s < kSrc; ++s) {
      std::memcpy(buf[s], srcs[s] + i, (n - i) * 4);
      v[s] = _mm256_load_ps(buf[s]);
    }
    alignas(32) float res[kLanes];
    _mm256_store_ps(res, op(v));
    std::memcpy(dst + i, res, (n - i) * 4);
  }
}

template <DType D>
PACKD_AVX2_TARGET void ConvertToF32(const uint8_t* src, int64_t n, float* dst) {
  constexpr int64_t kElemBytes = 2;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    _mm256_storeu_ps(dst + i, LoadWeights<D>(src + i * kElemBytes));
  if (i < n) {
    alignas(32) uint8_t buf[kLanes * kElemBytes] = {};
    std::memcpy(buf, src + i * kElemBytes, (n - i) * kElemBytes);
    alignas(32) float res[kLanes];
    _mm256_store_ps(res, LoadWeights<D>(buf));
    std::memcpy(dst + i, res, (n - i) * 4);
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
PACKD_AVX2_TARGET float Dot(const float* a, const float* b, int64_t n) {
  float out;
  Avx2Tile<DType::kF32, 1, 1>::Run(a, 0, reinterpret_cast<const uint8_t*>(b), n, &out, 0);
  return out;
}

PACKD_AVX2_TARGET void RmsNorm(const float* x, const float* w, int64_t d, float eps, float* out) {
  const float ss = Dot(x, x, d);
  const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(ss / static_cast<float>(d) + eps));
  ForEachChunk<2>({x, w}, out, d, [&](const __m256(&v)[2]) PACKD_AVX2_TARGET {
    return _mm256_mul_ps(_mm256_mul_ps(v[0], scale), v[1]);
  });
}

PACKD_AVX2_TARGET void Add(float* x, const float* y, int64_t n) {
  ForEachChunk<2>({x, y}, x, n,
                  [](const __m256(&v)[2]) PACKD_AVX2_TARGET { return _mm256_add_ps(v[0], v[1]); });
}

PACKD_AVX2_TARGET void Axpy(float alpha, const float* x, float* y, int64_t n) {
  const __m256 a = _mm256_set1_ps(alpha);
  ForEachChunk<2>({x, y}, y, n, [&](const __m256(&v)[2]) PACKD_AVX2_TARGET {
    return _mm256_fmadd_ps(a, v[0], v[1]);
  });
}

// e^x, within ~2 ulp for normal results: x = n ln2 + r with |r| <= ln2 / 2,
// e^r by the Cephes expf polynomial, then scaled by 2^n as 2^a * 2^b (a + b =
// n, each a normal float) so the one rounding happens in the last multiply,
// correctly into the subnormal range or to inf. NaN stays NaN (vmaxps / vminps
// return their second operand when one is NaN).
PACKD_AVX2 __m256 Exp(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i a = _mm256_srai_epi32(ni, 1);
  const __m256i b = _mm256_sub_epi32(ni, a);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 pa = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(a, bias), 23));
  const __m256 pb = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(b, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(y, pa), pb);
}

PACKD_AVX2_TARGET void SiluMul(float* gate, const float* up, int64_t n) {
  ForEachChunk<2>({gate, up}, gate, n, [](const __m256(&v)[2]) PACKD_AVX2_TARGET {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), v[0]));
    return _mm256_mul_ps(_mm256_div_ps(v[0], _mm256_add_ps(_mm256_set1_ps(1.0f), e)), v[1]);
  });
}

PACKD_AVX2_TARGET void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  {
    __m256 vmax = _mm256_set1_ps(x[0]);
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    alignas(32) float lanes[kLanes];
    _mm256_store_ps(lanes, vmax);
    for (float v : lanes) max = std::max(max, v);
    for (; i < n; ++i) max = std::max(max, x[i]);
  }
  const __m256 vmax = _mm256_set1_ps(max);
  __m256 sum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (i < n) {
    // Padding lanes are zeroed after the exp, so they add exactly 0 to the sum.
    alignas(32) float buf[kLanes];
    for (int j = 0; j < kLanes; ++j) buf[j] = i + j < n ? x[i + j] : max;
    _mm256_store_ps(buf, Exp(_mm256_sub_ps(_mm256_load_ps(buf), vmax)));
    for (int j = static_cast<int>(n - i); j < kLanes; ++j) buf[j] = 0.0f;
    std::memcpy(x + i, buf, (n - i) * 4);
    sum = _mm256_add_ps(sum, _mm256_load_ps(buf));
  }
  const __m256 inv = _mm256_set1_ps(1.0f / ReduceLanes(sum));
  ForEachChunk<1>({x}, x, n,
                  [&](const __m256(&v)[1]) PACKD_AVX2_TARGET { return _mm256_mul_ps(v[0], inv); });
}

constexpr Kernels kAvx2 = {
    .isa = Isa::kAvx2,
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

const Kernels& Avx2Kernels() { return kAvx2; }

}  // namespace packd::engine::cpu::internal

#else  // !defined(__x86_64__)

namespace packd::engine::cpu::internal {
const Kernels& Avx2Kernels() { return PortableKernels(); }
}  // namespace packd::engine::cpu::internal

#endif
