#include "engine/cuda/staging_ring.h"

#include "absl/strings/str_cat.h"

namespace packd::engine::cuda {

absl::StatusOr<StagingRing::Region> StagingRing::Reserve(uint64_t bytes) {
  if (bytes > capacity_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("an upload of ", bytes, " bytes exceeds the ", capacity_,
                     "-byte staging ring (CudaBackendOptions::staging_bytes)"));
  }
  const uint64_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  Region r;
  r.bytes = rounded;
  if (rounded > capacity_ - head_) {
    head_ = 0;
    ++generation_;
    r.wrapped = true;
  }
  r.offset = head_;
  head_ += rounded;
  return r;
}

}  // namespace packd::engine::cuda
