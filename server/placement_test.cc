// Placement: sharing of weights per (model, device), all-or-nothing refusal
// with the numbers in the message, exact release, density, concurrency, and
// the per-instance estimate against what the engine really allocates
// (stories260K).
#include "server/placement.h"

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "engine/engine.h"
#include "engine/model_compressor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace packd::server {
namespace {

using engine::MemoryKind;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

ReservationRequest Request(std::string model, std::string device, uint64_t weights,
                           uint64_t original, uint64_t kv, uint64_t workspace, int64_t instances) {
  ReservationRequest r;
  r.model = std::move(model);
  r.device = std::move(device);
  r.weight_bytes = weights;
  r.original_weight_bytes = original;
  r.kv_bytes_per_instance = kv;
  r.workspace_bytes_per_instance = workspace;
  r.instances = instances;
  return r;
}

// A CPU with 16 GiB of memory and an 8 GiB budget.
std::unique_ptr<Placement> CpuPlacement() {
  auto p = std::make_unique<Placement>();
  EXPECT_TRUE(p->AddDevice({.name = "cpu",
                            .kind = DeviceKind::kCpu,
                            .total_bytes = 16 * kGiB,
                            .budget_bytes = 8 * kGiB})
                  .ok());
  return p;
}

DeviceInfo Info(const Placement& p, std::string_view device) {
  absl::StatusOr<DeviceInfo> info = p.Snapshot(device);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? *info : DeviceInfo{};
}

// Every field of two snapshots (DeviceInfo has no operator==).
void ExpectSameInfo(const DeviceInfo& a, const DeviceInfo& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.total_bytes, b.total_bytes);
  EXPECT_EQ(a.budget_bytes, b.budget_bytes);
  for (int k = 0; k < engine::kMemoryKinds; ++k) EXPECT_EQ(a.used.bytes[k], b.used.bytes[k]) << k;
  EXPECT_EQ(a.models, b.models);
  EXPECT_EQ(a.instances, b.instances);
  EXPECT_EQ(a.original_weight_bytes, b.original_weight_bytes);
}

