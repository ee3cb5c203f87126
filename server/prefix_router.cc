#include "server/prefix_router.h"

#include "absl/hash/hash.h"
#include "absl/types/span.h"

namespace packd::server {

PrefixRouter::PrefixRouter(int32_t block_size, size_t capacity)
    : block_size_(block_size < 1 ? 1 : block_size), capacity_(capacity < 1 ? 1 : capacity) {}

PrefixRouter::Prefixes PrefixRouter::PrefixesOf(std::span<const engine::TokenId> prompt,
                                                std::string_view salt) const {
  Prefixes out;
  if (prompt.empty()) return out;
  const size_t blocks = (prompt.size() - 1) / static_cast<size_t>(block_size_);
  uint64_t h = absl::HashOf(salt);
  size_t next = 1;  // the next block count to remember: 1, 2, 4, ...
  for (size_t b = 1; b <= blocks; ++b) {
    h = absl::HashOf(h, absl::MakeConstSpan(prompt.data() + (b - 1) * block_size_,
                                            static_cast<size_t>(block_size_)));
    if (b == next) {
      out.push_back(h);
      next *= 2;
    }
  }
  return out;
}

int PrefixRouter::Lookup(const Prefixes& prefixes) const {
  absl::MutexLock lock(&mu_);
  for (auto it = prefixes.rbegin(); it != prefixes.rend(); ++it) {
    if (auto e = entries_.find(*it); e != entries_.end()) return e->second.instance;
  }
  return -1;
}

void PrefixRouter::Record(const Prefixes& prefixes, int instance) {
  absl::MutexLock lock(&mu_);
  for (uint64_t h : prefixes) {
    if (auto e = entries_.find(h); e != entries_.end()) {
      e->second.instance = instance;
      lru_.splice(lru_.begin(), lru_, e->second.lru);
      continue;
    }
    lru_.push_front(h);
    entries_.emplace(h, Entry{instance, lru_.begin()});
    if (entries_.size() > capacity_) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
  }
}

size_t PrefixRouter::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

}  // namespace packd::server
