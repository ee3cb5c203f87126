// CUDA and cuBLAS errors as absl::Status, for the backend's .cu files only
// (this header includes CUDA headers; no .cc file may include it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace packd::engine::cuda {

// OK for cudaSuccess; otherwise an error naming `what` and CUDA's message.
// Out-of-memory is ResourceExhausted, a bad argument InvalidArgument,
// anything else Internal.
inline absl::Status CudaStatus(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string msg =
      absl::StrCat(std::string(what), ": ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
  switch (e) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(msg);
    case cudaErrorInvalidValue:
    case cudaErrorInvalidConfiguration:
      return absl::InvalidArgumentError(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// The status of the kernel launch just made (cudaGetLastError), naming the
// kernel: launch errors (bad configuration, no kernel image for this GPU)
// surface here; faults while it runs surface at the next synchronization.
inline absl::Status LaunchStatus(std::string_view kernel) {
  return CudaStatus(cudaGetLastError(), absl::StrCat("launch of ", std::string(kernel)));
}

inline absl::Status CublasStatus(cublasStatus_t s, std::string_view what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string msg =
      absl::StrCat(std::string(what), ": ", cublasGetStatusName(s), ": ", cublasGetStatusString(s));
  if (s == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(msg);
  if (s == CUBLAS_STATUS_INVALID_VALUE) return absl::InvalidArgumentError(msg);
  return absl::InternalError(msg);
}

// The stream handle of the plain headers (void*) as a CUDA stream.
inline cudaStream_t AsStream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace packd::engine::cuda
