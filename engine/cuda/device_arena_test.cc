// The device arena's bookkeeping, on the CPU: placement, alignment,
// coalescing, budget errors, accounting by kind, and random sequences
// checked against a byte-level model of the chunks.
#include "engine/cuda/device_arena.h"

#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace packd::engine::cuda {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

// An arena whose chunks are recorded (sizes in order), optionally failing
// the reservations after the first `allow` ones.
struct Fixture {
  explicit Fixture(DeviceArenaOptions o, int allow = 1 << 30)
      : arena(std::move(o), [this, allow](int32_t index, uint64_t bytes) -> absl::Status {
          EXPECT_EQ(index, static_cast<int32_t>(chunks.size()));
          if (static_cast<int>(chunks.size()) >= allow) {
            return absl::ResourceExhaustedError("cudaMalloc: out of memory");
          }
          chunks.push_back(bytes);
          return absl::OkStatus();
        }) {}
  std::vector<uint64_t> chunks;
  DeviceArena arena;
};

DeviceArenaOptions Opts(uint64_t chunk, uint64_t budget = 0) {
  DeviceArenaOptions o;
  o.name = "cuda:7";
  o.chunk_bytes = chunk;
  o.budget_bytes = budget;
  return o;
}

TEST(DeviceArenaTest, RoundsToTheAlignmentAndNeverHandsOutZeroBytes) {
  Fixture f(Opts(1 * kMiB));
  for (uint64_t bytes : {0ull, 1ull, 255ull, 256ull, 257ull, 1000ull}) {
    absl::StatusOr<ArenaBlock> b = f.arena.Allocate(bytes, MemoryKind::kWorkspace);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->offset % kArenaAlignment, 0u) << bytes;
    EXPECT_EQ(b->bytes % kArenaAlignment, 0u) << bytes;
    EXPECT_GE(b->bytes, std::max<uint64_t>(bytes, 1)) << bytes;
    EXPECT_LT(b->bytes, std::max<uint64_t>(bytes, 1) + kArenaAlignment) << bytes;
  }
  EXPECT_EQ(f.chunks, std::vector<uint64_t>{1 * kMiB});
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
}

TEST(DeviceArenaTest, ReservesChunksOnlyWhenNothingFitsAndGivesBigRequestsTheirOwn) {
  Fixture f(Opts(1 * kMiB));
  auto a = f.arena.Allocate(600 * kKiB, MemoryKind::kWeights);
  auto b = f.arena.Allocate(300 * kKiB, MemoryKind::kWeights);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->chunk, 0);
  EXPECT_EQ(b->chunk, 0);  // fits in the 424 KiB left of chunk 0
  EXPECT_EQ(b->offset, 600 * kKiB);
  auto c = f.arena.Allocate(300 * kKiB, MemoryKind::kWeights);  // 124 KiB left: new chunk
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->chunk, 1);
  auto big = f.arena.Allocate(3 * kMiB + 1, MemoryKind::kWeights);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->chunk, 2);
  EXPECT_EQ(big->offset, 0u);
  EXPECT_EQ(f.chunks, (std::vector<uint64_t>{1 * kMiB, 1 * kMiB, 3 * kMiB + kArenaAlignment}));
  EXPECT_EQ(f.arena.reserved_bytes(), 5 * kMiB + kArenaAlignment);
  EXPECT_EQ(f.arena.chunk_count(), 3);
  EXPECT_EQ(f.arena.chunk_size(2), 3 * kMiB + kArenaAlignment);
  EXPECT_EQ(f.arena.chunk_size(3), 0u);
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
}

