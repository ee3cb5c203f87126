#include "server/model_registry.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "engine/cuda/cuda_memory_estimate.h"
#include "engine/model_source.h"
#include "server/request_log.h"

namespace packd::server {

std::string_view ModelStateName(ModelState state) {
  switch (state) {
    case ModelState::kDisk:
      return "disk";
    case ModelState::kHost:
      return "host";
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "ready";
    case ModelState::kUnloading:
      return "unloading";
    case ModelState::kDraining:
      return "draining";
  }
  return "?";
}

namespace {

// What `r` reserves on a device where its model has no instance yet.
uint64_t ReservedBytes(const ReservationRequest& r) {
  const uint64_t n = static_cast<uint64_t>(r.instances);
  return r.weight_bytes + n * (r.kv_bytes_per_instance + r.workspace_bytes_per_instance +
                               r.decode_scratch_bytes_per_instance);
}

}  // namespace

uint64_t ModelFacts::device_bytes() const { return ReservedBytes(reservation); }

LoadedModel::~LoadedModel() = default;

ModelInstance& LoadedModel::PickInstance(std::span<const engine::TokenId> prompt,
                                         std::string_view salt, bool prefix_cache) const {
  int best = 0;
  for (size_t i = 1; i < instances_.size(); ++i) {
    if (instances_[i]->in_flight() < instances_[best]->in_flight()) best = static_cast<int>(i);
  }
  if (router_ == nullptr || !prefix_cache) return *instances_[best];
  const PrefixRouter::Prefixes prefixes = router_->PrefixesOf(prompt, salt);
  const int home = router_->Lookup(prefixes);
  if (home >= 0 && (instances_[home]->in_flight() < spec_.engine.max_running ||
                    instances_[home]->in_flight() <= instances_[best]->in_flight())) {
    best = home;
  }
  router_->Record(prefixes, best);
  return *instances_[best];
}

uint64_t LoadedModel::max_prompt_bytes() const {
  return spec_.max_prompt_bytes != 0 ? spec_.max_prompt_bytes : engine().max_prompt_bytes();
}

int64_t LoadedModel::running() const {
  int64_t n = 0;
  for (const auto& i : instances_) n += i->stats().running;
  return n;
}

int64_t LoadedModel::waiting() const {
  int64_t n = 0;
  for (const auto& i : instances_) n += i->stats().waiting;
  return n;
}

int64_t LoadedModel::in_flight() const {
  int64_t n = 0;
  for (const auto& i : instances_) n += i->in_flight();
  return n;
}

// One registered model. Guarded by the registry's mu_.
struct ModelRegistryEntry {
  ModelSpec spec;
  std::shared_ptr<const ModelFacts> facts;
  ModelState state = ModelState::kDisk;
  std::shared_ptr<LoadedModel> resident;            // kReady, kDraining
  std::shared_ptr<const engine::ModelSource> host;  // kHost: in the host cache
  // kDisk, a deferred load: its source as opened (and verified) for it.
  std::shared_ptr<const engine::ModelSource> opened;
  std::string waiting_for;    // a deferred load: why it does not fit now
  bool deferred = false;      // in deferred_
  int64_t leases = 0;         // requests holding it
  int64_t waiting = 0;        // requests waiting for its load
  bool load_queued = false;   // in the loader's queue
  bool removed = false;       // unloaded by an admin: forgotten
  uint64_t failed_loads = 0;  // waiters see a failure as a change of this
  absl::Status last_error;    // of the latest failed load
  absl::Time last_used = absl::InfinitePast();
  uint64_t loads_from_disk = 0;
  uint64_t loads_from_host = 0;
  uint64_t evictions = 0;
  uint64_t idle_unloads = 0;
  double last_load_seconds = 0;
};

namespace {

std::string Gb(uint64_t bytes) {
  return absl::StrFormat("%.2f GB", static_cast<double>(bytes) / 1e9);
}

// The status with "model 'NAME': " in front, unless it is there already.
absl::Status Named(std::string_view name, const absl::Status& s) {
  const std::string prefix = absl::StrCat("model '", std::string(name), "': ");
  if (absl::StartsWith(s.message(), prefix)) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

}  // namespace

ModelLease::ModelLease(ModelLease&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)),
      entry_(std::move(other.entry_)),
      model_(std::move(other.model_)) {}

ModelLease& ModelLease::operator=(ModelLease&& other) noexcept {
  if (this != &other) {
    Release();
    registry_ = std::exchange(other.registry_, nullptr);
    entry_ = std::move(other.entry_);
    model_ = std::move(other.model_);
  }
  return *this;
}

ModelLease::~ModelLease() { Release(); }

void ModelLease::Release() {
  if (registry_ != nullptr && entry_ != nullptr) registry_->EndLease(*entry_);
  registry_ = nullptr;
  entry_.reset();
  model_.reset();
}

ModelRegistry::ModelRegistry(Placement& placement, FleetOptions options)
    : placement_(placement), options_(std::move(options)) {
  loader_ = std::thread([this] { LoaderLoop(); });
}

ModelRegistry::~ModelRegistry() {
  {
    absl::MutexLock lock(&mu_);
    exit_ = true;
    stopping_ = true;
  }
  loader_.join();
  absl::MutexLock lock(&mu_);
  for (auto& [name, e] : models_) {
    if (e->resident != nullptr && e->resident->reservation_ != 0) {
      (void)placement_.Release(e->resident->reservation_);
      e->resident->reservation_ = 0;
    }
  }
}

void ModelRegistry::Emit(const ModelEvent& event) const {
  LogModelEvent(event);
  if (options_.on_event) options_.on_event(event);
}

absl::StatusOr<ModelRegistry::Opened> ModelRegistry::Open(const ModelSpec& spec, bool verify,
                                                          bool facts_only) const {
  if (spec.instances < 1) return absl::InvalidArgumentError("instances must be >= 1");
  engine::ModelSourceOptions so;
  so.verify_checksums = verify;
  so.weights = facts_only ? FileAccess::kMapped : engine::WeightsFileAccess(spec.engine);
  ASSIGN_OR_RETURN(std::unique_ptr<engine::ModelSource> source,
                   engine::ModelSource::Open(spec.path, so));
  auto facts = std::make_shared<ModelFacts>();
  facts->config = source->config();
  facts->architecture = std::string(engine::ArchitectureName(source->config().arch));
  facts->stored_weight_bytes = source->stored_bytes();
  facts->original_weight_bytes = source->original_bytes();
  const std::set<std::string> codecs = source->codecs();
  facts->codec = absl::StrJoin(codecs, "+");
  if (!spec.expected_codec.empty() && spec.expected_codec != "any" &&
      codecs.count(spec.expected_codec) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the config expects codec '", spec.expected_codec, "' but its weights use ", facts->codec));
  }
  // What it needs: weights as stored, once per device (the instances share
  // them), and per instance KV + workspace.
  ASSIGN_OR_RETURN(const InstanceBytes per_instance,
                   EstimateInstanceBytes(source->config(), spec.engine));
  ASSIGN_OR_RETURN(const DeviceInfo device, placement_.Snapshot(spec.device));
  ReservationRequest& r = facts->reservation;
  r.model = spec.name;
  r.device = spec.device;
  r.weight_bytes = facts->stored_weight_bytes;
  r.original_weight_bytes = facts->original_weight_bytes;
  r.kv_bytes_per_instance = per_instance.kv_bytes;
  r.workspace_bytes_per_instance = per_instance.workspace_bytes;
  r.instances = spec.instances;
  if (device.kind == DeviceKind::kCuda) {
    // A CUDA backend holds the weights in its own layout, with its own
    // workspace and decode scratch (engine/cuda/CUDA_BACKEND.md); the
    // instances share one copy of the weights (WeightCopy::kShares for all
    // but the first), and each has its own workspace and scratch.
    const engine::MemoryUsage own = engine::EstimateCudaBackendBytes(
        engine::CudaBackendOptionsFor(spec.engine, /*device=*/0), *source);
    r.weight_bytes = own.of(engine::MemoryKind::kWeights);
    r.workspace_bytes_per_instance += own.of(engine::MemoryKind::kWorkspace);
    r.decode_scratch_bytes_per_instance = own.of(engine::MemoryKind::kDecodeScratch);
  }
  return Opened{std::shared_ptr<const engine::ModelSource>(std::move(source)), std::move(facts)};
}

absl::StatusOr<ModelRegistry::EntryPtr> ModelRegistry::Add(
    const ModelSpec& spec, std::shared_ptr<const ModelFacts> facts) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (models_.count(spec.name) != 0) {
    return absl::AlreadyExistsError(absl::StrCat("a model named '", spec.name, "' is loaded"));
  }
  auto e = std::make_shared<Entry>();
  e->spec = spec;
  e->facts = std::move(facts);
  models_.emplace(spec.name, e);
  failures_.erase(spec.name);
  return e;
}

