// ThreadSanitizer annotations for Debian's (uninstrumented) abseil
// synchronization library. Linked (whole-archive, see base/CMakeLists.txt) into
// every executable of a PACKD_SANITIZE=thread build and into nothing else.
//
// Why: libabsl_synchronization.so is not built with -fsanitize=thread, so TSan
// never sees absl::Mutex lock or unlock and reports every access to a
// mutex-guarded variable as a data race. abseil annotates itself for TSan only
// when the library itself is compiled with it (ABSL_TSAN_MUTEX_* in mutex.cc).
//
// How: this file defines the out-of-line members of absl::Mutex, CondVar,
// Notification, BlockingCounter and ReleasableMutexLock that the headers
// declare. Being part of the executable, these definitions take precedence over
// the shared library's (for the executable's own calls and, since the symbols
// are exported, for the PLT calls of other shared libraries and of
// libabsl_synchronization itself). Each one calls the library's implementation,
// found with dlsym(RTLD_NEXT, mangled name), between the same TSan mutex
// annotations (<sanitizer/tsan_interface.h>) that abseil's own TSan build
// makes, so TSan sees real lock and unlock events: happens-before through
// the mutex, lock-order-inversion (deadlock) detection, unlocking an unheld mutex.
//
// Conditions: absl::Mutex evaluates a waiter's Condition on whichever thread is
// unlocking (or locking) the mutex, from inside the library, where TSan has
// been told the mutex is being unlocked (or locked). Each Condition passed to
// LockWhen/Await/... is therefore wrapped in one that, on the evaluating
// thread, tells TSan the mutex is held just while the user's predicate runs
// (abseil's EvalConditionAnnotated does the same dance).
//
// Mangled names: built from ABSL_OPTION_INLINE_NAMESPACE_NAME (Debian's is
// "debian3", not the upstream "lts_20220623"); a symbol that cannot be found
// aborts the program at its first synchronization call, naming the symbol.
// base/tsan_absl_test.cc checks that correctly synchronized code stays quiet;
// base/tsan/race_canary.cc (ctest tsan_canary_*) that real races are reported.
#if !defined(__has_feature)
#define __has_feature(x) 0
#endif
#if !defined(__SANITIZE_THREAD__) && !__has_feature(thread_sanitizer)
#error "base/tsan/absl_sync.cc belongs to -fsanitize=thread builds only (PACKD_SANITIZE=thread)"
#endif

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

#if !ABSL_OPTION_USE_INLINE_NAMESPACE
#error "the mangled names below assume abseil's inline namespace (absl::<ns>::)"
#endif

namespace {

#define PACKD_TSAN_STR2(x) #x
#define PACKD_TSAN_STR(x) PACKD_TSAN_STR2(x)

// "_ZN4absl<len><ns>" + rest, or "_ZNK..." for a const member. The
// substitutions in `rest` (S0_ = absl::<ns>) hold for any inline namespace name.
std::string Mangle(bool is_const, const char* rest) {
  const char* ns = PACKD_TSAN_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  return std::string(is_const ? "_ZNK4absl" : "_ZN4absl") + std::to_string(std::strlen(ns)) + ns +
         rest;
}

void* Lookup(bool is_const, const char* rest) {
  const std::string name = Mangle(is_const, rest);
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr,
                 "packd tsan: %s not found in the abseil shared libraries (dlsym: %s); "
                 "base/tsan/absl_sync.cc does not match this abseil version\n",
                 name.c_str(), dlerror());
    std::abort();
  }
  return fn;
}

using absl::Condition;
using absl::CondVar;
using absl::Duration;
using absl::Mutex;
using absl::Time;

