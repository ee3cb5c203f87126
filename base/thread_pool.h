// A fixed pool of persistent worker threads for fork-join loops that run many
// times per generated token (one matmul, one attention pass): the per-call
// cost is a few atomic operations plus a wake-up, not a thread creation.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace packd {

// Thread safety: every method may be called from any thread. ParallelFor calls
// from different threads are serialized (one loop runs at a time); a
// ParallelFor issued from inside a running loop's fn on the same pool (nested)
// runs inline on the calling thread, so nesting never deadlocks.
class ThreadPool {
 public:
  // `threads` is the total parallelism including the calling thread: the pool
  // starts threads - 1 workers. threads <= 0 means HardwareThreads().
  explicit ThreadPool(int threads);
  // Joins the workers. No ParallelFor may be running or start afterwards.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into min(n, threads()) contiguous ranges whose sizes differ
  // by at most one, and calls fn(begin, end) once for each, on the workers and
  // on the calling thread; returns when every call has returned. Which thread
  // runs which range is not fixed. fn must be safe to call concurrently on
  // disjoint ranges and must not throw. n <= 0 calls nothing.
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t begin, int64_t end)> fn);

 private:
  // The loop being run. Written by the caller (holding call_mu_) before it
  // publishes the loop through claim_; a thread reads it only after claiming
  // one of its ranges, and the caller does not return (or overwrite it) before
  // every claimed range has finished, so no lock is needed to read it.
  struct Loop {
    const absl::FunctionRef<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
  };

  void WorkerMain();
  // Claims and runs ranges of the loop numbered `epoch` until none are left.
  void RunRanges(uint32_t epoch);

  std::vector<std::thread> workers_;

  // Serializes ParallelFor callers.
  absl::Mutex call_mu_;
  Loop loop_;
  uint32_t epoch_counter_ ABSL_GUARDED_BY(call_mu_) = 0;

  // The claim word: epoch (bits 63..32) | ranges (31..16) | next range (15..0).
  // A thread claims range i of loop e by a compare-exchange that also checks
  // the epoch, so a late worker can never claim a range of a newer loop while
  // holding an older loop's number.
  std::atomic<uint64_t> claim_{0};
  // The epoch of the most recently published loop (workers watch it).
  std::atomic<uint32_t> epoch_{0};
  // Ranges of the current loop that have not finished yet.
  std::atomic<int64_t> pending_{0};

  // Sleeping and waking (after a short spin).
  absl::Mutex mu_;
  absl::CondVar work_cv_;  // a new loop was published or stop_ was set
  absl::CondVar done_cv_;  // pending_ reached zero
  int sleeping_workers_ ABSL_GUARDED_BY(mu_) = 0;
  bool caller_sleeping_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> stop_flag_{false};  // stop_, readable while spinning
};

}  // namespace packd