absl::Status ModelRegistry::Register(const ModelSpec& spec) {
  absl::StatusOr<Opened> opened = Open(spec, /*verify=*/false, /*facts_only=*/true);
  if (!opened.ok()) return Named(spec.name, opened.status());
  ASSIGN_OR_RETURN(const DeviceInfo device, placement_.Snapshot(spec.device));
  const uint64_t need = opened->facts->device_bytes();
  if (need > device.budget_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("model '", spec.name, "' needs ", need, " bytes (", Gb(need), ") on device '",
                     spec.device, "', more than its whole budget of ", device.budget_bytes,
                     " bytes (", Gb(device.budget_bytes), "): it could never load"));
  }
  return Add(spec, opened->facts).status();
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::Load(const ModelSpec& spec,
                                                                 bool evict) {
  const absl::Time start = absl::Now();
  // A failure before the load proper (LoadEntry reports its own).
  auto fail = [&](const absl::Status& status) {
    const absl::Status s = Named(spec.name, status);
    ModelEvent event;
    event.kind = ModelEvent::Kind::kLoadFailed;
    event.model = spec.name;
    event.device = spec.device;
    event.from = "disk";
    event.status = s;
    event.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    Emit(event);
    return s;
  };
  absl::StatusOr<Opened> opened = Open(spec, spec.engine.verify_checksums);
  if (!opened.ok()) return fail(opened.status());
  absl::MutexLock ops(&ops_mu_);
  absl::StatusOr<EntryPtr> added = Add(spec, opened->facts);
  if (!added.ok()) return fail(added.status());
  const EntryPtr e = *added;
  {
    // Loaded from the source just opened (its checksums verified).
    absl::MutexLock lock(&mu_);
    e->opened = opened->source;
  }
  absl::StatusOr<std::shared_ptr<LoadedModel>> m = LoadEntry(e, evict);
  if (!m.ok()) {
    absl::MutexLock lock(&mu_);
    e->removed = true;
    models_.erase(spec.name);
  }
  return m;
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::LoadEntry(const EntryPtr& e, bool evict,
                                                                      bool requested) {
  std::shared_ptr<const engine::ModelSource> source;
  std::shared_ptr<const ModelFacts> facts;
  bool from_host = false;
  {
    absl::MutexLock lock(&mu_);
    if (e->state == ModelState::kReady) return e->resident;
    if (e->removed || (e->state != ModelState::kDisk && e->state != ModelState::kHost)) {
      return absl::FailedPreconditionError(
          absl::StrCat("model '", e->spec.name, "' is ", std::string(ModelStateName(e->state))));
    }
    if (requested && e->waiting == 0) {
      // Its requests left (cancelled, or their deadline passed): no load.
      e->opened.reset();
      return absl::CancelledError(absl::StrCat("model '", e->spec.name, "': no request waits"));
    }
    from_host = e->state == ModelState::kHost;
    source = std::move(from_host ? e->host : e->opened);
    if (from_host) host_used_ -= source->stored_bytes();
    facts = e->facts;
    e->state = ModelState::kLoading;
  }
  const absl::Time start = absl::Now();
  ModelEvent event;
  event.model = e->spec.name;
  event.device = e->spec.device;
  event.from = from_host ? "host" : "disk";
  event.kind = ModelEvent::Kind::kLoading;
  Emit(event);
  auto fail = [&](const absl::Status& status) {
    const absl::Status s = Named(e->spec.name, status);
    std::vector<ModelEvent> events;
    std::vector<std::shared_ptr<const engine::ModelSource>> dropped;
    {
      absl::MutexLock lock(&mu_);
      e->state = ModelState::kDisk;
      if (from_host && source != nullptr && ToHostLocked(*e, source, events, dropped)) {
        e->state = ModelState::kHost;
      }
      ++e->failed_loads;
      e->last_error = s;
      e->waiting_for.clear();
    }
    source.reset();
    dropped.clear();
    event.kind = ModelEvent::Kind::kLoadFailed;
    event.status = s;
    event.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    Emit(event);
    for (const ModelEvent& d : events) Emit(d);
    return s;
  };
  if (source == nullptr) {
    // From disk: opened and verified again (the files may have changed
    // since they were checked).
    absl::StatusOr<Opened> opened = Open(e->spec, e->spec.engine.verify_checksums);
    if (!opened.ok()) return fail(opened.status());
    source = std::move(opened->source);
    facts = std::move(opened->facts);
  }
  bool later = false;
  absl::StatusOr<ReservationId> id = ReserveEvicting(e, facts->reservation, evict, &later);
  if (!id.ok() && later && requested) {
    // It fits once models now in use are idle: its requests go on waiting
    // (until their deadline), and the load is tried again when one is.
    std::vector<ModelEvent> events;
    std::vector<std::shared_ptr<const engine::ModelSource>> dropped;
    {
      absl::MutexLock lock(&mu_);
      e->state = ModelState::kDisk;
      if (from_host && ToHostLocked(*e, source, events, dropped)) {
        e->state = ModelState::kHost;
      } else if (!from_host) {
        e->opened = std::move(source);  // opened and verified: kept for the retry
      }
      e->facts = facts;
      e->waiting_for = std::string(id.status().message());
      if (!e->deferred) deferred_.push_back(e);
      e->deferred = true;
    }
    source.reset();
    dropped.clear();
    for (const ModelEvent& d : events) Emit(d);
    return id.status();
  }
  if (!id.ok()) return fail(id.status());
  auto m = std::make_shared<LoadedModel>();
  m->spec_ = e->spec;
  m->facts_ = facts;
  m->source_ = source;
  m->reservation_ = *id;
  for (int i = 0; i < e->spec.instances; ++i) {
    absl::StatusOr<std::unique_ptr<ModelInstance>> inst =
        ModelInstance::Start(source, e->spec.engine, e->spec.instance,
                             // One copy of the weights per device: the
                             // first instance loads them, the others share.
                             i == 0 ? nullptr : m->instances_[0]->engine().weights());
    if (!inst.ok()) {
      (void)placement_.Release(m->reservation_);
      m->reservation_ = 0;
      m.reset();
      return fail(inst.status());
    }
    m->instances_.push_back(std::move(*inst));
  }
  if (e->spec.instances > 1 && e->spec.engine.prefix_caching) {
    m->router_ = std::make_unique<PrefixRouter>(e->spec.engine.kv_block_size);
  }
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    e->facts = facts;
    e->resident = m;
    e->state = ModelState::kReady;
    e->waiting_for.clear();
    e->last_used = now;  // keep_alive counts from here until a request comes
    ++(from_host ? e->loads_from_host : e->loads_from_disk);
    e->last_load_seconds = absl::ToDoubleSeconds(now - start);
  }
  event.kind = ModelEvent::Kind::kLoaded;
  event.seconds = absl::ToDoubleSeconds(now - start);
  event.bytes = facts->device_bytes();
  Emit(event);
  return m;
}

