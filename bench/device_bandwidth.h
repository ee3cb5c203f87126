// The CUDA device's copy bandwidth, the yardstick the GPU benchmarks state
// their numbers against (bench/gpu: decode bandwidth; bench/engine --device
// cuda:N: the bytes-per-token floor). Shared by those two programs; built
// with or without CUDA (it only uses codec/cuda/device_runtime.h, whose
// functions say "built without CUDA" when there is none).
//
// Device: the calling thread's current CUDA device, which is device 0 unless
// the thread selected another (device_runtime.h selects none).
// Thread safety: none; one thread measures.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "codec/cuda/device_runtime.h"

namespace packd::bench {

// False, after printing "no CUDA device: <why>" to stderr, when this process
// can use no CUDA device (the GPU benchmarks then exit 2).
inline bool HaveCudaDevice() {
  const absl::StatusOr<int> devices = codec::cuda::CudaDeviceCount();
  if (devices.ok()) return true;
  std::fprintf(stderr, "no CUDA device: %s\n", std::string(devices.status().message()).c_str());
  return false;
}

// The median of `v` (non-empty).
inline double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median device time, in ms, of `repeats` (>= 1) runs of `enqueue` on
// `stream`, each between a pair of cudaEvents, after `warmup` untimed runs.
// `enqueue` returns absl::Status and only enqueues work on `stream`.
template <typename Fn>
absl::StatusOr<double> MedianDeviceMs(int warmup, int repeats,
                                      const codec::cuda::DeviceStream& stream, Fn enqueue) {
  if (repeats < 1) return absl::InvalidArgumentError("MedianDeviceMs: repeats must be >= 1");
  for (int i = 0; i < warmup; ++i) RETURN_IF_ERROR(enqueue());
  RETURN_IF_ERROR(stream.Synchronize());
  ASSIGN_OR_RETURN(codec::cuda::DeviceTimer timer, codec::cuda::DeviceTimer::Create());
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    RETURN_IF_ERROR(timer.Start(stream.handle()));
    RETURN_IF_ERROR(enqueue());
    RETURN_IF_ERROR(timer.Stop(stream.handle()));
    ASSIGN_OR_RETURN(const double t, timer.ElapsedMs());
    ms.push_back(t);
  }
  return MedianOf(std::move(ms));
}

struct DeviceCopyBandwidth {
  uint64_t bytes = 0;  // bytes copied per run
  double ms = 0;       // median time of one copy
  // Bytes read + bytes written per second, in GB/s (1e9 B/s): a copy of
  // `bytes` moves 2 x bytes through device memory.
  double gbps = 0;
};

// Times a device-to-device cudaMemcpyAsync of `bytes` (> 0) between two
// fresh buffers on `stream` (median of `repeats` after `warmup`). The two
// buffers (2 x bytes of device memory) are freed before it returns.
inline absl::StatusOr<DeviceCopyBandwidth> MeasureDeviceCopyBandwidth(
    uint64_t bytes, int warmup, int repeats, const codec::cuda::DeviceStream& stream) {
  if (bytes == 0) return absl::InvalidArgumentError("device copy bandwidth: 0 bytes");
  ASSIGN_OR_RETURN(codec::cuda::DeviceBuffer src, codec::cuda::DeviceBuffer::Allocate(bytes));
  ASSIGN_OR_RETURN(codec::cuda::DeviceBuffer dst, codec::cuda::DeviceBuffer::Allocate(bytes));
  RETURN_IF_ERROR(codec::cuda::FillDevice(src.data(), 1, bytes));
  DeviceCopyBandwidth bw;
  bw.bytes = bytes;
  ASSIGN_OR_RETURN(bw.ms, MedianDeviceMs(warmup, repeats, stream, [&] {
                     return codec::cuda::CopyDeviceToDeviceAsync(dst.data(), src.data(), bytes,
                                                                 stream.handle());
                   }));
  if (bw.ms <= 0) return absl::InternalError("device copy bandwidth: the copy took no time");
  bw.gbps = 2.0 * static_cast<double>(bytes) / (bw.ms * 1e-3) / 1e9;
  return bw;
}

}  // namespace packd::bench
