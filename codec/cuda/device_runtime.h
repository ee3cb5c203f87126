// The few CUDA runtime services that the device decoders' tests and
// benchmark need (device count, memory, copies, streams, event timing),
// behind a plain C++ header so that those programs build without CUDA
// (STYLE.md §4). Without CUDA (PACKD_HAVE_CUDA=0) every function that would
// touch a device returns FailedPrecondition saying so; with CUDA, runtime
// errors become statuses by CudaStatus (cuda_status.h: ResourceExhausted when
// out of device memory, else Internal) naming the call and the runtime's
// message, and CudaDeviceCount's Unavailable when no device is usable.
//
// Thread safety: as the CUDA runtime's; the objects below are not shared.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "codec/cuda/device_decoder.h"

namespace packd::codec::cuda {

// Number of CUDA devices this process can use; an error (never 0 with OK)
// when there is none, saying why ("no CUDA device", the driver's error,
// "built without CUDA").
absl::StatusOr<int> CudaDeviceCount();

// What every CUDA entry point of a build without CUDA says.
inline constexpr char kBuiltWithoutCuda[] =
    "packd was built without CUDA (no nvcc found, or -DPACKD_ENABLE_CUDA=OFF)";

// "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)" for device 0, for reports.
absl::StatusOr<std::string> CudaDeviceDescription();

// Device memory from cudaMalloc (256-byte aligned), freed by the destructor.
class DeviceBuffer {
 public:
  static absl::StatusOr<DeviceBuffer> Allocate(uint64_t bytes);
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Synchronous copies and fill (they wait for the device to finish them).
absl::Status CopyHostToDevice(void* d_dst, const void* src, uint64_t bytes);
absl::Status CopyDeviceToHost(void* dst, const void* d_src, uint64_t bytes);
absl::Status FillDevice(void* d_dst, uint8_t value, uint64_t bytes);
// Enqueued on `stream`.
absl::Status CopyDeviceToDeviceAsync(void* d_dst, const void* d_src, uint64_t bytes,
                                     StreamHandle stream);
absl::Status SynchronizeDevice();

// A non-blocking stream (cudaStreamNonBlocking), destroyed by the destructor.
class DeviceStream {
 public:
  static absl::StatusOr<DeviceStream> Create();
  DeviceStream() = default;
  DeviceStream(DeviceStream&& other) noexcept;
  DeviceStream& operator=(DeviceStream&& other) noexcept;
  DeviceStream(const DeviceStream&) = delete;
  DeviceStream& operator=(const DeviceStream&) = delete;
  ~DeviceStream();

  StreamHandle handle() const { return stream_; }
  absl::Status Synchronize() const;

 private:
  StreamHandle stream_ = nullptr;
};

// Device time between Start and Stop on one stream (a cudaEvent pair).
class DeviceTimer {
 public:
  static absl::StatusOr<DeviceTimer> Create();
  DeviceTimer() = default;
  DeviceTimer(DeviceTimer&& other) noexcept;
  DeviceTimer& operator=(DeviceTimer&& other) noexcept;
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;
  ~DeviceTimer();

  absl::Status Start(StreamHandle stream);
  absl::Status Stop(StreamHandle stream);
  // Waits for Stop's event, then returns the time between the two, in ms.
  absl::StatusOr<double> ElapsedMs() const;

 private:
  void* start_ = nullptr;  // cudaEvent_t
  void* stop_ = nullptr;
};

}  // namespace packd::codec::cuda