bool ModelRegistry::Idle(const Entry& e) {
  return e.state == ModelState::kReady && !e.spec.pinned && e.leases == 0 && e.waiting == 0;
}

absl::StatusOr<ReservationId> ModelRegistry::ReserveEvicting(const EntryPtr& e,
                                                             const ReservationRequest& request,
                                                             bool evict, bool* later) {
  *later = false;
  for (;;) {
    absl::StatusOr<ReservationId> id = placement_.Reserve(request);
    if (id.ok() || id.status().code() != absl::StatusCode::kResourceExhausted) return id;
    EntryPtr victim;
    std::vector<std::string> holders;
    uint64_t evictable = 0;
    uint64_t busy = 0;  // unpinned models that will be evictable once their requests end
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [name, other] : models_) {
        if (other == e || other->spec.device != request.device || other->resident == nullptr) {
          continue;
        }
        if (evict && Idle(*other)) {
          evictable += other->facts->device_bytes();
          if (victim == nullptr || other->last_used < victim->last_used) victim = other;
        } else if (!other->spec.pinned) {
          busy += other->facts->device_bytes();
        }
        std::string why;
        if (other->spec.pinned) {
          why = "pinned";
        } else if (other->state != ModelState::kReady) {
          why = std::string(ModelStateName(other->state));
        } else if (other->leases > 0) {
          why = absl::StrCat(other->leases, " requests in flight");
        } else if (other->waiting > 0) {
          why = absl::StrCat(other->waiting, " requests waiting");
        } else {
          why = "idle";
        }
        holders.push_back(
            absl::StrCat("'", name, "' ", Gb(other->facts->device_bytes()), " (", why, ")"));
      }
    }
    absl::StatusOr<DeviceInfo> device = placement_.Snapshot(request.device);
    if (!device.ok()) return device.status();
    const bool could_fit = device->free_bytes() + evictable >= ReservedBytes(request);
    // Evict only when evicting every idle model would make it fit: a load
    // that cannot fit now changes nothing.
    if (victim != nullptr && !could_fit) victim = nullptr;
    if (victim == nullptr) {
      *later = evict && device->free_bytes() + evictable + busy >= ReservedBytes(request);
      return absl::ResourceExhaustedError(absl::StrCat(
          id.status().message(), evict ? "; no idle unpinned model to evict" : "",
          holders.empty() ? "" : absl::StrCat("; held by ", absl::StrJoin(holders, ", "))));
    }
    (void)UnloadEntry(victim, "evicted", e->spec.name);
  }
}

