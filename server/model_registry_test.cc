// The model fleet (server/model_registry.h): on-demand loads, LRU eviction,
// the host cache, keep_alive, waiters, and the memory accounting, on copies
// of stories260K (each name is a separate model).
#include "server/model_registry.h"

#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "engine/model_compressor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::server {
namespace {

using ::testing::HasSubstr;

std::filesystem::path Gguf() {
  return packd::testing::RequireSharedFile("models/stories260K/stories260K.gguf");
}

ModelSpec Spec(const std::string& name, const std::filesystem::path& path) {
  ModelSpec s;
  s.name = name;
  s.path = path;
  s.device = "cpu";
  s.load = LoadPolicy::kOnDemand;
  s.engine.kv_cache_bytes = 1 << 20;
  s.engine.max_batch_tokens = 64;
  s.engine.max_running = 4;
  s.engine.threads = 1;
  s.instance.max_queued = 4;
  return s;
}

// What one stories260K model with Spec()'s options reserves.
uint64_t ModelBytes() {
  Placement p;
  EXPECT_TRUE(p.AddDevice({"cpu", DeviceKind::kCpu, 1ull << 40, 1ull << 40}).ok());
  ModelRegistry r(p);
  EXPECT_TRUE(r.Register(Spec("probe", Gguf())).ok());
  absl::StatusOr<ModelStatus> s = r.Get("probe");
  EXPECT_TRUE(s.ok());
  return s.ok() ? s->facts->device_bytes() : 0;
}

// Records every event; `hold_load` (when set) blocks the loader at the start
// of a load of that model until `release` is notified.
struct Events {
  absl::Mutex mu;
  std::vector<ModelEvent> seen ABSL_GUARDED_BY(mu);
  std::string hold_load;
  absl::Notification release;
  absl::Notification held;

  void On(const ModelEvent& e) {
    if (e.kind == ModelEvent::Kind::kLoading && e.model == hold_load) {
      held.Notify();
      release.WaitForNotification();
    }
    absl::MutexLock lock(&mu);
    seen.push_back(e);
  }
  // Count(), once it reaches `n` or after a second: the registry reports an
  // event just after the change its waiters see.
  int CountAtLeast(int n, ModelEvent::Kind kind, std::string_view model) {
    for (int i = 0; i < 500 && Count(kind, model) < n; ++i) absl::SleepFor(absl::Milliseconds(2));
    return Count(kind, model);
  }
  int Count(ModelEvent::Kind kind, std::string_view model = "") {
    absl::MutexLock lock(&mu);
    int n = 0;
    for (const ModelEvent& e : seen) n += e.kind == kind && (model.empty() || e.model == model);
    return n;
  }
};

class ModelRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(Gguf().empty());
    bytes_ = ModelBytes();
    ASSERT_GT(bytes_, 0u);
  }
  // A cpu device that holds `models` models, and a host cache of
  // `host_models` models' stored weights.
  void Start(int models, double host_models, absl::Duration idle_check = absl::Seconds(1)) {
    ASSERT_TRUE(placement_
                    .AddDevice({"cpu", DeviceKind::kCpu, 1ull << 40,
                                bytes_ * static_cast<uint64_t>(models) + bytes_ / 2})
                    .ok());
    FleetOptions o;
    o.host_cache_bytes = static_cast<uint64_t>(host_models * StoredBytes());
    o.idle_check = idle_check;
    o.on_event = [this](const ModelEvent& e) { events_.On(e); };
    registry_ = std::make_unique<ModelRegistry>(placement_, std::move(o));
  }
  static double StoredBytes() { return static_cast<double>(std::filesystem::file_size(Gguf())); }
  ModelState State(const std::string& name) {
    absl::StatusOr<ModelStatus> s = registry_->Get(name);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->state : ModelState::kDraining;
  }
  ModelStatus Status(const std::string& name) {
    absl::StatusOr<ModelStatus> s = registry_->Get(name);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : ModelStatus();
  }
  absl::StatusOr<ModelLease> Acquire(const std::string& name,
                                     absl::Duration wait = absl::Seconds(30)) {
    ModelRegistry::AcquireOptions o;
    o.deadline = absl::Now() + wait;
    return registry_->Acquire(name, o);
  }
  // Uses `name` once: acquire, run one short generation, release.
  void Use(const std::string& name) {
    absl::StatusOr<ModelLease> lease = Acquire(name);
    ASSERT_TRUE(lease.ok()) << lease.status();
    engine::GenerationRequest g;
    g.prompt = {1, 403, 407};
    g.params.max_tokens = 3;
    absl::StatusOr<std::shared_ptr<RequestHandle>> h =
        (*lease)->PickInstance(g.prompt, "", false).Submit(std::move(g));
    ASSERT_TRUE(h.ok()) << h.status();
    for (;;) {
      std::optional<RequestEvent> e = (*h)->Next(absl::Seconds(10));
      ASSERT_TRUE(e.has_value());
      ASSERT_TRUE(e->status.ok()) << e->status;
      if (e->final) break;
    }
  }
  uint64_t DeviceUsed() {
    absl::StatusOr<DeviceInfo> d = placement_.Snapshot("cpu");
    return d.ok() ? d->used.total() : ~0ull;
  }

  uint64_t bytes_ = 0;
  Placement placement_;
  Events events_;
  std::unique_ptr<ModelRegistry> registry_;
};

