// FusedMatMulRaw for builds without CUDA (PACKD_HAVE_CUDA=0): nothing runs on
// a device, and the call says why (after the same argument checks).
#include "codec/cuda/fused_matmul.h"

#if !PACKD_HAVE_CUDA

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "codec/cuda/device_runtime.h"

namespace packd::codec::cuda {

absl::Status FusedMatMulRaw(const void* d_w, DType dtype, int64_t m, int64_t k, const void* d_x,
                            int64_t ldx, int64_t n, float* d_out, int64_t ldo, StreamHandle) {
  RETURN_IF_ERROR(
      CheckFusedMatMulArgs("FusedMatMulRaw", dtype, m, k, d_w, d_x, ldx, n, d_out, ldo));
  return absl::FailedPreconditionError(absl::StrCat(kBuiltWithoutCuda, ": no fused matmul"));
}

}  // namespace packd::codec::cuda

#endif  // !PACKD_HAVE_CUDA