TEST(PlacementTest, AddDeviceResolvesAndChecksItsMemory) {
  Placement p;
  ASSERT_TRUE(p.AddDevice({.name = "cpu", .kind = DeviceKind::kCpu}).ok());
  const DeviceInfo cpu = Info(p, "cpu");
  EXPECT_EQ(cpu.total_bytes, PhysicalMemoryBytes());
  EXPECT_GT(cpu.total_bytes, 0u);
  EXPECT_EQ(cpu.budget_bytes, cpu.total_bytes);  // budget 0: all of it
  EXPECT_EQ(cpu.used.total(), 0u);
  EXPECT_EQ(cpu.density(), 1.0);

  EXPECT_EQ(p.AddDevice({.name = "cpu", .kind = DeviceKind::kCpu, .total_bytes = kGiB}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(p.AddDevice({.name = "", .kind = DeviceKind::kCpu}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.AddDevice({.name = "cuda:0", .kind = DeviceKind::kCuda}).code(),
            absl::StatusCode::kInvalidArgument);  // a GPU must say how much memory it has
  const absl::Status over = p.AddDevice(
      {.name = "cuda:0", .kind = DeviceKind::kCuda, .total_bytes = kGiB, .budget_bytes = 2 * kGiB});
  EXPECT_EQ(over.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(over.message(), HasSubstr("budget 2 GiB (2147483648 bytes) exceeds its memory"));
  ASSERT_TRUE(p.AddDevice({.name = "cuda:0",
                           .kind = DeviceKind::kCuda,
                           .total_bytes = 141 * kGiB,
                           .budget_bytes = 130 * kGiB})
                  .ok());
  const std::vector<DeviceInfo> all = p.Devices();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "cpu");  // in the order added
  EXPECT_EQ(all[1].name, "cuda:0");
  EXPECT_EQ(all[1].kind, DeviceKind::kCuda);
  EXPECT_EQ(all[1].budget_bytes, 130 * kGiB);
  EXPECT_EQ(p.Snapshot("cuda:1").status().code(), absl::StatusCode::kNotFound);
}

TEST(PlacementTest, SeveralModelsAndInstancesPerDevice) {
  auto p = CpuPlacement();
  auto a = p->Reserve(Request("a", "cpu", 3 * kGiB, 4 * kGiB, kGiB, 12 * kMiB, 2));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = p->Reserve(Request("b", "cpu", 500 * kMiB, 500 * kMiB, 256 * kMiB, 4 * kMiB, 1));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(*a, *b);

  const DeviceInfo cpu = Info(*p, "cpu");
  EXPECT_EQ(cpu.used.of(MemoryKind::kWeights), 3 * kGiB + 500 * kMiB);
  EXPECT_EQ(cpu.used.of(MemoryKind::kKvCache), 2 * kGiB + 256 * kMiB);
  EXPECT_EQ(cpu.used.of(MemoryKind::kWorkspace), 24 * kMiB + 4 * kMiB);
  EXPECT_EQ(cpu.models, 2);
  EXPECT_EQ(cpu.instances, 3);
  EXPECT_EQ(cpu.original_weight_bytes, 4 * kGiB + 500 * kMiB);
  EXPECT_EQ(cpu.free_bytes(), 8 * kGiB - cpu.used.total());

  const std::vector<ModelPlacement> models = p->Models();
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0].model, "a");
  EXPECT_EQ(models[0].device, "cpu");
  EXPECT_EQ(models[0].instances, 2);
  EXPECT_EQ(models[0].weight_bytes, 3 * kGiB);
  EXPECT_EQ(models[0].kv_bytes, 2 * kGiB);
  EXPECT_EQ(models[0].workspace_bytes, 24 * kMiB);
  EXPECT_DOUBLE_EQ(models[0].compression_ratio(), 4.0 / 3.0);
  EXPECT_EQ(models[1].model, "b");
  EXPECT_EQ(models[1].instances, 1);
  EXPECT_DOUBLE_EQ(models[1].compression_ratio(), 1.0);
}

TEST(PlacementTest, InstancesOfOneModelOnOneDeviceShareItsWeights) {
  auto p = CpuPlacement();
  ASSERT_TRUE(
      p->AddDevice({.name = "cpu2", .kind = DeviceKind::kCpu, .total_bytes = 8 * kGiB}).ok());
  auto first = p->Reserve(Request("m", "cpu", 2 * kGiB, 3 * kGiB, 256 * kMiB, 8 * kMiB, 1));
  auto second = p->Reserve(Request("m", "cpu", 2 * kGiB, 3 * kGiB, 256 * kMiB, 8 * kMiB, 2));
  ASSERT_TRUE(first.ok() && second.ok());
  DeviceInfo cpu = Info(*p, "cpu");
  EXPECT_EQ(cpu.used.of(MemoryKind::kWeights), 2 * kGiB);  // once, not three times
  EXPECT_EQ(cpu.used.of(MemoryKind::kKvCache), 3 * 256 * kMiB);
  EXPECT_EQ(cpu.used.of(MemoryKind::kWorkspace), 3 * 8 * kMiB);
  EXPECT_EQ(cpu.models, 1);
  EXPECT_EQ(cpu.instances, 3);
  EXPECT_EQ(cpu.original_weight_bytes, 3 * kGiB);

  // The same model on another device holds its own copy there.
  auto elsewhere = p->Reserve(Request("m", "cpu2", 2 * kGiB, 3 * kGiB, 256 * kMiB, 8 * kMiB, 1));
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_EQ(Info(*p, "cpu2").used.of(MemoryKind::kWeights), 2 * kGiB);
  EXPECT_EQ(Info(*p, "cpu").used.of(MemoryKind::kWeights), 2 * kGiB);
  ASSERT_EQ(p->Models().size(), 2u);

  // Different weights under a placed name: a different model, refused.
  auto other = p->Reserve(Request("m", "cpu", kGiB, 3 * kGiB, 256 * kMiB, 8 * kMiB, 1));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other.status().message(), HasSubstr("a different model under the same name"));
  ExpectSameInfo(Info(*p, "cpu"), cpu);
}

