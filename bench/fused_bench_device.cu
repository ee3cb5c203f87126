// fused_bench_device.h with CUDA: cuBLAS as engine/cuda/cuda_backend.cu uses
// it, and the L2-flushing read kernel.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "bench/fused_bench_device.h"
#include "codec/cuda/cuda_status.h"
#include "engine/cuda/cublas_status.h"

namespace packd::bench {

using codec::cuda::AsStream;
using codec::cuda::CudaStatus;
using codec::cuda::LaunchStatus;
using engine::cuda::CublasStatus;

absl::StatusOr<uint64_t> DeviceL2Bytes() {
  int device = 0;
  RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  int bytes = 0;
  RETURN_IF_ERROR(CudaStatus(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, device),
                             "cudaDeviceGetAttribute(cudaDevAttrL2CacheSize)"));
  return static_cast<uint64_t>(bytes);
}

absl::StatusOr<CublasGemm> CublasGemm::Create(codec::cuda::StreamHandle stream,
                                              uint64_t workspace_bytes) {
  CublasGemm g;
  cublasHandle_t h = nullptr;
  RETURN_IF_ERROR(CublasStatus(cublasCreate(&h), "cublasCreate"));
  g.handle_ = h;
  // The order of CudaBackend::Create: the stream first (cublasSetStream
  // resets the workspace to cuBLAS's own), host pointer mode, default math
  // (no TF32), then the fixed workspace.
  RETURN_IF_ERROR(CublasStatus(cublasSetStream(h, AsStream(stream)), "cublasSetStream"));
  RETURN_IF_ERROR(
      CublasStatus(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode"));
  RETURN_IF_ERROR(CublasStatus(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode"));
  if (workspace_bytes > 0) {
    ASSIGN_OR_RETURN(g.workspace_, codec::cuda::DeviceBuffer::Allocate(workspace_bytes));
    RETURN_IF_ERROR(CublasStatus(cublasSetWorkspace(h, g.workspace_.data(), workspace_bytes),
                                 "cublasSetWorkspace"));
  }
  return g;
}

CublasGemm::CublasGemm(CublasGemm&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), workspace_(std::move(other.workspace_)) {}

CublasGemm& CublasGemm::operator=(CublasGemm&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(handle_));
    handle_ = std::exchange(other.handle_, nullptr);
    workspace_ = std::move(other.workspace_);
  }
  return *this;
}

CublasGemm::~CublasGemm() {
  if (handle_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

absl::Status CublasGemm::Gemm(const void* a, codec::DType type, int64_t m, int64_t n, int64_t k,
                              const void* b, int64_t ldb, float* c, int64_t ldc) const {
  if (handle_ == nullptr) return absl::FailedPreconditionError("CublasGemm: not created");
  if (type != codec::DType::kBF16 && type != codec::DType::kF16) {
    return absl::InvalidArgumentError("CublasGemm: the operands must be BF16 or F16");
  }
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX) {
    return absl::InvalidArgumentError("CublasGemm: a dimension exceeds cuBLAS's 32-bit sizes");
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType ab = type == codec::DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  // Column-major view, as CudaBackend::Gemm: C [m, n] = A^T [m, k] * B [k, n].
  return CublasStatus(
      cublasGemmEx(static_cast<cublasHandle_t>(handle_), CUBLAS_OP_T, CUBLAS_OP_N,
                   static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha, a, ab,
                   static_cast<int>(k), b, ab, static_cast<int>(ldb), &beta, c, CUDA_R_32F,
                   static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

namespace {

// Reads words [0, count) of p (grid-stride, 16 bytes per load). The xor of
// what it read is stored only if it equals a value a zeroed buffer cannot
// give, which keeps the loads from being optimized away without writing.
__global__ void ReadAllKernel(uint4* p, uint64_t count) {
  uint32_t acc = 0;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += uint64_t{gridDim.x} * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) p[0].x = acc;
}

}  // namespace

absl::StatusOr<L2Flusher> L2Flusher::Create(uint64_t bytes) {
  if (bytes < sizeof(uint4)) return absl::InvalidArgumentError("L2Flusher: buffer too small");
  L2Flusher f;
  ASSIGN_OR_RETURN(f.buffer_, codec::cuda::DeviceBuffer::Allocate(bytes));
  RETURN_IF_ERROR(codec::cuda::FillDevice(f.buffer_.data(), 0, bytes));
  return f;
}

absl::Status L2Flusher::Flush(codec::cuda::StreamHandle stream) const {
  if (buffer_.data() == nullptr) return absl::FailedPreconditionError("L2Flusher: not created");
  const uint64_t count = buffer_.size() / sizeof(uint4);
  constexpr int kThreads = 256;
  const uint64_t blocks = std::min<uint64_t>((count + kThreads - 1) / kThreads, 4096);
  ReadAllKernel<<<static_cast<unsigned>(blocks), kThreads, 0, AsStream(stream)>>>(
      reinterpret_cast<uint4*>(buffer_.data()), count);
  return LaunchStatus("the L2 flush kernel");
}

}  // namespace packd::bench
