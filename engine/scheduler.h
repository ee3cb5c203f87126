// Continuous batching over the paged KV cache; the policy is explained in
// engine/SCHEDULER.md.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv_cache.h"
#include "engine/tokenizer/tokenizer.h"

namespace packd::engine {

enum class SequenceState { kWaiting, kRunning, kFinished };

// One generation request as the scheduler sees it. Owned by the engine.
struct Sequence {
  uint64_t id = 0;
  std::vector<TokenId> tokens;  // the prompt, then every generated token
  int64_t prompt_len = 0;
  int64_t max_len = 0;          // tokens.size() never exceeds this
  int64_t num_computed = 0;     // leading tokens whose keys/values are cached
  std::vector<int32_t> blocks;  // KV block table
  SequenceState state = SequenceState::kWaiting;
  int preemptions = 0;
  // Prefix caching: whether this sequence reads and fills the cache, in
  // which namespace, and the content ids of its leading registered blocks.
  bool prefix_cache = false;
  std::string cache_salt;
  std::vector<uint64_t> block_content;
  // Prompt tokens taken from the cache when first admitted; -1 before.
  int64_t cached_prompt_tokens = -1;
};

// A run of one sequence's tokens to compute this step: tokens [begin, begin +
// count). `sample` when the run ends at the last token, so the step yields
// the sequence's next token.
struct ScheduledChunk {
  Sequence* seq = nullptr;
  int64_t begin = 0;
  int64_t count = 0;
  bool sample = false;
};

struct SchedulerOptions {
  int64_t max_batch_tokens = 512;  // tokens per step (decode + prefill chunks)
  int64_t max_running = 32;        // sequences holding KV blocks at once
};

// Not thread-safe: driven by the engine's step loop.
class Scheduler {
 public:
  Scheduler(KvCache& cache, const SchedulerOptions& options) : cache_(cache), options_(options) {}

  // Queues a sequence (state kWaiting, no blocks). ResourceExhausted when
  // its max_len could never fit in the whole KV cache.
  absl::Status Add(Sequence* seq);
  // Picks this step's work: decode tokens and prefill continuations of the
  // running sequences first (oldest first), then new sequences from the
  // queue while tokens and blocks remain. Reserves the KV blocks of every
  // chunk; preempts the newest running sequences (releasing their blocks;
  // they recompute later) when blocks run out.
  std::vector<ScheduledChunk> Schedule();
  // After the engine ran the step: the chunk's tokens are now cached, and
  // the blocks they fill are registered for prefix caching.
  void Computed(const ScheduledChunk& chunk);
  // Removes a sequence (finished or aborted) from whichever queue holds it
  // and releases its blocks.
  void Finish(Sequence* seq);

  size_t waiting() const { return waiting_.size(); }
  size_t running() const { return running_.size(); }
  uint64_t preemptions() const { return preemptions_; }
  // Prompt tokens of admitted sequences that used prefix caching, and how
  // many of them came from the cache (counted at first admission).
  uint64_t prefix_queried_tokens() const { return prefix_queried_tokens_; }
  uint64_t prefix_hit_tokens() const { return prefix_hit_tokens_; }

 private:
  void Preempt(Sequence* seq);
  // Admits the first waiting sequence if its first chunk fits (taking its
  // cached prefix first); false, with nothing changed, when it does not.
  bool Admit(Sequence* seq, int64_t budget, std::vector<ScheduledChunk>& chunks);

  KvCache& cache_;
  SchedulerOptions options_;
  std::deque<Sequence*> waiting_;   // FCFS; preempted sequences go to the front
  std::vector<Sequence*> running_;  // in admission order
  uint64_t preemptions_ = 0;
  uint64_t prefix_queried_tokens_ = 0;
  uint64_t prefix_hit_tokens_ = 0;
};

}  // namespace packd::engine
