// The models a server serves and where each one is (DESIGN.md §6): resident
// on its device as a set of ModelInstances, placed against the device's
// memory budget (server/placement.h); in the host cache; or on disk. Loads,
// unloads, evictions and requests run at once from any thread.
//
// Lifecycle of one model (ModelState):
//
//     disk --load--> loading --> ready --evict/idle--> unloading --> host | disk
//     host --wake--> loading --> ready                               (host cache full: disk)
//     ready --UnloadModel--> draining --> (forgotten)
//
// - A model is registered at start (`load: at_start` ones are loaded then;
//   `on_demand` ones only have their files checked) or by LoadModel.
// - A request for a model that is not ready waits (Acquire) while one load
//   runs; the first waiter queues the load, later ones only wait. A waiter
//   counts against the model's queue limit (max_queued x instances), honours
//   its deadline and its client's cancellation, and gets the load's error if
//   it fails.
// - One loader thread runs every load and unload, one at a time. A load that
//   does not fit its device's budget evicts ready models of that device,
//   least recently used first, that are not pinned and have no request in
//   flight or waiting; if it still does not fit, it fails with
//   RESOURCE_EXHAUSTED naming the numbers and the models holding the memory.
// - An unloaded model's opened source (its mapped, verified weights as
//   stored) goes to the host cache when it fits there, evicting the cache's
//   least recently used; a wake reuses it: nothing is re-read or
//   re-verified. On a CPU device the host cache holds the file mapping:
//   its pages stay in the page cache unless the kernel reclaims them.
// - The loader also unloads ready models idle for longer than their
//   keep_alive (not pinned ones).
//
// Thread safety: every method may be called from any thread. A LoadedModel
// stays alive while any request holds it (ModelLease), also after unload.
#pragma once

#include <atomic>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/config.h"
#include "server/model_event.h"
#include "server/model_instance.h"
#include "server/placement.h"
#include "server/prefix_router.h"

namespace packd::server {

struct ModelSpec {
  std::string name;
  std::filesystem::path path;
  std::string device;
  int instances = 1;
  engine::EngineOptions engine;  // per instance
  InstanceOptions instance;      // per instance
  // Refuse the model unless its matrices use this codec ("" or "any": no check).
  std::string expected_codec;
  // A text prompt longer than this many bytes is refused before it is
  // tokenized; 0: the engine's derived limit (Engine::max_prompt_bytes).
  uint64_t max_prompt_bytes = 0;
  // Prefix caching (engine.prefix_caching turns it on): kPerTenant keeps
  // each tenant's cached blocks to that tenant's requests.
  PrefixCacheMode prefix_cache = PrefixCacheMode::kShared;
  // How it was registered (reported; Register vs Load decides what happens).
  LoadPolicy load = LoadPolicy::kAtStart;
  // Unloaded from the device after this long unused; zero: never.
  absl::Duration keep_alive = absl::ZeroDuration();
  // Never evicted, nor unloaded when idle.
  bool pinned = false;
};

// A configured model that failed to load (at start, with
// `on_model_load_failure: continue`).
struct FailedModel {
  std::string name;
  std::filesystem::path path;
  absl::Status status;
};

enum class ModelState { kDisk, kHost, kLoading, kReady, kUnloading, kDraining };
std::string_view ModelStateName(ModelState state);  // "disk", "host", "loading", ...

// What a model's files say, read once when it is registered.
struct ModelFacts {
  engine::ModelConfig config;
  std::string architecture;
  // "vlc", "tiled", "none", or "vlc+none" when tensors mix codecs.
  std::string codec;
  uint64_t stored_weight_bytes = 0;
  uint64_t original_weight_bytes = 0;
  // What a load reserves on the device.
  ReservationRequest reservation;
  uint64_t device_bytes() const;  // the reservation's total
};

// A model resident on its device: its instances.
class LoadedModel {
 public:
  ~LoadedModel();
  const ModelSpec& spec() const { return spec_; }
  const engine::ModelConfig& config() const { return instances_.front()->engine().config(); }
  const engine::Engine& engine() const { return instances_.front()->engine(); }
  const std::vector<std::unique_ptr<ModelInstance>>& instances() const { return instances_; }
  const ModelFacts& facts() const { return *facts_; }
  std::string architecture() const { return facts_->architecture; }
  const std::string& codec() const { return facts_->codec; }
  uint64_t stored_weight_bytes() const { return facts_->stored_weight_bytes; }
  uint64_t original_weight_bytes() const { return facts_->original_weight_bytes; }
  // The instance to serve `prompt`. With prefix caching (`prefix_cache`:
  // the model has it and the request uses it) and several instances: the
  // one that took the longest remembered prefix of the prompt in `salt`'s
  // namespace (server/prefix_router.h), unless it is full (max_batch
  // requests in flight) and another has fewer; else, and otherwise, the
  // instance with the fewest requests in flight. Remembers the choice.
  ModelInstance& PickInstance(std::span<const engine::TokenId> prompt, std::string_view salt,
                              bool prefix_cache) const;
  // The longest text prompt, in bytes, that is tokenized (ModelSpec).
  uint64_t max_prompt_bytes() const;
  int64_t running() const;
  int64_t waiting() const;
  int64_t in_flight() const;

