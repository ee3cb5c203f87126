// Real synchronization bugs that a PACKD_SANITIZE=thread build must report: the
// ctest tests tsan_canary_<mode> (base/CMakeLists.txt) pass only when TSan's
// report appears, so the absl annotations (base/tsan/absl_sync.cc) cannot rot
// into hiding every race (base/tsan_absl_test.cc checks the opposite: that
// correctly synchronized code stays quiet).
//
//   race_canary unprotected        two threads increment a counter, no lock
//   race_canary different_mutexes  each thread holds a mutex, but not the same one
//   race_canary lock_order         A then B on one thread, B then A on another
//   race_canary await_predicate    an Await predicate reads what another thread
//                                  writes without the lock (absl evaluates it
//                                  inside the library, where TSan would ignore
//                                  it without absl_sync.cc's Condition wrapping)
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace {

constexpr int kIterations = 1000;

int counter = 0;

void Unprotected() {
  auto work = [] {
    for (int i = 0; i < kIterations; ++i) ++counter;
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
}

absl::Mutex mu_a, mu_b;

void DifferentMutexes() {
  auto work = [](absl::Mutex* mu) {
    for (int i = 0; i < kIterations; ++i) {
      absl::MutexLock lock(mu);
      ++counter;
    }
  };
  std::thread a(work, &mu_a), b(work, &mu_b);
  a.join();
  b.join();
}

void LockOrder() {
  // Never deadlocks (the second thread starts after the first ends), but the
  // order A-then-B and B-then-A could: TSan's deadlock detector reports it.
  std::thread([] {
    absl::MutexLock a(&mu_a);
    absl::MutexLock b(&mu_b);
  }).join();
  std::thread([] {
    absl::MutexLock b(&mu_b);
    absl::MutexLock a(&mu_a);
  }).join();
}

void AwaitPredicate() {
  // The waiter's predicate first runs inside Await, on the waiter's thread;
  // the writer's first increment comes after `awaiting` (relaxed: no
  // happens-before, so the two are unordered whichever runs first in time).
  std::atomic<bool> awaiting{false};
  std::thread waiter([&] {
    absl::MutexLock lock(&mu_a);
    awaiting.store(true, std::memory_order_relaxed);
    mu_a.Await(absl::Condition(
        +[](int* c) { return *c >= kIterations; }, &counter));
  });
  std::thread writer([&] {
    while (!awaiting.load(std::memory_order_relaxed)) std::this_thread::yield();
    for (int i = 0; i < kIterations; ++i) {
      ++counter;                    // unguarded: the bug
      absl::MutexLock lock(&mu_a);  // lets the waiter re-check
    }
  });
  writer.join();
  waiter.join();
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  if (std::strcmp(mode, "unprotected") == 0) {
    Unprotected();
  } else if (std::strcmp(mode, "different_mutexes") == 0) {
    DifferentMutexes();
  } else if (std::strcmp(mode, "lock_order") == 0) {
    LockOrder();
  } else if (std::strcmp(mode, "await_predicate") == 0) {
    AwaitPredicate();
  } else {
    std::fprintf(stderr,
                 "usage: race_canary unprotected|different_mutexes|lock_order|await_predicate\n");
    return 2;
  }
  // Reached only when TSan reported nothing (halt_on_error=1) or was told not
  // to halt: the test's regular expression decides.
  std::printf("race_canary %s: counter=%d, no report\n", mode, counter);
  return 0;
}
