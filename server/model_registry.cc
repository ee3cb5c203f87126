#include "server/model_registry.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "engine/cuda/cuda_memory_estimate.h"
#include "engine/model_source.h"

namespace packd::server {

std::string LoadedModel::architecture() const {
  return std::string(engine::ArchitectureName(config().arch));
}

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

ModelRegistry::~ModelRegistry() {
  absl::MutexLock lock(&mu_);
  for (auto& [name, m] : models_) {
    if (m->reservation_ != 0) (void)placement_.Release(m->reservation_);
  }
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::Load(const ModelSpec& spec) {
  if (spec.instances < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", spec.name, "': instances must be >= 1"));
  }
  auto m = std::make_shared<LoadedModel>();
  m->spec_ = spec;
  {
    absl::MutexLock lock(&mu_);
    if (models_.count(spec.name) != 0) {
      return absl::AlreadyExistsError(absl::StrCat("a model named '", spec.name, "' is loaded"));
    }
    models_.emplace(spec.name, m);  // kLoading: requests get UNAVAILABLE
  }
  auto fail = [&](absl::Status s) {
    if (m->reservation_ != 0) (void)placement_.Release(m->reservation_);
    absl::MutexLock lock(&mu_);
    models_.erase(spec.name);
    return absl::Status(s.code(), absl::StrCat("model '", spec.name, "': ", s.message()));
  };
  // What it needs: weights as stored, and per instance KV + workspace.
  engine::ModelSourceOptions so;
  so.verify_checksums = spec.engine.verify_checksums;
  absl::StatusOr<std::unique_ptr<engine::ModelSource>> source =
      engine::ModelSource::Open(spec.path, so);
  if (!source.ok()) return fail(source.status());
  m->stored_weight_bytes_ = (*source)->stored_bytes();
  m->original_weight_bytes_ = (*source)->original_bytes();
  const std::set<std::string> codecs = (*source)->codecs();
  m->codec_ = absl::StrJoin(codecs, "+");
  if (!spec.expected_codec.empty() && spec.expected_codec != "any" &&
      codecs.count(spec.expected_codec) == 0) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "the config expects codec '", spec.expected_codec, "' but its weights use ", m->codec_)));
  }
  absl::StatusOr<InstanceBytes> per_instance =
      EstimateInstanceBytes((*source)->config(), spec.engine);
  if (!per_instance.ok()) return fail(per_instance.status());
  absl::StatusOr<DeviceInfo> device = placement_.Snapshot(spec.device);
  if (!device.ok()) return fail(device.status());
  ReservationRequest r;
  r.model = spec.name;
  r.device = spec.device;
  r.weight_bytes = m->stored_weight_bytes_;
  r.original_weight_bytes = m->original_weight_bytes_;
  r.kv_bytes_per_instance = per_instance->kv_bytes;
  r.workspace_bytes_per_instance = per_instance->workspace_bytes;
  r.instances = spec.instances;
  if (device->kind == DeviceKind::kCuda) {
    // A CUDA engine owns its backend, and the backend its copy of the
    // weights (engine/cuda/CUDA_BACKEND.md): weights are reserved per
    // instance, as the device holds them, with the backend's own workspace
    // and decode scratch.
    const engine::MemoryUsage own = engine::EstimateCudaBackendBytes(
        engine::CudaBackendOptionsFor(spec.engine, /*device=*/0), **source);
    const uint64_t n = static_cast<uint64_t>(spec.instances);
    r.weight_bytes = own.of(engine::MemoryKind::kWeights) * n;
    r.original_weight_bytes = m->original_weight_bytes_ * n;
    r.workspace_bytes_per_instance += own.of(engine::MemoryKind::kWorkspace);
    r.decode_scratch_bytes_per_instance = own.of(engine::MemoryKind::kDecodeScratch);
  }
  absl::StatusOr<ReservationId> id = placement_.Reserve(r);
  if (!id.ok()) return fail(id.status());
  m->reservation_ = *id;
  // Opened and verified once; every instance runs on the same source.
  const std::shared_ptr<const engine::ModelSource> shared(std::move(*source));
  for (int i = 0; i < spec.instances; ++i) {
    absl::StatusOr<std::unique_ptr<ModelInstance>> inst =
        ModelInstance::Start(shared, spec.engine, spec.instance);
    if (!inst.ok()) return fail(inst.status());
    m->instances_.push_back(std::move(*inst));
  }
  if (spec.instances > 1 && spec.engine.prefix_caching) {
    m->router_ = std::make_unique<PrefixRouter>(spec.engine.kv_block_size);
  }
  m->state_.store(ModelState::kReady);
  {
    absl::MutexLock lock(&mu_);
    failures_.erase(spec.name);
  }
  return m;
}

absl::StatusOr<UnloadResult> ModelRegistry::Unload(std::string_view name,
                                                   absl::Duration drain_timeout) {
  std::shared_ptr<LoadedModel> m;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || it->second->state() != ModelState::kReady) {
      return absl::NotFoundError(
          absl::StrCat("no model named '", std::string(name), "' is loaded"));
    }
    m = it->second;
    m->state_.store(ModelState::kDraining);
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
  {
    absl::MutexLock lock(&mu_);
    models_.erase(std::string(name));
  }
  // Stragglers end now (their streams get CANCELLED); the memory is
  // returned at once, and the instances stop when the last request lets go.
  for (const auto& i : m->instances_) {
    i->CancelAll(absl::UnavailableError(
        absl::StrCat("model '", std::string(name), "' was unloaded before the request finished")));
  }
  (void)placement_.Release(m->reservation_);
  m->reservation_ = 0;
  return result;
}

void ModelRegistry::DrainAll() {
  std::vector<std::shared_ptr<LoadedModel>> all = List();
  for (const auto& m : all) {
    m->state_.store(ModelState::kDraining);
    for (const auto& i : m->instances_) {
      i->Drain(absl::UnavailableError(
          "the server is shutting down; the request was still queued (retry on another replica)"));
    }
  }
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::Find(std::string_view name) const {
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
  return it->second;
}

bool ModelRegistry::Knows(std::string_view name) const {
  absl::MutexLock lock(&mu_);
  return models_.count(name) != 0 || failures_.count(name) != 0;
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

std::vector<std::shared_ptr<LoadedModel>> ModelRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<LoadedModel>> out;
  for (const auto& [name, m] : models_) out.push_back(m);
  return out;
}

}  // namespace packd::server
