// Launcher of the "vlc" decode kernels (vlc_decode.cu). Plain C++: names no
// CUDA type; DeviceDecoder (device_decoder.cu) calls it.
#pragma once

#include "absl/status/status.h"
#include "codec/cuda/device_image_layout.h"

namespace packd::codec::cuda {

// Enqueues the decode of `plan` (PlanRows of `layout`, plan.items > 0) on
// `stream` (a cudaStream_t; nullptr = the legacy default stream). Huffman
// and rANS: a thread per overlapping tile (VlcHuffmanDecodeTile,
// VlcRansDecodeTile), the 16 KiB decode table copied to shared memory once
// per block; constant mode: a thread per 8 elements. Returns the launch's
// status (LaunchStatus: Internal naming the kernel when it failed).
absl::Status LaunchVlcDecode(const DeviceImageLayout& layout, const void* d_image,
                             const DecodePlan& plan, void* d_out, void* stream);

}  // namespace packd::codec::cuda
