// The parts of the CUDA backend that every build has: the options check
// (plain C++, CPU-tested in cuda_backend_options_test.cc), and, in a build
// without nvcc, the entry points, which exist so that callers need no #if and
// say why there is no device.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "codec/cuda/device_runtime.h"
#include "codec/cuda/fused_math.h"
#include "engine/cuda/cuda_backend.h"

namespace packd::engine {

absl::Status CheckCudaBackendOptions(const CudaBackendOptions& o) {
  auto bad = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: ", parts...));
  };
  if (o.max_matmul_rows < 1) return bad("max_matmul_rows is ", o.max_matmul_rows, "; must be >= 1");
  if (o.staging_bytes < 4096) return bad("staging_bytes is ", o.staging_bytes, "; must be >= 4096");
  if (o.arena_chunk_bytes == 0) return bad("arena_chunk_bytes is 0; must be > 0");
  if (o.fused_max_batch < 0 || o.fused_max_batch > codec::cuda::kFusedMaxBatch) {
    return bad("fused_max_batch is ", o.fused_max_batch, "; must be in [0, ",
               codec::cuda::kFusedMaxBatch, "] (0: never use the fused kernels)");
  }
  return absl::OkStatus();
}

#if !PACKD_HAVE_CUDA

using codec::cuda::kBuiltWithoutCuda;

int CudaDeviceCount() { return 0; }

absl::StatusOr<CudaDeviceInfo> QueryCudaDevice(int device) {
  return absl::FailedPreconditionError(kBuiltWithoutCuda);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  RETURN_IF_ERROR(CheckCudaBackendOptions(options));
  return absl::FailedPreconditionError(kBuiltWithoutCuda);
}

#endif  // !PACKD_HAVE_CUDA

}  // namespace packd::engine
