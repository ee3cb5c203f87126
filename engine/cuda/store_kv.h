// Writing a step's keys and values into the paged KV cache on the device,
// behind a plain header.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/cuda/launch_plan.h"

namespace packd::engine::cuda {

// For each token t (n_tokens, with metadata `meta` on the device): copies
// k[t] and v[t] (width = n_kv_heads * head_dim floats, row strides
// k_stride / v_stride) into slot blocks[seq_begin[seq] + pos / block_size] *
// block_size + pos % block_size of the pools k_cache / v_cache
// ([num_blocks * block_size, width]). The slots were validated on the host
// (CheckKvSlots).
absl::Status LaunchStoreKv(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                           int64_t n_tokens, int64_t width, float* k_cache, float* v_cache,
                           int32_t block_size, const DeviceStepMetadata& meta, void* stream);

}  // namespace packd::engine::cuda
