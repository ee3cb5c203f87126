#include <cmath>

#include "codec/cuda/cuda_status.h"
#include "engine/cuda/attention.h"
#include "engine/cuda/op_checks.h"

namespace packd::engine::cuda {

using codec::cuda::AsStream;
using codec::cuda::LaunchStatus;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kPerLane = static_cast<int>(kMaxAttentionHeadDim / 32);  // dims per lane

__global__ void __launch_bounds__(kThreads) AttentionKernel(AttentionLaunch a) {
  __shared__ float s_max[kWarps];
  __shared__ float s_sum[kWarps];
  __shared__ float s_acc[kWarps][kMaxAttentionHeadDim];

  const int64_t t = blockIdx.x / a.n_heads;
  const int64_t h = blockIdx.x - t * a.n_heads;
  const int64_t g = h / (a.n_heads / a.n_kv_heads);
  const int hd = static_cast<int>(a.head_dim);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t kv_width = a.n_kv_heads * a.head_dim;

  const int64_t pos = a.meta.positions[t];
  const int64_t first = pos - a.sliding_window + 1;
  const int64_t start = a.sliding_window > 0 && first > 0 ? first : 0;
  const int32_t* blocks = a.meta.blocks + a.meta.seq_begin[a.meta.token_seq[t]];

  // This lane's dims: lane, lane + 32, ... (< head_dim).
  const float* qh = a.q + t * a.q_stride + h * a.head_dim;
  float q[kPerLane], acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    q[i] = d < hd ? qh[d] : 0.0f;
    acc[i] = 0.0f;
  }

  // Online softmax over this warp's positions: running max m, running sum
  // l of exp(s - m), acc = sum of exp(s - m) * v.
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = start + warp; j <= pos; j += kWarps) {
    const int64_t slot =
        static_cast<int64_t>(blocks[j / a.block_size]) * a.block_size + j % a.block_size;
    const int64_t row = slot * kv_width + g * a.head_dim;
    const float* kr = a.k_cache + row;
    const float* vr = a.v_cache + row;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) s += q[i] * kr[d];
    }
    for (int off = 16; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
    s *= a.scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // 0 for the first position (m = -inf)
    const float p = expf(s - m_new);
    l = l * corr + p;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) acc[i] = acc[i] * corr + p * vr[d];
    }
    m = m_new;
  }

  if (lane == 0) {
    s_max[warp] = m;
    s_sum[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < hd) s_acc[warp][d] = acc[i];
  }
  __syncthreads();

  // Merge the warps in order. A warp that saw no position has m = -inf and
  // weight 0; position pos is always seen, so the overall max is finite for
  // finite scores.
  float m_all = s_max[0];
  for (int w = 1; w < kWarps; ++w) m_all = fmaxf(m_all, s_max[w]);
  float weight[kWarps];
  float l_all = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    weight[w] = s_max[w] == -INFINITY ? 0.0f : expf(s_max[w] - m_all);
    l_all += s_sum[w] * weight[w];
  }
  const float inv = 1.0f / l_all;
  float* oh = a.out + t * a.out_stride + h * a.head_dim;
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    float o = 0.0f;
    for (int w = 0; w < kWarps; ++w) o += s_acc[w][d] * weight[w];
    oh[d] = o * inv;
  }
}

}  // namespace

absl::Status LaunchAttention(const AttentionLaunch& a, void* stream) {
  const int64_t blocks = a.n_tokens * a.n_heads;
  if (blocks <= 0) return absl::OkStatus();
  if (a.head_dim > kMaxAttentionHeadDim || a.head_dim < 1 || blocks > 0x7fffffff ||
      a.n_kv_heads < 1 || a.n_heads % a.n_kv_heads != 0 || a.block_size < 1) {
    return absl::InvalidArgumentError("LaunchAttention: unsupported shape");
  }
  AttentionKernel<<<static_cast<unsigned>(blocks), kThreads, 0, AsStream(stream)>>>(a);
  return LaunchStatus("AttentionKernel");
}

}  // namespace packd::engine::cuda
