// Paged attention on the device (prefill and decode alike), behind a plain
// header.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/cuda/launch_plan.h"

namespace packd::engine::cuda {

struct AttentionLaunch {
  const float* q = nullptr;  // [n_tokens, n_heads * head_dim], row stride q_stride
  int64_t q_stride = 0;
  float* out = nullptr;  // like q
  int64_t out_stride = 0;
  const float* k_cache = nullptr;  // [num_blocks * block_size, n_kv_heads * head_dim]
  const float* v_cache = nullptr;
  int32_t block_size = 0;
  int64_t n_tokens = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // divides n_heads (GQA: head h reads kv head h / (n_heads / n_kv_heads))
  int64_t head_dim = 0;    // <= kMaxAttentionHeadDim (op_checks.h)
  float scale = 0;
  int64_t sliding_window = 0;  // 0: none; else positions > pos - window
  DeviceStepMetadata meta;     // positions, token_seq, block tables
};

// out[t, h] = softmax_j(q[t, h] . K[j] * scale) V[j] over the positions j of
// t's sequence in [max(0, pos - window + 1), pos] (all of [0, pos] without a
// window), read through the block table. One block of 4 warps per (token,
// head): warp w takes positions start + w, start + w + 4, ... in order with
// an online softmax, and the 4 partial results are merged in warp order —
// a fixed order that depends only on the token's own position, so a
// token's result does not depend on the rest of the batch. fp32
// throughout; exp is expf. The slots were validated on the host.
absl::Status LaunchAttention(const AttentionLaunch& a, void* stream);

}  // namespace packd::engine::cuda