bool ModelRegistry::ToHostLocked(Entry& e, std::shared_ptr<const engine::ModelSource> source,
                                 std::vector<ModelEvent>& events,
                                 std::vector<std::shared_ptr<const engine::ModelSource>>& dropped) {
  const uint64_t bytes = source->stored_bytes();
  const uint64_t budget = options_.host_cache_bytes;
  if (bytes > budget) {
    dropped.push_back(std::move(source));
    return false;
  }
  while (host_used_ + bytes > budget) {
    Entry* lru = nullptr;
    for (const auto& [name, other] : models_) {
      if (other->state == ModelState::kHost && other->host != nullptr &&
          (lru == nullptr || other->last_used < lru->last_used)) {
        lru = other.get();
      }
    }
    if (lru == nullptr) break;  // cannot happen: host_used_ counts only kHost entries
    ModelEvent d;
    d.kind = ModelEvent::Kind::kHostDropped;
    d.model = lru->spec.name;
    d.device = lru->spec.device;
    d.bytes = lru->host->stored_bytes();
    events.push_back(std::move(d));
    host_used_ -= lru->host->stored_bytes();
    dropped.push_back(std::move(lru->host));
    lru->host.reset();
    lru->state = ModelState::kDisk;
  }
  host_used_ += bytes;
  e.host = std::move(source);
  return true;
}

