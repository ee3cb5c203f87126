// The CUDA backend's entry points in a build without nvcc: they exist, so
// callers need no #if, and say why there is no device.
#include "engine/cuda/cuda_backend.h"

#include "codec/cuda/device_runtime.h"

#if !PACKD_HAVE_CUDA

namespace packd::engine {

using codec::cuda::kBuiltWithoutCuda;

int CudaDeviceCount() { return 0; }

absl::StatusOr<CudaDeviceInfo> QueryCudaDevice(int device) {
  return absl::FailedPreconditionError(kBuiltWithoutCuda);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  return absl::FailedPreconditionError(kBuiltWithoutCuda);
}

}  // namespace packd::engine

#endif  // !PACKD_HAVE_CUDA
