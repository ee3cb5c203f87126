// The model fleet under concurrent fire (server/model_registry.h): many
// threads acquire models (waiting for loads, with deadlines and
// cancellations), run generations, unload and register models, and read the
// registry, all at once, on a device that holds two of four models and a
// host cache that holds one. Seeded (packd::testing::FreshSeed: set
// PACKD_TEST_SEED to replay), and run under ThreadSanitizer in CI
// (scripts/tsan.sh). It checks that no request is lost or hangs, no model is
// ever resident twice, and the memory accounting returns to zero.
#include <atomic>
#include <iostream>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/model_registry.h"
#include "tests/testing/testing.h"

namespace packd::server {
namespace {

std::filesystem::path Gguf() {
  return packd::testing::RequireSharedFile("models/stories260K/stories260K.gguf");
}

ModelSpec Spec(const std::string& name) {
  ModelSpec s;
  s.name = name;
  s.path = Gguf();
  s.device = "cpu";
  s.load = LoadPolicy::kOnDemand;
  s.engine.kv_cache_bytes = 1 << 20;
  s.engine.max_batch_tokens = 64;
  s.engine.max_running = 4;
  s.engine.threads = 1;
  s.instance.max_queued = 16;
  if (name == "brief") s.keep_alive = absl::Milliseconds(20);
  if (name == "pinned") s.pinned = true;
  // Two instances on one copy of the weights, stepped on two threads.
  if (name == "b") s.instances = 2;
  return s;
}

const std::vector<std::string>& Names() {
  static const auto* const kNames = new std::vector<std::string>{"a", "b", "brief", "pinned"};
  return *kNames;
}

// Watches the events: a model loaded while it is resident, or unloaded
// while it is not, is a violation.
class Residency {
 public:
  void On(const ModelEvent& e) {
    absl::MutexLock lock(&mu_);
    if (e.kind == ModelEvent::Kind::kLoaded) {
      ++loads_;
      if (++resident_[e.model] != 1) violations_.push_back("loaded twice: " + e.model);
    } else if (e.kind == ModelEvent::Kind::kUnloaded) {
      ++unloads_;
      if (--resident_[e.model] != 0) violations_.push_back("unloaded while absent: " + e.model);
    }
  }
  std::vector<std::string> violations() {
    absl::MutexLock lock(&mu_);
    return violations_;
  }
  int loads() {
    absl::MutexLock lock(&mu_);
    return loads_;
  }
  int unloads() {
    absl::MutexLock lock(&mu_);
    return unloads_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> resident_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);
  int loads_ ABSL_GUARDED_BY(mu_) = 0;
  int unloads_ ABSL_GUARDED_BY(mu_) = 0;
};

// What a thread saw, by status code.
struct Tally {
  std::map<absl::StatusCode, int> acquires;
  std::map<absl::StatusCode, int> generations;
  std::vector<std::string> problems;
};

// Runs one generation on a leased model; cancels it midway when `cancel`.
void Generate(ModelLease& lease, std::mt19937_64& rng, bool cancel, Tally& tally) {
  engine::GenerationRequest g;
  g.prompt = {1, static_cast<int32_t>(rng() % 500 + 2), static_cast<int32_t>(rng() % 500 + 2)};
  g.params.max_tokens = static_cast<int>(rng() % 6 + 1);
  ModelInstance& instance = lease->PickInstance(g.prompt, "", false);
  absl::StatusOr<std::shared_ptr<RequestHandle>> h = instance.Submit(std::move(g));
  if (!h.ok()) {  // draining (an admin unload) or a full queue
    ++tally.generations[h.status().code()];
    return;
  }
  if (cancel) instance.Cancel((*h)->id());
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  for (;;) {
    std::optional<RequestEvent> e = (*h)->Next(absl::Seconds(1));
    if (!e.has_value()) {
      if (absl::Now() > give_up) {
        tally.problems.push_back("a generation hung");
        return;
      }
      continue;
    }
    if (!e->final) continue;
    ++tally.generations[e->status.code()];
    return;
  }
}

void Worker(ModelRegistry& registry, uint64_t seed, int ops, Tally& tally) {
  std::mt19937_64 rng(seed);
  for (int op = 0; op < ops; ++op) {
    const std::string& name = Names()[rng() % Names().size()];
    const int dice = static_cast<int>(rng() % 100);
    if (dice < 88) {
      ModelRegistry::AcquireOptions o;
      o.deadline = absl::Now() + absl::Milliseconds(static_cast<int64_t>(rng() % 3000));
      const absl::Time cancel_at =
          rng() % 4 == 0 ? absl::Now() + absl::Milliseconds(static_cast<int64_t>(rng() % 20))
                         : absl::InfiniteFuture();
      o.cancelled = [cancel_at] { return absl::Now() >= cancel_at; };
      absl::StatusOr<ModelLease> lease = registry.Acquire(name, o);
      ++tally.acquires[lease.status().code()];
      if (!lease.ok()) continue;
      Generate(*lease, rng, rng() % 8 == 0, tally);
      if (rng() % 2 == 0) absl::SleepFor(absl::Microseconds(static_cast<int64_t>(rng() % 3000)));
    } else if (dice < 91) {
      // An admin unloads the model and serves it again: loaded at once, or
      // on demand (also when there is no room to load it now).
      absl::StatusOr<UnloadResult> r = registry.Unload(name, absl::Milliseconds(200));
      if (!r.ok()) continue;  // unknown just now, or draining already
      if (rng() % 2 == 0 && registry.Load(Spec(name), /*evict=*/true).ok()) continue;
      const absl::Status s = registry.Register(Spec(name));
      if (!s.ok()) tally.problems.push_back("re-registering " + name + ": " + s.ToString());
    } else {
      for (const ModelStatus& m : registry.List()) {
        if (m.state == ModelState::kReady && m.resident == nullptr) {
          tally.problems.push_back("a ready model without instances: " + m.spec.name);
        }
      }
      (void)registry.HostCache();
      (void)registry.Get(name);
    }
  }
}

TEST(FleetStressTest, LoadsUnloadsEvictionsAndRequestsRaceSafely) {
  const std::filesystem::path gguf = Gguf();
  ASSERT_FALSE(gguf.empty());
  const uint64_t seed = packd::testing::FreshSeed();
  uint64_t one = 0;
  {
    Placement probe;
    ASSERT_TRUE(probe.AddDevice({"cpu", DeviceKind::kCpu, 1ull << 40, 1ull << 40}).ok());
    ModelRegistry r(probe);
    ASSERT_TRUE(r.Register(Spec("a")).ok());
    one = r.Get("a")->facts->device_bytes();
  }
  Placement placement;
  // Room for three: the pinned one and two of the other three.
  ASSERT_TRUE(placement.AddDevice({"cpu", DeviceKind::kCpu, 1ull << 40, 3 * one + one / 2}).ok());
  Residency residency;
  FleetOptions options;
  options.host_cache_bytes = std::filesystem::file_size(gguf) * 3 / 2;
  options.idle_check = absl::Milliseconds(5);
  options.on_event = [&residency](const ModelEvent& e) { residency.On(e); };
  auto registry = std::make_unique<ModelRegistry>(placement, options);
  for (const std::string& name : Names()) ASSERT_TRUE(registry->Register(Spec(name)).ok());

  constexpr int kThreads = 8;
  const int ops =
      std::getenv("PACKD_STRESS_OPS") != nullptr ? std::atoi(std::getenv("PACKD_STRESS_OPS")) : 150;
  std::vector<Tally> tallies(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back(
        [&, t] { Worker(*registry, seed * 1000003 + static_cast<uint64_t>(t), ops, tallies[t]); });
  }
  for (std::thread& t : threads) t.join();

  std::map<absl::StatusCode, int> acquires, generations;
  for (const Tally& tally : tallies) {
    for (const std::string& p : tally.problems) ADD_FAILURE() << p;
    for (const auto& [code, n] : tally.acquires) acquires[code] += n;
    for (const auto& [code, n] : tally.generations) generations[code] += n;
  }
  for (const auto& [code, n] : acquires) {
    // What an Acquire may end with: a lease; the deadline, a full queue or
    // no room (RESOURCE_EXHAUSTED); a cancellation; an admin's unload
    // (NOT_FOUND once forgotten, UNAVAILABLE while it drains).
    EXPECT_THAT(code, ::testing::AnyOf(absl::StatusCode::kOk, absl::StatusCode::kResourceExhausted,
                                       absl::StatusCode::kCancelled, absl::StatusCode::kNotFound,
                                       absl::StatusCode::kUnavailable))
        << absl::StatusCodeToString(code) << " x" << n;
  }
  for (const auto& [code, n] : generations) {
    EXPECT_THAT(code, ::testing::AnyOf(absl::StatusCode::kOk, absl::StatusCode::kCancelled,
                                       absl::StatusCode::kUnavailable))
        << absl::StatusCodeToString(code) << " x" << n;
  }
  std::string summary = absl::StrCat("seed ", seed, ": ", residency.loads(), " loads;");
  for (const auto& [code, n] : acquires) {
    absl::StrAppend(&summary, " acquire ", absl::StatusCodeToString(code), " x", n, ";");
  }
  for (const auto& [code, n] : generations) {
    absl::StrAppend(&summary, " generate ", absl::StatusCodeToString(code), " x", n, ";");
  }
  std::cout << summary << "\n";
  EXPECT_GT(acquires[absl::StatusCode::kOk], 0);
  EXPECT_GT(generations[absl::StatusCode::kOk], 0);
  for (const std::string& v : residency.violations()) ADD_FAILURE() << v;
  EXPECT_GT(residency.loads(), Names().size()) << "the run evicted nothing";

  // Everything unloaded: every byte comes back.
  for (const std::string& name : Names()) (void)registry->Unload(name, absl::Seconds(5));
  EXPECT_TRUE(registry->List().empty());
  EXPECT_EQ(residency.loads(), residency.unloads());
  EXPECT_EQ(registry->HostCache().used_bytes, 0u);
  absl::StatusOr<DeviceInfo> device = placement.Snapshot("cpu");
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->used.total(), 0u);
  EXPECT_EQ(device->instances, 0);
  EXPECT_TRUE(placement.Models().empty());
  registry.reset();
}

}  // namespace
}  // namespace packd::server
