// MatMul row chunking, step metadata packing and elementwise grids.
#include "engine/cuda/launch_plan.h"

#include <numeric>

#include "gtest/gtest.h"

namespace packd::engine::cuda {
namespace {

TEST(LaunchPlanTest, AWeightThatFitsIsOneChunk) {
  const RowChunkPlan p = PlanRowChunks(200, 96 * 2, 256ull << 20);
  EXPECT_EQ(p.rows_per_chunk, 200);
  EXPECT_EQ(p.chunks, 1);
  EXPECT_EQ(p.scratch_bytes, 200u * 192);
  const RowChunkPlan exact = PlanRowChunks(4, 256, 1024);
  EXPECT_EQ(exact.chunks, 1);
  EXPECT_EQ(exact.scratch_bytes, 1024u);
}

TEST(LaunchPlanTest, ChunksStartAt256ByteMultiplesAndFitTheCap) {
  // Rows of 200 bf16 (400 bytes): a chunk must be a multiple of 16 rows
  // (16 * 400 = 6400 = 25 * 256).
  const RowChunkPlan p = PlanRowChunks(1000, 400, 100000);
  EXPECT_EQ(p.rows_per_chunk % 16, 0);
  EXPECT_EQ(p.rows_per_chunk, 240);  // 250 rows fit; 240 is the largest multiple of 16
  EXPECT_EQ(p.chunks, 5);            // 4 * 240 + 40
  EXPECT_EQ(p.scratch_bytes, 240u * 400);
  EXPECT_LE(p.scratch_bytes, 100000u);
  for (int64_t r0 = 0; r0 < 1000; r0 += p.rows_per_chunk) EXPECT_EQ(r0 * 400 % 256, 0);

  // Odd row sizes: 3 * 4 bytes: chunks of multiples of 64 rows.
  const RowChunkPlan odd = PlanRowChunks(1000, 12, 1000);
  EXPECT_EQ(odd.rows_per_chunk, 64);
  EXPECT_EQ(odd.chunks, 16);
  EXPECT_EQ(odd.scratch_bytes, 768u);
}

// What a backend sizes its decode scratch and half-precision activations to
// for one weight, whichever backend loaded it (LoadWeight and AdoptWeight
// alike).
TEST(LaunchPlanTest, AWeightsWorkspaceFollowsItsShapeDtypeAndCodec) {
  // A raw bf16 weight: no scratch, max_matmul_rows rows of x in bf16.
  const WeightWorkspace raw = PlanWeightWorkspace(1000, 200, codec::DType::kBF16,
                                                  /*compressed=*/false, 100000, 64);
  EXPECT_EQ(raw.decode_scratch_bytes, 0u);
  EXPECT_EQ(raw.half_x_bytes, 64u * 400);
  const RowChunkPlan plan = PlanRowChunks(1000, 400, 100000);
  EXPECT_EQ(raw.plan.rows_per_chunk, plan.rows_per_chunk);
  EXPECT_EQ(raw.plan.chunks, plan.chunks);
  // Compressed: the largest chunk.
  const WeightWorkspace vlc = PlanWeightWorkspace(1000, 200, codec::DType::kBF16,
                                                  /*compressed=*/true, 100000, 64);
  EXPECT_EQ(vlc.decode_scratch_bytes, plan.scratch_bytes);
  EXPECT_EQ(vlc.half_x_bytes, raw.half_x_bytes);
  // A chunk smaller than one row at a 256-byte pitch (Embed's): the pitch.
  const WeightWorkspace one_row = PlanWeightWorkspace(1, 100, codec::DType::kF16,
                                                      /*compressed=*/true, 1 << 20, 8);
  EXPECT_EQ(one_row.decode_scratch_bytes, 256u);
  // f32: x is read as it is.
  const WeightWorkspace f32 = PlanWeightWorkspace(64, 64, codec::DType::kF32,
                                                  /*compressed=*/true, 1 << 20, 512);
  EXPECT_EQ(f32.half_x_bytes, 0u);
  EXPECT_EQ(f32.decode_scratch_bytes, 64u * 256);
  // Another cap, another plan and scratch: from the options of the backend
  // that runs the weight.
  const WeightWorkspace small = PlanWeightWorkspace(1000, 200, codec::DType::kBF16,
                                                    /*compressed=*/true, 10000, 64);
  EXPECT_GT(small.plan.chunks, vlc.plan.chunks);
  EXPECT_LT(small.decode_scratch_bytes, vlc.decode_scratch_bytes);
}

TEST(LaunchPlanTest, TheSmallestLegalChunkIsTakenWhenTheCapIsTooSmall) {
  // One row of 1000 bytes needs 32-row chunks (32000 bytes) for alignment.
  const RowChunkPlan p = PlanRowChunks(100, 1000, 5000);
  EXPECT_EQ(p.rows_per_chunk, 32);
  EXPECT_EQ(p.chunks, 4);
  EXPECT_EQ(p.scratch_bytes, 32000u);
  // Fewer rows than the granule: all of them.
  const RowChunkPlan few = PlanRowChunks(10, 1000, 5000);
  EXPECT_EQ(few.rows_per_chunk, 10);
  EXPECT_EQ(few.chunks, 1);
  EXPECT_EQ(few.scratch_bytes, 10000u);
}

TEST(LaunchPlanTest, EmptyWeights) {
  EXPECT_EQ(PlanRowChunks(0, 100, 1000).chunks, 0);
  EXPECT_EQ(PlanRowChunks(5, 0, 1000).chunks, 1);
  EXPECT_EQ(PlanRowChunks(5, 0, 1000).scratch_bytes, 0u);
}

TEST(LaunchPlanTest, PacksTheStepMetadata) {
  const std::vector<int32_t> positions = {0, 1, 2, 40, 7};
  const std::vector<int32_t> token_seq = {0, 0, 0, 1, 2};
  const std::vector<int32_t> a = {5}, b = {1, 2, 3}, c = {9, 8};
  BatchLayout layout;
  layout.positions = positions;
  layout.token_seq = token_seq;
  layout.seq_blocks = {a, b, c};
  StepMetadata m;
  ASSERT_TRUE(PackStepMetadata(layout, &m).ok());
  EXPECT_EQ(m.positions, 0);
  EXPECT_EQ(m.token_seq, 5);
  EXPECT_EQ(m.seq_begin, 10);
  EXPECT_EQ(m.blocks, 14);
  EXPECT_EQ(m.data,
            (std::vector<int32_t>{0, 1, 2, 40, 7, 0, 0, 0, 1, 2, 0, 1, 4, 6, 5, 1, 2, 3, 9, 8}));

  // Repacking reuses the vector and is not appended to.
  BatchLayout empty;
  ASSERT_TRUE(PackStepMetadata(empty, &m).ok());
  EXPECT_EQ(m.data, std::vector<int32_t>{0});

  const std::vector<int32_t> short_seq = {0};
  layout.token_seq = short_seq;
  EXPECT_EQ(PackStepMetadata(layout, &m).code(), absl::StatusCode::kInvalidArgument);
}

TEST(LaunchPlanTest, ElementwiseGrids) {
  EXPECT_EQ(ElementwiseBlocks(0), 0);
  EXPECT_EQ(ElementwiseBlocks(-3), 0);
  EXPECT_EQ(ElementwiseBlocks(1), 1);
  EXPECT_EQ(ElementwiseBlocks(kElementwiseThreads), 1);
  EXPECT_EQ(ElementwiseBlocks(kElementwiseThreads + 1), 2);
  EXPECT_EQ(ElementwiseBlocks(int64_t{1} << 40), kMaxElementwiseBlocks);
}

}  // namespace
}  // namespace packd::engine::cuda