TEST(PlacementTest, ReleaseFreesExactlyWhatWasReservedWeightsWithTheLastInstance) {
  auto p = CpuPlacement();
  auto r1 = p->Reserve(Request("m", "cpu", 2 * kGiB, 2 * kGiB, 256 * kMiB, 8 * kMiB, 2));
  auto r2 = p->Reserve(Request("m", "cpu", 2 * kGiB, 2 * kGiB, 128 * kMiB, 4 * kMiB, 1));
  auto r3 = p->Reserve(Request("n", "cpu", kGiB, kGiB, 64 * kMiB, 2 * kMiB, 1));
  ASSERT_TRUE(r1.ok() && r2.ok() && r3.ok());

  // The first reservation goes; the model keeps its weights for r2's instance.
  ASSERT_TRUE(p->Release(*r1).ok());
  DeviceInfo cpu = Info(*p, "cpu");
  EXPECT_EQ(cpu.used.of(MemoryKind::kWeights), 3 * kGiB);
  EXPECT_EQ(cpu.used.of(MemoryKind::kKvCache), 128 * kMiB + 64 * kMiB);
  EXPECT_EQ(cpu.used.of(MemoryKind::kWorkspace), 4 * kMiB + 2 * kMiB);
  EXPECT_EQ(cpu.instances, 2);
  EXPECT_EQ(cpu.models, 2);
  EXPECT_EQ(p->Release(*r1).code(), absl::StatusCode::kNotFound);  // released once only
  EXPECT_EQ(p->Release(12345).code(), absl::StatusCode::kNotFound);
  ExpectSameInfo(Info(*p, "cpu"), cpu);

  // Its last instance takes the weights with it.
  ASSERT_TRUE(p->Release(*r2).ok());
  cpu = Info(*p, "cpu");
  EXPECT_EQ(cpu.used.of(MemoryKind::kWeights), kGiB);
  EXPECT_EQ(cpu.used.of(MemoryKind::kKvCache), 64 * kMiB);
  EXPECT_EQ(cpu.models, 1);
  ASSERT_EQ(p->Models().size(), 1u);
  EXPECT_EQ(p->Models()[0].model, "n");

  ASSERT_TRUE(p->Release(*r3).ok());
  cpu = Info(*p, "cpu");
  EXPECT_EQ(cpu.used.total(), 0u);
  EXPECT_EQ(cpu.instances, 0);
  EXPECT_EQ(cpu.models, 0);
  EXPECT_EQ(cpu.original_weight_bytes, 0u);
  EXPECT_TRUE(p->Models().empty());

  // Reloading after a full unload reserves the weights again, and the ids
  // are fresh.
  auto again = p->Reserve(Request("m", "cpu", 2 * kGiB, 2 * kGiB, 256 * kMiB, 8 * kMiB, 1));
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *r1);
  EXPECT_EQ(Info(*p, "cpu").used.of(MemoryKind::kWeights), 2 * kGiB);
}

