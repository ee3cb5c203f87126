// Vectorized fp32 math kernels of the CPU backend, chosen once at run time by
// what the CPU supports (AVX-512F+BW+VL, AVX2+FMA+F16C, or a portable path).
//
// Determinism contract (the lossless and batch-invariance guarantees rest on
// it): within one process, the value every kernel writes for one output
// element depends only on the inputs of that element — never on how many
// tokens or rows are processed in the same call, on where a row block starts,
// on the alignment of the pointers, or on the thread that runs it. In
// particular Gemm computes out[t][r] with one fixed summation order over k.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/cpu_features.h"
#include "codec/dtype.h"

namespace packd::engine::cpu {

// One kernel set per feature level of base/cpu_features.h.
using Isa = ::packd::CpuIsa;
inline std::string_view IsaName(Isa isa) { return CpuIsaName(isa); }
// DetectCpuFeatures().BestIsa(): the best ISA this CPU supports, capped by
// PACKD_CPU_ISA=portable|avx2|avx512 (base/cpu_features.h).
Isa DetectIsa();

// All pointers are host memory; no kernel allocates or throws. A weight type
// other than F32, F16 or BF16 (which callers are expected to have rejected)
// makes gemm and to_f32 write NaN instead of reading the weights.
struct Kernels {
  Isa isa;

  // out[t * out_stride + r] = sum_k x[t * x_stride + k] * w[r][k]
  //   for t in [0, n), r in [0, rows).
  // w: `rows` rows of k elements of `wtype` (F32, F16 or BF16, raw
  // little-endian bits), row r at byte offset r * k * DTypeSize(wtype).
  // x: fp32. Reads every weight once per call and reuses it for all n
  // tokens (cache blocking inside); n may be 1 (decode) or hundreds (prefill).
  void (*gemm)(const float* x, int64_t n, int64_t x_stride, const void* w, codec::DType wtype,
               int64_t rows, int64_t k, float* out, int64_t out_stride);

  // Converts n weights of `type` to fp32 (embedding rows, norm weights).
  void (*to_f32)(const void* src, codec::DType type, int64_t n, float* dst);

  // out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], i in [0, d). out may == x.
  void (*rms_norm)(const float* x, const float* w, int64_t d, float eps, float* out);

  // x[i] += y[i]
  void (*add)(float* x, const float* y, int64_t n);
  // gate[i] = silu(gate[i]) * up[i]  (silu(g) = g / (1 + exp(-g)))
  void (*silu_mul)(float* gate, const float* up, int64_t n);
  // sum_i a[i] * b[i] (fixed order for a given n)
  float (*dot)(const float* a, const float* b, int64_t n);
  // y[i] += alpha * x[i]
  void (*axpy)(float alpha, const float* x, float* y, int64_t n);
  // In place: x = softmax(x), max-subtracted, fp32. -inf entries (masked
  // positions) come out exactly 0; a row with no finite entry gives NaN.
  void (*softmax)(float* x, int64_t n);
};

// The kernels for DetectIsa() (picked at the first call), and for a given ISA
// (portable always works; asking for one the CPU lacks returns the best it
// has, whatever PACKD_CPU_ISA says: tests and benchmarks run every path).
const Kernels& GetKernels();
const Kernels& GetKernelsFor(Isa isa);

}  // namespace packd::engine::cpu
