// Correctly synchronized uses of abseil's synchronization primitives, in the
// patterns packd uses (and a few it may): under a PACKD_SANITIZE=thread build
// (scripts/tsan.sh) each test must pass without a ThreadSanitizer report, which
// checks base/tsan/absl_sync.cc (the annotations that make TSan see Debian's
// uninstrumented absl::Mutex). Without that file every one of these reports a
// false data race. In the ordinary build they are plain (fast) unit tests.
// The opposite check, that real races are still reported, is
// base/tsan/race_canary.cc.
#include <atomic>
#include <deque>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace {

constexpr int kThreads = 4;
constexpr int kIterations = 2000;

template <typename Fn>
void RunThreads(int n, Fn fn) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back(fn, i);
  for (std::thread& t : threads) t.join();
}

TEST(TsanAbslTest, MutexLockCounter) {
  absl::Mutex mu;
  int64_t counter = 0;
  RunThreads(kThreads, [&](int) {
    for (int i = 0; i < kIterations; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
    }
  });
  absl::MutexLock lock(&mu);
  EXPECT_EQ(counter, kThreads * kIterations);
}

TEST(TsanAbslTest, ReadersAndWriters) {
  absl::Mutex mu;
  std::vector<int> values(8, 0);
  RunThreads(kThreads, [&](int t) {
    for (int i = 0; i < kIterations; ++i) {
      if (t == 0 && i % 4 == 0) {
        absl::WriterMutexLock lock(&mu);
        for (int& v : values) ++v;
      } else {
        absl::ReaderMutexLock lock(&mu);
        int first = values[0];
        for (int v : values) EXPECT_EQ(v, first);
      }
    }
  });
}

TEST(TsanAbslTest, TryLockAndReaderTryLock) {
  absl::Mutex mu;
  int counter = 0;
  RunThreads(kThreads, [&](int t) {
    for (int i = 0; i < kIterations;) {
      if (t % 2 == 0) {
        if (!mu.TryLock()) continue;
        ++counter;
        mu.Unlock();
        ++i;
      } else {
        if (!mu.ReaderTryLock()) continue;
        EXPECT_GE(counter, 0);
        mu.ReaderUnlock();
        ++i;
      }
    }
  });
  EXPECT_EQ(counter, (kThreads / 2) * kIterations);
}

// A queue whose consumers wait with Await on a member-function Condition (the
// predicate reads guarded state, and absl evaluates it on the producer's
// thread while it unlocks), as server/openai_api.cc's StreamExchange does.
class Queue {
 public:
  void Push(int v) {
    absl::MutexLock lock(&mu_);
    items_.push_back(v);
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  // Returns false once closed and drained.
  bool Pop(int* v) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &Queue::Ready));
    if (items_.empty()) return false;
    *v = items_.front();
    items_.pop_front();
    return true;
  }
  bool PopWithTimeout(int* v) {
    absl::MutexLock lock(&mu_);
    while (!mu_.AwaitWithTimeout(absl::Condition(this, &Queue::Ready), absl::Milliseconds(1))) {
    }
    if (items_.empty()) return false;
    *v = items_.front();
    items_.pop_front();
    return true;
  }

 private:
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !items_.empty(); }

  absl::Mutex mu_;
  std::deque<int> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

TEST(TsanAbslTest, AwaitProducerConsumer) {
  for (bool with_timeout : {false, true}) {
    Queue queue;
    std::atomic<int64_t> sum{0};
    std::vector<std::thread> consumers;
    for (int c = 0; c < 2; ++c) {
      consumers.emplace_back([&] {
        int v;
        while (with_timeout ? queue.PopWithTimeout(&v) : queue.Pop(&v)) sum += v;
      });
    }
    RunThreads(2, [&](int) {
      for (int i = 1; i <= kIterations; ++i) queue.Push(i);
    });
    queue.Close();
    for (std::thread& t : consumers) t.join();
    EXPECT_EQ(sum.load(), 2 * int64_t{kIterations} * (kIterations + 1) / 2);
  }
}

// A hand-off through a plain bool Condition (server/model_instance.cc): the
// data written before setting the flag is read after waiting for it.
TEST(TsanAbslTest, LockWhenAndBoolCondition) {
  for (int round = 0; round < 200; ++round) {
    absl::Mutex mu;
    bool ready = false;
    std::vector<int> payload;
    std::thread producer([&] {
      std::vector<int> data(16, round);
      absl::MutexLock lock(&mu);
      payload = std::move(data);
      ready = true;
    });
    if (round % 3 == 0) {
      mu.LockWhen(absl::Condition(&ready));
    } else if (round % 3 == 1) {
      EXPECT_TRUE(mu.LockWhenWithTimeout(absl::Condition(&ready), absl::Seconds(60)));
    } else {
      mu.Lock();
      mu.Await(absl::Condition(&ready));
    }
    EXPECT_EQ(payload.size(), 16u);
    EXPECT_EQ(payload[0], round);
    mu.Unlock();
    producer.join();
  }
}

