#include "engine/scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd::engine {

absl::Status Scheduler::Add(Sequence* seq) {
  RETURN_IF_ERROR(cache_.CheckFits(seq->max_len));
  seq->state = SequenceState::kWaiting;
  waiting_.push_back(seq);
  return absl::OkStatus();
}

void Scheduler::Preempt(Sequence* seq) {
  cache_.Release(seq->blocks);
  seq->block_content.clear();
  seq->num_computed = 0;
  seq->state = SequenceState::kWaiting;
  ++seq->preemptions;
  ++preemptions_;
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  waiting_.push_front(seq);
}

std::vector<ScheduledChunk> Scheduler::Schedule() {
  std::vector<ScheduledChunk> chunks;
  int64_t budget = options_.max_batch_tokens;
  bool preempted = false;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence* seq = running_[i];
    const int64_t left = static_cast<int64_t>(seq->tokens.size()) - seq->num_computed;
    const int64_t count = std::min(left, budget);
    bool self_preempted = false;
    while (!cache_.Reserve(seq->blocks, seq->num_computed + count)) {
      Sequence* victim = running_.back();
      Preempt(victim);
      preempted = true;
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    chunks.push_back({seq, seq->num_computed, count,
                      seq->num_computed + count == static_cast<int64_t>(seq->tokens.size())});
    budget -= count;
  }
  // Admit new work only when nothing had to be preempted this step.
  while (!preempted && budget > 0 && !waiting_.empty() &&
         static_cast<int64_t>(running_.size()) < options_.max_running) {
    Sequence* seq = waiting_.front();
    if (!Admit(seq, budget, chunks)) break;
    budget -= chunks.back().count;
  }
  return chunks;
}

bool Scheduler::Admit(Sequence* seq, int64_t budget, std::vector<ScheduledChunk>& chunks) {
  const int64_t size = static_cast<int64_t>(seq->tokens.size());
  int64_t cached = 0;
  if (seq->prefix_cache) {
    // At least the last token is computed: its logits give the next token.
    cached = cache_.AcquirePrefix(seq->tokens, size - 1, seq->cache_salt, seq->blocks,
                                  seq->block_content);
    seq->num_computed = cached;
  }
  const int64_t count = std::min(size - seq->num_computed, budget);
  if (!cache_.Reserve(seq->blocks, seq->num_computed + count)) {
    cache_.Release(seq->blocks);
    seq->block_content.clear();
    seq->num_computed = 0;
    return false;
  }
  if (seq->cached_prompt_tokens < 0) {
    seq->cached_prompt_tokens = std::min(cached, seq->prompt_len);
    if (seq->prefix_cache) {
      prefix_queried_tokens_ += static_cast<uint64_t>(seq->prompt_len);
      prefix_hit_tokens_ += static_cast<uint64_t>(seq->cached_prompt_tokens);
    }
  }
  waiting_.pop_front();
  seq->state = SequenceState::kRunning;
  running_.push_back(seq);
  chunks.push_back({seq, seq->num_computed, count, seq->num_computed + count == size});
  return true;
}

void Scheduler::Computed(const ScheduledChunk& chunk) {
  Sequence* seq = chunk.seq;
  seq->num_computed += chunk.count;
  if (seq->prefix_cache) {
    cache_.Commit(seq->tokens, seq->num_computed, seq->cache_salt, seq->blocks, seq->block_content);
  }
}

void Scheduler::Finish(Sequence* seq) {
  cache_.Release(seq->blocks);
  seq->block_content.clear();
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) {
    running_.erase(it);
  }
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) {
    waiting_.erase(it);
  }
  seq->state = SequenceState::kFinished;
}

}  // namespace packd::engine