TEST(PlacementTest, ALoadThatDoesNotFitIsRefusedWithItsNumbersAndChangesNothing) {
  auto p = CpuPlacement();
  ASSERT_TRUE(p->Reserve(Request("a", "cpu", 3 * kGiB, 4 * kGiB, kGiB, 12 * kMiB, 2)).ok());
  const DeviceInfo before = Info(*p, "cpu");
  ASSERT_EQ(before.free_bytes(), 3048 * kMiB);

  // 2.5 GiB + 2 x 268 MiB = 3096 MiB > 3048 MiB free.
  auto x = p->Reserve(Request("x", "cpu", 2560 * kMiB, 4 * kGiB, 256 * kMiB, 12 * kMiB, 2));
  EXPECT_EQ(x.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(std::string(x.status().message()),
            "cannot place model 'x' (2 instances) on device 'cpu': needs weights 2.5 GiB + 2 x "
            "(KV 256 MiB + workspace 12 MiB) = 3.02 GiB (3246391296 bytes), but only 2.98 GiB "
            "(3196059648 bytes) of the 8 GiB budget is free (weights 3 GiB, kv_cache 2 GiB, "
            "workspace 24 MiB in use)");
  ExpectSameInfo(Info(*p, "cpu"), before);
  ASSERT_EQ(p->Models().size(), 1u);

  // More instances of a placed model: only their KV and workspace count.
  auto more = p->Reserve(Request("a", "cpu", 3 * kGiB, 4 * kGiB, kGiB, 12 * kMiB, 3));
  EXPECT_EQ(more.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(std::string(more.status().message()),
            "cannot place model 'a' (3 instances) on device 'cpu': needs 3 x (KV 1 GiB + "
            "workspace 12 MiB) = 3.04 GiB (3258974208 bytes); its weights, 3 GiB, are already on "
            "the device, but only 2.98 GiB (3196059648 bytes) of the 8 GiB budget is free "
            "(weights 3 GiB, kv_cache 2 GiB, workspace 24 MiB in use)");
  ExpectSameInfo(Info(*p, "cpu"), before);
  const std::vector<ModelPlacement> models = p->Models();
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0].instances, 2);
  EXPECT_EQ(models[0].kv_bytes, 2 * kGiB);

  // Two of them fit, exactly up to the budget's last byte.
  ASSERT_TRUE(p->Reserve(Request("a", "cpu", 3 * kGiB, 4 * kGiB, kGiB, 12 * kMiB, 2)).ok());
  ASSERT_TRUE(p->Reserve(Request("tiny", "cpu", 976 * kMiB, 976 * kMiB, 0, 0, 1)).ok());
  EXPECT_EQ(Info(*p, "cpu").free_bytes(), 0u);
  auto byte = p->Reserve(Request("one_byte", "cpu", 1, 1, 0, 0, 1));
  EXPECT_EQ(byte.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(byte.status().message(), HasSubstr("needs weights 1 B + 1 x (KV 0 B + workspace 0 B) "
                                                 "= 1 B (1 bytes), but only 0 B (0 bytes)"));
}

TEST(PlacementTest, DecodeScratchIsReservedPerInstanceAndCountsAgainstDensity) {
  auto p = CpuPlacement();
  ReservationRequest r = Request("llama", "cpu", 1 * kGiB, 2 * kGiB, 100 * kMiB, 10 * kMiB, 2);
  r.decode_scratch_bytes_per_instance = 256 * kMiB;
  absl::StatusOr<ReservationId> id = p->Reserve(r);
  ASSERT_TRUE(id.ok()) << id.status();
  DeviceInfo d = Info(*p, "cpu");
  EXPECT_EQ(d.used.of(MemoryKind::kDecodeScratch), 2 * 256 * kMiB);
  EXPECT_EQ(d.used.total(), 1 * kGiB + 2 * (100 + 10 + 256) * kMiB);
  // Uncompressed weights would need no scratch: it is in the denominator only.
  EXPECT_EQ(d.uncompressed_bytes(), 2 * kGiB + 2 * (100 + 10) * kMiB);
  EXPECT_DOUBLE_EQ(d.density(), static_cast<double>(d.uncompressed_bytes()) /
                                    static_cast<double>(d.used.total()));
  EXPECT_EQ(p->Models()[0].decode_scratch_bytes, 2 * 256 * kMiB);

  // Counted when refusing: 8 GiB budget, 1.73 GiB used, 20 x 366 MiB asked.
  ReservationRequest big = r;
  big.model = "other";
  big.instances = 20;
  absl::StatusOr<ReservationId> refused = p->Reserve(big);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("decode scratch 256 MiB"));

  ASSERT_TRUE(p->Release(*id).ok());
  EXPECT_EQ(Info(*p, "cpu").used.total(), 0u);
}