// The library's implementations (member functions called as free functions
// taking `this` first: the same calling convention in the Itanium C++ ABI).
struct Real {
  void (*lock)(Mutex*);
  void (*unlock)(Mutex*);
  bool (*try_lock)(Mutex*);
  void (*reader_lock)(Mutex*);
  void (*reader_unlock)(Mutex*);
  bool (*reader_try_lock)(Mutex*);
  void (*lock_when)(Mutex*, const Condition&);
  void (*reader_lock_when)(Mutex*, const Condition&);
  bool (*lock_when_timeout)(Mutex*, const Condition&, Duration);
  bool (*lock_when_deadline)(Mutex*, const Condition&, Time);
  bool (*reader_lock_when_timeout)(Mutex*, const Condition&, Duration);
  bool (*reader_lock_when_deadline)(Mutex*, const Condition&, Time);
  void (*await)(Mutex*, const Condition&);
  bool (*await_timeout)(Mutex*, const Condition&, Duration);
  bool (*await_deadline)(Mutex*, const Condition&, Time);
  void (*destroy)(Mutex*);
  void (*cv_wait)(CondVar*, Mutex*);
  bool (*cv_wait_timeout)(CondVar*, Mutex*, Duration);
  bool (*cv_wait_deadline)(CondVar*, Mutex*, Time);
  void (*notify)(absl::Notification*);
  void (*wait_for_notification)(const absl::Notification*);
  bool (*wait_for_notification_timeout)(const absl::Notification*, Duration);
  bool (*wait_for_notification_deadline)(const absl::Notification*, Time);
  bool (*decrement_count)(absl::BlockingCounter*);
  void (*counter_wait)(absl::BlockingCounter*);
};

template <typename Fn>
void Set(Fn& fn, bool is_const, const char* rest) {
  fn = reinterpret_cast<Fn>(Lookup(is_const, rest));
}