TEST(DeviceArenaTest, BestFitPicksTheSmallestFreeBlockThatFits) {
  Fixture f(Opts(1 * kMiB));
  // Carve chunk 0 into [100K][sep][40K][sep][70K][sep][rest], then free the
  // three holes: a 60 KiB request must land in the 70 KiB hole.
  std::vector<ArenaBlock> holes, seps;
  for (uint64_t size : {100 * kKiB, 40 * kKiB, 70 * kKiB}) {
    holes.push_back(*f.arena.Allocate(size, MemoryKind::kWorkspace));
    seps.push_back(*f.arena.Allocate(1 * kKiB, MemoryKind::kWorkspace));
  }
  for (const ArenaBlock& h : holes) f.arena.Free(h);
  auto b = f.arena.Allocate(60 * kKiB, MemoryKind::kWorkspace);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->offset, holes[2].offset);
  auto c = f.arena.Allocate(40 * kKiB, MemoryKind::kWorkspace);  // exact fit
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->offset, holes[1].offset);
  EXPECT_EQ(f.chunks.size(), 1u);
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
}

TEST(DeviceArenaTest, FreeCoalescesWithBothNeighbours) {
  Fixture f(Opts(1 * kMiB));
  std::vector<ArenaBlock> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(*f.arena.Allocate(256 * kKiB, MemoryKind::kKvCache));
  EXPECT_EQ(f.arena.free_block_count(), 0);
  EXPECT_EQ(f.arena.largest_free_block(), 0u);
  f.arena.Free(blocks[0]);
  f.arena.Free(blocks[2]);
  EXPECT_EQ(f.arena.free_block_count(), 2);  // not adjacent
  EXPECT_EQ(f.arena.largest_free_block(), 256 * kKiB);
  // A 512 KiB request does not fit in two separate 256 KiB holes.
  auto big = f.arena.Allocate(512 * kKiB, MemoryKind::kKvCache);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->chunk, 1);
  f.arena.Free(*big);
  // Freeing the block between them merges all three into one.
  f.arena.Free(blocks[1]);
  EXPECT_EQ(f.arena.free_block_count(), 2);           // [0, 768K) in chunk 0 and all of chunk 1
  EXPECT_EQ(f.arena.largest_free_block(), 1 * kMiB);  // chunk 1
  auto again = f.arena.Allocate(768 * kKiB, MemoryKind::kKvCache);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->chunk, 0);  // best fit: the 768 KiB hole, not the 1 MiB chunk
  EXPECT_EQ(again->offset, 0u);
  f.arena.Free(*again);
  f.arena.Free(blocks[3]);
  EXPECT_EQ(f.arena.free_block_count(), 2);  // each chunk one free block
  EXPECT_EQ(f.arena.usage().total(), 0u);
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
}

TEST(DeviceArenaTest, FragmentationIsResolvedOnlyByFreeingNeighbours) {
  Fixture f(Opts(64 * kKiB, /*budget=*/64 * kKiB));
  // 64 blocks of 1 KiB fill the only chunk the budget allows.
  std::vector<ArenaBlock> blocks;
  for (int i = 0; i < 64; ++i) {
    auto b = f.arena.Allocate(1 * kKiB, MemoryKind::kWorkspace);
    ASSERT_TRUE(b.ok()) << i << ": " << b.status();
    blocks.push_back(*b);
  }
  // Free every other block: 32 KiB free, but no 2 KiB hole.
  for (int i = 0; i < 64; i += 2) f.arena.Free(blocks[i]);
  EXPECT_EQ(f.arena.free_block_count(), 32);
  auto two = f.arena.Allocate(2 * kKiB, MemoryKind::kWorkspace);
  EXPECT_EQ(two.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(two.status().message(), HasSubstr("largest free block 1024 bytes"));
  // Free one odd block: it joins its two free neighbours into a 3 KiB hole.
  f.arena.Free(blocks[11]);
  EXPECT_EQ(f.arena.free_block_count(), 31);
  EXPECT_EQ(f.arena.largest_free_block(), 3 * kKiB);
  two = f.arena.Allocate(2 * kKiB, MemoryKind::kWorkspace);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->offset, blocks[10].offset);
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
}

