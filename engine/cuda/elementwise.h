// Elementwise CUDA kernels of the backend, behind a plain header (no CUDA
// types; streams are cudaStream_t cast to void*). Each function enqueues
// one kernel on `stream` and returns the launch status, naming the kernel.
// Matrices are row-major with a row stride in elements; every pointer is
// device memory; shapes were checked by the caller (engine/cuda/op_checks.h).
// Nothing is launched for an empty shape.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "codec/dtype.h"

namespace packd::engine::cuda {

// gate[r][c] = silu(gate[r][c]) * up[r][c], silu(g) = g / (1 + exp(-g)).
absl::Status LaunchSiluMul(float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                           int64_t rows, int64_t cols, void* stream);

// x[r][c] += y[r][c].
absl::Status LaunchAdd(float* x, int64_t x_stride, const float* y, int64_t y_stride, int64_t rows,
                       int64_t cols, void* stream);

// out[i][c] = x[rows[i]][c] for i in [0, n).
absl::Status LaunchGatherRows(const float* x, int64_t x_stride, const int32_t* rows, int64_t n,
                              int64_t cols, float* out, int64_t out_stride, void* stream);

// out (contiguous [rows, cols] of `to`, BF16 or F16) = x rounded to nearest
// even: the activation operand of a half-precision GEMM.
absl::Status LaunchToHalf(const float* x, int64_t x_stride, int64_t rows, int64_t cols,
                          codec::DType to, void* out, void* stream);

// out[r][c] += bias[c].
absl::Status LaunchBiasAdd(float* out, int64_t out_stride, const float* bias, int64_t rows,
                           int64_t cols, void* stream);

// out[i][c] = fp32(src row ids[i], element c) for i in [0, n): rows of
// `dtype` (F32, F16 or BF16), row r at byte offset r * row_pitch from
// `src`. ids == nullptr: row i itself (rows decoded one per id into a
// scratch). The conversion is exact.
absl::Status LaunchRowsToF32(const void* src, codec::DType dtype, int64_t cols, uint64_t row_pitch,
                             const int32_t* ids, int64_t n, float* out, int64_t out_stride,
                             void* stream);

}  // namespace packd::engine::cuda
