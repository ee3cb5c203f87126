// Row-wise RMSNorm on the device, behind a plain header (streams as void*).
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace packd::engine::cuda {

// out[r][i] = x[r][i] * (1 / sqrt(mean_i(x[r][i]^2) + eps)) * w[i] for rows
// r in [0, rows), i in [0, d): the CPU kernel's formula, with the sum of
// squares reduced in a fixed tree order (one block per row), so a row's
// result depends only on that row. out may be x (same stride). Device
// pointers; enqueued on `stream`; returns the launch status.
absl::Status LaunchRmsNorm(const float* x, int64_t x_stride, const float* w, int64_t rows,
                           int64_t d, float eps, float* out, int64_t out_stride, void* stream);

}  // namespace packd::engine::cuda
