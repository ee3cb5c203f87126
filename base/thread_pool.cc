#include "base/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "base/parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace packd {
namespace {

// How long a thread spins on an atomic before it sleeps on a condition
// variable. A decode step issues ParallelFor calls a few microseconds apart,
// so workers that spin this long are still awake for the next call; an idle
// pool costs nothing after it.
constexpr std::chrono::microseconds kSpin(50);
// Ranges are counted in 16 bits of the claim word.
constexpr int kMaxThreads = 4096;

// The pool whose loop this thread is running (nested calls run inline).
thread_local const ThreadPool* current_pool = nullptr;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Spins until done() or kSpin has passed; returns done().
template <typename Done>
bool SpinUntil(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      CpuRelax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

constexpr uint64_t ClaimWord(uint32_t epoch, uint32_t ranges, uint32_t next) {
  return (uint64_t{epoch} << 32) | (uint64_t{ranges} << 16) | next;
}

// Range i of [0, n) cut into `ranges` parts whose sizes differ by at most one.
inline int64_t RangeStart(int64_t n, int64_t ranges, int64_t i) {
  const int64_t base = n / ranges, extra = n % ranges;
  return i * base + std::min(i, extra);
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = HardwareThreads();
  threads = std::min(threads, kMaxThreads);
  workers_.reserve(threads - 1);
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { WorkerMain(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    stop_flag_.store(true, std::memory_order_release);
    work_cv_.SignalAll();
  }
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::WorkerMain() {
  uint32_t seen = 0;
  for (;;) {
    auto has_news = [&] {
      return epoch_.load(std::memory_order_acquire) != seen ||
             stop_flag_.load(std::memory_order_acquire);
    };
    if (!SpinUntil(has_news)) {
      absl::MutexLock lock(&mu_);
      while (!stop_ && epoch_.load(std::memory_order_acquire) == seen) {
        ++sleeping_workers_;
        work_cv_.Wait(&mu_);
        --sleeping_workers_;
      }
    }
    if (stop_flag_.load(std::memory_order_acquire)) return;
    seen = epoch_.load(std::memory_order_acquire);
    RunRanges(seen);
  }
}

void ThreadPool::RunRanges(uint32_t epoch) {
  uint64_t word = claim_.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t word_epoch = static_cast<uint32_t>(word >> 32);
    const uint32_t ranges = static_cast<uint32_t>(word >> 16) & 0xffff;
    const uint32_t next = static_cast<uint32_t>(word) & 0xffff;
    if (word_epoch != epoch || next >= ranges) return;
    if (!claim_.compare_exchange_weak(word, ClaimWord(epoch, ranges, next + 1),
                                      std::memory_order_acq_rel, std::memory_order_acquire)) {
      continue;  // `word` now holds the current value
    }
    // Range `next` of loop `epoch` is ours: the loop cannot finish (and loop_
    // cannot change) before we decrement pending_.
    const Loop& loop = loop_;
    const int64_t begin = RangeStart(loop.n, ranges, next);
    const int64_t end = RangeStart(loop.n, ranges, next + 1);
    const ThreadPool* outer = current_pool;
    current_pool = this;
    (*loop.fn)(begin, end);
    current_pool = outer;
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      absl::MutexLock lock(&mu_);
      if (caller_sleeping_) done_cv_.Signal();
      return;
    }
    word = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1 || current_pool == this) {
    fn(0, n);  // single thread, single item, or nested inside our own loop
    return;
  }
  absl::MutexLock call_lock(&call_mu_);
  const int64_t ranges = std::min<int64_t>(n, threads());
  loop_.fn = &fn;
  loop_.n = n;
  pending_.store(ranges, std::memory_order_relaxed);
  const uint32_t epoch = ++epoch_counter_;
  claim_.store(ClaimWord(epoch, static_cast<uint32_t>(ranges), 0), std::memory_order_release);
  epoch_.store(epoch, std::memory_order_release);
  {
    absl::MutexLock lock(&mu_);
    if (sleeping_workers_ > 0) work_cv_.SignalAll();
  }
  RunRanges(epoch);
  auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!SpinUntil(done)) {
    absl::MutexLock lock(&mu_);
    while (!done()) {
      caller_sleeping_ = true;
      done_cv_.Wait(&mu_);
      caller_sleeping_ = false;
    }
  }
}

}  // namespace packd
