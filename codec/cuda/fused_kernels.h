// Launchers of the fused matmul kernels (fused_matmul.cu). Plain C++: names
// no CUDA type; FusedMatMulRaw and DeviceDecoder::FusedMatMul call them after
// CheckFusedMatMulArgs. Each enqueues one kernel on `stream` (a cudaStream_t;
// nullptr = the legacy default stream) and returns the launch's status
// (LaunchStatus: Internal naming the kernel when it failed). x is [n, k] half (bf16 when `bf16`,
// else f16) with row stride ldx elements; out is [n, m] fp32 with row stride ldo; 1 <= n <=
// kFusedMaxBatch.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "codec/cuda/device_image_layout.h"

namespace packd::codec::cuda {

struct FusedLaunch {
  const void* x = nullptr;
  uint64_t ldx = 0;
  int n = 0;
  float* out = nullptr;
  uint64_t ldo = 0;
  bool bf16 = true;
};

// The launch arguments from the public ones (checked by
// CheckFusedMatMulArgs: non-negative, n in [1, kFusedMaxBatch]).
inline FusedLaunch MakeFusedLaunch(const void* x, int64_t ldx, int64_t n, float* out, int64_t ldo,
                                   bool bf16) {
  FusedLaunch a;
  a.x = x;
  a.ldx = static_cast<uint64_t>(ldx);
  a.n = static_cast<int>(n);
  a.out = out;
  a.ldo = static_cast<uint64_t>(ldo);
  a.bf16 = bf16;
  return a;
}

// Raw [m, k] half weight: a warp per 1-2 rows (RawRow).
absl::Status LaunchFusedRaw(const void* d_w, uint64_t m, uint64_t k, const FusedLaunch& a,
                            void* stream);

// FusedKernel::kTiledRegisters over an uploaded `tiled` image (TiledRow).
absl::Status LaunchFusedTiled(const DeviceImageLayout& layout, const void* d_image,
                              const FusedLaunch& a, void* stream);

// FusedKernel::kVlcLanes over an uploaded kVlcLanes image (VlcLanesRow).
absl::Status LaunchFusedVlcLanes(const DeviceImageLayout& layout, const void* d_image,
                                 const FusedLaunch& a, void* stream);

// FusedKernel::kStaged over any uploaded image: bands of StagedRows(layout)
// rows decoded into shared memory (DecodeItem), then RawRow over them.
// Internal for an image FusedKernelFor never sends here (rows that do not
// fit, a kVlcLanes image).
absl::Status LaunchFusedStaged(const DeviceImageLayout& layout, const void* d_image,
                               const FusedLaunch& a, void* stream);

}  // namespace packd::codec::cuda