bool ModelRegistry::UnloadEntry(const EntryPtr& e, std::string_view reason,
                                std::string_view for_model) {
  std::shared_ptr<LoadedModel> m;
  absl::Time last_used;
  {
    absl::MutexLock lock(&mu_);
    if (!Idle(*e)) return false;
    e->state = ModelState::kUnloading;
    m = e->resident;
    last_used = e->last_used;
  }
  // No lease and no waiter: nothing runs on it. Its instances stop when the
  // last reference goes (now, unless a status snapshot still holds it).
  std::shared_ptr<const engine::ModelSource> source = m->source_;
  const uint64_t device_bytes = m->facts_->device_bytes();
  (void)placement_.Release(m->reservation_);
  m->reservation_ = 0;
  std::vector<ModelEvent> events;
  std::vector<std::shared_ptr<const engine::ModelSource>> dropped;
  bool to_host = false;
  {
    absl::MutexLock lock(&mu_);
    e->resident.reset();
    ++(reason == "idle" ? e->idle_unloads : e->evictions);
    to_host = ToHostLocked(*e, std::move(source), events, dropped);
    e->state = to_host ? ModelState::kHost : ModelState::kDisk;
  }
  m.reset();
  dropped.clear();
  ModelEvent event;
  event.kind = ModelEvent::Kind::kUnloaded;
  event.model = e->spec.name;
  event.device = e->spec.device;
  event.reason = reason;
  event.to = to_host ? "host" : "disk";
  event.seconds = absl::ToDoubleSeconds(absl::Now() - last_used);
  event.bytes = device_bytes;
  event.for_model = std::string(for_model);
  Emit(event);
  for (const ModelEvent& d : events) Emit(d);
  return true;
}

