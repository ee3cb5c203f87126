// The KV block pool's bookkeeping: reservation, reference counts, prefix
// registration and lookup (chained keys, salts), LRU eviction.
#include "engine/kv_cache.h"

#include <numeric>

#include "engine/cpu/cpu_backend.h"
#include "gtest/gtest.h"

namespace packd::engine {
namespace {

constexpr int32_t kBlock = 4;

class KvCacheTest : public ::testing::Test {
 protected:
  // A pool of `blocks` blocks of kBlock tokens.
  std::unique_ptr<KvCache> Pool(int64_t blocks) {
    ModelConfig c;
    c.num_layers = 1;
    c.num_kv_heads = 1;
    c.head_dim = 2;
    KvCacheOptions o;
    o.block_size = kBlock;
    o.budget_bytes = KvBytesPerToken(c) * kBlock * blocks;
    auto cache = KvCache::Create(*backend_, c, o);
    EXPECT_TRUE(cache.ok()) << cache.status();
    return cache.ok() ? std::move(*cache) : nullptr;
  }

  std::unique_ptr<Backend> backend_ = *CreateCpuBackend({.threads = 1});
};

// Tokens 0, 1, 2, ... n-1 shifted by `base`.
std::vector<int32_t> Tokens(int n, int32_t base = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), base);
  return t;
}

// A sequence as the scheduler keeps it: block table and content ids.
struct Seq {
  explicit Seq(std::vector<int32_t> t) : tokens(std::move(t)) {}
  std::vector<int32_t> tokens;
  std::vector<int32_t> table;
  std::vector<uint64_t> content;
};

// Admits `s` as the scheduler does: takes the cached prefix (leaving at
// least one token to compute), reserves the rest, and commits all of it as
// computed. Returns the tokens taken from the cache, or -1 when it did not fit.
int64_t Admit(KvCache& cache, Seq& s, std::string_view salt = "") {
  const int64_t n = static_cast<int64_t>(s.tokens.size());
  const int64_t hit = cache.AcquirePrefix(s.tokens, n - 1, salt, s.table, s.content);
  if (!cache.Reserve(s.table, n)) {
    cache.Release(s.table);
    s.content.clear();
    return -1;
  }
  cache.Commit(s.tokens, n, salt, s.table, s.content);
  return hit;
}

void Finish(KvCache& cache, Seq& s) {
  cache.Release(s.table);
  s.content.clear();
}

TEST_F(KvCacheTest, FullBlocksAreRegisteredAndFoundAgain) {
  auto cache = Pool(8);
  ASSERT_NE(cache, nullptr);
  Seq a(Tokens(10));  // 2 full blocks + 2 tokens
  EXPECT_EQ(Admit(*cache, a), 0);
  EXPECT_EQ(cache->used_blocks(), 3);
  EXPECT_EQ(cache->cached_blocks(), 2);  // the partial block is not registered
  ASSERT_EQ(a.content.size(), 2u);

  // While `a` holds them, `b` shares them: two references each.
  Seq b(Tokens(10));
  b.tokens[9] = 99;
  EXPECT_EQ(Admit(*cache, b), 8);
  EXPECT_EQ(b.table[0], a.table[0]);
  EXPECT_EQ(b.table[1], a.table[1]);
  EXPECT_NE(b.table[2], a.table[2]);
  EXPECT_EQ(cache->references(a.table[0]), 2);
  EXPECT_EQ(cache->used_blocks(), 4);

  Finish(*cache, a);
  EXPECT_EQ(cache->references(b.table[0]), 1);
  Finish(*cache, b);
  // Cached blocks held by no one still count as free.
  EXPECT_EQ(cache->used_blocks(), 0);
  EXPECT_EQ(cache->free_blocks(), 8);
  EXPECT_EQ(cache->cached_blocks(), 2);
}

TEST_F(KvCacheTest, APromptIsNeverTakenWholeAndMaxTokensCapsTheMatch) {
  auto cache = Pool(8);
  ASSERT_NE(cache, nullptr);
  Seq a(Tokens(8));
  ASSERT_EQ(Admit(*cache, a), 0);
  Finish(*cache, a);
  // The same 8 tokens again: the last block is recomputed (its last token
  // gives the logits), so only the first block comes from the cache.
  Seq b(Tokens(8));
  EXPECT_EQ(Admit(*cache, b), 4);
  Finish(*cache, b);
  Seq c(Tokens(12));
  std::vector<int32_t> table;
  std::vector<uint64_t> content;
  EXPECT_EQ(cache->AcquirePrefix(c.tokens, 7, "", table, content), 4);
  cache->Release(table);
  content.clear();
  EXPECT_EQ(cache->AcquirePrefix(c.tokens, 8, "", table, content), 8);
  cache->Release(table);
}

