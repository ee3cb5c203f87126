// Portable scalar kernels: any CPU, and the reference structure the SIMD
// paths follow (8 lanes, see kernels_internal.h), with a separate multiply and
// add instead of fused multiply-adds.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/kernels_internal.h"

// Products and sums round separately here, whatever the compiler's default
// for contracting a * b + c into an FMA.
#ifdef __clang__
#pragma clang fp contract(off)
#endif

namespace packd::engine::cpu::internal {
namespace {

using codec::DType;

constexpr int kLanes = 8;

// The fixed tree: lanes i and i + 4, then i and i + 2, then 0 and 1.
inline float ReduceLanes(const float (&a)[kLanes]) {
  const float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
  return (s0 + s2) + (s1 + s3);
}

template <DType D>
inline float LoadWeight(const uint8_t* row, int64_t i) {
  if constexpr (D == DType::kF32) {
    float f;
    std::memcpy(&f, row + 4 * i, 4);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, row + 2 * i, 2);
    return D == DType::kBF16 ? BF16ToF32(h) : F16ToF32(h);
  }
}

template <DType D, int T, int R>
struct PortableTile {
  static void Run(const float* x, int64_t x_stride, const uint8_t* w, int64_t k, float* out,
                  int64_t out_stride) {
    constexpr int64_t kElemBytes = D == DType::kF32 ? 4 : 2;
    float acc[T][R][kLanes] = {};
    float wv[R][kLanes];
    const int64_t full = k - k % kLanes;
    for (int64_t i = 0; i < full; i += kLanes) {
      for (int r = 0; r < R; ++r) {
        for (int j = 0; j < kLanes; ++j) wv[r][j] = LoadWeight<D>(w + r * k * kElemBytes, i + j);
      }
      for (int t = 0; t < T; ++t) {
        const float* xt = x + t * x_stride + i;
        for (int r = 0; r < R; ++r) {
          for (int j = 0; j < kLanes; ++j) acc[t][r][j] = acc[t][r][j] + xt[j] * wv[r][j];
        }
      }
    }
    if (full < k) {  // the zero-padded last chunk
      const int64_t valid = k - full;
      for (int r = 0; r < R; ++r) {
        for (int j = 0; j < kLanes; ++j) {
          wv[r][j] = j < valid ? LoadWeight<D>(w + r * k * kElemBytes, full + j) : 0.0f;
        }
      }
      for (int t = 0; t < T; ++t) {
        float xt[kLanes];
        for (int j = 0; j < kLanes; ++j) xt[j] = j < valid ? x[t * x_stride + full + j] : 0.0f;
        for (int r = 0; r < R; ++r) {
          for (int j = 0; j < kLanes; ++j) acc[t][r][j] = acc[t][r][j] + xt[j] * wv[r][j];
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < R; ++r) out[t * out_stride + r] = ReduceLanes(acc[t][r]);
    }
  }
};

constexpr int kTokens = 4, kRows = 4, kDecodeRows = 4;
constexpr GemmTiles kTilesF32 =
    MakeGemmTiles<PortableTile, DType::kF32, kTokens, kRows, kDecodeRows>();
constexpr GemmTiles kTilesF16 =
    MakeGemmTiles<PortableTile, DType::kF16, kTokens, kRows, kDecodeRows>();
constexpr GemmTiles kTilesBF16 =
    MakeGemmTiles<PortableTile, DType::kBF16, kTokens, kRows, kDecodeRows>();

void Gemm(const float* x, int64_t n, int64_t x_stride, const void* w, DType wtype, int64_t rows,
          int64_t k, float* out, int64_t out_stride) {
  const GemmTiles* tiles = wtype == DType::kF32    ? &kTilesF32
                           : wtype == DType::kF16  ? &kTilesF16
                           : wtype == DType::kBF16 ? &kTilesBF16
                                                   : nullptr;
  RunGemm(tiles, x, n, x_stride, w, rows, k, out, out_stride);
}

void ToF32(const void* src, DType type, int64_t n, float* dst) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = LoadWeight<DType::kF16>(p, i);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = LoadWeight<DType::kBF16>(p, i);
      return;
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = std::nanf("");
      return;
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  float out;
  PortableTile<DType::kF32, 1, 1>::Run(a, 0, reinterpret_cast<const uint8_t*>(b), n, &out, 0);
  return out;
}

void RmsNorm(const float* x, const float* w, int64_t d, float eps, float* out) {
  const float ss = Dot(x, x, d);
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
  for (int64_t i = 0; i < d; ++i) out[i] = x[i] * scale * w[i];
}

void Add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void Axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, x[i]);
  float lanes[kLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    lanes[i % kLanes] += x[i];
  }
  const float inv = 1.0f / ReduceLanes(lanes);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

constexpr Kernels kPortable = {
    .isa = Isa::kPortable,
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

const Kernels& PortableKernels() { return kPortable; }

}  // namespace packd::engine::cpu::internal
