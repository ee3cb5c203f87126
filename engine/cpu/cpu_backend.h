// The CPU backend: fp32 compute over bf16/fp16/fp32 weights with the
// vectorized kernels of engine/cpu/kernels.h on a persistent thread pool.
// Compressed weights are decoded tile run by tile run into per-thread
// cache-sized buffers inside MatMul and Embed (DESIGN.md §5).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend.h"

namespace packd::engine {

struct CpuBackendOptions {
  int threads = 0;  // <= 0: all hardware threads
  // Memory the backend may hand out (weights are counted at their resident
  // size; the mmapped model pages are shared with the page cache).
  // 0: unlimited.
  uint64_t memory_budget_bytes = 0;
};

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options = {});

}  // namespace packd::engine