TEST_F(ModelRegistryTest, AnOnDemandModelLoadsOnceForConcurrentFirstRequests) {
  Start(2, 0);
  ModelSpec spec = Spec("a", Gguf());
  spec.instance.max_queued = 8;  // room for every waiter
  ASSERT_TRUE(registry_->Register(spec).ok());
  EXPECT_EQ(State("a"), ModelState::kDisk);
  EXPECT_EQ(DeviceUsed(), 0u);  // registered, not loaded
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      absl::StatusOr<ModelLease> lease = Acquire("a");
      ok += lease.ok();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(State("a"), ModelState::kReady);
  EXPECT_EQ(Status("a").loads_from_disk, 1u);
  EXPECT_EQ(events_.CountAtLeast(1, ModelEvent::Kind::kLoaded, "a"), 1);
  EXPECT_EQ(DeviceUsed(), bytes_);
  Use("a");
}

TEST_F(ModelRegistryTest, ALoadThatDoesNotFitEvictsTheLeastRecentlyUsedIdleModel) {
  Start(2, 0);
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(registry_->Register(Spec(n, Gguf())).ok());
  Use("a");
  Use("b");
  Use("a");  // b is now the least recently used
  Use("c");
  EXPECT_EQ(State("a"), ModelState::kReady);
  EXPECT_EQ(State("b"), ModelState::kDisk);  // no host cache
  EXPECT_EQ(State("c"), ModelState::kReady);
  EXPECT_EQ(Status("b").evictions, 1u);
  EXPECT_EQ(DeviceUsed(), 2 * bytes_);
  {
    absl::MutexLock lock(&events_.mu);
    const auto it = std::find_if(events_.seen.begin(), events_.seen.end(), [](const ModelEvent& e) {
      return e.kind == ModelEvent::Kind::kUnloaded;
    });
    ASSERT_NE(it, events_.seen.end());
    EXPECT_EQ(it->model, "b");
    EXPECT_EQ(it->reason, "evicted");
    EXPECT_EQ(it->for_model, "c");
    EXPECT_EQ(it->to, "disk");
  }
  Use("b");  // loads again, evicting a (c was used later)
  EXPECT_EQ(State("a"), ModelState::kDisk);
  EXPECT_EQ(Status("b").loads_from_disk, 2u);
}

