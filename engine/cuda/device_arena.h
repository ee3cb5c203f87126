// Host-side bookkeeping of the CUDA backend's device memory (DESIGN.md §5:
// "device memory from one arena per device, no cudaMalloc on the step path").
//
// The arena hands out blocks of chunks. A chunk is one large device
// allocation that the backend reserves (cudaMalloc) through the callback
// given at construction; this class never touches the device — it manages
// (chunk, offset) pairs only, and the backend maps a chunk index to the base
// pointer it reserved. Chunks are reserved only when no free block fits,
// which the backend lets happen only at load time (Allocate, LoadWeight);
// they stay reserved until the arena is destroyed, so a block freed by one
// model load is reused by the next without another cudaMalloc.
//
// Placement: best fit over every free block of every chunk (smallest block
// that fits; ties broken by chunk, then offset, so placement is
// deterministic), split at the front; a freed block is merged with free
// neighbours at once, so two free blocks are never adjacent.
//
// Every offset and every block size is a multiple of kArenaAlignment (256 B:
// what cuBLAS, vectorized kernels and the device decoder's image want).
// Accounting is by MemoryKind, in those rounded bytes.
//
// Thread safety: all methods may be called from any thread (one mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/backend.h"

namespace packd::engine::cuda {

inline constexpr uint64_t kArenaAlignment = 256;

struct DeviceArenaOptions {
  std::string name = "cuda";  // prefixes errors: "cuda:0: cannot allocate ..."
  // Most bytes the chunks may add up to; 0: unlimited.
  uint64_t budget_bytes = 0;
  // Size of a new chunk; a larger request gets a chunk of its own size. The
  // last chunk under a budget is cut down to what the budget has left.
  uint64_t chunk_bytes = 256ull << 20;
};

// A block handed out by DeviceArena::Allocate.
struct ArenaBlock {
  int32_t chunk = -1;
  uint64_t offset = 0;  // from the chunk's base; a multiple of kArenaAlignment
  uint64_t bytes = 0;   // the request rounded up to kArenaAlignment (at least one unit)
  MemoryKind kind = MemoryKind::kWorkspace;
  bool valid() const { return chunk >= 0; }
};

class DeviceArena {
 public:
  // Reserves chunk `index` (the number of chunks so far) of `bytes` bytes on
  // the device. An error (ResourceExhausted when the device is out of memory)
  // is returned by Allocate with the arena unchanged. Called with the
  // arena's lock held: it must not call back into the arena.
  using ReserveChunkFn = std::function<absl::Status(int32_t index, uint64_t bytes)>;

  DeviceArena(DeviceArenaOptions options, ReserveChunkFn reserve);
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // A block of at least `bytes` bytes. ResourceExhausted, with the numbers
  // (request, budget, reserved, in use by kind, largest free block), when
  // no free block fits and the budget cannot hold a new chunk for it.
  absl::StatusOr<ArenaBlock> Allocate(uint64_t bytes, MemoryKind kind);
  // Returns a block from Allocate to the arena. Freeing a block twice, or
  // one this arena did not hand out, is a bug in the caller; it is ignored
  // (and reported by CheckConsistency's counters staying as they were).
  void Free(const ArenaBlock& block);

  // Bytes handed out, by kind (rounded sizes).
  MemoryUsage usage() const;
  uint64_t reserved_bytes() const;  // sum of the chunk sizes
  int32_t chunk_count() const;
  uint64_t chunk_size(int32_t chunk) const;  // 0 for an unknown chunk
  uint64_t largest_free_block() const;
  int64_t free_block_count() const;
  const DeviceArenaOptions& options() const { return options_; }

  // Verifies the invariants (blocks tile every chunk exactly, no two free
  // neighbours, the free index matches the blocks, the usage matches the
  // allocated blocks, alignment). For tests; O(blocks).
  absl::Status CheckConsistency() const;

 private:
  struct Block {
    uint64_t bytes = 0;
    bool free = true;
    MemoryKind kind = MemoryKind::kWorkspace;
  };
  struct Chunk {
    uint64_t bytes = 0;
    std::map<uint64_t, Block> blocks;  // offset -> block; tiles [0, bytes)
  };
  // (size, chunk, offset) of every free block: best fit is lower_bound.
  using FreeKey = std::tuple<uint64_t, int32_t, uint64_t>;

  absl::Status ExhaustedError(uint64_t request, uint64_t rounded, MemoryKind kind) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t LargestFreeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DeviceArenaOptions options_;
  const ReserveChunkFn reserve_;
  mutable absl::Mutex mu_;
  std::vector<Chunk> chunks_ ABSL_GUARDED_BY(mu_);
  std::set<FreeKey> free_ ABSL_GUARDED_BY(mu_);
  uint64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  MemoryUsage usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace packd::engine::cuda