 private:
  friend class ModelRegistry;
  ModelSpec spec_;
  std::shared_ptr<const ModelFacts> facts_;
  std::shared_ptr<const engine::ModelSource> source_;
  std::vector<std::unique_ptr<ModelInstance>> instances_;
  std::unique_ptr<PrefixRouter> router_;  // several instances with prefix caching
  ReservationId reservation_ = 0;         // 0 once released
};

struct UnloadResult {
  int64_t drained = 0;    // requests that finished during the drain
  int64_t cancelled = 0;  // requests still running at the timeout
};

// One model as of one moment (ListModels, GetServerInfo, metrics).
struct ModelStatus {
  ModelSpec spec;
  std::shared_ptr<const ModelFacts> facts;
  ModelState state = ModelState::kDisk;
  std::shared_ptr<LoadedModel> resident;        // set when kReady or kDraining
  absl::Time last_used = absl::InfinitePast();  // InfinitePast: never used
  uint64_t device_bytes = 0;                    // reserved on the device now
  uint64_t host_bytes = 0;                      // held in the host cache now
  int64_t waiting_for_load = 0;
  uint64_t loads_from_disk = 0;
  uint64_t loads_from_host = 0;
  uint64_t evictions = 0;
  uint64_t idle_unloads = 0;
  double last_load_seconds = 0;
};

struct HostCacheStatus {
  uint64_t budget_bytes = 0;
  uint64_t used_bytes = 0;
  std::vector<std::string> models;  // least recently used first
};

struct FleetOptions {
  // Host memory for unloaded models' stored weights; 0: none.
  uint64_t host_cache_bytes = 0;
  // Called for every transition (on the thread that made it, with no
  // registry lock held); may be empty. The registry logs them itself.
  std::function<void(const ModelEvent&)> on_event;
  // How often the loader looks for models idle past their keep_alive, at
  // most (it also wakes when the earliest one is due).
  absl::Duration idle_check = absl::Seconds(1);
};

class ModelRegistry;
struct ModelRegistryEntry;  // one registered model (model_registry.cc)

// A request's hold on a ready model: while any lease is held the model is
// neither evicted nor unloaded when idle. Move-only.
class ModelLease {
 public:
  ModelLease() = default;
  ModelLease(ModelLease&& other) noexcept;
  ModelLease& operator=(ModelLease&& other) noexcept;
  ModelLease(const ModelLease&) = delete;
  ModelLease& operator=(const ModelLease&) = delete;
  ~ModelLease();
  LoadedModel* operator->() const { return model_.get(); }
  LoadedModel& operator*() const { return *model_; }
  const std::shared_ptr<LoadedModel>& model() const { return model_; }
  // Ends the hold now (the destructor does it otherwise).
  void Release();

 private:
  friend class ModelRegistry;
  ModelRegistry* registry_ = nullptr;
  std::shared_ptr<ModelRegistryEntry> entry_;
  std::shared_ptr<LoadedModel> model_;
};

class ModelRegistry {
 public:
  ModelRegistry(Placement& placement, FleetOptions options = {});
  // Stops the loader and releases every reservation.
  ~ModelRegistry();

  // Checks `spec`'s files (opened without verifying checksums: architecture,
  // codec, sizes) and that it could fit its device alone, and registers it
  // on disk, unloaded: the first request loads it. AlreadyExists for a name
  // in use; the open's errors; ResourceExhausted when it needs more than the
  // device's whole budget. Nothing changes on any error.
  absl::Status Register(const ModelSpec& spec);
  // Registers and loads a model now (at start: `evict` false, a load that
  // does not fit fails; LoadModel: `evict` true, as for an on-demand load).
  // Returns when it is ready. AlreadyExists for a name in use; the
  // placement's errors (ResourceExhausted with the numbers) otherwise;
  // nothing is registered on any error.
  absl::StatusOr<std::shared_ptr<LoadedModel>> Load(const ModelSpec& spec, bool evict = false);
  // UnloadModel: stops admitting (requests get UNAVAILABLE), waits up to
  // `drain_timeout` for in-flight requests, cancels the rest, releases the
  // memory and forgets the model (in any state). NotFound for an unknown
  // name; FailedPrecondition while it is draining already.
  absl::StatusOr<UnloadResult> Unload(std::string_view name, absl::Duration drain_timeout);
  // Server shutdown: requests waiting for a load and queued requests end
  // with UNAVAILABLE at once (running ones go on); no load starts any more.
  void DrainAll();

