// The CUDA-error-to-Status mapping (cuda_status.h), on the host: mapping a
// cudaError_t reads only the CUDA runtime's error names and strings, which
// need no device (nor a driver), so this runs wherever the build has CUDA.
// A build without CUDA has no such mapping; the test says so and skips.
#if PACKD_HAVE_CUDA
#include "codec/cuda/cuda_status.h"
#endif

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::codec::cuda {
namespace {

#if PACKD_HAVE_CUDA

using ::testing::HasSubstr;

TEST(CudaStatusTest, SuccessIsOk) { EXPECT_TRUE(CudaStatus(cudaSuccess, "cudaMalloc(8)").ok()); }

TEST(CudaStatusTest, OutOfMemoryIsResourceExhaustedNamingWhatWasDone) {
  const absl::Status s = CudaStatus(cudaErrorMemoryAllocation, "cudaMalloc(1048576)");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(s.message(), std::string("cudaMalloc(1048576): cudaErrorMemoryAllocation: ") +
                             cudaGetErrorString(cudaErrorMemoryAllocation));
}

TEST(CudaStatusTest, EveryOtherErrorIsInternalWithTheRuntimesMessage) {
  for (const cudaError_t e :
       {cudaErrorInvalidValue, cudaErrorInvalidConfiguration, cudaErrorNoDevice,
        cudaErrorInsufficientDriver, cudaErrorLaunchFailure, cudaErrorIllegalAddress,
        cudaErrorNoKernelImageForDevice}) {
    const absl::Status s = CudaStatus(e, "cudaMemcpy(H2D)");
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_THAT(s.message(), HasSubstr("cudaMemcpy(H2D): "));
    EXPECT_THAT(s.message(), HasSubstr(cudaGetErrorName(e)));
    EXPECT_THAT(s.message(), HasSubstr(cudaGetErrorString(e)));
  }
}

TEST(CudaStatusTest, WithContextKeepsTheCodeAndPrefixesTheMessage) {
  const absl::Status s = WithContext(CudaStatus(cudaErrorMemoryAllocation, "launch of K"),
                                     "tiled decode (rows 0 + 4)");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("tiled decode (rows 0 + 4): launch of K: "));
}

#else

TEST(CudaStatusTest, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA: there are no CUDA errors to map";
}

#endif  // PACKD_HAVE_CUDA

}  // namespace
}  // namespace packd::codec::cuda
