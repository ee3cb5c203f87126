// Launcher of the "tiled" decode kernel (tiled_decode.cu). Plain C++: names
// no CUDA type; DeviceDecoder (device_decoder.cu) calls it.
#pragma once

#include "absl/status/status.h"
#include "codec/cuda/device_image_layout.h"

namespace packd::codec::cuda {

// Enqueues the decode of `plan` (PlanRows of `layout`, plan.items > 0) on
// `stream` (a cudaStream_t; nullptr = the legacy default stream): a warp per
// overlapping tile (TiledDecodeLane), 8 warps per block. d_image is the
// uploaded image, d_out receives the plan's elements. Returns the launch's
// status (LaunchStatus: Internal naming the kernel when it failed).
absl::Status LaunchTiledDecode(const DeviceImageLayout& layout, const void* d_image,
                               const DecodePlan& plan, void* d_out, void* stream);

}  // namespace packd::codec::cuda
