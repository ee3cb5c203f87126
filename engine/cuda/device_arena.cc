#include "engine/cuda/device_arena.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/align.h"

namespace packd::engine::cuda {
namespace {

constexpr uint64_t kMaxRequest = std::numeric_limits<uint64_t>::max() - kArenaAlignment;

// A block's size: at least one alignment unit.
uint64_t BlockBytes(uint64_t bytes) {
  return std::max<uint64_t>(kArenaAlignment, RoundUp(bytes, kArenaAlignment));
}

}  // namespace

DeviceArena::DeviceArena(DeviceArenaOptions options, ReserveChunkFn reserve)
    : options_(std::move(options)), reserve_(std::move(reserve)) {}

absl::StatusOr<ArenaBlock> DeviceArena::Allocate(uint64_t bytes, MemoryKind kind) {
  absl::MutexLock lock(&mu_);
  if (bytes > kMaxRequest) return ExhaustedError(bytes, bytes, kind);
  const uint64_t rounded = BlockBytes(bytes);
  auto it = free_.lower_bound(FreeKey{rounded, -1, 0});
  if (it == free_.end()) {
    // No free block fits: reserve a chunk for it.
    const uint64_t budget_left =
        options_.budget_bytes == 0
            ? std::numeric_limits<uint64_t>::max()
            : options_.budget_bytes - std::min(options_.budget_bytes, reserved_);
    if (rounded > RoundDown(budget_left, kArenaAlignment))
      return ExhaustedError(bytes, rounded, kind);
    const uint64_t size = std::max(rounded, std::min(BlockBytes(options_.chunk_bytes),
                                                     RoundDown(budget_left, kArenaAlignment)));
    const int32_t index = static_cast<int32_t>(chunks_.size());
    absl::Status s = reserve_(index, size);
    if (!s.ok()) {
      return absl::Status(
          s.code(),
          absl::StrCat(options_.name, ": cannot reserve a chunk of ", size, " bytes for ", bytes,
                       " bytes of ", std::string(MemoryKindName(kind)), ": ", s.message()));
    }
    Chunk chunk;
    chunk.bytes = size;
    chunk.blocks.emplace(0, Block{size, true, kind});
    chunks_.push_back(std::move(chunk));
    reserved_ += size;
    it = free_.insert(FreeKey{size, index, 0}).first;
  }
  const auto [size, chunk_index, offset] = *it;
  free_.erase(it);
  Chunk& chunk = chunks_[chunk_index];
  Block& block = chunk.blocks.at(offset);
  block.bytes = rounded;
  block.free = false;
  block.kind = kind;
  if (size > rounded) {
    chunk.blocks.emplace(offset + rounded, Block{size - rounded, true, kind});
    free_.insert(FreeKey{size - rounded, chunk_index, offset + rounded});
  }
  usage_.bytes[static_cast<int>(kind)] += rounded;
  return ArenaBlock{chunk_index, offset, rounded, kind};
}

void DeviceArena::Free(const ArenaBlock& b) {
  absl::MutexLock lock(&mu_);
  if (b.chunk < 0 || b.chunk >= static_cast<int32_t>(chunks_.size())) return;
  Chunk& chunk = chunks_[b.chunk];
  auto it = chunk.blocks.find(b.offset);
  if (it == chunk.blocks.end() || it->second.free || it->second.bytes != b.bytes) return;
  usage_.bytes[static_cast<int>(it->second.kind)] -= it->second.bytes;
  it->second.free = true;
  // Merge with the next block, then with the previous one.
  auto next = std::next(it);
  if (next != chunk.blocks.end() && next->second.free) {
    free_.erase(FreeKey{next->second.bytes, b.chunk, next->first});
    it->second.bytes += next->second.bytes;
    chunk.blocks.erase(next);
  }
  if (it != chunk.blocks.begin()) {
    auto prev = std::prev(it);
    if (prev->second.free) {
      free_.erase(FreeKey{prev->second.bytes, b.chunk, prev->first});
      prev->second.bytes += it->second.bytes;
      chunk.blocks.erase(it);
      it = prev;
    }
  }
  free_.insert(FreeKey{it->second.bytes, b.chunk, it->first});
}

MemoryUsage DeviceArena::usage() const {
  absl::MutexLock lock(&mu_);
  return usage_;
}

uint64_t DeviceArena::reserved_bytes() const {
  absl::MutexLock lock(&mu_);
  return reserved_;
}

int32_t DeviceArena::chunk_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(chunks_.size());
}