TEST_F(KvCacheTest, ABlockMatchesOnlyAfterTheSamePrefix) {
  auto cache = Pool(8);
  ASSERT_NE(cache, nullptr);
  // [0..3][4..7][8]: block 2 holds 4..7 after 0..3.
  Seq a(Tokens(9));
  ASSERT_EQ(Admit(*cache, a), 0);
  Finish(*cache, a);
  // [9 9 9 9][4..7][8]: the same second block after another first block.
  Seq b(Tokens(9));
  for (int i = 0; i < 4; ++i) b.tokens[i] = 9;
  EXPECT_EQ(Admit(*cache, b), 0);
  Finish(*cache, b);
  // [4..7] at position 0 is not the block that held 4..7 at position 4.
  Seq c(Tokens(5, 4));
  EXPECT_EQ(Admit(*cache, c), 0);
  Finish(*cache, c);
}

TEST_F(KvCacheTest, SaltsKeepNamespacesApart) {
  auto cache = Pool(8);
  ASSERT_NE(cache, nullptr);
  Seq a(Tokens(9));
  ASSERT_EQ(Admit(*cache, a, "tenant-a"), 0);
  Finish(*cache, a);
  Seq b(Tokens(9));
  EXPECT_EQ(Admit(*cache, b, "tenant-b"), 0);
  Finish(*cache, b);
  Seq c(Tokens(9));
  EXPECT_EQ(Admit(*cache, c, ""), 0);
  Finish(*cache, c);
  Seq d(Tokens(9));
  EXPECT_EQ(Admit(*cache, d, "tenant-a"), 8);
  Finish(*cache, d);
}

TEST_F(KvCacheTest, TheSameContentComputedTwiceIsCachedOnce) {
  auto cache = Pool(8);
  ASSERT_NE(cache, nullptr);
  // Two sequences admitted together: neither finds the other's blocks.
  Seq a(Tokens(9)), b(Tokens(9));
  ASSERT_TRUE(cache->Reserve(a.table, 9));
  ASSERT_TRUE(cache->Reserve(b.table, 9));
  cache->Commit(a.tokens, 9, "", a.table, a.content);
  cache->Commit(b.tokens, 9, "", b.table, b.content);
  EXPECT_EQ(cache->cached_blocks(), 2);
  EXPECT_EQ(a.content, b.content);  // b's own blocks take a's content ids
  Finish(*cache, b);                // b's copies are not cached: they go straight back
  EXPECT_EQ(cache->free_blocks(), 5);
  Finish(*cache, a);
  EXPECT_EQ(cache->free_blocks(), 8);
  // b continues after a's blocks: a third sequence finds the whole chain.
  Seq c(Tokens(12));
  EXPECT_EQ(Admit(*cache, c), 8);
  Finish(*cache, c);
}

TEST_F(KvCacheTest, EvictionTakesTheLeastRecentlyReleasedTailFirst) {
  auto cache = Pool(6);
  ASSERT_NE(cache, nullptr);
  Seq a(Tokens(13));  // 3 full blocks + 1
  ASSERT_EQ(Admit(*cache, a), 0);
  Finish(*cache, a);
  Seq b(Tokens(9, 100));  // 2 full blocks + 1
  ASSERT_EQ(Admit(*cache, b), 0);
  Finish(*cache, b);
  EXPECT_EQ(cache->cached_blocks(), 5);
  EXPECT_EQ(cache->free_blocks(), 6);
  // 2 blocks: the uncached free one, then a's tail (released first).
  Seq c(Tokens(8, 200));
  std::vector<uint64_t> unused;
  ASSERT_TRUE(cache->Reserve(c.table, 8));
  EXPECT_EQ(cache->cached_blocks(), 4);
  // a's head is still there; its tail is gone.
  Seq a2(Tokens(13));
  std::vector<int32_t> table;
  EXPECT_EQ(cache->AcquirePrefix(a2.tokens, 12, "", table, unused), 8);
  cache->Release(table);
  unused.clear();
  // Everything is reclaimable: a reservation of the whole pool succeeds and
  // leaves nothing cached.
  cache->Release(c.table);
  Seq d(Tokens(24, 300));
  ASSERT_TRUE(cache->Reserve(d.table, 24));
  EXPECT_EQ(cache->cached_blocks(), 0);
  EXPECT_EQ(cache->free_blocks(), 0);
  EXPECT_FALSE(cache->Reserve(d.table, 25));
  cache->Release(d.table);
  EXPECT_EQ(cache->free_blocks(), 6);
}

TEST_F(KvCacheTest, AFailedAdmissionGivesItsPrefixBack) {
  auto cache = Pool(4);
  ASSERT_NE(cache, nullptr);
  Seq a(Tokens(9));
  ASSERT_EQ(Admit(*cache, a), 0);
  Finish(*cache, a);
  Seq hog(Tokens(4, 500));
  ASSERT_TRUE(cache->Reserve(hog.table, 4));  // 1 block held: 3 remain
  // 9 + 8 tokens need 5 blocks: the 2 cached ones are taken and given back.
  Seq b(Tokens(17));
  EXPECT_EQ(Admit(*cache, b), -1);
  EXPECT_TRUE(b.table.empty());
  EXPECT_EQ(cache->free_blocks(), 3);
  EXPECT_EQ(cache->cached_blocks(), 2);
  cache->Release(hog.table);
}

}  // namespace
}  // namespace packd::engine