TEST(TsanAbslTest, ReaderWaitsInSharedMode) {
  absl::Mutex mu;
  int value = 0;
  std::thread writer([&] {
    for (int i = 1; i <= 100; ++i) {
      absl::MutexLock lock(&mu);
      value = i;
    }
  });
  RunThreads(2, [&](int) {
    mu.ReaderLockWhen(absl::Condition(
        +[](int* v) { return *v >= 50; }, &value));
    EXPECT_GE(value, 50);
    mu.ReaderUnlock();
    absl::ReaderMutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int* v) { return *v == 100; }, &value));
    EXPECT_EQ(value, 100);
  });
  writer.join();
}

// ThreadPool's pattern (base/thread_pool.cc): CondVar Wait in a loop, Signal
// and SignalAll.
TEST(TsanAbslTest, CondVarWaitSignal) {
  absl::Mutex mu;
  absl::CondVar cv;
  std::deque<std::vector<int>> work;
  int done = 0;
  bool stop = false;
  std::vector<std::thread> workers;
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&, w] {
      absl::MutexLock lock(&mu);
      while (true) {
        while (work.empty() && !stop) {
          if (w == 0) {
            cv.WaitWithTimeout(&mu, absl::Milliseconds(1));
          } else {
            cv.Wait(&mu);
          }
        }
        if (work.empty()) return;
        std::vector<int> item = std::move(work.front());
        work.pop_front();
        EXPECT_EQ(item.size(), 4u);
        ++done;
        cv.SignalAll();
      }
    });
  }
  for (int i = 0; i < 500; ++i) {
    std::vector<int> item(4, i);
    absl::MutexLock lock(&mu);
    work.push_back(std::move(item));
    cv.Signal();
  }
  {
    absl::MutexLock lock(&mu);
    while (done < 500) cv.Wait(&mu);
    stop = true;
    cv.SignalAll();
  }
  for (std::thread& t : workers) t.join();
}

TEST(TsanAbslTest, Notification) {
  for (int round = 0; round < 100; ++round) {
    absl::Notification notification;
    std::vector<int> payload;
    std::thread producer([&] {
      payload.assign(8, round);
      notification.Notify();
    });
    switch (round % 3) {
      case 0:
        notification.WaitForNotification();
        break;
      case 1:
        EXPECT_TRUE(notification.WaitForNotificationWithTimeout(absl::Seconds(60)));
        break;
      default:
        while (!notification.HasBeenNotified()) std::this_thread::yield();
    }
    EXPECT_EQ(payload.size(), 8u);
    EXPECT_EQ(payload[7], round);
    producer.join();
  }
}

TEST(TsanAbslTest, BlockingCounterAndBarrier) {
  std::vector<int> slots(kThreads, 0);
  absl::BlockingCounter counter(kThreads);
  auto* barrier = new absl::Barrier(kThreads);
  std::vector<int> after(kThreads, 0);
  RunThreads(kThreads, [&](int t) {
    slots[t] = t + 1;
    if (barrier->Block()) delete barrier;
    int sum = 0;
    for (int s : slots) sum += s;  // every thread wrote its slot before Block
    after[t] = sum;
    counter.DecrementCount();
  });
  counter.Wait();
  for (int s : after) EXPECT_EQ(s, kThreads * (kThreads + 1) / 2);
}

TEST(TsanAbslTest, ReleasableMutexLock) {
  absl::Mutex mu;
  int counter = 0;
  RunThreads(kThreads, [&](int) {
    for (int i = 0; i < kIterations; ++i) {
      absl::ReleasableMutexLock lock(&mu);
      ++counter;
      if (i % 2 == 0) lock.Release();
    }
  });
  absl::MutexLock lock(&mu);
  EXPECT_EQ(counter, kThreads * kIterations);
}

// Mutexes created and destroyed over and over at recycled addresses (TSan
// must forget a destroyed mutex's state).
TEST(TsanAbslTest, ShortLivedMutexes) {
  for (int round = 0; round < 200; ++round) {
    auto mu = std::make_unique<absl::Mutex>();
    int counter = 0;
    RunThreads(2, [&](int) {
      for (int i = 0; i < 20; ++i) {
        absl::MutexLock lock(mu.get());
        ++counter;
      }
    });
    EXPECT_EQ(counter, 40);
  }
}

}  // namespace
