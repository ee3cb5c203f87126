#include "server/models_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/auth.h"

namespace packd::server {

ModelSpec SpecFromConfig(const ServerConfig& config, const ServerConfig::Model& model) {
  ModelSpec spec;
  spec.name = model.name;
  spec.path = model.path;
  spec.device = model.device;
  spec.instances = model.instances;
  spec.engine = model.ToEngineOptions();
  for (const ServerConfig::Device& d : config.devices) {
    if (d.name == model.device && d.kind == DeviceKind::kCuda) {
      spec.engine.device = absl::StrCat("cuda:", d.index);
    }
  }
  spec.instance.max_queued = config.queue.max_queued_per_instance;
  spec.instance.max_wait = absl::FromChrono(config.queue.max_wait);
  spec.expected_codec = std::string(ExpectedCodecName(model.codec));
  spec.max_prompt_bytes = model.max_prompt_bytes;
  spec.prefix_cache = model.prefix_cache;
  spec.load = model.load;
  spec.keep_alive = absl::FromChrono(model.keep_alive);
  spec.pinned = model.pinned;
  return spec;
}

void FillModelInfo(const ModelStatus& m, packd::v1::ModelInfo* info) {
  info->set_name(m.spec.name);
  info->set_path(m.spec.path.string());
  switch (m.state) {
    case ModelState::kDisk:
      info->set_state(packd::v1::MODEL_STATE_DISK);
      break;
    case ModelState::kHost:
      info->set_state(packd::v1::MODEL_STATE_HOST);
      break;
    case ModelState::kLoading:
      info->set_state(packd::v1::MODEL_STATE_LOADING);
      break;
    case ModelState::kReady:
      info->set_state(packd::v1::MODEL_STATE_READY);
      break;
    case ModelState::kUnloading:
      info->set_state(packd::v1::MODEL_STATE_UNLOADING);
      break;
    case ModelState::kDraining:
      info->set_state(packd::v1::MODEL_STATE_DRAINING);
      break;
  }
  info->set_device(m.spec.device);
  info->set_instances(static_cast<uint32_t>(m.spec.instances));
  info->set_prefix_cache(std::string(PrefixCacheModeName(m.spec.prefix_cache)));
  info->set_load(std::string(LoadPolicyName(m.spec.load)));
  info->set_keep_alive_seconds(absl::ToDoubleSeconds(m.spec.keep_alive));
  info->set_pinned(m.spec.pinned);
  if (m.last_used != absl::InfinitePast()) {
    info->set_last_used_unix_seconds(absl::ToDoubleSeconds(m.last_used - absl::UnixEpoch()));
  }
  info->set_device_bytes(m.device_bytes);
  info->set_host_bytes(m.host_bytes);
  info->set_loads_from_disk(m.loads_from_disk);
  info->set_loads_from_host(m.loads_from_host);
  info->set_evictions(m.evictions);
  info->set_idle_unloads(m.idle_unloads);
  info->set_last_load_seconds(m.last_load_seconds);
  info->set_waiting_requests(static_cast<uint32_t>(m.waiting_for_load));
  if (m.facts != nullptr) {
    const ModelFacts& f = *m.facts;
    info->set_architecture(f.architecture);
    info->set_codec(f.codec);
    info->set_original_weight_bytes(f.original_weight_bytes);
    info->set_stored_weight_bytes(f.stored_weight_bytes);
    info->set_compression_ratio(f.stored_weight_bytes == 0
                                    ? 1.0
                                    : static_cast<double>(f.original_weight_bytes) /
                                          static_cast<double>(f.stored_weight_bytes));
    info->set_kv_cache_bytes_per_instance(f.reservation.kv_bytes_per_instance);
    int64_t context = f.config.max_position_embeddings;
    if (m.spec.engine.max_context > 0) context = std::min(context, m.spec.engine.max_context);
    info->set_max_context(static_cast<uint32_t>(context));
    info->set_vocab_size(static_cast<uint32_t>(f.config.vocab_size));
  }
  if (const LoadedModel* r = m.resident.get(); r != nullptr && !r->instances().empty()) {
    info->set_kv_cache_bytes_per_instance(r->instances().front()->engine().kv_cache().bytes());
    info->set_max_context(static_cast<uint32_t>(r->engine().max_context()));
    info->set_running_requests(static_cast<uint32_t>(r->running()));
    info->set_waiting_requests(static_cast<uint32_t>(r->waiting() + m.waiting_for_load));
  }
}

absl::Status ModelsService::CheckAdmin(const grpc::ServerContext& context) const {
  ASSIGN_OR_RETURN(const ServerConfig::Tenant* tenant, Authenticate(context, config_));
  if (!tenant->admin) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant '", tenant->name, "' may not use the Models admin service"));
  }
  return absl::OkStatus();
}

grpc::Status ModelsService::ListModels(grpc::ServerContext* context,
                                       const packd::v1::ListModelsRequest*,
                                       packd::v1::ListModelsResponse* response) {
  if (absl::Status s = CheckAdmin(*context); !s.ok()) return ToGrpc(s);
  for (const ModelStatus& m : registry_.List()) FillModelInfo(m, response->add_models());
  return grpc::Status::OK;
}

grpc::Status ModelsService::GetModel(grpc::ServerContext* context,
                                     const packd::v1::GetModelRequest* request,
                                     packd::v1::ModelInfo* response) {
  if (absl::Status s = CheckAdmin(*context); !s.ok()) return ToGrpc(s);
  absl::StatusOr<ModelStatus> m = registry_.Get(request->name());
  if (!m.ok()) return ToGrpc(m.status());
  FillModelInfo(*m, response);
  return grpc::Status::OK;
}

