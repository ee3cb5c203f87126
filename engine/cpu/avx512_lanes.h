// AVX-512 helpers shared by the kernel files that compute in gemm's AVX-512
// order (kernels_avx512.cc, split_gemm_avx512.cc). Include only from files that
// compile their AVX-512 functions with target attributes and run them only
// after a CPU check.
#pragma once

#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#define PACKD_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"), always_inline)) inline

namespace packd::engine::cpu::internal {

// Mask of the first `count` lanes (count in [0, 16]).
PACKD_AVX512 __mmask16 FirstLanes(int64_t count) {
  return static_cast<__mmask16>((1u << count) - 1u);
}

// The fixed reduction tree of every 16-lane sum: lanes i and i + 8, then
// i and i + 4, then i and i + 2, then 0 and 1. Every AVX-512 gemm path ends
// each output with it.
PACKD_AVX512 float ReduceLanes(__m512 v) {
  const __m256 lo = _mm512_castps512_ps256(v);
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

}  // namespace packd::engine::cpu::internal

#endif