  // What a request waits on while its model loads.
  struct AcquireOptions {
    // When the wait ends with ResourceExhausted; InfiniteFuture: never.
    absl::Time deadline = absl::InfiniteFuture();
    // Polled while waiting (every 50 ms at most): true ends the wait with
    // Cancelled.
    std::function<bool()> cancelled;
  };
  // The ready model `name`, loading it first if it is not (see the top of
  // this file). NotFound for an unknown name; Unavailable, with the error,
  // for a model that failed to load at start (RecordFailure), or one being
  // unloaded by an admin, or when the server is shutting down;
  // ResourceExhausted when too many requests already wait for its load, or
  // at the deadline; Cancelled; the load's error when it fails.
  absl::StatusOr<ModelLease> Acquire(std::string_view name, const AcquireOptions& options);

  // NotFound for an unknown name; Unavailable, with the error, for a model
  // that failed to load (RecordFailure) and was not loaded since.
  absl::StatusOr<ModelStatus> Get(std::string_view name) const;
  // Whether `name` is registered or recorded as failed: a name metrics may use.
  bool Knows(std::string_view name) const;
  // Every registered model, sorted by name.
  std::vector<ModelStatus> List() const;
  // The models resident now (ready or draining), sorted by name.
  std::vector<std::shared_ptr<LoadedModel>> Resident() const;
  HostCacheStatus HostCache() const;
  // Remembers a model that failed to load (until one of that name registers).
  void RecordFailure(FailedModel failed);
  // Sorted by name.
  std::vector<FailedModel> Failures() const;
  Placement& placement() { return placement_; }

 private:
  friend class ModelLease;
  using Entry = ModelRegistryEntry;
  using EntryPtr = std::shared_ptr<Entry>;

  // Opens `spec`'s source (verifying checksums when `verify`) and works out
  // its facts. `facts_only`: the source is only looked at (Register), so its
  // weight files are mapped even where a load reads them into memory
  // (engine::WeightsFileAccess).
  struct Opened {
    std::shared_ptr<const engine::ModelSource> source;
    std::shared_ptr<const ModelFacts> facts;
  };
  absl::StatusOr<Opened> Open(const ModelSpec& spec, bool verify, bool facts_only = false) const;
  // Adds a new entry in kDisk (AlreadyExists for a name in use).
  absl::StatusOr<EntryPtr> Add(const ModelSpec& spec, std::shared_ptr<const ModelFacts> facts);
  // Loads `e` onto its device (ops_mu_ held; it is kDisk or kHost), evicting
  // when `evict`. `requested`: a request asked for it (the loader's jobs):
  // skipped when no request waits any more, and deferred (kept for a retry
  // when a model becomes idle) when it would fit once the models in use are
  // idle.
  absl::StatusOr<std::shared_ptr<LoadedModel>> LoadEntry(const EntryPtr& e, bool evict,
                                                         bool requested = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);
  // Reserves `e`'s memory, evicting idle models of its device when `evict`.
  // When it does not fit, `later` says whether it would once the unpinned
  // models now in use are idle (then the load may wait for that).
  absl::StatusOr<ReservationId> ReserveEvicting(const EntryPtr& e,
                                                const ReservationRequest& request, bool evict,
                                                bool* later) ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);
  // Unloads a ready, unused model from its device to the host cache or disk
  // (ops_mu_ held). False when it is no longer ready and unused.
  bool UnloadEntry(const EntryPtr& e, std::string_view reason, std::string_view for_model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);
  // Whether `e` may be unloaded now: ready, unpinned, no lease, no waiter.
  static bool Idle(const Entry& e);
  // Puts `source` into the host cache for `e` (mu_ held), dropping the least
  // recently used to disk; false when it does not fit even alone. Dropped
  // sources are appended to `dropped` (to be freed without the lock).
  bool ToHostLocked(Entry& e, std::shared_ptr<const engine::ModelSource> source,
                    std::vector<ModelEvent>& events,
                    std::vector<std::shared_ptr<const engine::ModelSource>>& dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(const ModelEvent& event) const;
  void LoaderLoop();
  // Unloads models idle past their keep_alive; returns when the next is due.
  absl::Time UnloadIdle() ABSL_EXCLUSIVE_LOCKS_REQUIRED(ops_mu_);
  void EndLease(Entry& entry);
  ModelStatus StatusLocked(const Entry& e) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  Placement& placement_;
  const FleetOptions options_;
  // Held by whoever loads or unloads (the loader, Load, Unload's teardown);
  // taken before mu_, never while holding it.
  absl::Mutex ops_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, EntryPtr, std::less<>> models_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, FailedModel, std::less<>> failures_ ABSL_GUARDED_BY(mu_);
  // Models whose load a request asked for, in order.
  std::deque<EntryPtr> load_queue_ ABSL_GUARDED_BY(mu_);
  // Loads waiting for models in use to become idle; queued again when one
  // does (memory_freed_).
  std::deque<EntryPtr> deferred_ ABSL_GUARDED_BY(mu_);
  bool memory_freed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t host_used_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // DrainAll: no more loads
  bool exit_ ABSL_GUARDED_BY(mu_) = false;      // the destructor: the loader returns
  std::thread loader_;
};

}  // namespace packd::server
