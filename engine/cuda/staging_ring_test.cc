// The upload ring's bookkeeping: front-to-back regions, alignment, wrapping
// (with its generation count) and the too-large error.
#include "engine/cuda/staging_ring.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::engine::cuda {
namespace {

TEST(StagingRingTest, HandsOutAlignedRegionsFrontToBack) {
  StagingRing ring(1000);  // rounded down to 992
  EXPECT_EQ(ring.capacity(), 992u);
  auto a = ring.Reserve(10);
  auto b = ring.Reserve(16);
  auto c = ring.Reserve(0);
  auto d = ring.Reserve(17);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ(a->offset, 0u);
  EXPECT_EQ(a->bytes, 16u);
  EXPECT_EQ(b->offset, 16u);
  EXPECT_EQ(c->offset, 32u);
  EXPECT_EQ(c->bytes, 0u);
  EXPECT_EQ(d->offset, 32u);
  EXPECT_EQ(d->bytes, 32u);
  EXPECT_FALSE(a->wrapped || b->wrapped || c->wrapped || d->wrapped);
  EXPECT_EQ(ring.used(), 64u);
  EXPECT_EQ(ring.generation(), 0u);
}

TEST(StagingRingTest, WrapsWhenTheRestIsTooSmallAndCountsGenerations) {
  StagingRing ring(256);
  ASSERT_TRUE(ring.Reserve(200).ok());  // 208 used, 48 left
  auto fits = ring.Reserve(48);
  ASSERT_TRUE(fits.ok());
  EXPECT_FALSE(fits->wrapped);
  EXPECT_EQ(fits->offset, 208u);
  auto wraps = ring.Reserve(1);
  ASSERT_TRUE(wraps.ok());
  EXPECT_TRUE(wraps->wrapped);
  EXPECT_EQ(wraps->offset, 0u);
  EXPECT_EQ(ring.generation(), 1u);
  auto whole = ring.Reserve(256);
  ASSERT_TRUE(whole.ok());
  EXPECT_TRUE(whole->wrapped);
  EXPECT_EQ(whole->offset, 0u);
  EXPECT_EQ(ring.generation(), 2u);
}

TEST(StagingRingTest, RefusesARequestLargerThanTheRing) {
  StagingRing ring(4096);
  auto r = ring.Reserve(4097);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("4097 bytes exceeds the 4096-byte"));
  EXPECT_EQ(ring.generation(), 0u);  // unchanged
  EXPECT_EQ(ring.used(), 0u);
}

// Regions handed out within one generation never overlap and stay inside
// the ring.
TEST(StagingRingTest, RegionsOfAGenerationNeverOverlap) {
  std::mt19937 rng(7);
  StagingRing ring(10000);
  uint64_t gen = 0, end = 0;
  for (int i = 0; i < 20000; ++i) {
    auto r = ring.Reserve(rng() % 3000);
    ASSERT_TRUE(r.ok());
    if (r->wrapped) {
      ASSERT_EQ(ring.generation(), gen + 1);
      gen = ring.generation();
      end = 0;
    }
    ASSERT_EQ(r->offset % StagingRing::kAlignment, 0u);
    ASSERT_GE(r->offset, end);
    ASSERT_LE(r->offset + r->bytes, ring.capacity());
    end = r->offset + r->bytes;
  }
  EXPECT_GT(gen, 100u);
}

}  // namespace
}  // namespace packd::engine::cuda
