// The fixture of the device-level GPU tests (label "gpu"): skips, saying
// why, without a CUDA device; records the device and a fresh seed
// (FreshSeed: printed, PACKD_TEST_SEED replays it) as test properties.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_runtime.h"
#include "codec/tensor_codec.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::testing {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PACKD_SKIP_WITHOUT_CUDA();
    absl::StatusOr<std::string> desc = codec::cuda::CudaDeviceDescription();
    if (desc.ok()) RecordProperty("device", *desc);
    seed_ = FreshSeed();
    RecordProperty("seed", std::to_string(seed_));
  }

  uint64_t seed_ = 0;
};

// A device decoder with its image uploaded (the copy finished).
struct UploadedImage {
  std::unique_ptr<codec::cuda::DeviceDecoder> decoder;
  codec::cuda::DeviceBuffer image;
};

// Creates the decoder of `codec` for `views` and uploads its image into *u;
// a failure is a fatal test failure (callers check HasFatalFailure()).
inline void UploadImage(std::string_view codec, const codec::TensorInfo& info,
                        const codec::ComponentViews& views, UploadedImage& u) {
  absl::StatusOr<std::unique_ptr<codec::cuda::DeviceDecoder>> dec =
      codec::cuda::DeviceDecoder::Create(codec, info, views);
  ASSERT_TRUE(dec.ok()) << dec.status();
  u.decoder = std::move(*dec);
  absl::StatusOr<codec::cuda::DeviceBuffer> image =
      codec::cuda::DeviceBuffer::Allocate(u.decoder->image_bytes());
  ASSERT_TRUE(image.ok()) << image.status();
  u.image = std::move(*image);
  ASSERT_TRUE(u.decoder->Upload(u.image.data(), nullptr).ok());
  ASSERT_TRUE(codec::cuda::SynchronizeDevice().ok());
}

}  // namespace packd::testing