absl::Time ModelRegistry::UnloadIdle() {
  const absl::Time now = absl::Now();
  absl::Time next = now + options_.idle_check;
  std::vector<EntryPtr> due;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, e] : models_) {
      if (e->spec.keep_alive <= absl::ZeroDuration() || !Idle(*e)) continue;
      const absl::Time at = e->last_used + e->spec.keep_alive;
      if (at <= now) {
        due.push_back(e);
      } else {
        next = std::min(next, at);
      }
    }
  }
  for (const EntryPtr& e : due) (void)UnloadEntry(e, "idle", "");
  return next;
}

void ModelRegistry::LoaderLoop() {
  absl::Time next_idle = absl::Now();
  for (;;) {
    EntryPtr job;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return exit_ ||
               (!stopping_ && (!load_queue_.empty() || (memory_freed_ && !deferred_.empty())));
      };
      mu_.AwaitWithDeadline(absl::Condition(&work), next_idle);
      if (exit_) return;
      if (memory_freed_) {
        // A model became idle: the deferred loads try again, in order.
        memory_freed_ = false;
        for (EntryPtr& d : deferred_) {
          d->deferred = false;
          if (!d->load_queued) {
            d->load_queued = true;
            load_queue_.push_back(std::move(d));
          }
        }
        deferred_.clear();
      }
      if (!stopping_ && !load_queue_.empty()) {
        job = std::move(load_queue_.front());
        load_queue_.pop_front();
        job->load_queued = false;
      }
    }
    absl::MutexLock ops(&ops_mu_);
    // A failure reaches the waiters through the entry.
    if (job != nullptr) (void)LoadEntry(job, /*evict=*/true, /*requested=*/true);
    if (absl::Now() >= next_idle) next_idle = UnloadIdle();
  }
}

