// Host-side parts of the fused matmul (fused_matmul.h) that every build has:
// the kernel choice and the argument checks.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "codec/cuda/fused_math.h"
#include "codec/cuda/fused_matmul.h"

namespace packd::codec::cuda {

const char* FusedKernelName(FusedKernel k) {
  switch (k) {
    case FusedKernel::kNone:
      return "none";
    case FusedKernel::kTiledRegisters:
      return "tiled-registers";
    case FusedKernel::kVlcLanes:
      return "vlc-lanes";
    case FusedKernel::kStaged:
      return "staged";
  }
  return "?";
}

FusedKernel FusedKernelFor(const DeviceImageLayout& layout) {
  if (layout.elem_bytes != 2) return FusedKernel::kNone;
  if (TiledRowsFuse(layout)) return FusedKernel::kTiledRegisters;
  if (layout.kind == DeviceCodecKind::kVlcLanes) return FusedKernel::kVlcLanes;
  if (StagedRows(layout) > 0) return FusedKernel::kStaged;
  return FusedKernel::kNone;
}

absl::Status CheckFusedMatMulArgs(const char* what, DType dtype, int64_t m, int64_t k,
                                  const void* d_w, const void* d_x, int64_t ldx, int64_t n,
                                  const float* d_out, int64_t ldo) {
  auto bad = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", parts...));
  };
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    return bad("the weight's dtype is ", std::string(DTypeName(dtype)),
               "; the fused kernels take BF16 or F16");
  }
  if (m < 0 || k < 0) return bad("negative weight shape [", m, ", ", k, "]");
  if (n < 1 || n > kFusedMaxBatch) {
    return bad("batch of ", n, " rows; the fused kernels take 1 to ", kFusedMaxBatch);
  }
  if (ldx < k) return bad("x row stride ", ldx, " is below k = ", k);
  if (ldo < m) return bad("out row stride ", ldo, " is below m = ", m);
  if (m == 0) return absl::OkStatus();
  if (d_out == nullptr) return bad("out is null");
  if (reinterpret_cast<uintptr_t>(d_out) % 4 != 0) return bad("out is not 4-byte aligned");
  if (k == 0) return absl::OkStatus();
  if (d_w == nullptr) return bad("the weight is null");
  if (d_x == nullptr) return bad("x is null");
  if (reinterpret_cast<uintptr_t>(d_w) % 2 != 0) return bad("the weight is not 2-byte aligned");
  if (reinterpret_cast<uintptr_t>(d_x) % 2 != 0) return bad("x is not 2-byte aligned");
  return absl::OkStatus();
}

}  // namespace packd::codec::cuda
