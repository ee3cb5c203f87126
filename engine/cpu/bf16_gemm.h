// The CPU backend's bf16 matmul mode (CpuMatMulMode::kBf16): activations
// rounded to bf16, multiplied with bf16 weights by AVX512-BF16's dot product
// instruction (vdpbf16ps), fp32 accumulation. About twice the multiply-adds
// per instruction of the fp32 path (Kernels::gemm), and no widening of the
// weights; the price is the rounding of the activations (the fp32 mode keeps
// them exact).
//
// Arithmetic (every output, bit for bit, whatever n, rows, where a row block
// starts, the alignment of the pointers or the thread; Kernels' determinism
// contract):
//   x: fp32 rounded to bf16 by `round` (once per matmul, by the caller):
//      nearest, ties to even; fp32 subnormals become zero of their sign; NaN
//      stays NaN (made quiet); overflow gives infinity (vcvtneps2bf16).
//   acc = 16 fp32 lanes of +0
//   for each chunk c of 32 elements of k, ascending (the last one, when
//   k % 32 != 0, zero-padded), for lane j in [0, 16):
//     acc[j] = ftz(fma(x[c + 2j + 1], w[c + 2j + 1], acc[j]))  (odd first)
//     acc[j] = ftz(fma(x[c + 2j], w[c + 2j], acc[j]))
//   out = the fixed 16-lane reduction tree of avx512_lanes.h (ReduceLanes).
// Each fma is exact then rounded once to nearest even; bf16 inputs that are
// subnormal count as zero of their sign and a subnormal result becomes zero
// of its sign (ftz); the MXCSR is not read. That is vdpbf16ps as Intel's SDM
// defines it; bf16_gemm_test.cc checks the hardware against a scalar version
// of it (on the AMD Zen 4 development machine, 32M random and edge-case
// lanes agreed bit for bit). NaN outputs are NaN; their payload is not part of
// the contract (as in Kernels::gemm).
//
// There is no emulation: a CPU without AVX512-BF16 (or PACKD_CPU_ISA below
// avx512) has no such kernels, and the CPU backend refuses the bf16 mode
// there (cpu_backend.h) rather than run it slower than fp32.
#pragma once

#include <cstdint>

#include "engine/cpu/kernels.h"

namespace packd::engine::cpu {

struct Bf16GemmKernels {
  // out[i] = x[i] rounded to bf16 (bits), i < n, as above.
  void (*round)(const float* x, int64_t n, uint16_t* out);
  // out[t * out_stride + r] = sum_j x[t * x_stride + j] * w[r][j] for
  // t < n, r < rows, with the arithmetic above. x: bf16 bits; w: `rows`
  // rows of k bf16 weights (raw little-endian bits, row r at byte offset
  // r * k * 2; any alignment). Reads each weight once per call and reuses it
  // for all n tokens (cache blocking inside, as Kernels::gemm); n may be 1
  // (decode) or hundreds.
  void (*gemm)(const uint16_t* x, int64_t n, int64_t x_stride, const void* w, int64_t rows,
               int64_t k, float* out, int64_t out_stride);
};

// The kernels that go with GetKernels(), or null unless its ISA is kAvx512
// (so PACKD_CPU_ISA below avx512 turns them off) and the CPU has
// AVX512-BF16.
const Bf16GemmKernels* GetBf16GemmKernels();
// The same for a given ISA (tests): null unless isa is kAvx512 and the CPU
// has AVX-512 and AVX512-BF16.
const Bf16GemmKernels* GetBf16GemmKernelsFor(Isa isa);

}  // namespace packd::engine::cpu
