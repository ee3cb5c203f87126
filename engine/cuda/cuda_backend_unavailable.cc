// The CUDA backend's entry points in a build without nvcc: they exist, so
// callers need no #if, and say why there is no device.
#include "engine/cuda/cuda_backend.h"

#if !PACKD_HAVE_CUDA

namespace packd::engine {
namespace {

constexpr char kNoCuda[] = "packd was built without CUDA (nvcc not found at configure time)";

}  // namespace

int CudaDeviceCount() { return 0; }

absl::StatusOr<CudaDeviceInfo> QueryCudaDevice(int device) {
  return absl::FailedPreconditionError(kNoCuda);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  return absl::FailedPreconditionError(kNoCuda);
}

}  // namespace packd::engine

#endif  // !PACKD_HAVE_CUDA