absl::StatusOr<ModelLease> ModelRegistry::Acquire(std::string_view name,
                                                  const AcquireOptions& options) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    if (auto f = failures_.find(name); f != failures_.end()) {
      return absl::UnavailableError(absl::StrCat(
          "model '", std::string(name), "' failed to load at start: ", f->second.status.message()));
    }
    return absl::NotFoundError(absl::StrCat("no model named '", std::string(name), "' is loaded"));
  }
  const EntryPtr e = it->second;
  const uint64_t failures_seen = e->failed_loads;
  bool counted = false;  // in e->waiting
  const absl::Time waited_from = absl::Now();
  auto leave = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (counted) --e->waiting;
    counted = false;
  };
  for (;;) {
    if (stopping_) {
      leave();
      return absl::UnavailableError("the server is shutting down (retry on another replica)");
    }
    if (e->removed || e->state == ModelState::kDraining) {
      leave();
      return absl::UnavailableError(absl::StrCat("model '", e->spec.name, "' is being unloaded"));
    }
    if (e->state == ModelState::kReady) {
      leave();
      ++e->leases;
      e->last_used = absl::Now();
      ModelLease lease;
      lease.registry_ = this;
      lease.entry_ = e;
      lease.model_ = e->resident;
      return lease;
    }
    if (e->failed_loads != failures_seen) {
      leave();
      return e->last_error;
    }
    if (!counted) {
      const int64_t limit =
          std::max<int64_t>(1, e->spec.instance.max_queued) * std::max(1, e->spec.instances);
      if (e->waiting >= limit) {
        return absl::ResourceExhaustedError(
            absl::StrCat("model '", e->spec.name, "' is ", std::string(ModelStateName(e->state)),
                         " and ", e->waiting, " requests already wait for it (the queue's limit)"));
      }
      ++e->waiting;
      counted = true;
    }
    if (!e->load_queued && !e->deferred && e->state != ModelState::kLoading) {
      e->load_queued = true;
      load_queue_.push_back(e);
    }
    const absl::Time now = absl::Now();
    if (now >= options.deadline) {
      leave();
      return absl::ResourceExhaustedError(absl::StrCat(
          "the request waited ", absl::FormatDuration(now - waited_from), " for model '",
          e->spec.name, "' to load (", std::string(ModelStateName(e->state)), ")",
          e->waiting_for.empty() ? "" : absl::StrCat(": ", e->waiting_for)));
    }
    auto changed = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return stopping_ || e->removed || e->state == ModelState::kReady ||
             e->state == ModelState::kDraining || e->failed_loads != failures_seen;
    };
    mu_.AwaitWithTimeout(absl::Condition(&changed),
                         std::min(absl::Milliseconds(50), options.deadline - now));
    if (options.cancelled && options.cancelled()) {
      leave();
      return absl::CancelledError(
          absl::StrCat("the request was cancelled while model '", e->spec.name, "' loaded"));
    }
  }
}

void ModelRegistry::EndLease(Entry& e) {
  absl::MutexLock lock(&mu_);
  e.last_used = absl::Now();
  if (--e.leases == 0) memory_freed_ = true;
}

absl::StatusOr<UnloadResult> ModelRegistry::Unload(std::string_view name,
                                                   absl::Duration drain_timeout) {
  EntryPtr e;
  std::shared_ptr<LoadedModel> m;
  {
    absl::MutexLock ops(&ops_mu_);  // no load or unload of it runs now
    std::shared_ptr<const engine::ModelSource> dropped;
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no model named '", std::string(name), "' is loaded"));
    }
    e = it->second;
    if (e->state == ModelState::kDraining) {
      return absl::FailedPreconditionError(
          absl::StrCat("model '", std::string(name), "' is being unloaded already"));
    }
    if (e->state != ModelState::kReady) {  // kDisk or kHost: nothing on the device
      if (e->host != nullptr) host_used_ -= e->host->stored_bytes();
      dropped = std::move(e->host);
      e->opened.reset();
      e->state = ModelState::kDisk;
      e->removed = true;
      models_.erase(it);
      return UnloadResult();
    }
    e->state = ModelState::kDraining;
    m = e->resident;
  }
  UnloadResult result;
  for (const auto& i : m->instances_) {
    i->Drain(absl::UnavailableError(absl::StrCat(
        "model '", std::string(name), "' is being unloaded; the request was still queued")));
  }
  const int64_t at_start = m->in_flight();
  const absl::Time deadline = absl::Now() + drain_timeout;
  while (m->in_flight() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  result.cancelled = m->in_flight();
  result.drained = at_start - result.cancelled;
  // Stragglers end now (their streams get CANCELLED); the memory is
  // returned at once, and the instances stop when the last request lets go.
  for (const auto& i : m->instances_) {
    i->CancelAll(absl::UnavailableError(
        absl::StrCat("model '", std::string(name), "' was unloaded before the request finished")));
  }
  {
    absl::MutexLock ops(&ops_mu_);
    (void)placement_.Release(m->reservation_);
    m->reservation_ = 0;
    absl::MutexLock lock(&mu_);
    e->resident.reset();
    e->removed = true;
    models_.erase(std::string(name));
    memory_freed_ = true;
  }
  ModelEvent event;
  event.kind = ModelEvent::Kind::kUnloaded;
  event.model = std::string(name);
  event.device = m->spec_.device;
  event.reason = "admin";
  event.to = "disk";
  event.bytes = m->facts_->device_bytes();
  Emit(event);
  return result;
}

