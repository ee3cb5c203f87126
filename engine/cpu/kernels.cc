// ISA dispatch (the detection is base/cpu_features.h's), and the gemm blocking
// driver shared by every ISA.
#include "engine/cpu/kernels.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/cpu_features.h"
#include "engine/cpu/kernels_internal.h"

namespace packd::engine::cpu {
namespace {

// Weight bytes of one row block in the prefill loop: the block stays in L2
// while every token group passes over it (a token group's x is reused by every
// tile of the block). 1 MiB L2 per core or more is typical of AVX-512 parts;
// this leaves room for x.
constexpr int64_t kRowBlockBytes = 256 * 1024;

}  // namespace

Isa DetectIsa() { return DetectCpuFeatures().BestIsa(); }

const Kernels& GetKernelsFor(Isa isa) {
  switch (std::min(isa, HardwareCpuFeatures().BestIsa())) {
    case Isa::kAvx512:
      return internal::Avx512Kernels();
    case Isa::kAvx2:
      return internal::Avx2Kernels();
    case Isa::kPortable:
      break;
  }
  return internal::PortableKernels();
}

const Kernels& GetKernels() {
  static const Kernels& kernels = GetKernelsFor(DetectIsa());
  return kernels;
}

namespace internal {

template <typename X>
void RunGemm(const GemmTilesOf<X>* tiles, const X* x, int64_t n, int64_t x_stride, const void* w,
             int64_t rows, int64_t k, float* out, int64_t out_stride) {
  if (n <= 0 || rows <= 0) return;
  if (tiles == nullptr) {
    for (int64_t t = 0; t < n; ++t) {
      std::fill_n(out + t * out_stride, rows, std::numeric_limits<float>::quiet_NaN());
    }
    return;
  }
  const GemmTilesOf<X>& g = *tiles;
  const auto* wb = static_cast<const uint8_t*>(w);
  const int64_t row_bytes = k * g.elem_bytes;
  if (n == 1) {
    // Decode: stream the weights once, decode_rows rows side by side.
    for (int64_t r = 0; r < rows; r += g.decode_rows) {
      const int rr = static_cast<int>(std::min<int64_t>(g.decode_rows, rows - r));
      g.tile[1][rr](x, x_stride, wb + r * row_bytes, k, out + r, out_stride);
    }
    return;
  }
  const int64_t fit = kRowBlockBytes / std::max<int64_t>(row_bytes, 1);
  const int64_t block_rows = std::max<int64_t>(g.rows, fit - fit % g.rows);
  for (int64_t r0 = 0; r0 < rows; r0 += block_rows) {
    const int64_t r1 = std::min(rows, r0 + block_rows);
    for (int64_t t = 0; t < n; t += g.tokens) {
      const int tt = static_cast<int>(std::min<int64_t>(g.tokens, n - t));
      const X* xt = x + t * x_stride;
      float* ot = out + t * out_stride;
      for (int64_t r = r0; r < r1; r += g.rows) {
        const int rr = static_cast<int>(std::min<int64_t>(g.rows, r1 - r));
        g.tile[tt][rr](xt, x_stride, wb + r * row_bytes, k, ot + r, out_stride);
      }
    }
  }
}

template void RunGemm<float>(const GemmTilesOf<float>*, const float*, int64_t, int64_t, const void*,
                             int64_t, int64_t, float*, int64_t);
template void RunGemm<uint16_t>(const GemmTilesOf<uint16_t>*, const uint16_t*, int64_t, int64_t,
                                const void*, int64_t, int64_t, float*, int64_t);

float F16ToF32(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    // Inf, or NaN with its payload (made quiet).
    bits = sign | 0x7f800000u | (mantissa << 13) | (mantissa != 0 ? 0x00400000u : 0);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal: mantissa * 2^-24; normalize so the leading 1 is implicit.
    exponent = 127 - 15 + 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace internal
}  // namespace packd::engine::cpu
