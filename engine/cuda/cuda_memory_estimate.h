// What a CUDA backend will reserve for one engine instance of a model, known
// before the model is loaded, so that placement (server/placement.h) can
// refuse a load that does not fit before any device memory is touched.
//
// Plain C++, compiled in every build (it only does arithmetic on the
// model's tensor list); it mirrors engine/cuda/cuda_backend.cu's LoadWeight
// and CreateCudaBackend, and cuda_memory_estimate_test.cc pins the rules.
#pragma once

#include <cstdint>

#include "engine/backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/model_source.h"

namespace packd::engine {

// The backend's own reservations for `source`, by kind:
//   kWeights: every tensor as the backend holds it — 2-D raw tensors as
//     stored, 2-D compressed ones at their stored (encoded) size plus the
//     device image's alignment, 1-D tensors widened to fp32 — each rounded
//     up to the arena's 256-byte alignment;
//   kWorkspace: the cuBLAS workspace, the device mirror of the staging ring,
//     and the activation rows converted to bf16/f16 for a GEMM
//     (max_matmul_rows x the widest half-precision weight row);
//   kDecodeScratch: the largest row chunk of a compressed 2-D weight (at
//     least one row at a 256-byte pitch), 0 when nothing is compressed.
// The KV cache and the transformer's activations are allocated by the
// engine, not the backend: server/placement.h's EstimateInstanceBytes counts
// those. Arena chunk rounding is not included (chunks are cut to fit).
//
// `weights`: kLoads for the instance that loads the model's weights (the
// first on a device), kShares for one opened on another instance's weights
// (Engine::Open(source, options, weights)): kWeights is 0, the rest the
// same (every backend sizes its own workspace and decode scratch for the
// weights it runs, backend.h AdoptWeight). So the weights of one model on
// one device are charged once: kLoads once, kShares for every other
// instance.
enum class WeightCopy { kLoads, kShares };
MemoryUsage EstimateCudaBackendBytes(const CudaBackendOptions& options, const ModelSource& source,
                                     WeightCopy weights = WeightCopy::kLoads);

}  // namespace packd::engine
