// Rotary position embedding on the device, behind a plain header.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "engine/model_config.h"

namespace packd::engine::cuda {

// Rotates x [n_tokens, n_heads * head_dim] (row stride x_stride) in place:
// for token t, head h, pair i < head_dim/2, with angle = positions[t] *
// inv_freq[i] (fp32 product), the pair (a, b) — (2i, 2i+1) interleaved, (i,
// i + head_dim/2) half-split — becomes (a cos - b sin, a sin + b cos), each
// product rounded separately (no FMA), as on the CPU. positions
// [n_tokens] and inv_freq [head_dim/2] are device memory.
absl::Status LaunchRope(float* x, int64_t x_stride, int64_t n_tokens, int64_t n_heads,
                        int64_t head_dim, RopeStyle style, const int32_t* positions,
                        const float* inv_freq, void* stream);

}  // namespace packd::engine::cuda
