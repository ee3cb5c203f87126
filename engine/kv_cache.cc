#include "engine/kv_cache.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::engine {

uint64_t KvBytesPerToken(const ModelConfig& config) {
  return static_cast<uint64_t>(config.num_layers) * 2 *
         static_cast<uint64_t>(config.num_kv_heads * config.head_dim) * sizeof(float);
}

absl::Status KvCache::CheckFits(int64_t tokens) const {
  if (BlocksFor(tokens) <= num_blocks_) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("a sequence of up to ", tokens, " tokens needs ",
                                                   BlocksFor(tokens),
                                                   " KV blocks; the whole cache has ", num_blocks_));
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(Backend& backend,
                                                         const ModelConfig& config,
                                                         const KvCacheOptions& options) {
  if (options.block_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv cache: block size ", options.block_size, " must be >= 1"));
  }
  std::unique_ptr<KvCache> c(new KvCache());
  c->block_size_ = options.block_size;
  c->bytes_per_block_ = KvBytesPerToken(config) * static_cast<uint64_t>(options.block_size);
  const uint64_t per_layer_block =  // one layer's K (or V) per block
      static_cast<uint64_t>(config.num_kv_heads * config.head_dim) * options.block_size *
      sizeof(float);
  c->num_blocks_ = static_cast<int64_t>(options.budget_bytes / c->bytes_per_block_);
  if (c->num_blocks_ < 1) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv cache: a budget of ", options.budget_bytes, " bytes holds no block (one block of ",
        options.block_size, " tokens needs ", c->bytes_per_block_, " bytes)"));
  }
  c->num_blocks_ = std::min<int64_t>(c->num_blocks_, INT32_MAX);
  for (int64_t l = 0; l < config.num_layers; ++l) {
    KvLayer layer;
    for (float** pool : {&layer.k, &layer.v}) {
      ASSIGN_OR_RETURN(std::unique_ptr<Buffer> buf,
                       backend.Allocate(per_layer_block * c->num_blocks_, MemoryKind::kKvCache));
      *pool = buf->f32();
      c->buffers_.push_back(std::move(buf));
    }
    layer.num_blocks = c->num_blocks_;
    layer.block_size = c->block_size_;
    layer.n_kv_heads = config.num_kv_heads;
    layer.head_dim = config.head_dim;
    c->layers_.push_back(layer);
  }
  c->free_.reserve(c->num_blocks_);
  for (int64_t b = c->num_blocks_ - 1; b >= 0; --b) c->free_.push_back(static_cast<int32_t>(b));
  return c;
}

bool KvCache::Reserve(std::vector<int32_t>& table, int64_t tokens) {
  const int64_t need = BlocksFor(tokens) - static_cast<int64_t>(table.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int64_t i = 0; i < need; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void KvCache::Release(std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) free_.push_back(*it);
  table.clear();
}

}  // namespace packd::engine
