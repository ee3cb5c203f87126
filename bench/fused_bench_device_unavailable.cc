// fused_bench_device.h for builds without CUDA: every Create says the build
// has no CUDA; nothing touches a device.
#include "bench/fused_bench_device.h"

#if !PACKD_HAVE_CUDA

#include <utility>

namespace packd::bench {

namespace {
absl::Status NoCuda() { return absl::FailedPreconditionError(codec::cuda::kBuiltWithoutCuda); }
}  // namespace

absl::StatusOr<uint64_t> DeviceL2Bytes() { return NoCuda(); }

absl::StatusOr<CublasGemm> CublasGemm::Create(codec::cuda::StreamHandle, uint64_t) {
  return NoCuda();
}
CublasGemm::CublasGemm(CublasGemm&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), workspace_(std::move(other.workspace_)) {}
CublasGemm& CublasGemm::operator=(CublasGemm&& other) noexcept {
  handle_ = std::exchange(other.handle_, nullptr);
  workspace_ = std::move(other.workspace_);
  return *this;
}
CublasGemm::~CublasGemm() = default;  // never holds a handle here
absl::Status CublasGemm::Gemm(const void*, codec::DType, int64_t, int64_t, int64_t, const void*,
                              int64_t, float*, int64_t) const {
  return NoCuda();
}

absl::StatusOr<L2Flusher> L2Flusher::Create(uint64_t) { return NoCuda(); }
absl::Status L2Flusher::Flush(codec::cuda::StreamHandle) const { return NoCuda(); }

}  // namespace packd::bench

#endif  // !PACKD_HAVE_CUDA