TEST_F(ModelRegistryTest, ALoadWaitsForModelsInUseAndNeverEvictsThemOrPinnedOnes) {
  Start(2, 0);
  ModelSpec pinned = Spec("p", Gguf());
  pinned.pinned = true;
  ASSERT_TRUE(registry_->Register(pinned).ok());
  ASSERT_TRUE(registry_->Register(Spec("a", Gguf())).ok());
  ASSERT_TRUE(registry_->Register(Spec("c", Gguf())).ok());
  Use("p");
  absl::StatusOr<ModelLease> held = Acquire("a");
  ASSERT_TRUE(held.ok());
  // c fits once a is idle: it waits for that, until its deadline.
  absl::StatusOr<ModelLease> c = Acquire("c", absl::Milliseconds(300));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("waited"));
  EXPECT_THAT(c.status().message(), HasSubstr("model 'c'"));
  EXPECT_THAT(c.status().message(), HasSubstr("budget"));
  EXPECT_THAT(c.status().message(), HasSubstr("'p'"));
  EXPECT_THAT(c.status().message(), HasSubstr("pinned"));
  EXPECT_THAT(c.status().message(), HasSubstr("'a'"));
  EXPECT_THAT(c.status().message(), HasSubstr("1 requests in flight"));
  EXPECT_EQ(State("a"), ModelState::kReady);
  EXPECT_EQ(State("p"), ModelState::kReady);
  EXPECT_EQ(State("c"), ModelState::kDisk);
  EXPECT_EQ(events_.Count(ModelEvent::Kind::kLoadFailed, "c"), 0);  // it waited, not failed
  // Another request waits; when a's request ends, c loads in its place.
  absl::StatusOr<ModelLease> waiter;
  std::thread t([&] { waiter = Acquire("c"); });
  for (int i = 0; i < 500 && Status("c").waiting_for_load == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(State("a"), ModelState::kReady);
  held->Release();
  t.join();
  ASSERT_TRUE(waiter.ok()) << waiter.status();
  EXPECT_EQ(State("a"), ModelState::kDisk);
  EXPECT_EQ(State("p"), ModelState::kReady);
}

TEST_F(ModelRegistryTest, ALoadThatCannotFitBesidePinnedModelsFailsAtOnce) {
  Start(2, 0);
  for (const char* n : {"p1", "p2"}) {
    ModelSpec pinned = Spec(n, Gguf());
    pinned.pinned = true;
    ASSERT_TRUE(registry_->Register(pinned).ok());
    Use(n);
  }
  ASSERT_TRUE(registry_->Register(Spec("c", Gguf())).ok());
  const absl::Time start = absl::Now();
  absl::StatusOr<ModelLease> c = Acquire("c");
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("no idle unpinned model to evict"));
  EXPECT_THAT(c.status().message(), HasSubstr("'p1'"));
  EXPECT_EQ(events_.CountAtLeast(1, ModelEvent::Kind::kLoadFailed, "c"), 1);
  EXPECT_EQ(State("p1"), ModelState::kReady);
  EXPECT_EQ(State("p2"), ModelState::kReady);
}

TEST_F(ModelRegistryTest, AWakeFromTheHostCacheReadsNothingFromDisk) {
  packd::testing::TempDir tmp;
  const auto dir = tmp.path() / "vlc";
  ASSERT_TRUE(engine::CompressModel(Gguf(), dir, {.codec = "vlc", .threads = 2}).ok());
  Start(1, 100);
  ASSERT_TRUE(registry_->Register(Spec("a", dir)).ok());
  ASSERT_TRUE(registry_->Register(Spec("b", Gguf())).ok());
  Use("a");
  Use("b");  // evicts a to the host cache
  EXPECT_EQ(State("a"), ModelState::kHost);
  EXPECT_GT(Status("a").host_bytes, 0u);
  EXPECT_EQ(registry_->HostCache().used_bytes, Status("a").host_bytes);
  // Its files are gone: only the host cache can wake it.
  std::filesystem::rename(dir, tmp.path() / "moved");
  Use("a");
  EXPECT_EQ(Status("a").loads_from_host, 1u);
  EXPECT_EQ(Status("a").loads_from_disk, 1u);
  EXPECT_EQ(State("b"), ModelState::kHost);
  EXPECT_EQ(registry_->HostCache().models, std::vector<std::string>{"b"});
  // Unloaded by an admin, a is forgotten; loaded again from a missing
  // directory, it fails naming it.
  ASSERT_TRUE(registry_->Unload("a", absl::Seconds(1)).ok());
  ModelSpec again = Spec("a", dir);
  absl::StatusOr<std::shared_ptr<LoadedModel>> reload = registry_->Load(again, true);
  ASSERT_FALSE(reload.ok());
  EXPECT_THAT(reload.status().message(), HasSubstr(dir.string()));
  EXPECT_FALSE(registry_->Knows("a"));
}

