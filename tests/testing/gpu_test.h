// The fixture of the device-level GPU tests (label "gpu"): skips, saying
// why, without a CUDA device; records the device and a fresh seed
// (FreshSeed: printed, PACKD_TEST_SEED replays it) as test properties.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "codec/cuda/device_runtime.h"
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

}  // namespace packd::testing
