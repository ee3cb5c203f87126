#include "codec/cuda/cuda_status.h"
#include "engine/cuda/rms_norm.h"

namespace packd::engine::cuda {

using codec::cuda::AsStream;
using codec::cuda::LaunchStatus;

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// One block per row. Each thread sums the squares of elements tid, tid +
// 256, ...; warps reduce by butterfly shuffles, then warp 0 reduces the 8
// warp sums: a fixed order for a given d.
__global__ void RmsNormKernel(const float* x, int64_t xs, const float* w, int64_t d, float eps,
                              float* out, int64_t os) {
  __shared__ float warp_sums[kWarps];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * xs;
  float* orow = out + static_cast<int64_t>(blockIdx.x) * os;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += kThreads) ss += xr[i] * xr[i];
  for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = ss;
  __syncthreads();
  if (warp == 0) {
    float v = lane < kWarps ? warp_sums[lane] : 0.0f;
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) warp_sums[0] = v;
  }
  __syncthreads();
  const float scale = 1.0f / sqrtf(warp_sums[0] / static_cast<float>(d) + eps);
  // Each element is read and written by the same thread: out may be x.
  for (int64_t i = threadIdx.x; i < d; i += kThreads) orow[i] = xr[i] * scale * w[i];
}

}  // namespace

absl::Status LaunchRmsNorm(const float* x, int64_t x_stride, const float* w, int64_t rows,
                           int64_t d, float eps, float* out, int64_t out_stride, void* stream) {
  if (rows <= 0 || d <= 0) return absl::OkStatus();
  if (rows > 0x7fffffff) return absl::InvalidArgumentError("LaunchRmsNorm: too many rows");
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, AsStream(stream)>>>(
      x, x_stride, w, d, eps, out, out_stride);
  return LaunchStatus("RmsNormKernel");
}

}  // namespace packd::engine::cuda
