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
    const int64_t left = static_cast<int64_t>(seq->tokens.size()) - seq->num_computed;
    const int64_t count = std::min(left, budget);
    if (!cache_.Reserve(seq->blocks, seq->num_computed + count)) break;
    waiting_.pop_front();
    seq->state = SequenceState::kRunning;
    running_.push_back(seq);
    chunks.push_back({seq, seq->num_computed, count,
                      seq->num_computed + count == static_cast<int64_t>(seq->tokens.size())});
    budget -= count;
  }
  return chunks;
}

void Scheduler::Finish(Sequence* seq) {
  cache_.Release(seq->blocks);
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) {
    running_.erase(it);
  }
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) {
    waiting_.erase(it);
  }
  seq->state = SequenceState::kFinished;
}

}  // namespace packd::engine
