// Prefix-aware routing among the instances of one model. Each instance has
// its own KV cache (engine/SCHEDULER.md, "Prefix caching"), so a prompt
// reuses a cached prefix only on the instance that computed it. The router
// remembers which instance last took each prompt prefix and sends a request
// there while that instance has room; otherwise the least busy instance
// serves it (and becomes the prefix's home).
//
// Prefixes are remembered at whole-block lengths 1, 2, 4, 8, ... blocks
// (each below the prompt's length, as a cache hit never covers the last
// token), as 64-bit hashes chained block by block over the tokens, with the
// request's cache salt: a conversation that grows turn by turn keeps its
// short prefixes and so its instance. A hash collision only misroutes a
// request (it computes its prompt; results never depend on the instance).
// The memory is bounded: least recently used prefixes are forgotten.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::server {

class PrefixRouter {
 public:
  // `block_size`: the engines' KV block size (tokens); `capacity`: prefixes
  // remembered.
  explicit PrefixRouter(int32_t block_size, size_t capacity = 8192);

  // A prompt's prefixes as the router knows them: hashes of its first 1, 2,
  // 4, ... blocks in `salt`'s namespace, shortest first (computed once per
  // request, then looked up and recorded).
  using Prefixes = std::vector<uint64_t>;
  Prefixes PrefixesOf(std::span<const engine::TokenId> prompt, std::string_view salt) const;
  // The instance that took the longest remembered of `prefixes`, or -1.
  int Lookup(const Prefixes& prefixes) const;
  // Remembers that `instance` takes every one of `prefixes`.
  void Record(const Prefixes& prefixes, int instance);
  // Prefixes remembered.
  size_t size() const;

 private:
  const int32_t block_size_;
  const size_t capacity_;
  mutable absl::Mutex mu_;
  struct Entry {
    int instance;
    std::list<uint64_t>::iterator lru;
  };
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<uint64_t> lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
};

}  // namespace packd::server
