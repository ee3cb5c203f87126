#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "codec/cuda/cuda_status.h"
#include "codec/cuda/device_runtime.h"

namespace packd::codec::cuda {

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const absl::Status s = CudaStatus(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (!s.ok()) return absl::UnavailableError(s.message());  // no usable device, whatever the cause
  if (count <= 0) return absl::UnavailableError("cudaGetDeviceCount reports 0 devices");
  return count;
}

absl::StatusOr<std::string> CudaDeviceDescription() {
  RETURN_IF_ERROR(CudaDeviceCount().status());
  cudaDeviceProp prop{};
  RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties"));
  return absl::StrFormat("%s (sm_%d%d, %d SMs, %.1f GiB)", prop.name, prop.major, prop.minor,
                         prop.multiProcessorCount,
                         static_cast<double>(prop.totalGlobalMem) / (1ull << 30));
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(uint64_t bytes) {
  DeviceBuffer b;
  void* p = nullptr;
  RETURN_IF_ERROR(
      CudaStatus(cudaMalloc(&p, bytes == 0 ? 1 : bytes), absl::StrCat("cudaMalloc(", bytes, ")")));
  b.data_ = static_cast<uint8_t*>(p);
  b.size_ = bytes;
  return b;
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);  // nothing to report to from a destructor
}

absl::Status CopyHostToDevice(void* d_dst, const void* src, uint64_t bytes) {
  return CudaStatus(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy(H2D)");
}

absl::Status CopyDeviceToHost(void* dst, const void* d_src, uint64_t bytes) {
  return CudaStatus(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy(D2H)");
}

absl::Status FillDevice(void* d_dst, uint8_t value, uint64_t bytes) {
  RETURN_IF_ERROR(CudaStatus(cudaMemset(d_dst, value, bytes), "cudaMemset"));
  return CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

absl::Status CopyDeviceToDeviceAsync(void* d_dst, const void* d_src, uint64_t bytes,
                                     StreamHandle stream) {
  return CudaStatus(cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice,
                                    static_cast<cudaStream_t>(stream)),
                    "cudaMemcpyAsync(D2D)");
}

absl::Status SynchronizeDevice() {
  return CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

absl::StatusOr<DeviceStream> DeviceStream::Create() {
  cudaStream_t s = nullptr;
  RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking),
                             "cudaStreamCreateWithFlags"));
  DeviceStream out;
  out.stream_ = s;
  return out;
}

DeviceStream::DeviceStream(DeviceStream&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)) {}

DeviceStream& DeviceStream::operator=(DeviceStream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

DeviceStream::~DeviceStream() {
  if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

absl::Status DeviceStream::Synchronize() const {
  return CudaStatus(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)),
                    "cudaStreamSynchronize");
}

absl::StatusOr<DeviceTimer> DeviceTimer::Create() {
  DeviceTimer t;
  cudaEvent_t a = nullptr, b = nullptr;
  RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&a), "cudaEventCreate"));
  t.start_ = a;
  RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&b), "cudaEventCreate"));
  t.stop_ = b;
  return t;
}

DeviceTimer::DeviceTimer(DeviceTimer&& other) noexcept
    : start_(std::exchange(other.start_, nullptr)), stop_(std::exchange(other.stop_, nullptr)) {}

DeviceTimer& DeviceTimer::operator=(DeviceTimer&& other) noexcept {
  if (this != &other) {
    if (start_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(start_));
    if (stop_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
    start_ = std::exchange(other.start_, nullptr);
    stop_ = std::exchange(other.stop_, nullptr);
  }
  return *this;
}

DeviceTimer::~DeviceTimer() {
  if (start_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  if (stop_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

absl::Status DeviceTimer::Start(StreamHandle stream) {
  return CudaStatus(
      cudaEventRecord(static_cast<cudaEvent_t>(start_), static_cast<cudaStream_t>(stream)),
      "cudaEventRecord(start)");
}

absl::Status DeviceTimer::Stop(StreamHandle stream) {
  return CudaStatus(
      cudaEventRecord(static_cast<cudaEvent_t>(stop_), static_cast<cudaStream_t>(stream)),
      "cudaEventRecord(stop)");
}

absl::StatusOr<double> DeviceTimer::ElapsedMs() const {
  RETURN_IF_ERROR(
      CudaStatus(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)), "cudaEventSynchronize"));
  float ms = 0;
  RETURN_IF_ERROR(CudaStatus(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)),
      "cudaEventElapsedTime"));
  return static_cast<double>(ms);
}

}  // namespace packd::codec::cuda