TEST(PlacementTest, BadRequestsAreRefused) {
  auto p = CpuPlacement();
  auto no_device = p->Reserve(Request("m", "cuda:0", 1, 1, 1, 1, 1));
  EXPECT_EQ(no_device.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(no_device.status().message(), HasSubstr("no device 'cuda:0'"));
  EXPECT_EQ(p->Reserve(Request("", "cpu", 1, 1, 1, 1, 1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->Reserve(Request("m", "cpu", 1, 1, 1, 1, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p->Reserve(Request("m", "cpu", 1, 1, 1, 1, -2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Sizes whose sum does not fit in 64 bits never wrap around into "fits".
  auto huge = p->Reserve(Request("m", "cpu", 1, 1, UINT64_MAX / 2, UINT64_MAX / 2, 3));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(huge.status().message(), HasSubstr("more than 2^64 bytes"));
  EXPECT_EQ(Info(*p, "cpu").used.total(), 0u);
  EXPECT_TRUE(p->Models().empty());
}

TEST(PlacementTest, DensityIsUncompressedMemoryOverMemoryUsed) {
  Placement p;
  ASSERT_TRUE(p.AddDevice({.name = "cuda:0",
                           .kind = DeviceKind::kCuda,
                           .total_bytes = 141'000'000'000,
                           .budget_bytes = 130'000'000'000})
                  .ok());
  // Uncompressed: exactly 1, however many instances and whatever the KV.
  auto raw = p.Reserve(
      Request("raw", "cuda:0", 16'000'000'000, 16'000'000'000, 2'000'000'000, 100'000'000, 2));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(Info(p, "cuda:0").density(), 1.0);
  ASSERT_TRUE(p.Release(*raw).ok());

  // An 8B-class model, 16 GB in bf16, 11 GB compressed; 3 instances, each
  // with a 2 GB KV pool and 100 MB of workspace, sharing the weights.
  auto packed = p.Reserve(
      Request("packed", "cuda:0", 11'000'000'000, 16'000'000'000, 2'000'000'000, 100'000'000, 3));
  ASSERT_TRUE(packed.ok());
  DeviceInfo gpu = Info(p, "cuda:0");
  EXPECT_EQ(gpu.used.total(), 11'000'000'000ull + 3 * 2'100'000'000ull);
  EXPECT_EQ(gpu.uncompressed_bytes(), 16'000'000'000ull + 3 * 2'100'000'000ull);
  EXPECT_DOUBLE_EQ(gpu.density(), 22.3e9 / 17.3e9);
  ASSERT_EQ(p.Models().size(), 1u);
  EXPECT_DOUBLE_EQ(p.Models()[0].compression_ratio(), 16.0 / 11.0);

  // Mixed with an uncompressed model: both sums grow by the same bytes.
  ASSERT_TRUE(
      p.Reserve(Request("raw", "cuda:0", 4'000'000'000, 4'000'000'000, 1'000'000'000, 0, 1)).ok());
  gpu = Info(p, "cuda:0");
  EXPECT_DOUBLE_EQ(gpu.density(), 27.3e9 / 22.3e9);
  EXPECT_EQ(gpu.models, 2);
  EXPECT_EQ(gpu.instances, 4);
}

// Threads reserve and release at random on two devices while another reads;
// afterwards the totals equal the sum of what is still held, and go to zero
// when that is released.
TEST(PlacementTest, ConcurrentReserveAndReleaseKeepTotalsConsistent) {
  Placement p;
  const std::vector<std::string> devices = {"d0", "d1"};
  for (const std::string& d : devices) {
    ASSERT_TRUE(p.AddDevice({.name = d, .kind = DeviceKind::kCpu, .total_bytes = 4000}).ok());
  }
  struct Model {
    std::string name;
    uint64_t weights, original, kv, workspace;
  };
  const std::vector<Model> models = {
      {"m0", 500, 700, 100, 10}, {"m1", 300, 300, 50, 5}, {"m2", 800, 1200, 200, 20}};
  constexpr int kThreads = 4;
  constexpr int kIterations = 2000;
  std::vector<std::vector<std::pair<ReservationId, ReservationRequest>>> held(kThreads);
  std::atomic<bool> done{false};
  std::atomic<int> refused{0};

  std::thread reader([&] {
    while (!done.load()) {
      for (const DeviceInfo& d : p.Devices()) {
        EXPECT_LE(d.used.total(), d.budget_bytes);
        EXPECT_GE(d.density(), 1.0);
        EXPECT_GE(d.instances, d.models);
      }
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      auto& mine = held[t];
      for (int i = 0; i < kIterations; ++i) {
        if (!mine.empty() && rng() % 2 == 0) {
          const size_t k = rng() % mine.size();
          EXPECT_TRUE(p.Release(mine[k].first).ok());
          mine.erase(mine.begin() + k);
          continue;
        }
        const Model& m = models[rng() % models.size()];
        const ReservationRequest r =
            Request(m.name, devices[rng() % devices.size()], m.weights, m.original, m.kv,
                    m.workspace, 1 + static_cast<int64_t>(rng() % 3));
        absl::StatusOr<ReservationId> id = p.Reserve(r);
        if (id.ok()) {
          mine.emplace_back(*id, r);
        } else {
          EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted) << id.status();
          refused.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  done.store(true);
  reader.join();
  EXPECT_GT(refused.load(), 0);  // the budgets were tight enough to say no sometimes

  std::map<std::string, DeviceInfo> want;
  std::set<std::pair<std::string, std::string>> placed;
  std::set<ReservationId> ids;
  for (const auto& mine : held) {
    for (const auto& [id, r] : mine) {
      EXPECT_TRUE(ids.insert(id).second) << "id " << id << " issued twice";
      DeviceInfo& d = want[r.device];
      if (placed.insert({r.model, r.device}).second) {
        d.used.bytes[static_cast<int>(MemoryKind::kWeights)] += r.weight_bytes;
        d.original_weight_bytes += r.original_weight_bytes;
        ++d.models;
      }
      d.used.bytes[static_cast<int>(MemoryKind::kKvCache)] += r.kv_bytes_per_instance * r.instances;
      d.used.bytes[static_cast<int>(MemoryKind::kWorkspace)] +=
          r.workspace_bytes_per_instance * r.instances;
      d.instances += r.instances;
    }
  }
  for (const std::string& name : devices) {
    SCOPED_TRACE(name);
    DeviceInfo expected = want[name];
    expected.name = name;
    expected.total_bytes = expected.budget_bytes = 4000;
    ExpectSameInfo(Info(p, name), expected);
  }
  for (const auto& mine : held) {
    for (const auto& [id, r] : mine) EXPECT_TRUE(p.Release(id).ok());
  }
  for (const DeviceInfo& d : p.Devices()) {
    EXPECT_EQ(d.used.total(), 0u);
    EXPECT_EQ(d.instances, 0);
    EXPECT_EQ(d.models, 0);
  }
  EXPECT_TRUE(p.Models().empty());
}

TEST(PlacementTest, EstimateRefusesWhatTheEngineWouldRefuse) {
  engine::ModelConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_layers = 5;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 8;
  c.vocab_size = 512;
  engine::EngineOptions o;
  ASSERT_TRUE(EstimateInstanceBytes(c, o).ok());
  o.kv_block_size = 0;
  EXPECT_EQ(EstimateInstanceBytes(c, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.max_running = 0;
  EXPECT_EQ(EstimateInstanceBytes(c, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.kv_cache_bytes = 16 * 4 * 8 * 4 * 2 * 5 - 1;  // one byte short of one block
  EXPECT_EQ(EstimateInstanceBytes(c, o).status().code(), absl::StatusCode::kResourceExhausted);
  o.kv_cache_bytes += 1;
  auto one_block = EstimateInstanceBytes(c, o);
  ASSERT_TRUE(one_block.ok());
  EXPECT_EQ(one_block->kv_bytes, o.kv_cache_bytes);
}

// The estimate equals, byte for byte, what the engine allocates, over a few
// option sets; and a reservation made from the engine's own numbers matches
// the backend's accounting exactly.
TEST(PlacementTest, EstimateMatchesWhatTheEngineAllocates) {
  const std::filesystem::path gguf =
      testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  struct Case {
    uint64_t kv_cache_bytes;
    int32_t block_size;
    int64_t max_batch_tokens, max_running;
  };
  for (const Case& k :
       {Case{1 << 20, 16, 64, 8}, Case{3'000'001, 7, 33, 5}, Case{256ull << 20, 16, 256, 32}}) {
    SCOPED_TRACE(k.kv_cache_bytes);
    engine::EngineOptions o;
    o.threads = 1;
    o.kv_cache_bytes = k.kv_cache_bytes;
    o.kv_block_size = k.block_size;
    o.max_batch_tokens = k.max_batch_tokens;
    o.max_running = k.max_running;
    absl::StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::Open(gguf, o);
    ASSERT_TRUE(e.ok()) << e.status();
    absl::StatusOr<InstanceBytes> estimate = EstimateInstanceBytes((*e)->config(), o);
    ASSERT_TRUE(estimate.ok()) << estimate.status();
    const engine::MemoryUsage actual = (*e)->backend().memory_usage();
    EXPECT_EQ(estimate->kv_bytes, actual.of(MemoryKind::kKvCache));
    EXPECT_EQ(estimate->kv_bytes, (*e)->kv_cache().bytes());
    EXPECT_EQ(estimate->workspace_bytes, actual.of(MemoryKind::kWorkspace));

    Placement p;
    ASSERT_TRUE(p.AddDevice({.name = "cpu", .kind = DeviceKind::kCpu, .budget_bytes = kGiB}).ok());
    const engine::Transformer& t = (*e)->transformer();
    auto id = p.Reserve(Request("stories260K", "cpu", t.weight_bytes(), t.original_weight_bytes(),
                                estimate->kv_bytes, estimate->workspace_bytes, 1));
    ASSERT_TRUE(id.ok()) << id.status();
    const DeviceInfo cpu = Info(p, "cpu");
    for (int kind = 0; kind < engine::kMemoryKinds; ++kind) {
      EXPECT_EQ(cpu.used.bytes[kind], actual.bytes[kind]) << kind;
    }
    EXPECT_EQ(cpu.density(), 1.0);  // F32 tensors, held as they are stored
  }
}

// stories260K compressed (vlc): density from the engine's own numbers is
// above 1 and is exactly (original weights + KV + workspace) / used.
TEST(PlacementTest, CompressedModelHasDensityAboveOne) {
  const std::filesystem::path gguf =
      testing::RequireSharedFile("models/stories260K/stories260K.gguf");
  ASSERT_FALSE(gguf.empty());
  testing::TempDir tmp;
  const std::filesystem::path dir = tmp.path() / "vlc";
  ASSERT_TRUE(engine::CompressModel(gguf, dir, {.codec = "vlc", .threads = 1}).ok());
  engine::EngineOptions o;
  o.threads = 1;
  o.kv_cache_bytes = 1 << 20;
  absl::StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::Open(dir, o);
  ASSERT_TRUE(e.ok()) << e.status();
  const engine::Transformer& t = (*e)->transformer();
  ASSERT_LT(t.weight_bytes(), t.original_weight_bytes());
  absl::StatusOr<InstanceBytes> estimate = EstimateInstanceBytes((*e)->config(), o);
  ASSERT_TRUE(estimate.ok());

  Placement p;
  ASSERT_TRUE(p.AddDevice({.name = "cpu", .kind = DeviceKind::kCpu, .budget_bytes = kGiB}).ok());
  ASSERT_TRUE(p.Reserve(Request("s", "cpu", t.weight_bytes(), t.original_weight_bytes(),
                                estimate->kv_bytes, estimate->workspace_bytes, 2))
                  .ok());
  const DeviceInfo cpu = Info(p, "cpu");
  const uint64_t per_instance = estimate->kv_bytes + estimate->workspace_bytes;
  EXPECT_EQ(cpu.used.total(), t.weight_bytes() + 2 * per_instance);
  EXPECT_DOUBLE_EQ(cpu.density(),
                   static_cast<double>(t.original_weight_bytes() + 2 * per_instance) /
                       static_cast<double>(t.weight_bytes() + 2 * per_instance));
  EXPECT_GT(cpu.density(), 1.0);
  EXPECT_GT(p.Models()[0].compression_ratio(), 1.0);
}

}  // namespace
}  // namespace packd::server
