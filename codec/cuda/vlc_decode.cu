#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "codec/cuda/cuda_status.h"
#include "codec/cuda/decode_math.h"
#include "codec/cuda/vlc_decode.h"
#include "codec/cuda/vlc_lanes.h"

namespace packd::codec::cuda {

namespace {

constexpr int kThreads = 128;
constexpr uint64_t kMaxBlocks = uint64_t{1} << 20;

// Huffman or rANS: the image's table goes to shared memory (16-byte loads),
// then each thread decodes whole tiles (item = tile - t_first).
__global__ void __launch_bounds__(kThreads)
    VlcStreamKernel(DeviceImageLayout layout, const uint8_t* __restrict__ image, DecodePlan plan,
                    uint8_t* __restrict__ out) {
  __shared__ uint4 table[kVlcTableBytes / sizeof(uint4)];
  CopyVlcTableToShared(image + layout.table_offset, table);
  __syncthreads();
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  for (uint64_t item = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; item < plan.items;
       item += stride) {
    if (layout.kind == DeviceCodecKind::kVlcHuffman) {
      VlcHuffmanDecodeTile(layout, image, reinterpret_cast<const uint64_t*>(table),
                           plan.t_first + item, plan.e_begin, plan.e_end, out);
    } else {
      VlcRansDecodeTile(layout, image, reinterpret_cast<const uint32_t*>(table),
                        plan.t_first + item, plan.e_begin, plan.e_end, out);
    }
  }
}

// Lanes layout: a warp per row (item = 32 * (row - t_first) + lane), the
// table in shared memory; each chunk's exponents are joined and stored by the
// lane that decoded them.
__global__ void __launch_bounds__(kThreads)
    VlcLanesKernel(DeviceImageLayout layout, const uint8_t* __restrict__ image, DecodePlan plan,
                   uint8_t* __restrict__ out) {
  __shared__ uint4 table[kVlcTableBytes / sizeof(uint4)];
  CopyVlcTableToShared(image + layout.table_offset, table);
  __syncthreads();
  const uint64_t* multi = reinterpret_cast<const uint64_t*>(table);
  const uint32_t lane_id = threadIdx.x & 31u;
  const uint64_t k = layout.tensor_cols;
  const uint64_t chunks = FusedChunks(k);
  const uint64_t warps = uint64_t{gridDim.x} * blockDim.x / 32;
  for (uint64_t w = (uint64_t{blockIdx.x} * blockDim.x + threadIdx.x) / 32; w < plan.t_count;
       w += warps) {
    const uint64_t r = plan.t_first + w;
    uint64_t at = VlcLanesRowOffset(layout, image, r);
    const uint64_t end = VlcLanesRowOffset(layout, image, r + 1);
    VlcLane lane;
    for (uint64_t c = 0; c < chunks; ++c) {
      const uint32_t need = LaneValid(LaneCol0(c, lane_id), k);
      const uint64_t exps =
          WarpVlcLanesChunk(lane, need, multi, image + layout.codes_offset, at, end);
      if (need > 0) {
        EmitElements(layout, image, r * k + LaneCol0(c, lane_id), need, exps, plan.e_begin,
                     plan.e_end, out);
      }
    }
  }
}

// Constant mode: item = 8-element slot - slot_first.
__global__ void __launch_bounds__(kThreads)
    VlcConstantKernel(DeviceImageLayout layout, const uint8_t* __restrict__ image, DecodePlan plan,
                      uint8_t* __restrict__ out) {
  const uint64_t stride = uint64_t{gridDim.x} * blockDim.x;
  for (uint64_t item = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; item < plan.items;
       item += stride) {
    VlcConstantDecodeSlot(layout, image, plan.slot_first + item, plan.e_begin, plan.e_end, out);
  }
}

}  // namespace

absl::Status LaunchVlcDecode(const DeviceImageLayout& layout, const void* d_image,
                             const DecodePlan& plan, void* d_out, void* stream) {
  const uint64_t blocks = std::min<uint64_t>((plan.items + kThreads - 1) / kThreads, kMaxBlocks);
  const auto* image = static_cast<const uint8_t*>(d_image);
  auto* out = static_cast<uint8_t*>(d_out);
  const cudaStream_t s = AsStream(stream);
  if (layout.kind == DeviceCodecKind::kVlcConstant) {
    VlcConstantKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(layout, image, plan, out);
    return LaunchStatus("VlcConstantKernel");
  }
  if (layout.kind == DeviceCodecKind::kVlcLanes) {
    VlcLanesKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(layout, image, plan, out);
    return LaunchStatus("VlcLanesKernel");
  }
  VlcStreamKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(layout, image, plan, out);
  return LaunchStatus("VlcStreamKernel");
}

}  // namespace packd::codec::cuda
