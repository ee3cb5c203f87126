// cuBLAS errors as absl::Status, for the .cu files of engine/cuda and bench
// only (this header includes CUDA headers; no .cc file may include it). CUDA
// runtime errors: codec/cuda/cuda_status.h.
#pragma once

#include <cublas_v2.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace packd::engine::cuda {

// OK for CUBLAS_STATUS_SUCCESS; otherwise an error naming `what` and
// cuBLAS's message: an allocation failure is ResourceExhausted, a bad
// argument InvalidArgument, anything else Internal.
inline absl::Status CublasStatus(cublasStatus_t s, std::string_view what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string msg =
      absl::StrCat(std::string(what), ": ", cublasGetStatusName(s), ": ", cublasGetStatusString(s));
  if (s == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(msg);
  if (s == CUBLAS_STATUS_INVALID_VALUE) return absl::InvalidArgumentError(msg);
  return absl::InternalError(msg);
}

}  // namespace packd::engine::cuda
