#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "codec/cuda/cuda_status.h"
#include "engine/cuda/elementwise.h"
#include "engine/cuda/launch_plan.h"

namespace packd::engine::cuda {

using codec::cuda::AsStream;
using codec::cuda::LaunchStatus;

namespace {

// Calls f(r, c) for every element of a rows x cols matrix (grid-stride).
template <typename F>
__device__ void ForEachElement(int64_t rows, int64_t cols, F f) {
  const int64_t n = rows * cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols;
    f(r, i - r * cols);
  }
}

__global__ void SiluMulKernel(float* gate, int64_t gs, const float* up, int64_t us, int64_t rows,
                              int64_t cols) {
  ForEachElement(rows, cols, [&](int64_t r, int64_t c) {
    const float g = gate[r * gs + c];
    gate[r * gs + c] = g / (1.0f + expf(-g)) * up[r * us + c];
  });
}

__global__ void AddKernel(float* x, int64_t xs, const float* y, int64_t ys, int64_t rows,
                          int64_t cols) {
  ForEachElement(rows, cols, [&](int64_t r, int64_t c) { x[r * xs + c] += y[r * ys + c]; });
}

__global__ void GatherRowsKernel(const float* x, int64_t xs, const int32_t* rows_idx, int64_t n,
                                 int64_t cols, float* out, int64_t os) {
  ForEachElement(n, cols, [&](int64_t r, int64_t c) { out[r * os + c] = x[rows_idx[r] * xs + c]; });
}

__global__ void ToBf16Kernel(const float* x, int64_t xs, int64_t rows, int64_t cols,
                             __nv_bfloat16* out) {
  ForEachElement(rows, cols, [&](int64_t r, int64_t c) {
    out[r * cols + c] = __float2bfloat16_rn(x[r * xs + c]);
  });
}

__global__ void ToF16Kernel(const float* x, int64_t xs, int64_t rows, int64_t cols, __half* out) {
  ForEachElement(rows, cols,
                 [&](int64_t r, int64_t c) { out[r * cols + c] = __float2half_rn(x[r * xs + c]); });
}

__global__ void BiasAddKernel(float* out, int64_t os, const float* bias, int64_t rows,
                              int64_t cols) {
  ForEachElement(rows, cols, [&](int64_t r, int64_t c) { out[r * os + c] += bias[c]; });
}

// dtype: 0 = F32, 1 = F16, 2 = BF16.
__global__ void RowsToF32Kernel(const unsigned char* src, int dtype, int64_t cols, uint64_t pitch,
                                const int32_t* ids, int64_t n, float* out, int64_t os) {
  ForEachElement(n, cols, [&](int64_t r, int64_t c) {
    const int64_t row = ids != nullptr ? ids[r] : r;
    const unsigned char* p = src + static_cast<uint64_t>(row) * pitch;
    float f;
    if (dtype == 0) {
      f = reinterpret_cast<const float*>(p)[c];
    } else if (dtype == 1) {
      f = __half2float(reinterpret_cast<const __half*>(p)[c]);
    } else {
      f = __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[c]) << 16);
    }
    out[r * os + c] = f;
  });
}

// The launch configuration of an elementwise kernel over rows x cols.
struct Launch {
  explicit Launch(int64_t rows, int64_t cols)
      : blocks(rows > 0 && cols > 0 ? ElementwiseBlocks(rows * cols) : 0) {}
  bool empty() const { return blocks == 0; }
  unsigned grid() const { return static_cast<unsigned>(blocks); }
  int64_t blocks;
};

}  // namespace

absl::Status LaunchSiluMul(float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                           int64_t rows, int64_t cols, void* stream) {
  const Launch l(rows, cols);
  if (l.empty()) return absl::OkStatus();
  SiluMulKernel<<<l.grid(), kElementwiseThreads, 0, AsStream(stream)>>>(gate, gate_stride, up,
                                                                        up_stride, rows, cols);
  return LaunchStatus("SiluMulKernel");
}

absl::Status LaunchAdd(float* x, int64_t x_stride, const float* y, int64_t y_stride, int64_t rows,
                       int64_t cols, void* stream) {
  const Launch l(rows, cols);
  if (l.empty()) return absl::OkStatus();
  AddKernel<<<l.grid(), kElementwiseThreads, 0, AsStream(stream)>>>(x, x_stride, y, y_stride, rows,
                                                                    cols);
  return LaunchStatus("AddKernel");
}

absl::Status LaunchGatherRows(const float* x, int64_t x_stride, const int32_t* rows, int64_t n,
                              int64_t cols, float* out, int64_t out_stride, void* stream) {
  const Launch l(n, cols);
  if (l.empty()) return absl::OkStatus();
  GatherRowsKernel<<<l.grid(), kElementwiseThreads, 0, AsStream(stream)>>>(x, x_stride, rows, n,
                                                                           cols, out, out_stride);
  return LaunchStatus("GatherRowsKernel");
}

absl::Status LaunchToHalf(const float* x, int64_t x_stride, int64_t rows, int64_t cols,
                          codec::DType to, void* out, void* stream) {
  const Launch l(rows, cols);
  if (l.empty()) return absl::OkStatus();
  if (to == codec::DType::kBF16) {
    ToBf16Kernel<<<l.grid(), kElementwiseThreads, 0, AsStream(stream)>>>(
        x, x_stride, rows, cols, static_cast<__nv_bfloat16*>(out));
    return LaunchStatus("ToBf16Kernel");
  }
  if (to == codec::DType::kF16) {
    ToF16Kernel<<<l.grid(), kElementwiseThreads, 0, AsStream(stream)>>>(x, x_stride, rows, cols,
                                                                        static_cast<__half*>(out));
    return LaunchStatus("ToF16Kernel");
  }
  return absl::InvalidArgumentError("LaunchToHalf: the target must be BF16 or F16");
}

absl::Status LaunchBiasAdd(float* out, int64_t out_stride, const float* bias, int64_t rows,
                           int64_t cols, void* stream) {
  const Launch l(rows, cols);
  if (l.empty()) return absl::OkStatus();
  BiasAddKernel<<<l.grid(), kElementwiseThreads, 0, AsStream(stream)>>>(out, out_stride, bias, rows,
                                                                        cols);
  return LaunchStatus("BiasAddKernel");
}

absl::Status LaunchRowsToF32(const void* src, codec::DType dtype, int64_t cols, uint64_t row_pitch,
                             const int32_t* ids, int64_t n, float* out, int64_t out_stride,
                             void* stream) {
  int code;
  switch (dtype) {
    case codec::DType::kF32:
      code = 0;
      break;
    case codec::DType::kF16:
      code = 1;
      break;
    case codec::DType::kBF16:
      code = 2;
      break;
    default:
      return absl::InvalidArgumentError("LaunchRowsToF32: rows must be F32, F16 or BF16");
  }
  const Launch l(n, cols);
  if (l.empty()) return absl::OkStatus();
  RowsToF32Kernel<<<l.grid(), kElementwiseThreads, 0, AsStream(stream)>>>(
      static_cast<const unsigned char*>(src), code, cols, row_pitch, ids, n, out, out_stride);
  return LaunchStatus("RowsToF32Kernel");
}

}  // namespace packd::engine::cuda