TEST_F(ModelRegistryTest, TheHostCacheDropsItsLeastRecentlyUsedToDisk) {
  Start(1, 1.5);
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(registry_->Register(Spec(n, Gguf())).ok());
  Use("a");
  Use("b");  // a -> host
  Use("c");  // b -> host, a dropped to disk
  EXPECT_EQ(State("a"), ModelState::kDisk);
  EXPECT_EQ(State("b"), ModelState::kHost);
  EXPECT_EQ(State("c"), ModelState::kReady);
  EXPECT_EQ(events_.CountAtLeast(1, ModelEvent::Kind::kHostDropped, "a"), 1);
  EXPECT_EQ(registry_->HostCache().used_bytes, Status("b").host_bytes);
}

TEST_F(ModelRegistryTest, KeepAliveUnloadsIdleModelsButNotPinnedOnes) {
  Start(3, 10, absl::Milliseconds(10));
  ModelSpec brief = Spec("brief", Gguf());
  brief.keep_alive = absl::Milliseconds(100);
  ModelSpec pinned = Spec("pinned", Gguf());
  pinned.keep_alive = absl::Milliseconds(100);
  pinned.pinned = true;
  ASSERT_TRUE(registry_->Register(brief).ok());
  ASSERT_TRUE(registry_->Register(pinned).ok());
  ASSERT_TRUE(registry_->Register(Spec("forever", Gguf())).ok());
  Use("brief");
  Use("pinned");
  Use("forever");
  {
    // Held: never unloaded, however long.
    absl::StatusOr<ModelLease> held = Acquire("brief");
    ASSERT_TRUE(held.ok());
    absl::SleepFor(absl::Milliseconds(300));
    EXPECT_EQ(State("brief"), ModelState::kReady);
  }
  for (int i = 0; i < 300 && State("brief") != ModelState::kHost; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(State("brief"), ModelState::kHost);
  EXPECT_EQ(Status("brief").idle_unloads, 1u);
  EXPECT_EQ(State("pinned"), ModelState::kReady);
  EXPECT_EQ(State("forever"), ModelState::kReady);
}

TEST_F(ModelRegistryTest, WaitersCountAgainstTheQueueAndHonourDeadlinesAndCancellation) {
  Start(2, 0);
  ModelSpec spec = Spec("slow", Gguf());
  spec.instance.max_queued = 2;  // x 1 instance: 2 waiters at most
  ASSERT_TRUE(registry_->Register(spec).ok());
  events_.hold_load = "slow";
  absl::StatusOr<ModelLease> first, second;
  std::thread t1([&] { first = Acquire("slow"); });
  events_.held.WaitForNotification();  // the load has started and is held
  EXPECT_EQ(State("slow"), ModelState::kLoading);
  std::atomic<bool> cancel{false};
  std::thread t2([&] {
    ModelRegistry::AcquireOptions o;
    o.cancelled = [&] { return cancel.load(); };
    second = registry_->Acquire("slow", o);
  });
  for (int i = 0; i < 500 && Status("slow").waiting_for_load < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(Status("slow").waiting_for_load, 2);
  // A third is refused at once: the queue is full.
  absl::StatusOr<ModelLease> third = Acquire("slow");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("2 requests already wait"));
  cancel = true;
  t2.join();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kCancelled);
  // A deadline that passes while it loads.
  absl::StatusOr<ModelLease> late = Acquire("slow", absl::Milliseconds(30));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(late.status().message(), HasSubstr("to load"));
  events_.release.Notify();
  t1.join();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(Status("slow").waiting_for_load, 0);
  EXPECT_EQ(Status("slow").loads_from_disk, 1u);
}

