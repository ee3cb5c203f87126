// Launcher of the "tiled" decode kernel (tiled_decode.cu). Plain C++: names
// no CUDA type; DeviceDecoder (device_decoder.cu) calls it.
#pragma once

#include "codec/cuda/device_image_layout.h"

namespace packd::codec::cuda {

// Enqueues the decode of `plan` (PlanRows of `layout`, plan.items > 0) on
// `stream` (a cudaStream_t; nullptr = the legacy default stream): a warp per
// overlapping tile (TiledDecodeLane), 8 warps per block. d_image is the
// uploaded image, d_out receives the plan's elements. Returns the
// cudaError_t of the launch (cudaGetLastError) as an int: 0 on success.
int LaunchTiledDecode(const DeviceImageLayout& layout, const void* d_image, const DecodePlan& plan,
                      void* d_out, void* stream);

}  // namespace packd::codec::cuda
