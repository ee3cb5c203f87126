// device_runtime.h for builds without CUDA: nothing touches a device, every
// call that would says the build has no CUDA.
#include "codec/cuda/device_runtime.h"

#if !PACKD_HAVE_CUDA

#include <utility>

namespace packd::codec::cuda {

namespace {
absl::Status NoCuda() { return absl::FailedPreconditionError(kBuiltWithoutCuda); }
}  // namespace

absl::StatusOr<int> CudaDeviceCount() { return NoCuda(); }
absl::StatusOr<std::string> CudaDeviceDescription() { return NoCuda(); }

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(uint64_t) { return NoCuda(); }
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  data_ = std::exchange(other.data_, nullptr);
  size_ = std::exchange(other.size_, 0);
  return *this;
}
DeviceBuffer::~DeviceBuffer() = default;  // never holds memory here

absl::Status CopyHostToDevice(void*, const void*, uint64_t) { return NoCuda(); }
absl::Status CopyDeviceToHost(void*, const void*, uint64_t) { return NoCuda(); }
absl::Status FillDevice(void*, uint8_t, uint64_t) { return NoCuda(); }
absl::Status CopyDeviceToDeviceAsync(void*, const void*, uint64_t, StreamHandle) {
  return NoCuda();
}
absl::Status SynchronizeDevice() { return NoCuda(); }

absl::StatusOr<DeviceStream> DeviceStream::Create() { return NoCuda(); }
DeviceStream::DeviceStream(DeviceStream&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)) {}
DeviceStream& DeviceStream::operator=(DeviceStream&& other) noexcept {
  stream_ = std::exchange(other.stream_, nullptr);
  return *this;
}
DeviceStream::~DeviceStream() = default;
absl::Status DeviceStream::Synchronize() const { return NoCuda(); }

absl::StatusOr<DeviceTimer> DeviceTimer::Create() { return NoCuda(); }
DeviceTimer::DeviceTimer(DeviceTimer&& other) noexcept
    : start_(std::exchange(other.start_, nullptr)), stop_(std::exchange(other.stop_, nullptr)) {}
DeviceTimer& DeviceTimer::operator=(DeviceTimer&& other) noexcept {
  start_ = std::exchange(other.start_, nullptr);
  stop_ = std::exchange(other.stop_, nullptr);
  return *this;
}
DeviceTimer::~DeviceTimer() = default;
absl::Status DeviceTimer::Start(StreamHandle) { return NoCuda(); }
absl::Status DeviceTimer::Stop(StreamHandle) { return NoCuda(); }
absl::StatusOr<double> DeviceTimer::ElapsedMs() const { return NoCuda(); }

}  // namespace packd::codec::cuda

#endif  // !PACKD_HAVE_CUDA
