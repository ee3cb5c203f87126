// CudaBackendOptions checks (CheckCudaBackendOptions) and how the engine's
// options reach them. Runs on the CPU, in builds with and without CUDA: the
// checks come before anything touches a device.
#include <filesystem>
#include <memory>
#include <string>

#include "codec/cuda/fused_math.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::engine {
namespace {

using ::testing::HasSubstr;

TEST(CudaBackendOptionsTest, TheDefaultsAreValid) {
  EXPECT_TRUE(CheckCudaBackendOptions({}).ok());
  EXPECT_EQ(CudaBackendOptions{}.fused_max_batch, 8);
}

TEST(CudaBackendOptionsTest, FusedMaxBatchTakesZeroToTheKernelsLimit) {
  for (int ok : {0, 1, 8, codec::cuda::kFusedMaxBatch}) {
    CudaBackendOptions o;
    o.fused_max_batch = ok;
    EXPECT_TRUE(CheckCudaBackendOptions(o).ok()) << ok;
  }
  for (int bad : {-1, codec::cuda::kFusedMaxBatch + 1, 1000}) {
    CudaBackendOptions o;
    o.fused_max_batch = bad;
    const absl::Status s = CheckCudaBackendOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("fused_max_batch is " + std::to_string(bad)));
    EXPECT_THAT(s.message(), HasSubstr("[0, 32]"));
  }
}

TEST(CudaBackendOptionsTest, EveryOtherBadOptionIsNamed) {
  CudaBackendOptions rows;
  rows.max_matmul_rows = 0;
  EXPECT_THAT(CheckCudaBackendOptions(rows).message(), HasSubstr("max_matmul_rows is 0"));
  CudaBackendOptions staging;
  staging.staging_bytes = 4095;
  EXPECT_THAT(CheckCudaBackendOptions(staging).message(), HasSubstr("staging_bytes is 4095"));
  CudaBackendOptions chunk;
  chunk.arena_chunk_bytes = 0;
  EXPECT_THAT(CheckCudaBackendOptions(chunk).message(), HasSubstr("arena_chunk_bytes is 0"));
  for (const CudaBackendOptions& o : {rows, staging, chunk}) {
    EXPECT_EQ(CheckCudaBackendOptions(o).code(), absl::StatusCode::kInvalidArgument);
  }
}

// CreateCudaBackend checks its options first: InvalidArgument whether or not
// the build has CUDA and whether or not a device is present.
TEST(CudaBackendOptionsTest, CreateRefusesBadOptionsBeforeLookingForADevice) {
  CudaBackendOptions o;
  o.fused_max_batch = codec::cuda::kFusedMaxBatch + 1;
  o.device = 1000;  // no such device either: the options are reported
  const absl::StatusOr<std::unique_ptr<Backend>> b = CreateCudaBackend(o);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << b.status();
  EXPECT_THAT(b.status().message(), HasSubstr("fused_max_batch"));
}

TEST(CudaBackendOptionsTest, TheEngineOptionReachesTheBackend) {
  EXPECT_EQ(EngineOptions{}.fused_max_batch, CudaBackendOptions{}.fused_max_batch);
  EngineOptions eo;
  eo.fused_max_batch = 0;
  EXPECT_EQ(CudaBackendOptionsFor(eo, 0).fused_max_batch, 0);
  eo.fused_max_batch = 17;
  EXPECT_EQ(CudaBackendOptionsFor(eo, 2).fused_max_batch, 17);
}

// Engine::Open on a CUDA device passes the option to CreateCudaBackend,
// which refuses it (before any device is needed).
TEST(CudaBackendOptionsTest, EngineOpenRefusesABadFusedMaxBatch) {
  const std::filesystem::path gguf =
      testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  EngineOptions eo;
  eo.device = "cuda:0";
  eo.fused_max_batch = -1;
  const absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(gguf, eo);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << e.status();
  EXPECT_THAT(e.status().message(), HasSubstr("fused_max_batch is -1"));
}

}  // namespace
}  // namespace packd::engine
