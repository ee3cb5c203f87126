#include "server/prefix_router.h"

#include <atomic>
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

int Lookup(const PrefixRouter& r, const std::vector<engine::TokenId>& prompt,
           std::string_view salt) {
  return r.Lookup(r.PrefixesOf(prompt, salt));
}

void Record(PrefixRouter& r, const std::vector<engine::TokenId>& prompt, std::string_view salt,
            int instance) {
  r.Record(r.PrefixesOf(prompt, salt), instance);
}

TEST(PrefixRouterTest, TheLongestRememberedPrefixDecides) {
  PrefixRouter r(/*block_size=*/4);
  EXPECT_EQ(Lookup(r, Tokens(40), ""), -1);
  Record(r, Tokens(40), "", 1);  // remembers 1, 2, 4 and 8 blocks
  EXPECT_EQ(r.size(), 4u);
  EXPECT_EQ(Lookup(r, Tokens(40), ""), 1);
  EXPECT_EQ(Lookup(r, Tokens(100), ""), 1);  // a longer prompt: its first 8 blocks
  std::vector<engine::TokenId> other = Tokens(40);
  other[20] = 999;  // shares 5 blocks: the 4-block prefix
  EXPECT_EQ(Lookup(r, other, ""), 1);
  Record(r, Tokens(12), "", 0);  // the 1- and 2-block prefixes move to 0
  EXPECT_EQ(Lookup(r, Tokens(12), ""), 0);
  EXPECT_EQ(Lookup(r, Tokens(40), ""), 1);  // its 8 blocks still say 1
  // Shorter than a block plus one token: nothing a cache could hold.
  EXPECT_EQ(Lookup(r, Tokens(4), ""), -1);
  Record(r, Tokens(4), "", 0);
  EXPECT_EQ(r.size(), 4u);
  // Another first block, and another salt, share nothing.
  EXPECT_EQ(Lookup(r, Tokens(40, 1), ""), -1);
  EXPECT_EQ(Lookup(r, Tokens(40), "tenant-b"), -1);
}

TEST(PrefixRouterTest, MemoryIsBoundedLeastRecentlyUsedFirst) {
  PrefixRouter r(/*block_size=*/4, /*capacity=*/3);
  Record(r, Tokens(5, 0), "", 0);  // one prefix each
  Record(r, Tokens(5, 100), "", 1);
  Record(r, Tokens(5, 200), "", 0);
  EXPECT_EQ(Lookup(r, Tokens(5, 0), ""), 0);
  Record(r, Tokens(5, 0), "", 0);  // used again: the oldest is now 100
  Record(r, Tokens(5, 300), "", 1);
  EXPECT_EQ(r.size(), 3u);
  EXPECT_EQ(Lookup(r, Tokens(5, 100), ""), -1);
  EXPECT_EQ(Lookup(r, Tokens(5, 0), ""), 0);
  EXPECT_EQ(Lookup(r, Tokens(5, 300), ""), 1);
}

// Four threads look up and record at once: every answer is an instance one
// of them recorded (or -1), the bound holds, and the map stays usable.
TEST(PrefixRouterTest, ManyThreadsAtOnce) {
  PrefixRouter r(/*block_size=*/4, /*capacity=*/64);
  std::atomic<int> out_of_range{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, &out_of_range, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::vector<engine::TokenId> p = Tokens(9 + i % 30, i % 50);
        const int got = Lookup(r, p, "");
        if (got < -1 || got > 3) ++out_of_range;
        Record(r, p, "", t);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(out_of_range.load(), 0);
  EXPECT_LE(r.size(), 64u);
  Record(r, Tokens(40), "", 2);
  EXPECT_EQ(Lookup(r, Tokens(40), ""), 2);
}

}  // namespace
}  // namespace packd::server