void ModelRegistry::DrainAll() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (const auto& m : Resident()) {
    for (const auto& i : m->instances_) {
      i->Drain(absl::UnavailableError(
          "the server is shutting down; the request was still queued (retry on another replica)"));
    }
  }
}

ModelStatus ModelRegistry::StatusLocked(const Entry& e) const {
  ModelStatus s;
  s.spec = e.spec;
  s.facts = e.facts;
  s.state = e.state;
  s.resident = e.resident;
  s.last_used = e.last_used;
  if (e.resident != nullptr) s.device_bytes = e.facts->device_bytes();
  if (e.host != nullptr && e.state == ModelState::kHost) s.host_bytes = e.host->stored_bytes();
  s.waiting_for_load = e.waiting;
  s.loads_from_disk = e.loads_from_disk;
  s.loads_from_host = e.loads_from_host;
  s.evictions = e.evictions;
  s.idle_unloads = e.idle_unloads;
  s.last_load_seconds = e.last_load_seconds;
  return s;
}

absl::StatusOr<ModelStatus> ModelRegistry::Get(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    if (auto f = failures_.find(name); f != failures_.end()) {
      return absl::UnavailableError(absl::StrCat("model '", std::string(name),
                                                 "' failed to load at start: ",
                                                 f->second.status.message()));
    }
    return absl::NotFoundError(absl::StrCat("no model named '", std::string(name), "' is loaded"));
  }
  return StatusLocked(*it->second);
}

bool ModelRegistry::Knows(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  return models_.count(name) != 0 || failures_.count(name) != 0;
}

std::vector<ModelStatus> ModelRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<ModelStatus> out;
  for (const auto& [name, e] : models_) out.push_back(StatusLocked(*e));
  return out;
}

std::vector<std::shared_ptr<LoadedModel>> ModelRegistry::Resident() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<LoadedModel>> out;
  for (const auto& [name, e] : models_) {
    if (e->resident != nullptr) out.push_back(e->resident);
  }
  return out;
}

HostCacheStatus ModelRegistry::HostCache() const {
  absl::MutexLock lock(&mu_);
  HostCacheStatus s;
  s.budget_bytes = options_.host_cache_bytes;
  s.used_bytes = host_used_;
  std::vector<const Entry*> held;
  for (const auto& [name, e] : models_) {
    if (e->state == ModelState::kHost) held.push_back(e.get());
  }
  std::sort(held.begin(), held.end(),
            [](const Entry* a, const Entry* b) { return a->last_used < b->last_used; });
  for (const Entry* e : held) s.models.push_back(e->spec.name);
  return s;
}

void ModelRegistry::RecordFailure(FailedModel failed) {
  absl::MutexLock lock(&mu_);
  std::string name = failed.name;
  failures_.insert_or_assign(std::move(name), std::move(failed));
}

std::vector<FailedModel> ModelRegistry::Failures() const {
  absl::MutexLock lock(&mu_);
  std::vector<FailedModel> out;
  for (const auto& [name, f] : failures_) out.push_back(f);
  return out;
}

}  // namespace packd::server
