#include "engine/cuda/cuda_memory_estimate.h"

#include <algorithm>

#include "base/align.h"
#include "codec/cuda/device_image_layout.h"
#include "engine/cuda/device_arena.h"
#include "engine/cuda/launch_plan.h"
#include "engine/cuda/staging_ring.h"

namespace packd::engine {
namespace {

// The arena's alignment.
uint64_t RoundUp256(uint64_t n) { return RoundUp(n, cuda::kArenaAlignment); }

// An upper bound of DeviceImage::bytes() from the stored size: each of the
// (at most 5) parts starts at a kImagePartAlignment boundary, the codes get
// kImageCodesSlack bytes of slack, and vlc adds its decode table. A 16-bit
// vlc matrix is transcoded to the lanes layout (codec/cuda/vlc_lanes.h),
// which per row adds at most a u64 offset and, per lane, a 16-bit word of
// padding and one zero word (a lane whose bits ended holds < 11 real bits,
// all decoded before it could ask again). Computing the exact size would
// decode every tensor once more.
uint64_t ImageBytesBound(const WeightSource& w) {
  uint64_t bound = w.stored_bytes + 5 * codec::cuda::kImagePartAlignment +
                   codec::cuda::kImageCodesSlack +
                   (w.codec == "vlc" ? codec::cuda::kVlcTableBytes : 0);
  if (w.codec == "vlc" && codec::DTypeSize(w.info.dtype) == 2 && !w.info.shape.empty()) {
    bound += 8 + static_cast<uint64_t>(w.info.shape[0]) * (8 + 32 * 4);
  }
  return bound;
}

}  // namespace

MemoryUsage EstimateCudaBackendBytes(const CudaBackendOptions& options, const ModelSource& source,
                                     WeightCopy weight_copy) {
  MemoryUsage u;
  uint64_t weights = 0;
  uint64_t& workspace = u.bytes[static_cast<int>(MemoryKind::kWorkspace)];
  uint64_t& scratch = u.bytes[static_cast<int>(MemoryKind::kDecodeScratch)];
  workspace += RoundUp256(options.cublas_workspace_bytes);
  workspace += RoundUp256(cuda::StagingRing(options.staging_bytes).capacity());
  uint64_t half_x = 0;
  for (const auto& [name, w] : source.tensors()) {
    const codec::TensorInfo& info = w.info;
    if (info.shape.size() != 2) {  // 1-D (and scalars): widened to fp32
      weights += RoundUp256(info.elements() * sizeof(float));
      continue;
    }
    const cuda::WeightWorkspace need =
        cuda::PlanWeightWorkspace(info.shape[0], info.shape[1], info.dtype, w.decoder != nullptr,
                                  options.decode_scratch_bytes, options.max_matmul_rows);
    half_x = std::max(half_x, need.half_x_bytes);
    scratch = std::max(scratch, need.decode_scratch_bytes);
    weights += RoundUp256(w.decoder == nullptr ? w.raw.size() : ImageBytesBound(w));
  }
  workspace += RoundUp256(half_x);
  scratch = RoundUp256(scratch);
  if (weight_copy == WeightCopy::kLoads) u.bytes[static_cast<int>(MemoryKind::kWeights)] = weights;
  return u;
}

}  // namespace packd::engine