TEST_F(ModelRegistryTest, AFailedLoadReachesItsWaitersAndTheNextRequestRetries) {
  packd::testing::TempDir tmp;
  const auto file = tmp.path() / "m.gguf";
  std::filesystem::copy_file(Gguf(), file);
  Start(2, 0);
  ASSERT_TRUE(registry_->Register(Spec("m", file)).ok());
  std::filesystem::remove(file);
  absl::StatusOr<ModelLease> lease = Acquire("m");
  ASSERT_FALSE(lease.ok());
  EXPECT_THAT(lease.status().message(), HasSubstr("model 'm'"));
  EXPECT_THAT(lease.status().message(), HasSubstr(file.string()));
  EXPECT_EQ(State("m"), ModelState::kDisk);
  EXPECT_EQ(events_.CountAtLeast(1, ModelEvent::Kind::kLoadFailed, "m"), 1);
  std::filesystem::copy_file(Gguf(), file);
  Use("m");
  EXPECT_EQ(Status("m").loads_from_disk, 1u);
}

TEST_F(ModelRegistryTest, RegisterRefusesWhatCouldNeverFitAndNamesInUse) {
  Start(1, 0);
  ModelSpec huge = Spec("huge", Gguf());
  huge.engine.kv_cache_bytes = 64 << 20;
  const absl::Status s = registry_->Register(huge);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("could never load"));
  EXPECT_FALSE(registry_->Knows("huge"));
  ASSERT_TRUE(registry_->Register(Spec("a", Gguf())).ok());
  EXPECT_EQ(registry_->Register(Spec("a", Gguf())).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Acquire("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRegistryTest, TheInstancesOfAModelShareOneCopyOfItsWeights) {
  Start(4, 0);
  ModelSpec spec = Spec("multi", Gguf());
  spec.instances = 3;
  ASSERT_TRUE(registry_->Register(spec).ok());
  absl::StatusOr<ModelLease> lease = Acquire("multi");
  ASSERT_TRUE(lease.ok()) << lease.status();
  const auto& instances = (*lease)->instances();
  ASSERT_EQ(instances.size(), 3u);
  const std::shared_ptr<const engine::ModelWeights> first = instances[0]->engine().weights();
  ASSERT_NE(first, nullptr);
  for (const auto& i : instances) EXPECT_EQ(i->engine().weights().get(), first.get());
  // Only the loading instance's backend holds (and counts) the weights.
  const auto weight_bytes = [&](size_t i) {
    return instances[i]->engine().backend().memory_usage().of(engine::MemoryKind::kWeights);
  };
  EXPECT_GT(weight_bytes(0), 0u);
  EXPECT_EQ(weight_bytes(1), 0u);
  EXPECT_EQ(weight_bytes(2), 0u);
  // The weights are reserved once (not once per instance): three instances
  // cost one model's weights plus three instances' KV and workspace.
  const ModelFacts& f = *Status("multi").facts;
  EXPECT_EQ(f.reservation.instances, 3);
  EXPECT_EQ(DeviceUsed(), f.device_bytes());
  EXPECT_LT(f.device_bytes(), 3 * bytes_);
}

TEST_F(ModelRegistryTest, UnloadingEverythingReturnsTheMemoryAccountingToZero) {
  Start(2, 1.5);
  for (const char* n : {"a", "b", "c"}) ASSERT_TRUE(registry_->Register(Spec(n, Gguf())).ok());
  for (const char* n : {"a", "b", "c", "a"}) Use(n);
  EXPECT_EQ(DeviceUsed(), 2 * bytes_);
  for (const char* n : {"a", "b", "c"}) {
    absl::StatusOr<UnloadResult> r = registry_->Unload(n, absl::Seconds(1));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(DeviceUsed(), 0u);
  EXPECT_EQ(registry_->HostCache().used_bytes, 0u);
  EXPECT_TRUE(registry_->List().empty());
  EXPECT_TRUE(placement_.Models().empty());
}

}  // namespace
}  // namespace packd::server