const Real& R() {
  static const Real real = [] {
    Real r{};
    Set(r.lock, false, "5Mutex4LockEv");
    Set(r.unlock, false, "5Mutex6UnlockEv");
    Set(r.try_lock, false, "5Mutex7TryLockEv");
    Set(r.reader_lock, false, "5Mutex10ReaderLockEv");
    Set(r.reader_unlock, false, "5Mutex12ReaderUnlockEv");
    Set(r.reader_try_lock, false, "5Mutex13ReaderTryLockEv");
    Set(r.lock_when, false, "5Mutex8LockWhenERKNS0_9ConditionE");
    Set(r.reader_lock_when, false, "5Mutex14ReaderLockWhenERKNS0_9ConditionE");
    Set(r.lock_when_timeout, false, "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
    Set(r.lock_when_deadline, false, "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
    Set(r.reader_lock_when_timeout, false,
        "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
    Set(r.reader_lock_when_deadline, false,
        "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
    Set(r.await, false, "5Mutex5AwaitERKNS0_9ConditionE");
    Set(r.await_timeout, false, "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
    Set(r.await_deadline, false, "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
    Set(r.destroy, false, "5MutexD2Ev");
    Set(r.cv_wait, false, "7CondVar4WaitEPNS0_5MutexE");
    Set(r.cv_wait_timeout, false, "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
    Set(r.cv_wait_deadline, false, "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
    Set(r.notify, false, "12Notification6NotifyEv");
    Set(r.wait_for_notification, true, "12Notification19WaitForNotificationEv");
    Set(r.wait_for_notification_timeout, true,
        "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
    Set(r.wait_for_notification_deadline, true,
        "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
    Set(r.decrement_count, false, "15BlockingCounter14DecrementCountEv");
    Set(r.counter_wait, false, "15BlockingCounter4WaitEv");
    return r;
  }();
  return real;
}

// Private members, reached the one way C++ allows without changing abseil's
// headers: access checking does not apply to the template arguments of an
// explicit instantiation.
template <typename Tag, typename Tag::type kMember>
struct PrivateMember {
  friend typename Tag::type Get(Tag) { return kMember; }
};
struct NotifiedYet {
  using type = std::atomic<bool> absl::Notification::*;
  friend type Get(NotifiedYet);
};
template struct PrivateMember<NotifiedYet, &absl::Notification::notified_yet_>;
struct ReleasableMu {
  using type = Mutex* absl::ReleasableMutexLock::*;
  friend type Get(ReleasableMu);
};
template struct PrivateMember<ReleasableMu, &absl::ReleasableMutexLock::mu_>;

// The mutexes this thread holds in shared (reader) mode: a wait (Await,
// CondVar::Wait) releases and reacquires the mutex in the mode it is held in,
// and TSan must be told which. A fixed array: thread_local storage with a
// destructor could be gone when a thread's last unlock runs.
constexpr int kMaxReaderHeld = 64;
thread_local const Mutex* reader_held[kMaxReaderHeld];
thread_local int reader_held_count = 0;

void NoteReaderLocked(const Mutex* mu) {
  if (reader_held_count == kMaxReaderHeld) {
    std::fprintf(stderr, "packd tsan: a thread holds over %d reader locks\n", kMaxReaderHeld);
    std::abort();
  }
  reader_held[reader_held_count++] = mu;
}
void NoteReaderUnlocked(const Mutex* mu) {
  for (int i = reader_held_count - 1; i >= 0; --i) {
    if (reader_held[i] == mu) {
      reader_held[i] = reader_held[--reader_held_count];
      return;
    }
  }
}
unsigned HeldFlags(const Mutex* mu) {
  for (int i = 0; i < reader_held_count; ++i) {
    if (reader_held[i] == mu) return __tsan_mutex_read_lock;
  }
  return 0;
}

// The mutex operation this thread is inside of (between TSan's pre and post
// annotations), for the wrapped Conditions it may evaluate.
struct Op {
  const Mutex* mu;
  unsigned flags;
  bool locking;  // between pre_lock and post_lock; else pre_unlock and post_unlock
};
thread_local const Op* current_op = nullptr;

class OpScope {
 public:
  OpScope(const Mutex* mu, unsigned flags, bool locking)
      : op_{mu, flags, locking}, saved_(current_op) {
    current_op = &op_;
  }
  ~OpScope() { current_op = saved_; }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  Op op_;
  const Op* saved_;
};

// The object (Mutex, CondVar) whose library implementation this thread is
// running. The library calls some of its own exported functions through the
// PLT (AwaitWithTimeout calls AwaitWithDeadline, ...), which reach the
// definitions below again: such a call goes straight to the library, the outer
// call having made the annotations.
thread_local const void* in_library_for = nullptr;

class LibraryCall {
 public:
  explicit LibraryCall(const void* object) : saved_(in_library_for) { in_library_for = object; }
  ~LibraryCall() { in_library_for = saved_; }
  LibraryCall(const LibraryCall&) = delete;
  LibraryCall& operator=(const LibraryCall&) = delete;

 private:
  const void* saved_;
};

bool Reentered(const void* object) { return in_library_for == object; }

struct Wrapped {
  const Condition* inner;
  const Mutex* mu;
};

bool EvalWrapped(Wrapped* w) {
  void* mu = const_cast<Mutex*>(w->mu);
  const Op* op = current_op;
  if (op == nullptr || op->mu != w->mu) {
    // Not inside an annotated operation on this mutex (Await's first check,
    // made with the mutex held): nothing to pretend.
    return w->inner->Eval();
  }
  const unsigned flags = op->flags & __tsan_mutex_read_lock;
  bool result;
  if (op->locking) {
    // Pretend the lock has been taken, evaluate, then unlock and start
    // locking again to match the outer post_lock.
    __tsan_mutex_post_lock(mu, op->flags, 0);
    result = w->inner->Eval();
    __tsan_mutex_pre_unlock(mu, flags);
    __tsan_mutex_post_unlock(mu, flags);
    __tsan_mutex_pre_lock(mu, op->flags);
  } else {
    // Pretend the unlock has finished, lock, evaluate, then start unlocking
    // again to match the outer post_unlock.
    __tsan_mutex_post_unlock(mu, flags);
    __tsan_mutex_pre_lock(mu, flags);
    __tsan_mutex_post_lock(mu, flags, 0);
    result = w->inner->Eval();
    __tsan_mutex_pre_unlock(mu, flags);
  }
  return result;
}

// Locks `mu` in mode `flags` through `lock`, which takes the wrapped Condition.
template <typename LockFn>
auto AnnotatedLockWhen(Mutex* mu, unsigned flags, const Condition& cond, LockFn lock) {
  Wrapped w{&cond, mu};
  const Condition wrapped(&EvalWrapped, &w);
  __tsan_mutex_pre_lock(mu, flags);
  decltype(lock(wrapped)) result;
  {
    OpScope scope(mu, flags, /*locking=*/true);
    LibraryCall call(mu);
    result = lock(wrapped);
  }
  __tsan_mutex_post_lock(mu, flags, 0);
  if (flags & __tsan_mutex_read_lock) NoteReaderLocked(mu);
  return result;
}

// Releases `mu` (held by this thread, in whichever mode) around `wait`, which
// unlocks and relocks it inside the library (Await, CondVar::Wait on `object`).
template <typename WaitFn>
auto AnnotatedWait(const void* object, Mutex* mu, WaitFn wait) {
  const unsigned flags = HeldFlags(mu);
  __tsan_mutex_pre_unlock(mu, flags);
  decltype(wait()) result;
  {
    OpScope scope(mu, flags, /*locking=*/false);
    LibraryCall call(object);
    result = wait();
  }
  __tsan_mutex_post_unlock(mu, flags);
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
  return result;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  if (Reentered(this)) return R().lock(this);
  __tsan_mutex_pre_lock(this, 0);
  {
    OpScope scope(this, 0, true);
    LibraryCall call(this);
    R().lock(this);
  }
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() {
  if (Reentered(this)) return R().reader_lock(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  {
    OpScope scope(this, __tsan_mutex_read_lock, true);
    LibraryCall call(this);
    R().reader_lock(this);
  }
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  NoteReaderLocked(this);
}

bool Mutex::TryLock() {
  if (Reentered(this)) return R().try_lock(this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  bool locked;
  {
    LibraryCall call(this);
    locked = R().try_lock(this);
  }
  __tsan_mutex_post_lock(this, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
                         0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  if (Reentered(this)) return R().reader_try_lock(this);
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(this, flags);
  bool locked;
  {
    LibraryCall call(this);
    locked = R().reader_try_lock(this);
  }
  __tsan_mutex_post_lock(this, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  if (locked) NoteReaderLocked(this);
  return locked;
}

void Mutex::Unlock() {
  if (Reentered(this)) return R().unlock(this);
  __tsan_mutex_pre_unlock(this, 0);
  {
    OpScope scope(this, 0, false);
    LibraryCall call(this);
    R().unlock(this);
  }
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  if (Reentered(this)) return R().reader_unlock(this);
  NoteReaderUnlocked(this);
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  {
    OpScope scope(this, __tsan_mutex_read_lock, false);
    LibraryCall call(this);
    R().reader_unlock(this);
  }
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::LockWhen(const Condition& cond) {
  if (Reentered(this)) return R().lock_when(this, cond);
  AnnotatedLockWhen(this, 0, cond, [this](const Condition& c) {
    R().lock_when(this, c);
    return 0;
  });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  if (Reentered(this)) return R().reader_lock_when(this, cond);
  AnnotatedLockWhen(this, __tsan_mutex_read_lock, cond, [this](const Condition& c) {
    R().reader_lock_when(this, c);
    return 0;
  });
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  if (Reentered(this)) return R().lock_when_timeout(this, cond, timeout);
  return AnnotatedLockWhen(
      this, 0, cond, [&](const Condition& c) { return R().lock_when_timeout(this, c, timeout); });
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  if (Reentered(this)) return R().lock_when_deadline(this, cond, deadline);
  return AnnotatedLockWhen(
      this, 0, cond, [&](const Condition& c) { return R().lock_when_deadline(this, c, deadline); });
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  if (Reentered(this)) return R().reader_lock_when_timeout(this, cond, timeout);
  return AnnotatedLockWhen(this, __tsan_mutex_read_lock, cond, [&](const Condition& c) {
    return R().reader_lock_when_timeout(this, c, timeout);
  });
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  if (Reentered(this)) return R().reader_lock_when_deadline(this, cond, deadline);
  return AnnotatedLockWhen(this, __tsan_mutex_read_lock, cond, [&](const Condition& c) {
    return R().reader_lock_when_deadline(this, c, deadline);
  });
}

void Mutex::Await(const Condition& cond) {
  if (Reentered(this)) return R().await(this, cond);
  Wrapped w{&cond, this};
  const Condition wrapped(&EvalWrapped, &w);
  AnnotatedWait(this, this, [&] {
    R().await(this, wrapped);
    return 0;
  });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  if (Reentered(this)) return R().await_timeout(this, cond, timeout);
  Wrapped w{&cond, this};
  const Condition wrapped(&EvalWrapped, &w);
  return AnnotatedWait(this, this, [&] { return R().await_timeout(this, wrapped, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  if (Reentered(this)) return R().await_deadline(this, cond, deadline);
  Wrapped w{&cond, this};
  const Condition wrapped(&EvalWrapped, &w);
  return AnnotatedWait(this, this, [&] { return R().await_deadline(this, wrapped, deadline); });
}

Mutex::~Mutex() {
  __tsan_mutex_destroy(this, __tsan_mutex_not_static);
  R().destroy(this);
}

void CondVar::Wait(Mutex* mu) {
  if (Reentered(this)) return R().cv_wait(this, mu);
  AnnotatedWait(this, mu, [&] {
    R().cv_wait(this, mu);
    return 0;
  });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  if (Reentered(this)) return R().cv_wait_timeout(this, mu, timeout);
  return AnnotatedWait(this, mu, [&] { return R().cv_wait_timeout(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  if (Reentered(this)) return R().cv_wait_deadline(this, mu, deadline);
  return AnnotatedWait(this, mu, [&] { return R().cv_wait_deadline(this, mu, deadline); });
}

// The library sets notified_yet_ with a release store TSan does not see, and
// the inline HasBeenNotified() reads it with an (instrumented) acquire load:
// release on that address before the store, acquire on it after a wait. (The
// library's own calls to its internal Mutex reach the definitions above.)
void Notification::Notify() {
  __tsan_release(&(this->*Get(NotifiedYet{})));
  R().notify(this);
}

void Notification::WaitForNotification() const {
  R().wait_for_notification(this);
  __tsan_acquire(const_cast<std::atomic<bool>*>(&(this->*Get(NotifiedYet{}))));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  const bool notified = R().wait_for_notification_timeout(this, timeout);
  if (notified) __tsan_acquire(const_cast<std::atomic<bool>*>(&(this->*Get(NotifiedYet{}))));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  const bool notified = R().wait_for_notification_deadline(this, deadline);
  if (notified) __tsan_acquire(const_cast<std::atomic<bool>*>(&(this->*Get(NotifiedYet{}))));
  return notified;
}

// The count is an atomic decremented inside the library: every decrement
// releases, and Wait() acquires them all once it returns.
bool BlockingCounter::DecrementCount() {
  __tsan_release(this);
  return R().decrement_count(this);
}

void BlockingCounter::Wait() {
  R().counter_wait(this);
  __tsan_acquire(this);
}

// Inline in the header except Release(), reimplemented here so that it unlocks
// through the annotated Mutex::Unlock above whatever the library's binding.
void ReleasableMutexLock::Release() {
  Mutex*& mu = this->*Get(ReleasableMu{});
  mu->Unlock();
  mu = nullptr;
}

ABSL_NAMESPACE_END
}  // namespace absl
