#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "codec/cuda/cuda_status.h"

namespace packd::codec::cuda {

absl::Status CudaStatus(cudaError_t err, std::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  std::string msg =
      absl::StrCat(std::string(what), ": ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
  if (err == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(std::move(msg));
  return absl::InternalError(std::move(msg));
}

absl::Status LaunchStatus(std::string_view kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return absl::OkStatus();  // no message built on the hot path
  return CudaStatus(err, absl::StrCat("launch of ", std::string(kernel)));
}

absl::Status WithContext(const absl::Status& status, std::string_view context) {
  return absl::Status(status.code(), absl::StrCat(std::string(context), ": ", status.message()));
}

}  // namespace packd::codec::cuda
