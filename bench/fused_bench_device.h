// The two device services bench/fused times against, behind a plain C++
// header (STYLE.md §4; codec/cuda/device_runtime.h has neither):
//
//   CublasGemm: the cuBLAS bf16 GEMM exactly as engine/cuda/cuda_backend.cu's
//     CudaBackend::Gemm calls it (cublasGemmEx, OP_T/OP_N, half A and B, fp32
//     C, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT, default math mode, host
//     pointer mode, a fixed workspace), so the benchmark's yardstick is the
//     engine's own call, not a tuned one.
//   L2Flusher: evicts the device's L2 cache before a timed call by reading a
//     buffer several times its size (reads, so no dirty lines are left to be
//     written back inside the timed call).
//
// Built with or without CUDA: without it (PACKD_HAVE_CUDA=0) every Create
// returns FailedPrecondition (codec/cuda/device_runtime.h's
// kBuiltWithoutCuda). Device: the calling thread's current CUDA device.
// Thread safety: none; one thread owns each object.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_runtime.h"
#include "codec/dtype.h"

namespace packd::bench {

// The L2 cache size of the current device, in bytes (cudaDevAttrL2CacheSize).
absl::StatusOr<uint64_t> DeviceL2Bytes();

// A cuBLAS handle bound to one stream, with its own workspace.
class CublasGemm {
 public:
  // `stream` must outlive this object; workspace_bytes of device memory are
  // allocated for cuBLAS (0: cuBLAS's own default workspace).
  static absl::StatusOr<CublasGemm> Create(codec::cuda::StreamHandle stream,
                                           uint64_t workspace_bytes);
  CublasGemm() = default;
  CublasGemm(CublasGemm&& other) noexcept;
  CublasGemm& operator=(CublasGemm&& other) noexcept;
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;
  ~CublasGemm();

  // c [n, m] (row stride ldc, fp32) = b [n, k] (row stride ldb) * a [m, k]^T,
  // a row-major with lda = k; a and b of `type` (kBF16 or kF16), all device
  // pointers. Enqueued on the stream; returns cuBLAS's status only (the
  // engine's Gemm, argument for argument).
  absl::Status Gemm(const void* a, codec::DType type, int64_t m, int64_t n, int64_t k,
                    const void* b, int64_t ldb, float* c, int64_t ldc) const;

 private:
  void* handle_ = nullptr;  // cublasHandle_t
  codec::cuda::DeviceBuffer workspace_;
};

// Reads a device buffer of `bytes` on a stream, to push everything else out
// of the L2 cache.
class L2Flusher {
 public:
  // bytes > 0; the buffer is allocated and zeroed here.
  static absl::StatusOr<L2Flusher> Create(uint64_t bytes);
  L2Flusher() = default;

  uint64_t bytes() const { return buffer_.size(); }
  // Enqueues the read on `stream` (a kernel: returns its launch status).
  absl::Status Flush(codec::cuda::StreamHandle stream) const;

 private:
  codec::cuda::DeviceBuffer buffer_;  // zeros, read by Flush
};

}  // namespace packd::bench
