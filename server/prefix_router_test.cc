#include "server/prefix_router.h"

#include <numeric>
#include <thread>

#include "gtest/gtest.h"

namespace packd::server {
namespace {

std::vector<engine::TokenId> Tokens(int n, engine::TokenId base = 0) {
  std::vector<engine::TokenId> t(n);
  std::iota(t.begin(), t.end(), base);
  return t;
}

TEST(PrefixRouterTest, TheLongestRememberedPrefixDecides) {
  PrefixRouter r(/*block_size=*/4);
  EXPECT_EQ(r.Lookup(Tokens(40), ""), -1);
  r.Record(Tokens(40), "", 1);  // remembers 1, 2, 4 and 8 blocks
  EXPECT_EQ(r.size(), 4u);
  EXPECT_EQ(r.Lookup(Tokens(40), ""), 1);
  EXPECT_EQ(r.Lookup(Tokens(100), ""), 1);  // a longer prompt: its first 8 blocks
  std::vector<engine::TokenId> other = Tokens(40);
  other[20] = 999;  // shares 5 blocks: the 4-block prefix
  EXPECT_EQ(r.Lookup(other, ""), 1);
  r.Record(Tokens(12), "", 0);  // the 1- and 2-block prefixes move to 0
  EXPECT_EQ(r.Lookup(Tokens(12), ""), 0);
  EXPECT_EQ(r.Lookup(Tokens(40), ""), 1);  // its 8 blocks still say 1
  // Shorter than a block plus one token: nothing a cache could hold.
  EXPECT_EQ(r.Lookup(Tokens(4), ""), -1);
  r.Record(Tokens(4), "", 0);
  EXPECT_EQ(r.size(), 4u);
  // Another first block, and another salt, share nothing.
  EXPECT_EQ(r.Lookup(Tokens(40, 1), ""), -1);
  EXPECT_EQ(r.Lookup(Tokens(40), "tenant-b"), -1);
}

TEST(PrefixRouterTest, MemoryIsBoundedLeastRecentlyUsedFirst) {
  PrefixRouter r(/*block_size=*/4, /*capacity=*/3);
  r.Record(Tokens(5, 0), "", 0);    // one prefix each
  r.Record(Tokens(5, 100), "", 1);
  r.Record(Tokens(5, 200), "", 0);
  EXPECT_EQ(r.Lookup(Tokens(5, 0), ""), 0);
  r.Record(Tokens(5, 0), "", 0);    // used again: the oldest is now 100
  r.Record(Tokens(5, 300), "", 1);
  EXPECT_EQ(r.size(), 3u);
  EXPECT_EQ(r.Lookup(Tokens(5, 100), ""), -1);
  EXPECT_EQ(r.Lookup(Tokens(5, 0), ""), 0);
  EXPECT_EQ(r.Lookup(Tokens(5, 300), ""), 1);
}

TEST(PrefixRouterTest, ManyThreadsAtOnce) {
  PrefixRouter r(/*block_size=*/4, /*capacity=*/64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::vector<engine::TokenId> p = Tokens(9 + i % 30, i % 50);
        if (r.Lookup(p, "") < -1) std::abort();
        r.Record(p, "", t);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(r.size(), 64u);
}

}  // namespace
}  // namespace packd::server
