// Fused decode-in-matmul on a CUDA device (DESIGN.md §5; issue 6): out [n, m]
// = x [n, k] * W [m, k]^T for small batches (n <= kFusedMaxBatch), reading
// the weight once — raw, or compressed and decoded in registers (`tiled`) or
// in shared memory (any codec, FusedKernel::kStaged) — and never writing
// decoded weights to global memory.
//
// Every kernel here computes each output element in the one order that
// fused_math.h defines, which depends only on (m, k): FusedMatMulRaw over a
// raw weight and DeviceDecoder::FusedMatMul over the same weight compressed
// give bit-identical results, for every n. That is the raw reference the
// compressed kernels are held to (cuBLAS has its own order and is only the
// speed yardstick).
//
// This header names no CUDA type (STYLE.md §4). Without CUDA
// (PACKD_HAVE_CUDA=0) FusedMatMulRaw returns FailedPrecondition.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_image_layout.h"
#include "codec/dtype.h"

namespace packd::codec::cuda {

// The kernel for an image layout (host; also what the tests check).
FusedKernel FusedKernelFor(const DeviceImageLayout& layout);

// Raw half weight [m, k] at d_w: row-major, contiguous, 2-byte aligned
// (16-byte aligned rows are fastest: k % 8 == 0 and d_w 16-byte aligned).
// dtype kBF16 or kF16; x [n, k] in the same type, row stride ldx >= k
// elements; out [n, m] fp32, row stride ldo >= m elements. Enqueued on
// `stream`; returns launch errors only. InvalidArgument for bad arguments
// (CheckFusedMatMulArgs).
absl::Status FusedMatMulRaw(const void* d_w, DType dtype, int64_t m, int64_t k, const void* d_x,
                            int64_t ldx, int64_t n, float* d_out, int64_t ldo, StreamHandle stream);

// The argument checks of FusedMatMulRaw and DeviceDecoder::FusedMatMul, on
// the host: dtype bf16/f16; m, k >= 0; n in [1, kFusedMaxBatch]; ldx >= k;
// ldo >= m; non-null, 2-byte aligned weight and x, 4-byte aligned out (when
// anything is to be computed). `what` names the call in the error.
absl::Status CheckFusedMatMulArgs(const char* what, DType dtype, int64_t m, int64_t k,
                                  const void* d_w, const void* d_x, int64_t ldx, int64_t n,
                                  const float* d_out, int64_t ldo);

}  // namespace packd::codec::cuda
