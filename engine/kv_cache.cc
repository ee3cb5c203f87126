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
  c->blocks_.resize(c->num_blocks_);
  c->free_.reserve(c->num_blocks_);
  for (int64_t b = c->num_blocks_ - 1; b >= 0; --b) c->free_.push_back(static_cast<int32_t>(b));
  return c;
}

void KvCache::LruRemove(int32_t b) {
  BlockState& s = blocks_[b];
  (s.lru_prev >= 0 ? blocks_[s.lru_prev].lru_next : lru_head_) = s.lru_next;
  (s.lru_next >= 0 ? blocks_[s.lru_next].lru_prev : lru_tail_) = s.lru_prev;
  s.lru_prev = s.lru_next = -1;
  --evictable_;
}

void KvCache::LruAppend(int32_t b) {
  BlockState& s = blocks_[b];
  s.lru_prev = lru_tail_;
  s.lru_next = -1;
  (lru_tail_ >= 0 ? blocks_[lru_tail_].lru_next : lru_head_) = b;
  lru_tail_ = b;
  ++evictable_;
}

int32_t KvCache::TakeBlock() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {  // Reserve checked free_blocks(): an evictable block exists
    b = lru_head_;
    LruRemove(b);
    BlockState& s = blocks_[b];
    cached_.erase(*s.key);
    s.key = nullptr;
    s.content = 0;
  }
  blocks_[b].refs = 1;
  return b;
}

bool KvCache::Reserve(std::vector<int32_t>& table, int64_t tokens) {
  const int64_t need = BlocksFor(tokens) - static_cast<int64_t>(table.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int64_t i = 0; i < need; ++i) table.push_back(TakeBlock());
  return true;
}

void KvCache::Release(std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    BlockState& s = blocks_[*it];
    if (--s.refs > 0) continue;
    if (s.content != 0) {
      LruAppend(*it);
    } else {
      free_.push_back(*it);
    }
  }
  table.clear();
}

int64_t KvCache::AcquirePrefix(std::span<const int32_t> tokens, int64_t max_tokens,
                               std::string_view salt, std::vector<int32_t>& table,
                               std::vector<uint64_t>& content) {
  const int64_t limit = std::min<int64_t>(max_tokens, static_cast<int64_t>(tokens.size()));
  KvBlockKey key;
  key.salt = salt;
  int64_t j = 0;
  for (; (j + 1) * block_size_ <= limit; ++j) {
    key.tokens.assign(tokens.begin() + j * block_size_, tokens.begin() + (j + 1) * block_size_);
    auto it = cached_.find(key);
    if (it == cached_.end()) break;
    const int32_t b = it->second;
    BlockState& s = blocks_[b];
    if (s.refs++ == 0) LruRemove(b);
    table.push_back(b);
    content.push_back(s.content);
    key.parent = s.content;
  }
  return j * block_size_;
}

void KvCache::Commit(std::span<const int32_t> tokens, int64_t computed, std::string_view salt,
                     const std::vector<int32_t>& table, std::vector<uint64_t>& content) {
  const int64_t full =
      std::min<int64_t>(computed, static_cast<int64_t>(tokens.size())) / block_size_;
  KvBlockKey key;
  key.salt = salt;
  for (int64_t j = static_cast<int64_t>(content.size()); j < full; ++j) {
    key.parent = j == 0 ? 0 : content[j - 1];
    key.tokens.assign(tokens.begin() + j * block_size_, tokens.begin() + (j + 1) * block_size_);
    auto [it, inserted] = cached_.try_emplace(key, table[j]);
    if (inserted) {
      BlockState& s = blocks_[table[j]];
      s.content = next_content_++;
      s.key = &it->first;
    }
    content.push_back(blocks_[it->second].content);
  }
}

}  // namespace packd::engine
