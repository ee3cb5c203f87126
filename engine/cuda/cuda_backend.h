// The CUDA backend (DESIGN.md §5; design notes in engine/cuda/CUDA_BACKEND.md):
// engine/backend.h on one CUDA device, with one stream per backend — an
// engine (one model instance) owns one backend, so several instances share a
// GPU, each on its own stream, each with its own memory arena.
//
// This header names no CUDA type and is included by code built with or
// without CUDA. In a build without nvcc (PACKD_HAVE_CUDA=0) the functions
// exist and say so: CreateCudaBackend is FailedPrecondition,
// CudaDeviceCount is 0.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend.h"

namespace packd::engine {

struct CudaBackendOptions {
  int device = 0;
  // Device memory the backend may reserve for weights, KV cache and
  // workspace (all of it comes from one arena, reserved at load time).
  // 0: the device's free memory when the backend is created, less a margin
  // (1/16 of it, at most 1 GiB) for the CUDA context and cuBLAS.
  uint64_t memory_budget_bytes = 0;
  // Size of one arena chunk (one cudaMalloc); larger requests get their own.
  uint64_t arena_chunk_bytes = 256ull << 20;
  // Cap of the decode scratch a compressed MatMul/Embed decodes rows into.
  // It also fixes how MatMul's cuBLAS path splits every weight into row
  // chunks (raw and compressed alike, so their results stay bit-identical):
  // a weight larger than this runs as several GEMMs. (The fused path decodes
  // into it only for a codec without a fused kernel for the weight.) The
  // scratch itself is only as large as the largest chunk of a compressed
  // weight loaded so far.
  uint64_t decode_scratch_bytes = 256ull << 20;
  // Activation rows one GEMM or fused matmul against a bf16/f16 weight
  // takes (x is converted to that type in a workspace this many rows tall);
  // a larger MatMul runs in slices of this many rows. The engine sets it to its
  // largest batch.
  int64_t max_matmul_rows = 512;
  // A MatMul of 1..fused_max_batch activation rows against a bf16/f16
  // weight runs the fused decode-in-matmul kernels (codec/cuda/
  // fused_matmul.h: the weight read once, compressed or not, no decoded
  // copy in memory); a taller one, and every f32 weight, runs cuBLAS. 0:
  // never fuse. At most kFusedMaxBatch (32, codec/cuda/fused_math.h).
  // The choice depends only on (rows, dtype, this option), never on
  // whether the weight is compressed, so raw and compressed results stay
  // bit-identical; the fused result of a token is also the same in every
  // batch it is fused in. 8 is a prediction of where cuBLAS starts to win,
  // not yet a measurement (CUDA_BACKEND.md).
  int fused_max_batch = 8;
  // The pinned upload ring (step metadata, token ids, row indices); one
  // step's metadata must fit in it.
  uint64_t staging_bytes = 8ull << 20;
  // cuBLAS workspace (a fixed one keeps its algorithm choice, and so its
  // results, deterministic).
  uint64_t cublas_workspace_bytes = 32ull << 20;
};

struct CudaDeviceInfo {
  int device = 0;
  std::string name;  // "NVIDIA H200"
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;
  int sm_count = 0;
  int compute_major = 0;  // compute capability, e.g. 9.0
  int compute_minor = 0;
};

// Devices visible to this process; 0 when there is no driver, no device,
// or the build has no CUDA.
int CudaDeviceCount();

// NotFound for a device index outside [0, CudaDeviceCount()),
// FailedPrecondition without CUDA.
absl::StatusOr<CudaDeviceInfo> QueryCudaDevice(int device);

// The checks CreateCudaBackend makes of its options before it touches a
// device (every build has it; CPU-tested): max_matmul_rows >= 1,
// staging_bytes >= 4096, arena_chunk_bytes > 0, fused_max_batch in
// [0, kFusedMaxBatch]. InvalidArgument naming the option, its value and
// the range.
absl::Status CheckCudaBackendOptions(const CudaBackendOptions& options);

// A backend on options.device. InvalidArgument for bad options
// (CheckCudaBackendOptions, checked first), NotFound for a missing device,
// ResourceExhausted when its fixed workspace does not fit,
// FailedPrecondition in a build without CUDA.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

}  // namespace packd::engine
