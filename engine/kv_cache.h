// The paged KV cache (DESIGN.md §5): per layer, one pool of fixed-size blocks
// of keys and values in backend memory, handed out block by block to
// sequences, which keep their own block tables. The pool size follows from a
// byte budget.
//
// Prefix caching (engine/SCHEDULER.md, "Prefix caching"): a block whose
// tokens are all computed can be registered under a key made of its tokens,
// its parent (the content id of the block before it, 0 for a sequence's
// first block) and a namespace (salt). Keys are chained, so a block matches
// only at the same position after the same prefix; lookups compare the key
// exactly (the hash only finds candidates), so a collision can never hand a
// sequence someone else's keys and values. Blocks are reference-counted: a
// block no sequence holds stays cached and is reused only when the pool
// needs room, least recently released first. Free and evictable blocks both
// count as free, so caching never lowers what fits.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model_config.h"

namespace packd::engine {

// Bytes one token's keys and values take in the cache, over all layers
// (fp32): 2 x num_layers x num_kv_heads x head_dim x 4. A block of B tokens
// takes B times this.
uint64_t KvBytesPerToken(const ModelConfig& config);

struct KvCacheOptions {
  uint64_t budget_bytes = 256ull << 20;  // all layers, keys and values
  int32_t block_size = 16;               // tokens per block
};

// The content a full block holds, as prefix caching identifies it.
struct KvBlockKey {
  uint64_t parent = 0;  // content id of the block before it; 0: the first block
  std::string salt;     // namespace: blocks match only within one
  std::vector<int32_t> tokens;

  bool operator==(const KvBlockKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const KvBlockKey& k) {
    return H::combine(std::move(h), k.parent, k.salt, k.tokens);
  }
};

// Not thread-safe: owned and driven by one engine step loop.
class KvCache {
 public:
  // ResourceExhausted when the budget holds not even one block.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(Backend& backend,
                                                         const ModelConfig& config,
                                                         const KvCacheOptions& options);

  int32_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  // Blocks a Reserve may take: never used, or cached and held by no
  // sequence (evicted when taken).
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()) + evictable_; }
  // Blocks held by at least one sequence.
  int64_t used_blocks() const { return num_blocks_ - free_blocks(); }
  // Blocks registered for prefix caching (held or not).
  int64_t cached_blocks() const { return static_cast<int64_t>(cached_.size()); }
  // Times one sequence holds a block (0 for a free or evictable one).
  int32_t references(int32_t block) const { return blocks_[block].refs; }
  // Bytes of one block across all layers (keys and values).
  uint64_t bytes_per_block() const { return bytes_per_block_; }
  uint64_t bytes() const { return bytes_per_block_ * num_blocks_; }
  const KvLayer& layer(int64_t i) const { return layers_[i]; }

  // Blocks needed to hold `tokens` positions.
  int64_t BlocksFor(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }
  // ResourceExhausted, with the numbers, when a sequence of `tokens` tokens
  // would need more blocks than the whole cache has (it could never run).
  absl::Status CheckFits(int64_t tokens) const;
  // Grows `table` so that it covers `tokens` positions. All or nothing:
  // false (and `table` unchanged) when too few blocks are free.
  bool Reserve(std::vector<int32_t>& table, int64_t tokens);
  // Drops the sequence's reference to every block of `table` and clears it.
  // A block no sequence holds any more goes back to the pool: a cached one
  // stays cached (evictable), the table's last block ahead of its first, so
  // that a prefix's tail is evicted before its head.
  void Release(std::vector<int32_t>& table);

  // Prefix caching. `table` and `content` must be empty (a sequence with no
  // blocks): takes a reference to each cached block matching `tokens` from
  // the start, whole blocks only and at most `max_tokens` tokens, appends
  // them to `table` and their content ids to `content`, and returns the
  // tokens they hold (a multiple of block_size()).
  int64_t AcquirePrefix(std::span<const int32_t> tokens, int64_t max_tokens, std::string_view salt,
                        std::vector<int32_t>& table, std::vector<uint64_t>& content);
  // Registers the blocks of `table` that the first `computed` positions of
  // `tokens` fill, beyond the `content.size()` already known, appending their
  // content ids to `content`. A block whose content is already cached in
  // another block stays private to the sequence (freed, not cached, when
  // released) and takes that block's content id.
  void Commit(std::span<const int32_t> tokens, int64_t computed, std::string_view salt,
              const std::vector<int32_t>& table, std::vector<uint64_t>& content);

 private:
  struct BlockState {
    int32_t refs = 0;
    uint64_t content = 0;                  // 0: not cached
    const KvBlockKey* key = nullptr;       // in cached_, when cached
    int32_t lru_prev = -1, lru_next = -1;  // evictable list links
  };
  KvCache() = default;
  // The next block for a Reserve: a free one, else the least recently
  // released evictable one (uncached).
  int32_t TakeBlock();
  void LruRemove(int32_t b);
  void LruAppend(int32_t b);
  int32_t block_size_ = 0;
  int64_t num_blocks_ = 0;
  uint64_t bytes_per_block_ = 0;
  std::vector<std::unique_ptr<Buffer>> buffers_;  // one K and one V pool per layer
  std::vector<KvLayer> layers_;
  std::vector<int32_t> free_;  // uncached, unheld; a stack: the latest freed is reused first
  std::vector<BlockState> blocks_;
  absl::node_hash_map<KvBlockKey, int32_t> cached_;  // content -> block
  int32_t lru_head_ = -1, lru_tail_ = -1;  // evictable blocks, least recently released first
  int64_t evictable_ = 0;
  uint64_t next_content_ = 1;
};

}  // namespace packd::engine
