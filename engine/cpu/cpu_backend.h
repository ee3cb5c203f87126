// The CPU backend: fp32 compute over bf16/fp16/fp32 weights with the
// vectorized kernels of engine/cpu/kernels.h on a persistent thread pool
// (or, in the bf16 matmul mode, bf16 dot products for bf16 weights:
// engine/cpu/bf16_gemm.h).
// Compressed weights are decoded tile run by tile run into per-thread
// cache-sized buffers inside MatMul and Embed (DESIGN.md §5).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/cpu/cpu_matmul_mode.h"

namespace packd::engine {

struct CpuBackendOptions {
  int threads = 0;  // <= 0: all hardware threads
  // Memory the backend may hand out (weights are counted at their resident
  // size; the mmapped model pages are shared with the page cache).
  // 0: unlimited.
  uint64_t memory_budget_bytes = 0;
  // How MatMul multiplies by bf16 weights (cpu_matmul_mode.h); every
  // matmul of every step uses it, so a sequence's logits do not depend on
  // the batch in either mode, and compressed weights give the raw model's
  // bits in both. kBf16 on a CPU without AVX512-BF16 (or with
  // PACKD_CPU_ISA below avx512) makes CreateCpuBackend FailedPrecondition.
  CpuMatMulMode matmul = CpuMatMulMode::kFp32;
};

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const CpuBackendOptions& options = {});

}  // namespace packd::engine
