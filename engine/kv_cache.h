// The paged KV cache (DESIGN.md §5): per layer, one pool of fixed-size blocks
// of keys and values in backend memory, handed out block by block to
// sequences, which keep their own block tables. The pool size follows from a
// byte budget.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

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

// Not thread-safe: owned and driven by one engine step loop.
class KvCache {
 public:
  // ResourceExhausted when the budget holds not even one block.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(Backend& backend,
                                                         const ModelConfig& config,
                                                         const KvCacheOptions& options);

  int32_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return num_blocks_ - free_blocks(); }
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
  // Returns every block of `table` to the pool and clears it.
  void Release(std::vector<int32_t>& table);

 private:
  KvCache() = default;
  int32_t block_size_ = 0;
  int64_t num_blocks_ = 0;
  uint64_t bytes_per_block_ = 0;
  std::vector<std::unique_ptr<Buffer>> buffers_;  // one K and one V pool per layer
  std::vector<KvLayer> layers_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
};

}  // namespace packd::engine
