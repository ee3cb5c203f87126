// The reduction order of the fused matmul (codec/cuda/fused_math.h, steps
// 1-3) written out from its definition, independently of the kernels' code:
// the expected bits of fused_matmul_test (the host twins) and
// fused_matmul_gpu_test (the device). Test-only; header-only.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace packd::codec::cuda {

inline float RefHalf(uint16_t h, bool bf16) {
  if (bf16) return std::bit_cast<float>(uint32_t{h} << 16);
  // f16 by its definition: (-1)^s * 2^(e - 15) * 1.m, subnormals 2^-14 * 0.m.
  const int e = (h >> 10) & 31, m = h & 0x3ff;
  float v;
  if (e == 31) {
    v = m == 0 ? INFINITY : NAN;
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -24);
  } else {
    v = std::ldexp(static_cast<float>(1024 + m), e - 25);
  }
  return (h & 0x8000) != 0 ? -v : v;
}

inline uint16_t HalfAt(const std::vector<uint8_t>& v, uint64_t i) {
  uint16_t h;
  std::memcpy(&h, v.data() + 2 * i, 2);
  return h;
}

// The butterfly's tree: lane 0's final value sums the indices = offset mod
// 2*stride ... as pairs (even, odd) at the top, recursively.
inline float Tree(const float (&p)[32], uint32_t offset, uint32_t stride) {
  if (stride == 32) return p[offset];
  return Tree(p, offset, 2 * stride) + Tree(p, offset + stride, 2 * stride);
}

// out[b * m + r] for weights w [m, k] and x [n, k], both half bytes.
inline std::vector<float> Reference(const std::vector<uint8_t>& w, const std::vector<uint8_t>& x,
                                    bool bf16, int64_t m, int64_t k, int n) {
  auto floats = [&](const std::vector<uint8_t>& v, uint64_t count) {
    std::vector<float> f(count);
    for (uint64_t i = 0; i < count; ++i) f[i] = RefHalf(HalfAt(v, i), bf16);
    return f;
  };
  const std::vector<float> wf = floats(w, static_cast<uint64_t>(m * k));
  const std::vector<float> xf = floats(x, static_cast<uint64_t>(n * k));
  std::vector<float> out(static_cast<size_t>(n * m));
  for (int b = 0; b < n; ++b) {
    for (int64_t r = 0; r < m; ++r) {
      float p[32] = {};
      for (int64_t c = 0; c < k; ++c) {
        const uint32_t lane = static_cast<uint32_t>((c % 256) / 8);
        p[lane] = std::fma(wf[r * k + c], xf[b * k + c], p[lane]);
      }
      out[b * m + r] = Tree(p, 0, 1);
    }
  }
  return out;
}

}  // namespace packd::codec::cuda