grpc::Status ModelsService::LoadModel(grpc::ServerContext* context,
                                      const packd::v1::LoadModelRequest* request,
                                      packd::v1::ModelInfo* response) {
  if (absl::Status s = CheckAdmin(*context); !s.ok()) return ToGrpc(s);
  if (request->name().empty() || request->path().empty()) {
    return ToGrpc(absl::InvalidArgumentError("name and path are required"));
  }
  if (!IsValidName(request->name())) {
    return ToGrpc(absl::InvalidArgumentError("name: only [A-Za-z0-9._-] are allowed"));
  }
  if (config_.devices.empty()) return ToGrpc(absl::FailedPreconditionError("no devices"));
  ServerConfig::Model m;
  m.name = request->name();
  m.path = request->path();
  m.device = request->device().empty() ? config_.devices.front().name : request->device();
  m.instances = request->instances() == 0 ? 1 : static_cast<int>(request->instances());
  if (request->kv_cache_bytes() != 0) m.kv_cache_bytes = request->kv_cache_bytes();
  if (request->max_batch() != 0) m.max_batch = request->max_batch();
  if (request->max_context() != 0) m.max_context = request->max_context();
  if (!request->prefix_cache().empty()) {
    absl::StatusOr<PrefixCacheMode> mode = ParsePrefixCacheMode(request->prefix_cache());
    if (!mode.ok()) return ToGrpc(mode.status());
    m.prefix_cache = *mode;
  }
  m.pinned = request->pinned();
  if (request->keep_alive_seconds() < 0 || !std::isfinite(request->keep_alive_seconds())) {
    return ToGrpc(absl::InvalidArgumentError("keep_alive_seconds: must be >= 0"));
  }
  m.keep_alive = std::chrono::milliseconds(
      static_cast<int64_t>(std::min(request->keep_alive_seconds(), 1e9) * 1000));
  ModelSpec spec = SpecFromConfig(config_, m);
  if (decorate_) spec = decorate_(std::move(spec));
  // Loaded now, evicting idle models of the device if it must.
  absl::StatusOr<std::shared_ptr<LoadedModel>> loaded = registry_.Load(spec, /*evict=*/true);
  if (!loaded.ok()) {
    if (on_load_failed_) on_load_failed_(spec.name, loaded.status());
    return ToGrpc(loaded.status());
  }
  absl::StatusOr<ModelStatus> status = registry_.Get(spec.name);
  if (!status.ok()) return ToGrpc(status.status());  // unloaded at once by another admin
  FillModelInfo(*status, response);
  if (on_change_) on_change_();
  return grpc::Status::OK;
}

grpc::Status ModelsService::UnloadModel(grpc::ServerContext* context,
                                        const packd::v1::UnloadModelRequest* request,
                                        packd::v1::UnloadModelResponse* response) {
  if (absl::Status s = CheckAdmin(*context); !s.ok()) return ToGrpc(s);
  const absl::Duration timeout = request->drain_timeout_seconds() > 0
                                     ? absl::Seconds(request->drain_timeout_seconds())
                                     : absl::FromChrono(config_.drain_timeout);
  absl::StatusOr<UnloadResult> r = registry_.Unload(request->name(), timeout);
  if (!r.ok()) return ToGrpc(r.status());
  response->set_drained_requests(static_cast<uint32_t>(r->drained));
  response->set_cancelled_requests(static_cast<uint32_t>(r->cancelled));
  if (on_change_) on_change_();
  return grpc::Status::OK;
}

grpc::Status ModelsService::GetServerInfo(grpc::ServerContext* context,
                                          const packd::v1::GetServerInfoRequest*,
                                          packd::v1::ServerInfo* response) {
  if (absl::Status s = CheckAdmin(*context); !s.ok()) return ToGrpc(s);
  response->set_version("packd " PACKD_VERSION);
  response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
  const std::vector<ModelPlacement> placed = registry_.placement().Models();
  for (const DeviceInfo& d : registry_.placement().Devices()) {
    packd::v1::DeviceInfo* out = response->add_devices();
    out->set_name(d.name);
    out->set_kind(std::string(DeviceKindName(d.kind)));
    out->set_total_bytes(d.total_bytes);
    out->set_budget_bytes(d.budget_bytes);
    out->set_weights_bytes(d.used.of(engine::MemoryKind::kWeights));
    out->set_kv_cache_bytes(d.used.of(engine::MemoryKind::kKvCache));
    out->set_workspace_bytes(d.used.of(engine::MemoryKind::kWorkspace));
    out->set_decode_scratch_bytes(d.used.of(engine::MemoryKind::kDecodeScratch));
    out->set_instances(static_cast<uint32_t>(d.instances));
    out->set_uncompressed_equivalent_bytes(d.uncompressed_bytes());
    out->set_density(d.density());
    for (const ModelPlacement& p : placed) {
      if (p.device == d.name) out->add_models(p.model);
    }
  }
  for (const ModelStatus& m : registry_.List()) FillModelInfo(m, response->add_models());
  const HostCacheStatus host = registry_.HostCache();
  response->mutable_host_cache()->set_budget_bytes(host.budget_bytes);
  response->mutable_host_cache()->set_used_bytes(host.used_bytes);
  for (const std::string& name : host.models) response->mutable_host_cache()->add_models(name);
  for (const FailedModel& f : registry_.Failures()) {
    packd::v1::FailedModel* out = response->add_failed_models();
    out->set_name(f.name);
    out->set_path(f.path.string());
    out->set_error(std::string(f.status.message()));
    out->set_code(absl::StatusCodeToString(f.status.code()));
  }
  return grpc::Status::OK;
}

}  // namespace packd::server