TEST(DeviceArenaTest, BudgetErrorsCarryTheNumbers) {
  Fixture f(Opts(1 * kMiB, /*budget=*/3 * kMiB / 2));
  auto w = f.arena.Allocate(1 * kMiB, MemoryKind::kWeights);
  ASSERT_TRUE(w.ok());
  auto kv = f.arena.Allocate(256 * kKiB, MemoryKind::kKvCache);  // chunk 1 cut to 512 KiB
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(f.chunks, (std::vector<uint64_t>{1 * kMiB, 512 * kKiB}));
  auto ws = f.arena.Allocate(300 * kKiB, MemoryKind::kWorkspace);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(ws.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string msg(ws.status().message());
  EXPECT_THAT(msg, HasSubstr("cuda:7: cannot allocate 307200 bytes of workspace"));
  EXPECT_THAT(msg, HasSubstr("1572864 bytes reserved in 2 chunks of the 1572864-byte budget"));
  EXPECT_THAT(msg, HasSubstr("in use: weights 1048576, kv_cache 262144, workspace 0"));
  EXPECT_THAT(msg, HasSubstr("largest free block 262144 bytes"));
  // What still fits is handed out; the failure changed nothing.
  EXPECT_TRUE(f.arena.Allocate(256 * kKiB, MemoryKind::kWorkspace).ok());
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
  // A request beyond any budget, and one that would overflow the rounding.
  EXPECT_EQ(f.arena.Allocate(1ull << 40, MemoryKind::kWeights).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.arena.Allocate(~0ull, MemoryKind::kWeights).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(DeviceArenaTest, AFailedReservationLeavesTheArenaUnchanged) {
  Fixture f(Opts(1 * kMiB), /*allow=*/1);
  ASSERT_TRUE(f.arena.Allocate(1 * kMiB, MemoryKind::kWeights).ok());
  auto b = f.arena.Allocate(1, MemoryKind::kWeights);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(b.status().message(), HasSubstr("cudaMalloc: out of memory"));
  EXPECT_THAT(b.status().message(), HasSubstr("cuda:7: cannot reserve a chunk of 1048576 bytes"));
  EXPECT_EQ(f.arena.chunk_count(), 1);
  EXPECT_EQ(f.arena.reserved_bytes(), 1 * kMiB);
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
}

TEST(DeviceArenaTest, AccountsByKindAndIgnoresBadFrees) {
  Fixture f(Opts(1 * kMiB));
  auto w = *f.arena.Allocate(1000, MemoryKind::kWeights);
  auto k = *f.arena.Allocate(5000, MemoryKind::kKvCache);
  auto s = *f.arena.Allocate(100, MemoryKind::kWorkspace);
  MemoryUsage u = f.arena.usage();
  EXPECT_EQ(u.of(MemoryKind::kWeights), 1024u);
  EXPECT_EQ(u.of(MemoryKind::kKvCache), 5120u);
  EXPECT_EQ(u.of(MemoryKind::kWorkspace), 256u);
  EXPECT_EQ(u.total(), 6400u);
  f.arena.Free(k);
  f.arena.Free(k);  // twice: ignored
  ArenaBlock bogus = w;
  bogus.offset += kArenaAlignment;
  f.arena.Free(bogus);  // not a block start: ignored
  bogus = w;
  bogus.chunk = 5;
  f.arena.Free(bogus);  // unknown chunk: ignored
  f.arena.Free(ArenaBlock{});
  u = f.arena.usage();
  EXPECT_EQ(u.of(MemoryKind::kWeights), 1024u);
  EXPECT_EQ(u.of(MemoryKind::kKvCache), 0u);
  EXPECT_EQ(u.of(MemoryKind::kWorkspace), 256u);
  f.arena.Free(w);
  f.arena.Free(s);
  EXPECT_EQ(f.arena.usage().total(), 0u);
  EXPECT_EQ(f.arena.free_block_count(), 1);
  EXPECT_TRUE(f.arena.CheckConsistency().ok());
}

// Random allocations and frees against a model: every live block must lie
// inside its chunk and overlap no other live block (checked byte-range-wise
// per chunk), usage must equal the sum of live blocks by kind, and the
// arena's invariants must hold after every operation.
TEST(DeviceArenaTest, RandomSequencesMatchAModel) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 8; ++round) {
    const uint64_t budget = round % 2 == 0 ? 0 : (4 + round) * kMiB;
    Fixture f(Opts((round + 1) * 256 * kKiB, budget));
    struct Live {
      ArenaBlock block;
      uint64_t requested;
    };
    std::vector<Live> live;
    for (int op = 0; op < 3000; ++op) {
      const bool alloc = live.empty() || rng() % 100 < 55;
      if (alloc) {
        // Mostly small, sometimes large (a chunk of its own), sometimes 0.
        uint64_t bytes = rng() % 100 < 5 ? 0 : 1 + rng() % (64 * kKiB);
        if (rng() % 100 < 3) bytes = 1 + rng() % (3 * kMiB);
        const MemoryKind kind = static_cast<MemoryKind>(rng() % kMemoryKinds);
        absl::StatusOr<ArenaBlock> b = f.arena.Allocate(bytes, kind);
        if (!b.ok()) {
          ASSERT_NE(budget, 0u) << b.status();
          ASSERT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
          // Refused only when no free block fits and no chunk fits the budget.
          const uint64_t rounded = std::max<uint64_t>(256, (bytes + 255) / 256 * 256);
          ASSERT_LT(f.arena.largest_free_block(), rounded);
          ASSERT_LT(budget - f.arena.reserved_bytes(), rounded);
          continue;
        }
        ASSERT_EQ(b->kind, kind);
        ASSERT_GE(b->bytes, std::max<uint64_t>(bytes, 1));
        live.push_back({*b, bytes});
      } else {
        const size_t i = rng() % live.size();
        f.arena.Free(live[i].block);
        live[i] = live.back();
        live.pop_back();
      }
      if (op % 50 == 0 || op == 2999) {
        ASSERT_TRUE(f.arena.CheckConsistency().ok()) << f.arena.CheckConsistency();
        // No overlap, inside the chunk, aligned; usage by kind.
        std::map<std::pair<int32_t, uint64_t>, uint64_t> by_start;
        MemoryUsage want;
        for (const Live& l : live) {
          ASSERT_EQ(l.block.offset % kArenaAlignment, 0u);
          ASSERT_LE(l.block.offset + l.block.bytes, f.arena.chunk_size(l.block.chunk));
          ASSERT_TRUE(
              by_start.emplace(std::pair{l.block.chunk, l.block.offset}, l.block.bytes).second);
          want.bytes[static_cast<int>(l.block.kind)] += l.block.bytes;
        }
        uint64_t end = 0;
        int32_t chunk = -1;
        for (const auto& [key, bytes] : by_start) {
          if (key.first != chunk) {
            chunk = key.first;
            end = 0;
          }
          ASSERT_GE(key.second, end) << "blocks overlap in chunk " << chunk;
          end = key.second + bytes;
        }
        const MemoryUsage got = f.arena.usage();
        for (int k = 0; k < kMemoryKinds; ++k) ASSERT_EQ(got.bytes[k], want.bytes[k]);
        if (budget != 0) ASSERT_LE(f.arena.reserved_bytes(), budget);
      }
    }
    // Free everything: each chunk is one free block again.
    for (const Live& l : live) f.arena.Free(l.block);
    EXPECT_EQ(f.arena.usage().total(), 0u);
    EXPECT_EQ(f.arena.free_block_count(), f.arena.chunk_count());
    EXPECT_TRUE(f.arena.CheckConsistency().ok());
  }
}

}  // namespace
}  // namespace packd::engine::cuda