uint64_t DeviceArena::chunk_size(int32_t chunk) const {
  absl::MutexLock lock(&mu_);
  if (chunk < 0 || chunk >= static_cast<int32_t>(chunks_.size())) return 0;
  return chunks_[chunk].bytes;
}

uint64_t DeviceArena::largest_free_block() const {
  absl::MutexLock lock(&mu_);
  return LargestFreeLocked();
}

int64_t DeviceArena::free_block_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(free_.size());
}

uint64_t DeviceArena::LargestFreeLocked() const {
  return free_.empty() ? 0 : std::get<0>(*free_.rbegin());
}

absl::Status DeviceArena::ExhaustedError(uint64_t request, uint64_t rounded,
                                         MemoryKind kind) const {
  std::string budget = options_.budget_bytes == 0
                           ? std::string("no budget")
                           : absl::StrCat("the ", options_.budget_bytes, "-byte budget");
  std::string in_use;
  for (int k = 0; k < kMemoryKinds; ++k) {
    absl::StrAppend(&in_use, k ? ", " : "", std::string(MemoryKindName(static_cast<MemoryKind>(k))),
                    " ", usage_.bytes[k]);
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      options_.name, ": cannot allocate ", request, " bytes of ", std::string(MemoryKindName(kind)),
      " (", rounded, " aligned): ", reserved_, " bytes reserved in ", chunks_.size(), " chunks of ",
      budget, "; in use: ", in_use, "; largest free block ", LargestFreeLocked(), " bytes"));
}

absl::Status DeviceArena::CheckConsistency() const {
  absl::MutexLock lock(&mu_);
  MemoryUsage used;
  uint64_t reserved = 0;
  size_t free_blocks = 0;
  for (size_t c = 0; c < chunks_.size(); ++c) {
    const Chunk& chunk = chunks_[c];
    reserved += chunk.bytes;
    uint64_t expect = 0;
    bool prev_free = false;
    for (const auto& [offset, block] : chunk.blocks) {
      if (offset != expect) {
        return absl::InternalError(absl::StrCat("chunk ", c, ": block at ", offset,
                                                " leaves a gap or overlap (expected ", expect,
                                                ")"));
      }
      if (offset % kArenaAlignment != 0 || block.bytes % kArenaAlignment != 0 || block.bytes == 0) {
        return absl::InternalError(absl::StrCat("chunk ", c, ": block at ", offset, " of ",
                                                block.bytes, " bytes is misaligned"));
      }
      if (block.free) {
        if (prev_free) {
          return absl::InternalError(
              absl::StrCat("chunk ", c, ": free block at ", offset, " follows a free block"));
        }
        if (!free_.contains(FreeKey{block.bytes, static_cast<int32_t>(c), offset})) {
          return absl::InternalError(
              absl::StrCat("chunk ", c, ": free block at ", offset, " is not indexed"));
        }
        ++free_blocks;
      } else {
        used.bytes[static_cast<int>(block.kind)] += block.bytes;
      }
      prev_free = block.free;
      expect = offset + block.bytes;
    }
    if (expect != chunk.bytes) {
      return absl::InternalError(
          absl::StrCat("chunk ", c, ": blocks cover ", expect, " of ", chunk.bytes, " bytes"));
    }
  }
  if (free_blocks != free_.size()) {
    return absl::InternalError(absl::StrCat("free index has ", free_.size(), " entries for ",
                                            free_blocks, " free blocks"));
  }
  if (reserved != reserved_) {
    return absl::InternalError(absl::StrCat("reserved ", reserved_, " != chunks ", reserved));
  }
  for (int k = 0; k < kMemoryKinds; ++k) {
    if (used.bytes[k] != usage_.bytes[k]) {
      return absl::InternalError(absl::StrCat("usage of kind ", k, " is ", usage_.bytes[k],
                                              "; blocks hold ", used.bytes[k]));
    }
  }
  if (options_.budget_bytes != 0 && reserved_ > options_.budget_bytes) {
    return absl::InternalError(
        absl::StrCat("reserved ", reserved_, " exceeds the budget ", options_.budget_bytes));
  }
  return absl::OkStatus();
}

}  // namespace packd::engine::cuda
