#include "codec/cuda/cuda_status.h"
#include "engine/cuda/launch_plan.h"
#include "engine/cuda/rope.h"

namespace packd::engine::cuda {

using codec::cuda::AsStream;
using codec::cuda::LaunchStatus;

namespace {

// One thread per (token, head, pair), grid-stride.
__global__ void RopeKernel(float* x, int64_t xs, int64_t n_tokens, int64_t n_heads, int64_t half,
                           bool interleaved, const int32_t* positions, const float* inv_freq) {
  const int64_t per_token = n_heads * half;
  const int64_t n = n_tokens * per_token;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / per_token;
    const int64_t rem = idx - t * per_token;
    const int64_t h = rem / half, i = rem - h * half;
    const float angle = __fmul_rn(static_cast<float>(positions[t]), inv_freq[i]);
    const float cs = cosf(angle), sn = sinf(angle);
    float* v = x + t * xs + h * 2 * half;
    const int64_t a = interleaved ? 2 * i : i;
    const int64_t b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
    v[b] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
  }
}

}  // namespace

absl::Status LaunchRope(float* x, int64_t x_stride, int64_t n_tokens, int64_t n_heads,
                        int64_t head_dim, RopeStyle style, const int32_t* positions,
                        const float* inv_freq, void* stream) {
  const int64_t half = head_dim / 2;
  const int64_t blocks = ElementwiseBlocks(n_tokens * n_heads * half);
  if (blocks == 0) return absl::OkStatus();
  RopeKernel<<<static_cast<unsigned>(blocks), kElementwiseThreads, 0, AsStream(stream)>>>(
      x, x_stride, n_tokens, n_heads, half, style == RopeStyle::kInterleaved, positions, inv_freq);
  return LaunchStatus("RopeKernel");
}

}  // namespace packd::engine::cuda
