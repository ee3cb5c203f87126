#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "codec/cuda/cuda_status.h"
#include "codec/cuda/decode_math.h"
#include "codec/cuda/tiled_decode.h"

namespace packd::codec::cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps = 8 tiles per block
// Blocks beyond this loop (grid stride); far more than the GPU holds at once.
constexpr uint64_t kMaxBlocks = uint64_t{1} << 20;

// Work items as in decode_math.h: item = 32 * (tile - t_first) + lane. The
// grid stride is a multiple of 32, so a warp always serves one tile.
// ptxas -v (sm_90a): 54 registers, no spill. Register allocation here is
// sensitive to how decode_math.h's tiled helpers are written (equivalent
// forms spilled 12 bytes at 48 registers): check it after changing them.
__global__ void __launch_bounds__(kThreads)
    TiledDecodeKernel(DeviceImageLayout layout, const uint8_t* __restrict__ image, DecodePlan plan,
                      uint8_t* __restrict__ out) {
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  for (uint64_t item = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; item < plan.items;
       item += stride) {
    TiledDecodeLane(layout, image, plan.t_first + item / 32, static_cast<uint32_t>(item % 32),
                    plan.e_begin, plan.e_end, out);
  }
}

}  // namespace

absl::Status LaunchTiledDecode(const DeviceImageLayout& layout, const void* d_image,
                               const DecodePlan& plan, void* d_out, void* stream) {
  const uint64_t blocks = std::min<uint64_t>((plan.items + kThreads - 1) / kThreads, kMaxBlocks);
  TiledDecodeKernel<<<static_cast<unsigned>(blocks), kThreads, 0, AsStream(stream)>>>(
      layout, static_cast<const uint8_t*>(d_image), plan, static_cast<uint8_t*>(d_out));
  return LaunchStatus("TiledDecodeKernel");
}

}  // namespace packd::codec::cuda
