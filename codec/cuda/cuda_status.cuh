// CUDA runtime errors as absl::Status: for .cu files only (names CUDA types).
#pragma once

#include <cuda_runtime.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace packd::codec::cuda {

// OK for cudaSuccess; otherwise Internal naming the call and the runtime's
// description of the error.
inline absl::Status CudaStatus(cudaError_t err, std::string_view call) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(std::string(call), " failed: ", cudaGetErrorName(err),
                                          ": ", cudaGetErrorString(err)));
}

}  // namespace packd::codec::cuda
